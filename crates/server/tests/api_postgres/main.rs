//! The API tests of `api`, every one of them, on PostgreSQL (see `backend`).

/// The store every test here runs on.
const BACKEND: backend::Backend = backend::Backend::Postgres;

#[path = "../api/admin_cli.rs"]
mod admin_cli;
#[path = "../api/agent.rs"]
mod agent;
#[path = "../api/alerts.rs"]
mod alerts;
#[path = "../api/backend.rs"]
mod backend;
#[path = "../api/bulk_writes.rs"]
mod bulk_writes;
#[path = "../api/control_clock.rs"]
mod control_clock;
#[path = "../api/control_faults.rs"]
mod control_faults;
#[path = "../api/control_plane.rs"]
mod control_plane;
#[path = "../api/control_recorder.rs"]
mod control_recorder;
#[path = "../api/control_state.rs"]
mod control_state;
#[path = "../api/device_groups.rs"]
mod device_groups;
#[path = "../api/device_indicators.rs"]
mod device_indicators;
#[path = "../api/device_plane.rs"]
mod device_plane;
#[path = "../api/durability.rs"]
mod durability;
#[path = "../api/errors.rs"]
mod errors;
#[path = "../api/external_issuer.rs"]
mod external_issuer;
#[path = "../api/harness.rs"]
mod harness;
#[path = "../api/identity.rs"]
mod identity;
#[path = "../api/indicators.rs"]
mod indicators;
#[path = "../api/inventory.rs"]
mod inventory;
#[path = "../api/key_encryption.rs"]
mod key_encryption;
#[path = "../api/limits_and_audit.rs"]
mod limits_and_audit;
#[path = "../api/live_response.rs"]
mod live_response;
#[path = "../api/machine_actions.rs"]
mod machine_actions;
#[path = "../api/machines.rs"]
mod machines;
#[path = "../api/oauth_flows.rs"]
mod oauth_flows;
#[path = "../api/odata.rs"]
mod odata;
#[path = "../api/openapi.rs"]
mod openapi;
#[path = "../api/packages.rs"]
mod packages;
#[path = "../api/public_url.rs"]
mod public_url;
#[path = "../api/real_clients.rs"]
mod real_clients;
#[path = "../api/tls.rs"]
mod tls;
#[path = "../api/transport.rs"]
mod transport;

/// Only here: several nodes share a PostgreSQL database, not an SQLite file.
mod multi_node;
mod outage;
/// Only here: SQLite plans each call.
mod plans;
/// Only here: machine revisions on PostgreSQL (SQLite's: its store's unit tests).
mod revision;
/// Only here: it needs PostgreSQL as much as SQLite.
mod schema;
