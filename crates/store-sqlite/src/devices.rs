//! Rows of the device plane: onboarding tokens and enrolled devices, and the
//! transactions that touch a device, its machine and its actions together.

use crate::rows::{action_columns, action_from_row, json, ticks, to_json, wire, Ticks};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::{Device, OnboardingToken};
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

pub(crate) fn save_device(conn: &Connection, device: &Device) -> rusqlite::Result<()> {
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

/// A machine's open actions, oldest first, narrowed by `and`. The status
/// condition is spelled as the `machine_actions_open` partial index's is,
/// which SQLite needs to use that index (migration 0006).
fn open_actions_query(and: &str) -> String {
    format!(
        "SELECT {} FROM machine_actions a WHERE a.tenant_id = ?1 AND a.machine_id = ?2 \
         AND a.status IN ('Pending', 'InProgress'){and} ORDER BY a.creation_time, a.id",
        action_columns()
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
