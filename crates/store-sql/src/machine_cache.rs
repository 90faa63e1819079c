//! Machines in their wire form, kept in memory between reads.
//!
//! Decoding a machine's row and serializing it cost more than finding it
//! (the profile is in the README). A read still asks the database which
//! machines it shows, in which order and at which revision, so that
//! visibility, filters and writes from any process or node stay the
//! database's to decide; but it asks only for their ids and revisions, and
//! the JSON of a machine whose copy here has that revision comes from
//! memory. Every write to a machine, its tags or its group's name gives it a
//! new revision (SQLite's migration 0007, PostgreSQL's V6), so a copy is
//! never served after what it shows changed.

use crate::database::{Database, Reading};
use crate::fields::{machine_fields, required, StoredRow, MACHINE_FROM};
use crate::{Dialect, Sql};
use palisade_contract::SerializedMachine;
use palisade_domain::store::{MachineKey, StoreError};
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use std::sync::Arc;

/// Memory the copies may take: some 180,000 machines (about 1.2 KB of JSON
/// each, and the key).
pub const MACHINE_CACHE_BYTES: u64 = 256 << 20;

/// (tenant id, machine id).
type Key = (String, String);

/// A copy of a machine, and the revision of the row it was made from.
struct Copy {
    revision: i64,
    machine: SerializedMachine,
}

pub struct MachineCache {
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

/// (columns, table) of a machine's whole row: the field table's columns,
/// then the revision its copy is checked by.
pub fn machine_rows(dialect: Dialect) -> (&'static str, &'static str) {
    let columns = once_per_dialect!(dialect, |d| format!(
        "{}, m.revision",
        machine_fields::select(d)
    ));
    (columns, MACHINE_FROM)
}

/// Where [`machine_rows`] and [`machine_probes`] put what a copy is checked by.
const ID_COLUMN: usize = 0;
const REVISION_COLUMN: usize = machine_fields::READ_COLUMNS;
const PROBE_REVISION_COLUMN: usize = 1;

/// (columns, table) of what a copy is checked by, before the machine itself
/// is read: its id and revision (on SQLite, from an index alone). `key` is
/// the lookup's, if the read is one: SQLite left to itself takes the primary
/// key's index for a single id, and then reads the row.
pub fn machine_probes(
    dialect: Dialect,
    key: Option<MachineKey<'_>>,
) -> (&'static str, &'static str) {
    const COLUMNS: &str = "m.id, m.revision";
    match (dialect, key) {
        (Dialect::Sqlite, Some(MachineKey::Id(_))) => {
            (COLUMNS, "machines m INDEXED BY machines_revision")
        }
        _ => (COLUMNS, "machines m"),
    }
}

impl MachineCache {
    pub fn new(capacity_bytes: u64) -> MachineCache {
        let estimated_items = (capacity_bytes / 2048) as usize;
        MachineCache {
            copies: Cache::with_weighter(estimated_items, capacity_bytes, BytesHeld),
        }
    }

    /// The machines `probe` (a query of [`machine_probes`]) finds, from the
    /// copies held here when every one of them is current; else from the rows
    /// `full` (the same query of [`machine_rows`]) reads. Either answer is one
    /// snapshot of the database: the probe's or the full query's.
    pub async fn read(
        self: &Arc<Self>,
        db: &impl Database,
        reading: Reading,
        tenant_id: &str,
        probe: Sql,
        full: impl FnOnce() -> Sql,
    ) -> Result<Vec<SerializedMachine>, StoreError> {
        let (cache, tenant) = (self.clone(), tenant_id.to_string());
        let copies: Option<Vec<SerializedMachine>> = db
            .read(reading, probe, move |row| {
                let id = required(row.text(ID_COLUMN)?, ID_COLUMN)?;
                let revision =
                    required(row.integer(PROBE_REVISION_COLUMN)?, PROBE_REVISION_COLUMN)?;
                Ok(cache.current_copy(&tenant, &id, revision))
            })
            .await?
            .into_iter()
            .collect();
        if let Some(machines) = copies {
            return Ok(machines);
        }
        let (cache, tenant) = (self.clone(), tenant_id.to_string());
        db.read(reading, full(), move |row| cache.machine(&tenant, row))
            .await
    }

    /// The copy held of this revision of the machine, if any.
    fn current_copy(&self, tenant_id: &str, id: &str, revision: i64) -> Option<SerializedMachine> {
        let copy = self.copies.get(&KeyRef(tenant_id, id))?;
        (copy.revision == revision).then(|| copy.machine.clone())
    }

    /// The machine of a row read with [`machine_rows`]: the copy held here
    /// if it is current, else decoded from the row (and kept).
    fn machine(
        &self,
        tenant_id: &str,
        row: &dyn StoredRow,
    ) -> Result<SerializedMachine, StoreError> {
        let id = required(row.text(ID_COLUMN)?, ID_COLUMN)?;
        let revision = required(row.integer(REVISION_COLUMN)?, REVISION_COLUMN)?;
        if let Some(machine) = self.current_copy(tenant_id, &id, revision) {
            return Ok(machine);
        }
        let machine = SerializedMachine::new(&machine_fields::from_row(row, 0)?);
        let copy = Copy {
            revision,
            machine: machine.clone(),
        };
        self.copies
            .insert((tenant_id.to_string(), id), Arc::new(copy));
        Ok(machine)
    }
}
