//! Rows to entities and back, and what the store's SQL runs on.

use crate::connection::pg_error;
use async_trait::async_trait;
use palisade_contract::{Machine, MachineAction};
use palisade_domain::store::StoreError;
use palisade_store_sql::fields::{
    action_fields, action_upsert, machine_fields, unreadable, StoredRow,
};
use palisade_store_sql::{Dialect, Sql, Value};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Row;

pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// What the store's SQL runs on: a pooled connection or a transaction on one.
#[async_trait]
pub(crate) trait Db: Sync {
    /// Fixed SQL: prepared once per connection, then reused.
    async fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    async fn run(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// The shared SQL's statements (`store_sql`), prepared and kept too.
    async fn built(&self, sql: &Sql) -> Result<Vec<Row>, StoreError>;

    async fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }
}

/// Most statements a connection keeps prepared. A built statement's text
/// varies with the shape of a client's filter (its values are parameters),
/// so the shapes are few in practice but not bounded: past this many the
/// connection forgets them all and prepares again what it runs. Kept because
/// PostgreSQL plans a statement prepared once a few times and then reuses a
/// generic plan, where planning a page of machines cost ten times its run.
pub(crate) const MOST_PREPARED: usize = 512;

macro_rules! impl_db {
    ($type:ty) => {
        #[async_trait]
        impl Db for $type {
            async fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
                let statement = self.prepare_cached(sql).await.map_err(pg_error)?;
                self.query(&statement, params).await.map_err(pg_error)
            }

            async fn run(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
                let statement = self.prepare_cached(sql).await.map_err(pg_error)?;
                self.execute(&statement, params).await.map_err(pg_error)
            }

            async fn built(&self, sql: &Sql) -> Result<Vec<Row>, StoreError> {
                if self.statement_cache.size() > MOST_PREPARED {
                    self.statement_cache.clear();
                }
                let values: Vec<Bound> = sql.params.iter().cloned().map(Bound).collect();
                let params: Vec<Param<'_>> = values.iter().map(|v| v as Param<'_>).collect();
                self.rows(&sql.text, &params).await
            }
        }
    };
}

impl_db!(deadpool_postgres::Object);
impl_db!(deadpool_postgres::Transaction<'_>);

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| unreadable(index, e))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored values serialise")
}

/// A row as the field tables (`store_sql::fields`) read it.
pub(crate) struct PostgresRow<'a>(pub(crate) &'a Row);

impl StoredRow for PostgresRow<'_> {
    fn text(&self, index: usize) -> Result<Option<String>, StoreError> {
        get(self.0, index)
    }

    fn integer(&self, index: usize) -> Result<Option<i64>, StoreError> {
        get(self.0, index)
    }

    fn boolean(&self, index: usize) -> Result<Option<bool>, StoreError> {
        get(self.0, index)
    }

    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        get(self.0, index)
    }
}

/// A field-table value bound to a prepared statement's parameter, as the
/// parameter's type (which PostgreSQL infers from the column) wants it.
#[derive(Debug)]
pub(crate) struct Bound(pub Value);

impl ToSql for Bound {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Value::Text(text) => text.to_sql(ty, out),
            Value::Integer(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Integer(n) => n.to_sql(ty, out),
            Value::Real(x) => x.to_sql(ty, out),
            Value::Boolean(b) => b.to_sql(ty, out),
            Value::Bytes(bytes) => bytes.to_sql(ty, out),
            Value::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The tenant id, then `values`, bound.
fn bound(tenant_id: &str, values: Vec<Value>) -> Vec<Bound> {
    std::iter::once(Value::Text(tenant_id.to_string()))
        .chain(values)
        .map(Bound)
        .collect()
}

/// Runs a statement of the shared SQL; how many rows it changed.
pub(crate) async fn execute(db: &impl Db, sql: &Sql) -> Result<u64, StoreError> {
    run_values(db, &sql.text, sql.params.clone()).await
}

/// Runs `sql` with field-table values bound.
pub(crate) async fn run_values(
    db: &impl Db,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, StoreError> {
    run_bound(db, sql, &values.into_iter().map(Bound).collect::<Vec<_>>()).await
}

async fn run_bound(db: &impl Db, sql: &str, values: &[Bound]) -> Result<u64, StoreError> {
    let params: Vec<Param<'_>> = values.iter().map(|v| v as Param<'_>).collect();
    db.run(sql, &params).await
}

/// The columns `machine_from_row` reads.
pub(crate) fn machine_columns() -> &'static str {
    machine_fields::select(Dialect::Postgres)
}

pub(crate) fn machine_from_row(row: &Row) -> Result<Machine, StoreError> {
    machine_fields::from_row(&PostgresRow(row), 0)
}

/// The columns `action_from_row` reads.
pub(crate) fn action_columns() -> &'static str {
    action_fields::select(Dialect::Postgres)
}

pub(crate) fn action_from_row(row: &Row) -> Result<MachineAction, StoreError> {
    action_fields::from_row(&PostgresRow(row), 0)
}

/// Creates or overwrites an action row.
pub(crate) async fn save_action(
    db: &impl Db,
    tenant_id: &str,
    action: &MachineAction,
) -> Result<(), StoreError> {
    let values = bound(tenant_id, action_fields::values(action));
    run_bound(db, action_upsert(Dialect::Postgres), &values).await?;
    Ok(())
}
