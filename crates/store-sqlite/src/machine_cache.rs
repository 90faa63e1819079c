//! Machines in their wire form, kept in memory between reads.
//!
//! Decoding a machine's row and serializing it cost more than finding it
//! (the profile is in the README). A read still asks SQLite which machines it
//! shows, in which order and at which revision, so that visibility, filters
//! and writes from any process stay SQLite's to decide; but it asks only for
//! their ids and revisions, which an index holds, and the JSON of a machine
//! whose copy here has that revision comes from memory. Every write to a
//! machine, its tags or its group's name gives it a new revision (migration
//! 0007), so a copy is never served after what it shows changed.

use crate::rows::{machine_from_row, MACHINE_ID_COLUMN, MACHINE_REVISION_COLUMN};
use crate::store::query_rows;
use palisade_contract::SerializedMachine;
use palisade_store_sql::Sql;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use rusqlite::{Connection, Row};
use std::sync::Arc;

/// Memory the copies may take: some 180,000 machines (about 1.2 KB of JSON
/// each, and the key).
pub(crate) const MACHINE_CACHE_BYTES: u64 = 256 << 20;

/// (tenant id, machine id).
type Key = (String, String);

/// A copy of a machine, and the revision of the row it was made from.
struct Copy {
    revision: i64,
    machine: SerializedMachine,
}

pub(crate) struct MachineCache {
    copies: Cache<Key, Arc<Copy>, BytesHeld>,
}

/// Looks a key up without building the owned `(String, String)`.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

#[derive(Clone)]
struct BytesHeld;

impl Weighter<Key, Arc<Copy>> for BytesHeld {
    fn weight(&self, key: &Key, copy: &Arc<Copy>) -> u64 {
        // The strings, plus what the cache's own slot and the Arc take.
        (key.0.len() + key.1.len() + copy.machine.json().len() + 128) as u64
    }
}

impl MachineCache {
    pub fn new(capacity_bytes: u64) -> MachineCache {
        let estimated_items = (capacity_bytes / 2048) as usize;
        MachineCache {
            copies: Cache::with_weighter(estimated_items, capacity_bytes, BytesHeld),
        }
    }

    /// The machines `probe` (a query of `MACHINE_PROBES`) finds, from the
    /// copies held here when every one of them is current; else from the rows
    /// `full` (the same query of `MACHINE_ROWS`) reads. Either answer
    /// is one snapshot of the database: the probe's or the full query's.
    pub fn read(
        &self,
        conn: &Connection,
        tenant_id: &str,
        probe: &Sql,
        full: impl FnOnce() -> Sql,
    ) -> rusqlite::Result<Vec<SerializedMachine>> {
        let copies: Option<Vec<SerializedMachine>> = query_rows(conn, probe, |row| {
            let id = row.get_ref(0)?.as_str()?;
            Ok(self.current_copy(tenant_id, id, row.get(1)?))
        })?
        .into_iter()
        .collect();
        match copies {
            Some(machines) => Ok(machines),
            None => query_rows(conn, &full(), |row| self.machine(tenant_id, row)),
        }
    }

    /// The copy held of this revision of the machine, if any.
    fn current_copy(&self, tenant_id: &str, id: &str, revision: i64) -> Option<SerializedMachine> {
        let copy = self.copies.get(&KeyRef(tenant_id, id))?;
        (copy.revision == revision).then(|| copy.machine.clone())
    }

    /// The machine of a row read with `MACHINE_ROWS`: the copy held here
    /// if it is current, else decoded from the row (and kept).
    fn machine(&self, tenant_id: &str, row: &Row<'_>) -> rusqlite::Result<SerializedMachine> {
        let id = row.get_ref(MACHINE_ID_COLUMN)?.as_str()?;
        let revision: i64 = row.get(MACHINE_REVISION_COLUMN)?;
        if let Some(machine) = self.current_copy(tenant_id, id, revision) {
            return Ok(machine);
        }
        let machine = SerializedMachine::new(&machine_from_row(row)?);
        let copy = Copy {
            revision,
            machine: machine.clone(),
        };
        self.copies
            .insert((tenant_id.to_string(), id.to_string()), Arc::new(copy));
        Ok(machine)
    }
}

#[cfg(test)]
mod tests {
    use crate::SqliteStore;
    use palisade_contract::{
        HealthStatus, IpAddress, Machine, OnboardingStatus, OsPlatform, Timestamp,
    };
    use palisade_domain::caller::{Tenant, Visibility};
    use palisade_domain::query::ListQuery;
    use palisade_domain::store::{DeviceGroup, MachineKey, Store};
    use rusqlite::Connection;
    use serde_json::Value;

    const TENANT: &str = "t1";

    fn machine(n: u32) -> Machine {
        let now = Timestamp::now();
        Machine {
            id: format!("{n:040x}"),
            merged_into_machine_id: None,
            is_potential_duplication: false,
            is_excluded: false,
            exclusion_reason: None,
            computer_dns_name: format!("host-{n}.test.local"),
            first_seen: now.minus_days(30),
            last_seen: now,
            os_platform: OsPlatform::Windows11,
            os_version: None,
            os_processor: Some("x64".into()),
            version: Some("23H2".into()),
            last_ip_address: Some("10.0.0.5".into()),
            last_external_ip_address: None,
            agent_version: Some("10.8760.22631.3593".into()),
            os_build: Some(22631),
            health_status: HealthStatus::Active,
            device_value: None,
            rbac_group_id: 1,
            rbac_group_name: None,
            risk_score: None,
            exposure_level: None,
            is_aad_joined: false,
            aad_device_id: None,
            machine_tags: vec!["first".into()],
            defender_av_status: None,
            onboarding_status: OnboardingStatus::Onboarded,
            os_architecture: Some("64-bit".into()),
            managed_by: None,
            managed_by_status: None,
            ip_addresses: vec![IpAddress {
                ip_address: "10.0.0.5".into(),
                mac_address: None,
                kind: "Ethernet".into(),
                operational_status: "Up".into(),
            }],
            vm_metadata: None,
        }
    }

    /// A store with two machines in group 1 ("Servers"), and a second
    /// connection to its file: what another process (the CLI, the sqlite3
    /// shell) would write with.
    async fn store() -> (tempfile::TempDir, SqliteStore, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let store = SqliteStore::open(&path).unwrap();
        let tenant = Tenant {
            id: TENANT.into(),
            name: "T".into(),
            retention_days: 180,
        };
        let groups = [DeviceGroup::label(1, "Servers")];
        store
            .create_tenant(&tenant, &groups, &[machine(1), machine(2)])
            .await
            .unwrap();
        let other = Connection::open(&path).unwrap();
        other
            .busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        (dir, store, other)
    }

    async fn get(store: &SqliteStore, id: &str) -> Value {
        let machine = store
            .machine(&Visibility::whole_tenant(TENANT), MachineKey::Id(id))
            .await
            .unwrap()
            .expect("the machine");
        serde_json::from_str(machine.json()).unwrap()
    }

    async fn list(store: &SqliteStore) -> Vec<Value> {
        let query = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        let page = store
            .machines(&Visibility::whole_tenant(TENANT), &query)
            .await
            .unwrap();
        page.items
            .iter()
            .map(|m| serde_json::from_str(m.json()).unwrap())
            .collect()
    }

    /// While a machine's row keeps its revision, reads answer with the copy in
    /// memory: here a change made behind SQLite's triggers stays unseen.
    #[tokio::test]
    async fn an_unchanged_revision_serves_the_copy_in_memory() {
        let (_dir, store, other) = store().await;
        let id = machine(1).id;
        assert_eq!(
            get(&store, &id).await["computerDnsName"],
            "host-1.test.local"
        );
        other
            .execute_batch(
                "DROP TRIGGER machines_revision_on_update; \
                 UPDATE machines SET computer_dns_name = 'renamed' WHERE id LIKE '%1'",
            )
            .unwrap();
        assert_eq!(
            get(&store, &id).await["computerDnsName"],
            "host-1.test.local"
        );
        // A new revision, and the row is read again.
        other
            .execute(
                "UPDATE machines SET revision = revision + 1 WHERE id LIKE '%1'",
                [],
            )
            .unwrap();
        assert_eq!(get(&store, &id).await["computerDnsName"], "renamed");
    }

    /// Whatever writes a machine, from whichever connection, the next read
    /// shows the write: its row, its tags, its group's name.
    #[tokio::test]
    async fn every_write_to_a_machine_is_seen_by_the_next_read() {
        let (_dir, store, other) = store().await;
        let (one, two) = (machine(1).id, machine(2).id);
        let before = list(&store).await;
        assert_eq!(before.len(), 2);
        assert_eq!(before[0]["machineTags"], serde_json::json!(["first"]));
        assert_eq!(get(&store, &one).await["rbacGroupName"], "Servers");

        other
            .execute(
                "UPDATE machines SET health_status = 'Inactive' WHERE id = ?1",
                [&one],
            )
            .unwrap();
        assert_eq!(get(&store, &one).await["healthStatus"], "Inactive");

        other
            .execute(
                "INSERT INTO machine_tags (tenant_id, machine_id, position, tag) \
                 VALUES ('t1', ?1, 1, 'second')",
                [&two],
            )
            .unwrap();
        let listed = list(&store).await;
        let tags = |m: &Value| m["machineTags"].clone();
        assert_eq!(tags(&listed[1]), serde_json::json!(["first", "second"]));
        other
            .execute(
                "DELETE FROM machine_tags WHERE machine_id = ?1 AND tag = 'first'",
                [&two],
            )
            .unwrap();
        assert_eq!(
            get(&store, &two).await["machineTags"],
            serde_json::json!(["second"])
        );

        other
            .execute("UPDATE device_groups SET name = 'Front' WHERE id = 1", [])
            .unwrap();
        for machine in list(&store).await {
            assert_eq!(machine["rbacGroupName"], "Front");
        }

        // Palisade's own writes (here the upsert of a reported machine).
        let mut changed = machine(1);
        changed.computer_dns_name = "moved.test.local".into();
        store.put_machines(TENANT, &[changed]).await.unwrap();
        assert_eq!(
            get(&store, &one).await["computerDnsName"],
            "moved.test.local"
        );
    }
}
