//! Rows of the identity tables (apps, users, signing keys) and the audit log.

use crate::rows::{bind, decoding, SqliteRow, Ticks};
use palisade_domain::identity::{AppRegistration, AuditEntry, SigningKey, User};
use palisade_store_sql::fields::{
    app_fields, app_upsert, key_fields, key_insert, user_fields, user_upsert,
};
use palisade_store_sql::Dialect;
use rusqlite::{params, params_from_iter, Connection, Row};

pub(crate) fn app_from_row(row: &Row<'_>) -> rusqlite::Result<AppRegistration> {
    app_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

pub(crate) fn save_app(conn: &Connection, app: &AppRegistration) -> rusqlite::Result<()> {
    conn.prepare_cached(app_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(app_fields::values(app))))?;
    Ok(())
}

pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    user_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

pub(crate) fn save_user(conn: &Connection, user: &User) -> rusqlite::Result<()> {
    conn.prepare_cached(user_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(user_fields::values(user))))?;
    Ok(())
}

pub(crate) fn key_from_row(row: &Row<'_>) -> rusqlite::Result<SigningKey> {
    key_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

pub(crate) fn rotate_key(conn: &Connection, key: &SigningKey) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE signing_keys SET retired_at = ?2 WHERE tenant_id = ?1 AND retired_at IS NULL",
    )?
    .execute(params![key.tenant_id, Ticks(key.created_at)])?;
    conn.prepare_cached(key_insert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(key_fields::values(key))))?;
    Ok(())
}

/// The sealed private key replaces the plaintext one it was made from, if still there.
pub(crate) fn seal_key(conn: &Connection, values: &[String; 4]) -> rusqlite::Result<bool> {
    let [tenant_id, kid, plaintext, sealed] = values;
    conn.prepare_cached(
        "UPDATE signing_keys SET private_key_pem = ?4 \
         WHERE tenant_id = ?1 AND kid = ?2 AND private_key_pem = ?3",
    )?
    .execute(params![tenant_id, kid, plaintext, sealed])
    .map(|n| n > 0)
}

pub(crate) fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        time: row.get::<_, Ticks>(2)?.0,
        actor_type: row.get(3)?,
        actor_id: row.get(4)?,
        actor_name: row.get(5)?,
        operation: row.get(6)?,
        target: row.get(7)?,
        result: row.get(8)?,
        request_id: row.get(9)?,
    })
}

pub(crate) fn append_audit(
    conn: &Connection,
    entry: &AuditEntry,
    machine_ids: &[String],
) -> rusqlite::Result<()> {
    // The next id of the tenant's: the writer (and SQLite's write lock, for
    // the CLI) makes the read and the insert one step.
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO audit_log (tenant_id, id, time, actor_type, actor_id, actor_name, \
             operation, target, result, request_id) VALUES (?1, \
             (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log WHERE tenant_id = ?1), \
             ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )?
        .query_row(
            params![
                entry.tenant_id,
                Ticks(entry.time),
                entry.actor_type,
                entry.actor_id,
                entry.actor_name,
                entry.operation,
                entry.target,
                entry.result,
                entry.request_id
            ],
            |row| row.get(0),
        )?;
    let mut about = conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_machines (tenant_id, entry_id, machine_id) VALUES (?1, ?2, ?3)",
    )?;
    for machine_id in machine_ids {
        about.execute(params![entry.tenant_id, id, machine_id])?;
    }
    Ok(())
}
