//! Rows to entities and back, and what the store's SQL runs on.

use crate::connection::pg_error;
use async_trait::async_trait;
use palisade_contract::{Machine, MachineAction, Timestamp};
use palisade_domain::store::StoreError;
use palisade_store_sql::{Sql, Value};
use std::str::FromStr;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// What the store's SQL runs on: a pooled connection or a transaction on one.
#[async_trait]
pub(crate) trait Db: Sync {
    /// Fixed SQL: prepared once per connection, then reused.
    async fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    async fn run(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Built SQL (filters, visibility): sent with its types in one round trip
    /// and not cached, since its text varies with each query.
    async fn built(&self, sql: &Sql) -> Result<Vec<Row>, StoreError>;

    async fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }
}

/// A built query's parameters with the types its `$n::type` casts name.
fn typed(params: &[Value]) -> Vec<(Box<dyn ToSql + Sync + Send>, Type)> {
    params
        .iter()
        .map(|value| -> (Box<dyn ToSql + Sync + Send>, Type) {
            match value {
                Value::Text(text) => (Box::new(text.clone()), Type::TEXT),
                Value::Integer(n) => (Box::new(*n), Type::INT8),
                Value::Real(x) => (Box::new(*x), Type::FLOAT8),
                Value::Null => (Box::new(None::<String>), Type::TEXT),
            }
        })
        .collect()
}

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
                let params = typed(&sql.params);
                let params: Vec<(Param<'_>, Type)> = params
                    .iter()
                    .map(|(value, ty)| (value.as_ref() as Param<'_>, ty.clone()))
                    .collect();
                self.query_typed(&sql.text, &params).await.map_err(pg_error)
            }
        }
    };
}

impl_db!(deadpool_postgres::Object);
impl_db!(deadpool_postgres::Transaction<'_>);

/// A row that does not read back as what was stored: a fault, not a retry.
fn unreadable(index: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("column {index} does not read back: {error}"))
}

pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| unreadable(index, e))
}

/// A column holding one of the contract's wire enums, stored as its wire text.
pub(crate) fn wire<T: FromStr>(row: &Row, index: usize) -> Result<T, StoreError> {
    let text: String = get(row, index)?;
    text.parse()
        .map_err(|_| unreadable(index, format!("unknown value '{text}'")))
}

pub(crate) fn wire_opt<T: FromStr>(row: &Row, index: usize) -> Result<Option<T>, StoreError> {
    match get::<Option<String>>(row, index)? {
        None => Ok(None),
        Some(_) => wire(row, index).map(Some),
    }
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
) -> Result<T, StoreError> {
    let text: String = get(row, index)?;
    serde_json::from_str(&text).map_err(|e| unreadable(index, e))
}

pub(crate) fn json_opt<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
) -> Result<Option<T>, StoreError> {
    match get::<Option<String>>(row, index)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| unreadable(index, e)),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored values serialise")
}

/// Timestamps are stored as BIGINT ticks.
pub(crate) fn ticks(row: &Row, index: usize) -> Result<Timestamp, StoreError> {
    get::<i64>(row, index).map(Timestamp::from_ticks)
}

pub(crate) fn ticks_opt(row: &Row, index: usize) -> Result<Option<Timestamp>, StoreError> {
    Ok(get::<Option<i64>>(row, index)?.map(Timestamp::from_ticks))
}

/// The columns `machine_from_row` reads, in its order; `m` is `machines`,
/// `g` the device group joined on `rbac_group_id`.
pub(crate) const MACHINE_COLUMNS: &str = "m.id, m.merged_into_machine_id, \
    m.is_potential_duplication, m.is_excluded, m.exclusion_reason, m.computer_dns_name, \
    m.first_seen, m.last_seen, m.os_platform, m.os_version, m.os_processor, m.version, \
    m.last_ip_address, m.last_external_ip_address, m.agent_version, m.os_build, \
    m.health_status, m.device_value, m.rbac_group_id, g.name, m.risk_score, \
    m.exposure_level, m.is_aad_joined, m.aad_device_id, \
    ARRAY(SELECT t.tag FROM machine_tags t \
        WHERE t.tenant_id = m.tenant_id AND t.machine_id = m.id ORDER BY t.position), \
    m.defender_av_status, m.onboarding_status, m.os_architecture, m.managed_by, \
    m.managed_by_status, m.ip_addresses, m.vm_metadata";

pub(crate) const MACHINE_FROM: &str = "machines m LEFT JOIN device_groups g \
    ON g.tenant_id = m.tenant_id AND g.id = m.rbac_group_id";

pub(crate) fn machine_from_row(row: &Row) -> Result<Machine, StoreError> {
    Ok(Machine {
        id: get(row, 0)?,
        merged_into_machine_id: get(row, 1)?,
        is_potential_duplication: get(row, 2)?,
        is_excluded: get(row, 3)?,
        exclusion_reason: get(row, 4)?,
        computer_dns_name: get(row, 5)?,
        first_seen: ticks(row, 6)?,
        last_seen: ticks(row, 7)?,
        os_platform: wire(row, 8)?,
        os_version: get(row, 9)?,
        os_processor: get(row, 10)?,
        version: get(row, 11)?,
        last_ip_address: get(row, 12)?,
        last_external_ip_address: get(row, 13)?,
        agent_version: get(row, 14)?,
        os_build: get(row, 15)?,
        health_status: wire(row, 16)?,
        device_value: wire_opt(row, 17)?,
        rbac_group_id: get(row, 18)?,
        rbac_group_name: get(row, 19)?,
        risk_score: wire_opt(row, 20)?,
        exposure_level: wire_opt(row, 21)?,
        is_aad_joined: get(row, 22)?,
        aad_device_id: get(row, 23)?,
        machine_tags: get(row, 24)?,
        defender_av_status: get(row, 25)?,
        onboarding_status: wire(row, 26)?,
        os_architecture: get(row, 27)?,
        managed_by: get(row, 28)?,
        managed_by_status: get(row, 29)?,
        ip_addresses: json(row, 30)?,
        vm_metadata: json_opt(row, 31)?,
    })
}

pub(crate) fn action_from_row(row: &Row) -> Result<MachineAction, StoreError> {
    Ok(MachineAction {
        id: get(row, 0)?,
        action_type: wire(row, 1)?,
        title: get(row, 2)?,
        requestor: get(row, 3)?,
        requestor_comment: get(row, 4)?,
        status: wire(row, 5)?,
        machine_id: get(row, 6)?,
        computer_dns_name: get(row, 7)?,
        creation_date_time_utc: ticks(row, 8)?,
        last_update_date_time_utc: ticks(row, 9)?,
        cancellation_requestor: get(row, 10)?,
        cancellation_comment: get(row, 11)?,
        cancellation_date_time_utc: ticks_opt(row, 12)?,
        error_h_result: get(row, 13)?,
        scope: get(row, 14)?,
        external_id: get(row, 15)?,
        request_source: get(row, 16)?,
        related_file_info: json_opt(row, 17)?,
        commands: json(row, 18)?,
        troubleshoot_info: json_opt(row, 19)?,
    })
}

/// Creates or overwrites an action row.
pub(crate) async fn save_action(
    db: &impl Db,
    tenant_id: &str,
    action: &MachineAction,
) -> Result<(), StoreError> {
    let a = action;
    let related_file_info = a.related_file_info.as_ref().map(to_json);
    let commands = to_json(&a.commands);
    let troubleshoot_info = a.troubleshoot_info.as_ref().map(to_json);
    db.run(
        "INSERT INTO machine_actions (tenant_id, id, type, title, requestor, requestor_comment, \
            status, machine_id, computer_dns_name, creation_time, last_update_time, \
            cancellation_requestor, cancellation_comment, cancellation_time, error_hresult, \
            scope, external_id, request_source, related_file_info, commands, troubleshoot_info) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
            $18, $19, $20, $21) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, \
            last_update_time = excluded.last_update_time, \
            cancellation_requestor = excluded.cancellation_requestor, \
            cancellation_comment = excluded.cancellation_comment, \
            cancellation_time = excluded.cancellation_time, \
            error_hresult = excluded.error_hresult, commands = excluded.commands, \
            troubleshoot_info = excluded.troubleshoot_info",
        &[
            &tenant_id,
            &a.id,
            &a.action_type.as_str(),
            &a.title,
            &a.requestor,
            &a.requestor_comment,
            &a.status.as_str(),
            &a.machine_id,
            &a.computer_dns_name,
            &a.creation_date_time_utc.ticks(),
            &a.last_update_date_time_utc.ticks(),
            &a.cancellation_requestor,
            &a.cancellation_comment,
            &a.cancellation_date_time_utc.map(Timestamp::ticks),
            &a.error_h_result,
            &a.scope,
            &a.external_id,
            &a.request_source,
            &related_file_info,
            &commands,
            &troubleshoot_info,
        ],
    )
    .await?;
    Ok(())
}
