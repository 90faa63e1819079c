//! Rows to entities and back.

use crate::database::sqlite_value;
use palisade_contract::{Machine, MachineAction, Timestamp};
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{
    action_fields, action_upsert, machine_fields, machine_upsert, unreadable, StoredRow,
};
use palisade_store_sql::{Dialect, TagRows, Value};
use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, params_from_iter, Connection, Row, ToSql};

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("contract types serialise")
}

/// Timestamps are stored as integer ticks.
pub(crate) struct Ticks(pub Timestamp);

impl FromSql for Ticks {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        i64::column_result(value).map(|t| Ticks(Timestamp::from_ticks(t)))
    }
}

impl ToSql for Ticks {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.ticks()))
    }
}

/// A row as the field tables (`store_sql::fields`) read it.
pub(crate) struct SqliteRow<'a, 'b>(pub(crate) &'a Row<'b>);

impl StoredRow for SqliteRow<'_, '_> {
    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        self.0.get(index).map_err(|e| unreadable(index, e))
    }

    fn integer(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.0.get(index).map_err(|e| unreadable(index, e))
    }

    fn boolean(&self, index: usize) -> Result<Option<bool>, StoreError> {
        self.0.get(index).map_err(|e| unreadable(index, e))
    }

    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(index).map_err(|e| unreadable(index, e))
    }
}

/// A field-table decoding error, as rusqlite's row mappers must answer.
pub(crate) fn decoding(error: StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Null,
        error.to_string().into(),
    )
}

/// A machine from a row of `machine_cache::machine_rows`.
pub(crate) fn machine_from_row(row: &Row<'_>) -> rusqlite::Result<Machine> {
    machine_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

/// The tenant id, then `values`, as rusqlite binds them.
fn bound(tenant_id: &str, values: Vec<Value>) -> impl Iterator<Item = rusqlite::types::Value> {
    bind(std::iter::once(Value::Text(tenant_id.to_string())).chain(values))
}

/// Field-table values as rusqlite binds them.
pub(crate) fn bind(
    values: impl IntoIterator<Item = Value>,
) -> impl Iterator<Item = rusqlite::types::Value> {
    values.into_iter().map(|value| sqlite_value(&value))
}

/// Creates or overwrites a machine row, then brings its tags from `old_tags` to the machine's.
pub(crate) fn save_machine(
    conn: &Connection,
    tenant_id: &str,
    machine: &Machine,
    old_tags: &[String],
) -> rusqlite::Result<()> {
    conn.prepare_cached(machine_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bound(
            tenant_id,
            machine_fields::values(machine),
        )))?;
    sync_tags(
        conn,
        tenant_id,
        &machine.id,
        old_tags,
        &machine.machine_tags,
    )
}

/// Brings a machine's tag rows from `old` to `new` (`TagRows`).
pub(crate) fn sync_tags(
    conn: &Connection,
    tenant_id: &str,
    machine_id: &str,
    old: &[String],
    new: &[String],
) -> rusqlite::Result<()> {
    let inserted = match TagRows::between(old, new) {
        TagRows::Unchanged => return Ok(()),
        TagRows::InPlace { removed, appended } => {
            let mut delete = conn.prepare_cached(
                "DELETE FROM machine_tags WHERE tenant_id = ?1 AND machine_id = ?2 AND tag = ?3",
            )?;
            for gone in removed {
                delete.execute(params![tenant_id, machine_id, gone])?;
            }
            appended
        }
        TagRows::Rewrite(all) => {
            conn.prepare_cached(
                "DELETE FROM machine_tags WHERE tenant_id = ?1 AND machine_id = ?2",
            )?
            .execute(params![tenant_id, machine_id])?;
            all
        }
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO machine_tags (tenant_id, machine_id, position, tag) VALUES (?1, ?2, \
            (SELECT COALESCE(MAX(position), -1) + 1 FROM machine_tags \
             WHERE tenant_id = ?1 AND machine_id = ?2), ?3)",
    )?;
    for tag in inserted {
        insert.execute(params![tenant_id, machine_id, tag])?;
    }
    Ok(())
}

pub(crate) fn action_from_row(row: &Row<'_>) -> rusqlite::Result<MachineAction> {
    action_fields::from_row(&SqliteRow(row), 0).map_err(decoding)
}

/// Creates or overwrites an action row.
pub(crate) fn save_action(
    conn: &Connection,
    tenant_id: &str,
    action: &MachineAction,
) -> rusqlite::Result<()> {
    conn.prepare_cached(action_upsert(Dialect::Sqlite))?
        .execute(params_from_iter(bound(
            tenant_id,
            action_fields::values(action),
        )))?;
    Ok(())
}
