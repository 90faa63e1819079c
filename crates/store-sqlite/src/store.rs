//! `Store` on SQLite.

use crate::connection::{open_connection, MIGRATIONS};
use crate::devices;
use crate::identity;
use crate::machine_cache::{MachineCache, MACHINE_CACHE_BYTES};
use crate::rows::{
    action_columns, action_from_row, machine_from_row, machine_rows, Ticks, MACHINE_PROBES,
    MACHINE_PROBE_BY_ID,
};
use crate::transaction::{run_now, SqliteTransaction};
use crate::workers::{store_error, Readers, Writer};
use async_trait::async_trait;
use palisade_contract::{Machine, MachineAction, SerializedMachine, Timestamp};
use palisade_domain::caller::{Tenant, Visibility};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use palisade_domain::identity::{AppRegistration, AuditEntry, SigningKey, User};
use palisade_domain::query::ListQuery;
use palisade_domain::rate_limit::{CallLogs, RateKey, RateLimits, Throttled};
use palisade_domain::store::{
    ActionDecision, DeviceGroup, MachineChange, MachineDecision, MachineKey, MachineRef, Page,
    Store, StoreError, WriteError,
};
use palisade_domain::writes;
use palisade_store_sql::fields::{
    app_fields, device_fields, key_fields, token_fields, user_fields,
};
use palisade_store_sql::{
    audit_entries, forget_ip_history, machines_seen_with_ip, time_out_stale_actions, Dialect,
    ListSql, Sql, Value, ACTIONS, MACHINES,
};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use std::path::Path;
use std::sync::Arc;

/// Read connections: enough for every async worker plus scans on the blocking pool.
const READERS: usize = 8;

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    machine_cache: Arc<MachineCache>,
    calls: CallLogs,
}

impl SqliteStore {
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
        Ok(SqliteStore {
            writer: Writer::spawn(conn),
            readers,
            machine_cache: Arc::new(MachineCache::new(MACHINE_CACHE_BYTES)),
            calls: CallLogs::default(),
        })
    }
}

/// A shared-SQL parameter as rusqlite binds it.
pub(crate) fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Text(text) => rusqlite::types::Value::Text(text.clone()),
        Value::Integer(n) => rusqlite::types::Value::Integer(*n),
        Value::Real(x) => rusqlite::types::Value::Real(*x),
        Value::Boolean(b) => rusqlite::types::Value::Integer(i64::from(*b)),
        Value::Null => rusqlite::types::Value::Null,
    }
}

pub(crate) fn query_rows<T>(
    conn: &Connection,
    sql: &Sql,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(&sql.text)?;
    let rows = statement.query_map(params_from_iter(sql.params.iter().map(sqlite_value)), map)?;
    rows.collect()
}

/// Runs a list query: one page (and one row more, to tell whether more
/// exist) read by `page_rows`, and the count.
fn list<T>(
    conn: &Connection,
    sql: &ListSql,
    query: &ListQuery,
    page_rows: impl FnOnce(&Sql) -> rusqlite::Result<Vec<T>>,
) -> rusqlite::Result<Page<T>> {
    let mut items = page_rows(&sql.page)?;
    let more = items.len() > query.limit as usize;
    items.truncate(query.limit as usize);
    let count = match &sql.count {
        Some(count) => {
            let total: i64 = conn.prepare_cached(&count.text)?.query_row(
                params_from_iter(count.params.iter().map(sqlite_value)),
                |r| r.get(0),
            )?;
            Some(total as u64)
        }
        None => None,
    };
    Ok(Page { items, count, more })
}

const ACTION_FROM: &str = "machine_actions a";

pub(crate) fn machine_select((columns, from): (&str, &str)) -> String {
    format!("SELECT {columns} FROM {from}")
}

fn action_select() -> String {
    format!("SELECT {} FROM {ACTION_FROM}", action_columns())
}

/// `table`'s columns of the page (and count) of machines `query` asks for,
/// among those the caller sees.
fn machine_list(visibility: &Visibility, query: &ListQuery, table: (&str, &str)) -> ListSql {
    let visible = |sql: &mut Sql| {
        sql.machine_visibility(visibility);
    };
    let tenant_id = &visibility.tenant_id;
    ListSql::new(Dialect::Sqlite, &MACHINES, table, visible, tenant_id, query)
}

/// `table`'s columns of the machine `key` names, if the caller sees it.
fn machine_lookup(visibility: &Visibility, key: MachineKey<'_>, table: (&str, &str)) -> Sql {
    let mut sql = Sql::default();
    sql.push(&machine_select(table)).push(" WHERE ");
    sql.machine_visibility(visibility).machine_key(key);
    sql
}

pub(crate) fn find_machine(
    conn: &Connection,
    visibility: &Visibility,
    key: MachineKey<'_>,
) -> rusqlite::Result<Option<Machine>> {
    let sql = machine_lookup(visibility, key, machine_rows());
    Ok(query_rows(conn, &sql, machine_from_row)?.pop())
}

pub(crate) fn find_action(
    conn: &Connection,
    visibility: &Visibility,
    id: &str,
) -> rusqlite::Result<Option<MachineAction>> {
    let mut sql = Sql::default();
    sql.push(&action_select()).push(" WHERE ");
    sql.action_visibility(visibility);
    sql.push(" AND a.id = ").bind(Value::Text(id.to_string()));
    Ok(query_rows(conn, &sql, action_from_row)?.pop())
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceGroup> {
    let rules: String = row.get(3)?;
    Ok(DeviceGroup {
        id: row.get(0)?,
        name: row.get(1)?,
        rank: row.get(2)?,
        rules: serde_json::from_str(&rules).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

const GROUPS_SQL: &str =
    "SELECT id, name, rank, rules FROM device_groups WHERE tenant_id = ?1 ORDER BY id";

pub(crate) fn load_groups(
    conn: &Connection,
    tenant_id: &str,
) -> rusqlite::Result<Vec<DeviceGroup>> {
    conn.prepare_cached(GROUPS_SQL)?
        .query_map([tenant_id], group_from_row)?
        .collect()
}

fn sql_failure(error: rusqlite::Error) -> WriteError {
    WriteError::Store(store_error(error))
}

#[async_trait]
impl Store for SqliteStore {
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.readers
            .read_now(|conn| {
                conn.prepare_cached("SELECT id, name, retention_days FROM tenants WHERE id = ?1")?
                    .query_row([id], |row| {
                        Ok(Tenant {
                            id: row.get(0)?,
                            name: row.get(1)?,
                            retention_days: row.get(2)?,
                        })
                    })
                    .optional()
            })
            .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.readers
            .read_many(|conn| {
                conn.prepare_cached(
                    "SELECT id, name, retention_days FROM tenants ORDER BY name, id",
                )?
                .query_map([], |row| {
                    Ok(Tenant {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        retention_days: row.get(2)?,
                    })
                })?
                .collect()
            })
            .await
    }

    async fn create_tenant(
        &self,
        tenant: &Tenant,
        groups: &[DeviceGroup],
        machines: &[Machine],
    ) -> Result<bool, StoreError> {
        let (tenant, groups, machines) = (tenant.clone(), groups.to_vec(), machines.to_vec());
        self.write(move |tx| {
            let now = Timestamp::now();
            run_now(writes::create_tenant(tx, &tenant, &groups, &machines, now))
        })
        .await
        .map_err(into_store_error)
    }

    async fn put_device_group(
        &self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), StoreError> {
        let (tenant_id, group) = (tenant_id.to_string(), group.clone());
        self.write(move |tx| run_now(writes::put_device_group(tx, &tenant_id, &group)))
            .await
            .map_err(into_store_error)
    }

    async fn put_machines(&self, tenant_id: &str, machines: &[Machine]) -> Result<(), StoreError> {
        let (tenant_id, machines) = (tenant_id.to_string(), machines.to_vec());
        self.write(move |tx| run_now(writes::put_machines(tx, &tenant_id, &machines)))
            .await
            .map_err(into_store_error)
    }

    async fn machines_seen_with_ip(
        &self,
        tenant_id: &str,
        ip: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        self.readers
            .read_now(|conn| {
                conn.prepare_cached(machines_seen_with_ip(Dialect::Sqlite))?
                    .query_map(params![tenant_id, ip, Ticks(from), Ticks(to)], |r| r.get(0))?
                    .collect()
            })
            .await
    }

    async fn forget_ip_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write_store(move |conn| {
            conn.prepare_cached(forget_ip_history(Dialect::Sqlite))?
                .execute(params![Ticks(before)])
                .map(|n| n as u64)
        })
        .await
    }

    async fn machines(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<SerializedMachine>, StoreError> {
        let (visibility, query) = (visibility.clone(), query.clone());
        let cache = self.machine_cache.clone();
        self.readers
            .read_many(move |conn| {
                let probe = machine_list(&visibility, &query, MACHINE_PROBES);
                list(conn, &probe, &query, |page| {
                    cache.read(conn, &visibility.tenant_id, page, || {
                        machine_list(&visibility, &query, machine_rows()).page
                    })
                })
            })
            .await
    }

    async fn machine(
        &self,
        visibility: &Visibility,
        key: MachineKey<'_>,
    ) -> Result<Option<SerializedMachine>, StoreError> {
        let probe_table = match key {
            MachineKey::Id(_) => MACHINE_PROBE_BY_ID,
            MachineKey::AadDeviceId(_) | MachineKey::Name(_) => MACHINE_PROBES,
        };
        let probe = machine_lookup(visibility, key, probe_table);
        self.readers
            .read_now(|conn| {
                let found = self
                    .machine_cache
                    .read(conn, &visibility.tenant_id, &probe, || {
                        machine_lookup(visibility, key, machine_rows())
                    })?;
                Ok(found.into_iter().next())
            })
            .await
    }

    async fn change_machines(
        &self,
        visibility: &Visibility,
        machines: Vec<MachineRef>,
        decide: MachineDecision,
    ) -> Result<Vec<MachineChange>, WriteError> {
        let visibility = visibility.clone();
        self.write(move |tx| run_now(writes::change_machines(tx, &visibility, machines, decide)))
            .await
    }

    async fn actions(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<MachineAction>, StoreError> {
        let (visibility, query) = (visibility.clone(), query.clone());
        self.readers
            .read_many(move |conn| {
                let visible = |sql: &mut Sql| {
                    sql.action_visibility(&visibility);
                };
                let table = (action_columns(), ACTION_FROM);
                let tenant_id = &visibility.tenant_id;
                let sql =
                    ListSql::new(Dialect::Sqlite, &ACTIONS, table, visible, tenant_id, &query);
                list(conn, &sql, &query, |page| {
                    query_rows(conn, page, action_from_row)
                })
            })
            .await
    }

    async fn action(
        &self,
        visibility: &Visibility,
        id: &str,
    ) -> Result<Option<MachineAction>, StoreError> {
        self.readers
            .read_now(|conn| find_action(conn, visibility, id))
            .await
    }

    async fn time_out_actions(
        &self,
        stale_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(time_out_stale_actions(Dialect::Sqlite))
                    .and_then(|mut s| s.execute(params![Ticks(now), Ticks(stale_before)]))
                    .map_err(sql_failure)?;
                Ok(changed as u64)
            })
            .await
            .map_err(into_store_error)
    }

    async fn change_action(
        &self,
        visibility: &Visibility,
        id: &str,
        decide: ActionDecision,
    ) -> Result<MachineAction, WriteError> {
        let (visibility, id) = (visibility.clone(), id.to_string());
        self.write(move |tx| run_now(writes::change_action(tx, &visibility, &id, decide)))
            .await
    }

    async fn put_app(&self, app: &AppRegistration) -> Result<(), StoreError> {
        let app = app.clone();
        self.write_store(move |conn| identity::save_app(conn, &app))
            .await
    }

    async fn app(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AppRegistration>, StoreError> {
        self.readers
            .read_now(|conn| {
                let sql = format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE tenant_id = ?1 AND client_id = ?2",
                    APP_COLUMNS = app_fields::select(Dialect::Sqlite)
                );
                conn.prepare_cached(&sql)?
                    .query_row([tenant_id, client_id], identity::app_from_row)
                    .optional()
            })
            .await
    }

    async fn apps(&self, tenant_id: &str) -> Result<Vec<AppRegistration>, StoreError> {
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE tenant_id = ?1 ORDER BY display_name, client_id",
            APP_COLUMNS = app_fields::select(Dialect::Sqlite)
        );
        self.all_rows(sql, tenant_id, identity::app_from_row).await
    }

    async fn delete_app(&self, tenant_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let (tenant_id, client_id) = (tenant_id.to_string(), client_id.to_string());
        self.write_store(move |conn| {
            conn.execute(
                "DELETE FROM apps WHERE tenant_id = ?1 AND client_id = ?2",
                [&tenant_id, &client_id],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.write_store(move |conn| identity::save_user(conn, &user))
            .await
    }

    async fn user(&self, tenant_id: &str, id: &str) -> Result<Option<User>, StoreError> {
        self.readers
            .read_now(|conn| {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 AND id = ?2",
                    USER_COLUMNS = user_fields::select(Dialect::Sqlite)
                );
                conn.prepare_cached(&sql)?
                    .query_row([tenant_id, id], identity::user_from_row)
                    .optional()
            })
            .await
    }

    async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        self.readers
            .read_now(|conn| {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM users \
                     WHERE tenant_id = ?1 AND username = ?2 COLLATE NOCASE",
                    USER_COLUMNS = user_fields::select(Dialect::Sqlite)
                );
                conn.prepare_cached(&sql)?
                    .query_row([tenant_id, username], identity::user_from_row)
                    .optional()
            })
            .await
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 ORDER BY username",
            USER_COLUMNS = user_fields::select(Dialect::Sqlite)
        );
        self.all_rows(sql, tenant_id, identity::user_from_row).await
    }

    async fn delete_user(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant_id, id) = (tenant_id.to_string(), id.to_string());
        self.write_store(move |conn| {
            conn.execute(
                "DELETE FROM users WHERE tenant_id = ?1 AND id = ?2",
                [&tenant_id, &id],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant_id = ?1 ORDER BY created_at DESC, kid", KEY_COLUMNS = key_fields::select(Dialect::Sqlite));
        self.all_rows(sql, tenant_id, identity::key_from_row).await
    }

    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.write_store(move |conn| identity::rotate_key(conn, &key))
            .await
    }

    async fn seal_signing_key(
        &self,
        tenant_id: &str,
        kid: &str,
        plaintext: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        let values = [tenant_id, kid, plaintext, sealed].map(str::to_string);
        self.write_store(move |conn| identity::seal_key(conn, &values))
            .await
    }

    async fn device_groups(&self, tenant_id: &str) -> Result<Vec<DeviceGroup>, StoreError> {
        self.all_rows(GROUPS_SQL.to_string(), tenant_id, group_from_row)
            .await
    }

    async fn put_onboarding_token(&self, token: &OnboardingToken) -> Result<(), StoreError> {
        let token = token.clone();
        self.write_store(move |conn| devices::save_token(conn, &token))
            .await
    }

    async fn onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<OnboardingToken>, StoreError> {
        self.readers
            .read_now(|conn| {
                let sql = format!(
                    "SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = ?1 AND id = ?2", TOKEN_COLUMNS = token_fields::select(Dialect::Sqlite));
                conn.prepare_cached(&sql)?
                    .query_row([tenant_id, id], devices::token_from_row)
                    .optional()
            })
            .await
    }

    async fn onboarding_tokens(&self, tenant_id: &str) -> Result<Vec<OnboardingToken>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = ?1 ORDER BY created_at, id", TOKEN_COLUMNS = token_fields::select(Dialect::Sqlite));
        self.all_rows(sql, tenant_id, devices::token_from_row).await
    }

    async fn revoke_onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (tenant_id, id) = (tenant_id.to_string(), id.to_string());
        self.write_store(move |conn| {
            conn.execute(
                "UPDATE onboarding_tokens SET revoked_at = ?3                  WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                params![tenant_id, id, Ticks(at)],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn enroll_device(
        &self,
        machine: &Machine,
        device: &Device,
        presented_credential_id: Option<&str>,
    ) -> Result<(Machine, Device), StoreError> {
        let (machine, device) = (machine.clone(), device.clone());
        let presented = presented_credential_id.map(str::to_string);
        self.write(move |tx| {
            let presented = presented.as_deref();
            run_now(writes::enroll_device(tx, &machine, &device, presented))
        })
        .await
        .map_err(into_store_error)
    }

    async fn device_by_credential(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<Device>, StoreError> {
        self.readers
            .read_now(|conn| devices::device_by_credential(conn, tenant_id, credential_id))
            .await
    }

    async fn devices(&self, tenant_id: &str) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = ?1 ORDER BY enrolled_at DESC, machine_id", DEVICE_COLUMNS = device_fields::select(Dialect::Sqlite));
        self.all_rows(sql, tenant_id, devices::device_from_row)
            .await
    }

    async fn record_check_ins(&self, check_ins: &[CheckInRecord]) -> Result<(), StoreError> {
        let records = check_ins.to_vec();
        self.write(move |tx| run_now(writes::record_check_ins(tx, &records)))
            .await
            .map_err(into_store_error)
    }

    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError> {
        // Most check-ins find nothing: a read answers them without a write.
        let deliverable = self
            .readers
            .read_now(|conn| devices::deliverable_actions(conn, tenant_id, machine_id, now))
            .await?;
        if deliverable.is_empty() {
            return Ok(deliverable);
        }
        let (tenant_id, machine_id) = (tenant_id.to_string(), machine_id.to_string());
        self.write_store(move |conn| {
            devices::claim_actions(conn, &tenant_id, &machine_id, now, held_until)
        })
        .await
    }

    /// SQLite is one node's: its own wakeups are all there are.
    fn relay_new_actions(&self, _wakeups: Arc<Wakeups>) {}

    async fn change_device_action(
        &self,
        device: &Device,
        action_id: &str,
        decide: DeviceActionDecision,
    ) -> Result<MachineAction, WriteError> {
        let (device, action_id) = (device.clone(), action_id.to_string());
        self.write(move |tx| {
            run_now(writes::change_device_action(
                tx, &device, &action_id, decide,
            ))
        })
        .await
    }

    /// In memory: an SQLite file serves one node, so this process sees every call.
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

    async fn append_audit(
        &self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> Result<(), StoreError> {
        let (entry, machine_ids) = (entry.clone(), machine_ids.to_vec());
        self.write_store(move |conn| identity::append_audit(conn, &entry, &machine_ids))
            .await
    }

    async fn audit_entries(
        &self,
        visibility: &Visibility,
        skip: u64,
        top: u32,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let sql = audit_entries(Dialect::Sqlite, visibility, skip, i64::from(top) + 1);
        self.readers
            .read_many(move |conn| {
                let mut items = query_rows(conn, &sql, identity::audit_from_row)?;
                let more = items.len() > top as usize;
                items.truncate(top as usize);
                Ok(Page {
                    items,
                    count: None,
                    more,
                })
            })
            .await
    }
}

impl SqliteStore {
    /// Runs one of the domain's writes (`palisade_domain::writes`) in the next batch.
    async fn write<T: Send + 'static, E>(
        &self,
        work: impl FnOnce(&mut SqliteTransaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, WriteError>
    where
        WriteError: From<E>,
    {
        self.writer
            .write(move |conn| work(&mut SqliteTransaction::new(conn)).map_err(WriteError::from))
            .await
    }

    /// A write that the domain does not decide on: it fails only if the store does.
    async fn write_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer
            .write(move |conn| work(conn).map_err(sql_failure))
            .await
            .map_err(into_store_error)
    }

    /// Every row `sql` (with the tenant as `?1`) selects.
    async fn all_rows<T: Send + 'static>(
        &self,
        sql: String,
        tenant_id: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let tenant_id = tenant_id.to_string();
        self.readers
            .read_many(move |conn| {
                conn.prepare_cached(&sql)?
                    .query_map([&tenant_id], map)?
                    .collect()
            })
            .await
    }
}

fn into_store_error(error: WriteError) -> StoreError {
    match error {
        WriteError::Store(error) => error,
        other => StoreError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::{ErrorCode, MdeError};

    #[test]
    fn migrations_apply_to_an_empty_database() {
        MIGRATIONS.validate().unwrap();
    }

    /// The probe of a read (is the copy in memory current?) reads machines
    /// from their revision index alone, never their rows: by id, by tag, and
    /// a page of the fleet.
    #[test]
    fn machine_probes_read_only_the_revision_index() {
        use crate::connection::query_plan;
        use palisade_contract::odata::ODataQuery;
        let visibility = Visibility::whole_tenant("t1");
        let by_id = machine_lookup(&visibility, MachineKey::Id("a"), MACHINE_PROBE_BY_ID);
        let list = |odata: &str| {
            let odata = ODataQuery::parse(odata).unwrap();
            let query =
                ListQuery::resolve(&odata, palisade_contract::machine::MACHINE_QUERYABLE).unwrap();
            machine_list(&visibility, &query, MACHINE_PROBES).page
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
        let visibility = Visibility::whole_tenant("t1");
        let by_aad = machine_lookup(&visibility, MachineKey::AadDeviceId("a"), MACHINE_PROBES);
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
        let plan = crate::connection::query_plan(time_out_stale_actions(Dialect::Sqlite));
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
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
        store.create_tenant(&tenant(), &[], &[]).await.unwrap();
        let writes = (0..64).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .writer
                    .write(move |conn| {
                        conn.execute(
                            "INSERT INTO device_groups (tenant_id, id, name) VALUES ('t1', ?1, 'g')",
                            [n],
                        )
                        .map_err(sql_failure)?;
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
