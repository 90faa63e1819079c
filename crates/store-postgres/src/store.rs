//! `Store` on PostgreSQL.

use crate::batch::{Batches, Decision};
use crate::connection::{self, pg_error, pool_error, PoolSettings};
use crate::devices;
use crate::identity;
use crate::listen;
use crate::rows::{action_columns, action_from_row, get, machine_columns, machine_from_row, Db};
use crate::transaction::{announce, PostgresTransaction};
use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use palisade_contract::{Machine, MachineAction, MdeError, SerializedMachine, Timestamp};
use palisade_domain::caller::{Tenant, Visibility};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use palisade_domain::identity::{AppRegistration, AuditEntry, SigningKey, User};
use palisade_domain::query::ListQuery;
use palisade_domain::rate_limit::{self, RateKey, RateLimits, Throttled};
use palisade_domain::store::{
    ActionDecision, DeviceGroup, MachineChange, MachineDecision, MachineKey, MachineRef, Page,
    Store, StoreError, WriteError,
};
use palisade_domain::writes;
use palisade_store_sql::fields::MACHINE_FROM;
use palisade_store_sql::fields::{
    app_fields, device_fields, key_fields, token_fields, user_fields,
};
use palisade_store_sql::{
    audit_entries, forget_ip_history, machines_seen_with_ip, time_out_stale_actions, Dialect,
    Entity, ListSql, Sql, Value, ACTIONS, MACHINES,
};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio_postgres::Row;

/// Runs `$body` in a transaction on a pooled connection (as `$tx`) and
/// answers `Ok` of its value once committed. An error leaving the body early
/// drops the transaction, which rolls it back.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut client = $store.client().await?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let value = {
            let $tx = &transaction;
            $body
        };
        transaction.commit().await.map_err(pg_error)?;
        Ok(value)
    }};
}

/// Runs one of the domain's writes (`palisade_domain::writes`) in a
/// transaction of its own, as `in_transaction!` does: the bulk writes, each
/// a batch already (the rest go to `Batches`).
macro_rules! write {
    ($store:expr, |$tx:ident| $write:expr) => {
        in_transaction!($store, |transaction| {
            let mut write = PostgresTransaction::new(transaction);
            let value = {
                let $tx = &mut write;
                $write.await?
            };
            announce(transaction, &write.announced()).await?;
            value
        })
    };
}

/// Writer tasks per node: one runs its batch while another commits its
/// own; at most half the pool, so that reads keep connections.
const WRITERS: usize = 2;

/// The answer of a write that refuses nothing but store failures.
fn store_failure(error: WriteError) -> StoreError {
    match error {
        WriteError::Store(error) => error,
        other => StoreError::Internal(other.to_string()),
    }
}

/// The channel a node announces a new action on: payload `"{tenant} {machine}"`.
pub(crate) const NEW_ACTION_CHANNEL: &str = "palisade_new_action";

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    batches: Batches,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://...`) and brings its
    /// schema up to date.
    pub async fn connect(url: &str, settings: PoolSettings) -> Result<PostgresStore, StoreError> {
        let config = connection::config(url, &settings)?;
        connection::migrate(&config).await?;
        let pool = connection::pool(config.clone(), &settings)?;
        let writers = (settings.max_connections / 2).clamp(1, WRITERS);
        let batches = Batches::spawn(pool.clone(), writers);
        Ok(PostgresStore {
            pool,
            config,
            batches,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// After a bulk write of `written` machines: gathers the planner's
    /// statistics of the machine tables when the write grew them by more than
    /// a tenth of what the statistics counted (or they have none), as
    /// autovacuum would in a while (and never does where it is off). Without
    /// them every index that begins with the tenant looks as good as the
    /// primary key for a lookup by id, and a plan chosen while the tables
    /// were small stays cached on its connection: the foreign-key checks of
    /// each tag and address row then read the whole tenant.
    async fn analyze_after_bulk_write(&self, written: usize) -> Result<(), StoreError> {
        // Below this, the statistics' row count does not change a plan.
        const FEWEST: usize = 1_000;
        if written < FEWEST {
            return Ok(());
        }
        let client = self.client().await?;
        let counted: f32 = client
            .row(
                "SELECT reltuples FROM pg_class WHERE oid = 'machines'::regclass",
                &[],
            )
            .await?
            .map_or(Ok(-1.0), |row| get(&row, 0))?;
        if counted < 0.0 || written as f32 > counted / 10.0 {
            client
                .batch_execute("ANALYZE machines, machine_tags, machine_ip_history")
                .await
                .map_err(pg_error)?;
        }
        Ok(())
    }

    /// Every row `sql` (with the tenant as `$1`) selects.
    async fn all_rows<T>(
        &self,
        sql: &str,
        tenant_id: &str,
        map: fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.client()
            .await?
            .rows(sql, &[&tenant_id])
            .await?
            .iter()
            .map(map)
            .collect()
    }
}

/// A visible machine; with `lock`, locked for the rest of the transaction.
pub(crate) async fn find_machine(
    db: &impl Db,
    visibility: &Visibility,
    key: MachineKey<'_>,
    lock: bool,
) -> Result<Option<Machine>, StoreError> {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push(&format!(
        "SELECT {} FROM {MACHINE_FROM} WHERE ",
        machine_columns()
    ));
    sql.machine_visibility(visibility).machine_key(key);
    if lock {
        sql.push(" FOR UPDATE OF m");
    }
    db.built(&sql)
        .await?
        .first()
        .map(machine_from_row)
        .transpose()
}

pub(crate) async fn find_action(
    db: &impl Db,
    visibility: &Visibility,
    id: &str,
    lock: bool,
) -> Result<Option<MachineAction>, StoreError> {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push(&format!(
        "SELECT {} FROM machine_actions a WHERE ",
        action_columns()
    ));
    sql.action_visibility(visibility);
    sql.push(" AND a.id = ").bind(Value::Text(id.to_string()));
    if lock {
        sql.push(" FOR UPDATE OF a");
    }
    db.built(&sql)
        .await?
        .first()
        .map(action_from_row)
        .transpose()
}

/// Runs a list query: one page (and one row more, to tell whether more exist), and the count.
async fn list<T>(
    db: &impl Db,
    entity: &Entity,
    table: (&str, &str),
    visible: impl Fn(&mut Sql),
    tenant_id: &str,
    query: &ListQuery,
    map: fn(&Row) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let sql = ListSql::new(Dialect::Postgres, entity, table, visible, tenant_id, query);
    let mut items = db
        .built(&sql.page)
        .await?
        .iter()
        .map(map)
        .collect::<Result<Vec<T>, _>>()?;
    let more = items.len() > query.limit as usize;
    items.truncate(query.limit as usize);
    let count = match &sql.count {
        Some(count) => {
            let rows = db.built(count).await?;
            let total: i64 = rows.first().map(|r| get(r, 0)).transpose()?.unwrap_or(0);
            Some(total as u64)
        }
        None => None,
    };
    Ok(Page { items, count, more })
}

pub(crate) async fn save_device_group(
    db: &impl Db,
    tenant_id: &str,
    group: &DeviceGroup,
) -> Result<(), StoreError> {
    let rules = serde_json::to_string(&group.rules).expect("rules serialise");
    db.run(
        "INSERT INTO device_groups (tenant_id, id, name, rank, rules) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, rank = excluded.rank, \
         rules = excluded.rules",
        &[&tenant_id, &group.id, &group.name, &group.rank, &rules],
    )
    .await?;
    Ok(())
}

fn group_from_row(row: &Row) -> Result<DeviceGroup, StoreError> {
    Ok(DeviceGroup {
        id: get(row, 0)?,
        name: get(row, 1)?,
        rank: get(row, 2)?,
        rules: crate::rows::json(row, 3)?,
    })
}

const GROUPS_SQL: &str =
    "SELECT id, name, rank, rules FROM device_groups WHERE tenant_id = $1 ORDER BY id";

pub(crate) async fn load_groups(
    db: &impl Db,
    tenant_id: &str,
) -> Result<Vec<DeviceGroup>, StoreError> {
    db.rows(GROUPS_SQL, &[&tenant_id])
        .await?
        .iter()
        .map(group_from_row)
        .collect()
}

/// A decision called at most once (its type is `FnOnce`); called again, a fault.
fn once<D>(decide: &mut Option<D>) -> Result<D, MdeError> {
    decide
        .take()
        .ok_or_else(|| MdeError::internal("a write's decision was asked for twice"))
}

fn tenant_from_row(row: &Row) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: get(row, 0)?,
        name: get(row, 1)?,
        retention_days: u32::try_from(get::<i64>(row, 2)?)
            .map_err(|e| StoreError::Internal(format!("retention_days: {e}")))?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.client()
            .await?
            .row(
                "SELECT id, name, retention_days FROM tenants WHERE id = $1",
                &[&id],
            )
            .await?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.client()
            .await?
            .rows(
                "SELECT id, name, retention_days FROM tenants ORDER BY name, id",
                &[],
            )
            .await?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    async fn create_tenant(
        &self,
        tenant: &Tenant,
        groups: &[DeviceGroup],
        machines: &[Machine],
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let created: bool = write!(self, |tx| writes::create_tenant(
            tx, tenant, groups, machines, now
        ))?;
        self.analyze_after_bulk_write(machines.len()).await?;
        Ok(created)
    }

    async fn put_device_group(
        &self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), StoreError> {
        write!(self, |tx| writes::put_device_group(tx, tenant_id, group))
    }

    async fn put_machines(&self, tenant_id: &str, machines: &[Machine]) -> Result<(), StoreError> {
        write!(self, |tx| writes::put_machines(tx, tenant_id, machines))?;
        self.analyze_after_bulk_write(machines.len()).await
    }

    async fn machines_seen_with_ip(
        &self,
        tenant_id: &str,
        ip: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        self.client()
            .await?
            .rows(
                machines_seen_with_ip(Dialect::Postgres),
                &[&tenant_id, &ip, &from.ticks(), &to.ticks()],
            )
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect()
    }

    async fn forget_ip_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.client()
            .await?
            .run(forget_ip_history(Dialect::Postgres), &[&before.ticks()])
            .await
    }

    async fn machines(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<SerializedMachine>, StoreError> {
        list(
            &self.client().await?,
            &MACHINES,
            (machine_columns(), MACHINE_FROM),
            |sql| {
                sql.machine_visibility(visibility);
            },
            &visibility.tenant_id,
            query,
            |row| machine_from_row(row).map(|m| SerializedMachine::new(&m)),
        )
        .await
    }

    async fn machine(
        &self,
        visibility: &Visibility,
        key: MachineKey<'_>,
    ) -> Result<Option<SerializedMachine>, StoreError> {
        let client = self.client().await?;
        let machine = find_machine(&client, visibility, key, false).await?;
        Ok(machine.as_ref().map(SerializedMachine::new))
    }

    async fn change_machines(
        &self,
        visibility: &Visibility,
        machines: Vec<MachineRef>,
        decide: MachineDecision,
    ) -> Result<Vec<MachineChange>, WriteError> {
        let visibility = visibility.clone();
        let decision = Decision::new(decide);
        self.batches
            .write(decision.may_retry(), move |tx| {
                let (visibility, machines) = (visibility.clone(), machines.clone());
                let decision = decision.clone();
                let decide: MachineDecision = Box::new(move |machine, active, capabilities| {
                    decision.call(|decide| decide(machine, active, capabilities))
                });
                Box::pin(
                    async move { writes::change_machines(tx, &visibility, machines, decide).await },
                )
            })
            .await
    }

    async fn actions(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<MachineAction>, StoreError> {
        list(
            &self.client().await?,
            &ACTIONS,
            (action_columns(), "machine_actions a"),
            |sql| {
                sql.action_visibility(visibility);
            },
            &visibility.tenant_id,
            query,
            action_from_row,
        )
        .await
    }

    async fn action(
        &self,
        visibility: &Visibility,
        id: &str,
    ) -> Result<Option<MachineAction>, StoreError> {
        find_action(&self.client().await?, visibility, id, false).await
    }

    async fn time_out_actions(
        &self,
        stale_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.client()
            .await?
            .run(
                time_out_stale_actions(Dialect::Postgres),
                &[&now.ticks(), &stale_before.ticks()],
            )
            .await
    }

    async fn change_action(
        &self,
        visibility: &Visibility,
        id: &str,
        decide: ActionDecision,
    ) -> Result<MachineAction, WriteError> {
        let (visibility, id) = (visibility.clone(), id.to_string());
        let decision = Decision::new(Some(decide));
        self.batches
            .write(decision.may_retry(), move |tx| {
                let (visibility, id) = (visibility.clone(), id.clone());
                let decision = decision.clone();
                let decide: ActionDecision =
                    Box::new(move |action| decision.call(|decide| once(decide)?(action)));
                Box::pin(async move { writes::change_action(tx, &visibility, &id, decide).await })
            })
            .await
    }

    async fn put_app(&self, app: &AppRegistration) -> Result<(), StoreError> {
        identity::save_app(&self.client().await?, app).await
    }

    async fn app(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AppRegistration>, StoreError> {
        self.client()
            .await?
            .row(
                &format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE tenant_id = $1 AND client_id = $2",
                    APP_COLUMNS = app_fields::select(Dialect::Postgres)
                ),
                &[&tenant_id, &client_id],
            )
            .await?
            .as_ref()
            .map(identity::app_from_row)
            .transpose()
    }

    async fn apps(&self, tenant_id: &str) -> Result<Vec<AppRegistration>, StoreError> {
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE tenant_id = $1 ORDER BY display_name, client_id",
            APP_COLUMNS = app_fields::select(Dialect::Postgres)
        );
        self.all_rows(&sql, tenant_id, identity::app_from_row).await
    }

    async fn delete_app(&self, tenant_id: &str, client_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .run(
                "DELETE FROM apps WHERE tenant_id = $1 AND client_id = $2",
                &[&tenant_id, &client_id],
            )
            .await?
            > 0)
    }

    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        identity::save_user(&self.client().await?, user).await
    }

    async fn user(&self, tenant_id: &str, id: &str) -> Result<Option<User>, StoreError> {
        self.client()
            .await?
            .row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2",
                    USER_COLUMNS = user_fields::select(Dialect::Postgres)
                ),
                &[&tenant_id, &id],
            )
            .await?
            .as_ref()
            .map(identity::user_from_row)
            .transpose()
    }

    async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<User>, StoreError> {
        self.client()
            .await?
            .row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users \
                     WHERE tenant_id = $1 AND lower(username) = lower($2)",
                    USER_COLUMNS = user_fields::select(Dialect::Postgres)
                ),
                &[&tenant_id, &username],
            )
            .await?
            .as_ref()
            .map(identity::user_from_row)
            .transpose()
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY username",
            USER_COLUMNS = user_fields::select(Dialect::Postgres)
        );
        self.all_rows(&sql, tenant_id, identity::user_from_row)
            .await
    }

    async fn delete_user(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .run(
                "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
                &[&tenant_id, &id],
            )
            .await?
            > 0)
    }

    async fn signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at DESC, kid", KEY_COLUMNS = key_fields::select(Dialect::Postgres));
        self.all_rows(&sql, tenant_id, identity::key_from_row).await
    }

    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        in_transaction!(self, |tx| { identity::rotate_key(tx, key).await? })
    }

    async fn seal_signing_key(
        &self,
        tenant_id: &str,
        kid: &str,
        plaintext: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        identity::seal_key(&self.client().await?, tenant_id, kid, plaintext, sealed).await
    }

    async fn device_groups(&self, tenant_id: &str) -> Result<Vec<DeviceGroup>, StoreError> {
        load_groups(&self.client().await?, tenant_id).await
    }

    async fn put_onboarding_token(&self, token: &OnboardingToken) -> Result<(), StoreError> {
        devices::save_token(&self.client().await?, token).await
    }

    async fn onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<OnboardingToken>, StoreError> {
        self.client()
            .await?
            .row(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = $1 AND id = $2", TOKEN_COLUMNS = token_fields::select(Dialect::Postgres)),
                &[&tenant_id, &id],
            )
            .await?
            .as_ref()
            .map(devices::token_from_row)
            .transpose()
    }

    async fn onboarding_tokens(&self, tenant_id: &str) -> Result<Vec<OnboardingToken>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM onboarding_tokens WHERE tenant_id = $1 ORDER BY created_at, id", TOKEN_COLUMNS = token_fields::select(Dialect::Postgres));
        self.all_rows(&sql, tenant_id, devices::token_from_row)
            .await
    }

    async fn revoke_onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .await?
            .run(
                "UPDATE onboarding_tokens SET revoked_at = $3 \
                 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL",
                &[&tenant_id, &id, &at.ticks()],
            )
            .await?
            > 0)
    }

    async fn enroll_device(
        &self,
        machine: &Machine,
        device: &Device,
        presented_credential_id: Option<&str>,
    ) -> Result<(Machine, Device), StoreError> {
        let (machine, device) = (machine.clone(), device.clone());
        let presented = presented_credential_id.map(str::to_string);
        // Nothing decided but in the write: every attempt starts afresh.
        self.batches
            .write(
                || true,
                move |tx| {
                    let (machine, device, presented) =
                        (machine.clone(), device.clone(), presented.clone());
                    Box::pin(async move {
                        Ok(
                            writes::enroll_device(tx, &machine, &device, presented.as_deref())
                                .await?,
                        )
                    })
                },
            )
            .await
            .map_err(store_failure)
    }

    async fn device_by_credential(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<Device>, StoreError> {
        devices::device_by_credential(&self.client().await?, tenant_id, credential_id).await
    }

    async fn devices(&self, tenant_id: &str) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant_id = $1 ORDER BY enrolled_at DESC, machine_id", DEVICE_COLUMNS = device_fields::select(Dialect::Postgres));
        self.all_rows(&sql, tenant_id, devices::device_from_row)
            .await
    }

    async fn record_check_ins(&self, check_ins: &[CheckInRecord]) -> Result<(), StoreError> {
        write!(self, |tx| writes::record_check_ins(tx, check_ins))
    }

    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError> {
        let client = self.client().await?;
        // Most check-ins find nothing: a read answers them without a write.
        if !devices::any_deliverable(&client, tenant_id, machine_id, now).await? {
            return Ok(vec![]);
        }
        devices::claim_actions(&client, tenant_id, machine_id, now, held_until).await
    }

    fn relay_new_actions(&self, wakeups: Arc<Wakeups>) {
        tokio::spawn(listen::relay(self.config.clone(), wakeups));
    }

    async fn change_device_action(
        &self,
        device: &Device,
        action_id: &str,
        decide: DeviceActionDecision,
    ) -> Result<MachineAction, WriteError> {
        let (device, action_id) = (device.clone(), action_id.to_string());
        let decision = Decision::new(Some(decide));
        self.batches
            .write(decision.may_retry(), move |tx| {
                let (device, action_id) = (device.clone(), action_id.clone());
                let decision = decision.clone();
                let decide: DeviceActionDecision = Box::new(move |action, machine, current| {
                    decision.call(|decide| once(decide)?(action, machine, current))
                });
                Box::pin(async move {
                    writes::change_device_action(tx, &device, &action_id, decide).await
                })
            })
            .await
    }

    /// In the database, so that every node counts the same calls. The key's
    /// row is locked while the call is judged: two nodes admitting at once
    /// take turns, and a burst spread over nodes admits exactly the limit.
    async fn admit_call(
        &self,
        key: &RateKey,
        limits: RateLimits,
        now: Timestamp,
    ) -> Result<Result<(), Throttled>, StoreError> {
        let operation = key.scope.name();
        in_transaction!(self, |tx| {
            // Call counts are not worth an fsync each: a crash may forget
            // the last few, as a restart of the embedded store forgets all.
            tx.run("SET LOCAL synchronous_commit = off", &[]).await?;
            let row = tx
                    .row(
                        "INSERT INTO rate_limit_calls (tenant_id, principal_id, operation, calls, last_call) \
                         VALUES ($1, $2, $3, '{}', $4) \
                         ON CONFLICT (tenant_id, principal_id, operation) \
                         DO UPDATE SET last_call = rate_limit_calls.last_call \
                         RETURNING calls",
                        &[&key.tenant_id, &key.principal_id, &operation, &now.ticks()],
                    )
                    .await?
                    .ok_or_else(|| StoreError::Internal("the upsert returned no row".into()))?;
            let mut log: VecDeque<i64> = get::<Vec<i64>>(&row, 0)?.into();
            let admitted = rate_limit::admit(&mut log, now.ticks(), limits);
            if admitted.is_ok() {
                let calls: Vec<i64> = log.into();
                let last_call = calls.last().copied().unwrap_or(now.ticks());
                tx.run(
                    "UPDATE rate_limit_calls SET calls = $4, last_call = $5 \
                         WHERE tenant_id = $1 AND principal_id = $2 AND operation = $3",
                    &[
                        &key.tenant_id,
                        &key.principal_id,
                        &operation,
                        &calls,
                        &last_call,
                    ],
                )
                .await?;
            }
            admitted
        })
    }

    async fn forget_idle_calls(&self, now: Timestamp) -> Result<(), StoreError> {
        self.client()
            .await?
            .run(
                "DELETE FROM rate_limit_calls WHERE last_call <= $1",
                &[&rate_limit::idle_since(now.ticks())],
            )
            .await?;
        Ok(())
    }

    async fn append_audit(
        &self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> Result<(), StoreError> {
        self.batches
            .append_audit(entry.clone(), machine_ids.to_vec())
            .await
    }

    async fn audit_entries(
        &self,
        visibility: &Visibility,
        skip: u64,
        top: u32,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let sql = audit_entries(Dialect::Postgres, visibility, skip, i64::from(top) + 1);
        let mut items = self
            .client()
            .await?
            .built(&sql)
            .await?
            .iter()
            .map(identity::audit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > top as usize;
        items.truncate(top as usize);
        Ok(Page {
            items,
            count: None,
            more,
        })
    }
}
