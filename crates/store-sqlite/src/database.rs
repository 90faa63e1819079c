//! The SQLite database under the store (`palisade_store_sql::store`):
//! reads on a pool of read-only connections, every write on the one writer
//! thread, in batches.

use crate::connection::{open_connection, MIGRATIONS};
use crate::devices::claim_actions;
use crate::rows::{decoding, SqliteRow, Ticks};
use crate::transaction::{run_now, SqliteTransaction};
use crate::workers::{store_error, Readers, Writer};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::identity::AuditEntry;
use palisade_domain::rate_limit::{CallLogs, RateKey, RateLimits, Throttled};
use palisade_domain::store::{StoreError, WriteError};
use palisade_domain::writes::Write;
use palisade_store_sql::database::{Database, Reading};
use palisade_store_sql::fields::StoredRow;
use palisade_store_sql::store::SqlStore;
use palisade_store_sql::{Dialect, Sql, Value};
use rusqlite::{params, params_from_iter, Connection, Row};
use std::path::Path;
use std::sync::Arc;

/// Read connections: enough for every async worker plus scans on the blocking pool.
const READERS: usize = 8;

pub struct SqliteDatabase {
    writer: Writer,
    readers: Readers,
    /// Rate-limit call logs in memory: an SQLite file serves one node, so
    /// this process sees every call.
    calls: CallLogs,
}

/// The store on SQLite.
pub type SqliteStore = SqlStore<SqliteDatabase>;

/// Opens (creating if need be) the database at `path` and brings its schema up to date.
pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    let mut conn = open_connection(path).map_err(store_error)?;
    MIGRATIONS
        .to_latest(&mut conn)
        .map_err(|e| StoreError::Internal(format!("migrating {}: {e}", path.display())))?;
    let reader_path = path.to_path_buf();
    let readers = Readers::new(READERS, move || {
        let reader = open_connection(&reader_path)?;
        reader.pragma_update(None, "query_only", "ON")?;
        Ok(reader)
    });
    Ok(SqlStore::new(SqliteDatabase {
        writer: Writer::spawn(conn),
        readers,
        calls: CallLogs::default(),
    }))
}

/// A shared-SQL parameter as rusqlite binds it.
pub(crate) fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Text(text) => rusqlite::types::Value::Text(text.clone()),
        Value::Integer(n) => rusqlite::types::Value::Integer(*n),
        Value::Real(x) => rusqlite::types::Value::Real(*x),
        Value::Boolean(b) => rusqlite::types::Value::Integer(i64::from(*b)),
        Value::Bytes(bytes) => rusqlite::types::Value::Blob(bytes.clone()),
        Value::Null => rusqlite::types::Value::Null,
    }
}

/// Every row `sql` selects, mapped by `map`. Statements are cached per
/// connection whatever their text: rusqlite's cache is bounded (LRU).
pub(crate) fn query_rows<T>(
    conn: &Connection,
    sql: &Sql,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.params.iter().map(sqlite_value)), map)?;
    rows.collect()
}

pub(crate) fn execute(conn: &Connection, sql: &Sql) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let changed = statement.execute(params_from_iter(sql.params.iter().map(sqlite_value)))?;
    Ok(changed as u64)
}

fn sql_failure(error: rusqlite::Error) -> WriteError {
    WriteError::Store(store_error(error))
}

impl SqliteDatabase {
    /// A write that the domain does not decide on: it fails only if the store does.
    async fn write_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer
            .write(move |conn| work(conn).map_err(sql_failure))
            .await
            .map_err(WriteError::into_store_error)
    }
}

impl Database for SqliteDatabase {
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn read<T, F>(
        &self,
        reading: Reading,
        sql: Sql,
        mut decode: F,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&dyn StoredRow) -> Result<T, StoreError> + Send + 'static,
    {
        let work = move |conn: &Connection| {
            query_rows(conn, &sql, |row| decode(&SqliteRow(row)).map_err(decoding))
        };
        match reading {
            Reading::Few => self.readers.read_now(work).await,
            Reading::Many => self.readers.read_many(work).await,
        }
    }

    async fn execute(&self, statements: Vec<Sql>) -> Result<Vec<u64>, StoreError> {
        self.write_store(move |conn| statements.iter().map(|sql| execute(conn, sql)).collect())
            .await
    }

    async fn write<W: Write>(&self, write: W) -> Result<W::Output, WriteError> {
        let mut write = write;
        self.writer
            .write(move |conn| run_now(write.attempt(&mut SqliteTransaction::new(conn))))
            .await
    }

    /// The one writer takes bulk writes in turn with the rest.
    async fn bulk_write<W: Write>(
        &self,
        write: W,
        _machines: usize,
    ) -> Result<W::Output, WriteError> {
        self.write(write).await
    }

    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError> {
        let (tenant_id, machine_id) = (tenant_id.to_string(), machine_id.to_string());
        self.write_store(move |conn| claim_actions(conn, &tenant_id, &machine_id, now, held_until))
            .await
    }

    /// SQLite is one node's: its own wakeups are all there are.
    fn relay_new_actions(&self, _wakeups: Arc<Wakeups>) {}

    async fn admit_call(
        &self,
        key: &RateKey,
        limits: RateLimits,
        now: Timestamp,
    ) -> Result<Result<(), Throttled>, StoreError> {
        Ok(self.calls.admit(key, limits, now.ticks()))
    }

    async fn forget_idle_calls(&self, now: Timestamp) -> Result<(), StoreError> {
        self.calls.forget_idle(now.ticks());
        Ok(())
    }

    async fn forget_calls_of(&self, tenant_id: &str) -> Result<(), StoreError> {
        self.calls.forget_tenant(tenant_id);
        Ok(())
    }

    async fn append_audit(
        &self,
        entry: AuditEntry,
        machine_ids: Vec<String>,
    ) -> Result<(), StoreError> {
        self.write_store(move |conn| append_audit(conn, &entry, &machine_ids))
            .await
    }
}

pub(crate) fn append_audit(
    conn: &Connection,
    entry: &AuditEntry,
    machine_ids: &[String],
) -> rusqlite::Result<()> {
    // The next id of the tenant's: the writer (and SQLite's write lock, for
    // the CLI) makes the read and the insert one step.
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO audit_log (tenant_id, id, time, actor_type, actor_id, actor_name, \
             operation, target, result, request_id) VALUES (?1, \
             (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log WHERE tenant_id = ?1), \
             ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )?
        .query_row(
            params![
                entry.tenant_id,
                Ticks(entry.time),
                entry.actor_type,
                entry.actor_id,
                entry.actor_name,
                entry.operation,
                entry.target,
                entry.result,
                entry.request_id
            ],
            |row| row.get(0),
        )?;
    let mut about = conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_machines (tenant_id, entry_id, machine_id) VALUES (?1, ?2, ?3)",
    )?;
    for machine_id in machine_ids {
        about.execute(params![entry.tenant_id, id, machine_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::{ErrorCode, MdeError};
    use palisade_domain::caller::{Tenant, Visibility};
    use palisade_domain::store::{MachineKey, Store};
    use palisade_store_sql::machine_cache::machine_probes;
    use palisade_store_sql::{
        forget_ip_history, machine_lookup, machines_seen_with_ip, time_out_stale_actions, Sql,
    };

    #[test]
    fn migrations_apply_to_an_empty_database() {
        MIGRATIONS.validate().unwrap();
    }

    fn lookup(key: MachineKey<'_>) -> Sql {
        let visibility = Visibility::whole_tenant("t1");
        let probes = machine_probes(Dialect::Sqlite, Some(key));
        machine_lookup(Dialect::Sqlite, &visibility, key, probes, false)
    }

    /// The probe of a read (is the copy in memory current?) reads machines
    /// from their revision index alone, never their rows: by id, by tag, and
    /// a page of the fleet.
    #[test]
    fn machine_probes_read_only_the_revision_index() {
        use crate::connection::query_plan;
        use palisade_contract::odata::ODataQuery;
        use palisade_domain::query::ListQuery;
        use palisade_store_sql::{ListSql, MACHINES};
        let visibility = Visibility::whole_tenant("t1");
        let by_id = lookup(MachineKey::Id("a"));
        let list = |odata: &str| {
            let odata = ODataQuery::parse(odata).unwrap();
            let query =
                ListQuery::resolve(&odata, palisade_contract::machine::MACHINE_QUERYABLE).unwrap();
            let visible = |sql: &mut Sql| {
                sql.machine_visibility(&visibility);
            };
            let probes = machine_probes(Dialect::Sqlite, None);
            ListSql::new(Dialect::Sqlite, &MACHINES, probes, visible, "t1", &query).page
        };
        let tagged = list("$filter=machineTags/any(t: t eq 'x')");
        let tagged_and_more = list(
            "$filter=rbacGroupId eq 1 and machineTags/any(t: t eq 'x') and machineTags/any(t: t eq 'y')",
        );
        for sql in [&by_id, &tagged, &tagged_and_more, &list("")] {
            let plan = query_plan(&sql.text);
            assert!(
                plan.contains("m USING COVERING INDEX machines_revision") && !plan.contains(" g "),
                "{plan}"
            );
        }
        // A required tag is read from the tag index, in order: no temporary
        // table of ids, no sort.
        let plan = query_plan(&tagged.text);
        assert!(
            plan.contains("t USING COVERING INDEX machine_tags_by_tag")
                && !plan.contains("LIST SUBQUERY")
                && !plan.contains("TEMP B-TREE"),
            "{plan}"
        );
    }

    /// A machine named by its Entra device id is found through its index,
    /// and findbyip reads the spans of one address, not the history.
    #[test]
    fn entra_device_ids_and_addresses_are_read_through_their_indexes() {
        use crate::connection::query_plan;
        let by_aad = lookup(MachineKey::AadDeviceId("a"));
        let plan = query_plan(&by_aad.text);
        assert!(plan.contains("INDEX machines_by_aad_device_id"), "{plan}");
        let plan = query_plan(machines_seen_with_ip(Dialect::Sqlite));
        assert!(
            plan.contains("h USING COVERING INDEX machine_ip_history_by_ip")
                && !plan.contains("SCAN"),
            "{plan}"
        );
        let plan = query_plan(forget_ip_history(Dialect::Sqlite));
        assert!(plan.contains("INDEX machine_ip_history_ended"), "{plan}");
    }

    /// The time-out sweep runs every minute: it reads the stale Pending and
    /// InProgress actions through their partial indexes, not every action.
    #[test]
    fn the_time_out_sweep_reads_only_open_actions() {
        let scope = palisade_domain::TenantScope::OnServerTime { except: vec![] };
        let now = palisade_contract::Timestamp::now();
        let sweep = time_out_stale_actions(Dialect::Sqlite, &scope, now, now);
        let plan = crate::connection::query_plan(&sweep.text);
        assert!(
            plan.contains("INDEX machine_actions_pending")
                && plan.contains("INDEX machine_actions_in_progress")
                && !plan.contains("SCAN machine_actions"),
            "{plan}"
        );
    }

    fn tenant() -> Tenant {
        Tenant {
            id: "t1".into(),
            name: "T".into(),
            retention_days: 180,
        }
    }

    /// A write refused by the domain, batched with others, undoes only itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_write_does_not_undo_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir.path().join("t.db")).unwrap());
        store.create_tenant(&tenant(), &[], &[]).await.unwrap();
        let writes = (0..64).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .database()
                    .writer
                    .write(move |conn| {
                        conn.execute(
                            "INSERT INTO device_groups (tenant_id, id, name) VALUES ('t1', ?1, 'g')",
                            [n],
                        )
                        .map_err(|e| WriteError::Store(store_error(e)))?;
                        if n % 2 == 1 {
                            // Refused after writing: the row must not stay.
                            return Err(WriteError::Rejected(MdeError::new(
                                ErrorCode::InvalidInput,
                                "odd",
                            )));
                        }
                        Ok(())
                    })
                    .await
            })
        });
        let mut refused = 0;
        for write in writes.collect::<Vec<_>>() {
            if write.await.unwrap().is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 32);
        let kept: Vec<i64> = store
            .database()
            .readers
            .read_now(|conn| {
                conn.prepare("SELECT id FROM device_groups ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
            .unwrap();
        assert_eq!(kept, (0..64).filter(|n| n % 2 == 0).collect::<Vec<i64>>());
    }
}

#[cfg(test)]
mod machine_cache_tests {
    use crate::{open, SqliteStore};
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
        let store = open(&path).unwrap();
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
