//! A machine's revision (migration V6) changes with every change to what
//! the machine shows, whoever makes it: Palisade's own writes, through the
//! API and the store, and statements typed by hand on a connection of their
//! own. A machine left alone keeps its revision. A copy of a machine held in
//! memory is checked against its row's revision, as on SQLite (0007).
//!
//! Only here: SQLite's revisions are checked by its store's unit tests.

use crate::backend::connect;
use crate::harness::*;
use palisade_contract::{HealthStatus, OsPlatform};
use palisade_device::{CheckIn, Isolation};
use palisade_domain::rules::device_groups::GroupRules;
use palisade_domain::store::DeviceGroup;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// The revisions of the test tenant's machines, read on a connection of
/// the test's own (the server's pool knows nothing of it).
struct Revisions {
    sql: tokio_postgres::Client,
    tenant_id: String,
}

type Snapshot = BTreeMap<String, i64>;

impl Revisions {
    async fn of(server: &TestServer) -> Revisions {
        Revisions {
            sql: connect(&server.database).await.unwrap(),
            tenant_id: server.tenant_id.clone(),
        }
    }

    /// Every machine of the tenant, by id, with its revision.
    async fn snapshot(&self) -> Snapshot {
        self.sql
            .query(
                "SELECT id, revision FROM machines WHERE tenant_id = $1",
                &[&self.tenant_id],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// A statement of the test's own; `$1` is the tenant's id.
    async fn run(&self, sql: &str, more: &[&(dyn ToSql + Sync)]) -> u64 {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.tenant_id];
        params.extend_from_slice(more);
        self.sql
            .execute(sql, &params)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Asserts that since `before` exactly the machines `changed` have a new
    /// revision (and not 0, which means none yet), and every other machine
    /// of `before` its old one; answers the revisions now.
    async fn assert_new(&self, before: &Snapshot, changed: &[&str], what: &str) -> Snapshot {
        let now = self.snapshot().await;
        for id in changed {
            assert!(before.contains_key(*id), "{what}: {id} is no machine");
        }
        for (id, old) in before {
            let new = now.get(id).copied();
            if changed.contains(&id.as_str()) {
                assert_ne!(new, Some(*old), "{what}: {id} kept its revision");
                assert_ne!(new, Some(0), "{what}: {id} has no revision");
            } else {
                assert_eq!(
                    new,
                    Some(*old),
                    "{what}: {id}, untouched, has a new revision"
                );
            }
        }
        now
    }
}

/// Palisade's own writes, each the way a caller makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_writes_give_the_machines_they_change_a_new_revision() {
    let server = TestServer::start().await;
    let revisions = Revisions::of(&server).await;
    server.put_group(1, "Servers").await;
    // a in group 1 (a label: the machines reported in it), b in none.
    let mut a = machine(OsPlatform::WindowsServer2022);
    a.rbac_group_id = 1;
    let b = machine(OsPlatform::Linux);
    server.put_machines(&[a.clone(), b.clone()]).await;
    let ids = (a.id.clone(), b.id.clone());
    let (a_id, b_id) = (ids.0.as_str(), ids.1.as_str());
    let stored = revisions.snapshot().await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored.values().all(|r| *r != 0),
        "a new machine gets a revision: {stored:?}"
    );

    // A report (put_machines): the upsert's DO UPDATE.
    a.computer_dns_name = "renamed.test.local".into();
    server.put_machines(std::slice::from_ref(&a)).await;
    let r = revisions.assert_new(&stored, &[a_id], "a report").await;

    let tag = |action: &'static str| {
        let server = &server;
        async move {
            let reply = server
                .post(
                    &format!("/api/machines/{a_id}/tags"),
                    json!({"Value": "finance", "Action": action}),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    };
    tag("Add").await;
    let r = revisions.assert_new(&r, &[a_id], "a tag added").await;
    tag("Remove").await;
    let r = revisions.assert_new(&r, &[a_id], "a tag removed").await;
    let bulk = server
        .post(
            "/api/machines/AddOrRemoveTagForMultipleMachines",
            json!({"Value": "fleet", "Action": "Add", "MachineIds": [a_id, b_id]}),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    let r = revisions.assert_new(&r, &[a_id, b_id], "a bulk tag").await;

    // An isolate writes an action, not the machine: nothing the machine
    // shows changes, so its copy stays good (as on SQLite).
    let shown = server.get(&format!("/api/machines/{a_id}")).await.json;
    let isolate = server
        .post(
            &format!("/api/machines/{a_id}/isolate"),
            json!({"Comment": "contain", "IsolationType": "Full"}),
        )
        .await;
    assert_eq!(isolate.status, 201, "{}", isolate.text);
    let r = revisions.assert_new(&r, &[], "an isolate").await;
    assert_eq!(
        server.get(&format!("/api/machines/{a_id}")).await.json,
        shown
    );

    // put_device_group: a rename changes its machines' rbacGroupName...
    server.put_group(1, "Front").await;
    let r = revisions.assert_new(&r, &[a_id], "group 1 renamed").await;
    // ...the same group again changes nothing...
    server.put_group(1, "Front").await;
    let r = revisions.assert_new(&r, &[], "group 1 put unchanged").await;
    // ...and a group whose rules take b moves it (move_machines).
    server
        .admin
        .put_device_group(
            &server.tenant_id,
            &DeviceGroup {
                id: 2,
                name: "Linux".into(),
                rank: 1,
                rules: GroupRules {
                    os_platforms: vec![OsPlatform::Linux],
                    ..GroupRules::default()
                },
            },
        )
        .await
        .unwrap();
    let moved = server.get(&format!("/api/machines/{b_id}")).await.json;
    assert_eq!(moved["rbacGroupName"], "Linux", "{moved}");
    let r = revisions
        .assert_new(&r, &[b_id], "b moved to group 2")
        .await;

    // A device's check-in (save_reports), written by the check-in writer.
    let enrolled = server.enroll_windows("pc-revision").await;
    let c_id = enrolled.enrollment.machine_id.clone();
    let r = revisions.assert_new(&r, &[], "c enrolled").await;
    let r = {
        // The enrolled machine, new since `r`.
        let mut with_c = r.clone();
        with_c.insert(c_id.clone(), revisions.snapshot().await[&c_id]);
        with_c
    };
    server.clock.advance(120);
    enrolled
        .device
        .check_in(
            &CheckIn {
                health_status: Some(HealthStatus::ImpairedCommunication),
                isolation: Isolation::None,
                ..CheckIn::default()
            },
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(server.devices.flush_check_ins().await.unwrap(), 1);
    revisions.assert_new(&r, &[&c_id], "c checked in").await;
}

/// Statements typed by hand (psql, a migration script): the triggers give
/// the machines they change new revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_of_another_connection_give_the_machines_they_change_a_new_revision() {
    let server = TestServer::start().await;
    let revisions = Revisions::of(&server).await;
    server.put_group(1, "Servers").await;
    let mut a = machine(OsPlatform::WindowsServer2022);
    a.rbac_group_id = 1;
    let b = machine(OsPlatform::Windows11);
    server.put_machines(&[a.clone(), b.clone()]).await;
    let (a_id, b_id) = (a.id.as_str(), b.id.as_str());
    let r = revisions.snapshot().await;

    revisions
        .run(
            "UPDATE machines SET health_status = 'Inactive' WHERE tenant_id = $1 AND id = $2",
            &[&a_id],
        )
        .await;
    let r = revisions.assert_new(&r, &[a_id], "UPDATE machines").await;

    let add = "INSERT INTO machine_tags (tenant_id, machine_id, position, tag) \
               SELECT $1, id, 0, $2 FROM unnest($3::text[]) AS id";
    revisions.run(add, &[&"one", &vec![a_id]]).await;
    let r = revisions.assert_new(&r, &[a_id], "INSERT a tag").await;
    let removed = revisions
        .run(
            "DELETE FROM machine_tags WHERE tenant_id = $1 AND machine_id = $2 AND tag = 'one'",
            &[&a_id],
        )
        .await;
    assert_eq!(removed, 1);
    let r = revisions.assert_new(&r, &[a_id], "DELETE a tag").await;
    // One statement, two machines: one trigger, both machines.
    revisions.run(add, &[&"two", &vec![a_id, b_id]]).await;
    let r = revisions
        .assert_new(&r, &[a_id, b_id], "INSERT tags of two machines at once")
        .await;
    let shown = server.get(&format!("/api/machines/{a_id}")).await.json;
    assert_eq!(shown["machineTags"], json!(["two"]), "{shown}");
    revisions
        .run(
            "DELETE FROM machine_tags WHERE tenant_id = $1 AND machine_id = ANY($2)",
            &[&vec![a_id, b_id]],
        )
        .await;
    let r = revisions
        .assert_new(&r, &[a_id, b_id], "DELETE tags of two machines at once")
        .await;
    // A statement that changes no tag row changes no machine.
    revisions
        .run(
            "DELETE FROM machine_tags WHERE tenant_id = $1 AND tag = 'none'",
            &[],
        )
        .await;
    let r = revisions.assert_new(&r, &[], "DELETE no tag").await;

    // a is in group 1, b in none.
    revisions
        .run(
            "UPDATE device_groups SET name = 'Front' WHERE tenant_id = $1 AND id = 1",
            &[],
        )
        .await;
    let r = revisions.assert_new(&r, &[a_id], "rename group 1").await;
    revisions
        .run(
            "UPDATE device_groups SET rank = 7, name = name WHERE tenant_id = $1 AND id = 1",
            &[],
        )
        .await;
    let r = revisions
        .assert_new(&r, &[], "group 1 updated, its name the same")
        .await;
    revisions
        .run(
            "DELETE FROM device_groups WHERE tenant_id = $1 AND id = 1",
            &[],
        )
        .await;
    let r = revisions.assert_new(&r, &[a_id], "DELETE group 1").await;
    let shown = server.get(&format!("/api/machines/{a_id}")).await.json;
    assert_eq!(shown["rbacGroupName"], serde_json::Value::Null, "{shown}");
    revisions
        .run(
            "INSERT INTO device_groups (tenant_id, id, name, rank, rules) \
             VALUES ($1, 1, 'Back', 1, '{}')",
            &[],
        )
        .await;
    let r = revisions
        .assert_new(&r, &[a_id], "INSERT group 1 again")
        .await;

    // A writer that sets the revision keeps it; 0 (none) it cannot set.
    revisions
        .run(
            "UPDATE machines SET revision = 12345 WHERE tenant_id = $1 AND id = $2",
            &[&a_id],
        )
        .await;
    let r = revisions
        .assert_new(&r, &[a_id], "revision set by its writer")
        .await;
    assert_eq!(r[a_id], 12345);
    revisions
        .run(
            "UPDATE machines SET revision = 0 WHERE tenant_id = $1 AND id = $2",
            &[&a_id],
        )
        .await;
    let r = revisions.assert_new(&r, &[a_id], "revision set to 0").await;

    // Deleted, then written again (a report): not the revision it had.
    revisions
        .run(
            "DELETE FROM machines WHERE tenant_id = $1 AND id = $2",
            &[&a_id],
        )
        .await;
    assert!(!revisions.snapshot().await.contains_key(a_id));
    server.put_machines(std::slice::from_ref(&a)).await;
    revisions
        .assert_new(&r, &[a_id], "deleted and reported again")
        .await;
}

/// Renaming a group writes its machines (their revisions), so
/// put_device_group locks the tenant's machines in key order before it
/// writes the group, as every write takes machines first, in key order.
/// Here another transaction, taking machines in key order too, holds the
/// first while the group of the second is renamed: the rename waits for it
/// holding no machine, and the other transaction goes on to the second.
/// (Had the rename's trigger locked the second first, each would wait for
/// the other, and PostgreSQL would end one of them as a deadlock.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rename_takes_its_machines_in_key_order() {
    let server = TestServer::start().await;
    server.put_group(1, "Servers").await;
    let first = machine(OsPlatform::Windows11);
    let mut second = machine(OsPlatform::WindowsServer2022);
    second.rbac_group_id = 1;
    assert!(first.id < second.id);
    server.put_machines(&[first.clone(), second.clone()]).await;
    let before = Revisions::of(&server).await;
    let r = before.snapshot().await;

    let mut other = connect(&server.database).await.unwrap();
    let watcher = connect(&server.database).await.unwrap();
    let tx = other.transaction().await.unwrap();
    let lock = "SELECT 1 FROM machines WHERE tenant_id = $1 AND id = $2 FOR UPDATE";
    tx.execute(lock, &[&server.tenant_id, &first.id])
        .await
        .unwrap();
    let renamed_group = DeviceGroup::label(1, "Front");
    let rename = server
        .palisade
        .store()
        .put_device_group(&server.tenant_id, &renamed_group);
    let other_transaction = async {
        // Until the rename waits for a lock...
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                       AND wait_event_type = 'Lock'";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while watcher
            .query_one(waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the rename never waited for the locked machine"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...then the second machine, which the rename must not hold.
        let second_locked = tokio::time::timeout(
            Duration::from_secs(10),
            tx.execute(lock, &[&server.tenant_id, &second.id]),
        )
        .await
        .expect("the second machine stayed locked");
        second_locked.expect("locking the second machine");
        tx.commit().await.unwrap();
    };
    let (renamed, ()) = tokio::join!(rename, other_transaction);
    renamed.expect("the rename");
    before
        .assert_new(&r, &[second.id.as_str()], "group 1 renamed")
        .await;
}
