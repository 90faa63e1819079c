//! The Palisade server: the MDE-compatible API over HTTP, the CLI and the demo tenant.

pub mod admin_cli;
pub mod api;
pub mod app;
pub mod cli;
pub mod console;
pub mod control;
pub mod demo;
pub mod device_plane;
pub mod downloads;
pub mod http;
pub mod sign_in;
pub mod simulate;
pub mod tls;
pub mod token_service;
pub mod transport;
