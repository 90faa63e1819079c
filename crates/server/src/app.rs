//! Wiring: the store, the domain service and the HTTP stack, and serving them.

use crate::api;
use crate::device_plane;
use crate::http::auth::{gate, operation_table};
use crate::http::envelope::envelope;
use crate::http::paths::PathCanon;
use crate::token_service;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use palisade_domain::caller::DEFAULT_RETENTION_DAYS;
use palisade_domain::devices::{DevicePlane, DEFAULT_CHECK_IN_INTERVAL_SECONDS};
use palisade_domain::rate_limit::{RateLimiter, RateLimits};
use palisade_domain::{Palisade, Store, Tenant};
use palisade_identity::{ExternalIssuer, TokenService, Validator};
use palisade_store_postgres::{PoolSettings, PostgresStore};
use palisade_store_sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
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
    /// `host:port` for requests that name no host.
    pub listen_authority: String,
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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rate_limits: None,
            external_issuers: vec![],
            tls: false,
            check_in_interval_seconds: DEFAULT_CHECK_IN_INTERVAL_SECONDS,
        }
    }
}

impl AppState {
    pub fn new(palisade: Palisade, settings: &Settings, listen_authority: String) -> Self {
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
            tokens: TokenService::new(store.clone(), clock.clone()),
            limiter: settings
                .rate_limits
                .map(|limits| RateLimiter::new(limits, clock, store)),
            devices: DevicePlane::new(palisade.clone(), settings.check_in_interval_seconds),
            palisade,
            scheme: if settings.tls { "https" } else { "http" },
            listen_authority,
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
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        let store = PostgresStore::connect(database, pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", redacted(database)))?;
        return Ok(Arc::new(store));
    }
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let store = SqliteStore::open(&PathBuf::from(path))
        .map_err(|e| anyhow::anyhow!("cannot open the database {path}: {e}"))?;
    Ok(Arc::new(store))
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
    let openapi_json: Bytes = openapi
        .to_json()
        .expect("the OpenAPI document serialises")
        .into();
    let router = api_router
        .merge(token_service::routes())
        .merge(device_plane::routes())
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
        .with_state(state)
        .merge(extra);
    // Path rewriting must happen before routing, so it wraps the router as a service.
    let routed = router.map_request(move |request: Request| canon.rewrite(request));
    Router::new()
        .fallback_service(routed)
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(envelope))
}

/// Serves `app` on `listener` (HTTPS with `tls`) until `shutdown` resolves,
/// finishing requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(None);
            });
            axum_server::from_tcp_rustls(listener.into_std()?, config)?
                .handle(handle)
                .serve(service)
                .await
        }
    }
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
