//! The real agent (`palisade-agent`) against a real server.
//!
//! The isolation test builds its own network in namespaces: a server, the
//! device and a peer, joined by veth pairs, and checks which TCP connections
//! get through as the device is isolated, restarted and released. It needs
//! root, `ip` and `nft`; it skips with a message without them, except under
//! CI=true, where it must run (`.ci/run` installs nftables and iproute2).

use crate::harness::*;
use palisade_device::hresult::E_ACCESSDENIED;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The agent binary, built beside `palisade` by `cargo test --workspace`.
fn agent_binary() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-agent");
    if path.exists() {
        return Some(path);
    }
    assert!(
        !under_ci(),
        "CI=true but {} is missing (cargo test --workspace builds it)",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} is not built (cargo build -p palisade-agent)",
        path.display()
    );
    None
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

#[track_caller]
fn must(program: &str, args: &[&str]) {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends SIGTERM, as systemd stops a service (the shell's own `kill`: no
/// procps needed on a minimal machine).
fn terminate(child: &Child) {
    let _ = Command::new("sh")
        .args(["-c", "kill -TERM \"$0\""])
        .arg(child.id().to_string())
        .output();
}

/// An agent process, stopped (SIGTERM) when dropped.
struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    fn start(binary: &Path, netns: Option<&str>, args: &[&str], log: PathBuf) -> AgentProcess {
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .args(args)
            .env("PALISADE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("palisade-agent starts");
        AgentProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as systemd stops it; returns its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        self.child.wait().unwrap()
    }

    async fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the agent did not stop: {}", self.log());
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

/// Polls the action until it leaves Pending/InProgress; returns it.
/// `context` explains a failure (the agent's log).
async fn final_action(server: &ServerProcess, id: &str, context: impl Fn() -> String) -> Value {
    for _ in 0..400 {
        let action = server
            .get(&format!("/api/machineactions/{id}"))
            .await
            .unwrap()
            .json;
        if !matches!(action["status"].as_str(), Some("Pending" | "InProgress")) {
            return action;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("action {id} did not end; {}", context());
}

async fn post_action(server: &ServerProcess, path: &str, body: Value) -> String {
    let reply = server
        .client
        .post(format!("{}{path}", server.origin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert_eq!(status, 201, "{path}: {text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_for_file(path: &Path, agent: &AgentProcess) {
    for _ in 0..400 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} did not appear; agent log:\n{}",
        path.display(),
        agent.log()
    );
}

/// Where enforcement is impossible, the action ends Failed with the reason
/// and the agent keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolation_the_device_cannot_enforce_fails_with_the_reason() {
    let Some(agent_binary) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let credentials = server.demo_credentials();
    let state = dir.path().join("agent");
    let mut agent = AgentProcess::start(
        &agent_binary,
        None,
        &[
            "--server",
            &server.origin,
            "--onboarding-token",
            credentials["onboarding_token"].as_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--nft",
            "/nonexistent/nft",
            "--check-in-wait",
            "20",
        ],
        dir.path().join("agent.log"),
    );
    wait_for_file(&state.join("enrollment.json"), &agent).await;
    let enrollment: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("enrollment.json")).unwrap())
            .unwrap();
    let machine_id = enrollment["machine_id"].as_str().unwrap();
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .unwrap();
    assert_eq!(machine.json["osPlatform"], "Linux");
    assert_eq!(machine.json["onboardingStatus"], "Onboarded");

    let id = post_action(
        &server,
        &format!("/api/machines/{machine_id}/isolate"),
        json!({"Comment": "contain", "IsolationType": "Full"}),
    )
    .await;
    let action = final_action(&server, &id, || agent.log()).await;
    assert_eq!(action["status"], "Failed", "{action}");
    assert_eq!(action["errorHResult"], E_ACCESSDENIED);
    let detail = action["troubleshootInfo"].as_str().unwrap();
    assert!(detail.contains("install nftables"), "{detail}");
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert_eq!(agent.stop().code(), Some(0));
}

/// An agent started again with its onboarding token and its state directory
/// (a reinstall that kept it, a service manager that always passes the token)
/// re-enrolls in place with its credential: the same machine, no duplicate.
/// Its state directory lost, the same host enrolls as a new machine marked
/// as a potential duplicate, and the first keeps its credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_again_with_its_state_re_enrolls_in_place() {
    let Some(agent_binary) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let credentials = server.demo_credentials();
    let state = dir.path().join("agent");
    let args = [
        "--server",
        &server.origin,
        "--onboarding-token",
        credentials["onboarding_token"].as_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--nft",
        "/nonexistent/nft",
        "--check-in-wait",
        "20",
    ];
    let start = |log: &str| AgentProcess::start(&agent_binary, None, &args, dir.path().join(log));
    let enrollment = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(state.join("enrollment.json")).unwrap())
            .unwrap()
    };
    let mut agent = start("first.log");
    wait_for_file(&state.join("enrollment.json"), &agent).await;
    let first = enrollment();
    assert_eq!(agent.stop().code(), Some(0));

    let mut again = start("again.log");
    for _ in 0..400 {
        if again.log().contains("enrollment refreshed in place") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        again.log().contains("enrollment refreshed in place"),
        "{}",
        again.log()
    );
    assert_eq!(enrollment(), first, "same machine, same credential");
    let machine_id = first["machine_id"].as_str().unwrap();
    let machine = server
        .get(&format!("/api/machines/{machine_id}"))
        .await
        .unwrap()
        .json;
    assert_eq!(machine["isPotentialDuplication"], false, "{machine}");
    assert_eq!(again.stop().code(), Some(0));

    std::fs::remove_dir_all(&state).unwrap();
    let mut fresh = start("fresh.log");
    wait_for_file(&state.join("enrollment.json"), &fresh).await;
    let second = enrollment();
    assert_ne!(second["machine_id"], first["machine_id"]);
    let duplicate = server
        .get(&format!(
            "/api/machines/{}",
            second["machine_id"].as_str().unwrap()
        ))
        .await
        .unwrap()
        .json;
    assert_eq!(duplicate["isPotentialDuplication"], true, "{duplicate}");
    assert_eq!(duplicate["computerDnsName"], machine["computerDnsName"]);
    assert_eq!(fresh.stop().code(), Some(0));
}

/// A process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test network; removed when dropped.
struct Network;

const SERVER_NS: &str = "pal-e2e-srv";
const DEVICE_NS: &str = "pal-e2e-dev";
const PEER_NS: &str = "pal-e2e-peer";
/// The server as the device reaches it.
const SERVER_IP: &str = "10.77.1.1";
const SERVER_PORT: &str = "8443";
/// The peer on the allow-listed network, and on another.
const PEER_ALLOWED: &str = "10.77.2.1";
const PEER_OTHER: &str = "10.77.3.1";
const PEER_PORT: &str = "9000";

impl Network {
    /// Whether this machine can build the network; under CI=true it must.
    fn available() -> bool {
        let root = run("id", &["-u"]).stdout == b"0\n";
        let tools = ["ip", "nft"].iter().all(|tool| {
            Command::new(tool)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let ok = root && tools;
        if !ok {
            assert!(
                !under_ci(),
                "CI=true but the isolation test cannot run (root: {root}, ip and nft: {tools}); .ci/run installs nftables and iproute2"
            );
            eprintln!(
                "SKIPPED: the isolation test needs root, ip (iproute2) and nft (nftables) (root: {root}, tools: {tools})"
            );
        }
        ok
    }

    fn remove() {
        for ns in [SERVER_NS, DEVICE_NS, PEER_NS] {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = run("ip", &["link", "del", "pe2e-h"]);
        let _ = run("ip", &["route", "del", "10.77.1.0/24"]);
    }

    /// host ─ server ─ device ─ peer. The host reaches the server's
    /// device-facing address through the server namespace.
    fn build() -> Network {
        Self::remove();
        for ns in [SERVER_NS, DEVICE_NS, PEER_NS] {
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let link = |a: &str, a_ns: Option<&str>, b: &str, b_ns: &str| {
            let mut args = vec!["link", "add", a];
            if let Some(ns) = a_ns {
                args.extend(["netns", ns]);
            }
            args.extend(["type", "veth", "peer", "name", b, "netns", b_ns]);
            must("ip", &args);
        };
        let address = |ns: Option<&str>, dev: &str, cidr: &str| match ns {
            Some(ns) => {
                must("ip", &["-n", ns, "addr", "add", cidr, "dev", dev]);
                must("ip", &["-n", ns, "link", "set", dev, "up"]);
            }
            None => {
                must("ip", &["addr", "add", cidr, "dev", dev]);
                must("ip", &["link", "set", dev, "up"]);
            }
        };
        link("pe2e-h", None, "pe2e-s0", SERVER_NS);
        address(None, "pe2e-h", "10.77.0.2/24");
        address(Some(SERVER_NS), "pe2e-s0", "10.77.0.1/24");
        must("ip", &["route", "add", "10.77.1.0/24", "via", "10.77.0.1"]);
        link("pe2e-s1", Some(SERVER_NS), "pe2e-d1", DEVICE_NS);
        address(Some(SERVER_NS), "pe2e-s1", "10.77.1.1/24");
        address(Some(DEVICE_NS), "pe2e-d1", "10.77.1.2/24");
        link("pe2e-d2", Some(DEVICE_NS), "pe2e-p", PEER_NS);
        address(Some(DEVICE_NS), "pe2e-d2", "10.77.2.2/24");
        address(Some(DEVICE_NS), "pe2e-d2", "10.77.3.2/24");
        address(Some(PEER_NS), "pe2e-p", "10.77.2.1/24");
        address(Some(PEER_NS), "pe2e-p", "10.77.3.1/24");
        Network
    }

    /// Whether the device can open a TCP connection to `ip:port` (within 2 s).
    fn device_reaches(&self, ip: &str, port: &str) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        run(
            "ip",
            &[
                "netns", "exec", DEVICE_NS, "timeout", "2", "bash", "-c", &script,
            ],
        )
        .status
        .success()
    }

    fn device_tables(&self) -> String {
        String::from_utf8_lossy(
            &run("ip", &["netns", "exec", DEVICE_NS, "nft", "list", "tables"]).stdout,
        )
        .into_owned()
    }

    /// Waits until the device's reachability of `ip` is `expected`.
    async fn await_reach(&self, ip: &str, port: &str, expected: bool, agent: &AgentProcess) {
        for _ in 0..40 {
            if self.device_reaches(ip, port) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "the device {} {ip}:{port}; agent log:\n{}",
            if expected {
                "cannot reach"
            } else {
                "still reaches"
            },
            agent.log()
        );
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// The namespaces are one network: its tests take turns.
static NETWORK_IN_USE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The agent binary and the test network, held for this test alone, where
/// both are here (else the test skips, with the reason printed).
async fn testbed() -> Option<(PathBuf, tokio::sync::MutexGuard<'static, ()>, Testbed)> {
    let agent_binary = agent_binary()?;
    if !Network::available() {
        return None;
    }
    let held = NETWORK_IN_USE.lock().await;
    Some((agent_binary, held, Testbed::build().await))
}

/// The network, the server in its namespace (demo tenant, TLS), and a peer
/// (any TCP service: a second Palisade) on both of the peer's addresses.
struct Testbed {
    _peer: ChildGuard,
    server: ServerProcess,
    state: PathBuf,
    tls: PathBuf,
    agent_log: PathBuf,
    onboarding_token: String,
    network: Network,
    dir: tempfile::TempDir,
}

impl Testbed {
    async fn build() -> Testbed {
        let network = Network::build();
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let server = ServerProcess::start_in_namespace(
            dir.path(),
            SERVER_NS,
            &format!("{SERVER_IP}:{SERVER_PORT}"),
            &[
                "--tls-self-signed",
                tls.to_str().unwrap(),
                "--tls-name",
                SERVER_IP,
            ],
        )
        .await;
        let peer = ChildGuard(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    PEER_NS,
                    env!("CARGO_BIN_EXE_palisade"),
                    "serve",
                ])
                .args(["--listen", &format!("0.0.0.0:{PEER_PORT}"), "--database"])
                .arg(format!("sqlite://{}", dir.path().join("peer.db").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let onboarding_token = server.demo_credentials()["onboarding_token"]
            .as_str()
            .unwrap()
            .to_string();
        Testbed {
            _peer: peer,
            state: dir.path().join("agent-state"),
            agent_log: dir.path().join("agent.log"),
            tls,
            server,
            onboarding_token,
            network,
            dir,
        }
    }

    /// The agent in the device's namespace (with the onboarding token, to
    /// enroll), with `extra` flags.
    fn start_agent(&self, binary: &Path, with_token: bool, extra: &[&str]) -> AgentProcess {
        let mut args = vec![
            "--server".to_string(),
            format!("https://{SERVER_IP}:{SERVER_PORT}"),
            "--state-dir".to_string(),
            self.state.display().to_string(),
            "--ca-file".to_string(),
            self.tls.join("ca.pem").display().to_string(),
            "--selective-allow".to_string(),
            "10.77.2.0/24".to_string(),
            "--check-in-wait".to_string(),
            "20".to_string(),
        ];
        if with_token {
            args.extend([
                "--onboarding-token".to_string(),
                self.onboarding_token.clone(),
            ]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(binary, Some(DEVICE_NS), &args, self.agent_log.clone())
    }

    /// The enrolled machine's id, once the agent has enrolled.
    async fn enrolled_machine(&self, agent: &AgentProcess) -> String {
        wait_for_file(&self.state.join("enrollment.json"), agent).await;
        let enrollment: Value = serde_json::from_str(
            &std::fs::read_to_string(self.state.join("enrollment.json")).unwrap(),
        )
        .unwrap();
        enrollment["machine_id"].as_str().unwrap().to_string()
    }
}

/// Sends `body` with the demo app's token.
async fn send(
    server: &ServerProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.origin));
    if let Some(body) = body {
        request = request.json(&body);
    }
    server_reply(request.send().await.unwrap()).await
}

/// Deletes every indicator of the demo tenant.
async fn clear_indicators(server: &ServerProcess) {
    let ids = server.get("/api/indicators").await.unwrap().value_ids();
    if !ids.is_empty() {
        let reply = send(
            server,
            reqwest::Method::POST,
            "/api/indicators/BatchDelete",
            Some(json!({"IndicatorIds": ids})),
        )
        .await;
        assert_eq!(reply.status, 204, "{}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_isolates_releases_and_offboards_a_device_for_real() {
    let Some((agent_binary, _one_network, bed)) = testbed().await else {
        return;
    };
    let (network, server, state) = (&bed.network, &bed.server, &bed.state);
    // The demo's indicators would keep a table after release: this test is about isolation.
    clear_indicators(server).await;
    let start_agent = |with_token: bool| bed.start_agent(&agent_binary, with_token, &[]);

    // Before isolation the device reaches the peer on both networks.
    for _ in 0..100 {
        if network.device_reaches(PEER_ALLOWED, PEER_PORT) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(network.device_reaches(PEER_ALLOWED, PEER_PORT));
    assert!(network.device_reaches(PEER_OTHER, PEER_PORT));
    // Someone else's table, which release must leave alone.
    must(
        "ip",
        &[
            "netns",
            "exec",
            DEVICE_NS,
            "nft",
            "add",
            "table",
            "inet",
            "someone_else",
        ],
    );

    let mut agent = start_agent(true);
    wait_for_file(&state.join("enrollment.json"), &agent).await;
    let enrollment: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("enrollment.json")).unwrap())
            .unwrap();
    let machine = enrollment["machine_id"].as_str().unwrap().to_string();

    // Full isolation: the peer is cut off, the server is not.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/isolate"),
        json!({"Comment": "contain", "IsolationType": "Full"}),
    )
    .await;
    let action = final_action(server, &id, || agent.log()).await;
    assert_eq!(action["status"], "Succeeded", "{action}");
    assert!(network.device_tables().contains("table inet palisade"));
    assert!(
        !network.device_reaches(PEER_ALLOWED, PEER_PORT),
        "isolated from the peer"
    );
    assert!(!network.device_reaches(PEER_OTHER, PEER_PORT));
    assert!(
        network.device_reaches(SERVER_IP, SERVER_PORT),
        "the control plane stays reachable"
    );

    // A restart keeps isolation: the table stays while the agent is down, and
    // the agent puts it back at start when it went missing (as after a reboot).
    assert_eq!(agent.stop().code(), Some(0));
    assert!(!network.device_reaches(PEER_ALLOWED, PEER_PORT));
    must(
        "ip",
        &[
            "netns", "exec", DEVICE_NS, "nft", "delete", "table", "inet", "palisade",
        ],
    );
    assert!(network.device_reaches(PEER_ALLOWED, PEER_PORT));
    let mut agent = start_agent(false);
    network
        .await_reach(PEER_ALLOWED, PEER_PORT, false, &agent)
        .await;

    // Release: exactly the agent's table goes.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/unisolate"),
        json!({"Comment": "release"}),
    )
    .await;
    assert_eq!(
        final_action(server, &id, || agent.log()).await["status"],
        "Succeeded"
    );
    assert!(network.device_reaches(PEER_ALLOWED, PEER_PORT), "released");
    let tables = network.device_tables();
    assert!(!tables.contains("table inet palisade"), "{tables}");
    assert!(tables.contains("table inet someone_else"), "{tables}");

    // Selective: the allow-listed network stays reachable, the other does not.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/isolate"),
        json!({"Comment": "contain", "IsolationType": "Selective"}),
    )
    .await;
    assert_eq!(
        final_action(server, &id, || agent.log()).await["status"],
        "Succeeded"
    );
    assert!(
        network.device_reaches(PEER_ALLOWED, PEER_PORT),
        "allow-listed"
    );
    assert!(
        !network.device_reaches(PEER_OTHER, PEER_PORT),
        "not allow-listed"
    );
    assert!(network.device_reaches(SERVER_IP, SERVER_PORT));

    // Offboard: isolation lifted, credential removed, the agent stops, the
    // server refuses the device from then on.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/offboard"),
        json!({"Comment": "decommissioned"}),
    )
    .await;
    assert_eq!(
        final_action(server, &id, || agent.log()).await["status"],
        "Succeeded"
    );
    assert_eq!(
        agent.wait_for_exit().await.code(),
        Some(0),
        "{}",
        agent.log()
    );
    assert!(!state.join("enrollment.json").exists());
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("offboarded.json")).unwrap())
            .unwrap();
    assert_eq!(marker["machine_id"], machine.as_str());
    assert!(network.device_reaches(PEER_OTHER, PEER_PORT));
    let offboarded = server
        .get(&format!("/api/machines/{machine}"))
        .await
        .unwrap();
    assert_eq!(offboarded.json["onboardingStatus"], "CanBeOnboarded");
    // Started again, as systemd does at the next boot, with its onboarding
    // token still configured: it does not enroll, and ends with success so
    // that `Restart=on-failure` leaves it be.
    let mut again = start_agent(true);
    assert_eq!(
        again.wait_for_exit().await.code(),
        Some(0),
        "{}",
        again.log()
    );
    assert!(again.log().contains("was offboarded"), "{}", again.log());
    assert!(!state.join("enrollment.json").exists());
    let still = server
        .get(&format!("/api/machines/{machine}"))
        .await
        .unwrap();
    assert_eq!(still.json["onboardingStatus"], "CanBeOnboarded");
    // Once the operator removes the marker: without an onboarding token the
    // agent cannot come back.
    std::fs::remove_file(state.join("offboarded.json")).unwrap();
    let mut again = start_agent(false);
    assert_eq!(again.wait_for_exit().await.code(), Some(1));
    assert!(again.log().contains("not enrolled"), "{}", again.log());
}

/// `palisade simulate`: virtual devices enroll over the same protocol and
/// carry out actions, failing at the rate asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_carries_out_actions() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let credentials = server.demo_credentials();
    let simulate = |prefix: &str, failure_rate: &str, alerts_per_hour: &str| {
        ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_palisade"))
                .args(["simulate", "--server", &server.origin, "--onboarding-token"])
                .arg(credentials["onboarding_token"].as_str().unwrap())
                .args(["--devices", "20", "--name-prefix", prefix])
                .args(["--action-latency-ms", "20", "--failure-rate", failure_rate])
                .args(["--alerts-per-hour", alerts_per_hour])
                .args(["--wait", "20", "--duration", "120"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(format!("{prefix}.log"))).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    // 20 devices, 360 alerts an hour each: two a second over the fleet.
    let _reliable = simulate("simok", "0", "360");
    let _failing = simulate("simbad", "1", "0");
    // The fleet enrolls its devices concurrently: wait until all of one prefix are in.
    let enrolled_fleet = |prefix: &'static str| {
        let (server, dir) = (&server, &dir);
        async move {
            let path = format!(
                "/api/machines?$filter=startswith(computerDnsName,'{prefix}-')&$count=true"
            );
            let mut listed = Value::Null;
            for _ in 0..600 {
                listed = server.get(&path).await.unwrap().json;
                if listed["@odata.count"] == 20 {
                    return listed;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = std::fs::read_to_string(dir.path().join(format!("{prefix}.log")));
            panic!("the {prefix} fleet did not enroll 20 devices: {listed}\n{log:?}");
        }
    };
    let id_of = |fleet: &Value, name: &str| {
        let machines = fleet["value"].as_array().unwrap();
        let machine = machines.iter().find(|m| m["computerDnsName"] == name);
        machine.unwrap()["id"].as_str().unwrap().to_string()
    };
    let reliable = id_of(&enrolled_fleet("simok").await, "simok-7");
    let failing = id_of(&enrolled_fleet("simbad").await, "simbad-3");

    for (machine, expected) in [(&reliable, "Succeeded"), (&failing, "Failed")] {
        let id = post_action(
            &server,
            &format!("/api/machines/{machine}/isolate"),
            json!({"Comment": "drill", "IsolationType": "Full"}),
        )
        .await;
        let action = final_action(&server, &id, || {
            "the simulated device did not report".to_string()
        })
        .await;
        assert_eq!(action["status"], expected, "{action}");
    }

    // A simulated device's investigation package, through its link.
    let id = post_action(
        &server,
        &format!("/api/machines/{reliable}/collectInvestigationPackage"),
        json!({"Comment": "collect"}),
    )
    .await;
    let collected = final_action(&server, &id, || "no report".to_string()).await;
    assert_eq!(collected["status"], "Succeeded", "{collected}");
    let link = server
        .get(&format!("/api/machineactions/{id}/GetPackageUri"))
        .await
        .unwrap();
    assert_eq!(link.status, 200, "{}", link.text);
    let package = reqwest::get(link.json["value"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let zip = zip::ZipArchive::new(std::io::Cursor::new(package.to_vec())).unwrap();
    assert!(
        zip.file_names().any(|n| n.starts_with("Processes/")),
        "{:?}",
        zip.file_names().collect::<Vec<_>>()
    );

    // A live-response session of a simulated device: a library script put
    // and run, a file got; what it uploaded downloads through the links.
    use crate::live_response as lr;
    let upload = server
        .client
        .post(format!("{}/api/libraryfiles", server.origin))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={}", lr::BOUNDARY),
        )
        .body(lr::form(&[lr::file("triage.sh", b"#!/bin/sh\nuname -a\n")]))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200, "{}", upload.text().await.unwrap());
    let id = post_action(
        &server,
        &format!("/api/machines/{reliable}/runliveresponse"),
        json!({
            "Commands": [
                lr::put_file("triage.sh"),
                lr::run_script("triage.sh"),
                lr::get_file("/var/log/syslog"),
            ],
            "Comment": "triage",
        }),
    )
    .await;
    let session = final_action(&server, &id, || "no report".to_string()).await;
    assert_eq!(session["status"], "Succeeded", "{session}");
    assert_eq!(
        lr::statuses(&session),
        ["Completed", "Completed", "Completed"]
    );
    let result = |index: i64| {
        let (server, id) = (&server, &id);
        async move {
            let path = format!(
                "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={index})"
            );
            let reply = server.get(&path).await.unwrap();
            assert_eq!(reply.status, 200, "{path}: {}", reply.text);
            let link = reply.json["value"].as_str().expect("a link").to_string();
            assert!(
                link.starts_with(&format!("{}/downloads/results/", server.origin)),
                "{link}"
            );
            // Without a bearer token.
            let response = reqwest::get(&link).await.unwrap();
            assert_eq!(response.status(), 200, "{link}");
            response.bytes().await.unwrap().to_vec()
        }
    };
    let transcript: Value = serde_json::from_slice(&result(1).await).expect("a transcript");
    assert_eq!(transcript["script_name"], "triage.sh", "{transcript}");
    assert_eq!(transcript["exit_code"], 0, "{transcript}");
    assert_eq!(
        transcript["script_output"],
        format!("simulated run on machine {reliable}\n"),
        "{transcript}"
    );
    let got = String::from_utf8(result(2).await).unwrap();
    assert_eq!(
        got,
        format!("simulated content of /var/log/syslog on machine {reliable}\n")
    );
    // The PutFile has no result.
    let reply = server
        .get(&format!(
            "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=0)"
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text);

    // The inventory the simulated device reported (a seeded Linux machine's
    // would name other vendors), and its administrator's logon.
    let software = server
        .get(&format!("/api/machines/{reliable}/software"))
        .await
        .unwrap();
    assert_eq!(software.status, 200, "{}", software.text);
    let mut names: Vec<&str> = software.json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", software.text))
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "debian-_-bash",
            "debian-_-curl",
            "debian-_-openssh-server",
            "debian-_-openssl",
            "debian-_-sudo"
        ],
        "{}",
        software.text
    );
    let users = server
        .get(&format!("/api/machines/{reliable}/logonusers"))
        .await
        .unwrap();
    assert_eq!(users.status, 200, "{}", users.text);
    let users = users.json["value"].as_array().unwrap().clone();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["id"], "simok-7\\admin", "{users:?}");
    assert_eq!(users[0]["accountName"], "admin");

    // The reliable fleet's alerts arrive, with evidence, on its machines only.
    let mut fleet_alerts = vec![];
    for _ in 0..120 {
        let alerts = server
            .get("/api/alerts?$expand=evidence&$orderby=lastUpdateTime%20desc&$top=200")
            .await
            .unwrap()
            .json;
        fleet_alerts = alerts["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                a["computerDnsName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("sim"))
            })
            .cloned()
            .collect();
        if fleet_alerts.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(fleet_alerts.len() >= 3, "{fleet_alerts:?}");
    for alert in &fleet_alerts {
        let name = alert["computerDnsName"].as_str().unwrap();
        assert!(
            name.starts_with("simok-"),
            "only the fleet that raises alerts: {name}"
        );
        assert!(!alert["evidence"].as_array().unwrap().is_empty(), "{alert}");
    }
}

/// The alerts of `machine` with their evidence, once one satisfies `found`.
async fn await_alert(
    server: &ServerProcess,
    machine: &str,
    agent: &AgentProcess,
    found: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/machines/{machine}/alerts?$expand=evidence");
    for _ in 0..120 {
        let alerts = server.get(&path).await.unwrap().json;
        if let Some(alert) = alerts["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| found(a))
        {
            return alert.clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no such alert on {machine}; agent log:\n{}", agent.log());
}

/// The files the agent with state directory `state` quarantined with
/// `sha256`: each kept as `<sha256>-<unique>`, its record beside it.
fn quarantined(state: &Path, sha256: &str) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("quarantine"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with(sha256) && !name.ends_with(".json")
        })
        .collect()
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tenant's indicators on a real device: a Block indicator of the
/// peer's address cuts the device from the peer (not from the server, not
/// from the peer's other address) and raises an alert naming the address;
/// isolation and its release leave it in force; deleting it restores the
/// path. A file with a blocked SHA-256 in a scanned path is quarantined and
/// an alert names it; an Allowed indicator of a file's SHA-1 keeps a Block
/// of its SHA-256 from touching it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_enforces_address_and_file_indicators_for_real() {
    let Some((agent_binary, _one_network, bed)) = testbed().await else {
        return;
    };
    let (network, server) = (&bed.network, &bed.server);
    clear_indicators(server).await;
    let watched = bed.dir.path().join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let agent = bed.start_agent(
        &agent_binary,
        true,
        &[
            "--scan-path",
            watched.to_str().unwrap(),
            "--scan-interval",
            "1",
        ],
    );
    let machine = bed.enrolled_machine(&agent).await;
    network
        .await_reach(PEER_OTHER, PEER_PORT, true, &agent)
        .await;

    // Block the peer's other address.
    let blocked = send(
        server,
        reqwest::Method::POST,
        "/api/indicators",
        Some(json!({
            "indicatorValue": PEER_OTHER, "indicatorType": "IpAddress", "action": "Block",
            "title": "Peer under investigation", "description": "e2e", "severity": "High",
            "generateAlert": true,
        })),
    )
    .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    let blocked_id = blocked.json["id"].as_str().unwrap().to_string();
    network
        .await_reach(PEER_OTHER, PEER_PORT, false, &agent)
        .await;
    assert!(
        network.device_reaches(PEER_ALLOWED, PEER_PORT),
        "another address of the peer"
    );
    assert!(network.device_reaches(SERVER_IP, SERVER_PORT), "the server");
    let alert = await_alert(server, &machine, &agent, |a| {
        a["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["ipAddress"] == PEER_OTHER)
    })
    .await;
    assert_eq!(alert["severity"], "High", "{alert}");
    assert_eq!(alert["detectionSource"], "CustomerTI", "{alert}");

    // Isolation and indicators in one table; release keeps the indicator.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/isolate"),
        json!({"Comment": "contain", "IsolationType": "Full"}),
    )
    .await;
    assert_eq!(
        final_action(server, &id, || agent.log()).await["status"],
        "Succeeded"
    );
    assert!(!network.device_reaches(PEER_ALLOWED, PEER_PORT), "isolated");
    assert!(network.device_reaches(SERVER_IP, SERVER_PORT));
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/unisolate"),
        json!({"Comment": "release"}),
    )
    .await;
    let released = final_action(server, &id, || agent.log()).await;
    assert_eq!(released["status"], "Succeeded", "{released}");
    assert!(network.device_reaches(PEER_ALLOWED, PEER_PORT), "released");
    assert!(
        !network.device_reaches(PEER_OTHER, PEER_PORT),
        "still blocked after release"
    );
    assert!(network.device_tables().contains("table inet palisade"));

    // Deleting the indicator lifts it, and the table with it.
    let deleted = send(
        server,
        reqwest::Method::DELETE,
        &format!("/api/indicators/{blocked_id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    network
        .await_reach(PEER_OTHER, PEER_PORT, true, &agent)
        .await;

    // Files: one blocked by its SHA-256; another blocked by its SHA-256 but
    // allowed by its SHA-1, which wins.
    let evil = watched.join("invoice.pdf.exe");
    let evil_bytes = format!("not a real threat {}", bed.dir.path().display()).into_bytes();
    std::fs::write(&evil, &evil_bytes).unwrap();
    let tool = watched.join("admin-tool");
    let tool_bytes = format!("an allowed admin tool {}", bed.dir.path().display()).into_bytes();
    std::fs::write(&tool, &tool_bytes).unwrap();
    let indicators = json!({"Indicators": [
        {"indicatorValue": sha256_hex(&evil_bytes), "indicatorType": "FileSha256",
         "action": "BlockAndRemediate", "title": "Invoice dropper", "description": "e2e", "severity": "Medium",
         "generateAlert": true},
        {"indicatorValue": sha256_hex(&tool_bytes), "indicatorType": "FileSha256",
         "action": "Block", "title": "Admin tool", "description": "e2e"},
        {"indicatorValue": sha1_hex(&tool_bytes), "indicatorType": "FileSha1",
         "action": "Allowed", "title": "Admin tool, allowed", "description": "e2e"},
    ]});
    let imported = send(
        server,
        reqwest::Method::POST,
        "/api/indicators/import",
        Some(indicators),
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text);
    assert!(
        imported.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["isFailed"] == false),
        "{}",
        imported.text
    );
    let alert = await_alert(server, &machine, &agent, |a| {
        a["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["fileName"] == "invoice.pdf.exe")
    })
    .await;
    let evidence = &alert["evidence"][0];
    assert_eq!(evidence["sha256"], sha256_hex(&evil_bytes), "{alert}");
    assert_eq!(
        evidence["filePath"],
        watched.display().to_string(),
        "{alert}"
    );
    assert!(!evil.exists(), "quarantined");
    let kept = quarantined(&bed.state, &sha256_hex(&evil_bytes));
    assert_eq!(kept.len(), 1, "{kept:?}");
    let kept = &kept[0];
    assert_eq!(std::fs::read(kept).unwrap(), evil_bytes);
    let mode = std::fs::metadata(kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o400, "read by its owner (root) alone");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(kept.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(record["originalPath"], evil.display().to_string());
    assert_eq!(record["sha256"], sha256_hex(&evil_bytes));
    // Scans run every second: a few more and the allowed file is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        tool.exists(),
        "Allowed wins over Block; agent log:\n{}",
        agent.log()
    );
    let alerts = server
        .get(&format!("/api/machines/{machine}/alerts?$expand=evidence"))
        .await
        .unwrap()
        .json;
    assert!(
        !alerts["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["evidence"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["fileName"] == "admin-tool")),
        "{alerts}"
    );

    // A process running a file with a blocked hash, outside the scanned
    // paths: it is stopped, and its file quarantined.
    let elsewhere = bed.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let runner = elsewhere.join("updater");
    let mut runner_bytes = std::fs::read("/bin/sleep").unwrap();
    // Trailing bytes leave the program as it runs but give it a hash of its own.
    runner_bytes.extend_from_slice(bed.dir.path().display().to_string().as_bytes());
    std::fs::write(&runner, &runner_bytes).unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut running = ChildGuard(Command::new(&runner).arg("300").spawn().unwrap());
    let blocked = send(
        server,
        reqwest::Method::POST,
        "/api/indicators",
        Some(json!({
            "indicatorValue": sha256_hex(&runner_bytes), "indicatorType": "FileSha256",
            "action": "Block", "title": "Fake updater", "description": "e2e",
            "generateAlert": true,
        })),
    )
    .await;
    assert_eq!(blocked.status, 200, "{}", blocked.text);
    let mut ended = None;
    for _ in 0..80 {
        ended = running.0.try_wait().unwrap();
        if ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    use std::os::unix::process::ExitStatusExt;
    let ended = ended.unwrap_or_else(|| panic!("the process runs on; agent log:\n{}", agent.log()));
    assert_eq!(ended.signal(), Some(9), "stopped by the agent");
    assert!(!runner.exists(), "its file quarantined");
    assert_eq!(quarantined(&bed.state, &sha256_hex(&runner_bytes)).len(), 1);
    let alert = await_alert(server, &machine, &agent, |a| {
        a["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["fileName"] == "updater" && e["processId"].is_number())
    })
    .await;
    assert!(
        alert["description"].as_str().unwrap().contains("stopped"),
        "{alert}"
    );
}

/// Whether ClamAV's scanner is here; under CI=true it must be.
fn clamscan_available() -> bool {
    let found = Command::new("clamscan")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !under_ci(),
            "CI=true but clamscan is missing; .ci/run installs clamav"
        );
        eprintln!(
            "SKIPPED: the antivirus scan test needs ClamAV's clamscan (apt-get install clamav)"
        );
    }
    found
}

/// The file actions on a real device: StopAndQuarantineFile stops a
/// process running a SHA-1 and quarantines its file (and fails, with the
/// reason, once nothing has it); a Quick antivirus scan with a signature of
/// the test's own quarantines the file it names and raises an alert with
/// its evidence.
#[tokio::test]
async fn the_agent_stops_and_quarantines_a_file_and_scans_with_clamav() {
    if !clamscan_available() {
        return;
    }
    let Some((agent_binary, _one_network, bed)) = testbed().await else {
        return;
    };
    let server = &bed.server;
    clear_indicators(server).await;
    let watched = bed.dir.path().join("watched");
    let signatures = bed.dir.path().join("signatures");
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::create_dir_all(&signatures).unwrap();
    // The sample and its signature first: ClamAV reads its database at each scan.
    let sample = watched.join("sample.bin");
    let sample_bytes =
        format!("palisade antivirus sample {}", bed.dir.path().display()).into_bytes();
    std::fs::write(&sample, &sample_bytes).unwrap();
    let md5: String = {
        use md5::Digest;
        md5::Md5::digest(&sample_bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::fs::write(
        signatures.join("palisade-test.hdb"),
        format!("{md5}:{}:Palisade.Test.Sample\n", sample_bytes.len()),
    )
    .unwrap();
    let agent = bed.start_agent(
        &agent_binary,
        true,
        &[
            "--scan-path",
            watched.to_str().unwrap(),
            "--quick-scan-path",
            watched.to_str().unwrap(),
            "--clamav-database",
            signatures.to_str().unwrap(),
        ],
    );
    let machine = bed.enrolled_machine(&agent).await;

    // A process running a copy of sleep with a hash of its own.
    let runner = watched.join("helper");
    let mut runner_bytes = std::fs::read("/bin/sleep").unwrap();
    runner_bytes.extend_from_slice(format!("stop {}", bed.dir.path().display()).as_bytes());
    std::fs::write(&runner, &runner_bytes).unwrap();
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut running = ChildGuard(Command::new(&runner).arg("300").spawn().unwrap());
    let sha1 = sha1_hex(&runner_bytes);
    let body = json!({"Sha1": sha1, "Comment": "stop the helper"});
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/StopAndQuarantineFile"),
        body.clone(),
    )
    .await;
    let done = final_action(server, &id, || agent.log()).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(done["relatedFileInfo"]["fileIdentifier"], sha1, "{done}");
    let said = done["troubleshootInfo"].as_str().unwrap_or_default();
    assert!(
        said.contains("stopped") && said.contains("quarantined"),
        "{done}"
    );
    use std::os::unix::process::ExitStatusExt;
    let ended = running.0.wait().unwrap();
    assert_eq!(ended.signal(), Some(9), "stopped by the agent");
    assert!(!runner.exists(), "gone from its place");
    assert_eq!(quarantined(&bed.state, &sha256_hex(&runner_bytes)).len(), 1);
    // Nothing has that SHA-1 any more.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/StopAndQuarantineFile"),
        body,
    )
    .await;
    let nothing = final_action(server, &id, || agent.log()).await;
    assert_eq!(nothing["status"], "Failed", "{nothing}");
    assert_eq!(
        nothing["errorHResult"],
        palisade_device::hresult::ERROR_FILE_NOT_FOUND,
        "{nothing}"
    );
    assert!(
        nothing["troubleshootInfo"]
            .as_str()
            .unwrap()
            .contains(&sha1),
        "{nothing}"
    );

    // A Quick scan finds the sample by the test's signature.
    let id = post_action(
        server,
        &format!("/api/machines/{machine}/runAntiVirusScan"),
        json!({"ScanType": "Quick", "Comment": "sweep"}),
    )
    .await;
    let scanned = final_action(server, &id, || agent.log()).await;
    assert_eq!(scanned["status"], "Succeeded", "{scanned}");
    assert_eq!(scanned["scope"], "Quick", "{scanned}");
    assert!(
        scanned["troubleshootInfo"]
            .as_str()
            .unwrap()
            .contains("Palisade.Test.Sample"),
        "{scanned}"
    );
    assert!(!sample.exists(), "quarantined");
    assert_eq!(quarantined(&bed.state, &sha256_hex(&sample_bytes)).len(), 1);
    let alert = await_alert(server, &machine, &agent, |a| {
        a["detectionSource"] == "Antivirus"
    })
    .await;
    assert!(
        alert["threatName"]
            .as_str()
            .unwrap()
            .starts_with("Palisade.Test.Sample"),
        "{alert}"
    );
    let evidence = &alert["evidence"][0];
    assert_eq!(evidence["fileName"], "sample.bin", "{alert}");
    assert_eq!(evidence["sha256"], sha256_hex(&sample_bytes), "{alert}");
    assert_eq!(
        evidence["filePath"],
        watched.display().to_string(),
        "{alert}"
    );
}

/// CollectInvestigationPackage on a real device: the agent collects and
/// uploads the package; GetPackageUri's link downloads it without a token;
/// the zip has MDE's folders, and names a process and
/// a listening socket the test started on the device.
#[tokio::test]
async fn the_agent_collects_an_investigation_package_the_link_downloads() {
    let Some((agent_binary, _one_network, bed)) = testbed().await else {
        return;
    };
    let server = &bed.server;
    let agent = bed.start_agent(&agent_binary, true, &[]);
    let machine = bed.enrolled_machine(&agent).await;
    // A listener of the test's on the device: the package must show it.
    const LISTENER_PORT: u16 = 9555;
    let listener = ChildGuard(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                DEVICE_NS,
                env!("CARGO_BIN_EXE_palisade"),
                "serve",
            ])
            .args([
                "--listen",
                &format!("0.0.0.0:{LISTENER_PORT}"),
                "--database",
            ])
            .arg(format!(
                "sqlite://{}",
                bed.dir.path().join("listener.db").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let listener_pid = listener.0.id();
    for _ in 0..40 {
        if bed
            .network
            .device_reaches("127.0.0.1", &LISTENER_PORT.to_string())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let id = post_action(
        server,
        &format!("/api/machines/{machine}/collectInvestigationPackage"),
        json!({"Comment": "collect"}),
    )
    .await;
    let done = final_action(server, &id, || agent.log()).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let link = server
        .get(&format!("/api/machineactions/{id}/GetPackageUri"))
        .await
        .unwrap();
    assert_eq!(link.status, 200, "{}", link.text);
    assert_eq!(
        link.json["@odata.context"],
        format!("{}/api/$metadata#Edm.String", server.origin)
    );
    let url = link.json["value"].as_str().unwrap().to_string();
    // No bearer token: the link is the credential.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(bed.tls.join("ca.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let download = anonymous.get(&url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(
        download.headers()["content-type"],
        "application/zip",
        "{url}"
    );
    let bytes = download.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    for folder in [
        "Processes/",
        "Network connections/",
        "Installed programs/",
        "Autoruns/",
        "Scheduled tasks/",
        "Users and groups/",
        "System information/",
        "Security logs/",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(folder)),
            "no {folder} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "Summary.txt"), "{names:?}");
    let read = |zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let processes = read(&mut zip, "Processes/processes.csv");
    assert!(
        processes
            .lines()
            .any(|line| line.starts_with(&format!("{listener_pid},"))),
        "the listener's pid {listener_pid} in:\n{processes}"
    );
    let tcp = read(&mut zip, "Network connections/tcp.csv");
    assert!(
        tcp.lines()
            .any(|line| line.contains(&format!(":{LISTENER_PORT}")) && line.contains("LISTEN")),
        "port {LISTENER_PORT} listening in:\n{tcp}"
    );

    // The package is held by the server: the link works again (expiry is
    // tested with the clock, in packages.rs).
    assert_eq!(anonymous.get(&url).send().await.unwrap().status(), 200);
}

/// Uploads `bytes` to the demo tenant's live-response library as `name`
/// (multipart/form-data, as MDE's clients send it).
async fn upload_to_library(server: &ServerProcess, name: &str, bytes: &[u8]) {
    let boundary = "palisade-e2e-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"OverrideIfExists\"\r\n\r\ntrue\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let reply = server
        .client
        .post(format!("{}/api/libraryfiles", server.origin))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["fileName"],
        name
    );
}

/// What the link to command `index`'s result downloads (without a token).
async fn live_response_result(bed: &Testbed, action_id: &str, index: u32) -> Vec<u8> {
    let path =
        format!("/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})");
    let link = bed.server.get(&path).await.unwrap();
    assert_eq!(link.status, 200, "{}", link.text);
    let url = link.json["value"].as_str().unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(bed.tls.join("ca.pem")).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let download = anonymous.get(url).send().await.unwrap();
    assert_eq!(download.status(), 200, "{url}");
    download.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_a_live_response_session_and_reports_its_software() {
    let Some((agent_binary, _one_network, bed)) = testbed().await else {
        return;
    };
    let server = &bed.server;
    // Outside the test's private directory: the script user (nobody) must
    // reach its script, and write where the session collects from.
    let root = tempfile::Builder::new()
        .prefix("palisade-live-response-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let working = root.path().join("agent");
    let agent = bed.start_agent(
        &agent_binary,
        true,
        &["--live-response-dir", working.to_str().unwrap()],
    );
    let machine = bed.enrolled_machine(&agent).await;

    upload_to_library(server, "notes.txt", b"put by the session\n").await;
    let script = format!(
        "#!/bin/sh\necho \"hello $1\"\nid -un\ncat notes.txt\nprintf 'evidence %s' \"$2\" > {}/evidence.txt\necho warned >&2\n",
        out.display()
    );
    upload_to_library(server, "collect.sh", script.as_bytes()).await;
    upload_to_library(server, "linger.sh", b"sleep 3\n").await;

    // One session at a time: a second is refused while the first runs.
    let lingering = post_action(
        server,
        &format!("/api/machines/{machine}/runliveresponse"),
        json!({"Commands": [{"type": "RunScript", "params": [{"key": "ScriptName", "value": "linger.sh"}]}]}),
    )
    .await;
    let second = server
        .client
        .post(format!("{}/api/machines/{machine}/runliveresponse", server.origin))
        .json(&json!({"Commands": [{"type": "GetFile", "params": [{"key": "Path", "value": "/etc/hostname"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 400);
    let refusal: Value = second.json().await.unwrap();
    assert_eq!(
        refusal["error"]["code"], "ActiveRequestAlreadyExists",
        "{refusal}"
    );
    let lingered = final_action(server, &lingering, || agent.log()).await;
    assert_eq!(lingered["status"], "Succeeded", "{lingered}");

    let id = post_action(
        server,
        &format!("/api/machines/{machine}/runliveresponse"),
        json!({"Comment": "collect evidence", "Commands": [
            {"type": "PutFile", "params": [{"key": "FileName", "value": "notes.txt"}]},
            {"type": "RunScript", "params": [{"key": "ScriptName", "value": "collect.sh"},
                                             {"key": "Args", "value": "'big world' 42"}]},
            {"type": "GetFile", "params": [{"key": "Path", "value": format!("{}/evidence.txt", out.display())}]},
        ]}),
    )
    .await;
    let done = final_action(server, &id, || agent.log()).await;
    assert_eq!(done["status"], "Succeeded", "{done}\n{}", agent.log());
    for command in done["commands"].as_array().unwrap() {
        assert_eq!(command["commandStatus"], "Completed", "{command}");
        assert!(command["endTime"].is_string(), "{command}");
    }
    assert_eq!(
        std::fs::read_to_string(working.join("files/notes.txt")).unwrap(),
        "put by the session\n"
    );
    let transcript: Value =
        serde_json::from_slice(&live_response_result(&bed, &id, 1).await).unwrap();
    assert_eq!(transcript["script_name"], "collect.sh");
    assert_eq!(transcript["exit_code"], 0);
    assert_eq!(
        transcript["script_output"], "hello big world\nnobody\nput by the session\n",
        "{transcript}"
    );
    assert_eq!(transcript["script_errors"], "warned\n");
    assert_eq!(live_response_result(&bed, &id, 2).await, b"evidence 42");

    // A failed command ends the session: what follows is not carried out.
    let failed = post_action(
        server,
        &format!("/api/machines/{machine}/runliveresponse"),
        json!({"Commands": [
            {"type": "GetFile", "params": [{"key": "Path", "value": "/no/such/file"}]},
            {"type": "GetFile", "params": [{"key": "Path", "value": "/etc/hostname"}]},
        ]}),
    )
    .await;
    let failed = final_action(server, &failed, || agent.log()).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert_eq!(failed["commands"][0]["commandStatus"], "Failed");
    assert!(
        failed["commands"][0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("/no/such/file"),
        "{failed}"
    );
    assert_eq!(failed["commands"][1]["commandStatus"], "Created");

    // The agent reported what is installed on this host: dpkg itself.
    let distribution = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("ID=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();
    let dpkg = format!("{distribution}-_-dpkg");
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = server
            .get(&format!("/api/machines/{machine}/software"))
            .await
            .unwrap()
            .json;
        let names = listed["value"].as_array().cloned().unwrap_or_default();
        if names.iter().any(|s| s["id"] == dpkg.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{dpkg} not in the machine's software: {listed}\n{}",
        agent.log()
    );
}
