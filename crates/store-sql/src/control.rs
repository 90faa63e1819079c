//! The statements of the emulator control plane's state that writes run in
//! their transactions (both databases run the same text).

use crate::fields::{
    clock_fields, clock_upsert, fault_rule_fields, fault_rule_upsert, outcome_rule_fields,
    outcome_rule_upsert, script_run_fields, script_run_upsert, tenant_seed_upsert,
};
use crate::{Dialect, Sql, Value};
use palisade_contract::Timestamp;
use palisade_domain::caller::Tenant;
use palisade_domain::control::{RecordFilter, ScriptRun, StoredFaultRule, StoredOutcomeRule};
use palisade_domain::{TenantClock, TenantScope};

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

/// The tenant's outcome rules, in the order they apply.
pub fn outcome_rules_of(dialect: Dialect, tenant_id: &str) -> Sql {
    let columns = outcome_rule_fields::select(dialect);
    let equal = [("tenant_id", text(tenant_id))];
    Sql::select_where(
        dialect,
        columns,
        "outcome_rules",
        &equal,
        " ORDER BY position, id",
    )
}

/// One more action taken by the rule.
pub fn count_outcome_hit(dialect: Dialect, tenant_id: &str, rule_id: &str) -> Sql {
    let sql = "UPDATE outcome_rules SET hits = hits + 1 WHERE tenant_id = ?1 AND id = ?2";
    Sql::fixed(
        dialect,
        &dialect.numbered(sql),
        vec![text(tenant_id), text(rule_id)],
    )
}

/// The run of the action, if a rule took it.
pub fn action_script_of(dialect: Dialect, tenant_id: &str, action_id: &str) -> Sql {
    let columns = script_run_fields::select(dialect);
    let equal = [
        ("tenant_id", text(tenant_id)),
        ("action_id", text(action_id)),
    ];
    Sql::select_where(dialect, columns, "action_scripts", &equal, "")
}

/// Saves `run` as the action's run, or (none) forgets the action's run.
pub fn save_action_script(
    dialect: Dialect,
    tenant_id: &str,
    action_id: &str,
    run: Option<&ScriptRun>,
) -> Sql {
    match run {
        Some(run) => Sql::fixed(
            dialect,
            script_run_upsert(dialect),
            script_run_fields::values(run),
        ),
        None => {
            let sql = "DELETE FROM action_scripts WHERE tenant_id = ?1 AND action_id = ?2";
            Sql::fixed(
                dialect,
                &dialect.numbered(sql),
                vec![text(tenant_id), text(action_id)],
            )
        }
    }
}

/// The (tenant, action) of every run of `scope` whose step's duration ends
/// by `now`, soonest first, at most `limit`.
pub fn due_action_scripts(
    dialect: Dialect,
    scope: &TenantScope,
    now: Timestamp,
    limit: i64,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "SELECT tenant_id, action_id FROM action_scripts WHERE due_at IS NOT NULL AND due_at <= ",
    )
    .bind(Value::Integer(now.ticks()));
    sql.tenants_of(scope, "tenant_id");
    sql.push(" ORDER BY due_at LIMIT ")
        .bind(Value::Integer(limit));
    sql
}

/// Which of the tenant's actions `action_ids` a rule's script carries.
pub fn scripted_among(dialect: Dialect, tenant_id: &str, action_ids: &[String]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT action_id FROM action_scripts WHERE tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND action_id IN (");
    for (i, id) in action_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(text(id));
    }
    sql.push(")");
    sql
}

/// The tenant's clock, if the control plane set it, locked for a change.
pub fn tenant_clock_of(dialect: Dialect, tenant_id: &str) -> Sql {
    let equal = [("tenant_id", text(tenant_id))];
    let mut sql = Sql::select_where(
        dialect,
        clock_fields::select(dialect),
        "tenant_clocks",
        &equal,
        "",
    );
    sql.lock("tenant_clocks");
    sql
}

/// Every tenant's clock that the control plane set: the tenant id, then `clock_fields`.
pub fn tenant_clocks(dialect: Dialect) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT tenant_clocks.tenant_id, ")
        .push(clock_fields::select(dialect))
        .push(" FROM tenant_clocks");
    sql
}

pub fn save_tenant_clock(dialect: Dialect, tenant_id: &str, clock: &TenantClock) -> Sql {
    let mut values = vec![text(tenant_id)];
    values.extend(clock_fields::values(clock));
    Sql::fixed(dialect, clock_upsert(dialect), values)
}

/// The tenant's fault rules in the order they apply (none: every tenant's);
/// one `lock`ed by `id`, if given.
pub fn fault_rules_of(dialect: Dialect, tenant_id: Option<&str>, id: Option<&str>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(fault_rule_fields::select(dialect))
        .push(" FROM fault_rules WHERE 1 = 1");
    if let Some(tenant_id) = tenant_id {
        sql.push(" AND fault_rules.tenant_id = ")
            .bind(text(tenant_id));
    }
    match id {
        Some(id) => {
            sql.push(" AND fault_rules.id = ").bind(text(id));
            sql.lock("fault_rules");
        }
        None => {
            sql.push(" ORDER BY fault_rules.tenant_id, fault_rules.position, fault_rules.id");
        }
    }
    sql
}

pub fn save_fault_counts(dialect: Dialect, rule: &StoredFaultRule) -> Sql {
    let sql = "UPDATE fault_rules SET seen = ?1, hits = ?2 WHERE tenant_id = ?3 AND id = ?4";
    let params = vec![
        Value::Integer(rule.seen),
        Value::Integer(rule.hits),
        text(&rule.tenant_id),
        text(&rule.id),
    ];
    Sql::fixed(dialect, &dialect.numbered(sql), params)
}

/// Removes the tenant's row `id` of `table` (a rule table, recorded calls), or all its rows.
pub fn delete_rules(dialect: Dialect, table: &str, tenant_id: &str, id: Option<&str>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM ")
        .push(table)
        .push(" WHERE tenant_id = ")
        .bind(text(tenant_id));
    if let Some(id) = id {
        sql.push(" AND id = ").bind(text(id));
    }
    sql
}

/// Every row of the tenant's state (`control-plane.md`: reset): its
/// machines with their tags, history, devices and actions, device groups,
/// audit (PostgreSQL's count of it too, so that ids start again at 1 as
/// SQLite's do), outcome and fault rules, alerts, indicators, inventories, the live-response library, uploaded files; with `control`, its clock and
/// recorder. Children first. The tenant, its apps, users, keys and
/// onboarding tokens stay.
pub fn clear_tenant_state(dialect: Dialect, tenant_id: &str, control: bool) -> Vec<Sql> {
    const STATE: &[&str] = &[
        // The library, then uploaded files (their chunks and links go with them).
        "library_files",
        "files",
        "alerts",
        "indicators",
        "tenant_counters",
        "action_scripts",
        "machine_actions",
        "machine_ip_history",
        "machine_software",
        "machine_logon_users",
        "machine_tags",
        "devices",
        "audit_machines",
        "audit_log",
        "machines",
        "device_groups",
        "outcome_rules",
        "fault_rules",
    ];
    const CONTROL: &[&str] = &["tenant_clocks", "recorded_calls", "recorders"];
    let audit_count: &[&str] = match dialect {
        Dialect::Postgres => &["audit_sequences"],
        Dialect::Sqlite => &[],
    };
    let control: &[&str] = if control { CONTROL } else { &[] };
    STATE
        .iter()
        .chain(audit_count)
        .chain(control)
        .map(|table| {
            let mut sql = Sql::new(dialect);
            sql.push("DELETE FROM ")
                .push(table)
                .push(" WHERE tenant_id = ")
                .bind(text(tenant_id));
            sql
        })
        .collect()
}

pub fn update_tenant(dialect: Dialect, tenant: &Tenant) -> Sql {
    let sql = "UPDATE tenants SET name = ?1, retention_days = ?2 WHERE id = ?3";
    let params = vec![
        text(&tenant.name),
        Value::Integer(i64::from(tenant.retention_days)),
        text(&tenant.id),
    ];
    Sql::fixed(dialect, &dialect.numbered(sql), params)
}

pub fn save_outcome_rule(dialect: Dialect, rule: &StoredOutcomeRule) -> Sql {
    let values = outcome_rule_fields::values(rule);
    Sql::fixed(dialect, outcome_rule_upsert(dialect), values)
}

pub fn save_fault_rule(dialect: Dialect, rule: &StoredFaultRule) -> Sql {
    let values = fault_rule_fields::values(rule);
    Sql::fixed(dialect, fault_rule_upsert(dialect), values)
}

pub fn save_tenant_seed(dialect: Dialect, tenant_id: &str, document: &str) -> Sql {
    let values = vec![text(tenant_id), text(document)];
    Sql::fixed(dialect, tenant_seed_upsert(dialect), values)
}

pub fn tenant_seed_of(dialect: Dialect, tenant_id: &str) -> Sql {
    let equal = [("tenant_id", text(tenant_id))];
    Sql::select_where(dialect, "document", "tenant_seeds", &equal, "")
}

/// The tenant's recorded calls that `filter` lets through, oldest first,
/// `top` of them after `skip`.
pub fn recorded_calls_of(
    dialect: Dialect,
    tenant_id: &str,
    filter: &RecordFilter,
    skip: u64,
    top: u64,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("SELECT ")
        .push(crate::fields::recorded_call_fields::select(dialect))
        .push(" FROM recorded_calls WHERE recorded_calls.tenant_id = ")
        .bind(text(tenant_id));
    let texts = [
        ("caller", &filter.caller),
        ("operation", &filter.operation),
        ("method", &filter.method),
    ];
    for (column, value) in texts {
        if let Some(value) = value {
            sql.push(" AND recorded_calls.")
                .push(column)
                .push(" = ")
                .bind(text(value));
        }
    }
    if let Some(status) = filter.status {
        sql.push(" AND recorded_calls.status = ")
            .bind(Value::Integer(status));
    }
    if let Some(since) = filter.since {
        sql.push(" AND recorded_calls.time >= ")
            .bind(Value::Integer(since.ticks()));
    }
    sql.push(" ORDER BY recorded_calls.time, recorded_calls.id LIMIT ")
        .bind(Value::Integer(i64::try_from(top).unwrap_or(i64::MAX)))
        .push(" OFFSET ")
        .bind(Value::Integer(i64::try_from(skip).unwrap_or(i64::MAX)));
    sql
}

/// Forgets the tenant's recorded calls older than its newest `keep` (those
/// made at the same time as the oldest kept stay too).
pub fn prune_recorded_calls(dialect: Dialect, tenant_id: &str, keep: u64) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("DELETE FROM recorded_calls WHERE tenant_id = ")
        .bind(text(tenant_id))
        .push(" AND time < (SELECT time FROM recorded_calls WHERE tenant_id = ")
        .bind(text(tenant_id))
        .push(" ORDER BY time DESC LIMIT 1 OFFSET ")
        // The oldest call kept is the `keep`-th newest (at least one is kept).
        .bind(Value::Integer(
            i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX),
        ))
        .push(")");
    sql
}

/// Turns the tenant's recorder on (a row) or off (none).
pub fn set_recorder(dialect: Dialect, tenant_id: &str, enabled: bool) -> Sql {
    let sql = match enabled {
        true => "INSERT INTO recorders (tenant_id) VALUES (?1) ON CONFLICT (tenant_id) DO NOTHING",
        false => "DELETE FROM recorders WHERE tenant_id = ?1",
    };
    Sql::fixed(dialect, &dialect.numbered(sql), vec![text(tenant_id)])
}
