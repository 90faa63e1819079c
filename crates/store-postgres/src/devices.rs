//! Rows of the device plane: onboarding tokens and enrolled devices, and the
//! transactions that touch a device, its machine and its actions together.
//!
//! Lock order, to keep concurrent transactions from deadlocking: machines,
//! then devices, then actions; several rows of one table in key order.

use crate::rows::{
    action_from_row, get, json, machine_from_row, save_action, save_machine, ticks, ticks_opt,
    to_json, wire, Db, MACHINE_COLUMNS, MACHINE_FROM,
};
use crate::store::{find_machine, save_ip_history};
use palisade_contract::{Machine, MachineAction, Timestamp};
use palisade_domain::caller::Visibility;
use palisade_domain::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use palisade_domain::rules::{device_actions, device_groups, device_report, enrollment};
use palisade_domain::store::MachineKey;
use palisade_domain::store::{DeviceGroup, StoreError, WriteError};
use palisade_store_sql::ACTION_COLUMNS;
use std::collections::HashMap;
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

async fn save_device(db: &impl Db, device: &Device) -> Result<(), StoreError> {
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

/// What the enrolled (not offboarded) device of a machine declared it can do.
pub(crate) async fn capabilities(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
) -> Result<Vec<palisade_device::Capability>, StoreError> {
    Ok(device_actions::capabilities_in_force(
        device_by_machine(db, tenant_id, machine_id, false).await?,
    ))
}

/// A machine of the tenant by id, whatever its last-seen time, locked.
async fn lock_machine(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
) -> Result<Option<Machine>, StoreError> {
    find_machine(
        db,
        &Visibility::whole_tenant(tenant_id),
        MachineKey::Id(machine_id),
        true,
    )
    .await
}

fn vanished(what: &str) -> StoreError {
    StoreError::Internal(format!("{what} vanished inside its transaction"))
}

pub(crate) async fn enroll(
    db: &impl Db,
    groups: &[DeviceGroup],
    machine: &Machine,
    device: &Device,
    presented_credential_id: Option<&str>,
) -> Result<(Machine, Device), StoreError> {
    let tenant_id = &device.tenant_id;
    // One enrollment of a piece of hardware at a time, on any node: the
    // second sees the first's device (and is a potential duplicate of it).
    db.run(
        "SELECT pg_advisory_xact_lock(hashtext($1 || ' ' || $2))",
        &[tenant_id, &device.hardware_id],
    )
    .await?;
    // Machine first, then its device (the lock order), checked again once locked.
    let presented = match presented_credential_id {
        Some(credential_id) => device_by_credential(db, tenant_id, credential_id).await?,
        None => None,
    };
    let (mut presenting, mut existing) = (None, None);
    if let Some(presented) = presented.filter(|d| d.offboarded_at.is_none()) {
        let machine = lock_machine(db, tenant_id, &presented.machine_id)
            .await?
            .ok_or_else(|| vanished("the machine of an enrolled device"))?;
        presenting = device_by_machine(db, tenant_id, &machine.id, true)
            .await?
            .filter(|d| d.credential_id == presented.credential_id && d.offboarded_at.is_none());
        existing = presenting.is_some().then_some(machine);
    }
    let hardware_enrolled = db
        .row(
            "SELECT 1 FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
             AND offboarded_at IS NULL LIMIT 1",
            &[tenant_id, &device.hardware_id],
        )
        .await?
        .is_some();
    let enrolled = enrollment::Enrolled {
        presenting: presenting.as_ref().zip(existing.as_ref()),
        hardware_enrolled,
    };
    let (mut stored, device) = enrollment::enroll(enrolled, machine, device);
    let old_tags = existing
        .as_ref()
        .map(|m| m.machine_tags.clone())
        .unwrap_or_default();
    device_groups::place(groups, &mut stored);
    save_machine(db, tenant_id, &stored, &old_tags).await?;
    save_ip_history(db, tenant_id, existing.as_ref(), &stored).await?;
    save_device(db, &device).await?;
    Ok((stored, device))
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

/// Writes a batch of check-ins in a few statements: the rows are read (and
/// locked) at once, the domain applies each report, and the changed rows are
/// written back at once.
pub(crate) async fn record_check_ins(
    db: &impl Db,
    records: &[CheckInRecord],
) -> Result<(), StoreError> {
    let mut keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.tenant_id.as_str(), r.machine_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let tenants: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let machine_ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let machine_rows = db
        .rows(
            &format!(
                "SELECT {MACHINE_COLUMNS}, m.tenant_id FROM {MACHINE_FROM} \
                 WHERE (m.tenant_id, m.id) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                 ORDER BY m.tenant_id, m.id FOR UPDATE OF m"
            ),
            &[&tenants, &machine_ids],
        )
        .await?;
    let mut machines = HashMap::with_capacity(machine_rows.len());
    for row in &machine_rows {
        let tenant_id: String = get(row, 32)?;
        let machine = machine_from_row(row)?;
        machines.insert((tenant_id, machine.id.clone()), machine);
    }
    let device_rows = db
        .rows(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM devices \
                 WHERE (tenant_id, machine_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                 ORDER BY tenant_id, machine_id FOR UPDATE"
            ),
            &[&tenants, &machine_ids],
        )
        .await?;
    let mut devices = HashMap::with_capacity(device_rows.len());
    for row in &device_rows {
        let device = device_from_row(row)?;
        devices.insert(
            (device.tenant_id.clone(), device.machine_id.clone()),
            device,
        );
    }
    let mut changed: Vec<(Machine, Device)> = Vec::with_capacity(records.len());
    // Each changed machine as it was, for its address history.
    let mut before: Vec<Machine> = Vec::with_capacity(records.len());
    for record in records {
        let key = (record.tenant_id.clone(), record.machine_id.clone());
        let (Some(machine), Some(device)) = (machines.get_mut(&key), devices.get_mut(&key)) else {
            continue;
        };
        let was = machine.clone();
        if device_report::apply(machine, device, record) {
            changed.push((machine.clone(), device.clone()));
            before.push(was);
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&(Machine, Device)) -> String| changed.iter().map(f).collect::<Vec<_>>();
    let optional =
        |f: fn(&(Machine, Device)) -> Option<String>| changed.iter().map(f).collect::<Vec<_>>();
    let tenant_ids = column(|(_, d)| d.tenant_id.clone());
    let ids = column(|(m, _)| m.id.clone());
    let last_seen: Vec<i64> = changed.iter().map(|(m, _)| m.last_seen.ticks()).collect();
    let ip_addresses = column(|(m, _)| to_json(&m.ip_addresses));
    let last_ip = optional(|(m, _)| m.last_ip_address.clone());
    let last_external_ip = optional(|(m, _)| m.last_external_ip_address.clone());
    let health = column(|(m, _)| m.health_status.as_str().to_string());
    let agent_version = optional(|(m, _)| m.agent_version.clone());
    let isolation = column(|(_, d)| d.isolation.as_str().to_string());
    let isolation_at: Vec<i64> = changed
        .iter()
        .map(|(_, d)| d.isolation_at.ticks())
        .collect();
    db.run(
        "UPDATE machines m SET last_seen = u.last_seen, ip_addresses = u.ip_addresses, \
         last_ip_address = u.last_ip, last_external_ip_address = u.last_external_ip, \
         health_status = u.health, agent_version = u.agent_version \
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[]) \
              AS u(tenant_id, id, last_seen, ip_addresses, last_ip, last_external_ip, health, agent_version) \
         WHERE m.tenant_id = u.tenant_id AND m.id = u.id",
        &[
            &tenant_ids,
            &ids,
            &last_seen,
            &ip_addresses,
            &last_ip,
            &last_external_ip,
            &health,
            &agent_version,
        ],
    )
    .await?;
    for ((machine, device), before) in changed.iter().zip(&before) {
        save_ip_history(db, &device.tenant_id, Some(before), machine).await?;
    }
    db.run(
        "UPDATE devices d SET isolation = u.isolation, isolation_at = u.isolation_at \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) \
              AS u(tenant_id, machine_id, isolation, isolation_at) \
         WHERE d.tenant_id = u.tenant_id AND d.machine_id = u.machine_id",
        &[&tenant_ids, &ids, &isolation, &isolation_at],
    )
    .await?;
    Ok(())
}

/// The machine's Pending and InProgress actions, oldest first.
pub(crate) async fn open_actions(
    db: &impl Db,
    tenant_id: &str,
    machine_id: &str,
) -> Result<Vec<MachineAction>, StoreError> {
    db.rows(
        &format!(
            "SELECT {ACTION_COLUMNS} FROM machine_actions a \
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
    let rows = db
        .rows(
            &format!(
                "UPDATE machine_actions a SET delivered_until = $4 \
                 WHERE (a.tenant_id, a.id) IN (SELECT a.tenant_id, a.id FROM machine_actions a \
                     WHERE {DELIVERABLE} FOR UPDATE SKIP LOCKED) \
                 RETURNING {ACTION_COLUMNS}"
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

pub(crate) async fn change_action(
    db: &impl Db,
    device: &Device,
    action_id: &str,
    decide: DeviceActionDecision,
) -> Result<MachineAction, WriteError> {
    let (tenant_id, machine_id) = (&device.tenant_id, &device.machine_id);
    let machine = lock_machine(db, tenant_id, machine_id)
        .await?
        .ok_or_else(|| WriteError::MachineNotFound(machine_id.clone()))?;
    let current = device_actions::still_enrolled(
        device_by_machine(db, tenant_id, machine_id, true).await?,
        device,
    )?;
    let action = db
        .row(
            &format!(
                "SELECT {ACTION_COLUMNS} FROM machine_actions a \
                 WHERE a.tenant_id = $1 AND a.machine_id = $2 AND a.id = $3 FOR UPDATE"
            ),
            &[tenant_id, machine_id, &action_id],
        )
        .await?
        .map(|row| action_from_row(&row))
        .transpose()?
        .ok_or_else(|| WriteError::ActionNotFound(action_id.to_string()))?;
    let change = decide(&action, &machine, &current)?;
    if change.action != action {
        save_action(db, tenant_id, &change.action).await?;
    }
    if let Some(changed) = &change.machine {
        save_machine(db, tenant_id, changed, &machine.machine_tags).await?;
    }
    if let Some(changed) = &change.device {
        save_device(db, changed).await?;
    }
    Ok(change.action)
}
