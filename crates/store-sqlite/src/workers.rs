//! Threads that own SQLite connections and run jobs sent to them.

use palisade_domain::store::{StoreError, WriteError};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most writes committed together in one transaction.
const MAX_BATCH: usize = 512;
/// SQLite VM steps a read may take on a server thread before it moves to the
/// blocking pool: some tenths of a millisecond, a few pages of machines.
const INLINE_VM_STEPS: i32 = 200_000;
/// Writes queued before callers wait (back-pressure instead of unbounded memory).
const WRITE_QUEUE: usize = 4_096;

pub(crate) fn store_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode::*;
    match error.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | DiskFull | CannotOpen | SystemIoFailure) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store is shutting down".into())
}

/// Runs `work`, turning a panic into an error so that the thread survives it.
fn guarded<T>(work: impl FnOnce() -> Result<T, WriteError>) -> Result<T, WriteError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(WriteError::Store(StoreError::Internal(
            "a store job panicked".into(),
        )))
    })
}

/// Read-only connections, checked out one per read.
///
/// Why not deadpool-sqlite or r2d2: both hand every read to a blocking thread
/// (or test the connection on checkout), and on two cores the thread hand-off
/// costs more than a point read itself. Here a point read runs on the calling
/// task's thread — tens of microseconds, like serialising its answer — and only
/// reads that turn out to scan many rows move to the blocking pool.
pub(crate) struct Readers {
    idle: Arc<Mutex<Vec<Connection>>>,
    /// One permit per connection that may exist; bounds concurrent readers.
    permits: Arc<Semaphore>,
    open: Arc<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>,
}

/// A checked-out connection; goes back to the idle list when dropped.
struct Lease {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.idle.lock()) {
            idle.push(conn);
        }
    }
}

impl Readers {
    pub fn new(
        size: usize,
        open: impl Fn() -> rusqlite::Result<Connection> + Send + Sync + 'static,
    ) -> Readers {
        Readers {
            idle: Arc::default(),
            permits: Arc::new(Semaphore::new(size)),
            open: Arc::new(open),
        }
    }

    async fn checkout(&self) -> Result<Lease, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| stopped())?;
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => (self.open)().map_err(store_error)?,
        };
        Ok(Lease {
            conn: Some(conn),
            idle: self.idle.clone(),
            _permit: permit,
        })
    }

    /// A read of a few rows by key, run right here.
    pub async fn read_now<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T>,
    {
        let lease = self.checkout().await?;
        let conn = lease.conn.as_ref().expect("a lease holds its connection");
        work(conn).map_err(store_error)
    }

    /// A read that may scan many rows. Most do not (a page of a filtered
    /// list, found through an index): tried here first, with a budget of
    /// SQLite VM steps, and only when it needs more is it interrupted and run
    /// again on the blocking pool. The hand-off to a blocking thread and back
    /// costs more than a small list's whole query; a large scan must not hold a
    /// server thread for long. `work` is run twice in that case: reads have no
    /// effects.
    pub async fn read_many<T, F>(&self, mut work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let lease = self.checkout().await?;
        let conn = lease.conn.as_ref().expect("a lease holds its connection");
        let inline = {
            let _budget = StepBudget::set(conn).map_err(store_error)?;
            work(conn)
        };
        match inline {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {}
            done => return done.map_err(store_error),
        }
        tokio::task::spawn_blocking(move || {
            let conn = lease.conn.as_ref().expect("a lease holds its connection");
            work(conn).map_err(store_error)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a read failed: {e}")))?
    }
}

/// The inline budget of SQLite VM steps, set on a connection for as long as
/// this lives. Lifted on drop, so that a connection goes back to the idle list
/// without it even when the work under it panicked.
struct StepBudget<'c>(&'c Connection);

impl<'c> StepBudget<'c> {
    fn set(conn: &'c Connection) -> rusqlite::Result<StepBudget<'c>> {
        // Called once the budget is spent; `true` interrupts the statement.
        conn.progress_handler(INLINE_VM_STEPS, Some(|| true))?;
        Ok(StepBudget(conn))
    }
}

impl Drop for StepBudget<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.0.progress_handler(0, None::<fn() -> bool>) {
            tracing::error!(%error, "could not lift a read's step budget");
        }
    }
}

/// A write queued for the writer thread.
trait WriteJob: Send {
    /// Runs inside the batch transaction, in its own savepoint, and returns
    /// what to do once the batch's commit has succeeded or failed.
    fn run(self: Box<Self>, conn: &mut Connection) -> Completion;
    /// The batch could not even start: answer with `error`.
    fn abandon(self: Box<Self>, error: StoreError);
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Reply<T> = tokio::sync::oneshot::Sender<Result<T, WriteError>>;

struct Job<T, F> {
    work: F,
    reply: Reply<T>,
}

impl<T, F> WriteJob for Job<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, WriteError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &mut Connection) -> Completion {
        let Job { work, reply } = *self;
        let failed = |e| WriteError::Store(store_error(e));
        // Savepoints by hand rather than rusqlite's `Savepoint`, which holds
        // the connection shared: the job gets it mutably (`SqliteTransaction`).
        // Whether the savepoint could not be released or undone: the job's
        // changes may then stand in the transaction, so the whole batch goes.
        let mut savepoint_failed = false;
        let mut savepoint = |conn: &mut Connection, sql: &str| {
            let done = conn.execute_batch(sql);
            savepoint_failed |= done.is_err();
            done.map_err(failed)
        };
        let outcome = match conn.execute_batch("SAVEPOINT job") {
            Ok(()) => match guarded(|| work(conn)) {
                Ok(value) => savepoint(conn, "RELEASE job").map(|()| value),
                // A refused job's changes are undone. (If its failure ended
                // the whole transaction, there is nothing to undo.)
                Err(error) if conn.is_autocommit() => Err(error),
                Err(error) => savepoint(conn, "ROLLBACK TO job; RELEASE job").and(Err(error)),
            },
            Err(e) => Err(failed(e)),
        };
        if savepoint_failed && !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %store_error(e), "could not roll a failed batch back");
            }
        }
        Box::new(move |committed: Result<(), StoreError>| {
            // A refusal stands whatever became of the batch; a success only if it committed.
            let answer = match outcome {
                Ok(value) => committed.map(|()| value).map_err(WriteError::Store),
                Err(error) => Err(error),
            };
            let _ = reply.send(answer);
        })
    }

    fn abandon(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(WriteError::Store(error)));
    }
}

pub(crate) struct Writer {
    queue: tokio::sync::mpsc::Sender<Box<dyn WriteJob>>,
}

impl Writer {
    pub fn spawn(mut conn: Connection) -> Writer {
        let (queue, mut jobs) = tokio::sync::mpsc::channel::<Box<dyn WriteJob>>(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                let run = catch_unwind(AssertUnwindSafe(|| {
                    while jobs.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
                        commit_batch(&mut conn, batch.drain(..));
                    }
                }));
                if run.is_err() {
                    // Without its writer the server can only refuse writes: stop it, so
                    // that a supervisor restarts it, rather than limp on.
                    tracing::error!("the SQLite writer failed; stopping the server");
                    std::process::abort();
                }
            })
            .expect("spawn the writer thread");
        Writer { queue }
    }

    /// Runs `work` in the next batch; answers after that batch is durable.
    pub async fn write<T, F>(&self, work: F) -> Result<T, WriteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, WriteError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { work, reply });
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn commit_batch(conn: &mut Connection, jobs: impl Iterator<Item = Box<dyn WriteJob>>) {
    let begun = match conn.is_autocommit() {
        true => conn.execute_batch("BEGIN IMMEDIATE"),
        // A batch whose rollback failed left its transaction open.
        false => conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE"),
    };
    if let Err(e) = begun {
        let error = store_error(e);
        tracing::error!(%error, "could not begin a write transaction");
        for job in jobs {
            job.abandon(error.clone());
        }
        return;
    }
    let mut completions: Vec<Completion> = Vec::new();
    let mut jobs = jobs;
    for job in jobs.by_ref() {
        completions.push(job.run(conn));
        // Some errors (disk full, I/O) end the whole transaction, not just the
        // job's savepoint: then no job of this batch may count as written.
        if conn.is_autocommit() {
            let error = StoreError::Unavailable("a write batch was rolled back".into());
            tracing::error!(%error, "a write aborted its batch");
            for job in jobs {
                job.abandon(error.clone());
            }
            for complete in completions {
                complete(Err(error.clone()));
            }
            return;
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(store_error);
    if let Err(error) = &committed {
        tracing::error!(%error, "a write batch failed to commit");
        if !conn.is_autocommit() {
            // Still open: undo it, so the next batch can begin.
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %store_error(e), "could not roll a failed batch back");
            }
        }
    }
    for complete in completions {
        complete(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A read of `n` SQLite VM steps and more: counts to `n`.
    fn count_to(conn: &Connection, n: i64) -> rusqlite::Result<i64> {
        conn.query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1) \
             SELECT count(*) FROM c",
            [n],
            |row| row.get::<_, i64>(0),
        )
    }

    /// A small read is answered where it was asked; one over the budget is
    /// interrupted and answered in full from the blocking pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_over_its_inline_budget_finishes_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        let readers = Readers::new(2, move || crate::open_connection(&path));
        let counting_to = |n: i64, runs: Arc<AtomicUsize>| {
            move |conn: &Connection| {
                runs.fetch_add(1, Ordering::SeqCst);
                count_to(conn, n)
            }
        };
        for (n, expected_runs) in [(100, 1), (1_000_000, 2)] {
            let runs = Arc::new(AtomicUsize::new(0));
            let counted = readers
                .read_many(counting_to(n, runs.clone()))
                .await
                .unwrap();
            assert_eq!(counted, n);
            assert_eq!(
                runs.load(Ordering::SeqCst),
                expected_runs,
                "runs counting to {n}"
            );
        }
        // Any other failure is the answer: not run again.
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let failed = readers
            .read_many(move |conn| {
                counted.fetch_add(1, Ordering::SeqCst);
                conn.query_row("SELECT count(*) FROM no_such_table", [], |row| {
                    row.get::<_, i64>(0)
                })
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Internal(_))), "{failed:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // The budget was lifted from the connection: it reads to the end inline.
        let counted = readers
            .read_now(|conn| count_to(conn, 1_000_000))
            .await
            .unwrap();
        assert_eq!(counted, 1_000_000);
    }

    /// A read whose work panics gives its connection back without the
    /// budget: the next read on it is not cut short.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_read_leaves_no_budget_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reads.db");
        // One connection: the next read gets the one the panic left.
        let readers = Arc::new(Readers::new(1, move || crate::open_connection(&path)));
        let panicking = readers.clone();
        let outcome = tokio::spawn(async move {
            panicking
                .read_many(|_: &Connection| -> rusqlite::Result<()> { panic!("a bug in a read") })
                .await
        })
        .await;
        assert!(outcome.unwrap_err().is_panic());
        let counted = readers
            .read_now(|conn| count_to(conn, 1_000_000))
            .await
            .unwrap();
        assert_eq!(counted, 1_000_000);
    }
}
