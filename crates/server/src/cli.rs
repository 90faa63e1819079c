//! The `palisade` command line.

use crate::admin_cli;
use crate::app::{self, AppState};
use crate::demo;
use crate::http::host::PublicUrl;
use crate::simulate;
use crate::tls::{self, TlsSource};
use crate::transport;
use clap::{Args, Parser, Subcommand};
use palisade_domain::rate_limit::RateLimits;
use palisade_domain::{Palisade, SystemClock};
use palisade_store_postgres::PoolSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "A self-hosted control plane that speaks the Microsoft Defender for Endpoint API: machines, actions, alerts, indicators."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Tenants: list, create.
    #[command(subcommand)]
    Tenants(admin_cli::TenantCommand),
    /// App registrations (client credentials): list, create, delete.
    #[command(subcommand)]
    Apps(admin_cli::AppCommand),
    /// Users with MDE roles and device-group access: list, create, delete.
    #[command(subcommand)]
    Users(admin_cli::UserCommand),
    /// Device groups: list, create.
    #[command(subcommand)]
    Groups(admin_cli::GroupCommand),
    /// Token signing keys: list, rotate.
    #[command(subcommand)]
    Keys(admin_cli::KeyCommand),
    /// The audit log of changes made through the API and the CLI.
    #[command(subcommand)]
    Audit(admin_cli::AuditCommand),
    /// Onboarding tokens devices enroll with: list, create, revoke.
    #[command(subcommand)]
    Onboarding(admin_cli::OnboardingCommand),
    /// Enrolled devices: list.
    #[command(subcommand)]
    Devices(admin_cli::DeviceCommand),
    /// Run N simulated devices against a server, over the device protocol.
    Simulate(simulate::SimulateArgs),
    /// The emulator control plane (/_palisade/v1): operator token, outcomes, faults, clock, recorder, state.
    #[command(subcommand)]
    Emulator(admin_cli::EmulatorCommand),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => serve(*args).await,
            Command::Tenants(c) => admin_cli::tenants(c).await,
            Command::Apps(c) => admin_cli::apps(c).await,
            Command::Users(c) => admin_cli::users(c).await,
            Command::Groups(c) => admin_cli::groups(c).await,
            Command::Keys(c) => admin_cli::keys(c).await,
            Command::Audit(c) => admin_cli::audit(c).await,
            Command::Emulator(c) => admin_cli::emulator(c).await,
            Command::Onboarding(c) => admin_cli::onboarding(c).await,
            Command::Devices(c) => admin_cli::devices(c).await,
            Command::Simulate(args) => simulate::run(args, shutdown_signal()).await,
        }
    }
}

/// `--rate-limit PER_MINUTE/PER_HOUR`, or `off` (`None`).
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSetting(pub Option<RateLimits>);

fn parse_rate_limit(text: &str) -> Result<RateLimitSetting, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(RateLimitSetting(None));
    }
    let (minute, hour) = text
        .split_once('/')
        .ok_or("expected PER_MINUTE/PER_HOUR (e.g. 100/1500) or off")?;
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("'{s}' is not a positive whole number"))
    };
    Ok(RateLimitSetting(Some(RateLimits {
        per_minute: number(minute)?,
        per_hour: number(hour)?,
    })))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database URL: sqlite://PATH (embedded default), or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE for several nodes.
    #[arg(
        long,
        env = "PALISADE_DATABASE",
        default_value = "sqlite://palisade.db"
    )]
    pub database: String,
    /// PostgreSQL: connections this node keeps at most (keep nodes × this
    /// under the server's max_connections).
    #[arg(long, env = "PALISADE_DATABASE_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub database_pool_size: u16,
    /// Create (once) a demo tenant with a fleet of machines, and serve it.
    #[arg(long, env = "PALISADE_DEMO")]
    pub demo: bool,
    /// Pending actions no device picks up within this many hours end TimeOut, as do InProgress actions not reported for as long.
    #[arg(long, env = "PALISADE_ACTION_TIMEOUT_HOURS", default_value_t = 72,
          value_parser = clap::value_parser!(i64).range(1..=24 * 365))]
    pub action_timeout_hours: i64,
    /// Seconds between device check-ins when nothing happens (actions arrive at once regardless).
    #[arg(long, env = "PALISADE_CHECK_IN_INTERVAL", default_value_t = palisade_domain::devices::DEFAULT_CHECK_IN_INTERVAL_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub check_in_interval: u64,
    /// Calls allowed per API, per app or user, per tenant: PER_MINUTE/PER_HOUR, or off.
    #[arg(long, env = "PALISADE_RATE_LIMIT", default_value = "100/1500", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitSetting,
    /// Devices enrolling per onboarding token: PER_MINUTE/PER_HOUR, or off.
    /// Beyond it enrollment answers 429 with Retry-After (devices wait and retry).
    #[arg(long, env = "PALISADE_ENROLLMENT_RATE_LIMIT", default_value = "100/6000", value_parser = parse_rate_limit)]
    pub enrollment_rate_limit: RateLimitSetting,
    /// The largest investigation package a device may upload, in bytes
    /// (checked while it streams in).
    #[arg(long, env = "PALISADE_MAX_PACKAGE_BYTES",
          default_value_t = palisade_domain::files::DEFAULT_MAX_PACKAGE_BYTES)]
    pub max_package_bytes: u64,
    /// How many recorded calls each tenant keeps (the newest), while its recorder is on.
    #[arg(long, env = "PALISADE_RECORDER_KEEP", value_name = "CALLS",
          default_value_t = palisade_domain::service::DEFAULT_RECORDED_CALLS_KEPT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recorder_keep: u64,
    /// Make ids (actions, machines, rules, request ids) from a generator
    /// seeded with this number, so that a test run twice sees the same ids.
    #[arg(long, env = "PALISADE_ID_SEED", value_name = "N")]
    pub id_seed: Option<u64>,
    /// At start, create the tenant each of these documents describes (JSON,
    /// or YAML for .yaml/.yml; `control-plane.md`: State) unless it exists.
    #[arg(
        long = "seed",
        env = "PALISADE_SEED",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub seeds: Vec<PathBuf>,
    /// With --demo: write the demo credentials (tenant, app, users) to this JSON file.
    #[arg(long, env = "PALISADE_DEMO_CREDENTIALS", requires = "demo")]
    pub demo_credentials: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "PALISADE_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PALISADE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a local CA and server certificate made once in DIR;
    /// clients trust DIR/ca.pem (REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
    #[arg(long, env = "PALISADE_TLS_SELF_SIGNED", value_name = "DIR")]
    pub tls_self_signed: Option<PathBuf>,
    /// A further name for the self-signed certificate (localhost, 127.0.0.1 and ::1 are always in it).
    #[arg(
        long = "tls-name",
        env = "PALISADE_TLS_NAME",
        value_delimiter = ',',
        requires = "tls_self_signed"
    )]
    pub tls_names: Vec<String>,
    /// An origin clients reach this server by (https://palisade.example:8443), repeatable:
    /// discovery, JWKS URLs, token issuers and OData links use the one a request came to,
    /// and requests naming any other Host are refused. Default: loopback names
    /// (localhost, 127.0.0.1, [::1]) and the listen address, with the listen port.
    #[arg(
        long = "public-url",
        env = "PALISADE_PUBLIC_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub public_urls: Vec<PublicUrl>,
    /// Seconds a client may take to send a request's head (request line and
    /// header fields), from its first byte or from the connection's opening;
    /// slower connections are closed.
    #[arg(long, env = "PALISADE_HEADER_READ_TIMEOUT", value_name = "SECONDS",
          default_value_t = transport::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request before
    /// it is closed (a response being computed, such as a device's long poll, is not idle).
    #[arg(long, env = "PALISADE_IDLE_TIMEOUT", value_name = "SECONDS",
          default_value_t = transport::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,
    /// Seconds a request's body may take to arrive after its head (slower
    /// ones get 408), and a client may leave a response unread.
    #[arg(long, env = "PALISADE_BODY_READ_TIMEOUT", value_name = "SECONDS",
          default_value_t = transport::DEFAULT_BODY_READ_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_read_timeout: u64,
    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, env = "PALISADE_TLS_HANDSHAKE_TIMEOUT", value_name = "SECONDS",
          default_value_t = transport::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_handshake_timeout: u64,
    /// Connections held open at most; further ones are closed at once while
    /// those held are still served. Default: half the open-file limit
    /// (raised to its hard limit at start), at most 10000.
    #[arg(long, env = "PALISADE_MAX_CONNECTIONS", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// The largest request head (request line and header fields) in bytes;
    /// larger ones get 431.
    #[arg(long, env = "PALISADE_MAX_HEADER_BYTES", value_name = "BYTES",
          default_value_t = transport::DEFAULT_MAX_HEADER_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(transport::MIN_HEADER_BYTES as u64..=1 << 20))]
    pub max_header_bytes: u64,
    /// A TOML file setting any of these flags (`listen = "0.0.0.0:8443"`) and
    /// `[[external_issuers]]`; flags and environment variables win over it.
    #[arg(long, env = "PALISADE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub keys: admin_cli::KeyFile,
    /// OIDC providers whose tokens the API accepts: `[[external_issuers]]` of the config file.
    #[arg(skip)]
    pub external_issuers: Vec<palisade_identity::ExternalIssuer>,
}

/// The `--config` file named on the command line or in `PALISADE_CONFIG`.
fn config_path(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("PALISADE_CONFIG").map(PathBuf::from)
}

/// Parses the command line, with the flags of a `--config` file as
/// defaults: each `name = value` in it stands for `PALISADE_NAME`, unless
/// that variable is set (precedence: flag, environment, file).
pub fn parse() -> anyhow::Result<Cli> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut external_issuers = Vec::new();
    if let Some(path) = config_path(&args) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!("the config file {} is not valid TOML: {e}", path.display())
        })?;
        let serve = <Cli as clap::CommandFactory>::command();
        let flags: Vec<String> = serve
            .find_subcommand("serve")
            .map(|c| {
                c.get_arguments()
                    .filter_map(|a| a.get_long().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in table {
            if key == "external_issuers" {
                external_issuers = value
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("{}: external_issuers: {e}", path.display()))?;
                continue;
            }
            if !flags.contains(&key.replace('_', "-")) || key == "config" {
                anyhow::bail!(
                    "{}: unknown setting '{key}'; settings are serve's flags ({}) and [[external_issuers]]",
                    path.display(),
                    flags.join(", ")
                );
            }
            let name = format!("PALISADE_{}", key.to_ascii_uppercase().replace('-', "_"));
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            if std::env::var_os(&name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
    let mut cli = Cli::parse_from(args);
    if let Command::Serve(serve) = &mut cli.command {
        serve.external_issuers = external_issuers;
    }
    Ok(cli)
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(seed) = args.id_seed {
        palisade_domain::ids::seed_ids(seed);
    }
    let descriptor_cap = transport::raise_descriptor_limit();
    let secs = std::time::Duration::from_secs;
    let limits = transport::Limits {
        header_read_timeout: secs(args.header_read_timeout),
        idle_timeout: secs(args.idle_timeout),
        body_read_timeout: secs(args.body_read_timeout),
        tls_handshake_timeout: secs(args.tls_handshake_timeout),
        max_connections: args
            .max_connections
            .map_or(descriptor_cap, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        max_header_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
    };
    let pool = PoolSettings {
        max_connections: usize::from(args.database_pool_size),
        ..PoolSettings::default()
    };
    let store = app::open_store(&args.database, pool).await?;
    let key_sealer = app::key_sealer(
        &args.database,
        args.keys.key_file.as_deref(),
        store.as_ref(),
    )
    .await?;
    let palisade = Palisade::new(store, Arc::new(SystemClock))
        .with_action_timeout(args.action_timeout_hours * 3600)
        .with_recorded_calls_kept(args.recorder_keep);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr()?;
    let tls_source = match (&args.tls_cert, &args.tls_key, &args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (_, _, Some(dir)) => Some(TlsSource::SelfSigned {
            dir: dir.clone(),
            names: args.tls_names.clone(),
        }),
        _ => None,
    };
    let tls = match &tls_source {
        Some(source) => Some(tls::load(source).await?),
        None => None,
    };
    let settings = app::Settings {
        rate_limits: args.rate_limit.0,
        external_issuers: args.external_issuers.clone(),
        tls: tls.is_some(),
        check_in_interval_seconds: args.check_in_interval,
        public_urls: args.public_urls.clone(),
        key_sealer,
        enrollment_rate_limits: args.enrollment_rate_limit.0,
        max_package_bytes: args.max_package_bytes,
    };
    // Where clients reach this server: a wildcard address is reached as localhost.
    let authority = if local.ip().is_unspecified() {
        format!("localhost:{}", local.port())
    } else {
        local.to_string()
    };
    let state = AppState::new(palisade, &settings, authority.clone());
    let listening = format!("{}://{authority}", state.scheme);
    // What clients are told to use: the first --public-url, if any.
    let origin = state.origins.first().to_string();
    let operator_token = palisade_identity::operator::ensure(
        state.palisade.store().as_ref(),
        &settings.key_sealer,
        state.palisade.now(),
    )
    .await?;
    for path in &args.seeds {
        crate::control::state::seed_from_file(&state.palisade, path).await?;
    }
    let tenant_id = if args.demo {
        let mut credentials =
            demo::ensure_demo(&state.palisade, &origin, operator_token.clone()).await?;
        credentials.ca_file = tls.as_ref().and_then(|t| t.ca_file.as_ref()).map(|f| {
            std::path::absolute(f)
                .unwrap_or(f.clone())
                .display()
                .to_string()
        });
        if let Some(path) = &args.demo_credentials {
            // Secrets (the operator token opens every tenant): the owner's only.
            let json = serde_json::to_string_pretty(&credentials)?;
            tls::write_private(path, &(json + "\n"))?;
        }
        print_demo_guide(&origin, &credentials);
        credentials.tenant_id
    } else {
        app::ensure_default_tenant(&state.palisade).await?
    };
    println!(
        "Control plane: {origin}{base}  (Authorization: Bearer {operator_token}; OpenAPI: {origin}{base}/openapi.json)",
        base = crate::control::BASE
    );
    // Tenants' clocks, fault rules and recorders apply from the first request on.
    state.palisade.load_control_settings().await?;
    app::spawn_sweeper(&state);
    app::spawn_script_driver(&state.palisade);
    app::spawn_check_in_writer(&state.devices);
    let devices = state.devices.clone();
    let router = app::http_app(state, axum::Router::new());
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout = args.header_read_timeout,
        idle_timeout = args.idle_timeout,
        body_read_timeout = args.body_read_timeout,
        "connection limits"
    );
    if !args.public_urls.is_empty() {
        let urls: Vec<String> = args.public_urls.iter().map(ToString::to_string).collect();
        tracing::info!(public_urls = %urls.join(", "), "serving requests for these origins only");
    }
    tracing::info!(database = %app::redacted(&args.database), tenant = %tenant_id, "palisade is ready on {listening}");
    let stop_polls = devices.clone();
    let shutdown = async move {
        shutdown_signal().await;
        stop_polls.stop_waiting();
    };
    transport::serve(listener, router, tls.map(|t| t.config), limits, shutdown).await?;
    if let Err(error) = devices.flush_check_ins().await {
        tracing::warn!(%error, "could not write the last device check-ins");
    }
    tracing::info!("palisade stopped");
    Ok(())
}

fn print_demo_guide(origin: &str, credentials: &demo::DemoCredentials) {
    let api = &credentials.api_url;
    let mut users = String::new();
    for user in &credentials.users {
        users += &format!(
            "  {:<36} {}  [{}] groups: {}\n",
            user.username,
            user.password,
            user.roles.join(", "),
            user.groups.join(", ")
        );
    }
    println!(
        "\nPalisade demo tenant {tenant}: {fleet} machines across Windows 10/11, Windows Server, macOS and Linux.\n\
         API:        {api}\n\
         OpenAPI:    {origin}/openapi.json\n\
         Token URL:  {token_url}\n\
         App:        client_id {client_id}  client_secret {secret}  (every permission)\n\
         Public app: client_id {public_client_id}  (no secret: device code, password, authorization code with PKCE)\n\
         Console:    {origin}/  (sign in as a user below)\n\
         Devices:    palisade-agent --server {origin} --onboarding-token {onboarding} --state-dir DIR\n\
         \x20           palisade simulate --server {origin} --onboarding-token {onboarding} --devices 10\n\
         Users (password grant; secrets are new on every start):\n{users}\n\
         Try:\n\
         \x20 TOKEN=$(curl -s {token_url} -d grant_type=client_credentials \\\n\
         \x20      -d client_id={client_id} -d client_secret={secret} \\\n\
         \x20      -d scope=https://api.securitycenter.microsoft.com/.default | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n\
         \x20 curl -s -H \"Authorization: Bearer $TOKEN\" '{api}/machines?$top=2'\n\
         \x20 curl -s -X POST {api}/machines/<id>/isolate -H \"Authorization: Bearer $TOKEN\" \\\n\
         \x20      -H 'Content-Type: application/json' -d '{{\"Comment\":\"Isolate for investigation\",\"IsolationType\":\"Full\"}}'\n",
        tenant = credentials.tenant_id,
        fleet = demo::DEMO_FLEET_SIZE,
        token_url = credentials.token_url,
        client_id = credentials.client_id,
        secret = credentials.client_secret,
        public_client_id = credentials.public_client_id,
        onboarding = credentials.onboarding_token,
    );
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
