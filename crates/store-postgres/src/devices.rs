//! Rows of the device plane: onboarding tokens, enrolled devices, and the
//! delivery of their actions.
//!
//! Lock order, to keep concurrent transactions from deadlocking: machines,
//! then devices, then actions; several rows of one table in key order.

use crate::rows::{
    action_columns, action_from_row, get, json, ticks, ticks_opt, to_json, wire, Db,
};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::{Device, OnboardingToken};
use palisade_domain::store::StoreError;
use tokio_postgres::Row;

pub(crate) const TOKEN_COLUMNS: &str =
    "tenant_id, id, description, secret_hash, created_at, revoked_at";

pub(crate) fn token_from_row(row: &Row) -> Result<OnboardingToken, StoreError> {
    Ok(OnboardingToken {
        tenant_id: get(row, 0)?,
        id: get(row, 1)?,
        description: get(row, 2)?,
        secret_hash: get(row, 3)?,
        created_at: ticks(row, 4)?,
        revoked_at: ticks_opt(row, 5)?,
    })
}

pub(crate) async fn save_token(db: &impl Db, token: &OnboardingToken) -> Result<(), StoreError> {
    db.run(
        "INSERT INTO onboarding_tokens (tenant_id, id, description, secret_hash, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, id) DO UPDATE SET \
         description = excluded.description, secret_hash = excluded.secret_hash, \
         created_at = excluded.created_at, revoked_at = excluded.revoked_at",
        &[
            &token.tenant_id,
            &token.id,
            &token.description,
            &token.secret_hash,
            &token.created_at.ticks(),
            &token.revoked_at.map(Timestamp::ticks),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) const DEVICE_COLUMNS: &str = "tenant_id, machine_id, credential_id, credential_hash, \
    hardware_id, onboarding_token_id, capabilities, enrolled_at, offboarded_at, isolation, isolation_at";

pub(crate) fn device_from_row(row: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        tenant_id: get(row, 0)?,
        machine_id: get(row, 1)?,
        credential_id: get(row, 2)?,
        credential_hash: get(row, 3)?,
        hardware_id: get(row, 4)?,
        onboarding_token_id: get(row, 5)?,
        capabilities: json(row, 6)?,
        enrolled_at: ticks(row, 7)?,
        offboarded_at: ticks_opt(row, 8)?,
        isolation: wire(row, 9)?,
        isolation_at: ticks(row, 10)?,
    })
}

pub(crate) async fn save_device(db: &impl Db, device: &Device) -> Result<(), StoreError> {
    db.run(
        &format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (tenant_id, machine_id) DO UPDATE SET credential_id = excluded.credential_id, \
             credential_hash = excluded.credential_hash, hardware_id = excluded.hardware_id, \
             onboarding_token_id = excluded.onboarding_token_id, capabilities = excluded.capabilities, \
             enrolled_at = excluded.enrolled_at, offboarded_at = excluded.offboarded_at, \
             isolation = excluded.isolation, isolation_at = excluded.isolation_at"
        ),
        &[
            &device.tenant_id,
            &device.machine_id,
            &device.credential_id,
            &device.credential_hash,
            &device.hardware_id,
            &device.onboarding_token_id,
            &to_json(&device.capabilities),
            &device.enrolled_at.ticks(),
            &device.offboarded_at.map(Timestamp::ticks),
            &device.isolation.as_str(),
            &device.isolation_at.ticks(),
        ],
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
        if lock { " FOR UPDATE" } else { "" }
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
    let sql =
        format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 AND credential_id = $2");
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
