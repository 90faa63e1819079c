//! Rows of the device plane that PostgreSQL reads and writes its own way:
//! enrolled devices inside a write (locked), and the delivery of actions.
//!
//! Lock order, to keep concurrent transactions from deadlocking: machines,
//! then devices, then actions; several rows of one table in key order.

use crate::rows::{action_columns, action_from_row, run_values, Db, PostgresRow};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::Device;
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{device_fields, device_upsert};
use palisade_store_sql::{Dialect, DELIVERABLE_ACTIONS};
use tokio_postgres::Row;

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
    db.rows(
        palisade_store_sql::open_actions(Dialect::Postgres),
        &[&tenant_id, &machine_id],
    )
    .await?
    .iter()
    .map(action_from_row)
    .collect()
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
                     WHERE {deliverable} FOR UPDATE SKIP LOCKED) \
                 RETURNING {action_columns}",
                deliverable = Dialect::Postgres.numbered(DELIVERABLE_ACTIONS)
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
