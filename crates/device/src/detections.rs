//! A catalogue of realistic detections (titles, categories, severities,
//! MITRE techniques and the evidence each names), from which the simulated
//! fleet's alerts and the demo tenant's are made.

use palisade_contract::{Machine, Timestamp};
use rand::Rng;
use serde_json::{json, Value};

/// What a detection's evidence is about.
#[derive(Clone, Copy)]
enum Evidence {
    File,
    Process,
    Ip,
    Url,
    User,
}

struct Detection {
    title: &'static str,
    category: &'static str,
    severity: &'static str,
    source: &'static str,
    techniques: &'static [&'static str],
    evidence: &'static [Evidence],
    threat: Option<&'static str>,
}

const DETECTIONS: &[Detection] = &[
    Detection {
        title: "Suspicious PowerShell command line",
        category: "Execution",
        severity: "Medium",
        source: "WindowsDefenderAtp",
        techniques: &["T1059.001"],
        evidence: &[Evidence::Process, Evidence::User],
        threat: None,
    },
    Detection {
        title: "'Mimikatz' credential theft tool",
        category: "CredentialAccess",
        severity: "High",
        source: "WindowsDefenderAv",
        techniques: &["T1003.001"],
        evidence: &[Evidence::File, Evidence::Process],
        threat: Some("Mimikatz"),
    },
    Detection {
        title: "Connection to a known command-and-control server",
        category: "CommandAndControl",
        severity: "High",
        source: "WindowsDefenderAtp",
        techniques: &["T1071"],
        evidence: &[Evidence::Ip, Evidence::Process],
        threat: None,
    },
    Detection {
        title: "Ransomware behavior detected in the file system",
        category: "Ransomware",
        severity: "High",
        source: "WindowsDefenderAv",
        techniques: &["T1486"],
        evidence: &[Evidence::File, Evidence::Process],
        threat: Some("Ransom:Win32/Lockbit"),
    },
    Detection {
        title: "Suspicious scheduled task created",
        category: "Persistence",
        severity: "Medium",
        source: "WindowsDefenderAtp",
        techniques: &["T1053.005"],
        evidence: &[Evidence::Process],
        threat: None,
    },
    Detection {
        title: "Phishing URL opened in a browser",
        category: "InitialAccess",
        severity: "Medium",
        source: "WindowsDefenderSmartScreen",
        techniques: &["T1566.002"],
        evidence: &[Evidence::Url, Evidence::User],
        threat: None,
    },
    Detection {
        title: "Potentially unwanted application detected",
        category: "Malware",
        severity: "Low",
        source: "WindowsDefenderAv",
        techniques: &[],
        evidence: &[Evidence::File],
        threat: Some("PUA:Win32/Presenoker"),
    },
    Detection {
        title: "Unusual sign-in to a server with a service account",
        category: "LateralMovement",
        severity: "Medium",
        source: "WindowsDefenderAtp",
        techniques: &["T1078", "T1021"],
        evidence: &[Evidence::User, Evidence::Ip],
        threat: None,
    },
    Detection {
        title: "Reverse shell spawned by a web server process",
        category: "Execution",
        severity: "High",
        source: "WindowsDefenderAtp",
        techniques: &["T1059.004"],
        evidence: &[Evidence::Process, Evidence::Ip],
        threat: None,
    },
    Detection {
        title: "Security tool tampering attempt",
        category: "DefenseEvasion",
        severity: "Medium",
        source: "WindowsDefenderAtp",
        techniques: &["T1562.001"],
        evidence: &[Evidence::Process, Evidence::User],
        threat: None,
    },
    Detection {
        title: "EICAR test file detected",
        category: "Malware",
        severity: "Informational",
        source: "WindowsDefenderAv",
        techniques: &[],
        evidence: &[Evidence::File],
        threat: Some("Virus:DOS/EICAR_Test_File"),
    },
];

fn hex(rng: &mut impl Rng, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn evidence(kind: Evidence, target: &Target, rng: &mut impl Rng, at: Timestamp) -> Value {
    let windows = target.windows;
    let (file, folder) = if windows {
        ("payload.exe", "C:\\Users\\Public\\Downloads")
    } else {
        ("payload", "/tmp")
    };
    let user = target
        .computer_dns_name
        .split('.')
        .next()
        .unwrap_or("user")
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    match kind {
        Evidence::File => json!({
            "entityType": "File", "evidenceCreationTime": at,
            "sha1": hex(rng, 20), "sha256": hex(rng, 32),
            "fileName": file, "filePath": folder, "detectionStatus": "Detected",
        }),
        Evidence::Process => json!({
            "entityType": "Process", "evidenceCreationTime": at,
            "sha1": hex(rng, 20), "sha256": hex(rng, 32),
            "fileName": if windows { "powershell.exe" } else { "bash" },
            "filePath": if windows { "C:\\Windows\\System32\\WindowsPowerShell\\v1.0" } else { "/usr/bin" },
            "processId": rng.random_range(1_000..60_000),
            "processCommandLine": if windows { "powershell.exe -nop -w hidden -enc SQBFAFgA" } else { "bash -i" },
            "processCreationTime": at,
            "parentProcessId": rng.random_range(500..1_000),
            "parentProcessFileName": if windows { "explorer.exe" } else { "sshd" },
            "detectionStatus": "Detected",
        }),
        Evidence::Ip => json!({
            "entityType": "Ip", "evidenceCreationTime": at,
            "ipAddress": format!("203.0.113.{}", rng.random_range(1..255)),
        }),
        Evidence::Url => json!({
            "entityType": "Url", "evidenceCreationTime": at,
            "url": format!("https://login-contoso-{}.example/verify", rng.random_range(10..99)),
        }),
        Evidence::User => json!({
            "entityType": "User", "evidenceCreationTime": at,
            "accountName": user, "domainName": "CONTOSO",
            "userPrincipalName": format!("{user}@contoso.example"),
        }),
    }
}

/// The machine a detection is on, as much as it needs to know.
pub struct Target {
    pub machine_id: String,
    pub computer_dns_name: String,
    pub windows: bool,
}

impl Target {
    pub fn of(machine: &Machine) -> Target {
        Target {
            machine_id: machine.id.clone(),
            computer_dns_name: machine.computer_dns_name.clone(),
            windows: machine.os_platform.is_windows(),
        }
    }
}

/// A detection from the catalogue, drawn by `rng`, on `target` at `at`:
/// what a device says of an alert it raises (`POST /device/v1/alerts`).
pub fn random_detection(rng: &mut impl Rng, target: &Target, at: Timestamp) -> Value {
    let detection = &DETECTIONS[rng.random_range(0..DETECTIONS.len())];
    let evidence: Vec<Value> = detection
        .evidence
        .iter()
        .map(|kind| evidence(*kind, target, rng, at))
        .collect();
    json!({
        "title": detection.title,
        "description": format!("{} on {}.", detection.title, target.computer_dns_name),
        "severity": detection.severity,
        "category": detection.category,
        "detectionSource": detection.source,
        "detectorId": hex(rng, 16),
        "threatFamilyName": detection.threat.map(|t| t.split(['/', ':']).next_back().unwrap_or(t)),
        "threatName": detection.threat,
        "mitreTechniques": detection.techniques,
        "firstEventTime": at.plus_seconds(-90),
        "lastEventTime": at.plus_seconds(-30),
        "evidence": evidence,
    })
}

/// A partial MDE alert of a [`random_detection`] on its machine, created
/// at `at` (what the control plane and seed documents take).
pub fn random_alert(rng: &mut impl Rng, target: &Target, at: Timestamp) -> Value {
    let mut alert = random_detection(rng, target, at);
    alert["machineId"] = target.machine_id.clone().into();
    alert["alertCreationTime"] = json!(at);
    alert["lastUpdateTime"] = json!(at);
    alert
}
