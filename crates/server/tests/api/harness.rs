//! Starts a real Palisade server (in this process, on a free port, on a fresh
//! database: see `backend`) and talks to it over HTTP.

use palisade_contract::machine::IpAddress;
use palisade_contract::Permission;
use palisade_contract::{HealthStatus, Machine, OnboardingStatus, OsPlatform, Timestamp};
use palisade_domain::devices::DevicePlane;
use palisade_domain::rate_limit::RateLimits;
use palisade_domain::store::DeviceGroup;
use palisade_domain::{Clock, DeviceGroupAccess, OffsetClock, Palisade, Role};
use palisade_identity::admin::{Admin, Administrator};
use palisade_identity::operator;
use palisade_identity::sealing::{self, KeySealer};
use palisade_identity::{ExternalIssuer, TokenService};
use palisade_server::app::{self, AppState};
use palisade_server::http::host::PublicUrl;
use palisade_server::transport;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tempfile::TempDir;

pub use crate::backend::database_url;

/// The key-encryption key of the test servers (base64 of 32 bytes).
pub const TEST_KEY_ENCRYPTION_KEY: &str = "dGVzdHMtb25seS1rZXktZW5jcnlwdGlvbi1rZXktMzI=";

/// The environment a `palisade` process of the tests gets its key from:
/// PostgreSQL nodes of one database must share it (the tests' key); on
/// SQLite none, so that the key file beside the database is used.
pub fn shared_key_environment() -> Vec<(&'static str, &'static str)> {
    match crate::BACKEND {
        crate::backend::Backend::Postgres => {
            vec![(app::KEY_ENCRYPTION_KEY_VARIABLE, TEST_KEY_ENCRYPTION_KEY)]
        }
        crate::backend::Backend::Sqlite => vec![],
    }
}

/// Tests run side by side on one PostgreSQL: each server keeps few connections.
pub const TEST_POOL: palisade_store_postgres::PoolSettings =
    palisade_store_postgres::PoolSettings {
        max_connections: 4,
        timeout: std::time::Duration::from_secs(5),
    };

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// Sends the bearer token of an app holding every permission, unless a
    /// request sets its own `Authorization`.
    pub client: reqwest::Client,
    pub palisade: Palisade,
    /// The device plane the server runs.
    pub devices: DevicePlane,
    /// The server's clock: `clock.advance(seconds)` lets time pass.
    pub clock: Arc<OffsetClock>,
    pub tenant_id: String,
    /// The database it serves: another node can serve it too (the
    /// PostgreSQL-only multi-node tests do).
    #[allow(dead_code)]
    pub database: String,
    /// The bearer token `client` sends.
    pub token: String,
    pub admin: Admin,
    /// The server's token service: it opens the sealed signing keys.
    pub tokens: TokenService,
    /// The control plane's (`/_palisade/v1`).
    pub operator_token: String,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// How a test server differs from the default.
#[derive(Default)]
pub struct Options {
    /// Off by default: most tests make more calls than the limits allow.
    pub rate_limits: Option<RateLimits>,
    /// Enrollments per onboarding token; off by default.
    pub enrollment_rate_limits: Option<RateLimits>,
    pub external_issuers: Vec<ExternalIssuer>,
    /// Serve this database (another node's) instead of a fresh one.
    pub database: Option<String>,
    /// Timeouts and caps of the connections.
    pub limits: transport::Limits,
    /// `--public-url`s besides the server's own `origin`, which tests use.
    pub public_urls: Vec<PublicUrl>,
    /// The largest investigation package a device may upload; `None`: the server's default.
    pub max_package_bytes: Option<u64>,
}

/// Reads a response whole.
pub async fn server_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// A response as a test looks at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
}

impl Reply {
    /// The ids of a collection's `value`, in the order answered.
    #[track_caller]
    pub fn value_ids(&self) -> Vec<String> {
        self.json["value"]
            .as_array()
            .unwrap_or_else(|| panic!("no value array: {}", self.text))
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Asserts an MDE error body with this status and code; returns its message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.json["error"]["code"], code, "body: {}", self.text);
        let target = self.json["error"]["target"].as_str().expect("target");
        assert_eq!(
            self.headers["request-id"].to_str().unwrap(),
            target,
            "target is the request id"
        );
        assert!(self.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),);
        self.json["error"]["message"].as_str().unwrap().to_string()
    }
}

/// Every permission there is.
pub fn all_permissions() -> Vec<Permission> {
    <Permission as strum::VariantArray>::VARIANTS.to_vec()
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let database = match options.database {
            Some(database) => database,
            None => database_url(dir.path()).await,
        };
        let store = app::open_store(&database, TEST_POOL).await.unwrap();
        // One key for every test server, so that nodes sharing a database agree.
        let key_sealer = KeySealer::from_base64(TEST_KEY_ENCRYPTION_KEY, "the tests' key").unwrap();
        sealing::seal_stored_keys(store.as_ref(), &key_sealer)
            .await
            .unwrap();
        let clock = Arc::new(OffsetClock::default());
        let operator_token = operator::ensure(store.as_ref(), &key_sealer, clock.now())
            .await
            .unwrap();
        let palisade = Palisade::new(store.clone(), clock.clone());
        let tenant_id = app::ensure_default_tenant(&palisade).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let mut public_urls = options.public_urls;
        if !public_urls.is_empty() {
            public_urls.insert(0, format!("http://{local}").parse().unwrap());
        }
        let settings = app::Settings {
            rate_limits: options.rate_limits,
            enrollment_rate_limits: options.enrollment_rate_limits,
            external_issuers: options.external_issuers,
            tls: false,
            public_urls,
            key_sealer,
            max_package_bytes: options
                .max_package_bytes
                .unwrap_or(palisade_domain::files::DEFAULT_MAX_PACKAGE_BYTES),
            ..app::Settings::default()
        };
        let state = AppState::new(palisade.clone(), &settings, local.to_string());
        let devices = state.devices.clone();
        let tokens = state.tokens.clone();
        app::spawn_check_in_writer(&devices);
        app::spawn_script_driver(&palisade);
        let router = app::http_app(state, axum::Router::new());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(transport::serve(
            listener,
            router,
            None,
            options.limits,
            async {
                let _ = stop.await;
            },
        ));
        let admin = Admin::new(
            store,
            clock.clone(),
            Administrator {
                kind: "cli",
                name: "test".into(),
            },
        );
        let mut server = TestServer {
            origin: format!("http://{local}"),
            client: reqwest::Client::new(),
            palisade,
            devices,
            clock,
            tenant_id,
            database,
            token: String::new(),
            admin,
            tokens,
            operator_token,
            _dir: dir,
            _shutdown: shutdown,
        };
        server.renew_token().await;
        server
    }

    /// Gives `client` a fresh token (of a new app with every permission):
    /// after the clock has moved past the old token's expiry.
    pub async fn renew_token(&mut self) {
        let token = self.app_token("Test automation", &all_permissions()).await;
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        self.token = token;
        self.client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
    }

    /// Registers an app with `permissions` and gets it a token from the token service.
    pub async fn app_token(&self, name: &str, permissions: &[Permission]) -> String {
        self.app_token_in(&self.tenant_id, name, permissions).await
    }

    /// The same, in `tenant_id` (another tenant than the test's own).
    pub async fn app_token_in(
        &self,
        tenant_id: &str,
        name: &str,
        permissions: &[Permission],
    ) -> String {
        let (app, secret) = self
            .admin
            .put_app(tenant_id, None, name, permissions)
            .await
            .unwrap();
        self.client_credentials_token(tenant_id, &app.client_id, &secret)
            .await
    }

    /// A token of the app `client_id` from the token service, by its secret.
    pub async fn client_credentials_token(
        &self,
        tenant_id: &str,
        client_id: &str,
        secret: &str,
    ) -> String {
        let url = self.url(&format!("/{tenant_id}/oauth2/v2.0/token"));
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ];
        let reply = self
            .send(reqwest::Client::new().post(url).form(&form))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["access_token"].as_str().unwrap().to_string()
    }

    /// Creates another tenant (no machines, groups, apps), named `name`.
    pub async fn add_tenant(&self, id: &str, name: &str) -> palisade_domain::Tenant {
        let tenant = palisade_domain::Tenant {
            id: id.into(),
            name: name.into(),
            retention_days: 180,
        };
        let store = self.palisade.store();
        assert!(store.create_tenant(&tenant, &[], &[]).await.unwrap());
        tenant
    }

    /// Creates a user with `roles` and `groups` (None: all) and gets a token
    /// for them through an app granted `scopes` (password grant).
    pub async fn user_token(
        &self,
        username: &str,
        roles: &[Role],
        groups: Option<Vec<i64>>,
        scopes: &[Permission],
    ) -> String {
        let access = groups.map_or(DeviceGroupAccess::All, DeviceGroupAccess::Only);
        let (user, password) = self
            .admin
            .put_user(&self.tenant_id, username, roles, access, None)
            .await
            .unwrap();
        let (app, secret) = self
            .admin
            .put_app(&self.tenant_id, None, "Sign-in app", scopes)
            .await
            .unwrap();
        let reply = self
            .token_request(&[
                ("grant_type", "password"),
                ("client_id", &app.client_id),
                ("client_secret", &secret),
                ("username", &user.username),
                ("password", &password),
                ("scope", "https://api.securitycenter.microsoft.com/.default"),
            ])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["access_token"].as_str().unwrap().to_string()
    }

    /// POSTs a form to this tenant's v2 token endpoint, with no bearer token.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> Reply {
        self.token_request_from(std::net::Ipv4Addr::LOCALHOST.into(), form)
            .await
    }

    /// A token request from the loopback address `source` (127.0.0.0/8 are all this host's).
    pub async fn token_request_from(
        &self,
        source: std::net::IpAddr,
        form: &[(&str, &str)],
    ) -> Reply {
        let url = self.url(&format!("/{}/oauth2/v2.0/token", self.tenant_id));
        let client = reqwest::Client::builder()
            .local_address(source)
            .build()
            .unwrap();
        self.send(client.post(url).form(form)).await
    }

    /// GET as the holder of `token` (`None`: no Authorization header).
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> Reply {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// POST `body` as the holder of `token`.
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Reply {
        let request = reqwest::Client::new()
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body);
        self.send(request).await
    }

    pub async fn put_machines(&self, machines: &[Machine]) {
        self.palisade
            .store()
            .put_machines(&self.tenant_id, machines)
            .await
            .unwrap();
    }

    pub async fn put_group(&self, id: i64, name: &str) {
        self.palisade
            .store()
            .put_device_group(&self.tenant_id, &DeviceGroup::label(id, name))
            .await
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        server_reply(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    /// POSTs `body` as `application/json`.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.patch(self.url(path)).json(&body))
            .await
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh, onboarded machine seen a minute ago; change fields as a test needs.
pub fn machine(platform: OsPlatform) -> Machine {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (version, build, agent) = match platform {
        OsPlatform::Windows10 => ("22H2", Some(19045), "10.8760.19045.4412"),
        OsPlatform::Windows11 => ("23H2", Some(22631), "10.8760.22631.3593"),
        OsPlatform::WindowsServer2012R2 => ("6.3", Some(9600), "10.8210.9600.21620"),
        OsPlatform::WindowsServer2016 => ("1607", Some(14393), "10.8210.14393.6343"),
        OsPlatform::WindowsServer2019 => ("1809", Some(17763), "10.8560.17763.5820"),
        OsPlatform::WindowsServer2022 | OsPlatform::WindowsServer2025 => {
            ("21H2", Some(20348), "10.8760.20348.2461")
        }
        OsPlatform::MacOs => ("14.4", None, "101.24042.0008"),
        OsPlatform::Linux => ("22.04", None, "101.24052.0002"),
    };
    let now = Timestamp::now();
    Machine {
        id: format!("{n:040x}"),
        merged_into_machine_id: None,
        is_potential_duplication: false,
        is_excluded: false,
        exclusion_reason: None,
        computer_dns_name: format!("host-{n}.test.local"),
        first_seen: now.minus_days(30),
        last_seen: now.plus_seconds(-60),
        os_platform: platform,
        os_version: None,
        os_processor: Some("x64".into()),
        version: Some(version.into()),
        last_ip_address: Some("10.0.0.5".into()),
        last_external_ip_address: None,
        agent_version: Some(agent.into()),
        os_build: build,
        health_status: HealthStatus::Active,
        device_value: None,
        rbac_group_id: 0,
        rbac_group_name: None,
        risk_score: None,
        exposure_level: None,
        is_aad_joined: false,
        aad_device_id: None,
        machine_tags: vec![],
        defender_av_status: None,
        onboarding_status: OnboardingStatus::Onboarded,
        os_architecture: Some("64-bit".into()),
        managed_by: None,
        managed_by_status: None,
        ip_addresses: vec![IpAddress {
            ip_address: "10.0.0.5".into(),
            mac_address: Some("000C2992A64D".into()),
            kind: "Ethernet".into(),
            operational_status: "Up".into(),
        }],
        vm_metadata: None,
    }
}

/// A server with one machine of `platform`; returns both.
pub async fn server_with(platform: OsPlatform) -> (TestServer, Machine) {
    let server = TestServer::start().await;
    let m = machine(platform);
    server.put_machines(std::slice::from_ref(&m)).await;
    (server, m)
}

/// A client for a `palisade serve --demo --demo-credentials FILE` process:
/// it sends a token of the demo app, which holds every permission.
/// `ca` is the CA to trust when the credentials name none (a certificate of the operator's own).
pub async fn demo_client(
    credentials: &std::path::Path,
    ca: Option<&std::path::Path>,
) -> reqwest::Client {
    let token = demo_token(credentials, ca).await;
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    trusting(&read_credentials(credentials), ca)
        .default_headers(headers)
        .build()
        .unwrap()
}

fn read_credentials(credentials: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(credentials).expect("the demo credentials file");
    serde_json::from_str(&text).unwrap()
}

/// A fresh token of the demo app (client credentials) from the server that wrote `credentials`.
pub async fn demo_token(credentials: &std::path::Path, ca: Option<&std::path::Path>) -> String {
    let creds = read_credentials(credentials);
    let reply: Value = trusting(&creds, ca)
        .build()
        .unwrap()
        .post(creds["token_url"].as_str().unwrap())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", creds["client_secret"].as_str().unwrap()),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"].as_str().expect("a token").to_string()
}

/// A client builder that trusts the CA of the credentials file, or else `ca`.
fn trusting(credentials: &Value, ca: Option<&std::path::Path>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder();
    let named = credentials["ca_file"].as_str().map(std::path::Path::new);
    if let Some(ca) = named.or(ca) {
        let pem = std::fs::read(ca).expect("the CA file");
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder
}

/// The real `palisade` binary serving the demo tenant in a process of its own
/// (so that a crash fails the test that caused it instead of the whole test
/// binary, and so that it can be killed), on a free port, rate limits off.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT` (or `https://`).
    pub origin: String,
    /// Sends a token of the demo app.
    pub client: reqwest::Client,
    /// The demo credentials file it wrote.
    pub credentials: std::path::PathBuf,
    log: std::path::PathBuf,
    _temp: Option<TempDir>,
}

impl ServerProcess {
    /// In a directory of its own, with `extra` flags.
    pub async fn start(extra: &[&str]) -> ServerProcess {
        let temp = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(temp.path(), extra).await;
        server._temp = Some(temp);
        server
    }

    /// With its database, log and credentials in `dir` (which outlives it, for restarts).
    pub async fn start_in(dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
        Self::start_trusting(dir, extra, None).await
    }

    /// As [`Self::start_in`], its client trusting `ca` (for `--tls-cert`).
    pub async fn start_trusting(
        dir: &std::path::Path,
        extra: &[&str],
        ca: Option<&std::path::Path>,
    ) -> ServerProcess {
        Self::launch(dir, extra, ca, None, "127.0.0.1:0").await
    }

    /// In network namespace `netns`, listening on `listen`.
    pub async fn start_in_namespace(
        dir: &std::path::Path,
        netns: &str,
        listen: &str,
        extra: &[&str],
    ) -> ServerProcess {
        Self::launch(dir, extra, None, Some(netns), listen).await
    }

    async fn launch(
        dir: &std::path::Path,
        extra: &[&str],
        ca: Option<&std::path::Path>,
        netns: Option<&str>,
        listen: &str,
    ) -> ServerProcess {
        let log = dir.join("server.log");
        let credentials = dir.join("credentials.json");
        let _ = std::fs::remove_file(&credentials);
        let binary = env!("CARGO_BIN_EXE_palisade");
        let mut command = match netns {
            Some(netns) => {
                let mut command = std::process::Command::new("ip");
                command.args(["netns", "exec", netns, binary]);
                command
            }
            None => std::process::Command::new(binary),
        };
        let child = command
            .arg("serve")
            .args(["--demo", "--rate-limit", "off", "--listen", listen])
            .arg("--demo-credentials")
            .arg(&credentials)
            .arg("--database")
            .arg(match netns {
                Some(_) => crate::backend::reachable_from_namespace(&database_url(dir).await),
                None => database_url(dir).await,
            })
            .args(["--database-pool-size", "4"])
            .args(extra)
            .envs(shared_key_environment())
            .env("PALISADE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the palisade binary starts");
        let mut server = ServerProcess {
            child,
            origin: String::new(),
            client: reqwest::Client::new(),
            credentials: credentials.clone(),
            log,
            _temp: None,
        };
        for _ in 0..2400 {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some((_, rest)) = text.split_once("ready on ") {
                let origin = rest.split_whitespace().next().unwrap_or("");
                server.origin = origin.trim_end_matches('/').to_string();
                server.client = demo_client(&credentials, ca).await;
                return server;
            }
            server.assert_alive();
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the server did not start: {}", server.log_tail());
    }

    /// The demo credentials it wrote (`--demo-credentials`).
    pub fn demo_credentials(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.credentials).unwrap()).unwrap()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    #[track_caller]
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the server process ended ({status}): {}", self.log_tail());
        }
    }

    /// GETs `path_and_query` (already percent-encoded); `Err` when no answer came.
    pub async fn get(&self, path_and_query: &str) -> Result<Reply, String> {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.origin))
            .send()
            .await
            .map_err(|e| format!("no answer: {}", e.without_url()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|e| format!("no body: {e}"))?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The claims of a JWT, unverified (the test only reads its times).
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The enrollment of a Linux device of the current agent, declaring `capabilities`.
pub fn linux_device(
    name: &str,
    capabilities: &[palisade_device::Capability],
) -> palisade_device::EnrollRequest {
    palisade_device::EnrollRequest {
        hardware_id: format!("hw-{name}"),
        computer_dns_name: name.to_string(),
        os_platform: OsPlatform::Linux,
        os_version: Some("Debian GNU/Linux 12".into()),
        version: Some("12".into()),
        os_build: None,
        os_architecture: Some("64-bit".into()),
        agent_version: "0.1.0".into(),
        ip_addresses: vec![IpAddress {
            ip_address: "192.0.2.20".into(),
            mac_address: Some("0A0000000020".into()),
            kind: "Ethernet".into(),
            operational_status: "Up".into(),
        }],
        last_external_ip_address: None,
        capabilities: capabilities.to_vec(),
        credential: None,
    }
}

/// Pseudo-random bytes (xorshift), different for each seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether what a test needs (`found`) is here; under CI=true it must be
/// (`.ci/run` installs it), elsewhere the test skips, saying how to get it.
pub fn needed(found: bool, what: &str, hint: &str) -> bool {
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {what} is missing (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {what} is missing ({hint})");
    }
    found
}

/// Whether `python3` can import `modules` (comma-separated).
pub fn python_with(modules: &str, hint: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    needed(found, &format!("python3 with {modules}"), hint)
}

/// Runs a client script or browser driver that prints one JSON object of
/// what it saw; fails the test, with its output, when it fails.
pub async fn json_report(command: &mut tokio::process::Command) -> Value {
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
