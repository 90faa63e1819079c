//! Rows of the identity tables (apps, users, signing keys) and the audit log.

use crate::rows::{get, run_values, ticks, Db, PostgresRow};
use palisade_domain::identity::{AppRegistration, AuditEntry, SigningKey, User};
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{
    app_fields, app_upsert, key_fields, key_insert, user_fields, user_upsert,
};
use palisade_store_sql::Dialect;
use tokio_postgres::Row;

pub(crate) fn app_from_row(row: &Row) -> Result<AppRegistration, StoreError> {
    app_fields::from_row(&PostgresRow(row), 0)
}

pub(crate) async fn save_app(db: &impl Db, app: &AppRegistration) -> Result<(), StoreError> {
    run_values(db, app_upsert(Dialect::Postgres), app_fields::values(app)).await?;
    Ok(())
}

pub(crate) fn user_from_row(row: &Row) -> Result<User, StoreError> {
    user_fields::from_row(&PostgresRow(row), 0)
}

pub(crate) async fn save_user(db: &impl Db, user: &User) -> Result<(), StoreError> {
    run_values(
        db,
        user_upsert(Dialect::Postgres),
        user_fields::values(user),
    )
    .await?;
    Ok(())
}

pub(crate) fn key_from_row(row: &Row) -> Result<SigningKey, StoreError> {
    key_fields::from_row(&PostgresRow(row), 0)
}

pub(crate) async fn rotate_key(db: &impl Db, key: &SigningKey) -> Result<(), StoreError> {
    db.run(
        "UPDATE signing_keys SET retired_at = $2 WHERE tenant_id = $1 AND retired_at IS NULL",
        &[&key.tenant_id, &key.created_at.ticks()],
    )
    .await?;
    run_values(db, key_insert(Dialect::Postgres), key_fields::values(key)).await?;
    Ok(())
}

/// The sealed private key replaces the plaintext one it was made from, if still there.
pub(crate) async fn seal_key(
    db: &impl Db,
    tenant_id: &str,
    kid: &str,
    plaintext: &str,
    sealed: &str,
) -> Result<bool, StoreError> {
    Ok(db
        .run(
            "UPDATE signing_keys SET private_key_pem = $4 \
             WHERE tenant_id = $1 AND kid = $2 AND private_key_pem = $3",
            &[&tenant_id, &kid, &plaintext, &sealed],
        )
        .await?
        > 0)
}

pub(crate) fn audit_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: get(row, 0)?,
        tenant_id: get(row, 1)?,
        time: ticks(row, 2)?,
        actor_type: get(row, 3)?,
        actor_id: get(row, 4)?,
        actor_name: get(row, 5)?,
        operation: get(row, 6)?,
        target: get(row, 7)?,
        result: u16::try_from(get::<i64>(row, 8)?)
            .map_err(|e| StoreError::Internal(format!("audit result: {e}")))?,
        request_id: get(row, 9)?,
    })
}

/// Entries of one tenant, in one statement: their ids (the next of the
/// tenant's `audit_sequences` row, locked until the commit), the entries,
/// and the machines each is about.
pub(crate) async fn append_audits(
    db: &impl Db,
    tenant_id: &str,
    entries: &[(&AuditEntry, &[String])],
) -> Result<(), StoreError> {
    let column =
        |f: fn(&AuditEntry) -> String| entries.iter().map(|(e, _)| f(e)).collect::<Vec<_>>();
    let times: Vec<i64> = entries.iter().map(|(e, _)| e.time.ticks()).collect();
    let targets: Vec<Option<&str>> = entries.iter().map(|(e, _)| e.target.as_deref()).collect();
    let results: Vec<i64> = entries.iter().map(|(e, _)| i64::from(e.result)).collect();
    // Each machine with the position of its entry (from 1, as WITH ORDINALITY counts).
    let (positions, machines): (Vec<i64>, Vec<&str>) = entries
        .iter()
        .zip(1..)
        .flat_map(|((_, ids), n)| ids.iter().map(move |id| (n, id.as_str())))
        .unzip();
    db.run(
        "WITH next AS ( \
             INSERT INTO audit_sequences AS s (tenant_id, last_id) \
             VALUES ($1, cardinality($2::int8[])) \
             ON CONFLICT (tenant_id) DO UPDATE SET last_id = s.last_id + excluded.last_id \
             RETURNING last_id - cardinality($2::int8[]) AS base \
         ), entries AS ( \
             INSERT INTO audit_log (tenant_id, id, time, actor_type, actor_id, actor_name, \
                 operation, target, result, request_id) \
             SELECT $1, next.base + e.n, e.time, e.actor_type, e.actor_id, e.actor_name, \
                 e.operation, e.target, e.result, e.request_id \
             FROM next, unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::int8[], $9::text[]) WITH ORDINALITY \
                 AS e(time, actor_type, actor_id, actor_name, operation, target, result, \
                     request_id, n) \
             RETURNING id \
         ) \
         INSERT INTO audit_machines (tenant_id, entry_id, machine_id) \
         SELECT DISTINCT $1, next.base + m.n, m.machine_id \
         FROM next, unnest($10::int8[], $11::text[]) AS m(n, machine_id)",
        &[
            &tenant_id,
            &times,
            &column(|e| e.actor_type.clone()),
            &column(|e| e.actor_id.clone()),
            &column(|e| e.actor_name.clone()),
            &column(|e| e.operation.clone()),
            &targets,
            &results,
            &column(|e| e.request_id.clone()),
            &positions,
            &machines,
        ],
    )
    .await?;
    Ok(())
}
