//! The tenant's indicators on this device: the addresses (and the domains'
//! addresses) the firewall drops or counts, the files and processes with a
//! blocked hash, stopped and quarantined; and the alerts a hit raises.
//!
//! Runs beside the check-in loop ([`Detector::run`]): it reads the
//! firewall's counters every few seconds and scans the configured paths
//! and the running processes on an interval, so that a hit is seen within
//! seconds whatever the long poll is waiting for.

use crate::firewall::{AddressRule, Nft};
use palisade_contract::indicator::{IndicatorAction, IndicatorType};
use palisade_device::client::DeviceClient;
use palisade_device::{DeviceIndicator, DeviceIndicators};
use serde_json::{json, Value};
use sha1::Digest;
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
const MAX_SCANNED_BYTES: u64 = 256 * 1024 * 1024;

/// The indicators held, shared by the check-in loop (which replaces them)
/// and the detector (which enforces the file ones).
pub type SharedIndicators = Arc<RwLock<DeviceIndicators>>;

/// The address rules of `indicators` in force: each address indicator's
/// address, each domain's addresses as they resolve now; an Allowed
/// indicator of an address lifts the others of that address.
pub async fn address_rules(indicators: &DeviceIndicators) -> Vec<AddressRule> {
    let mut rules = Vec::new();
    let mut allowed = Vec::new();
    for indicator in &indicators.indicators {
        let addresses: Vec<IpAddr> = match indicator.indicator_type {
            IndicatorType::IpAddress => indicator.value.parse().into_iter().collect(),
            IndicatorType::DomainName => {
                match tokio::net::lookup_host((indicator.value.as_str(), 0)).await {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(error) => {
                        tracing::debug!(domain = %indicator.value, %error, "indicator domain does not resolve");
                        vec![]
                    }
                }
            }
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

/// The hashes of one file, as the indicators name them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hashes {
    sha1: String,
    sha256: String,
    md5: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a file in one read through it.
fn hash_file(path: &Path) -> std::io::Result<Hashes> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let (mut sha1, mut sha256, mut md5) = (sha1::Sha1::new(), sha2::Sha256::new(), md5::Md5::new());
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        sha1.update(&buffer[..read]);
        sha256.update(&buffer[..read]);
        md5.update(&buffer[..read]);
    }
    Ok(Hashes {
        sha1: hex(&sha1.finalize()),
        sha256: hex(&sha256.finalize()),
        md5: hex(&md5.finalize()),
    })
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

/// Where quarantined files go: readable by root only.
pub struct Quarantine {
    dir: PathBuf,
}

impl Quarantine {
    pub fn open(dir: PathBuf) -> std::io::Result<Quarantine> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Quarantine { dir })
    }

    /// Moves `path` in (as `<sha256>`, owner-read-only) with a record of
    /// where it came from (`<sha256>.json`); returns where it is now.
    fn take(
        &self,
        path: &Path,
        hashes: &Hashes,
        indicator: &DeviceIndicator,
    ) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let kept = self.dir.join(&hashes.sha256);
        if std::fs::rename(path, &kept).is_err() {
            // Another file system: copy, then remove the original.
            std::fs::copy(path, &kept)?;
            std::fs::remove_file(path)?;
        }
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o400))?;
        let record = json!({
            "originalPath": path.display().to_string(),
            "sha1": hashes.sha1, "sha256": hashes.sha256, "md5": hashes.md5,
            "indicatorId": indicator.id,
            "quarantinedAt": palisade_contract::Timestamp::now(),
        });
        std::fs::write(
            self.dir.join(format!("{}.json", hashes.sha256)),
            record.to_string(),
        )?;
        Ok(kept)
    }
}

/// What the detector is told at start.
pub struct DetectorConfig {
    pub scan_paths: Vec<PathBuf>,
    pub scan_every: Duration,
    pub quarantine: Quarantine,
}

/// Raises the alerts of hits and enforces the file indicators.
pub struct Detector {
    pub client: DeviceClient,
    pub nft: Nft,
    pub indicators: SharedIndicators,
    pub config: DetectorConfig,
    /// Counters as last read, by indicator id.
    counted: HashMap<String, u64>,
    /// When each indicator last raised an alert.
    alerted: HashMap<String, Instant>,
    /// Hashes of files as last seen (path, size, modification time).
    hashed: HashMap<PathBuf, (u64, SystemTime, Hashes)>,
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
            config,
            counted: HashMap::new(),
            alerted: HashMap::new(),
            hashed: HashMap::new(),
        }
    }

    fn held(&self) -> DeviceIndicators {
        self.indicators
            .read()
            .map(|i| i.clone())
            .unwrap_or_default()
    }

    pub async fn run(mut self) {
        let mut last_scan: Option<Instant> = None;
        let mut version = String::new();
        loop {
            let held = self.held();
            self.check_hits(&held).await;
            // A new set is scanned for at once.
            let due = last_scan.is_none_or(|at| at.elapsed() >= self.config.scan_every);
            if due || held.version != version {
                version = held.version.clone();
                self.scan(&held).await;
                last_scan = Some(Instant::now());
            }
            tokio::time::sleep(HIT_CHECK_EVERY).await;
        }
    }

    /// Whether `indicator` may raise an alert now (one per [`ALERT_EVERY`]).
    fn may_alert(&mut self, indicator: &str) -> bool {
        let now = Instant::now();
        match self.alerted.get(indicator) {
            Some(at) if now.duration_since(*at) < ALERT_EVERY => false,
            _ => {
                self.alerted.insert(indicator.to_string(), now);
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
            if packets == 0 || !self.may_alert(&id) {
                continue;
            }
            let Some(indicator) = held.indicators.iter().find(|i| i.id == id) else {
                continue;
            };
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

    /// The hashes of `path`, from the cache while its size and time hold.
    fn hashes(&mut self, path: &Path) -> Option<Hashes> {
        let metadata = std::fs::metadata(path).ok()?;
        if !metadata.is_file() || metadata.len() > MAX_SCANNED_BYTES {
            return None;
        }
        let modified = metadata.modified().ok()?;
        if let Some((size, at, hashes)) = self.hashed.get(path) {
            if *size == metadata.len() && *at == modified {
                return Some(hashes.clone());
            }
        }
        let hashes = hash_file(path).ok()?;
        self.hashed.insert(
            path.to_path_buf(),
            (metadata.len(), modified, hashes.clone()),
        );
        Some(hashes)
    }

    /// Scans the running processes' executables, then the configured paths.
    async fn scan(&mut self, held: &DeviceIndicators) {
        let any_file = held.indicators.iter().any(|i| {
            matches!(
                i.indicator_type,
                IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::FileMd5
            )
        });
        if !any_file {
            return;
        }
        for (pid, exe) in processes() {
            let Some(hashes) = self.hashes(&exe) else {
                continue;
            };
            if let Some(indicator) = verdict(held, &hashes).cloned() {
                self.enforce(&exe, &hashes, &indicator, Some(pid)).await;
            }
        }
        let paths = self.config.scan_paths.clone();
        for root in paths {
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
                    self.enforce(&path, &hashes, &indicator, None).await;
                }
            }
        }
    }

    /// Stops `pid` (if it runs the file) and quarantines the file, for a
    /// blocking indicator; raises the alert either way.
    async fn enforce(
        &mut self,
        path: &Path,
        hashes: &Hashes,
        indicator: &DeviceIndicator,
        pid: Option<i32>,
    ) {
        let blocks = indicator.action.blocks();
        let mut done = Vec::new();
        if blocks {
            if let Some(pid) = pid {
                match nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                ) {
                    Ok(()) => done.push(format!("process {pid} stopped")),
                    Err(error) => done.push(format!("process {pid} could not be stopped: {error}")),
                }
            }
            match self.config.quarantine.take(path, hashes, indicator) {
                Ok(kept) => {
                    self.hashed.remove(path);
                    done.push(format!("file quarantined as {}", kept.display()));
                }
                Err(error) => done.push(format!("file could not be quarantined: {error}")),
            }
        }
        let key = format!("{}:{}", indicator.id, path.display());
        if !blocks && !self.may_alert(&key) {
            return;
        }
        tracing::warn!(file = %path.display(), indicator = %indicator.id, action = %indicator.action, "{}", done.join("; "));
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

/// Every process's id and executable (those whose link can be read).
fn processes() -> Vec<(i32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let own = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            (pid != own).then_some((pid, exe))
        })
        .collect()
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
        let hashes = hash_file(&file).unwrap();
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
    }

    #[test]
    fn a_quarantined_file_is_moved_with_a_record_of_its_origin() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("evil.bin");
        std::fs::write(&file, b"payload").unwrap();
        let hashes = hash_file(&file).unwrap();
        let quarantine = Quarantine::open(dir.path().join("q")).unwrap();
        let block = indicator(
            "9",
            IndicatorType::FileSha1,
            &hashes.sha1,
            IndicatorAction::Block,
        );
        let kept = quarantine.take(&file, &hashes, &block).unwrap();
        assert!(!file.exists());
        assert_eq!(std::fs::read(&kept).unwrap(), b"payload");
        let mode = std::fs::metadata(dir.path().join("q"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let record: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("q").join(format!("{}.json", hashes.sha256)))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record["originalPath"], file.display().to_string());
        assert_eq!(record["indicatorId"], "9");
    }
}
