//! The demo tenant: a realistic fleet, with alerts and indicators, to try the API on (`palisade serve --demo`),
//! also used by the benchmark to build large fleets.

use palisade_contract::control::{IsoDuration, NewOutcomeRule, OutcomeMatch, OutcomeStep};
use palisade_contract::machine::{IpAddress, VmMetadata};
use palisade_contract::seed::{SeedDeviceGroup, TenantDocument};
use palisade_contract::ActionStatus;
use palisade_contract::{
    DeviceValue, ExposureLevel, HealthStatus, Machine, OnboardingStatus, OsPlatform, RiskScore,
    Timestamp,
};
use palisade_device::detections::{random_alert, Target};
use palisade_domain::caller::DEFAULT_RETENTION_DAYS;
use palisade_domain::{DeviceGroupAccess, Palisade, Role};
use palisade_identity::admin::{Admin, Administrator, SignInSettings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

pub const DEMO_TENANT_ID: &str = "6a1f4c3e-2b7d-4e8f-9a0b-1c2d3e4f5a6b";
/// Machines in the demo fleet.
pub const DEMO_FLEET_SIZE: usize = 400;

pub const DEMO_GROUPS: [(i64, &str); 3] = [(1, "Workstations"), (2, "Servers"), (3, "Finance")];

/// One kind of machine in the fleet: platform, OS release/build, agent version, share.
struct Profile {
    platform: OsPlatform,
    version: &'static str,
    build: Option<i64>,
    agent: &'static str,
    weight: u32,
}

const PROFILES: &[Profile] = &[
    // Windows 10 before 1703: too old to isolate or offboard.
    p(
        OsPlatform::Windows10,
        "1607",
        Some(14393),
        "10.3720.14393.2457",
        4,
    ),
    p(
        OsPlatform::Windows10,
        "1703",
        Some(15063),
        "10.4850.15063.1418",
        3,
    ),
    p(
        OsPlatform::Windows10,
        "1709",
        Some(16299),
        "10.5850.16299.1747",
        3,
    ),
    p(
        OsPlatform::Windows10,
        "21H2",
        Some(19044),
        "10.8470.19041.2788",
        14,
    ),
    p(
        OsPlatform::Windows10,
        "22H2",
        Some(19045),
        "10.8760.19045.4412",
        16,
    ),
    p(
        OsPlatform::Windows11,
        "22H2",
        Some(22621),
        "10.8760.22621.3447",
        10,
    ),
    p(
        OsPlatform::Windows11,
        "23H2",
        Some(22631),
        "10.8760.22631.3593",
        12,
    ),
    p(
        OsPlatform::Windows11,
        "24H2",
        Some(26100),
        "10.8760.26100.1150",
        6,
    ),
    p(
        OsPlatform::WindowsServer2012R2,
        "6.3",
        Some(9600),
        "10.8210.9600.21620",
        1,
    ),
    // Server 2016: with the old sensor (no offboarding by API) and with the unified agent.
    p(
        OsPlatform::WindowsServer2016,
        "1607",
        Some(14393),
        "10.3720.14393.4046",
        2,
    ),
    p(
        OsPlatform::WindowsServer2016,
        "1607",
        Some(14393),
        "10.8210.14393.6343",
        3,
    ),
    p(
        OsPlatform::WindowsServer2019,
        "1809",
        Some(17763),
        "10.8560.17763.5820",
        6,
    ),
    p(
        OsPlatform::WindowsServer2022,
        "21H2",
        Some(20348),
        "10.8760.20348.2461",
        6,
    ),
    p(OsPlatform::MacOs, "14.4", None, "101.24042.0008", 5),
    p(OsPlatform::MacOs, "12.6", None, "101.9.6", 1),
    p(OsPlatform::Linux, "22.04", None, "101.24052.0002", 8),
];

const fn p(
    platform: OsPlatform,
    version: &'static str,
    build: Option<i64>,
    agent: &'static str,
    weight: u32,
) -> Profile {
    Profile {
        platform,
        version,
        build,
        agent,
        weight,
    }
}

const TAGS: [&str; 6] = ["VIP", "Prod", "Kiosk", "Finance", "Pilot ring", "Legacy"];

fn pick_profile(rng: &mut StdRng) -> &'static Profile {
    let total: u32 = PROFILES.iter().map(|p| p.weight).sum();
    let mut roll = rng.random_range(0..total);
    for profile in PROFILES {
        if roll < profile.weight {
            return profile;
        }
        roll -= profile.weight;
    }
    &PROFILES[0]
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// `count` machines, the same ones for the same `seed`, last seen around `now`.
pub fn fleet(count: usize, seed: u64, now: Timestamp) -> Vec<Machine> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|n| machine(&mut rng, n, now)).collect()
}

fn machine(rng: &mut StdRng, n: usize, now: Timestamp) -> Machine {
    let profile = pick_profile(rng);
    let server = matches!(
        profile.platform,
        OsPlatform::WindowsServer2012R2
            | OsPlatform::WindowsServer2016
            | OsPlatform::WindowsServer2019
            | OsPlatform::WindowsServer2022
    );
    let kind = match profile.platform {
        _ if server => "srv",
        OsPlatform::MacOs => "mac",
        OsPlatform::Linux => "lnx",
        _ => "desktop",
    };
    // Most machines reported today; some weeks ago; a few are past retention.
    let days_ago = match rng.random_range(0..100) {
        0..=79 => 0,
        80..=89 => rng.random_range(1..30),
        90..=94 => rng.random_range(30..170),
        _ => rng.random_range(DEFAULT_RETENTION_DAYS + 1..400),
    };
    let last_seen = now
        .minus_days(days_ago)
        .plus_seconds(-rng.random_range(0..86_400));
    let first_seen = last_seen.minus_days(rng.random_range(10..700));
    let ip = format!(
        "10.{}.{}.{}",
        rng.random_range(0..4),
        rng.random_range(0..255),
        rng.random_range(1..255)
    );
    let mac: String = (0..6)
        .map(|_| format!("{:02X}", rng.random::<u8>()))
        .collect();
    let group = match rng.random_range(0..10) {
        0 => 0,
        1 => 3,
        _ if server => 2,
        _ => 1,
    };
    let mut tags = Vec::new();
    for tag in TAGS {
        if rng.random_range(0..8) == 0 {
            tags.push(tag.to_string());
        }
    }
    let id_bytes: [u8; 20] = rng.random();
    let is_vm = server && rng.random_range(0..2) == 0;
    let aad_joined = profile.platform.is_windows() && !server;
    Machine {
        id: palisade_domain::ids::hex(&id_bytes),
        merged_into_machine_id: None,
        is_potential_duplication: false,
        is_excluded: false,
        exclusion_reason: None,
        computer_dns_name: format!("{kind}-{n:05}.corp.contoso.com"),
        first_seen,
        last_seen,
        os_platform: profile.platform,
        os_version: None,
        os_processor: Some("x64".into()),
        version: Some(profile.version.into()),
        last_ip_address: Some(ip.clone()),
        last_external_ip_address: Some(format!("203.0.113.{}", rng.random_range(1..255))),
        agent_version: Some(profile.agent.into()),
        os_build: profile.build,
        health_status: if days_ago > 7 {
            HealthStatus::Inactive
        } else {
            pick(
                rng,
                &[
                    HealthStatus::Active,
                    HealthStatus::Active,
                    HealthStatus::Active,
                    HealthStatus::ImpairedCommunication,
                ],
            )
        },
        device_value: Some(pick(
            rng,
            &[
                DeviceValue::Normal,
                DeviceValue::Normal,
                DeviceValue::High,
                DeviceValue::Low,
            ],
        )),
        rbac_group_id: group,
        rbac_group_name: None,
        risk_score: Some(pick(
            rng,
            &[
                RiskScore::None,
                RiskScore::Low,
                RiskScore::Medium,
                RiskScore::High,
            ],
        )),
        exposure_level: Some(pick(
            rng,
            &[
                ExposureLevel::Low,
                ExposureLevel::Medium,
                ExposureLevel::High,
            ],
        )),
        is_aad_joined: aad_joined,
        // Derived from the id rather than drawn: the fleet stays the same for the same seed.
        aad_device_id: aad_joined.then(|| {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&id_bytes[..16]);
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string()
        }),
        machine_tags: tags,
        defender_av_status: Some("Updated".into()),
        onboarding_status: if rng.random_range(0..40) == 0 {
            OnboardingStatus::CanBeOnboarded
        } else {
            OnboardingStatus::Onboarded
        },
        os_architecture: Some("64-bit".into()),
        managed_by: Some(if server { "Unknown" } else { "Intune" }.into()),
        managed_by_status: Some("Unknown".into()),
        ip_addresses: vec![
            IpAddress {
                ip_address: ip,
                mac_address: Some(mac),
                kind: "Ethernet".into(),
                operational_status: "Up".into(),
            },
            IpAddress {
                ip_address: "127.0.0.1".into(),
                mac_address: None,
                kind: "SoftwareLoopback".into(),
                operational_status: "Up".into(),
            },
        ],
        vm_metadata: is_vm.then(|| VmMetadata {
            vm_id: Some(uuid::Uuid::from_bytes(rng.random()).to_string()),
            cloud_provider: Some("Azure".into()),
            resource_id: None,
            subscription_id: None,
        }),
    }
}

/// The demo app's client id: the same on every start, so scripts can keep it.
pub const DEMO_CLIENT_ID: &str = "5e0c2a8d-7b1f-4c3e-9d6a-2f8b4e1c7a90";

/// The demo's public client (no secret: device code, password, authorization
/// code with PKCE to `http://localhost` on any port), as MSAL's
/// PublicClientApplication and command-line tools use.
pub const DEMO_PUBLIC_CLIENT_ID: &str = "8f3b6c1e-2d4a-4e7b-a9c5-0b1d2e3f4a5b";

/// Who the demo signs in as: one user per MDE role, one limited to one device group.
const DEMO_USERS: [(&str, &[Role], Option<i64>); 6] = [
    ("admin@contoso.example", &[Role::GlobalAdministrator], None),
    (
        "secops@contoso.example",
        &[
            Role::ViewData,
            Role::AlertsInvestigation,
            Role::ActiveRemediationActions,
            Role::ManageSecuritySettings,
        ],
        None,
    ),
    (
        "responder@contoso.example",
        &[Role::ViewData, Role::ActiveRemediationActions],
        None,
    ),
    (
        "analyst@contoso.example",
        &[Role::ViewData, Role::AlertsInvestigation],
        None,
    ),
    ("reader@contoso.example", &[Role::ViewData], None),
    (
        "finance.responder@contoso.example",
        &[
            Role::ViewData,
            Role::ActiveRemediationActions,
            Role::ManageSecuritySettings,
        ],
        Some(3),
    ),
];

/// What `--demo-credentials` writes (operations.md).
#[derive(Debug, Clone, Serialize)]
pub struct DemoCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// An app that allows public client flows (no secret).
    pub public_client_id: String,
    pub token_url: String,
    pub api_url: String,
    /// Devices enroll with it: `palisade-agent --onboarding-token`, `palisade simulate`.
    pub onboarding_token: String,
    pub users: Vec<DemoUser>,
    /// The emulator control plane's token (`/_palisade/v1`).
    pub operator_token: String,
    /// With HTTPS: the CA to trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub roles: Vec<String>,
    /// Device group names, or `["all"]`.
    pub groups: Vec<String>,
}

/// Creates the demo tenant and fleet (once), and gives the demo app, users
/// and onboarding token fresh secrets (every start: only their hashes are kept, so they cannot be shown again).
/// `operator_token` is the control plane's, written beside them.
pub async fn ensure_demo(
    palisade: &Palisade,
    origin: &str,
    operator_token: String,
) -> anyhow::Result<DemoCredentials> {
    ensure_demo_tenant(palisade).await?;
    let admin = Admin::new(
        palisade.store().clone(),
        palisade.clock().clone(),
        Administrator {
            kind: "demo",
            name: "palisade serve --demo".into(),
        },
    );
    let every_permission = <palisade_contract::Permission as strum::VariantArray>::VARIANTS;
    let (app, client_secret) = admin
        .put_app(
            DEMO_TENANT_ID,
            Some(DEMO_CLIENT_ID),
            "Palisade demo app",
            every_permission,
        )
        .await?;
    let public_client = SignInSettings {
        allow_public_client: true,
        redirect_uris: vec!["http://localhost".into()],
        certificates: Vec::new(),
    };
    let (public_app, _) = admin
        .put_app_with(
            DEMO_TENANT_ID,
            Some(DEMO_PUBLIC_CLIENT_ID),
            "Palisade demo public client",
            every_permission,
            &public_client,
        )
        .await?;
    let (_, onboarding_token) = admin
        .put_onboarding_token(DEMO_TENANT_ID, Some("demo"), "demo devices")
        .await?;
    let mut users = Vec::new();
    for (username, roles, group) in DEMO_USERS {
        let access = match group {
            Some(id) => DeviceGroupAccess::Only(vec![id]),
            None => DeviceGroupAccess::All,
        };
        let (user, password) = admin
            .put_user(DEMO_TENANT_ID, username, roles, access, None)
            .await?;
        let groups = match group {
            Some(id) => DEMO_GROUPS
                .iter()
                .filter(|(g, _)| *g == id)
                .map(|(_, name)| name.to_string())
                .collect(),
            None => vec!["all".to_string()],
        };
        users.push(DemoUser {
            username: user.username,
            password,
            roles: user.roles.iter().map(|r| r.as_str().to_string()).collect(),
            groups,
        });
    }
    Ok(DemoCredentials {
        tenant_id: DEMO_TENANT_ID.into(),
        client_id: app.client_id,
        client_secret,
        public_client_id: public_app.client_id,
        token_url: format!("{origin}/{DEMO_TENANT_ID}/oauth2/v2.0/token"),
        api_url: format!("{origin}/api"),
        onboarding_token,
        users,
        operator_token,
        ca_file: None,
    })
}

/// Creates the demo tenant, its device groups, fleet and outcome rule (in
/// one transaction, from a document a reset puts it back to), unless it
/// exists already. Returns whether it was created now.
pub async fn ensure_demo_tenant(palisade: &Palisade) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let machines = fleet(DEMO_FLEET_SIZE, 1703, now);
    let document = TenantDocument {
        tenant_id: DEMO_TENANT_ID.into(),
        name: "Contoso (demo)".into(),
        retention_days: Some(DEFAULT_RETENTION_DAYS),
        device_groups: DEMO_GROUPS
            .iter()
            .map(|(id, name)| SeedDeviceGroup {
                id: *id,
                name: name.to_string(),
                rank: None,
                rules: None,
            })
            .collect(),
        machines: machines
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?,
        machine_actions: vec![],
        alerts: demo_alerts(&machines, now),
        indicators: demo_indicators(),
        apps: vec![],
        users: vec![],
        outcomes: vec![demo_outcome()],
        faults: vec![],
    };
    Ok(palisade.create_seeded_tenant(&document).await?.is_some())
}

/// The demo tenant's outcome rule, made with it (the control plane removes
/// or outranks it): every action of a machine without a device is picked up
/// after 2 s and succeeds 3 s later, as a device that is online would do.
fn demo_outcome() -> NewOutcomeRule {
    let step = |status, seconds: Option<u64>| OutcomeStep {
        status,
        polls: None,
        duration: seconds.map(|s| IsoDuration(std::time::Duration::from_secs(s))),
        error_h_result: None,
        troubleshoot_info: None,
    };
    NewOutcomeRule {
        matches: OutcomeMatch::default(),
        script: vec![
            step(ActionStatus::Pending, Some(2)),
            step(ActionStatus::InProgress, Some(3)),
            step(ActionStatus::Succeeded, None),
        ],
    }
}

/// The demo tenant's alerts: about one machine in eight has some (a few
/// several), over the last three weeks; the older ones mostly resolved
/// with a classification, the newer ones New or InProgress.
pub fn demo_alerts(machines: &[Machine], now: Timestamp) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(18);
    let mut alerts = Vec::new();
    for (n, machine) in machines.iter().enumerate().filter(|(n, _)| n % 8 == 3) {
        let count = 1 + usize::from(n % 24 == 3) * 2;
        for _ in 0..count {
            let age_hours = rng.random_range(1..21 * 24);
            let at = now.plus_seconds(-age_hours * 3_600);
            let mut alert = random_alert(&mut rng, &Target::of(machine), at);
            let (status, classified) = match age_hours {
                h if h > 7 * 24 => ("Resolved", true),
                h if h > 24 => ("InProgress", false),
                _ => ("New", false),
            };
            alert["status"] = json!(status);
            if status != "New" {
                alert["assignedTo"] = json!("secops@contoso.example");
                alert["investigationState"] = json!("Running");
            }
            if classified {
                let (classification, determination) = match rng.random_range(0..3) {
                    0 => ("TruePositive", "Malware"),
                    1 => ("FalsePositive", "NotMalicious"),
                    _ => ("InformationalExpectedActivity", "SecurityTesting"),
                };
                let resolved = at.plus_seconds(6 * 3_600);
                alert["classification"] = json!(classification);
                alert["determination"] = json!(determination);
                alert["investigationState"] = json!("SuccessfullyRemediated");
                alert["resolvedTime"] = json!(resolved);
                alert["lastUpdateTime"] = json!(resolved);
                alert["comments"] = json!([{
                    "comment": "Checked with the device owner; closing.",
                    "createdBy": "secops@contoso.example",
                    "createdTime": resolved,
                }]);
            }
            alerts.push(alert);
        }
    }
    alerts
}

/// The demo tenant's indicators: a few of each type MDE has.
pub fn demo_indicators() -> Vec<Value> {
    let indicator = |value: &str, kind: &str, action: &str, title: &str, severity: &str| {
        json!({
            "indicatorValue": value, "indicatorType": kind, "action": action,
            "title": title, "description": format!("{title} (demo)"), "severity": severity,
            "generateAlert": action != "Allowed", "source": "secops@contoso.example",
            "createdBy": "secops@contoso.example", "createdByDisplayName": "secops@contoso.example",
        })
    };
    vec![
        indicator(
            "203.0.113.66",
            "IpAddress",
            "Block",
            "Known C2 server",
            "High",
        ),
        indicator(
            "198.51.100.23",
            "IpAddress",
            "Audit",
            "Scanner seen at the edge",
            "Low",
        ),
        indicator(
            "malware-drop.example",
            "DomainName",
            "Block",
            "Malware distribution domain",
            "High",
        ),
        indicator(
            "https://login-contoso-42.example/verify",
            "Url",
            "Warn",
            "Phishing page",
            "Medium",
        ),
        indicator(
            "44d88612fea8a8f36de82e1278abb02f",
            "FileMd5",
            "BlockAndRemediate",
            "EICAR test file",
            "Informational",
        ),
        indicator(
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            "FileSha256",
            "BlockAndRemediate",
            "EICAR test file",
            "Informational",
        ),
        // Scoped to one device group: elsewhere the blocks above stand.
        {
            let mut allowed = indicator(
                "3395856ce81f2b7382dee72602f798b642f14140",
                "FileSha1",
                "Allowed",
                "EICAR test file, allowed on Finance's machines",
                "Informational",
            );
            allowed["rbacGroupNames"] = json!(["Finance"]);
            allowed
        },
    ]
}
