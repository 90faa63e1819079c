//! Paths and bodies of the device plane, in the JSON casing of the MDE API.

use palisade_contract::live_response::CommandStatus;
use palisade_contract::{ActionStatus, ActionType, HealthStatus, IpAddress, MachineAction};
use palisade_contract::{OsPlatform, Timestamp};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const ENROLL_PATH: &str = "/device/v1/enroll";
pub const CHECK_IN_PATH: &str = "/device/v1/checkin";
/// `POST` here raises an alert on the device's machine (a detection).
pub const ALERTS_PATH: &str = "/device/v1/alerts";
/// `PUT` here reports the device's inventory ([`Inventory`]), whole.
pub const INVENTORY_PATH: &str = "/device/v1/inventory";

/// At most this many packages in an inventory (it fits the server's 1 MiB bodies).
pub const MAX_INVENTORY_SOFTWARE: usize = 8_000;
/// At most this many users in an inventory.
pub const MAX_INVENTORY_USERS: usize = 1_000;

/// What is installed on a device and who logged on to it, as it stands:
/// in place of what it reported before. Sent when it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub software: Vec<InstalledSoftware>,
    pub logon_users: Vec<Logon>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstalledSoftware {
    pub name: String,
    /// Who ships it: a Linux package's distribution (`debian`, `ubuntu`, `fedora`...).
    pub vendor: String,
    pub version: String,
}

/// A user who logged on, from the login records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Logon {
    pub account_name: String,
    /// The host name for a local account.
    pub account_domain: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// `Interactive` (a local terminal) or `RemoteInteractive` (from another host).
    pub logon_types: String,
}

/// `POST` here moves a Pending action to InProgress.
pub fn action_start_path(action_id: &str) -> String {
    format!("/device/v1/actions/{action_id}/start")
}

/// `POST` here reports how an InProgress action ended.
pub fn action_result_path(action_id: &str) -> String {
    format!("/device/v1/actions/{action_id}/result")
}

/// `PUT` here uploads what command `index` of an InProgress live-response
/// session left (a script's transcript, a file), streamed; the command may
/// then be reported Completed.
pub fn command_result_path(action_id: &str, index: u32) -> String {
    format!("/device/v1/actions/{action_id}/commands/{index}/result")
}

/// `GET` here downloads library file `file_name` that the InProgress
/// session `action_id` puts or runs.
pub fn session_library_path(action_id: &str, file_name: &str) -> String {
    let name = utf8_percent_encode(file_name, PATH_SEGMENT);
    format!("/device/v1/actions/{action_id}/library/{name}")
}

/// Bytes percent-encoded in a path segment: all but unreserved ones.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `PUT` here uploads an InProgress CollectInvestigationPackage action's
/// zip (the body, streamed); the action may then be reported Succeeded.
pub fn package_path(action_id: &str) -> String {
    format!("/device/v1/actions/{action_id}/package")
}

/// The 401 message for a credential whose device was offboarded: the device
/// reads it as confirmation that its offboarding took effect.
pub const OFFBOARDED_MESSAGE: &str =
    "The device was offboarded; enroll it again with an onboarding token to onboard it anew.";

/// Longest long poll a check-in may ask for; shorter than common proxy idle timeouts.
pub const MAX_WAIT_SECONDS: u64 = 55;

/// An onboarding token's text starts with this; a device credential's with [`CREDENTIAL_PREFIX`].
pub const ONBOARDING_TOKEN_PREFIX: &str = "pot";
pub const CREDENTIAL_PREFIX: &str = "pdc";

/// What a device can enforce beyond what MDE documents for its OS.
///
/// MDE's support table (e.g. no Selective isolation or offboarding on Linux)
/// describes MDE's own sensors; a device running a Palisade agent declares what
/// it carries out, and the API accepts those actions for it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::Display,
    strum::VariantArray,
)]
pub enum Capability {
    FullIsolation,
    SelectiveIsolation,
    Offboard,
    /// Enforces its tenant's indicators: check-ins carry the set when it changed.
    Indicators,
    /// Stops the processes and quarantines the files of a SHA-1.
    StopAndQuarantineFile,
    /// Scans with an antivirus engine (Quick or Full) and quarantines what it finds.
    AntivirusScan,
    /// Runs live-response sessions: puts library files, runs library
    /// scripts, collects files.
    LiveResponse,
}

/// Network isolation as a device has it in force.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
)]
pub enum Isolation {
    #[default]
    None,
    Full,
    Selective,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The isolation an `Isolate` action's `scope` asks for.
    pub fn from_scope(scope: Option<&str>) -> Isolation {
        match scope {
            Some("Selective") => Isolation::Selective,
            _ => Isolation::Full,
        }
    }
}

/// `POST /device/v1/enroll`, with `Authorization: Bearer <onboarding token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollRequest {
    /// Stable across reinstalls of the agent (e.g. a hash of /etc/machine-id).
    /// Hardware that is enrolled already and enrolls again without that
    /// device's `credential` becomes a new machine marked as a potential
    /// duplicate (`isPotentialDuplication`); the enrolled one is not touched.
    pub hardware_id: String,
    pub computer_dns_name: String,
    pub os_platform: OsPlatform,
    pub os_version: Option<String>,
    /// Feature release, e.g. `22H2`.
    pub version: Option<String>,
    pub os_build: Option<i64>,
    /// `64-bit` or `32-bit`.
    pub os_architecture: Option<String>,
    pub agent_version: String,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub last_external_ip_address: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// The credential of this device's current enrollment, if it has one:
    /// enrolling with it updates the device's own machine in place (same
    /// machine id, same credential, its actions and isolation kept). An
    /// unknown credential counts as none; an offboarded device's is refused
    /// (401, [`OFFBOARDED_MESSAGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The answer to an enrollment (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub tenant_id: String,
    /// The machine's MDE id (40 hex characters).
    pub machine_id: String,
    /// The device's own secret for every later call; shown only here. An
    /// enrollment in place answers the credential the device presented.
    pub credential: String,
    pub check_in_interval_seconds: u64,
}

/// `POST /device/v1/checkin[?wait=SECONDS]`, with `Authorization: Bearer <credential>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckIn {
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    pub last_ip_address: Option<String>,
    #[serde(default)]
    pub last_external_ip_address: Option<String>,
    #[serde(default)]
    pub health_status: Option<HealthStatus>,
    #[serde(default)]
    pub agent_version: Option<String>,
    /// The isolation in force on the device now.
    #[serde(default)]
    pub isolation: Isolation,
    /// The version of the indicators the device holds (`DeviceIndicators`);
    /// none: it holds none yet.
    #[serde(default)]
    pub indicators_version: Option<String>,
}

/// One indicator a device enforces: its tenant's addresses, domains and
/// file hashes in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIndicator {
    pub id: String,
    pub indicator_type: palisade_contract::indicator::IndicatorType,
    /// The value as matched: hashes and names in lower case, an address in
    /// its canonical form.
    pub value: String,
    pub action: palisade_contract::indicator::IndicatorAction,
    pub title: String,
    pub severity: palisade_contract::indicator::IndicatorSeverity,
    /// Whether a hit raises an alert (blocking or not).
    pub generate_alert: bool,
}

/// The indicators a device enforces, whole: sent when the version the
/// device holds is not the tenant's (a change, an expiry), and applied in
/// place of what it held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIndicators {
    pub version: String,
    pub indicators: Vec<DeviceIndicator>,
}

/// What a check-in answers: the device's Pending and InProgress actions,
/// oldest first, in their MDE shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckInReply {
    pub actions: Vec<MachineAction>,
    pub check_in_interval_seconds: u64,
    /// The tenant's indicators, when the device's version is not theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicators: Option<DeviceIndicators>,
}

/// `POST /device/v1/actions/{id}/result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionResult {
    /// `Succeeded` or `Failed`.
    pub status: ActionStatus,
    /// Why it failed, or what is in force; shown as the action's `troubleshootInfo`.
    #[serde(default)]
    pub detail: Option<String>,
    /// A Windows HRESULT for `errorHResult`; a failure without one gets E_FAIL.
    #[serde(default)]
    pub error_h_result: Option<i64>,
    /// How each command of a live-response session went, in order; the
    /// commands after a failed one are not carried out (they stay Created).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandOutcome>,
}

/// How one live-response command went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandOutcome {
    pub index: u32,
    /// `Completed` or `Failed`.
    pub command_status: CommandStatus,
    #[serde(default)]
    pub errors: Vec<String>,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
}

impl ActionResult {
    pub fn succeeded(detail: impl Into<String>) -> ActionResult {
        ActionResult {
            status: ActionStatus::Succeeded,
            detail: Some(detail.into()),
            error_h_result: None,
            commands: vec![],
        }
    }

    pub fn failed(detail: impl Into<String>) -> ActionResult {
        ActionResult {
            status: ActionStatus::Failed,
            detail: Some(detail.into()),
            error_h_result: None,
            commands: vec![],
        }
    }
}

/// The Windows HRESULTs an action's `errorHResult` carries (MDE's field is one).
pub mod hresult {
    /// Unspecified failure: a failure reported without a code.
    pub const E_FAIL: i64 = 0x8000_4005_u32 as i32 as i64;
    /// Enforcement is impossible here (no privileges, no firewall).
    pub const E_ACCESSDENIED: i64 = 0x8007_0005_u32 as i32 as i64;
    /// The device does not carry out this kind of action.
    pub const E_NOTIMPL: i64 = 0x8000_4001_u32 as i32 as i64;
    /// What the action names is not there (no file, no process, no scanner).
    pub const ERROR_FILE_NOT_FOUND: i64 = 0x8007_0002_u32 as i32 as i64;
    /// The action ran out of the time it is given.
    pub const ERROR_TIMEOUT: i64 = 0x8007_05b4_u32 as i32 as i64;
}

/// The action types a device plane carries out, by what they change on the device.
pub fn isolation_after(action_type: ActionType, scope: Option<&str>) -> Option<Isolation> {
    match action_type {
        ActionType::Isolate => Some(Isolation::from_scope(scope)),
        ActionType::Unisolate => Some(Isolation::None),
        _ => None,
    }
}
