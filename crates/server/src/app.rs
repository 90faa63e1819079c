//! Wiring: the store, the domain service and the HTTP stack, and serving them.

use crate::api;
use crate::control;
use crate::device_plane;
use crate::downloads;
use crate::http::auth::{gate, operation_table};
use crate::http::envelope::envelope;
use crate::http::host::{require_known_host, PublicOrigins, PublicUrl};
use crate::http::paths::PathCanon;
use crate::{sign_in, token_service};
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use palisade_domain::caller::DEFAULT_RETENTION_DAYS;
use palisade_domain::devices::{DevicePlane, DEFAULT_CHECK_IN_INTERVAL_SECONDS};
use palisade_domain::rate_limit::{RateLimiter, RateLimits};
use palisade_domain::{Palisade, Store, Tenant};
use palisade_identity::sealing::{self, KeySealer};
use palisade_identity::{ExternalIssuer, TokenService, Validator};
use palisade_store_postgres::PoolSettings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What every request may use. Behind one `Arc`: axum clones the state for
/// every extractor of every request.
pub struct Services {
    pub palisade: Palisade,
    pub devices: DevicePlane,
    pub validator: Validator,
    pub tokens: TokenService,
    /// `None` with `--rate-limit off`.
    pub limiter: Option<RateLimiter>,
    pub scheme: &'static str,
    /// The origins requests may name (`--public-url`).
    pub origins: PublicOrigins,
    /// The largest investigation package a device may upload.
    pub max_package_bytes: u64,
}

/// How the HTTP front end is set up, beyond the store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: no rate limits.
    pub rate_limits: Option<RateLimits>,
    pub external_issuers: Vec<ExternalIssuer>,
    /// `https` when serving TLS.
    pub tls: bool,
    /// How often devices report when nothing happens.
    pub check_in_interval_seconds: u64,
    /// The origins clients reach this server by; none: loopback and the listen address.
    pub public_urls: Vec<PublicUrl>,
    /// Seals the token signing keys at rest (see [`key_sealer`]).
    pub key_sealer: KeySealer,
    /// Enrollments per onboarding token; `None`: not limited.
    pub enrollment_rate_limits: Option<RateLimits>,
    /// The largest investigation package a device may upload.
    pub max_package_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rate_limits: None,
            external_issuers: vec![],
            tls: false,
            check_in_interval_seconds: DEFAULT_CHECK_IN_INTERVAL_SECONDS,
            public_urls: vec![],
            // Good for a database that does not outlive the process; `serve` loads a kept one.
            key_sealer: KeySealer::ephemeral(),
            enrollment_rate_limits: None,
            max_package_bytes: palisade_domain::files::DEFAULT_MAX_PACKAGE_BYTES,
        }
    }
}

impl AppState {
    /// `listen_authority`: `host:port` the server listens on.
    pub fn new(palisade: Palisade, settings: &Settings, listen_authority: String) -> Self {
        let scheme = if settings.tls { "https" } else { "http" };
        let store = palisade.store().clone();
        let clock = palisade.clock().clone();
        // Actions other nodes create wake this node's waiting devices too.
        store.relay_new_actions(palisade.wakeups().clone());
        AppState(Arc::new(Services {
            validator: Validator::new(
                store.clone(),
                clock.clone(),
                settings.external_issuers.clone(),
            ),
            tokens: TokenService::new(store.clone(), clock.clone(), settings.key_sealer.clone()),
            limiter: settings
                .rate_limits
                .map(|limits| RateLimiter::new(limits, clock, store)),
            devices: DevicePlane::new(palisade.clone(), settings.check_in_interval_seconds)
                .with_enrollment_limits(settings.enrollment_rate_limits),
            palisade,
            scheme,
            origins: PublicOrigins::new(&settings.public_urls, scheme, &listen_authority),
            max_package_bytes: settings.max_package_bytes,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The tenant a plain `palisade serve` creates for itself.
pub const DEFAULT_TENANT_ID: &str = "00000000-0000-0000-0000-000000000001";

/// Opens the store named by `database`: `sqlite://PATH` (or a plain path), the
/// embedded default; or `postgres://...`, for several nodes sharing one database.
pub async fn open_store(database: &str, pool: PoolSettings) -> anyhow::Result<Arc<dyn Store>> {
    if is_postgres(database) {
        let store = palisade_store_postgres::connect(database, pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", redacted(database)))?;
        return Ok(Arc::new(store));
    }
    let path = sqlite_path(database);
    let store = palisade_store_sqlite::open(&PathBuf::from(path))
        .map_err(|e| anyhow::anyhow!("cannot open the database {path}: {e}"))?;
    Ok(Arc::new(store))
}

fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The file of an SQLite database URL (`sqlite://PATH`, or a plain path).
fn sqlite_path(database: &str) -> &str {
    database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database)
}

/// The environment variable that gives the key-encryption key itself
/// (base64 of 32 bytes), instead of a key file; it wins over `--key-file`.
pub const KEY_ENCRYPTION_KEY_VARIABLE: &str = "PALISADE_KEY_ENCRYPTION_KEY";

/// The key-encryption key that seals the signing keys of `database`:
/// `PALISADE_KEY_ENCRYPTION_KEY`, else the file `key_file`, else (SQLite
/// only) `PATH.key` beside the database. For SQLite a key file that does not
/// exist is made (mode 0600) while no key in the database is sealed; a
/// missing or wrong key is an error, never a reason to make new signing keys.
/// PostgreSQL's key must exist beforehand: nodes making keys of their own on
/// a new database would each seal with a different one.
/// Every sealed key is checked to open, and plaintext keys of databases made
/// before are sealed.
pub async fn key_sealer(
    database: &str,
    key_file: Option<&Path>,
    store: &dyn Store,
) -> anyhow::Result<KeySealer> {
    let sealer = match std::env::var(KEY_ENCRYPTION_KEY_VARIABLE) {
        Ok(text) => KeySealer::from_base64(&text, KEY_ENCRYPTION_KEY_VARIABLE)?,
        Err(_) => {
            let path = match key_file {
                Some(path) => path.to_path_buf(),
                None if is_postgres(database) => anyhow::bail!(
                    "with PostgreSQL, give the key that seals the token signing keys: \
                     --key-file PATH (the same file on every node; make one with \
                     `head -c 32 /dev/urandom | base64 > PATH; chmod 600 PATH`) \
                     or {KEY_ENCRYPTION_KEY_VARIABLE}"
                ),
                None => PathBuf::from(format!("{}.key", sqlite_path(database))),
            };
            if path.exists() || is_postgres(database) {
                KeySealer::read_file(&path)?
            } else if sealing::any_sealed(store).await? {
                anyhow::bail!(
                    "the token signing keys in {} are sealed, but the key file {} does not exist: \
                     start with the key they were sealed with (--key-file or {KEY_ENCRYPTION_KEY_VARIABLE})",
                    redacted(database),
                    path.display()
                );
            } else {
                let sealer = KeySealer::create_file(&path)?;
                tracing::info!(
                    key_file = %path.display(),
                    "made a new key-encryption key for the token signing keys; keep it, and back it up apart from the database"
                );
                sealer
            }
        }
    };
    let sealed = sealing::seal_stored_keys(store, &sealer).await?;
    if sealed > 0 {
        tracing::info!(
            keys = sealed,
            "sealed token signing keys that were stored in plaintext"
        );
    }
    Ok(sealer)
}

/// A database URL fit for logs: its password, if any, replaced.
pub fn redacted(database: &str) -> String {
    let Some((scheme, rest)) = database.split_once("://") else {
        return database.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => database.to_string(),
        },
        None => database.to_string(),
    }
}

/// How often Pending actions are checked for their time-out.
const ACTION_SWEEP_SECONDS: u64 = 60;

/// Every minute, until the process stops: ends stale Pending actions with
/// `TimeOut`, forgets the rate-limit counts of idle callers and the address
/// history `findbyip` can no longer ask about.
pub fn spawn_sweeper(state: &AppState) {
    let palisade = state.palisade.clone();
    let limiter = state.limiter.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(ACTION_SWEEP_SECONDS));
        loop {
            tick.tick().await;
            if let Some(limiter) = &limiter {
                if let Err(error) = limiter.forget_idle().await {
                    tracing::warn!(%error, "could not forget idle rate-limit counts");
                }
            }
            match palisade.time_out_stale_actions().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(actions = n, "timed out actions no device picked up"),
                Err(error) => tracing::warn!(%error, "could not time out stale actions"),
            }
            if let Err(error) = palisade.forget_old_ip_history().await {
                tracing::warn!(%error, "could not forget address history older than 30 days");
            }
            // Kept a day past their expiry, so that a late poll hears `expired_token`.
            let day_ago = palisade_contract::Timestamp::now().minus_days(1);
            match palisade.store().forget_expired_grants(day_ago).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    grants = n,
                    "forgot expired sign-in codes and refresh tokens"
                ),
                Err(error) => tracing::warn!(%error, "could not forget expired sign-in grants"),
            }
            match palisade.forget_old_files().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "forgot uploaded files past their retention"),
                Err(error) => tracing::warn!(%error, "could not forget old uploaded files"),
            }
        }
    });
}

/// How often scripted actions are moved on by their steps' durations
/// (reads move them on too: a read never shows a step that has ended).
const SCRIPT_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Every second, until the process stops: reads the tenants' clocks, fault
/// rules and recorders again (what other nodes set) and moves on the actions outcome rules carry.
pub fn spawn_script_driver(palisade: &Palisade) {
    let palisade = palisade.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SCRIPT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = palisade.load_control_settings().await {
                tracing::warn!(%error, "could not read the tenants' clocks, fault rules and recorders");
            }
            if let Err(error) = palisade.advance_due_scripts(None).await {
                tracing::warn!(%error, "could not move scripted actions on");
            }
        }
    });
}

/// How often buffered device check-ins are written.
const CHECK_IN_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes device check-ins once a second, until the process stops.
pub fn spawn_check_in_writer(devices: &DevicePlane) {
    let devices = devices.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_IN_FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = devices.flush_check_ins().await {
                tracing::warn!(%error, "could not write device check-ins; keeping them for the next try");
            }
        }
    });
}

/// Ensures the default tenant exists; returns its id.
pub async fn ensure_default_tenant(palisade: &Palisade) -> anyhow::Result<String> {
    let tenant = Tenant {
        id: DEFAULT_TENANT_ID.into(),
        name: "Default".into(),
        retention_days: DEFAULT_RETENTION_DAYS,
    };
    palisade.store().create_tenant(&tenant, &[], &[]).await?;
    Ok(tenant.id)
}

/// The whole HTTP application: API routes, health, OpenAPI, and the layers
/// every request goes through. `extra` routes (the benchmark's static ceiling)
/// get the very same layers.
pub fn http_app(state: AppState, extra: Router) -> Router {
    let (api_router, openapi) = api::routes().split_for_parts();
    let operations = operation_table(&openapi);
    let api_router = api_router.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), operations),
        gate,
    ));
    // Shared: the service wrapping the router is cloned for every request.
    let canon = Arc::new(PathCanon::new(
        openapi.paths.paths.keys().map(String::as_str),
    ));
    let openapi_json: Bytes = api::document::published(&openapi)
        .to_json()
        .expect("the OpenAPI document serialises")
        .into();
    // The console calls the API in process, through the same gate.
    let console =
        crate::console::routes(state.clone(), api_router.clone().with_state(state.clone()));
    let router = api_router
        .merge(token_service::routes())
        .merge(sign_in::routes())
        .merge(device_plane::routes())
        .merge(downloads::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(move || {
                let body = openapi_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state.clone())
        .merge(control::routes(state.clone()))
        .merge(console)
        .merge(extra);
    // Path rewriting must happen before routing, so it wraps the router as a service.
    let routed = router.map_request(move |request: Request| canon.rewrite(request));
    Router::new()
        .fallback_service(routed)
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_known_host,
        ))
        .layer(axum::middleware::from_fn(envelope))
        .layer(axum::middleware::from_fn_with_state(
            state,
            control::recorder::record,
        ))
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_database_password_never_reaches_the_log() {
        assert_eq!(
            redacted("postgres://palisade:s3cr@t@db.internal:5432/palisade"),
            "postgres://palisade:***@db.internal:5432/palisade"
        );
        let unchanged = [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://%2Frun%2Fpostgresql/palisade",
            "sqlite://palisade.db",
            "palisade.db",
        ];
        for url in unchanged {
            assert_eq!(redacted(url), url);
        }
    }
}
