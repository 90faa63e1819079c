//! The device plane's own protocol: how a device enrolls with an onboarding
//! token, checks in, receives machine actions and reports their outcome.
//!
//! It is Palisade's, not MDE's (MDE's sensor protocol is not public), so it is
//! kept apart from `palisade-contract`. Actions travel in their MDE shape
//! (`MachineAction`), so that a device sees exactly what the API shows.
//!
//! Delivery is a long poll on the check-in (`POST /device/v1/checkin?wait=N`):
//! it is plain HTTPS through any proxy, needs no second protocol on the server
//! or the agent, resumes by simply polling again, and an idle waiting device
//! costs one parked connection. SSE or WebSocket would add a stream to keep
//! alive and reconnect logic without delivering faster.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod detections;
#[cfg(feature = "client")]
pub mod fleet;

pub use protocol::*;
