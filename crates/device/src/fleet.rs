//! A simulated fleet: N virtual devices in one process, speaking the same
//! protocol as the agent, so that actions complete realistically (after a
//! configurable latency, failing at a configurable rate) without real devices.

use crate::client::{DeviceClient, DeviceError};
use crate::detections::{random_detection, Target};
use crate::protocol::*;
use palisade_contract::{ActionType, HealthStatus, IpAddress, OsPlatform, Timestamp};
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub devices: usize,
    pub onboarding_token: String,
    pub os_platform: OsPlatform,
    /// Device names are `{name_prefix}-{n}`; the same names report the same
    /// hardware. Simulated devices keep their credentials in memory only, so
    /// a second fleet of the same names enrolls new machines, each marked as
    /// a potential duplicate of the earlier one (as re-imaged devices are).
    pub name_prefix: String,
    /// Long poll: how long each check-in waits for an action. Zero: devices
    /// check in every interval and pick actions up then.
    pub wait: Duration,
    /// Between check-ins; `None`: as the server asks at enrollment.
    pub check_in_interval: Option<Duration>,
    /// Mean time a device takes to carry out an action (actual: 0.5x to 1.5x).
    pub action_latency: Duration,
    /// Share of actions that end Failed, from 0.0 to 1.0.
    pub failure_rate: f64,
    /// Enrollments in flight at once.
    pub enroll_concurrency: usize,
    /// Alerts each device raises an hour, on average (a Poisson process
    /// over the fleet); zero: none.
    pub alerts_per_hour: f64,
}

/// Counters of the whole fleet, updated as devices work.
#[derive(Debug, Default)]
pub struct FleetStats {
    pub enrolled: AtomicU64,
    pub check_ins: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub offboarded: AtomicU64,
    pub alerts: AtomicU64,
    pub errors: AtomicU64,
}

impl FleetStats {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "enrolled {}, check-ins {}, actions succeeded {}, failed {}, offboarded {}, alerts {}, errors {}",
            get(&self.enrolled),
            get(&self.check_ins),
            get(&self.succeeded),
            get(&self.failed),
            get(&self.offboarded),
            get(&self.alerts),
            get(&self.errors),
        )
    }
}

pub struct Fleet {
    pub stats: Arc<FleetStats>,
    /// The enrolled devices' machine ids, in device order.
    pub machine_ids: Vec<String>,
    devices: JoinSet<()>,
}

/// Enrolls the fleet's devices (`enroll_concurrency` at a time), in device order.
pub async fn enroll(
    client: &DeviceClient,
    options: &FleetOptions,
) -> anyhow::Result<Vec<Enrollment>> {
    let permits = Arc::new(Semaphore::new(options.enroll_concurrency.max(1)));
    let mut enrolling = JoinSet::new();
    for n in 0..options.devices {
        let (client, permits) = (client.clone(), permits.clone());
        let (token, request) = (options.onboarding_token.clone(), enroll_request(options, n));
        enrolling.spawn(async move {
            let _permit = permits.acquire_owned().await;
            loop {
                match client.enroll(&token, &request).await {
                    // The token's enrollment limit: wait as the server says.
                    Err(DeviceError::Throttled { retry_after, .. }) => {
                        tokio::time::sleep(retry_after).await
                    }
                    enrolled => return (n, enrolled),
                }
            }
        });
    }
    let mut enrolled = vec![None; options.devices];
    while let Some(joined) = enrolling.join_next().await {
        let (n, enrollment) = joined?;
        enrolled[n] =
            Some(enrollment.map_err(|e| anyhow::anyhow!("device {n} could not enroll: {e}"))?);
    }
    Ok(enrolled.into_iter().flatten().collect())
}

impl Fleet {
    /// Enrolls every device, then sets them to work; returns once all are enrolled.
    pub async fn start(client: DeviceClient, options: FleetOptions) -> anyhow::Result<Fleet> {
        let enrolled = enroll(&client, &options).await?;
        let stats = Arc::new(FleetStats::default());
        stats
            .enrolled
            .store(enrolled.len() as u64, Ordering::Relaxed);
        let options = Arc::new(options);
        let mut devices = JoinSet::new();
        let mut machine_ids = Vec::with_capacity(enrolled.len());
        let mut raisers = Vec::with_capacity(enrolled.len());
        for (n, enrollment) in enrolled.into_iter().enumerate() {
            machine_ids.push(enrollment.machine_id.clone());
            raisers.push((
                client.with_credential(&enrollment.credential),
                Target {
                    machine_id: enrollment.machine_id.clone(),
                    computer_dns_name: format!("{}-{n}", options.name_prefix),
                    windows: options.os_platform.is_windows(),
                },
            ));
            let device = SimulatedDevice {
                client: client.with_credential(&enrollment.credential),
                name: format!("{}-{n}", options.name_prefix),
                machine_id: enrollment.machine_id,
                address: address(n),
                interval: options
                    .check_in_interval
                    .unwrap_or(Duration::from_secs(enrollment.check_in_interval_seconds)),
                options: options.clone(),
                stats: stats.clone(),
            };
            devices.spawn(device.run());
        }
        if options.alerts_per_hour > 0.0 && !raisers.is_empty() {
            devices.spawn(raise_alerts(
                raisers,
                options.alerts_per_hour,
                stats.clone(),
            ));
        }
        Ok(Fleet {
            stats,
            machine_ids,
            devices,
        })
    }

    /// Stops every device.
    pub async fn stop(mut self) {
        self.devices.shutdown().await;
    }
}

fn address(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

fn enroll_request(options: &FleetOptions, n: usize) -> EnrollRequest {
    let name = format!("{}-{n}", options.name_prefix);
    EnrollRequest {
        hardware_id: format!("simulated:{name}"),
        computer_dns_name: name,
        os_platform: options.os_platform,
        os_version: None,
        version: Some("23H2".into()),
        os_build: Some(22631),
        os_architecture: Some("64-bit".into()),
        agent_version: concat!("palisade-simulated/", env!("CARGO_PKG_VERSION")).into(),
        ip_addresses: vec![IpAddress {
            ip_address: address(n),
            mac_address: Some(format!("02000A{:06X}", n & 0xff_ffff)),
            kind: "Ethernet".into(),
            operational_status: "Up".into(),
        }],
        last_external_ip_address: None,
        capabilities: <Capability as strum::VariantArray>::VARIANTS.to_vec(),
        credential: None,
    }
}

/// Raises alerts on random devices of the fleet, `per_hour` a device on
/// average: the gaps between alerts are exponential, as in a Poisson process.
async fn raise_alerts(devices: Vec<(DeviceClient, Target)>, per_hour: f64, stats: Arc<FleetStats>) {
    let per_second = per_hour * devices.len() as f64 / 3_600.0;
    loop {
        let (gap, n) = {
            let mut rng = rand::rng();
            let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
            (
                -uniform.ln() / per_second,
                rng.random_range(0..devices.len()),
            )
        };
        tokio::time::sleep(Duration::from_secs_f64(gap.min(3_600.0))).await;
        let (client, target) = &devices[n];
        let alert = random_detection(&mut rand::rng(), target, Timestamp::now());
        match client.raise_alert(&alert).await {
            Ok(_) => stats.alerts.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.errors.fetch_add(1, Ordering::Relaxed),
        };
    }
}

struct SimulatedDevice {
    client: DeviceClient,
    name: String,
    machine_id: String,
    address: String,
    interval: Duration,
    options: Arc<FleetOptions>,
    stats: Arc<FleetStats>,
}

/// What the device loop does next.
enum Next {
    CheckIn,
    Stop,
}

impl SimulatedDevice {
    async fn run(self) {
        let mut isolation = Isolation::None;
        // The version of the indicators last received: a simulated device
        // holds them as a real one does, so that they are not sent again.
        let mut indicators_version = None;
        let wait = self.options.wait.min(Duration::from_secs(MAX_WAIT_SECONDS));
        if wait.is_zero() {
            // Spread the fleet's periodic check-ins over the interval instead of all at once.
            let first = rand::rng().random_range(0..self.interval.as_millis().max(1) as u64);
            tokio::time::sleep(Duration::from_millis(first)).await;
        }
        // Its inventory once: a simulated device's never changes.
        let inventory = crate::simulated_inventory(&self.name, Timestamp::now());
        loop {
            match self.client.report_inventory(&inventory).await {
                Ok(()) => break,
                Err(error @ DeviceError::Refused { .. }) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(machine = %self.machine_id, "inventory refused: {error}");
                    break;
                }
                Err(error) => {
                    if let Next::Stop = self.on_error(error).await {
                        return;
                    }
                }
            }
        }
        loop {
            let report = CheckIn {
                ip_addresses: vec![],
                last_ip_address: Some(self.address.clone()),
                last_external_ip_address: None,
                health_status: Some(HealthStatus::Active),
                agent_version: None,
                isolation,
                indicators_version: indicators_version.clone(),
            };
            let started = Instant::now();
            let reply = match self.client.check_in(&report, wait).await {
                Ok(reply) => reply,
                Err(error) => match self.on_error(error).await {
                    Next::CheckIn => continue,
                    Next::Stop => return,
                },
            };
            self.stats.check_ins.fetch_add(1, Ordering::Relaxed);
            let received = reply.indicators.is_some();
            if let Some(indicators) = reply.indicators {
                indicators_version = Some(indicators.version);
            }
            let mut acted = false;
            for action in reply.actions {
                acted = true;
                match self.carry_out(&action, &mut isolation).await {
                    Ok(Next::CheckIn) => {}
                    Ok(Next::Stop) => return,
                    Err(error) => {
                        if let Next::Stop = self.on_error(error).await {
                            return;
                        }
                    }
                }
            }
            if !acted && !received {
                // A long poll already spaced this check-in; a short one waits out the interval.
                if let Some(rest) = self.interval.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        }
    }

    async fn on_error(&self, error: DeviceError) -> Next {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        match error {
            DeviceError::Unauthorized(message) => {
                tracing::warn!(machine = %self.machine_id, "stopping: {message}");
                Next::Stop
            }
            DeviceError::Offboarded => Next::Stop,
            DeviceError::Refused { .. } => Next::CheckIn,
            DeviceError::Throttled { retry_after, .. } => {
                tokio::time::sleep(retry_after).await;
                Next::CheckIn
            }
            DeviceError::Unavailable(message) => {
                tracing::debug!(machine = %self.machine_id, "retrying: {message}");
                let backoff = rand::rng().random_range(1_000..5_000);
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                Next::CheckIn
            }
        }
    }

    async fn carry_out(
        &self,
        action: &palisade_contract::MachineAction,
        isolation: &mut Isolation,
    ) -> Result<Next, DeviceError> {
        self.client.start(&action.id).await?;
        if action.action_type == ActionType::CollectInvestigationPackage {
            let package = crate::simulated_package(&self.machine_id);
            let size = package.len() as u64;
            self.client
                .upload_package(&action.id, package, size)
                .await?;
        }
        let mut commands = Vec::with_capacity(action.commands.len());
        for command in &action.commands {
            if command.command.command_type.has_result() {
                let result = crate::simulated_command_result(&command.command, &self.machine_id);
                let size = result.len() as u64;
                self.client
                    .upload_command_result(&action.id, command.index, result, size)
                    .await?;
            }
            let at = Timestamp::now();
            commands.push(crate::CommandOutcome {
                index: command.index,
                command_status: palisade_contract::live_response::CommandStatus::Completed,
                errors: vec![],
                start_time: at,
                end_time: at,
            });
        }
        let latency = self
            .options
            .action_latency
            .mul_f64(rand::rng().random_range(0.5..1.5));
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let fails = rand::rng().random_bool(self.options.failure_rate.clamp(0.0, 1.0));
        let result = if fails {
            ActionResult::failed(format!("simulated failure of {}", action.action_type))
        } else {
            ActionResult {
                commands,
                ..ActionResult::succeeded(format!("simulated {}", action.action_type))
            }
        };
        self.client.finish(&action.id, &result).await?;
        if fails {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            return Ok(Next::CheckIn);
        }
        self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
        if let Some(after) = isolation_after(action.action_type, action.scope.as_deref()) {
            *isolation = after;
        }
        if action.action_type == ActionType::Offboard {
            self.stats.offboarded.fetch_add(1, Ordering::Relaxed);
            return Ok(Next::Stop);
        }
        Ok(Next::CheckIn)
    }
}
