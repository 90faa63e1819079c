//! The writes of one node, committed together, as the SQLite writer does
//! (`palisade_store_sqlite`'s `Writer`): a few writer tasks each take every
//! write queued meanwhile, run each in a savepoint of one transaction, and
//! commit once; only then is any of them answered.
//!
//! - A write refused (a domain rejection, a machine not found, an error of
//!   its own) is rolled back to its savepoint: its neighbours stand.
//! - A failure that ends the transaction itself (the connection lost, a
//!   failed commit) answers no write of the batch with a success: each is
//!   answered `StoreError::Unavailable`, and the connection is dropped.
//! - Lock order. One write locks its rows in the order of
//!   `palisade_domain::writes` (machines, then devices, then actions; rows
//!   of a kind in key order), but a batch holds the locks of all its writes
//!   at once, and two batches need not take them in that order. So only a
//!   batch's first write waits for a lock as long as it takes; every later
//!   one waits at most `GIVE_WAY`, and a write that gave way that way before
//!   it decided anything is rolled back and run again first in the next
//!   batch. A transaction waiting without limit therefore holds the locks of
//!   one write only, taken in order: no wait cycle forms among batches (on
//!   this node or others) and the writes that run alone.
//! - The audit entries of a batch are written last, in one statement per
//!   tenant (in tenant order): a tenant's `audit_sequences` row is locked
//!   only from there to the commit, by a transaction that waits for nothing
//!   more, so that wait cannot close a cycle either.
//! - New actions are announced (`NOTIFY`) just before the commit, for the
//!   writes that succeeded: PostgreSQL delivers them at the commit only.

use crate::audit::append_all;
use crate::connection::{pg_error, pool_error};
use crate::transaction::{announce, PostgresTransaction};
use deadpool_postgres::{Object, Pool};
use palisade_domain::identity::AuditEntry;
use palisade_domain::store::{StoreError, WriteError};
use palisade_domain::writes::Write;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::{mpsc, oneshot};

/// Most queued writes (and audit entries) in one transaction. Each write's
/// savepoint that writes is a subtransaction; past 64 in one transaction
/// PostgreSQL's per-backend cache of them overflows, and every other
/// backend's snapshots then look transactions up on disk.
const MAX_BATCH: usize = 60;
/// Writes queued before callers wait (back-pressure instead of unbounded memory).
const WRITE_QUEUE: usize = 4_096;
/// The longest a batch's later writes wait for a lock another transaction
/// holds before giving way (see the module's notes on lock order).
const GIVE_WAY: &str = "2ms";

/// One attempt of a write on a batch's transaction.
pub(crate) type Attempt<'t, T> = Pin<Box<dyn Future<Output = Result<T, WriteError>> + Send + 't>>;

/// What a batch runs: a write on its transaction.
pub(crate) trait Work: Send + 'static {
    type Output: Send + 'static;
    fn attempt<'t, 'c>(
        &'t mut self,
        tx: &'t mut PostgresTransaction<'c, Object>,
    ) -> Attempt<'t, Self::Output>;
    /// Whether a failed attempt may be made again.
    fn may_retry(&self) -> bool;
}

/// One of the domain's writes (`palisade_domain::writes`), as batches run it.
pub(crate) struct Domain<W>(pub W);

impl<W: Write> Work for Domain<W> {
    type Output = W::Output;
    fn attempt<'t, 'c>(
        &'t mut self,
        tx: &'t mut PostgresTransaction<'c, Object>,
    ) -> Attempt<'t, W::Output> {
        Box::pin(self.0.attempt(tx))
    }
    fn may_retry(&self) -> bool {
        self.0.may_retry()
    }
}

/// A write queued for the writer tasks.
trait BatchJob: Send {
    /// Runs the write once, in its savepoint; keeps its value for the answer.
    fn attempt<'t, 'c>(
        &'t mut self,
        tx: &'t mut PostgresTransaction<'c, Object>,
    ) -> Attempt<'t, ()>;
    /// Whether a failed attempt may be made again: it decided nothing yet.
    fn may_retry(&self) -> bool;
    /// Answers the caller: the attempt's refusal, or its value once committed.
    fn answer(self: Box<Self>, outcome: Result<(), WriteError>);
}

struct Job<W: Work> {
    work: W,
    value: Option<W::Output>,
    reply: oneshot::Sender<Result<W::Output, WriteError>>,
}

impl<W: Work> BatchJob for Job<W> {
    fn attempt<'t, 'c>(
        &'t mut self,
        tx: &'t mut PostgresTransaction<'c, Object>,
    ) -> Attempt<'t, ()> {
        let attempt = self.work.attempt(tx);
        let value = &mut self.value;
        Box::pin(async move {
            *value = Some(attempt.await?);
            Ok(())
        })
    }

    fn may_retry(&self) -> bool {
        self.work.may_retry()
    }

    fn answer(self: Box<Self>, outcome: Result<(), WriteError>) {
        let Job { value, reply, .. } = *self;
        let answer = outcome.and_then(|()| {
            value.ok_or_else(|| {
                WriteError::Store(StoreError::Internal("a write kept no value".into()))
            })
        });
        let _ = reply.send(answer);
    }
}

struct AuditJob {
    entry: AuditEntry,
    machine_ids: Vec<String>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

enum Queued {
    Write(Box<dyn BatchJob>),
    Audit(Box<AuditJob>),
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store is shutting down".into())
}

/// The queue of the node's writer tasks.
pub(crate) struct Batches {
    queue: mpsc::Sender<Queued>,
}

impl Batches {
    /// Starts `writers` writer tasks on connections of `pool`; they stop
    /// once this is dropped and the writes queued are done.
    pub(crate) fn spawn(pool: Pool, writers: usize) -> Batches {
        let (queue, jobs) = mpsc::channel(WRITE_QUEUE);
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(jobs.clone(), pool.clone()));
        }
        Batches { queue }
    }

    /// Runs `work` in the next batch (again, first in the one after, if it
    /// gave way to a lock while it may be retried); answers once that
    /// batch has committed.
    pub(crate) async fn write<W: Work>(&self, work: W) -> Result<W::Output, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            value: None,
            reply,
        };
        self.queue
            .send(Queued::Write(Box::new(job)))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Appends `entry` in the next batch; answers once that batch has committed.
    pub(crate) async fn append_audit(
        &self,
        entry: AuditEntry,
        machine_ids: Vec<String>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = AuditJob {
            entry,
            machine_ids,
            reply,
        };
        self.queue
            .send(Queued::Audit(Box::new(job)))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A writer task: batch after batch, each of the writes that gave way last
/// time first, then every write queued meanwhile.
async fn write_batches(jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>, pool: Pool) {
    let mut gave_way: Vec<Box<dyn BatchJob>> = Vec::new();
    let mut taken = Vec::with_capacity(MAX_BATCH);
    loop {
        let room = MAX_BATCH.saturating_sub(gave_way.len()).max(1);
        {
            let mut jobs = jobs.lock().await;
            if gave_way.is_empty() {
                if jobs.recv_many(&mut taken, room).await == 0 {
                    return; // the store is gone and its queue empty
                }
            } else {
                while taken.len() < room {
                    match jobs.try_recv() {
                        Ok(job) => taken.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        let mut writes = std::mem::take(&mut gave_way);
        let mut audits = Vec::new();
        for job in taken.drain(..) {
            match job {
                Queued::Write(job) => writes.push(job),
                Queued::Audit(job) => audits.push(*job),
            }
        }
        gave_way = commit_batch(&pool, writes, audits).await;
    }
}

/// How long a write of the batch may wait for a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockWait {
    /// As long as the server's `lock_timeout` says (by default, as long as it takes).
    Unbounded,
    /// At most `GIVE_WAY`.
    GiveWay,
}

/// The statements around a batch's savepoints, sent together with the first
/// statement of the write they open (pipelined: one round trip fewer each).
struct Savepoints {
    began: bool,
    open: bool,
    lock_wait: LockWait,
}

impl Savepoints {
    fn new() -> Self {
        Savepoints {
            began: false,
            open: false,
            lock_wait: LockWait::Unbounded,
        }
    }

    /// What opens the next savepoint (beginning the transaction, ending
    /// the last savepoint, setting how long to wait for locks).
    fn open(&mut self, lock_wait: LockWait) -> String {
        let mut sql = String::new();
        if !self.began {
            sql.push_str("BEGIN; ");
            self.began = true;
        }
        if self.open {
            sql.push_str("RELEASE SAVEPOINT write; ");
        }
        if lock_wait != self.lock_wait {
            // Outside any savepoint: holds to the end of the transaction.
            sql.push_str(&match lock_wait {
                LockWait::Unbounded => "SET LOCAL lock_timeout TO DEFAULT; ".to_string(),
                LockWait::GiveWay => format!("SET LOCAL lock_timeout = '{GIVE_WAY}'; "),
            });
            self.lock_wait = lock_wait;
        }
        sql.push_str("SAVEPOINT write");
        self.open = true;
        sql
    }

    /// What commits the transaction. The commit may wait for locks too (a
    /// deferred constraint's check; the queue of notifications, which a
    /// transaction committing its own holds until its commit is durable):
    /// held by transactions about to end, as long as it takes.
    fn commit(&self) -> &'static str {
        match self.lock_wait {
            LockWait::Unbounded => "COMMIT",
            LockWait::GiveWay => "SET LOCAL lock_timeout TO DEFAULT; COMMIT",
        }
    }

    /// Undoes what was written since the savepoint, and ends it.
    async fn roll_back(&mut self, client: &Object) -> Result<(), StoreError> {
        client
            .batch_execute("ROLLBACK TO SAVEPOINT write; RELEASE SAVEPOINT write")
            .await
            .map_err(pg_error)?;
        self.open = false;
        Ok(())
    }
}

/// `attempt`, with a panic in it turned into its error, so that the writer
/// task survives it (the savepoint is rolled back as for any error).
async fn guarded<T>(attempt: impl Future<Output = Result<T, WriteError>>) -> Result<T, WriteError> {
    let mut attempt = pin!(attempt);
    poll_fn(|cx| {
        catch_unwind(AssertUnwindSafe(|| attempt.as_mut().poll(cx))).unwrap_or_else(|_| {
            Poll::Ready(Err(WriteError::Store(StoreError::Internal(
                "a write panicked".into(),
            ))))
        })
    })
    .await
}

/// Whether a failed attempt met another transaction (a lock it waited for
/// too long, a deadlock or serialization failure), rather than a refusal.
fn met_another_transaction(error: &WriteError) -> bool {
    matches!(error, WriteError::Store(StoreError::Unavailable(_)))
}

/// Runs one batch in one transaction; answers every write and entry, but
/// those that gave way to another transaction's lock, which it returns.
async fn commit_batch(
    pool: &Pool,
    writes: Vec<Box<dyn BatchJob>>,
    audits: Vec<AuditJob>,
) -> Vec<Box<dyn BatchJob>> {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            let error = pool_error(error);
            for job in writes {
                job.answer(Err(WriteError::Store(error.clone())));
            }
            for job in audits {
                let _ = job.reply.send(Err(error.clone()));
            }
            return Vec::new();
        }
    };
    let mut savepoints = Savepoints::new();
    let mut ran: Vec<(Box<dyn BatchJob>, Result<(), WriteError>)> =
        Vec::with_capacity(writes.len());
    let mut gave_way = Vec::new();
    let mut announced = Vec::new();
    // The audit entries the writes made, in order.
    let mut written_audits = Vec::new();
    // What ended the transaction, if something did.
    let mut aborted: Option<StoreError> = None;
    let mut writes = writes.into_iter();
    for mut job in writes.by_ref() {
        let lock_wait = match savepoints.began {
            false => LockWait::Unbounded,
            true => LockWait::GiveWay,
        };
        let opening = savepoints.open(lock_wait);
        let mut tx = PostgresTransaction::new(&client);
        // `biased`: the savepoint is sent before the write's first statement.
        let (opened, outcome) = tokio::join!(
            biased;
            client.batch_execute(&opening),
            guarded(job.attempt(&mut tx)),
        );
        if let Err(error) = opened {
            aborted = Some(pg_error(error));
            ran.push((job, outcome));
            break;
        }
        match outcome {
            Ok(()) => {
                let finished = tx.finish();
                announced.extend(finished.announced);
                written_audits.extend(finished.audits);
                ran.push((job, Ok(())));
            }
            Err(error) => {
                if let Err(failed) = savepoints.roll_back(&client).await {
                    aborted = Some(failed);
                    ran.push((job, Err(error)));
                    break;
                }
                if lock_wait == LockWait::GiveWay
                    && met_another_transaction(&error)
                    && job.may_retry()
                {
                    gave_way.push(job);
                } else {
                    ran.push((job, Err(error)));
                }
            }
        }
    }
    // The writes' own entries first (a write never commits without its
    // entry: their failure fails the batch), then those appended on their
    // own, whose failure fails only them.
    let mut audited = Ok(());
    if aborted.is_none() && !written_audits.is_empty() {
        let entries = written_audits
            .iter()
            .map(|(entry, ids)| (entry, ids.as_slice()))
            .collect();
        if let Err(error) = append_in_savepoint(&client, &mut savepoints, entries)
            .await
            .and_then(|appended| appended)
        {
            aborted = Some(error);
        }
    }
    if aborted.is_none() && !audits.is_empty() {
        let entries = audits
            .iter()
            .map(|job| (&job.entry, job.machine_ids.as_slice()))
            .collect();
        match append_in_savepoint(&client, &mut savepoints, entries).await {
            Err(error) => aborted = Some(error),
            Ok(Ok(())) => {}
            Ok(Err(error)) => match savepoints.roll_back(&client).await {
                Ok(()) => audited = Err(error),
                Err(failed) => aborted = Some(failed),
            },
        }
    }
    let committed = match aborted {
        Some(error) => Err(error),
        None => {
            async {
                announce(&client, &announced).await?;
                client
                    .batch_execute(savepoints.commit())
                    .await
                    .map_err(pg_error)
            }
            .await
        }
    };
    let committed = committed.map_err(|error| {
        tracing::error!(%error, "a write batch did not commit");
        // In a transaction of unknown state: never back to the pool.
        drop(Object::take(client));
        StoreError::Unavailable(format!("the write's batch did not commit: {error}"))
    });
    for (job, outcome) in ran {
        // A refusal stands whatever became of the batch; a success only if it committed.
        job.answer(outcome.and(committed.clone().map_err(WriteError::Store)));
    }
    // Only a transaction that ended early leaves writes not run.
    for job in writes {
        let error = committed.clone().err();
        let error = error.unwrap_or_else(|| StoreError::Internal("a write was not run".into()));
        job.answer(Err(WriteError::Store(error)));
    }
    for job in audits {
        let _ = job.reply.send(audited.clone().and(committed.clone()));
    }
    gave_way
}

/// Appends `entries` in a savepoint of their own, waiting for the tenants'
/// audit sequences as long as it takes (see the module's notes on lock
/// order): the savepoint's failure, which ends the transaction, outside;
/// the entries', which the savepoint can undo, inside.
async fn append_in_savepoint(
    client: &Object,
    savepoints: &mut Savepoints,
    entries: Vec<(&AuditEntry, &[String])>,
) -> Result<Result<(), StoreError>, StoreError> {
    let opening = savepoints.open(LockWait::Unbounded);
    let (opened, appended) = tokio::join!(
        biased;
        client.batch_execute(&opening),
        append_all(client, entries),
    );
    opened.map_err(pg_error)?;
    Ok(appended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{config, pool, PoolSettings};
    use crate::rows::{get, Db};
    use palisade_contract::{ErrorCode, MdeError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::task::JoinHandle;
    use tokio_postgres::NoTls;

    /// A database of its own on the server `PALISADE_TEST_POSTGRES` names
    /// (as the API tests do, which drop it if a failed test left it).
    struct TestDatabase {
        server: String,
        name: String,
        url: String,
    }

    async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = url
            .parse::<tokio_postgres::Config>()?
            .connect(NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    impl TestDatabase {
        /// None, after saying so, without a server (a failure under CI=true).
        async fn create() -> Option<TestDatabase> {
            let server = std::env::var("PALISADE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let client = match connect(&server).await {
                Ok(client) => client,
                Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
                    panic!("CI=true but PostgreSQL at {server} is not reachable: {error}")
                }
                Err(error) => {
                    eprintln!("SKIPPED: no PostgreSQL at {server} ({error})");
                    return None;
                }
            };
            static CREATED: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!(
                "palisade_test_{}_batch_{nanos:x}_{}",
                std::process::id(),
                CREATED.fetch_add(1, Ordering::SeqCst)
            );
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let (base, _) = server.rsplit_once('/').unwrap();
            let url = format!("{base}/{name}");
            connect(&url)
                .await
                .unwrap()
                .batch_execute(
                    "CREATE TABLE marks (name TEXT PRIMARY KEY, n INT NOT NULL DEFAULT 0); \
                     INSERT INTO marks (name) VALUES ('x'), ('y')",
                )
                .await
                .unwrap();
            Some(TestDatabase { server, name, url })
        }

        /// The node's writes, on `writers` writer tasks.
        fn batches(&self, writers: usize) -> Arc<Batches> {
            let settings = PoolSettings {
                max_connections: 4,
                timeout: Duration::from_secs(5),
            };
            let pool = pool(config(&self.url, &settings).unwrap(), &settings).unwrap();
            Arc::new(Batches::spawn(pool, writers))
        }

        async fn marks(&self) -> Vec<String> {
            connect(&self.url)
                .await
                .unwrap()
                .query("SELECT name FROM marks ORDER BY name", &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect()
        }

        async fn drop(self) {
            let client = connect(&self.server).await.unwrap();
            let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
            client.batch_execute(&drop).await.unwrap();
        }
    }

    /// A write given as a closure, for the tests' own statements.
    struct Closure<F, T> {
        attempt: F,
        may_retry: bool,
        output: std::marker::PhantomData<fn() -> T>,
    }

    impl<F, T> Work for Closure<F, T>
    where
        T: Send + 'static,
        F: for<'t, 'c> FnMut(&'t mut PostgresTransaction<'c, Object>) -> Attempt<'t, T>
            + Send
            + 'static,
    {
        type Output = T;
        fn attempt<'t, 'c>(
            &'t mut self,
            tx: &'t mut PostgresTransaction<'c, Object>,
        ) -> Attempt<'t, T> {
            (self.attempt)(tx)
        }
        fn may_retry(&self) -> bool {
            self.may_retry
        }
    }

    impl Batches {
        fn write_closure<F, T>(
            &self,
            may_retry: bool,
            attempt: F,
        ) -> impl Future<Output = Result<T, WriteError>> + Send + '_
        where
            T: Send + 'static,
            F: for<'t, 'c> FnMut(&'t mut PostgresTransaction<'c, Object>) -> Attempt<'t, T>
                + Send
                + 'static,
        {
            let output = std::marker::PhantomData;
            self.write(Closure {
                attempt,
                may_retry,
                output,
            })
        }
    }

    /// Writes `name` to the marks (refused after it, if `refuse`); answers
    /// the id of the transaction it ran in, and counts its attempts.
    struct Mark {
        name: &'static str,
        refuse: bool,
        attempts: Arc<AtomicUsize>,
    }

    impl Work for Mark {
        type Output = i64;
        fn attempt<'t, 'c>(
            &'t mut self,
            tx: &'t mut PostgresTransaction<'c, Object>,
        ) -> Attempt<'t, i64> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let (name, refuse) = (self.name, self.refuse);
            Box::pin(async move {
                let db = tx.db();
                db.run("INSERT INTO marks (name) VALUES ($1)", &[&name])
                    .await?;
                let row = db.row("SELECT txid_current()", &[]).await?.unwrap();
                if refuse {
                    let refusal = MdeError::new(ErrorCode::BadRequest, "refused");
                    return Err(WriteError::Rejected(refusal));
                }
                Ok(get::<i64>(&row, 0)?)
            })
        }
        fn may_retry(&self) -> bool {
            true
        }
    }

    fn mark(
        batches: &Arc<Batches>,
        name: &'static str,
        refuse: bool,
        attempts: Arc<AtomicUsize>,
    ) -> JoinHandle<Result<i64, WriteError>> {
        let batches = batches.clone();
        let mark = Mark {
            name,
            refuse,
            attempts,
        };
        tokio::spawn(async move { batches.write(mark).await })
    }

    fn marked(batches: &Arc<Batches>, name: &'static str) -> JoinHandle<Result<i64, WriteError>> {
        mark(batches, name, false, Arc::default())
    }

    /// Holds `names` (an insert not yet committed): a write of one of them waits.
    async fn hold(db: &TestDatabase, names: &[&str]) -> tokio_postgres::Client {
        let holder = connect(&db.url).await.unwrap();
        holder.batch_execute("BEGIN").await.unwrap();
        for name in names {
            holder
                .execute("INSERT INTO marks (name) VALUES ($1)", &[name])
                .await
                .unwrap();
        }
        holder
    }

    /// Waits until `n` backends of the database wait for a lock.
    async fn waiting_for_locks(db: &TestDatabase, n: i64) {
        let client = connect(&db.url).await.unwrap();
        for _ in 0..500 {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never {n} backends waiting for a lock");
    }

    /// The answer of a write, which must come within seconds.
    async fn answer<T>(write: JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), write)
            .await
            .expect("answered within 30 s")
            .unwrap()
    }

    /// Waits until `n` writes are queued (taken by no writer yet).
    async fn queued(batches: &Batches, n: usize) {
        for _ in 0..500 {
            if WRITE_QUEUE - batches.queue.capacity() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never {n} writes queued");
    }

    /// A writer held by a first write that waits for `gate`: what is written
    /// meanwhile is queued, and taken as one batch once the gate opens.
    async fn held_writer(
        db: &TestDatabase,
        batches: &Arc<Batches>,
        gate: &'static str,
    ) -> (tokio_postgres::Client, JoinHandle<Result<i64, WriteError>>) {
        let holder = hold(db, &[gate]).await;
        let first = marked(batches, gate);
        waiting_for_locks(db, 1).await;
        (holder, first)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_write_is_undone_alone_and_its_neighbours_commit_together() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let batches = db.batches(1);
        let (holder, first) = held_writer(&db, &batches, "gate").await;
        let before = marked(&batches, "before");
        queued(&batches, 1).await;
        let refused = mark(&batches, "refused", true, Arc::default());
        queued(&batches, 2).await;
        let after = marked(&batches, "after");
        queued(&batches, 3).await;
        holder.batch_execute("ROLLBACK").await.unwrap();

        let first = answer(first).await.unwrap();
        let (before, after) = (answer(before).await.unwrap(), answer(after).await.unwrap());
        let refused = answer(refused).await;
        assert!(
            matches!(refused, Err(WriteError::Rejected(_))),
            "{refused:?}"
        );
        assert_eq!(before, after, "the writes queued together commit together");
        assert_ne!(first, before);
        assert_eq!(db.marks().await, ["after", "before", "gate", "x", "y"]);
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_whose_transaction_ends_answers_none_of_its_writes_with_success() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let batches = db.batches(1);
        let (holder, first) = held_writer(&db, &batches, "gate").await;
        let before = marked(&batches, "before");
        queued(&batches, 1).await;
        // Its connection ends under it, as when the database goes away.
        let ending = {
            let batches = batches.clone();
            tokio::spawn(async move {
                batches
                    .write_closure(true, |tx| {
                        Box::pin(async move {
                            tx.db()
                                .run("SELECT pg_terminate_backend(pg_backend_pid())", &[])
                                .await?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        queued(&batches, 2).await;
        let after = marked(&batches, "after");
        queued(&batches, 3).await;
        holder.batch_execute("ROLLBACK").await.unwrap();

        answer(first).await.unwrap();
        for (write, outcome) in [
            ("before", answer(before).await.map(|_| ())),
            ("ending", answer(ending).await),
            ("after", answer(after).await.map(|_| ())),
        ] {
            assert!(
                matches!(outcome, Err(WriteError::Store(StoreError::Unavailable(_)))),
                "{write}: {outcome:?}"
            );
        }
        assert_eq!(db.marks().await, ["gate", "x", "y"]);
        // The writer goes on, on a new connection.
        marked(&batches, "later").await.unwrap().unwrap();
        assert_eq!(db.marks().await, ["gate", "later", "x", "y"]);
        db.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_write_gives_way_to_a_lock_and_runs_again_first_in_the_next_batch() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let batches = db.batches(1);
        let (holder, first) = held_writer(&db, &batches, "gate").await;
        let busy = hold(&db, &["busy"]).await;
        let before = marked(&batches, "before");
        queued(&batches, 1).await;
        let attempts = Arc::new(AtomicUsize::new(0));
        let waits = mark(&batches, "busy", false, attempts.clone());
        queued(&batches, 2).await;
        // One that has decided already is not run again: it is answered.
        let decided = {
            let batches = batches.clone();
            tokio::spawn(async move {
                batches
                    .write_closure(false, |tx| {
                        Box::pin(async move {
                            let sql = "INSERT INTO marks (name) VALUES ('busy')";
                            tx.db().run(sql, &[]).await?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        queued(&batches, 3).await;
        holder.batch_execute("ROLLBACK").await.unwrap();

        answer(first).await.unwrap();
        let before = answer(before).await.unwrap();
        let decided = answer(decided).await;
        assert!(
            matches!(decided, Err(WriteError::Store(StoreError::Unavailable(_)))),
            "{decided:?}"
        );
        // The one that gave way now waits, first in its batch, for as long as it takes.
        waiting_for_locks(&db, 1).await;
        assert!(!waits.is_finished());
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(db.marks().await, ["before", "gate", "x", "y"]);
        busy.batch_execute("ROLLBACK").await.unwrap();
        let waited = answer(waits).await.unwrap();
        assert_ne!(waited, before);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(db.marks().await, ["before", "busy", "gate", "x", "y"]);
        db.drop().await;
    }

    /// The commit of a batch whose later writes give way to locks waits for
    /// the locks the commit itself needs: here a deferred unique check, of a
    /// key another transaction has written and not yet committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_commits_after_waiting_for_the_locks_of_its_commit() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let client = connect(&db.url).await.unwrap();
        client
            .batch_execute("CREATE TABLE checked (name TEXT UNIQUE DEFERRABLE INITIALLY DEFERRED)")
            .await
            .unwrap();
        let batches = db.batches(1);
        let (holder, first) = held_writer(&db, &batches, "gate").await;
        let before = marked(&batches, "before");
        queued(&batches, 1).await;
        let checked = {
            let batches = batches.clone();
            tokio::spawn(async move {
                batches
                    .write_closure(true, |tx| {
                        Box::pin(async move {
                            let sql = "INSERT INTO checked (name) VALUES ('k')";
                            tx.db().run(sql, &[]).await?;
                            Ok(())
                        })
                    })
                    .await
            })
        };
        queued(&batches, 2).await;
        let other = connect(&db.url).await.unwrap();
        other
            .batch_execute("BEGIN; INSERT INTO checked (name) VALUES ('k')")
            .await
            .unwrap();
        holder.batch_execute("ROLLBACK").await.unwrap();
        answer(first).await.unwrap();
        // The commit waits for the other transaction, longer than a later write would.
        waiting_for_locks(&db, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!before.is_finished());
        other.batch_execute("ROLLBACK").await.unwrap();
        answer(before).await.unwrap();
        answer(checked).await.unwrap();
        assert_eq!(db.marks().await, ["before", "gate", "x", "y"]);
        db.drop().await;
    }

    /// Adds one to counter `name`, having waited at `meet` if given.
    fn count(
        batches: &Arc<Batches>,
        name: &'static str,
        meet: Option<Arc<tokio::sync::Barrier>>,
    ) -> JoinHandle<Result<(), WriteError>> {
        let batches = batches.clone();
        tokio::spawn(async move {
            batches
                .write_closure(true, move |tx| {
                    let meet = meet.clone();
                    Box::pin(async move {
                        let sql = "UPDATE marks SET n = n + 1 WHERE name = $1";
                        tx.db().run(sql, &[&name]).await?;
                        if let Some(meet) = meet {
                            meet.wait().await;
                        }
                        Ok(())
                    })
                })
                .await
        })
    }

    /// Two nodes' batches take the same two rows in opposite orders: each
    /// batch's second write gives way instead of closing a wait cycle, and
    /// every write commits (a deadlock would fail one of them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_taking_rows_in_opposite_orders_do_not_deadlock() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        // A deadlock would wait this long to be found (and one write to fail).
        let client = connect(&db.url).await.unwrap();
        let patient = format!("ALTER DATABASE {} SET deadlock_timeout = '1min'", db.name);
        client.batch_execute(&patient).await.unwrap();
        let (a, b) = (db.batches(1), db.batches(1));
        let holder = hold(&db, &["gate-a", "gate-b"]).await;
        let gates = [marked(&a, "gate-a"), marked(&b, "gate-b")];
        waiting_for_locks(&db, 2).await;
        // Both batches hold their first row before either asks for its second.
        let meet = Arc::new(tokio::sync::Barrier::new(2));
        let a_first = count(&a, "x", Some(meet.clone()));
        queued(&a, 1).await;
        let a_second = count(&a, "y", None);
        queued(&a, 2).await;
        let b_first = count(&b, "y", Some(meet));
        queued(&b, 1).await;
        let b_second = count(&b, "x", None);
        queued(&b, 2).await;
        holder.batch_execute("ROLLBACK").await.unwrap();

        for gate in gates {
            answer(gate).await.unwrap();
        }
        for write in [a_first, a_second, b_first, b_second] {
            answer(write).await.unwrap();
        }
        let counts = client
            .query("SELECT n FROM marks WHERE name IN ('x', 'y')", &[])
            .await
            .unwrap();
        assert!(counts.iter().all(|row| row.get::<_, i32>(0) == 2));
        db.drop().await;
    }

    /// A connection keeps at most `MOST_PREPARED` statements: built ones
    /// of ever new texts are forgotten past that, and each still answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_forgets_its_statements_past_the_most_it_keeps() {
        use crate::rows::MOST_PREPARED;
        use palisade_store_sql::{Dialect, Sql, Value};
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let settings = PoolSettings {
            max_connections: 1,
            timeout: Duration::from_secs(5),
        };
        let pool = pool(config(&db.url, &settings).unwrap(), &settings).unwrap();
        let client = pool.get().await.unwrap();
        for n in 0..MOST_PREPARED as i64 + 50 {
            let mut sql = Sql::new(Dialect::Postgres);
            sql.push(&format!("SELECT {n} + ")).bind(Value::Integer(1));
            let rows = client.built(&sql).await.unwrap();
            assert_eq!(get::<i64>(&rows[0], 0).unwrap(), n + 1);
            assert!(client.statement_cache.size() <= MOST_PREPARED + 1);
        }
        assert!(
            client.statement_cache.size() < 60,
            "the cache was cleared once"
        );
        drop(client);
        db.drop().await;
    }
}
