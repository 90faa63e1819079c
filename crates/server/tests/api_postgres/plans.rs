//! A list led by a tag (`machineTags/any(t: t eq 'x')`) is planned once on
//! PostgreSQL for every tag (`Sql::one_plan`), so that one plan must suit a
//! tag on three machines as well as one on most of them: read the tag's index
//! entries in order and look each machine up by key, never the whole tenant
//! (the merge join PostgreSQL prefers when it cannot tell a tag's rows are
//! few took a hundred times longer at 100,000 machines).
//!
//! Only here: SQLite plans each call.

use crate::backend::connect;
use crate::harness::*;
use palisade_contract::machine::MACHINE_QUERYABLE;
use palisade_contract::odata::ODataQuery;
use palisade_contract::{OsPlatform, Timestamp};
use palisade_domain::caller::{DeviceGroupAccess, Visibility};
use palisade_domain::query::ListQuery;
use palisade_store_postgres::PLANNING_ONCE;
use palisade_store_sql::machine_cache::machine_probes;
use palisade_store_sql::{Dialect, ListSql, Value, MACHINES};

const FLEET: usize = 3_000;
const RARE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_filter_has_one_plan_that_reads_the_tag_index_for_rare_and_common_tags() {
    let server = TestServer::start().await;
    let fleet: Vec<_> = (0..FLEET)
        .map(|i| {
            let mut machine = machine(OsPlatform::Linux);
            machine.id = format!("{i:040x}");
            machine.computer_dns_name = format!("host-{i}");
            machine.machine_tags = if i < RARE {
                vec!["rare".into()]
            } else {
                vec!["common".into()]
            };
            machine
        })
        .collect();
    server.put_machines(&fleet).await;
    let sql = connect(&server.database).await.unwrap();
    sql.batch_execute("ANALYZE machines, machine_tags")
        .await
        .unwrap();

    // What a client sees: the rare tag's machines, the common tag's pages.
    let rare = server
        .get("/api/machines?$filter=machineTags/any(t:t eq 'rare')")
        .await;
    assert_eq!(rare.status, 200, "{}", rare.text);
    assert_eq!(rare.value_ids(), ids(0..RARE));
    let common = server
        .get("/api/machines?$filter=machineTags/any(t:t eq 'common')&$top=4&$skip=10")
        .await;
    assert_eq!(common.status, 200, "{}", common.text);
    assert_eq!(common.value_ids(), ids(RARE + 10..RARE + 14));

    // The statement the store sends for it, with the plan made for all tags.
    let query = ListQuery::resolve(
        &ODataQuery::parse("$filter=machineTags/any(t:t eq 'rare')").unwrap(),
        MACHINE_QUERYABLE,
    )
    .unwrap();
    let visibility = Visibility {
        tenant_id: server.tenant_id.clone(),
        seen_since: Timestamp::from_ticks(0),
        device_groups: DeviceGroupAccess::All,
    };
    let visible = |s: &mut palisade_store_sql::Sql| {
        s.machine_visibility(&visibility);
    };
    let list = ListSql::new(
        Dialect::Postgres,
        &MACHINES,
        machine_probes(Dialect::Postgres, None),
        visible,
        &server.tenant_id,
        &query,
    );
    assert!(
        list.page.one_plan,
        "a tag-led list is not marked to be planned once"
    );
    // Planned once, for every tag; then run for each, and explained.
    // ... on a connection set as the store sets those it sends it to.
    let mut prepared = String::new();
    for (name, value) in PLANNING_ONCE {
        prepared.push_str(&format!("SET {name} = {value}; "));
    }
    prepared.push_str(&format!("PREPARE listed AS {}", list.page.text));
    sql.batch_execute(&prepared).await.unwrap();
    for (tag, expected) in [("rare", RARE), ("common", FLEET - RARE)] {
        let arguments: Vec<String> = list
            .page
            .params
            .iter()
            .map(|value| match value {
                Value::Text(text) if text == "rare" => format!("'{tag}'"),
                Value::Text(text) => format!("'{}'", text.replace('\'', "''")),
                Value::Integer(i) => i.to_string(),
                other => panic!("no such parameter here: {other:?}"),
            })
            .collect();
        let execute = format!("EXECUTE listed({})", arguments.join(", "));
        let rows = sql.simple_query(&execute).await.unwrap();
        let rows = rows
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(rows, expected, "{tag}: the machines the plan finds");
        let plan: Vec<String> = sql
            .query(&format!("EXPLAIN {execute}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("machine_tags_by_tag") && plan.contains("machines_pkey"),
            "{tag}: the plan does not read the tag index, then machines by key:\n{plan}"
        );
        for wasteful in ["Merge Join", "Hash Join", "Seq Scan", "Sort", "Memoize"] {
            assert!(
                !plan.contains(wasteful),
                "{tag}: {wasteful} in the plan:\n{plan}"
            );
        }
    }
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{i:040x}")).collect()
}
