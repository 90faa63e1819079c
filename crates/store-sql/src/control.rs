//! The statements of the emulator control plane's state that writes run in
//! their transactions (both databases run the same text).

use crate::fields::{outcome_rule_fields, script_run_fields, script_run_upsert};
use crate::{Dialect, Sql, Value};
use palisade_contract::Timestamp;
use palisade_domain::control::ScriptRun;

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

/// The (tenant, action) of every run whose step's duration ends by `now`
/// (of `tenant_id` only, if given), soonest first, at most `limit`.
pub fn due_action_scripts(
    dialect: Dialect,
    tenant_id: Option<&str>,
    now: Timestamp,
    limit: i64,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "SELECT tenant_id, action_id FROM action_scripts WHERE due_at IS NOT NULL AND due_at <= ",
    )
    .bind(Value::Integer(now.ticks()));
    if let Some(tenant_id) = tenant_id {
        sql.push(" AND tenant_id = ").bind(text(tenant_id));
    }
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
