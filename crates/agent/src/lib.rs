//! The Palisade agent for Linux: enrolls with an onboarding token, checks in
//! (a long poll, so that actions arrive at once), and carries out the actions
//! it receives: network isolation with nftables (Full or Selective), its
//! release, and offboarding, which removes the credential and stops the agent;
//! and enforces its tenant's indicators (`enforcement`): addresses dropped
//! or counted in the same nftables table, files and processes with a
//! blocked hash stopped and quarantined, each hit raised as an alert.

pub mod enforcement;
pub mod firewall;
pub mod hashes;
pub mod host;
pub mod inventory;
pub mod live_response;
pub mod package;
pub mod processes;
pub mod quarantine;
pub mod response;
pub mod state;

use enforcement::{Detector, DetectorConfig, SharedIndicators};
use firewall::{FirewallError, Nft, Policy};
use ipnet::IpNet;
use palisade_contract::requests::ScanType;
use palisade_contract::{ActionType, MachineAction, Timestamp};
use palisade_device::client::{http_client, DeviceClient, DeviceError};
use palisade_device::hresult::{E_ACCESSDENIED, E_FAIL, E_NOTIMPL};
use palisade_device::DeviceIndicators;
use palisade_device::{ActionResult, Capability, CheckIn, EnrollRequest, Isolation};
use quarantine::Quarantine;
use state::{EnrollmentState, OffboardedState, StateDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Pause after a failed call before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// Attempts to report an action's outcome before leaving it to the next check-in.
const REPORT_ATTEMPTS: usize = 5;
/// How often the inventory is looked at (and reported if it changed).
const INVENTORY_EVERY: Duration = Duration::from_secs(60);
/// How long antivirus scans may take before they are stopped (and Failed).
const QUICK_SCAN_WITHIN: Duration = Duration::from_secs(30 * 60);
const FULL_SCAN_WITHIN: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `https://host:port` of the Palisade server.
    pub server: String,
    /// Needed only to enroll (the first start, or after an offboard).
    pub onboarding_token: Option<String>,
    pub state_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Reachable under Selective isolation.
    pub selective_allow: Vec<IpNet>,
    /// How long each check-in waits for an action.
    pub check_in_wait: Duration,
    pub nft: PathBuf,
    /// Where files with a blocked hash are looked for (recursively).
    pub scan_paths: Vec<PathBuf>,
    /// How often those paths and the running processes are scanned.
    pub scan_every: Duration,
    /// ClamAV's `clamscan`, for antivirus scans.
    pub clamscan: PathBuf,
    /// Where Quick scans look besides `scan_paths`.
    pub quick_scan_paths: Vec<PathBuf>,
    /// A ClamAV signature directory in place of its own (`clamscan --database`).
    pub clamav_database: Option<PathBuf>,
    pub live_response: live_response::LiveResponseConfig,
}

/// How the agent ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (SIGTERM, Ctrl-C): isolation stays in force.
    Stopped,
    /// An offboard succeeded: the credential is gone.
    Offboarded,
    /// This device was offboarded before: it stays so until the marker at
    /// this path is removed.
    StaysOffboarded(PathBuf),
}

struct Agent {
    config: AgentConfig,
    client: DeviceClient,
    state: StateDir,
    nft: Nft,
    /// Desired isolation, as kept in the state directory.
    isolation: Isolation,
    /// The policy last confirmed in force (`None`: none confirmed; an empty
    /// one: no table).
    in_force: Option<Policy>,
    /// The tenant's indicators, as last received.
    indicators: SharedIndicators,
    quarantine: Quarantine,
    /// The inventory the server last took, and when it was last looked at.
    inventory_sent: Option<palisade_device::Inventory>,
    inventory_checked: Option<std::time::Instant>,
}

/// Runs the agent until `stop` resolves or the device is offboarded.
pub async fn run(
    config: AgentConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Ended> {
    let state = StateDir::open(&config.state_dir)?;
    if let Some(offboarded) = state.offboarded()? {
        tracing::warn!(machine = %offboarded.machine_id, at = %offboarded.offboarded_at, "this device was offboarded; not enrolling");
        return Ok(Ended::StaysOffboarded(state.offboarded_path()));
    }
    let http = http_client(config.ca_file.as_deref())?;
    let client = DeviceClient::new(http, &config.server);
    let (enrollment, saved) = match state.enrollment()? {
        Some(enrollment) => (enrollment, true),
        None => (enroll(&config, &client, &state).await?, false),
    };
    tracing::info!(machine = %enrollment.machine_id, server = %enrollment.server, "palisade-agent running");
    let nft = Nft {
        binary: config.nft.clone(),
    };
    let indicators = SharedIndicators::new(state.indicators()?);
    let quarantine = Quarantine::open(state.quarantine_dir())?;
    let mut agent = Agent {
        client: client.with_credential(&enrollment.credential),
        isolation: state.isolation()?,
        nft: nft.clone(),
        state,
        config,
        in_force: None,
        indicators: indicators.clone(),
        quarantine: quarantine.clone(),
        inventory_sent: None,
        inventory_checked: None,
    };
    if saved && agent.config.onboarding_token.is_some() {
        // Isolation first: the server may be slow or away at boot.
        agent.hold_enforcement().await;
        let refreshed = refresh(&agent.config, &agent.client, &agent.state, enrollment).await?;
        agent.client = client.with_credential(&refreshed.credential);
    }
    // With the credential the refresh may have replaced.
    let detector = Detector::new(
        agent.client.clone(),
        nft,
        indicators,
        DetectorConfig {
            scan_paths: agent.config.scan_paths.clone(),
            scan_every: agent.config.scan_every,
            quarantine,
        },
    );
    let detecting = tokio::spawn(detector.run());
    let _stop_detecting = AbortOnDrop(detecting);
    tokio::pin!(stop);
    loop {
        agent.hold_enforcement().await;
        agent.report_inventory().await;
        tokio::select! {
            _ = &mut stop => return Ok(Ended::Stopped),
            ended = agent.check_in() => {
                if let Some(ended) = ended? {
                    return Ok(ended);
                }
            }
        }
    }
}

/// What this host reports when it enrolls.
fn enroll_request() -> EnrollRequest {
    let (os_version, version) = host::os_release();
    EnrollRequest {
        hardware_id: host::hardware_id(),
        computer_dns_name: host::hostname(),
        os_platform: palisade_contract::OsPlatform::Linux,
        os_version,
        version,
        os_build: None,
        os_architecture: Some(host::architecture().into()),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        ip_addresses: host::addresses(),
        last_external_ip_address: None,
        capabilities: vec![
            Capability::FullIsolation,
            Capability::SelectiveIsolation,
            Capability::Offboard,
            Capability::Indicators,
            Capability::StopAndQuarantineFile,
            Capability::AntivirusScan,
            Capability::LiveResponse,
        ],
        credential: None,
    }
}

/// Enrolls, waiting out the onboarding token's rate limit as the server asks.
async fn enroll_with(
    client: &DeviceClient,
    token: &str,
) -> Result<palisade_device::Enrollment, DeviceError> {
    let request = enroll_request();
    loop {
        match client.enroll(token, &request).await {
            Err(DeviceError::Throttled { retry_after, .. }) => {
                tracing::info!(
                    seconds = retry_after.as_secs(),
                    "enrollment throttled; waiting"
                );
                tokio::time::sleep(retry_after).await;
            }
            enrolled => return enrolled,
        }
    }
}

fn save(
    config: &AgentConfig,
    state: &StateDir,
    enrollment: palisade_device::Enrollment,
) -> anyhow::Result<EnrollmentState> {
    let saved = EnrollmentState {
        server: config.server.clone(),
        tenant_id: enrollment.tenant_id,
        machine_id: enrollment.machine_id,
        credential: enrollment.credential,
    };
    state.save_enrollment(&saved)?;
    Ok(saved)
}

async fn enroll(
    config: &AgentConfig,
    client: &DeviceClient,
    state: &StateDir,
) -> anyhow::Result<EnrollmentState> {
    let token = config.onboarding_token.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "this device is not enrolled; start the agent with --onboarding-token (palisade onboarding create)"
        )
    })?;
    let enrollment = enroll_with(client, token)
        .await
        .map_err(|e| anyhow::anyhow!("enrolling with {} failed: {e}", config.server))?;
    let saved = save(config, state, enrollment)?;
    tracing::info!(machine = %saved.machine_id, "enrolled");
    Ok(saved)
}

/// Started with an onboarding token and its credential (its state directory
/// survived a reinstall, or a service manager always passes the token):
/// enrolls once more presenting the credential (`client` calls with it),
/// which updates its own machine in place (hostname, OS, what it enforces)
/// and keeps the credential. If that does not go through (throttled, the
/// server away), the saved enrollment stands; the server's answer that the
/// device was offboarded comes again at the first check-in, which ends it.
async fn refresh(
    config: &AgentConfig,
    client: &DeviceClient,
    state: &StateDir,
    saved: EnrollmentState,
) -> anyhow::Result<EnrollmentState> {
    let Some(token) = config.onboarding_token.as_deref() else {
        return Ok(saved);
    };
    match client.enroll(token, &enroll_request()).await {
        Ok(enrollment) => {
            let refreshed = save(config, state, enrollment)?;
            if refreshed.machine_id == saved.machine_id {
                tracing::info!(machine = %refreshed.machine_id, "enrollment refreshed in place");
            } else {
                // The server did not know the credential (another server or database).
                tracing::warn!(old = %saved.machine_id, machine = %refreshed.machine_id, "enrolled as a new machine");
            }
            Ok(refreshed)
        }
        Err(error) => {
            tracing::warn!(%error, "could not refresh the enrollment; keeping it as it is");
            Ok(saved)
        }
    }
}

/// Stops the detector when the agent's run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Agent {
    /// The policy for `isolation` now: the control plane's addresses (and
    /// the indicators' domains) are resolved afresh, so that it follows a
    /// server that moved.
    async fn policy(&self, isolation: Isolation) -> Result<Policy, FirewallError> {
        let url = reqwest::Url::parse(self.client.server())
            .map_err(|e| FirewallError::Failed(format!("the server URL: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| FirewallError::Failed("the server URL has no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let named = host.parse::<std::net::IpAddr>().is_err();
        let mut control_plane: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| FirewallError::Failed(format!("cannot resolve {host}: {e}")))?
            .collect();
        // DNS answers in any order: the same addresses are the same policy.
        control_plane.sort();
        control_plane.dedup();
        Ok(Policy {
            isolation,
            control_plane,
            resolvers: if named { host::resolvers() } else { vec![] },
            allow: self.config.selective_allow.clone(),
            indicators: enforcement::address_rules(&self.indicators.held()).await,
        })
    }

    /// Keeps the desired isolation and the indicators' addresses in force:
    /// re-applies them at start, when the table went missing, and when the
    /// control plane's addresses or the indicators changed. A failed
    /// re-apply never lifts what is in force: holding means no rollback.
    async fn hold_enforcement(&mut self) {
        let wanted = match self.policy(self.isolation).await {
            Ok(policy) => policy,
            Err(error) => {
                tracing::error!(%error, "cannot work out the firewall policy");
                return;
            }
        };
        // Nothing wanted and no table confirmed: nobody else makes ours.
        if wanted.is_empty() && self.in_force.as_ref().is_some_and(Policy::is_empty) {
            return;
        }
        let intact =
            self.in_force.as_ref() == Some(&wanted) && self.nft.verify(&wanted).await.is_ok();
        if intact {
            return;
        }
        // Nothing wanted at start still removes a table a crash left behind.
        match self.nft.apply(&wanted).await {
            Ok(()) => {
                if !wanted.is_empty() {
                    tracing::info!(isolation = %self.isolation, addresses = wanted.indicators.len(), "firewall policy in force");
                }
                self.in_force = Some(wanted);
            }
            Err(FirewallError::Unavailable(error)) if wanted.is_empty() => {
                // No nftables here: no table of ours either.
                tracing::debug!(%error, "no stale table looked for");
                self.in_force = Some(wanted);
            }
            Err(error) => {
                // Reported as not in force until a re-apply succeeds.
                self.in_force = None;
                tracing::error!(%error, "cannot put the firewall policy back in force");
            }
        }
    }

    /// Reports the inventory if it changed since the server last took it
    /// (looked at every [`INVENTORY_EVERY`]).
    async fn report_inventory(&mut self) {
        let due = self
            .inventory_checked
            .is_none_or(|at| at.elapsed() >= INVENTORY_EVERY);
        if !due {
            return;
        }
        self.inventory_checked = Some(std::time::Instant::now());
        let Ok(inventory) = tokio::task::spawn_blocking(inventory::collect).await else {
            return;
        };
        if self.inventory_sent.as_ref() == Some(&inventory) {
            return;
        }
        match self.client.report_inventory(&inventory).await {
            Ok(()) => {
                tracing::info!(
                    software = inventory.software.len(),
                    users = inventory.logon_users.len(),
                    "inventory reported"
                );
                self.inventory_sent = Some(inventory);
            }
            Err(error) => tracing::warn!(%error, "inventory not reported; trying again later"),
        }
    }

    fn report(&self) -> CheckIn {
        let addresses = host::addresses();
        CheckIn {
            last_ip_address: None,
            ip_addresses: addresses,
            last_external_ip_address: None,
            health_status: Some(palisade_contract::HealthStatus::Active),
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            isolation: self
                .in_force
                .as_ref()
                .map_or(Isolation::None, |policy| policy.isolation),
            indicators_version: Some(self.indicators.held().version).filter(|v| !v.is_empty()),
        }
    }

    /// Holds `indicators` from now on (kept in the state directory for the
    /// next start); the next round of the loop puts them in force.
    fn take_indicators(&mut self, indicators: DeviceIndicators) {
        tracing::info!(version = %indicators.version, count = indicators.indicators.len(), "indicators received");
        if let Err(error) = self.state.save_indicators(&indicators) {
            tracing::warn!(%error, "indicators not kept in the state directory");
        }
        self.indicators.replace(indicators);
    }

    /// One check-in and the actions it brings.
    async fn check_in(&mut self) -> anyhow::Result<Option<Ended>> {
        match self
            .client
            .check_in(&self.report(), self.config.check_in_wait)
            .await
        {
            Ok(reply) => {
                if let Some(indicators) = reply.indicators {
                    self.take_indicators(indicators);
                }
                for action in reply.actions {
                    if let Some(ended) = self.carry_out(&action).await? {
                        return Ok(Some(ended));
                    }
                }
                if self.config.check_in_wait.is_zero() {
                    tokio::time::sleep(Duration::from_secs(reply.check_in_interval_seconds)).await;
                }
                Ok(None)
            }
            Err(DeviceError::Offboarded) => {
                // The offboard took effect though its reply was lost: finish it here.
                self.end_offboarded().await?;
                Ok(Some(Ended::Offboarded))
            }
            Err(DeviceError::Unauthorized(message)) => Err(anyhow::anyhow!(
                "the server no longer accepts this device's credential: {message}"
            )),
            Err(error) => {
                tracing::warn!(%error, "check-in failed; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
                Ok(None)
            }
        }
    }

    async fn carry_out(&mut self, action: &MachineAction) -> anyhow::Result<Option<Ended>> {
        match self.client.start(&action.id).await {
            Ok(_) => {}
            Err(DeviceError::Refused { message, .. }) => {
                tracing::info!(action = %action.id, "not taken on: {message}");
                return Ok(None);
            }
            Err(error) => {
                // The action comes straight back with the next check-in: pause first.
                tracing::warn!(%error, action = %action.id, "could not take the action on");
                tokio::time::sleep(RETRY_AFTER).await;
                return Ok(None);
            }
        }
        tracing::info!(action = %action.id, kind = %action.action_type, "carrying out");
        let (result, ended) = match action.action_type {
            ActionType::Isolate => (
                self.isolate(Isolation::from_scope(action.scope.as_deref()))
                    .await,
                None,
            ),
            ActionType::Unisolate => (self.release().await, None),
            ActionType::Offboard => match self.release_for_offboard().await {
                Ok(()) => (
                    ActionResult::succeeded(
                        "isolation lifted; the agent removes its credential and stops",
                    ),
                    Some(Ended::Offboarded),
                ),
                Err(error) => (failure(&error), None),
            },
            ActionType::StopAndQuarantineFile => (self.stop_and_quarantine(action).await, None),
            ActionType::RunAntiVirusScan => (self.antivirus_scan(action).await, None),
            ActionType::CollectInvestigationPackage => (self.collect_package(action).await, None),
            ActionType::LiveResponse => (
                live_response::run_session(&self.client, &self.config.live_response, action).await,
                None,
            ),
            other => (
                ActionResult {
                    error_h_result: Some(E_NOTIMPL),
                    ..ActionResult::failed(format!("palisade-agent does not carry out {other}"))
                },
                None,
            ),
        };
        let reported = self.report_result(action, &result).await;
        // Offboarding ends only once the server knows: until then the action
        // comes back with the next check-in and is carried out again.
        if reported && ended == Some(Ended::Offboarded) {
            self.end_offboarded().await?;
            return Ok(ended);
        }
        Ok(None)
    }

    /// Lifts isolation for good before offboarding is reported: from then on
    /// the server cannot release this host any more.
    async fn release_for_offboard(&mut self) -> Result<(), FirewallError> {
        self.nft.release().await?;
        self.isolation = Isolation::None;
        self.in_force = None;
        self.state
            .save_isolation(Isolation::None)
            .map_err(|e| FirewallError::Failed(format!("the state directory: {e}")))
    }

    async fn end_offboarded(&mut self) -> anyhow::Result<()> {
        if let Err(error) = self.release_for_offboard().await {
            tracing::warn!(%error, "offboarded, but isolation could not be lifted");
        }
        let enrolled = self.state.enrollment()?;
        let offboarded = OffboardedState {
            server: self.config.server.clone(),
            machine_id: enrolled.map(|e| e.machine_id).unwrap_or_default(),
            offboarded_at: Timestamp::now().to_string(),
        };
        self.state.end_enrollment(&offboarded)?;
        tracing::info!("offboarded: credential removed; stopping");
        Ok(())
    }

    async fn isolate(&mut self, isolation: Isolation) -> ActionResult {
        let policy = match self.policy(isolation).await {
            Ok(policy) => policy,
            Err(error) => return failure(&error),
        };
        match self.nft.isolate(&policy, self.in_force.as_ref()).await {
            Ok(()) => {
                if let Err(error) = self.state.save_isolation(isolation) {
                    // Not durable means not held after a restart: undo and fail.
                    let undo = match &self.in_force {
                        Some(previous) => self.nft.isolate(previous, None).await,
                        None => self.nft.release().await,
                    };
                    return ActionResult::failed(format!(
                        "cannot record the isolation in the state directory: {error}; rollback: {undo:?}"
                    ));
                }
                self.isolation = isolation;
                self.in_force = Some(policy);
                ActionResult::succeeded(format!(
                    "{isolation} isolation in force (nftables table inet {})",
                    firewall::TABLE
                ))
            }
            Err(error) => failure(&error),
        }
    }

    /// Lifts isolation; the indicators' rules stay (without them, the table goes).
    async fn release(&mut self) -> ActionResult {
        let kept = match self.policy(Isolation::None).await {
            Ok(policy) => policy,
            Err(error) => return failure(&error),
        };
        if let Err(error) = self.nft.apply(&kept).await {
            return failure(&error);
        }
        let lifted = if kept.is_empty() {
            format!("isolation lifted (table inet {} deleted)", firewall::TABLE)
        } else {
            format!(
                "isolation lifted (table inet {} keeps the rules of {} indicator addresses)",
                firewall::TABLE,
                kept.indicators.len()
            )
        };
        self.in_force = Some(kept);
        self.isolation = Isolation::None;
        match self.state.save_isolation(Isolation::None) {
            Ok(()) => ActionResult::succeeded(lifted),
            Err(error) => ActionResult::failed(format!(
                "isolation lifted, but the state directory still asks for it: {error}"
            )),
        }
    }

    /// StopAndQuarantineFile: the SHA-1 the action names, stopped and
    /// quarantined (in the scan paths) on a blocking thread.
    async fn stop_and_quarantine(&self, action: &MachineAction) -> ActionResult {
        let Some(file) = &action.related_file_info else {
            return ActionResult::failed("the action names no file");
        };
        let sha1 = file.file_identifier.clone();
        let search = self.config.scan_paths.clone();
        let quarantine = self.quarantine.clone();
        blocking(move || response::stop_and_quarantine(&sha1, &search, &quarantine).result)
            .await
            .unwrap_or_else(|failed| failed)
    }

    /// RunAntiVirusScan: ClamAV over the places of its scan type; each file
    /// it finds quarantined and raised as an alert.
    async fn antivirus_scan(&self, action: &MachineAction) -> ActionResult {
        let scan_type = match action.scope.as_deref().map(str::parse::<ScanType>) {
            Some(Ok(scan_type)) => scan_type,
            _ => ScanType::Quick,
        };
        let antivirus = response::Antivirus {
            clamscan: self.config.clamscan.clone(),
            database: self.config.clamav_database.clone(),
            quick_places: self
                .config
                .scan_paths
                .iter()
                .chain(&self.config.quick_scan_paths)
                .cloned()
                .collect(),
            quick_within: QUICK_SCAN_WITHIN,
            full_within: FULL_SCAN_WITHIN,
        };
        let quarantine = self.quarantine.clone();
        let outcome = match blocking(move || antivirus.scan(scan_type, &quarantine)).await {
            Ok(outcome) => outcome,
            Err(failed) => return failed,
        };
        for file in &outcome.remediated {
            let Some(threat) = &file.threat else { continue };
            if let Err(error) = self
                .client
                .raise_alert(&response::scan_alert(file, threat))
                .await
            {
                tracing::warn!(%error, file = %file.path.display(), "could not raise the scan's alert");
            }
        }
        outcome.result
    }

    /// CollectInvestigationPackage: the package collected into the state
    /// directory (bounded in size and time), uploaded, then removed; the
    /// server takes Succeeded only once it holds the package.
    async fn collect_package(&self, action: &MachineAction) -> ActionResult {
        let out = self.state.package_path(&action.id);
        let collecting = out.clone();
        let collected = match blocking(move || {
            package::collect(&collecting, &package::Limits::default())
        })
        .await
        {
            Ok(Ok(collected)) => collected,
            Ok(Err(error)) => {
                let _ = std::fs::remove_file(&out);
                return ActionResult::failed(format!("collecting the package failed: {error}"));
            }
            Err(failed) => return failed,
        };
        let uploaded = match tokio::fs::File::open(&collected.path).await {
            Ok(file) => self
                .client
                .upload_package(&action.id, file, collected.bytes)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let _ = tokio::fs::remove_file(&collected.path).await;
        match uploaded {
            Ok(_) => {
                let truncated = if collected.truncated.is_empty() {
                    String::new()
                } else {
                    format!("; cut short: {}", collected.truncated.join(", "))
                };
                ActionResult::succeeded(format!(
                    "investigation package uploaded: {} bytes, {} entries, SHA-256 {}{truncated}",
                    collected.bytes,
                    collected.entries.len(),
                    collected.sha256
                ))
            }
            Err(error) => ActionResult::failed(format!("uploading the package failed: {error}")),
        }
    }

    /// Reports an outcome, retrying a few times; if it still does not arrive,
    /// the action comes back (InProgress) with the next check-in. Returns
    /// whether the server took it.
    async fn report_result(&self, action: &MachineAction, result: &ActionResult) -> bool {
        for attempt in 1..=REPORT_ATTEMPTS {
            match self.client.finish(&action.id, result).await {
                Ok(finished) => {
                    tracing::info!(action = %action.id, status = %finished.status, detail = ?result.detail, "reported");
                    return true;
                }
                // An offboard's first report took effect; only its reply was lost.
                Err(DeviceError::Offboarded) if action.action_type == ActionType::Offboard => {
                    return true;
                }
                Err(DeviceError::Unavailable(message)) if attempt < REPORT_ATTEMPTS => {
                    tracing::warn!(action = %action.id, "report failed ({message}); retrying");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                Err(error) => {
                    tracing::warn!(%error, action = %action.id, "could not report the outcome");
                    return false;
                }
            }
        }
        false
    }
}

/// Runs blocking work (file systems, processes, a scanner) off the async
/// threads; a panic in it is the action's failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ActionResult> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ActionResult::failed(format!("the action's work failed: {error}")))
}

fn failure(error: &FirewallError) -> ActionResult {
    let code = match error {
        FirewallError::Unavailable(_) => E_ACCESSDENIED,
        FirewallError::Failed(_) => E_FAIL,
    };
    ActionResult {
        error_h_result: Some(code),
        ..ActionResult::failed(error.to_string())
    }
}
