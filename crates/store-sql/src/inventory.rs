//! The statements of machine inventories (`palisade_domain::inventory`):
//! a device's report replaces its machine's rows; reads by machine.

use crate::fields::{required, StoredRow};
use crate::{Dialect, Sql, Value};
use palisade_contract::Timestamp;
use palisade_domain::inventory::{StoredLogon, StoredSoftware};
use palisade_domain::store::StoreError;

/// Rows a multi-row insert takes at once (7 parameters each, well inside
/// both databases' limits).
const ROWS_PER_INSERT: usize = 500;

fn key(tenant_id: &str, machine_id: &str) -> [Value; 2] {
    [
        Value::Text(tenant_id.to_string()),
        Value::Text(machine_id.to_string()),
    ]
}

/// `INSERT INTO table (columns) VALUES (...), (...)` of `rows`, each the
/// machine's key and then its values, in statements of [`ROWS_PER_INSERT`].
fn insert_rows(
    dialect: Dialect,
    table: &str,
    columns: &str,
    tenant_id: &str,
    machine_id: &str,
    rows: Vec<Vec<Value>>,
) -> Vec<Sql> {
    rows.chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let mut sql = Sql::new(dialect);
            sql.push("INSERT INTO ")
                .push(table)
                .push(" (tenant_id, machine_id, ")
                .push(columns)
                .push(") VALUES ");
            for (i, row) in chunk.iter().enumerate() {
                sql.push(if i == 0 { "(" } else { ", (" });
                for (j, value) in key(tenant_id, machine_id)
                    .into_iter()
                    .chain(row.iter().cloned())
                    .enumerate()
                {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.bind(value);
                }
                sql.push(")");
            }
            sql
        })
        .collect()
}

/// The machine's rows deleted, then the report's inserted.
pub fn replace_inventory(
    dialect: Dialect,
    tenant_id: &str,
    machine_id: &str,
    software: &[StoredSoftware],
    logons: &[StoredLogon],
) -> Vec<Sql> {
    let mut statements: Vec<Sql> = ["machine_software", "machine_logon_users"]
        .iter()
        .map(|table| {
            let text = format!("DELETE FROM {table} WHERE tenant_id = ?1 AND machine_id = ?2");
            Sql::fixed(
                dialect,
                &dialect.numbered(&text),
                key(tenant_id, machine_id).to_vec(),
            )
        })
        .collect();
    let text = |s: &str| Value::Text(s.to_string());
    let software_rows = software
        .iter()
        .map(|s| {
            vec![
                text(&s.software_id),
                text(&s.name),
                text(&s.vendor),
                text(&s.version),
            ]
        })
        .collect();
    statements.extend(insert_rows(
        dialect,
        "machine_software",
        "software_id, name, vendor, version",
        tenant_id,
        machine_id,
        software_rows,
    ));
    let logon_rows = logons
        .iter()
        .map(|l| {
            vec![
                text(&l.account_domain),
                text(&l.account_name),
                Value::Integer(l.first_seen.ticks()),
                Value::Integer(l.last_seen.ticks()),
                text(&l.logon_types),
            ]
        })
        .collect();
    statements.extend(insert_rows(
        dialect,
        "machine_logon_users",
        "account_domain, account_name, first_seen, last_seen, logon_types",
        tenant_id,
        machine_id,
        logon_rows,
    ));
    statements
}

/// The machine's software by id, with the count of the tenant's machines that have it.
pub fn machine_software(dialect: Dialect, tenant_id: &str, machine_id: &str) -> Sql {
    let text = "SELECT s.software_id, s.name, s.vendor, s.version, \
                (SELECT COUNT(*) FROM machine_software o \
                 WHERE o.tenant_id = s.tenant_id AND o.software_id = s.software_id) \
                FROM machine_software s WHERE s.tenant_id = ?1 AND s.machine_id = ?2 \
                ORDER BY s.software_id";
    Sql::fixed(
        dialect,
        &dialect.numbered(text),
        key(tenant_id, machine_id).to_vec(),
    )
}

pub fn software_row(row: &(impl StoredRow + ?Sized)) -> Result<(StoredSoftware, i64), StoreError> {
    let text = |i: usize| -> Result<String, StoreError> { required(row.text(i)?, i) };
    Ok((
        StoredSoftware {
            software_id: text(0)?,
            name: text(1)?,
            vendor: text(2)?,
            version: text(3)?,
        },
        required(row.integer(4)?, 4)?,
    ))
}

pub fn machine_logons(dialect: Dialect, tenant_id: &str, machine_id: &str) -> Sql {
    let text = "SELECT account_domain, account_name, first_seen, last_seen, logon_types \
                FROM machine_logon_users WHERE tenant_id = ?1 AND machine_id = ?2 \
                ORDER BY last_seen DESC, account_domain, account_name";
    Sql::fixed(
        dialect,
        &dialect.numbered(text),
        key(tenant_id, machine_id).to_vec(),
    )
}

pub fn logon_row(row: &(impl StoredRow + ?Sized)) -> Result<StoredLogon, StoreError> {
    let text = |i: usize| -> Result<String, StoreError> { required(row.text(i)?, i) };
    let at = |i: usize| -> Result<Timestamp, StoreError> {
        Ok(Timestamp::from_ticks(required(row.integer(i)?, i)?))
    };
    Ok(StoredLogon {
        account_domain: text(0)?,
        account_name: text(1)?,
        first_seen: at(2)?,
        last_seen: at(3)?,
        logon_types: text(4)?,
    })
}
