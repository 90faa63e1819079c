//! The connection pool, the schema migrations, and what a PostgreSQL error
//! means to the caller.

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use palisade_domain::store::StoreError;
use std::time::Duration;
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// How many connections a node keeps, and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Per node: size it so that nodes × this stays under the server's
    /// `max_connections`.
    pub max_connections: usize,
    /// Longest wait for a connection (or to open one) before the request is
    /// answered 503 instead of hanging while the database is away.
    pub timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Parses a `postgres://` URL with the settings every connection uses.
pub(crate) fn config(
    url: &str,
    settings: &PoolSettings,
) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Internal(format!("the database URL is not valid: {e}")))?;
    config
        .connect_timeout(settings.timeout)
        // A database that vanished without closing its sockets is noticed
        // within seconds rather than at the next TCP retransmission limit.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .application_name("palisade");
    Ok(config)
}

/// The settings of the connections whose statements suit one plan for all
/// their parameters (the writers', and the reads marked `Sql::one_plan`): a
/// prepared statement is planned once, for every call (a generic plan), not
/// for each call's parameters; and a nested lookup keeps no memo of its
/// results, which those statements never hit (each row looked up is another)
/// and which costs a hash table sized for the most rows a generic plan expects.
pub const PLANNING_ONCE: &[(&str, &str)] = &[
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_memoize", "off"),
];

/// `config` with [`PLANNING_ONCE`].
pub(crate) fn planning_once(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let ours = PLANNING_ONCE
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"));
    let options: Vec<String> = config
        .get_options()
        .map(str::to_string)
        .into_iter()
        .chain(ours)
        .collect();
    config.options(options.join(" "));
    config
}

pub(crate) fn pool(
    config: tokio_postgres::Config,
    settings: &PoolSettings,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection the server closed is dropped at checkout; the next
            // checkout opens a new one, so the pool heals after an outage.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_connections.max(1))
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))
}

/// Brings the schema up to date. Nodes starting together take turns: an
/// advisory lock (held by this session) lets one migrate while the others wait.
pub(crate) async fn migrate(config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    let driver = tokio::spawn(connection);
    let result = async {
        client
            .execute(
                "SELECT pg_advisory_lock(hashtext('palisade: migrations'))",
                &[],
            )
            .await
            .map_err(pg_error)?;
        embedded::migrations::runner()
            .set_grouped(true)
            .run_async(&mut client)
            .await
            .map_err(|e| StoreError::Internal(format!("migrating the database: {e}")))?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// Connection trouble, an overloaded or restarting server, a lost race
/// between transactions: worth retrying (503). Anything else is a fault (500).
pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    let transient = match error.code() {
        // 08: connection exception, 53: insufficient resources, 57: operator
        // intervention (shutdown, cancel), 40: rollback (deadlock, serialization),
        // 55P03: a lock waited for longer than `lock_timeout`.
        Some(code) => {
            matches!(&code.code()[..2], "08" | "53" | "57" | "40") || code.code() == "55P03"
        }
        None => {
            error.is_closed()
                || std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>())
        }
    };
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Internal(error.to_string())
    }
}

pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => pg_error(error),
        PoolError::NoRuntimeSpecified => StoreError::Internal(error.to_string()),
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}
