//! The `Alert` entity and its evidence (MDE's alerts.md), in the property
//! order real responses use, and the bodies that change alerts.

use crate::machine::{qp, wire_enum, PropertyKind, QueryableProperty};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(AlertSeverity {
    UnSpecified,
    Informational,
    Low,
    Medium,
    High,
});

wire_enum!(AlertStatus {
    Unknown,
    New,
    InProgress,
    Resolved,
});

wire_enum!(AlertClassification {
    TruePositive,
    InformationalExpectedActivity,
    FalsePositive,
});

wire_enum!(
    /// Every determination MDE's pages name. The pages disagree on two
    /// (`ConfirmedUserActivity` or `ConfirmedActivity`, `Clean` or
    /// `NotMalicious`): both spellings are taken and kept as sent. No page
    /// says a determination must fit its classification (update-alert's own
    /// example pairs FalsePositive with Malware), so none is refused for it.
    AlertDetermination {
        MultiStagedAttack,
        MaliciousUserActivity,
        CompromisedUser,
        Malware,
        Phishing,
        UnwantedSoftware,
        SecurityTesting,
        LineOfBusinessApplication,
        ConfirmedUserActivity,
        ConfirmedActivity,
        Clean,
        NotMalicious,
        InsufficientData,
        Other,
    }
);

wire_enum!(InvestigationState {
    Unknown,
    Terminated,
    SuccessfullyRemediated,
    Benign,
    Failed,
    PartiallyRemediated,
    Running,
    PendingApproval,
    PendingResource,
    PartiallyInvestigated,
    TerminatedByUser,
    TerminatedBySystem,
    Queued,
    InnerFailure,
    PreexistingAlert,
    UnsupportedOs,
    UnsupportedAlertType,
    SuppressedAlert,
});

wire_enum!(
    /// `category` as CreateAlertByReference lists it (alerts carry it as a string).
    AlertCategory {
        General,
        CommandAndControl,
        Collection,
        CredentialAccess,
        DefenseEvasion,
        Discovery,
        Exfiltration,
        Exploit,
        Execution,
        InitialAccess,
        LateralMovement,
        Malware,
        Persistence,
        PrivilegeEscalation,
        Ransomware,
        SuspiciousActivity,
    }
);

/// `relatedUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelatedUser {
    pub user_name: String,
    pub domain_name: Option<String>,
}

/// One of `comments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertComment {
    pub comment: String,
    pub created_by: String,
    pub created_time: Timestamp,
}

/// One of `evidence`: every property on every item, `null` where it does
/// not apply (as MDE sends them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertEvidence {
    /// `File`, `Process`, `User`, `Ip`, `Url`, `Registry`, ...
    pub entity_type: String,
    pub evidence_creation_time: Option<Timestamp>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub file_name: Option<String>,
    pub file_path: Option<String>,
    pub process_id: Option<i64>,
    pub process_command_line: Option<String>,
    pub process_creation_time: Option<Timestamp>,
    pub parent_process_id: Option<i64>,
    pub parent_process_creation_time: Option<Timestamp>,
    pub parent_process_file_name: Option<String>,
    pub parent_process_file_path: Option<String>,
    pub ip_address: Option<String>,
    pub url: Option<String>,
    pub registry_key: Option<String>,
    pub registry_hive: Option<String>,
    pub registry_value_type: Option<String>,
    pub registry_value: Option<String>,
    pub account_name: Option<String>,
    pub domain_name: Option<String>,
    pub user_sid: Option<String>,
    pub aad_user_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub detection_status: Option<String>,
}

/// An alert as `GET /api/alerts/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `da{ticks}_{number}`, as MDE's.
    pub id: String,
    pub incident_id: Option<i64>,
    pub investigation_id: Option<i64>,
    pub assigned_to: Option<String>,
    pub severity: AlertSeverity,
    pub status: AlertStatus,
    pub classification: Option<AlertClassification>,
    pub determination: Option<AlertDetermination>,
    pub investigation_state: Option<InvestigationState>,
    pub detection_source: String,
    pub detector_id: Option<String>,
    pub category: String,
    pub threat_family_name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub alert_creation_time: Timestamp,
    pub first_event_time: Option<Timestamp>,
    pub last_event_time: Option<Timestamp>,
    /// Unique in its tenant and moved by every change: incremental polling
    /// on it misses nothing (see `rules::alerts`).
    pub last_update_time: Timestamp,
    pub resolved_time: Option<Timestamp>,
    pub machine_id: String,
    pub computer_dns_name: Option<String>,
    pub rbac_group_name: Option<String>,
    pub aad_tenant_id: String,
    pub threat_name: Option<String>,
    pub mitre_techniques: Vec<String>,
    pub related_user: Option<RelatedUser>,
    pub comments: Vec<AlertComment>,
    /// `[]` in lists unless `$expand=evidence`.
    pub evidence: Vec<AlertEvidence>,
}

/// The alert properties MDE documents as filterable (get-alerts.md; its
/// `asssignedTo` is `assignedTo`), and the times and ids it orders by.
pub const ALERT_QUERYABLE: &[QueryableProperty] = &[
    qp("alertCreationTime", PropertyKind::DateTime),
    qp("lastUpdateTime", PropertyKind::DateTime),
    qp("incidentId", PropertyKind::Integer),
    qp("investigationId", PropertyKind::Integer),
    qp("id", PropertyKind::String),
    qp("assignedTo", PropertyKind::String),
    qp("detectionSource", PropertyKind::String),
    qp("lastEventTime", PropertyKind::DateTime),
    qp("status", PropertyKind::String),
    qp("severity", PropertyKind::String),
    qp("category", PropertyKind::String),
    qp("machineId", PropertyKind::String),
];

/// The navigation property `$expand` takes on alerts.
pub const ALERT_EXPANDABLE: &[&str] = &["evidence"];

/// `PATCH /api/alerts/{id}`: what is absent keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertUpdate {
    /// `New`, `InProgress` or `Resolved`.
    pub status: Option<AlertStatus>,
    pub assigned_to: Option<String>,
    pub classification: Option<AlertClassification>,
    pub determination: Option<AlertDetermination>,
    /// Added to the alert's comments.
    pub comment: Option<String>,
}

/// `POST /api/alerts/batchUpdate`: the update, for each of `alertIds`.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertBatchUpdate {
    pub alert_ids: Option<Vec<String>>,
    #[serde(flatten)]
    pub update: AlertUpdate,
}

/// `POST /api/alerts/CreateAlertByReference`: every property is required.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertByReference {
    pub machine_id: Option<String>,
    /// `Low`, `Medium` or `High`.
    pub severity: Option<AlertSeverity>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub recommended_action: Option<String>,
    pub event_time: Option<Timestamp>,
    pub report_id: Option<String>,
    pub category: Option<AlertCategory>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_reads_and_writes_back_in_order() {
        let example = r#"{"id":"da637472900382838869_1364969609","incidentId":1126093,"investigationId":null,"assignedTo":null,"severity":"Low","status":"New","classification":null,"determination":null,"investigationState":"Queued","detectionSource":"WindowsDefenderAtp","detectorId":"17e10bbc-3a68-474a-8aad-faef14d43952","category":"Execution","threatFamilyName":null,"title":"Low-reputation arbitrary code executed by signed executable","description":"Binaries signed by Microsoft can be used to run low-reputation arbitrary code.","alertCreationTime":"2021-01-26T20:33:57.7220239Z","firstEventTime":"2021-01-26T20:31:32.9562661Z","lastEventTime":"2021-01-26T20:31:33.0577322Z","lastUpdateTime":"2021-01-26T20:33:59.2Z","resolvedTime":null,"machineId":"111e6dd8c833c8a052ea231ec1b19adaf497b625","computerDnsName":"temp123.middleeast.corp.microsoft.com","rbacGroupName":"A","aadTenantId":"a839b112-1253-6432-9bf6-94542403f21c","threatName":null,"mitreTechniques":["T1064","T1085","T1220"],"relatedUser":{"userName":"temp123","domainName":"DOMAIN"},"comments":[{"comment":"test comment for docs","createdBy":"secop123@contoso.com","createdTime":"2021-01-26T01:00:37.8404534Z"}],"evidence":[{"entityType":"Process","evidenceCreationTime":"2021-01-26T20:33:58.6133333Z","sha1":"ff836cfb1af40252bd2a2ea843032e99a5b262ed","sha256":"a4752c71d81afd3d5865d24ddb11a6b0c615062fcc448d24050c2172d2cbccd6","fileName":"rundll32.exe","filePath":"C:\\Windows\\SysWOW64","processId":3276,"processCommandLine":"rundll32.exe  c:\\temp\\suspicious.dll,RepeatAfterMe","processCreationTime":"2021-01-26T20:31:32.9581596Z","parentProcessId":8420,"parentProcessCreationTime":"2021-01-26T20:31:32.9004163Z","parentProcessFileName":"rundll32.exe","parentProcessFilePath":"C:\\Windows\\System32","ipAddress":null,"url":null,"registryKey":null,"registryHive":null,"registryValueType":null,"registryValue":null,"accountName":null,"domainName":null,"userSid":null,"aadUserId":null,"userPrincipalName":null,"detectionStatus":"Detected"}]}"#;
        let alert: Alert = serde_json::from_str(example).unwrap();
        assert_eq!(alert.severity, AlertSeverity::Low);
        assert_eq!(alert.evidence[0].process_id, Some(3276));
        assert_eq!(serde_json::to_string(&alert).unwrap(), example);
    }
}
