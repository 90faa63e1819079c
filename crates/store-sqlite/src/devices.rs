//! Rows of the device plane: onboarding tokens and enrolled devices, and the
//! transactions that touch a device, its machine and its actions together.

use crate::rows::{action_from_row, json, save_action, save_machine, ticks, to_json, wire, Ticks};
use crate::store::{find_machine, save_ip_history};
use palisade_contract::{Machine, MachineAction, Timestamp};
use palisade_domain::caller::Visibility;
use palisade_domain::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use palisade_domain::rules::{device_actions, device_groups, device_report, enrollment};
use palisade_domain::store::MachineKey;
use palisade_domain::store::{DeviceGroup, WriteError};
use palisade_store_sql::ACTION_COLUMNS;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(crate) const TOKEN_COLUMNS: &str =
    "tenant_id, id, description, secret_hash, created_at, revoked_at";

pub(crate) fn token_from_row(row: &Row<'_>) -> rusqlite::Result<OnboardingToken> {
    Ok(OnboardingToken {
        tenant_id: row.get(0)?,
        id: row.get(1)?,
        description: row.get(2)?,
        secret_hash: row.get(3)?,
        created_at: ticks(row, 4)?,
        revoked_at: row.get::<_, Option<Ticks>>(5)?.map(|t| t.0),
    })
}

pub(crate) fn save_token(conn: &Connection, token: &OnboardingToken) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO onboarding_tokens (tenant_id, id, description, secret_hash, created_at, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, id) DO UPDATE SET \
         description = excluded.description, secret_hash = excluded.secret_hash, \
         created_at = excluded.created_at, revoked_at = excluded.revoked_at",
    )?
    .execute(params![
        token.tenant_id,
        token.id,
        token.description,
        token.secret_hash,
        Ticks(token.created_at),
        token.revoked_at.map(Ticks),
    ])?;
    Ok(())
}

pub(crate) const DEVICE_COLUMNS: &str = "tenant_id, machine_id, credential_id, credential_hash, \
    hardware_id, onboarding_token_id, capabilities, enrolled_at, offboarded_at, isolation, isolation_at";

pub(crate) fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        tenant_id: row.get(0)?,
        machine_id: row.get(1)?,
        credential_id: row.get(2)?,
        credential_hash: row.get(3)?,
        hardware_id: row.get(4)?,
        onboarding_token_id: row.get(5)?,
        capabilities: json(row, 6)?,
        enrolled_at: ticks(row, 7)?,
        offboarded_at: row.get::<_, Option<Ticks>>(8)?.map(|t| t.0),
        isolation: wire(row, 9)?,
        isolation_at: ticks(row, 10)?,
    })
}

fn save_device(conn: &Connection, device: &Device) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (tenant_id, machine_id) DO UPDATE SET credential_id = excluded.credential_id, \
         credential_hash = excluded.credential_hash, hardware_id = excluded.hardware_id, \
         onboarding_token_id = excluded.onboarding_token_id, capabilities = excluded.capabilities, \
         enrolled_at = excluded.enrolled_at, offboarded_at = excluded.offboarded_at, \
         isolation = excluded.isolation, isolation_at = excluded.isolation_at"
    ))?
    .execute(params![
        device.tenant_id,
        device.machine_id,
        device.credential_id,
        device.credential_hash,
        device.hardware_id,
        device.onboarding_token_id,
        to_json(&device.capabilities),
        Ticks(device.enrolled_at),
        device.offboarded_at.map(Ticks),
        device.isolation.as_str(),
        Ticks(device.isolation_at),
    ])?;
    Ok(())
}

pub(crate) fn device_by_machine(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Option<Device>> {
    conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = ?1 AND machine_id = ?2"
    ))?
    .query_row([tenant_id, machine_id], device_from_row)
    .optional()
}

/// What the enrolled (not offboarded) device of a machine declared it can do.
pub(crate) fn capabilities(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Vec<palisade_device::Capability>> {
    Ok(device_actions::capabilities_in_force(device_by_machine(
        conn, tenant_id, machine_id,
    )?))
}

/// A machine of the tenant by id, whatever its last-seen time.
fn machine_by_id(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Option<Machine>> {
    find_machine(
        conn,
        &Visibility::whole_tenant(tenant_id),
        MachineKey::Id(machine_id),
    )
}

fn missing_row(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidParameterName(format!("{what} vanished inside its transaction"))
}

pub(crate) fn enroll(
    conn: &Connection,
    groups: &[DeviceGroup],
    machine: &Machine,
    device: &Device,
    presented_credential_id: Option<&str>,
) -> rusqlite::Result<(Machine, Device)> {
    let tenant_id = &device.tenant_id;
    let presenting = match presented_credential_id {
        Some(credential_id) => device_by_credential(conn, tenant_id, credential_id)?
            .filter(|d| d.offboarded_at.is_none()),
        None => None,
    };
    let existing = match &presenting {
        Some(current) => Some(
            machine_by_id(conn, tenant_id, &current.machine_id)?
                .ok_or_else(|| missing_row("the machine of an enrolled device"))?,
        ),
        None => None,
    };
    let hardware_enrolled = conn
        .prepare_cached(
            "SELECT 1 FROM devices WHERE tenant_id = ?1 AND hardware_id = ?2 \
             AND offboarded_at IS NULL LIMIT 1",
        )?
        .exists([tenant_id, &device.hardware_id])?;
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
    save_machine(conn, tenant_id, &stored, &old_tags)?;
    save_ip_history(conn, tenant_id, existing.as_ref(), &stored)?;
    save_device(conn, &device)?;
    Ok((stored, device))
}

pub(crate) fn device_by_credential(
    conn: &Connection,
    tenant_id: &str,
    credential_id: &str,
) -> rusqlite::Result<Option<Device>> {
    conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = ?1 AND credential_id = ?2"
    ))?
    .query_row([tenant_id, credential_id], device_from_row)
    .optional()
}

pub(crate) fn record_check_ins(
    conn: &Connection,
    records: &[CheckInRecord],
) -> rusqlite::Result<()> {
    let mut update_machine = conn.prepare_cached(
        "UPDATE machines SET last_seen = ?3, ip_addresses = ?4, last_ip_address = ?5, \
         last_external_ip_address = ?6, health_status = ?7, agent_version = ?8, \
         revision = random() WHERE tenant_id = ?1 AND id = ?2",
    )?;
    let mut update_device = conn.prepare_cached(
        "UPDATE devices SET isolation = ?3, isolation_at = ?4 WHERE tenant_id = ?1 AND machine_id = ?2",
    )?;
    for record in records {
        let (tenant_id, machine_id) = (&record.tenant_id, &record.machine_id);
        let (Some(mut device), Some(mut machine)) = (
            device_by_machine(conn, tenant_id, machine_id)?,
            machine_by_id(conn, tenant_id, machine_id)?,
        ) else {
            continue;
        };
        let before = machine.clone();
        if !device_report::apply(&mut machine, &mut device, record) {
            continue;
        }
        update_machine.execute(params![
            tenant_id,
            machine_id,
            Ticks(machine.last_seen),
            to_json(&machine.ip_addresses),
            machine.last_ip_address,
            machine.last_external_ip_address,
            machine.health_status.as_str(),
            machine.agent_version,
        ])?;
        save_ip_history(conn, tenant_id, Some(&before), &machine)?;
        update_device.execute(params![
            tenant_id,
            machine_id,
            device.isolation.as_str(),
            Ticks(device.isolation_at),
        ])?;
    }
    Ok(())
}

/// A machine's open actions, oldest first, narrowed by `and`. The status
/// condition is spelled as the `machine_actions_open` partial index's is,
/// which SQLite needs to use that index (migration 0006).
fn open_actions_query(and: &str) -> String {
    format!(
        "SELECT {ACTION_COLUMNS} FROM machine_actions a WHERE a.tenant_id = ?1 AND a.machine_id = ?2 \
         AND a.status IN ('Pending', 'InProgress'){and} ORDER BY a.creation_time, a.id"
    )
}

pub(crate) fn open_actions(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Vec<MachineAction>> {
    conn.prepare_cached(&open_actions_query(""))?
        .query_map([tenant_id, machine_id], action_from_row)?
        .collect()
}

/// Open actions no delivery holds at `now`.
pub(crate) fn deliverable_actions(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
    now: Timestamp,
) -> rusqlite::Result<Vec<MachineAction>> {
    conn.prepare_cached(&open_actions_query(
        " AND (a.delivered_until IS NULL OR a.delivered_until <= ?3)",
    ))?
    .query_map(params![tenant_id, machine_id, Ticks(now)], action_from_row)?
    .collect()
}

/// Delivers the deliverable actions, holding them until `held_until`; the
/// single writer makes the read and the hold one step.
pub(crate) fn claim_actions(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
    now: Timestamp,
    held_until: Timestamp,
) -> rusqlite::Result<Vec<MachineAction>> {
    let actions = deliverable_actions(conn, tenant_id, machine_id, now)?;
    let mut hold = conn.prepare_cached(
        "UPDATE machine_actions SET delivered_until = ?3 WHERE tenant_id = ?1 AND id = ?2",
    )?;
    for action in &actions {
        hold.execute(params![tenant_id, action.id, Ticks(held_until)])?;
    }
    Ok(actions)
}

pub(crate) fn change_action(
    conn: &Connection,
    device: &Device,
    action_id: &str,
    decide: DeviceActionDecision,
) -> Result<MachineAction, WriteError> {
    let failure = |e: rusqlite::Error| WriteError::Store(crate::workers::store_error(e));
    let (tenant_id, machine_id) = (&device.tenant_id, &device.machine_id);
    let action = conn
        .prepare_cached(&format!(
            "SELECT {ACTION_COLUMNS} FROM machine_actions a \
             WHERE a.tenant_id = ?1 AND a.machine_id = ?2 AND a.id = ?3"
        ))
        .and_then(|mut s| {
            s.query_row(
                [tenant_id, machine_id, &action_id.to_string()],
                action_from_row,
            )
            .optional()
        })
        .map_err(failure)?
        .ok_or_else(|| WriteError::ActionNotFound(action_id.to_string()))?;
    let machine = machine_by_id(conn, tenant_id, machine_id)
        .map_err(failure)?
        .ok_or_else(|| WriteError::MachineNotFound(machine_id.clone()))?;
    let current = device_actions::still_enrolled(
        device_by_machine(conn, tenant_id, machine_id).map_err(failure)?,
        device,
    )?;
    let change = decide(&action, &machine, &current)?;
    if change.action != action {
        save_action(conn, tenant_id, &change.action).map_err(failure)?;
    }
    if let Some(changed) = &change.machine {
        save_machine(conn, tenant_id, changed, &machine.machine_tags).map_err(failure)?;
    }
    if let Some(changed) = &change.device {
        save_device(conn, changed).map_err(failure)?;
    }
    Ok(change.action)
}

#[cfg(test)]
mod tests {
    use super::open_actions_query;
    use crate::connection::query_plan as plan;

    /// Read on every action posted and every check-in: it must not walk the
    /// tenant's action history, which it did before migration 0006.
    #[test]
    fn open_actions_are_read_through_their_own_index() {
        for and in ["", " AND a.delivered_until IS NULL"] {
            let plan = plan(&open_actions_query(and));
            assert!(
                plan.contains("USING INDEX machine_actions_open") && !plan.contains("B-TREE"),
                "{plan}"
            );
        }
    }
}
