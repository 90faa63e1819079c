//! The Microsoft Defender for Endpoint API as it is on the wire.
//!
//! Everything a client of MDE sees lives here: the `Machine`, `MachineAction`,
//! `Alert` and `Indicator` entities with their exact JSON casing and property order, the request bodies,
//! the error body `{"error":{"code","message","target"}}` and the OData query
//! language. Server, benchmark, tests (and later the agent and the CLI) share it,
//! so the wire shape is defined exactly once.

pub mod action;
pub mod alert;
pub mod control;
pub mod error;
pub mod indicator;
pub mod inventory;
pub mod live_response;
pub mod machine;
pub mod odata;
pub mod permissions;
pub mod requests;
pub mod seed;
pub mod time;

pub use action::{ActionStatus, ActionType, MachineAction, RelatedFileInfo};
pub use alert::Alert;
pub use error::{ErrorBody, ErrorCode, ErrorDetail, MdeError};
pub use indicator::Indicator;
pub use machine::{
    DeviceValue, ExposureLevel, HealthStatus, IpAddress, Machine, OnboardingStatus, OsPlatform,
    RiskScore, SerializedMachine,
};
pub use permissions::Permission;
pub use time::Timestamp;
