//! The device plane under load: check-ins per second with a large enrolled
//! fleet, and the time from `POST .../isolate` to the device reporting
//! Succeeded with many devices connected (long-polling) at once.

use crate::load::{run_load, LoadReport, RequestPlan};
use hdrhistogram::Histogram;
use palisade_contract::{ActionStatus, MachineAction, OsPlatform};
use palisade_device::client::DeviceClient;
use palisade_device::fleet::{self, Fleet, FleetOptions};
use palisade_device::CHECK_IN_PATH;
use palisade_domain::devices::DevicePlane;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Enrollments in flight at once.
const ENROLLING: usize = 64;

/// The fleet's devices, as `palisade simulate` would enroll them: Windows 11,
/// named `{prefix}-{n}`, long-polling for `wait`.
fn fleet_options(
    onboarding_token: &str,
    devices: usize,
    prefix: &str,
    wait: Duration,
) -> FleetOptions {
    FleetOptions {
        devices,
        onboarding_token: onboarding_token.to_string(),
        os_platform: OsPlatform::Windows11,
        name_prefix: prefix.into(),
        wait,
        check_in_interval: None,
        action_latency: Duration::ZERO,
        failure_rate: 0.0,
        enroll_concurrency: ENROLLING,
        alerts_per_hour: 0.0,
    }
}

/// Enrolls `count` devices named `{prefix}-{n}`; returns their credentials.
pub async fn enroll(
    origin: &str,
    onboarding_token: &str,
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let client = DeviceClient::new(reqwest::Client::new(), origin);
    let options = fleet_options(onboarding_token, count, prefix, Duration::ZERO);
    let enrolled = fleet::enroll(&client, &options).await?;
    Ok(enrolled.into_iter().map(|e| e.credential).collect())
}

/// Check-ins of `credentials`' devices, round robin, without waiting for actions.
pub fn check_in_plan(credentials: Vec<String>) -> RequestPlan {
    let authorizations: Arc<Vec<String>> =
        Arc::new(credentials.iter().map(|c| format!("Bearer {c}")).collect());
    RequestPlan::post_as(move |n| {
        (
            authorizations[n % authorizations.len()].clone(),
            format!("{CHECK_IN_PATH}?wait=0"),
            r#"{"lastIpAddress":"10.0.0.7","healthStatus":"Active","isolation":"None"}"#.into(),
        )
    })
}

/// What the check-in writer did: rows per flush and how long each took.
#[derive(Default)]
pub struct FlushLog {
    flushes: Mutex<Vec<(usize, Duration)>>,
}

impl FlushLog {
    /// Flushes once a second, as the server's writer does, recording each flush.
    pub fn spawn(devices: DevicePlane) -> Arc<FlushLog> {
        let log = Arc::new(FlushLog::default());
        let recorder = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let started = Instant::now();
                if let Ok(rows) = devices.flush_check_ins().await {
                    if rows > 0 {
                        if let Ok(mut flushes) = recorder.flushes.lock() {
                            flushes.push((rows, started.elapsed()));
                        }
                    }
                }
            }
        });
        log
    }

    /// Rows written and the longest flush since the last call.
    pub fn take(&self) -> (usize, Duration) {
        let flushes = self
            .flushes
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        let rows = flushes.iter().map(|(n, _)| n).sum();
        let longest = flushes.iter().map(|(_, d)| *d).max().unwrap_or_default();
        (rows, longest)
    }
}

pub async fn measure_check_ins(
    origin: &str,
    credentials: Vec<String>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    run_load(
        origin,
        "",
        check_in_plan(credentials),
        concurrency,
        duration,
    )
    .await
}

/// The time from an isolate POST to the device's Succeeded, with `connected`
/// simulated devices long-polling.
pub struct DeliveryReport {
    pub connected: usize,
    pub isolated: usize,
    pub latency_us: Histogram<u64>,
}

impl DeliveryReport {
    pub fn summary(&self) -> String {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "{} isolations with {} devices connected: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.isolated,
            self.connected,
            ms(0.5),
            ms(0.99),
            self.latency_us.max() as f64 / 1000.0
        )
    }
}

/// The connected fleet runs in a child process (this binary, `--fleet-of`):
/// a process may hold only so many sockets, and the server's ends of the
/// connections are already in this one.
pub async fn run_fleet(origin: &str, onboarding_token: &str, devices: usize) -> anyhow::Result<()> {
    let client = DeviceClient::new(reqwest::Client::new(), origin);
    let wait = Duration::from_secs(palisade_device::MAX_WAIT_SECONDS);
    let options = fleet_options(onboarding_token, devices, "connected", wait);
    let fleet = Fleet::start(client, options).await?;
    let mut out = std::io::stdout().lock();
    for machine in &fleet.machine_ids {
        writeln!(out, "{machine}")?;
    }
    writeln!(out, "{FLEET_READY}")?;
    out.flush()?;
    drop(out);
    std::future::pending::<()>().await;
    Ok(())
}

const FLEET_READY: &str = "ready";

/// Measured with the server's own timestamps: an action's
/// `lastUpdateDateTimeUtc` once Succeeded, less its `creationDateTimeUtc`.
/// The isolations are posted to `origin`; the devices wait on `fleet_origin`
/// (another node, to measure delivery across nodes).
pub async fn measure_delivery(
    origin: &str,
    fleet_origin: &str,
    authorization: &str,
    onboarding_token: &str,
    connected: usize,
    isolations: usize,
) -> anyhow::Result<DeliveryReport> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--fleet-of",
            &connected.to_string(),
            "--fleet-server",
            fleet_origin,
        ])
        .args(["--fleet-token", onboarding_token])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no fleet output"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut machines = Vec::with_capacity(connected);
    while let Some(line) = lines.next_line().await? {
        if line == FLEET_READY {
            break;
        }
        machines.push(line);
    }
    anyhow::ensure!(machines.len() == connected, "the fleet process ended early");
    // Every device opens its long poll at once; give them time to be waiting.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let api = reqwest::Client::new();
    let step = (machines.len() / isolations.max(1)).max(1);
    let mut actions = Vec::new();
    for machine in machines.iter().step_by(step).take(isolations) {
        let reply: serde_json::Value = api
            .post(format!("{origin}/api/machines/{machine}/isolate"))
            .header("authorization", authorization)
            .json(&serde_json::json!({"Comment": "bench", "IsolationType": "Full"}))
            .send()
            .await?
            .json()
            .await?;
        let id = reply["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("isolate refused: {reply}"))?;
        actions.push(id.to_string());
        // A moderate, steady stream rather than a burst.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latency_us = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut isolated = 0;
    for id in &actions {
        while Instant::now() < deadline {
            let action: MachineAction = api
                .get(format!("{origin}/api/machineactions/{id}"))
                .header("authorization", authorization)
                .send()
                .await?
                .json()
                .await?;
            if action.status == ActionStatus::Succeeded {
                let ticks = action.last_update_date_time_utc.ticks()
                    - action.creation_date_time_utc.ticks();
                latency_us.record((ticks / 10).max(0) as u64)?;
                isolated += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    child.kill().await?;
    Ok(DeliveryReport {
        connected,
        isolated,
        latency_us,
    })
}
