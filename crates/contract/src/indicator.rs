//! The `Indicator` entity (MDE's ti-indicator.md) in the property order real
//! responses use, and the bodies that submit, import and delete indicators.

use crate::machine::{qp, wire_enum, PropertyKind, QueryableProperty};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(IndicatorType {
    FileSha1,
    FileSha256,
    FileMd5,
    CertificateThumbprint,
    IpAddress,
    DomainName,
    Url,
});

impl IndicatorType {
    /// A file hash: what the agent matches files and processes by.
    pub fn is_file_hash(self) -> bool {
        matches!(
            self,
            IndicatorType::FileSha1 | IndicatorType::FileSha256 | IndicatorType::FileMd5
        )
    }
}

wire_enum!(IndicatorAction {
    Alert,
    Warn,
    Block,
    Audit,
    BlockAndRemediate,
    AlertAndBlock,
    Allowed,
});

impl IndicatorAction {
    /// Whether a device stops what matches (traffic, a process, a file).
    pub fn blocks(self) -> bool {
        matches!(
            self,
            IndicatorAction::Block
                | IndicatorAction::BlockAndRemediate
                | IndicatorAction::AlertAndBlock
        )
    }
}

wire_enum!(IndicatorSeverity {
    Informational,
    Low,
    Medium,
    High,
});

/// An indicator as `GET /api/indicators` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Indicator {
    /// A number, as a string (`"995"`).
    pub id: String,
    pub indicator_value: String,
    pub indicator_type: IndicatorType,
    pub action: IndicatorAction,
    pub application: Option<String>,
    /// Who made it: the app's name or the user's UPN.
    pub source: String,
    /// `AadApp` or `User`.
    pub source_type: String,
    /// The app's client id or the user's UPN.
    pub created_by: String,
    pub created_by_display_name: String,
    pub created_by_source: String,
    pub severity: IndicatorSeverity,
    pub title: String,
    pub description: String,
    pub recommended_actions: Option<String>,
    pub creation_time_date_time_utc: Timestamp,
    pub expiration_time: Option<Timestamp>,
    pub last_update_time: Timestamp,
    pub last_updated_by: Option<String>,
    /// Empty: every device.
    pub rbac_group_names: Vec<String>,
    pub rbac_group_ids: Vec<String>,
    pub generate_alert: bool,
    pub mitre_techniques: Vec<String>,
    pub educate_url: Option<String>,
}

/// The indicator properties MDE documents as filterable (get-ti-indicators-collection.md).
pub const INDICATOR_QUERYABLE: &[QueryableProperty] = &[
    qp("id", PropertyKind::Integer),
    qp("application", PropertyKind::String),
    qp("createdByDisplayName", PropertyKind::String),
    qp("expirationTime", PropertyKind::DateTime),
    qp("generateAlert", PropertyKind::Boolean),
    qp("title", PropertyKind::String),
    qp("indicatorValue", PropertyKind::String),
    qp("indicatorType", PropertyKind::String),
    qp("creationTimeDateTimeUtc", PropertyKind::DateTime),
    qp("lastUpdateTime", PropertyKind::DateTime),
    qp("createdBy", PropertyKind::String),
    qp("action", PropertyKind::String),
    qp("severity", PropertyKind::String),
];

/// `POST /api/indicators`, and each item of an import. Required:
/// `indicatorValue`, `indicatorType`, `action`, `title`, `description`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndicatorSubmission {
    pub indicator_value: Option<String>,
    pub indicator_type: Option<IndicatorType>,
    pub action: Option<IndicatorAction>,
    /// Taken when the indicator is made; an update keeps the first.
    pub application: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub expiration_time: Option<Timestamp>,
    pub severity: Option<IndicatorSeverity>,
    pub recommended_actions: Option<String>,
    /// Device group names; none or empty: every device.
    pub rbac_group_names: Option<Vec<String>>,
    pub educate_url: Option<String>,
    /// Must be true for `Audit`.
    pub generate_alert: Option<bool>,
    pub mitre_techniques: Option<Vec<String>>,
}

/// `POST /api/indicators/import`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct IndicatorImport {
    #[serde(rename = "Indicators")]
    pub indicators: Option<Vec<serde_json::Value>>,
}

/// One item of an import's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportResult {
    /// The indicator's id; `null` when it failed.
    pub id: Option<String>,
    /// Its value, as sent.
    pub indicator: Option<String>,
    pub is_failed: bool,
    pub failure_reason: Option<String>,
}

/// `POST /api/indicators/BatchDelete`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct IndicatorBatchDelete {
    #[serde(rename = "IndicatorIds")]
    pub indicator_ids: Option<Vec<String>>,
}
