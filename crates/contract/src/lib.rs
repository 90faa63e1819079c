//! The Microsoft Defender for Endpoint machine API as it is on the wire.
//!
//! Everything a client of MDE sees lives here: the `Machine` and `MachineAction`
//! entities with their exact JSON casing and property order, the request bodies,
//! the error body `{"error":{"code","message","target"}}` and the OData query
//! language. Server, benchmark, tests (and later the agent and the CLI) share it,
//! so the wire shape is defined exactly once.

pub mod action;
pub mod control;
pub mod error;
pub mod machine;
pub mod odata;
pub mod permissions;
pub mod requests;
pub mod seed;
pub mod time;

pub use action::{ActionStatus, ActionType, MachineAction, RelatedFileInfo};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, MdeError};
pub use machine::{
    DeviceValue, ExposureLevel, HealthStatus, IpAddress, Machine, OnboardingStatus, OsPlatform,
    RiskScore, SerializedMachine,
};
pub use permissions::Permission;
pub use time::Timestamp;
