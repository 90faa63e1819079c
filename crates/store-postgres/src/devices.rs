//! Rows of the device plane: onboarding tokens, enrolled devices, and the
//! delivery of their actions.
//!
//! Lock order, to keep concurrent transactions from deadlocking: machines,
//! then devices, then actions; several rows of one table in key order.

use crate::rows::{action_columns, action_from_row, run_values, Db, PostgresRow};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::{Device, OnboardingToken};
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{device_fields, device_upsert, token_fields, token_upsert};
use palisade_store_sql::Dialect;
use tokio_postgres::Row;

pub(crate) fn token_from_row(row: &Row) -> Result<OnboardingToken, StoreError> {
    token_fields::from_row(&PostgresRow(row), 0)
}

pub(crate) async fn save_token(db: &impl Db, token: &OnboardingToken) -> Result<(), StoreError> {
    run_values(
        db,
        token_upsert(Dialect::Postgres),
        token_fields::values(token),
    )
    .await?;
    Ok(())
}

pub(crate) fn device_from_row(row: &Row) -> Result<Device, StoreError> {
    device_fields::from_row(&PostgresRow(row), 0)
}

pub(crate) async fn save_device(db: &impl Db, device: &Device) -> Result<(), StoreError> {
    run_values(
        db,
        device_upsert(Dialect::Postgres),
        device_fields::values(device),
    )
    .await?;
    Ok(())
}

/// The device of a machine; `lock`ed for the rest of the transaction.
pub(crate) async fn device_by_machine(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
    lock: bool,
) -> Result<Option<Device>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND machine_id = $2{}",
        if lock { " FOR UPDATE" } else { "" },
        DEVICE_COLUMNS = device_fields::select(Dialect::Postgres)
    );
    db.row(&sql, &[&tenant_id, &machine_id])
        .await?
        .map(|row| device_from_row(&row))
        .transpose()
}

pub(crate) async fn device_by_credential(
    db: &impl Db,
    tenant_id: &str,
    credential_id: &str,
) -> Result<Option<Device>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND credential_id = $2",
        DEVICE_COLUMNS = device_fields::select(Dialect::Postgres)
    );
    db.row(&sql, &[&tenant_id, &credential_id])
        .await?
        .map(|row| device_from_row(&row))
        .transpose()
}

/// The machine's Pending and InProgress actions, oldest first.
pub(crate) async fn open_actions(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
) -> Result<Vec<MachineAction>, StoreError> {
    let action_columns = action_columns();
    db.rows(
        &format!(
            "SELECT {action_columns} FROM machine_actions a \
             WHERE a.tenant_id = $1 AND a.machine_id = $2 \
             AND a.status IN ('Pending', 'InProgress') ORDER BY a.creation_time, a.id"
        ),
        &[&tenant_id, &machine_id],
    )
    .await?
    .iter()
    .map(action_from_row)
    .collect()
}

const DELIVERABLE: &str = "a.tenant_id = $1 AND a.machine_id = $2 \
    AND a.status IN ('Pending', 'InProgress') \
    AND (a.delivered_until IS NULL OR a.delivered_until <= $3)";

/// Whether any open action is free to deliver at `now` (a read, no lock).
pub(crate) async fn any_deliverable(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(db
        .row(
            &format!("SELECT 1 FROM machine_actions a WHERE {DELIVERABLE} LIMIT 1"),
            &[&tenant_id, &machine_id, &now.ticks()],
        )
        .await?
        .is_some())
}

/// Holds the deliverable actions until `held_until` and returns them. Rows
/// another check-in is holding right now are skipped, not waited for: that
/// check-in delivers them.
pub(crate) async fn claim_actions(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
    now: Timestamp,
    held_until: Timestamp,
) -> Result<Vec<MachineAction>, StoreError> {
    let action_columns = action_columns();
    let rows = db
        .rows(
            &format!(
                "UPDATE machine_actions a SET delivered_until = $4 \
                 WHERE (a.tenant_id, a.id) IN (SELECT a.tenant_id, a.id FROM machine_actions a \
                     WHERE {DELIVERABLE} FOR UPDATE SKIP LOCKED) \
                 RETURNING {action_columns}"
            ),
            &[&tenant_id, &machine_id, &now.ticks(), &held_until.ticks()],
        )
        .await?;
    let mut actions = rows
        .iter()
        .map(action_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    actions
        .sort_by(|a, b| (a.creation_date_time_utc, &a.id).cmp(&(b.creation_date_time_utc, &b.id)));
    Ok(actions)
}
