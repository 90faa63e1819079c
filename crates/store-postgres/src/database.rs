//! The PostgreSQL database under the store (`palisade_store_sql::store`):
//! a pool of connections, the node's writer tasks (`batch`), and what
//! several nodes share here rather than in memory (rate-limit call logs,
//! audit ids, news of new actions).

use crate::audit::append_all;
use crate::batch::{Batches, Domain};
use crate::connection::{self, pg_error, pool_error, PoolSettings};
use crate::devices::claim_actions;
use crate::listen;
use crate::rows::{execute, get, Db, PostgresRow};
use crate::transaction::{announce, PostgresTransaction};
use deadpool_postgres::{Object, Pool};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::identity::AuditEntry;
use palisade_domain::rate_limit::{self, RateKey, RateLimits, Throttled};
use palisade_domain::store::{StoreError, WriteError};
use palisade_domain::writes::Write;
use palisade_store_sql::database::{Database, Reading};
use palisade_store_sql::fields::StoredRow;
use palisade_store_sql::store::SqlStore;
use palisade_store_sql::{Dialect, Sql};
use std::collections::VecDeque;
use std::sync::Arc;

/// Runs `$body` in a transaction on a pooled connection (as `$tx`) and
/// answers `Ok` of its value once committed. An error leaving the body early
/// drops the transaction, which rolls it back.
macro_rules! in_transaction {
    ($db:expr, |$tx:ident| $body:block) => {{
        let mut client = $db.client().await?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let value = {
            let $tx = &transaction;
            $body
        };
        transaction.commit().await.map_err(pg_error)?;
        Ok(value)
    }};
}

/// Writer tasks per node: while some wait for their batch's round trips or
/// commit, others run theirs (four measured better than two: the figures
/// are in the README); at most half the pool, so that reads keep
/// connections.
const WRITERS: usize = 4;

/// The channel a node announces a new action on: payload `"{tenant} {machine}"`.
pub(crate) const NEW_ACTION_CHANNEL: &str = "palisade_new_action";

pub struct PostgresDatabase {
    pool: Pool,
    /// Connections that plan each statement once for all calls
    /// (`connection::PLANNING_ONCE`), for the reads written for it
    /// (`Sql::one_plan`). The writers have theirs, set the same way: their
    /// statements take rows by key or by arrays of keys, where a plan made
    /// for one call's array length is the generic plan's shape, made again
    /// each time.
    planned_once: Pool,
    config: tokio_postgres::Config,
    batches: Batches,
}

/// The store on PostgreSQL.
pub type PostgresStore = SqlStore<PostgresDatabase>;

/// Connects to the database at `url` (`postgres://...`) and brings its
/// schema up to date. Of `settings.max_connections`, half (at most
/// [`WRITERS`]) go to the writers, a quarter to the reads planned once, and
/// the rest (at least one) to every other read; each set is a pool of its
/// own, so that none can take the others' connections.
pub async fn connect(url: &str, settings: PoolSettings) -> Result<PostgresStore, StoreError> {
    let config = connection::config(url, &settings)?;
    connection::migrate(&config).await?;
    let writers = (settings.max_connections / 2).clamp(1, WRITERS);
    let planned_reads = (settings.max_connections / 4).max(1);
    let share = |max_connections: usize| PoolSettings {
        max_connections,
        ..settings
    };
    let others = settings
        .max_connections
        .saturating_sub(writers + planned_reads);
    let pool = connection::pool(config.clone(), &share(others))?;
    let planning_once = connection::planning_once(config.clone());
    let planned_once = connection::pool(planning_once.clone(), &share(planned_reads))?;
    let writer_pool = connection::pool(planning_once, &share(writers))?;
    let batches = Batches::spawn(writer_pool, writers);
    Ok(SqlStore::new(PostgresDatabase {
        pool,
        planned_once,
        config,
        batches,
    }))
}

impl PostgresDatabase {
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
}

impl Database for PostgresDatabase {
    const DIALECT: Dialect = Dialect::Postgres;

    /// Every read is one round trip on a pooled connection, however many rows.
    async fn read<T, F>(
        &self,
        _reading: Reading,
        sql: Sql,
        mut decode: F,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&dyn StoredRow) -> Result<T, StoreError> + Send + 'static,
    {
        let client = match sql.one_plan {
            true => self.planned_once.get().await.map_err(pool_error)?,
            false => self.client().await?,
        };
        let rows = client.built(&sql).await?;
        rows.iter().map(|row| decode(&PostgresRow(row))).collect()
    }

    async fn execute(&self, statements: Vec<Sql>) -> Result<Vec<u64>, StoreError> {
        if let [statement] = &statements[..] {
            return Ok(vec![execute(&self.client().await?, statement).await?]);
        }
        in_transaction!(self, |tx| {
            let mut changed = Vec::with_capacity(statements.len());
            for statement in &statements {
                changed.push(execute(tx, statement).await?);
            }
            changed
        })
    }

    async fn write<W: Write>(&self, write: W) -> Result<W::Output, WriteError> {
        self.batches.write(Domain(write)).await
    }

    /// Alone in a transaction: a batch's savepoints would hold a bulk
    /// write's many rows until its neighbours are done too.
    async fn bulk_write<W: Write>(
        &self,
        write: W,
        machines: usize,
    ) -> Result<W::Output, WriteError> {
        let mut write = write;
        let value: Result<_, WriteError> = in_transaction!(self, |transaction| {
            let mut tx = PostgresTransaction::new(transaction);
            let value = write.attempt(&mut tx).await?;
            let finished = tx.finish();
            let entries = finished.audits.iter();
            let entries = entries
                .map(|(entry, ids)| (entry, ids.as_slice()))
                .collect();
            append_all(transaction, entries).await?;
            announce(transaction, &finished.announced).await?;
            value
        });
        let value = value?;
        self.analyze_after_bulk_write(machines).await?;
        Ok(value)
    }

    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError> {
        claim_actions(
            &self.client().await?,
            tenant_id,
            machine_id,
            now,
            held_until,
        )
        .await
    }

    fn relay_new_actions(&self, wakeups: Arc<Wakeups>) {
        tokio::spawn(listen::relay(self.config.clone(), wakeups));
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

    async fn forget_calls_of(&self, tenant_id: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .run(
                "DELETE FROM rate_limit_calls WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?;
        Ok(())
    }

    async fn append_audit(
        &self,
        entry: AuditEntry,
        machine_ids: Vec<String>,
    ) -> Result<(), StoreError> {
        self.batches.append_audit(entry, machine_ids).await
    }
}
