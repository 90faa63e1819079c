//! Rows of the identity tables (apps, users, signing keys) and the audit log.

use crate::rows::Ticks;
use palisade_domain::caller::DeviceGroupAccess;
use palisade_domain::identity::{AppRegistration, AuditEntry, SigningKey, User};
use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};

fn from_json<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.into()))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("identity values serialise")
}

const ALL_GROUPS: &str = "all";

fn device_groups_text(access: &DeviceGroupAccess) -> String {
    match access {
        DeviceGroupAccess::All => ALL_GROUPS.into(),
        DeviceGroupAccess::Only(ids) => to_json(ids),
    }
}

fn device_groups_from(row: &Row<'_>, index: usize) -> rusqlite::Result<DeviceGroupAccess> {
    let text: String = row.get(index)?;
    if text == ALL_GROUPS {
        return Ok(DeviceGroupAccess::All);
    }
    from_json(row, index).map(DeviceGroupAccess::Only)
}

pub(crate) const APP_COLUMNS: &str =
    "tenant_id, client_id, display_name, permissions, secret_hash, created_at";

pub(crate) fn app_from_row(row: &Row<'_>) -> rusqlite::Result<AppRegistration> {
    Ok(AppRegistration {
        tenant_id: row.get(0)?,
        client_id: row.get(1)?,
        display_name: row.get(2)?,
        permissions: from_json(row, 3)?,
        secret_hash: row.get(4)?,
        created_at: row.get::<_, Ticks>(5)?.0,
    })
}

pub(crate) fn save_app(conn: &Connection, app: &AppRegistration) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO apps (tenant_id, client_id, display_name, permissions, secret_hash, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, client_id) DO UPDATE SET \
         display_name = excluded.display_name, permissions = excluded.permissions, \
         secret_hash = excluded.secret_hash",
    )?
    .execute(params![
        app.tenant_id,
        app.client_id,
        app.display_name,
        to_json(&app.permissions),
        app.secret_hash,
        Ticks(app.created_at)
    ])?;
    Ok(())
}

pub(crate) const USER_COLUMNS: &str =
    "tenant_id, id, username, roles, device_groups, password_hash, created_at";

pub(crate) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        tenant_id: row.get(0)?,
        id: row.get(1)?,
        username: row.get(2)?,
        roles: from_json(row, 3)?,
        device_groups: device_groups_from(row, 4)?,
        password_hash: row.get(5)?,
        created_at: row.get::<_, Ticks>(6)?.0,
    })
}

pub(crate) fn save_user(conn: &Connection, user: &User) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (tenant_id, id, username, roles, device_groups, password_hash, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (tenant_id, id) DO UPDATE SET \
         username = excluded.username, roles = excluded.roles, \
         device_groups = excluded.device_groups, password_hash = excluded.password_hash",
    )?
    .execute(params![
        user.tenant_id,
        user.id,
        user.username,
        to_json(&user.roles),
        device_groups_text(&user.device_groups),
        user.password_hash,
        Ticks(user.created_at)
    ])?;
    Ok(())
}

pub(crate) const KEY_COLUMNS: &str =
    "tenant_id, kid, private_key_pem, modulus, exponent, created_at, retired_at";

pub(crate) fn key_from_row(row: &Row<'_>) -> rusqlite::Result<SigningKey> {
    Ok(SigningKey {
        tenant_id: row.get(0)?,
        kid: row.get(1)?,
        private_key: row.get(2)?,
        modulus: row.get(3)?,
        exponent: row.get(4)?,
        created_at: row.get::<_, Ticks>(5)?.0,
        retired_at: row.get::<_, Option<Ticks>>(6)?.map(|t| t.0),
    })
}

pub(crate) fn rotate_key(conn: &Connection, key: &SigningKey) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE signing_keys SET retired_at = ?2 WHERE tenant_id = ?1 AND retired_at IS NULL",
    )?
    .execute(params![key.tenant_id, Ticks(key.created_at)])?;
    conn.prepare_cached(
        "INSERT INTO signing_keys (tenant_id, kid, private_key_pem, modulus, exponent, created_at, retired_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
    )?
    .execute(params![
        key.tenant_id,
        key.kid,
        key.private_key,
        key.modulus,
        key.exponent,
        Ticks(key.created_at)
    ])?;
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
