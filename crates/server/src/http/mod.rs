//! The HTTP front end's plumbing: the request envelope (request id, log line,
//! MDE error bodies), case-insensitive routing, extractors and OData responses.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod host;
pub mod odata;
pub mod paths;

/// Largest request body accepted (decisions: Wire).
pub const MAX_BODY_BYTES: usize = 1 << 20;
