//! The embedded SQLite store: one writer thread that commits in batches, and a
//! pool of read-only connections that reads run on (see `workers::Readers`).
//!
//! Why this shape: SQLite allows one writer at a time. Funnelling every write
//! through one connection means no request ever meets `SQLITE_BUSY`, and
//! batching the writes that queue up meanwhile into one transaction makes the
//! cost of durability (one fsync per commit, `synchronous=FULL`) shared by the
//! batch rather than paid per request. Each write runs in its own savepoint, so
//! one refused write does not undo its neighbours; its caller is answered only
//! after the batch's commit has reached the disk.

mod connection;
mod database;
mod devices;
mod rows;
mod transaction;
mod workers;

pub use connection::{open_connection, MIGRATIONS};
pub use database::{open, SqliteDatabase, SqliteStore};
