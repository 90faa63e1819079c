//! What may happen to a machine, and who may do it.
//!
//! The rules (retention, OS support, one active action per type, tag limits,
//! the action life cycle, device-group visibility) are written once here as
//! plain functions; [`service::Palisade`] applies them for every front end, and
//! [`store::Store`] is the storage interface; `palisade_store_sql` implements it
//! once, over SQLite and PostgreSQL.
//! The stores' writes are written once, in [`writes`], over the rows a
//! [`writes::Transaction`] of either database loads and saves.

pub mod access;
pub mod alert_service;
pub mod caller;
pub mod clock;
pub mod control;
pub mod control_service;
pub mod devices;
pub mod files;
pub mod identity;
pub mod ids;
pub mod inventory;
pub mod live_response;
pub mod query;
pub mod rate_limit;
pub mod rules;
pub mod seed;
pub mod service;
pub mod store;
pub mod writes;

pub use access::{Operation, Role};
pub use caller::{Caller, DeviceGroupAccess, Principal, Tenant};
pub use clock::{Clock, OffsetClock, SystemClock, TenantClock, TenantClocks, TenantScope};
pub use service::Palisade;
pub use store::{Store, StoreError};
