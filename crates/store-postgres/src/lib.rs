//! The PostgreSQL store, for several Palisade nodes sharing one database.
//!
//! Every fact lives in the database, so any node can answer any request:
//! machines, actions and identity as in the embedded store, plus what a
//! single node could keep in memory there: rate-limit call logs (a row per
//! key, locked while a call is admitted) and the news of new actions (a
//! `NOTIFY` in the transaction that creates one, relayed by each node's
//! `LISTEN` connection to its waiting devices). Writes that a domain rule
//! decides lock the rows the rule reads (`FOR UPDATE`), so the rule holds
//! across nodes as it does on the single SQLite writer; action delivery skips
//! rows another node is delivering (`FOR UPDATE SKIP LOCKED`).

mod audit;
mod batch;
mod connection;
mod database;
mod devices;
mod listen;
mod machine_writes;
mod rows;
mod transaction;

pub use connection::{PoolSettings, PLANNING_ONCE};
pub use database::{connect, PostgresDatabase, PostgresStore};
