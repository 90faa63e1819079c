//! HTTP-level tests of the MDE API against a real server on a real SQLite store.
//! One binary (faster to build); one module per area. `api_postgres` runs
//! the same modules on PostgreSQL.

/// The store every test here runs on.
const BACKEND: backend::Backend = backend::Backend::Sqlite;

mod backend;
mod harness;

mod admin_cli;
mod agent;
mod alerts;
mod browser;
mod bulk_writes;
mod console;
mod control_clock;
mod control_faults;
mod control_plane;
mod control_recorder;
mod control_state;
mod device_groups;
mod device_indicators;
mod device_plane;
mod durability;
mod errors;
mod external_issuer;
mod identity;
mod indicators;
mod inventory;
mod key_encryption;
mod limits_and_audit;
mod live_response;
mod machine_actions;
mod machines;
mod oauth_flows;
mod odata;
mod openapi;
mod packages;
mod public_url;
mod python_fixture;
mod real_clients;
mod sign_in_clients;
mod tls;
mod transport;
