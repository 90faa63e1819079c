//! Rows of the device plane: onboarding tokens and enrolled devices, and the
//! transactions that touch a device, its machine and its actions together.

use crate::rows::{action_columns, action_from_row, bind, decoding, SqliteRow, Ticks};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::{Device, OnboardingToken};
use palisade_store_sql::fields::{device_fields, device_upsert, token_fields, token_upsert};
use palisade_store_sql::Dialect;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

pub(crate) fn token_from_row(row: &Row<'_>) -> rusqlite::Result<OnboardingToken> {
    token_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

pub(crate) fn save_token(conn: &Connection, token: &OnboardingToken) -> rusqlite::Result<()> {
    conn.prepare_cached(token_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(token_fields::values(token))))?;
    Ok(())
}

pub(crate) fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    device_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

pub(crate) fn save_device(conn: &Connection, device: &Device) -> rusqlite::Result<()> {
    conn.prepare_cached(device_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(device_fields::values(device))))?;
    Ok(())
}

pub(crate) fn device_by_machine(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
) -> rusqlite::Result<Option<Device>> {
    conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = ?1 AND machine_id = ?2",
        DEVICE_COLUMNS = device_fields::select(Dialect::Sqlite)
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
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = ?1 AND credential_id = ?2",
        DEVICE_COLUMNS = device_fields::select(Dialect::Sqlite)
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
