//! The statements of alerts, indicators and the tenant counters their
//! writes reserve from, for both databases.

use crate::fields::{
    alert_fields, alert_upsert, indicator_fields, indicator_row, indicator_upsert,
};
use crate::{Dialect, Sql, Value};
use palisade_contract::{Alert, Indicator, Timestamp};
use palisade_domain::caller::Visibility;
use palisade_domain::store::StoreError;
use palisade_domain::writes::Counter;

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// ` IN (?, ?, ...)` of `values` (never empty: an empty list matches nothing).
fn in_list(sql: &mut Sql, values: impl IntoIterator<Item = Value>) {
    sql.push(" IN (");
    let mut any = false;
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(value);
        any = true;
    }
    if !any {
        sql.push("NULL");
    }
    sql.push(")");
}

/// The columns an alert's read selects: `alert_fields::select`, with an
/// empty evidence list in place of the stored one unless `with_evidence`
/// (lists show it only on `$expand=evidence`, and it is most of a row).
pub fn alert_columns(dialect: Dialect, with_evidence: bool) -> &'static str {
    fn without_evidence(dialect: Dialect) -> String {
        let columns: Vec<&str> = alert_fields::select(dialect)
            .split(", ")
            .map(|column| {
                if column == "l.evidence" {
                    "'[]'"
                } else {
                    column
                }
            })
            .collect();
        columns.join(", ")
    }
    if with_evidence {
        alert_fields::select(dialect)
    } else {
        once_per_dialect!(dialect, without_evidence)
    }
}

/// Reserves `count` values of the tenant's `counter`, the first one past
/// the last and at least `at_least`; selects the last reserved. The
/// upsert locks the row until the transaction ends.
pub fn reserve(
    dialect: Dialect,
    tenant_id: &str,
    counter: Counter,
    at_least: i64,
    count: i64,
) -> Sql {
    let greatest = match dialect {
        Dialect::Sqlite => "max",
        Dialect::Postgres => "GREATEST",
    };
    let mut sql = Sql::new(dialect);
    sql.push("INSERT INTO tenant_counters (tenant_id, counter, value) VALUES (")
        .bind(text(tenant_id))
        .push(", ")
        .bind(text(counter.name()))
        .push(", ")
        .bind(Value::Integer(at_least + count - 1))
        .push(") ON CONFLICT (tenant_id, counter) DO UPDATE SET value = ")
        .push(greatest)
        .push("(tenant_counters.value + 1, ")
        .bind(Value::Integer(at_least))
        .push(") + ")
        .bind(Value::Integer(count - 1))
        .push(" RETURNING value");
    sql
}

/// The first of the `count` values a [`reserve`] that returned `last` reserved.
pub fn first_reserved(last: Option<i64>, count: i64) -> Result<i64, StoreError> {
    let last = last.ok_or_else(|| StoreError::Internal("a counter returned no row".into()))?;
    Ok(last - count + 1)
}

/// `l.tenant_id = ? AND l.last_update_time >= ? [AND its machine in the
/// caller's groups]`: alerts are visible where their machine's device
/// group is, while updated within retention.
pub fn alert_visibility(sql: &mut Sql, visibility: &Visibility) {
    // SQLite bounds an index range by one condition of a column, chosen
    // without the parameters' values: the unary plus keeps retention's
    // bound (nearly always the whole index) from being the one it takes
    // over a filter's `lastUpdateTime gt T`. PostgreSQL keeps the tighter
    // of the two bounds itself.
    let updated = match sql.dialect {
        Dialect::Sqlite => " AND +l.last_update_time >= ",
        Dialect::Postgres => " AND l.last_update_time >= ",
    };
    sql.push("l.tenant_id = ")
        .bind(text(&visibility.tenant_id))
        .push(updated)
        .bind(Value::Integer(visibility.seen_since.ticks()));
    if let palisade_domain::DeviceGroupAccess::Only(groups) = &visibility.device_groups {
        sql.push(" AND l.machine_id IN (SELECT v.id FROM machines v WHERE v.tenant_id = ")
            .bind(text(&visibility.tenant_id))
            .push(" AND v.rbac_group_id");
        in_list(sql, groups.iter().map(|g| Value::Integer(*g)));
        sql.push(")");
    }
}

/// The alerts of `ids` among those `visibility` shows; `lock`ed if asked.
pub fn alerts_with_ids(
    dialect: Dialect,
    visibility: &Visibility,
    ids: &[String],
    lock: bool,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(alert_fields::select(dialect))
        .push(" FROM alerts l WHERE ");
    alert_visibility(&mut sql, visibility);
    sql.push(" AND l.id");
    in_list(&mut sql, ids.iter().map(|id| text(id)));
    sql.push(" ORDER BY l.id");
    if lock {
        sql.lock("l");
    }
    sql
}

/// The machine's open alert titled `title` (the newest, if several), locked.
pub fn open_alert_titled(dialect: Dialect, tenant_id: &str, machine_id: &str, title: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(alert_fields::select(dialect))
        .push(" FROM alerts l WHERE l.tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND l.machine_id = ")
        .bind(text(machine_id))
        .push(" AND l.title = ")
        .bind(text(title))
        .push(" AND l.status <> 'Resolved' ORDER BY l.alert_creation_time DESC LIMIT 1");
    sql.lock("l");
    sql
}

pub fn save_alert(dialect: Dialect, tenant_id: &str, alert: &Alert) -> Sql {
    let mut values = vec![text(tenant_id)];
    values.extend(alert_fields::values(alert));
    Sql::fixed(dialect, alert_upsert(dialect), values)
}

fn indicators_where(dialect: Dialect, tenant_id: &str, column: &str, values: Vec<Value>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(indicator_fields::select(dialect))
        .push(" FROM indicators i WHERE i.tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND ")
        .push(column);
    in_list(&mut sql, values);
    sql.push(" ORDER BY i.id");
    sql.lock("i");
    sql
}

/// The tenant's indicators whose matched value is one of `keys`, locked.
pub fn indicators_with_keys(dialect: Dialect, tenant_id: &str, keys: &[String]) -> Sql {
    let keys = keys.iter().map(|k| text(k)).collect();
    indicators_where(dialect, tenant_id, "i.value_key", keys)
}

/// The tenant's indicators of `ids`, locked.
pub fn indicators_with_ids(dialect: Dialect, tenant_id: &str, ids: &[i64]) -> Sql {
    let ids = ids.iter().map(|id| Value::Integer(*id)).collect();
    indicators_where(dialect, tenant_id, "i.id", ids)
}

/// `i.tenant_id = ? AND (in force at now) [AND i.created_by = ?]`.
pub fn indicator_visibility(
    sql: &mut Sql,
    tenant_id: &str,
    created_by: Option<&str>,
    now: Timestamp,
) {
    sql.push("i.tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND (i.expiration_time IS NULL OR i.expiration_time > ")
        .bind(Value::Integer(now.ticks()))
        .push(")");
    if let Some(created_by) = created_by {
        sql.push(" AND i.created_by = ").bind(text(created_by));
    }
}

/// How many of the tenant's indicators are in force at `now`.
pub fn active_indicator_count(dialect: Dialect, tenant_id: &str, now: Timestamp) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT COUNT(*) FROM indicators i WHERE ");
    indicator_visibility(&mut sql, tenant_id, None, now);
    sql
}

pub fn save_indicator(dialect: Dialect, tenant_id: &str, indicator: &Indicator, key: &str) -> Sql {
    let mut values = vec![text(tenant_id)];
    values.extend(indicator_row(indicator, key));
    Sql::fixed(dialect, indicator_upsert(dialect), values)
}

pub fn delete_indicators(dialect: Dialect, tenant_id: &str, ids: &[i64]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM indicators WHERE tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND id");
    in_list(&mut sql, ids.iter().map(|id| Value::Integer(*id)));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_every_column_but_the_evidence() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let all = alert_columns(dialect, true);
            let listed = alert_columns(dialect, false);
            assert!(all.contains("l.evidence"), "{all}");
            assert!(!listed.contains("l.evidence"), "{listed}");
            assert_eq!(all.split(", ").count(), listed.split(", ").count());
        }
    }
}
