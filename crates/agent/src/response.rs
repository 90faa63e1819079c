//! The machine actions that act on files and processes: StopAndQuarantineFile
//! (every process running a SHA-1 stopped, every file with it in the search
//! paths quarantined) and RunAntiVirusScan (ClamAV's `clamscan`, what it
//! finds quarantined). Both are blocking work: callers run them on a
//! blocking thread.

use crate::hashes::Hashes;
use crate::processes::{self, Process};
use crate::quarantine::Quarantine;
use palisade_contract::requests::ScanType;
use palisade_device::hresult::{ERROR_FILE_NOT_FOUND, ERROR_TIMEOUT};
use palisade_device::ActionResult;
use serde_json::{json, Value};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Quick scans look by default besides the agent's own scan paths:
/// where downloads, drops and user files land.
pub const QUICK_SCAN_PLACES: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/opt"];
/// File systems a Full scan reads (the local ones; not proc, sysfs,
/// cgroups, network shares).
const LOCAL_FILE_SYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat", "ntfs",
    "ntfs3", "zfs", "tmpfs", "overlay",
];

/// A file the action quarantined, and why.
#[derive(Debug, Clone)]
pub struct Remediated {
    pub path: PathBuf,
    pub hashes: Hashes,
    /// The quarantine's copy.
    pub kept: PathBuf,
    /// The antivirus signature that found it, if a scan did.
    pub threat: Option<String>,
}

/// What a file action did: its outcome for the server, and each file it
/// quarantined (each raises an alert).
pub struct Outcome {
    pub result: ActionResult,
    pub remediated: Vec<Remediated>,
}

fn failed(code: i64, detail: String) -> ActionResult {
    ActionResult {
        error_h_result: Some(code),
        ..ActionResult::failed(detail)
    }
}

/// Stops every process whose executable has `sha1` and quarantines that
/// executable and every file with it under `search`.
pub fn stop_and_quarantine(sha1: &str, search: &[PathBuf], quarantine: &Quarantine) -> Outcome {
    let sha1 = sha1.to_ascii_lowercase();
    let mut done = Vec::new();
    let mut problems = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    for pid in processes::ids() {
        let Some(process) = Process::open(pid) else {
            continue;
        };
        if process.executable_hashes().is_none_or(|h| h.sha1 != sha1) {
            continue;
        }
        match process.kill() {
            Ok(()) => done.push(format!("process {pid} stopped")),
            Err(error) => problems.push(format!("process {pid} could not be stopped: {error}")),
        }
        candidates.extend(process.executable_path());
    }
    for root in search {
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            if entry.file_type().is_file() {
                candidates.push(entry.into_path());
            }
        }
    }
    candidates.sort();
    candidates.dedup();
    let mut remediated = Vec::new();
    let reason = json!({"action": "StopAndQuarantineFile", "sha1": sha1});
    for path in candidates {
        let Some(hashes) = hash_if_small(&path).filter(|h| h.sha1 == sha1) else {
            continue;
        };
        match quarantine.take(&path, &hashes, &reason) {
            Ok(kept) => {
                done.push(format!(
                    "{} quarantined as {}",
                    path.display(),
                    kept.display()
                ));
                remediated.push(Remediated {
                    path,
                    hashes,
                    kept,
                    threat: None,
                });
            }
            Err(error) => problems.push(format!("not quarantined: {error}")),
        }
    }
    let searched = search
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let result = match (done.is_empty(), problems.is_empty()) {
        (true, true) => failed(
            ERROR_FILE_NOT_FOUND,
            format!(
                "no running process and no file in the search paths ({searched}) has SHA-1 {sha1}"
            ),
        ),
        (true, false) => ActionResult::failed(problems.join("; ")),
        (false, _) => ActionResult::succeeded(
            done.into_iter()
                .chain(problems)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    Outcome { result, remediated }
}

fn hash_if_small(path: &Path) -> Option<Hashes> {
    Hashes::of_regular_file(path, crate::enforcement::MAX_SCANNED_BYTES)
}

/// How the agent runs ClamAV.
#[derive(Debug, Clone)]
pub struct Antivirus {
    /// The `clamscan` binary.
    pub clamscan: PathBuf,
    /// A signature database directory in place of ClamAV's own.
    pub database: Option<PathBuf>,
    /// Where Quick scans look: the agent's scan paths and the usual drop
    /// places ([`QUICK_SCAN_PLACES`], or what the operator set instead).
    pub quick_places: Vec<PathBuf>,
    pub quick_within: Duration,
    pub full_within: Duration,
}

/// The places a scan of `scan_type` reads: Quick, `quick_places`; Full,
/// every local file system's mount point (each read without crossing into
/// others, so that none is read twice and no network share is read at all).
pub fn scan_places(scan_type: ScanType, quick_places: &[PathBuf], mounts: &str) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = match scan_type {
        ScanType::Quick => quick_places.to_vec(),
        ScanType::Full => mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (point, kind) = (fields.nth(1)?, fields.next()?);
                LOCAL_FILE_SYSTEMS
                    .contains(&kind)
                    // /proc/mounts escapes spaces as \040.
                    .then(|| PathBuf::from(point.replace("\\040", " ")))
            })
            .collect(),
    };
    places.sort();
    places.dedup();
    places
}

/// The files `clamscan` reported infected, with their signature: its lines
/// `<path>: <signature> FOUND`.
pub fn infected(output: &str) -> Vec<(PathBuf, String)> {
    output
        .lines()
        .filter_map(|line| {
            let (path, found) = line.strip_suffix(" FOUND")?.rsplit_once(": ")?;
            // A name with a line break in it cannot be told from two lines.
            (path.starts_with('/') && !path.contains(char::is_control))
                .then(|| (PathBuf::from(path), found.to_string()))
        })
        .collect()
}

impl Antivirus {
    /// Scans, quarantines each file found, and says what it did.
    pub fn scan(&self, scan_type: ScanType, quarantine: &Quarantine) -> Outcome {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let places: Vec<PathBuf> = scan_places(scan_type, &self.quick_places, &mounts)
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        let within = match scan_type {
            ScanType::Quick => self.quick_within,
            ScanType::Full => self.full_within,
        };
        let mut command = Command::new(&self.clamscan);
        command
            .args(["--recursive", "--infected", "--no-summary", "--cross-fs=no"])
            .arg(format!(
                "--exclude-dir=^{}",
                regex_escape(&quarantine.dir().display().to_string())
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(database) = &self.database {
            command.arg(format!("--database={}", database.display()));
        }
        command.arg("--").args(&places);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return Outcome {
                    result: failed(
                        ERROR_FILE_NOT_FOUND,
                        format!(
                            "no antivirus scanner: {} cannot run ({error}); install ClamAV (apt-get install clamav)",
                            self.clamscan.display()
                        ),
                    ),
                    remediated: vec![],
                }
            }
        };
        let output = match wait_within(child, within) {
            Ok(output) => output,
            Err(detail) => {
                return Outcome {
                    result: failed(ERROR_TIMEOUT, detail),
                    remediated: vec![],
                }
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let found = infected(&stdout);
        // clamscan: 0 clean, 1 found, 2 errors (which may come with findings).
        if output.status.code() == Some(2) && found.is_empty() {
            let last: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Outcome {
                result: ActionResult::failed(format!(
                    "the scan failed: {}",
                    last.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )),
                remediated: vec![],
            };
        }
        let mut remediated = Vec::new();
        let mut notes = Vec::new();
        for (path, signature) in found {
            let reason = json!({"action": "RunAntiVirusScan", "threat": signature});
            let taken = self.confirm(&path).and_then(|hashes| {
                quarantine
                    .take(&path, &hashes, &reason)
                    .map(|kept| (hashes, kept))
                    .map_err(|e| e.to_string())
            });
            match taken {
                Ok((hashes, kept)) => {
                    notes.push(format!("{} ({signature}) quarantined", path.display()));
                    remediated.push(Remediated {
                        path,
                        hashes,
                        kept,
                        threat: Some(signature),
                    });
                }
                Err(error) => notes.push(format!(
                    "{} ({signature}) not quarantined: {error}",
                    path.display()
                )),
            }
        }
        let scanned = places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let detail = if notes.is_empty() {
            format!("{scan_type} scan of {scanned}: no threats found")
        } else {
            format!("{scan_type} scan of {scanned}: {}", notes.join("; "))
        };
        Outcome {
            result: ActionResult::succeeded(detail),
            remediated,
        }
    }
}

impl Antivirus {
    /// Scans the file at `path` again, through a descriptor opened without
    /// following links, and answers its hashes if the scanner finds it
    /// infected once more: what is quarantined is what was judged, whatever
    /// a name in the first scan's output said (a name can hold a newline)
    /// or became since.
    fn confirm(&self, path: &Path) -> Result<Hashes, String> {
        let (mut file, stat) = Quarantine::open_judged(path).map_err(|e| e.to_string())?;
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > crate::enforcement::MAX_SCANNED_BYTES {
            return Err("too large to judge".into());
        }
        let stdin = file.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.clamscan);
        command
            .args(["--no-summary", "--infected"])
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(database) = &self.database {
            command.arg(format!("--database={}", database.display()));
        }
        let child = command.arg("-").spawn().map_err(|e| e.to_string())?;
        let second = wait_within(child, self.quick_within)?;
        // clamscan: 1, found.
        if second.status.code() != Some(1) {
            return Err("not found again on a second look".into());
        }
        // The scanner read through the shared descriptor: hash from the start.
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        Hashes::of(&mut file).map_err(|e| e.to_string())
    }
}

/// `text` matched literally in clamscan's (POSIX extended) patterns.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\^$.|?*+()[]{}".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Reads `pipe` to its end on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        text
    })
}

/// Waits for `child` at most `within`; past that, kills it.
fn wait_within(
    mut child: std::process::Child,
    within: Duration,
) -> Result<std::process::Output, String> {
    let started = Instant::now();
    // Output is read while waiting, so that a full pipe does not stall it.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(std::process::Output {
                    status,
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                })
            }
            Ok(None) if started.elapsed() < within => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the scan did not end within {} seconds and was stopped",
                    within.as_secs()
                ));
            }
            Err(error) => return Err(format!("waiting for the scanner: {error}")),
        }
    }
}

/// The alert of a file a scan found as `threat` and quarantined, with the
/// file's evidence.
pub fn scan_alert(remediated: &Remediated, threat: &str) -> Value {
    let file_name = remediated
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let folder = remediated.path.parent().map(|p| p.display().to_string());
    json!({
        "title": format!("'{threat}' malware was detected and quarantined"),
        "description": format!(
            "An antivirus scan found {threat} in {} and quarantined it as {}.",
            remediated.path.display(),
            remediated.kept.display()
        ),
        "severity": "Medium",
        "category": "Malware",
        "detectionSource": "Antivirus",
        "threatName": threat,
        "evidence": [{
            "entityType": "File",
            "sha1": remediated.hashes.sha1, "sha256": remediated.hashes.sha256,
            "fileName": file_name, "filePath": folder,
            "detectionStatus": "Prevented",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_scans_the_drop_places_and_full_every_local_file_system() {
        let mounts = "proc /proc proc rw 0 0\n\
                      /dev/vda1 / ext4 rw 0 0\n\
                      tmpfs /dev/shm tmpfs rw 0 0\n\
                      server:/export /mnt/share nfs4 rw 0 0\n\
                      /dev/vdb1 /srv/my\\040data xfs rw 0 0\n\
                      sysfs /sys sysfs rw 0 0\n";
        let full = scan_places(ScanType::Full, &[], mounts);
        assert_eq!(
            full,
            ["/", "/dev/shm", "/srv/my data"]
                .map(PathBuf::from)
                .to_vec()
        );
        let quick = scan_places(ScanType::Quick, &[PathBuf::from("/srv/drop")], mounts);
        assert_eq!(quick, vec![PathBuf::from("/srv/drop")]);
    }

    #[test]
    fn clamscan_findings_are_read_from_its_found_lines() {
        let output = "/tmp/a b: file.txt: Eicar-Test-Signature FOUND\n\
                      /tmp/ok: OK\n\
                      /home/x/evil: Palisade.Test.Sig.UNOFFICIAL FOUND\n";
        assert_eq!(
            infected(output),
            vec![
                (
                    PathBuf::from("/tmp/a b: file.txt"),
                    "Eicar-Test-Signature".to_string()
                ),
                (
                    PathBuf::from("/home/x/evil"),
                    "Palisade.Test.Sig.UNOFFICIAL".to_string()
                ),
            ]
        );
        assert_eq!(regex_escape("/var/lib/a.b"), "/var/lib/a\\.b");
    }

    #[test]
    fn stop_and_quarantine_takes_every_copy_in_the_search_paths_or_fails_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let search = dir.path().join("search");
        std::fs::create_dir_all(search.join("deep")).unwrap();
        std::fs::write(search.join("one"), b"bad bytes").unwrap();
        std::fs::write(search.join("deep").join("two"), b"bad bytes").unwrap();
        std::fs::write(search.join("other"), b"fine bytes").unwrap();
        let sha1 = Hashes::of_path(&search.join("one")).unwrap().sha1;
        let quarantine = Quarantine::open(dir.path().join("q")).unwrap();
        let outcome = stop_and_quarantine(
            &sha1.to_uppercase(),
            std::slice::from_ref(&search),
            &quarantine,
        );
        assert_eq!(
            outcome.result.status,
            palisade_contract::ActionStatus::Succeeded,
            "{:?}",
            outcome.result
        );
        assert_eq!(outcome.remediated.len(), 2);
        assert!(!search.join("one").exists() && !search.join("deep").join("two").exists());
        assert!(search.join("other").exists());
        let again = stop_and_quarantine(&sha1, &[search], &quarantine);
        assert_eq!(again.result.status, palisade_contract::ActionStatus::Failed);
        assert_eq!(again.result.error_h_result, Some(ERROR_FILE_NOT_FOUND));
        assert!(again.result.detail.unwrap().contains(&sha1));
    }
}
