//! Opening a connection with Palisade's settings, and the schema migrations.

use rusqlite::config::DbConfig;
use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

/// The schema, in order. Applied at start; never edit one that has shipped.
pub static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("../migrations/0001_machines_and_actions.sql")),
        M::up(include_str!("../migrations/0002_identity_and_audit.sql")),
        M::up(include_str!("../migrations/0003_device_group_rules.sql")),
        M::up(include_str!("../migrations/0004_device_plane.sql")),
        M::up(include_str!("../migrations/0005_action_delivery.sql")),
        M::up(include_str!("../migrations/0006_open_actions_index.sql")),
        M::up(include_str!("../migrations/0007_machine_revision.sql")),
        M::up(include_str!("../migrations/0008_in_progress_timeout.sql")),
        M::up(include_str!("../migrations/0009_machine_lookups.sql")),
        M::up(include_str!(
            "../migrations/0010_duplicate_devices_and_audit_per_tenant.sql"
        )),
        M::up(include_str!("../migrations/0011_control_plane.sql")),
        M::up(include_str!(
            "../migrations/0012_emulator_clock_faults_recorder.sql"
        )),
        M::up(include_str!("../migrations/0013_alerts_and_indicators.sql")),
        M::up(include_str!("../migrations/0014_files.sql")),
        M::up(include_str!("../migrations/0015_live_response.sql")),
        M::up(include_str!("../migrations/0016_inventory.sql")),
        M::up(include_str!("../migrations/0017_sign_in.sql")),
    ])
});

/// Address space (not memory) for memory-mapped reads.
const MMAP_BYTES: i64 = 1 << 30;

/// Opens `path` with the settings every Palisade connection uses:
/// WAL (readers never block the writer), `synchronous=FULL` (a commit is on
/// disk before it is acknowledged, so a 200 survives a crash or power loss),
/// foreign keys on, memory-mapped reads, stable query plans, and a busy
/// timeout for other processes (the CLI).
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Read pages straight from the OS page cache instead of copying each into
    // every connection's own cache: reads of a large fleet hit it at random.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    // Plan each statement once, whatever its parameters. Without this SQLite
    // re-plans a cached statement whenever a parameter it planned with (a
    // LIMIT, a value compared with a column) is bound anew: every list and
    // every point read parsed and planned its SQL again, a third of a read's
    // cost. Palisade's plans do not depend on values (no LIKE, no ANALYZE
    // statistics), and a plan that stays put is what a server wants anyway.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// The plan SQLite picks for `sql` on the migrated schema (for tests of
/// which index a query uses).
#[cfg(test)]
pub(crate) fn query_plan(sql: &str) -> String {
    let mut conn = Connection::open_in_memory().unwrap();
    MIGRATIONS.to_latest(&mut conn).unwrap();
    let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let unbound = explain.parameter_count();
    explain
        .query_map(rusqlite::params_from_iter(vec![""; unbound]), |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// A cached statement run again with other values is not parsed and
    /// planned again (it was on every read before the plans were made stable).
    #[test]
    fn cached_statements_keep_their_plan_across_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("plans.db")).unwrap();
        MIGRATIONS.to_latest(&mut conn).unwrap();
        let sql = "SELECT id FROM machines WHERE tenant_id = ?1 AND last_seen >= ?2 \
                   ORDER BY id LIMIT ?3";
        for (tenant, limit) in [("a", 1), ("b", 10), ("c", 100)] {
            let mut statement = conn.prepare_cached(sql).unwrap();
            let rows: Vec<String> = statement
                .query_map(rusqlite::params![tenant, 0, limit], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert!(rows.is_empty());
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
        }
    }

    /// Migration 0010 numbers the entries written before it per tenant, in
    /// their order, and records which machines each was about.
    #[test]
    fn audit_entries_of_before_are_numbered_per_tenant_and_tied_to_their_machines() {
        let mut conn = Connection::open_in_memory().unwrap();
        MIGRATIONS.to_version(&mut conn, 8).unwrap();
        let machine = "a".repeat(40);
        let other = "b".repeat(40);
        for (tenant, operation, target) in [
            ("t1", "Isolate", machine.to_uppercase()),
            ("t2", "Isolate", other.clone()),
            ("t1", "TagMachines", format!("{machine},{other}")),
            ("t2", "apps put", "some app".to_string()),
            (
                "t1",
                "CancelAction",
                "0b5e4e8c-0000-4000-8000-000000000001".to_string(),
            ),
        ] {
            conn.execute(
                "INSERT INTO audit_log (tenant_id, time, actor_type, actor_id, actor_name, \
                 operation, target, result, request_id) VALUES (?1, 0, 'app', 'a', 'a', ?2, ?3, 200, '')",
                rusqlite::params![tenant, operation, target],
            )
            .unwrap();
        }
        MIGRATIONS.to_latest(&mut conn).unwrap();
        let rows = |sql: &str| -> Vec<String> {
            let mut statement = conn.prepare(sql).unwrap();
            let rows = statement
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            rows
        };
        assert_eq!(
            rows("SELECT tenant_id || ' ' || id || ' ' || operation FROM audit_log ORDER BY tenant_id, id"),
            ["t1 1 Isolate", "t1 2 TagMachines", "t1 3 CancelAction", "t2 1 Isolate", "t2 2 apps put"]
        );
        assert_eq!(
            rows(
                "SELECT tenant_id || ' ' || entry_id || ' ' || machine_id FROM audit_machines \
                  ORDER BY tenant_id, entry_id, machine_id"
            ),
            [
                format!("t1 1 {machine}"),
                format!("t1 2 {machine}"),
                format!("t1 2 {other}"),
                // The action is unknown: its id stands in, and matches no machine.
                "t1 3 0b5e4e8c-0000-4000-8000-000000000001".to_string(),
                format!("t2 1 {other}"),
            ]
        );
    }
}
