//! Rows of the device plane that SQLite reads and writes its own way: a
//! device inside a write, and the delivery of a machine's actions.

use crate::database::query_rows;
use crate::rows::{action_from_row, bind, decoding, SqliteRow, Ticks};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::Device;
use palisade_store_sql::fields::{device_fields, device_upsert};
use palisade_store_sql::{deliverable_actions, Dialect, Sql, Value};
use rusqlite::{params, params_from_iter, Connection};

pub(crate) fn save_device(conn: &Connection, device: &Device) -> rusqlite::Result<()> {
    conn.prepare_cached(device_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bind(device_fields::values(device))))?;
    Ok(())
}

/// The device whose `column` is `value`, in the tenant.
pub(crate) fn device_where(
    conn: &Connection,
    tenant_id: &str,
    column: &str,
    value: &str,
) -> rusqlite::Result<Option<Device>> {
    let text = |s: &str| Value::Text(s.to_string());
    let columns = device_fields::select(Dialect::Sqlite);
    let equal = [("tenant_id", text(tenant_id)), (column, text(value))];
    let sql = Sql::select_where(Dialect::Sqlite, columns, "devices", &equal, "");
    let mut found = query_rows(conn, &sql, |row| {
        device_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
    })?;
    Ok(found.pop())
}

/// The machine's open actions (`open_actions`) or those free to deliver at
/// `now` (`deliverable_actions`), oldest first.
pub(crate) fn machine_actions(
    conn: &Connection,
    sql: &'static str,
    tenant_id: &str,
    machine_id: &str,
    now: Option<Timestamp>,
) -> rusqlite::Result<Vec<MachineAction>> {
    let text = |s: &str| Value::Text(s.to_string());
    let mut params = vec![text(tenant_id), text(machine_id)];
    params.extend(now.map(|now| Value::Integer(now.ticks())));
    query_rows(
        conn,
        &Sql::fixed(Dialect::Sqlite, sql, params),
        action_from_row,
    )
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
    let deliverable = deliverable_actions(Dialect::Sqlite);
    let actions = machine_actions(conn, deliverable, tenant_id, machine_id, Some(now))?;
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
    use crate::connection::query_plan as plan;
    use palisade_store_sql::{deliverable_actions, open_actions, Dialect};

    /// Read on every action posted and every check-in: it must not walk the
    /// tenant's action history, which it did before migration 0006.
    #[test]
    fn open_actions_are_read_through_their_own_index() {
        for sql in [
            open_actions(Dialect::Sqlite),
            deliverable_actions(Dialect::Sqlite),
        ] {
            let plan = plan(sql);
            assert!(
                plan.contains("USING INDEX machine_actions_open") && !plan.contains("B-TREE"),
                "{plan}"
            );
        }
    }
}
