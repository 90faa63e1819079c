//! What a database does for the store written over it ([`crate::store::SqlStore`]):
//! run a statement and hand back its rows, run statements durably, run the
//! domain's writes in its transactions ([`palisade_domain::writes::Write`],
//! through its [`palisade_domain::writes::Transaction`]), and the few things
//! each does its own way (rate-limit call logs, action delivery, the audit
//! log's ids, news of new actions across nodes).

use crate::fields::StoredRow;
use crate::{Dialect, Sql};
use palisade_contract::{MachineAction, Timestamp};
use palisade_domain::devices::wakeups::Wakeups;
use palisade_domain::identity::AuditEntry;
use palisade_domain::rate_limit::{RateKey, RateLimits, Throttled};
use palisade_domain::store::{StoreError, WriteError};
use palisade_domain::writes::Write;
use std::future::Future;
use std::sync::Arc;

/// How much a read may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// A few rows by key.
    Few,
    /// A page, a list, a scan: it may take a while (SQLite moves it off the
    /// server's threads when it does).
    Many,
}

pub trait Database: Send + Sync + 'static {
    const DIALECT: Dialect;

    /// The rows `sql` selects, each decoded by `decode` (which may run again
    /// from the first row if the read is run again).
    fn read<T, F>(
        &self,
        reading: Reading,
        sql: Sql,
        decode: F,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send
    where
        T: Send + 'static,
        F: FnMut(&dyn StoredRow) -> Result<T, StoreError> + Send + 'static;

    /// Runs `statements` in one transaction, all or none, answering once it
    /// is durable: how many rows each changed.
    fn execute(
        &self,
        statements: Vec<Sql>,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// Runs one of the domain's writes with the writes queued beside it,
    /// answering once it is durable.
    fn write<W: Write>(
        &self,
        write: W,
    ) -> impl Future<Output = Result<W::Output, WriteError>> + Send;

    /// Runs a write of many rows (`machines` of them machines): on
    /// PostgreSQL in a transaction of its own, on SQLite's one writer in turn
    /// with the rest.
    fn bulk_write<W: Write>(
        &self,
        write: W,
        machines: usize,
    ) -> impl Future<Output = Result<W::Output, WriteError>> + Send;

    /// `Store::claim_device_actions`, once a read has found one deliverable.
    fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> impl Future<Output = Result<Vec<MachineAction>, StoreError>> + Send;

    /// `Store::relay_new_actions`.
    fn relay_new_actions(&self, wakeups: Arc<Wakeups>);

    /// `Store::admit_call`.
    fn admit_call(
        &self,
        key: &RateKey,
        limits: RateLimits,
        now: Timestamp,
    ) -> impl Future<Output = Result<Result<(), Throttled>, StoreError>> + Send;

    /// `Store::forget_idle_calls`.
    fn forget_idle_calls(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `Store::forget_calls_of`.
    fn forget_calls_of(
        &self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `Store::append_audit`.
    fn append_audit(
        &self,
        entry: AuditEntry,
        machine_ids: Vec<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
