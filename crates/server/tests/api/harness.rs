//! Starts a real Palisade server (in this process, on a free port, on a fresh
//! SQLite file) and talks to it over HTTP.

use palisade_contract::machine::IpAddress;
use palisade_contract::{HealthStatus, Machine, OnboardingStatus, OsPlatform, Timestamp};
use palisade_domain::store::DeviceGroup;
use palisade_domain::{OffsetClock, Palisade};
use palisade_server::app::{self, AppState};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tempfile::TempDir;

pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    pub client: reqwest::Client,
    pub palisade: Palisade,
    /// The server's clock: `clock.advance(seconds)` lets time pass.
    pub clock: Arc<OffsetClock>,
    pub tenant_id: String,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
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

impl TestServer {
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("palisade.db");
        let store = app::open_store(&format!("sqlite://{}", db_path.display())).unwrap();
        let clock = Arc::new(OffsetClock::default());
        let palisade = Palisade::new(store, clock.clone());
        let tenant_id = app::ensure_default_tenant(&palisade).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let state = AppState {
            palisade: palisade.clone(),
            tenant_id: tenant_id.clone(),
            scheme: "http",
            listen_authority: local.to_string(),
        };
        let router = app::http_app(state, axum::Router::new());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app::serve(listener, router, async {
            let _ = stop.await;
        }));
        TestServer {
            origin: format!("http://{local}"),
            client: reqwest::Client::new(),
            palisade,
            clock,
            tenant_id,
            _dir: dir,
            _shutdown: shutdown,
        }
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
            .put_device_group(
                &self.tenant_id,
                &DeviceGroup {
                    id,
                    name: name.into(),
                },
            )
            .await
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.unwrap();
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
