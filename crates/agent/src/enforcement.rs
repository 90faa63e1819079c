//! The tenant's indicators on this device: the addresses (and the domains'
//! addresses) the firewall drops or counts, the files and processes with a
//! blocked hash, stopped and quarantined; and the alerts a hit raises.
//!
//! Runs beside the check-in loop ([`Detector::run`]): it reads the
//! firewall's counters every few seconds and scans the configured paths
//! and the running processes on an interval, so that a hit is seen within
//! seconds whatever the long poll is waiting for.

use crate::firewall::{AddressRule, Nft};
use crate::hashes::Hashes;
use crate::processes::{self, Process};
use crate::quarantine::Quarantine;
use palisade_contract::indicator::{IndicatorAction, IndicatorType};
use palisade_device::client::DeviceClient;
use palisade_device::{DeviceIndicator, DeviceIndicators};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the firewall's counters are read.
const HIT_CHECK_EVERY: Duration = Duration::from_secs(2);
/// One alert per indicator in this time, however often it is hit.
const ALERT_EVERY: Duration = Duration::from_secs(600);
/// Files larger than this are not hashed.
pub const MAX_SCANNED_BYTES: u64 = 256 * 1024 * 1024;
/// How long a domain indicator's lookup may take; one that does not answer
/// in time blocks nothing this round, and is asked again the next.
const RESOLVE_WITHIN: Duration = Duration::from_secs(3);
/// Domain lookups in flight at once.
const LOOKUPS_AT_ONCE: usize = 16;

/// The indicators held, shared by the check-in loop (which replaces them)
/// and the detector (which enforces the file ones).
#[derive(Clone, Default)]
pub struct SharedIndicators(Arc<RwLock<DeviceIndicators>>);

impl SharedIndicators {
    pub fn new(indicators: DeviceIndicators) -> SharedIndicators {
        SharedIndicators(Arc::new(RwLock::new(indicators)))
    }

    /// The set held now.
    pub fn held(&self) -> DeviceIndicators {
        self.0.read().map(|i| i.clone()).unwrap_or_default()
    }

    pub fn replace(&self, indicators: DeviceIndicators) {
        let mut held = self.0.write().unwrap_or_else(|e| e.into_inner());
        *held = indicators;
    }
}

/// The address rules of `indicators` in force: each address indicator's
/// address, each domain's addresses as they resolve now; an Allowed
/// indicator of an address lifts the others of that address.
pub async fn address_rules(indicators: &DeviceIndicators) -> Vec<AddressRule> {
    // Every domain looked up at once, each within RESOLVE_WITHIN.
    let mut lookups = tokio::task::JoinSet::new();
    // Each lookup holds a blocking thread (getaddrinfo) even past its
    // timeout: a bounded number at a time, so that thousands of domain
    // indicators do not take the threads the scanner and actions need.
    let at_once = Arc::new(tokio::sync::Semaphore::new(LOOKUPS_AT_ONCE));
    for (index, indicator) in indicators.indicators.iter().enumerate() {
        if indicator.indicator_type == IndicatorType::DomainName {
            let domain = indicator.value.clone();
            let at_once = at_once.clone();
            lookups.spawn(async move {
                let _turn = at_once.acquire_owned().await;
                let found = tokio::time::timeout(
                    RESOLVE_WITHIN,
                    tokio::net::lookup_host((domain.as_str(), 0)),
                )
                .await;
                let addresses: Vec<IpAddr> = match found {
                    Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                    Ok(Err(error)) => {
                        tracing::debug!(%domain, %error, "indicator domain does not resolve");
                        vec![]
                    }
                    Err(_) => {
                        tracing::debug!(%domain, "indicator domain lookup timed out");
                        vec![]
                    }
                };
                (index, addresses)
            });
        }
    }
    let mut resolved: HashMap<usize, Vec<IpAddr>> = lookups.join_all().await.into_iter().collect();
    let mut rules = Vec::new();
    let mut allowed = Vec::new();
    for (index, indicator) in indicators.indicators.iter().enumerate() {
        let addresses: Vec<IpAddr> = match indicator.indicator_type {
            IndicatorType::IpAddress => indicator.value.parse().into_iter().collect(),
            IndicatorType::DomainName => resolved.remove(&index).unwrap_or_default(),
            _ => continue,
        };
        for address in addresses {
            if indicator.action == IndicatorAction::Allowed {
                allowed.push(address);
            } else {
                rules.push(AddressRule {
                    indicator_id: indicator.id.clone(),
                    address,
                    block: indicator.action.blocks(),
                });
            }
        }
    }
    rules.retain(|rule| !allowed.contains(&rule.address));
    rules.sort();
    rules.dedup();
    rules
}

/// What the file indicators say of a file with `hashes`: Allowed wins over
/// any other; else the first that names one of its hashes.
fn verdict<'a>(indicators: &'a DeviceIndicators, hashes: &Hashes) -> Option<&'a DeviceIndicator> {
    let names = |indicator: &DeviceIndicator| match indicator.indicator_type {
        IndicatorType::FileSha1 => indicator.value == hashes.sha1,
        IndicatorType::FileSha256 => indicator.value == hashes.sha256,
        IndicatorType::FileMd5 => indicator.value == hashes.md5,
        _ => false,
    };
    let matching: Vec<&DeviceIndicator> =
        indicators.indicators.iter().filter(|i| names(i)).collect();
    if matching
        .iter()
        .any(|i| i.action == IndicatorAction::Allowed)
    {
        return None;
    }
    matching.into_iter().next()
}

/// What the detector is told at start.
pub struct DetectorConfig {
    pub scan_paths: Vec<PathBuf>,
    pub scan_every: Duration,
    pub quarantine: Quarantine,
}

/// A file (or a process's executable) that met a file indicator, and what
/// was done about it.
struct FileHit {
    path: PathBuf,
    hashes: Hashes,
    indicator: DeviceIndicator,
    pid: Option<i32>,
    done: Vec<String>,
}

/// The file side of the detector: hashes files and processes' executables
/// (blocking work, run off the async threads) and stops and quarantines
/// what a blocking indicator names.
struct Scanner {
    scan_paths: Vec<PathBuf>,
    quarantine: Quarantine,
    /// Hashes of files as last seen (path, size, modification time).
    hashed: HashMap<PathBuf, (u64, SystemTime, Hashes)>,
    /// Hashes of executables as last seen, by device and inode (size,
    /// modification time): each sweep reads only executables it has not.
    executables: HashMap<(u64, u64), (u64, SystemTime, Hashes)>,
}

impl Scanner {
    /// The hashes of `path`, from the cache while its size and time hold.
    fn hashes(&mut self, path: &Path) -> Option<Hashes> {
        let metadata = std::fs::symlink_metadata(path).ok()?;
        if !metadata.is_file() || metadata.len() > MAX_SCANNED_BYTES {
            return None;
        }
        let modified = metadata.modified().ok()?;
        if let Some((size, at, hashes)) = self.hashed.get(path) {
            if *size == metadata.len() && *at == modified {
                return Some(hashes.clone());
            }
        }
        let hashes = Hashes::of_regular_file(path, MAX_SCANNED_BYTES)?;
        self.hashed.insert(
            path.to_path_buf(),
            (metadata.len(), modified, hashes.clone()),
        );
        Some(hashes)
    }

    /// The hashes of the process's executable, from the cache while its
    /// inode, size and time hold.
    fn executable_hashes(&mut self, process: &Process) -> Option<Hashes> {
        use std::os::unix::fs::MetadataExt;
        let (mut file, metadata) = process.executable()?;
        if metadata.len() > MAX_SCANNED_BYTES {
            return None;
        }
        let key = (metadata.dev(), metadata.ino());
        let modified = metadata.modified().ok()?;
        if let Some((size, at, hashes)) = self.executables.get(&key) {
            if *size == metadata.len() && *at == modified {
                return Some(hashes.clone());
            }
        }
        let hashes = Hashes::of(&mut file).ok()?;
        self.executables
            .insert(key, (metadata.len(), modified, hashes.clone()));
        Some(hashes)
    }

    /// Scans the running processes' executables, then the configured paths.
    fn sweep(&mut self, held: &DeviceIndicators) -> Vec<FileHit> {
        let mut hits = Vec::new();
        let any_file = held.indicators.iter().any(|i| {
            matches!(
                i.indicator_type,
                IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::FileMd5
            )
        });
        if !any_file {
            return hits;
        }
        for pid in processes::ids() {
            let Some(process) = Process::open(pid) else {
                continue;
            };
            let Some(hashes) = self.executable_hashes(&process) else {
                continue;
            };
            let Some(indicator) = verdict(held, &hashes).cloned() else {
                continue;
            };
            let path = process.executable_path().unwrap_or_default();
            let mut done = Vec::new();
            if indicator.action.blocks() {
                match process.kill() {
                    Ok(()) => done.push(format!("process {pid} stopped")),
                    Err(error) => done.push(format!("process {pid} could not be stopped: {error}")),
                }
            }
            let mut hit = FileHit {
                path,
                hashes,
                indicator,
                pid: Some(pid),
                done,
            };
            self.remediate(&mut hit);
            hits.push(hit);
        }
        for root in self.scan_paths.clone() {
            for entry in walkdir::WalkDir::new(&root)
                .follow_links(false)
                .into_iter()
                .flatten()
            {
                if !entry.file_type().is_file() {
                    continue;
                }
                let path = entry.path().to_path_buf();
                let Some(hashes) = self.hashes(&path) else {
                    continue;
                };
                if let Some(indicator) = verdict(held, &hashes).cloned() {
                    let mut hit = FileHit {
                        path,
                        hashes,
                        indicator,
                        pid: None,
                        done: vec![],
                    };
                    self.remediate(&mut hit);
                    hits.push(hit);
                }
            }
        }
        hits
    }

    /// Quarantines the hit's file, for a blocking indicator.
    fn remediate(&mut self, hit: &mut FileHit) {
        if !hit.indicator.action.blocks() || !hit.path.is_absolute() {
            return;
        }
        let reason = json!({"indicatorId": hit.indicator.id, "action": hit.indicator.action, "title": hit.indicator.title});
        match self.quarantine.take(&hit.path, &hit.hashes, &reason) {
            Ok(kept) => {
                self.hashed.remove(&hit.path);
                hit.done
                    .push(format!("file quarantined as {}", kept.display()));
            }
            Err(error) => hit.done.push(format!("file not quarantined: {error}")),
        }
    }
}

/// Raises the alerts of hits and enforces the file indicators.
pub struct Detector {
    pub client: DeviceClient,
    pub nft: Nft,
    pub indicators: SharedIndicators,
    scan_every: Duration,
    /// Taken while a sweep runs on a blocking thread.
    scanner: Option<Scanner>,
    /// Counters as last read, by indicator id.
    counted: HashMap<String, u64>,
    /// When each indicator (or indicator and file) last raised an alert.
    alerted: HashMap<String, Instant>,
}

impl Detector {
    pub fn new(
        client: DeviceClient,
        nft: Nft,
        indicators: SharedIndicators,
        config: DetectorConfig,
    ) -> Detector {
        Detector {
            client,
            nft,
            indicators,
            scan_every: config.scan_every,
            scanner: Some(Scanner {
                scan_paths: config.scan_paths,
                quarantine: config.quarantine,
                hashed: HashMap::new(),
                executables: HashMap::new(),
            }),
            counted: HashMap::new(),
            alerted: HashMap::new(),
        }
    }

    pub async fn run(mut self) {
        let mut last_scan: Option<Instant> = None;
        let mut version = String::new();
        loop {
            let held = self.indicators.held();
            self.check_hits(&held).await;
            // A new set is scanned for at once.
            let due = last_scan.is_none_or(|at| at.elapsed() >= self.scan_every);
            if due || held.version != version {
                version = held.version.clone();
                self.scan(held).await;
                last_scan = Some(Instant::now());
            }
            tokio::time::sleep(HIT_CHECK_EVERY).await;
        }
    }

    /// Whether `key` may raise an alert now (one per [`ALERT_EVERY`]).
    fn may_alert(&mut self, key: &str) -> bool {
        let now = Instant::now();
        match self.alerted.get(key) {
            Some(at) if now.duration_since(*at) < ALERT_EVERY => false,
            _ => {
                self.alerted.insert(key.to_string(), now);
                true
            }
        }
    }

    async fn raise(&self, alert: Value) {
        match self.client.raise_alert(&alert).await {
            Ok(raised) => tracing::info!(alert = %raised.id, title = %raised.title, "alert raised"),
            Err(error) => tracing::warn!(%error, "could not raise an alert"),
        }
    }

    async fn check_hits(&mut self, held: &DeviceIndicators) {
        let counters = match self.nft.indicator_hits().await {
            Ok(counters) => counters,
            Err(error) => {
                tracing::debug!(%error, "indicator counters unreadable");
                return;
            }
        };
        for (id, packets) in counters {
            let before = self.counted.insert(id.clone(), packets).unwrap_or(0);
            // A table put back starts its counters afresh.
            if packets <= before && before != 0 {
                continue;
            }
            let Some(indicator) = held.indicators.iter().find(|i| i.id == id) else {
                continue;
            };
            if packets == 0 || !indicator.generate_alert || !self.may_alert(&id) {
                continue;
            }
            let blocked = indicator.action.blocks();
            let address = match indicator.indicator_type {
                IndicatorType::IpAddress => Some(indicator.value.clone()),
                _ => None,
            };
            let evidence = json!([{
                "entityType": if address.is_some() { "Ip" } else { "Url" },
                "ipAddress": address,
                "url": if address.is_none() { Some(indicator.value.clone()) } else { None },
                "detectionStatus": if blocked { "Blocked" } else { "Detected" },
            }]);
            self.raise(json!({
                "title": format!("{} connection to {} ({})", if blocked { "Blocked" } else { "Detected" }, indicator.value, indicator.title),
                "description": format!("Traffic to or from {} met indicator {} ({}: {}).", indicator.value, indicator.id, indicator.action, indicator.title),
                "severity": indicator.severity.as_str(),
                "category": "CommandAndControl",
                "detectionSource": "CustomerTI",
                "evidence": evidence,
            }))
            .await;
        }
    }

    /// Sweeps files and processes on a blocking thread, then raises the
    /// alerts of what it found.
    async fn scan(&mut self, held: DeviceIndicators) {
        let Some(mut scanner) = self.scanner.take() else {
            return;
        };
        let swept = tokio::task::spawn_blocking(move || {
            let hits = scanner.sweep(&held);
            (scanner, hits)
        })
        .await;
        let hits = match swept {
            Ok((scanner, hits)) => {
                self.scanner = Some(scanner);
                hits
            }
            Err(error) => {
                // The scanner is lost with the panicked sweep: scanning stops, the rest goes on.
                tracing::error!(%error, "the file scan failed; files are no longer scanned");
                return;
            }
        };
        for hit in hits {
            self.report(hit).await;
        }
    }

    /// Raises the alert of a file hit: each stop or quarantine, and a
    /// detection without them once per indicator and file in [`ALERT_EVERY`].
    async fn report(&mut self, hit: FileHit) {
        let FileHit {
            path,
            hashes,
            indicator,
            pid,
            done,
        } = hit;
        let blocks = indicator.action.blocks();
        tracing::warn!(file = %path.display(), indicator = %indicator.id, action = %indicator.action, "{}", done.join("; "));
        let key = format!("{}:{}", indicator.id, path.display());
        if !indicator.generate_alert || (!blocks && !self.may_alert(&key)) {
            return;
        }
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let folder = path.parent().map(|p| p.display().to_string());
        self.raise(json!({
            "title": format!("{} file {} ({})", if blocks { "Blocked" } else { "Detected" }, file_name.clone().unwrap_or_default(), indicator.title),
            "description": format!("{} matched indicator {} ({}: {}). {}", path.display(), indicator.id, indicator.action, indicator.title, done.join("; ")),
            "severity": indicator.severity.as_str(),
            "category": "Malware",
            "detectionSource": "CustomerTI",
            "evidence": [{
                "entityType": "File",
                "sha1": hashes.sha1, "sha256": hashes.sha256,
                "fileName": file_name, "filePath": folder,
                "processId": pid,
                "detectionStatus": if blocks { "Prevented" } else { "Detected" },
            }],
        }))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::indicator::IndicatorSeverity;

    fn indicator(
        id: &str,
        kind: IndicatorType,
        value: &str,
        action: IndicatorAction,
    ) -> DeviceIndicator {
        DeviceIndicator {
            id: id.into(),
            indicator_type: kind,
            value: value.into(),
            action,
            title: "t".into(),
            severity: IndicatorSeverity::High,
            generate_alert: true,
        }
    }

    #[test]
    fn allowed_wins_over_block_for_a_file_and_for_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"X5O!P%@AP").unwrap();
        let hashes = Hashes::of_path(&file).unwrap();
        let block = indicator(
            "1",
            IndicatorType::FileSha256,
            &hashes.sha256,
            IndicatorAction::Block,
        );
        let allow = indicator(
            "2",
            IndicatorType::FileMd5,
            &hashes.md5,
            IndicatorAction::Allowed,
        );
        let only_block = DeviceIndicators {
            version: "a".into(),
            indicators: vec![block.clone()],
        };
        assert_eq!(
            verdict(&only_block, &hashes).map(|i| i.id.as_str()),
            Some("1")
        );
        let both = DeviceIndicators {
            version: "b".into(),
            indicators: vec![block, allow],
        };
        assert!(verdict(&both, &hashes).is_none());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addresses = DeviceIndicators {
            version: "c".into(),
            indicators: vec![
                indicator(
                    "3",
                    IndicatorType::IpAddress,
                    "10.9.9.9",
                    IndicatorAction::Block,
                ),
                indicator(
                    "4",
                    IndicatorType::IpAddress,
                    "10.9.9.9",
                    IndicatorAction::Allowed,
                ),
                indicator(
                    "5",
                    IndicatorType::IpAddress,
                    "10.9.9.8",
                    IndicatorAction::Audit,
                ),
            ],
        };
        let rules = runtime.block_on(address_rules(&addresses));
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert_eq!(rules[0].indicator_id, "5");
        assert!(!rules[0].block);

        // More domains than lookups run at once: every one resolved.
        let domains = DeviceIndicators {
            version: "d".into(),
            indicators: (0..3 * LOOKUPS_AT_ONCE)
                .map(|n| {
                    indicator(
                        &format!("d{n}"),
                        IndicatorType::DomainName,
                        "localhost",
                        IndicatorAction::Block,
                    )
                })
                .collect(),
        };
        let rules = runtime.block_on(address_rules(&domains));
        let ids: std::collections::BTreeSet<&str> =
            rules.iter().map(|r| r.indicator_id.as_str()).collect();
        assert_eq!(ids.len(), 3 * LOOKUPS_AT_ONCE, "{rules:?}");
        assert!(rules.iter().all(|r| r.address.is_loopback() && r.block));
    }
}
