//! The `MachineAction` entity (contract §3), in the property order real responses use.

use crate::machine::{qp, wire_enum, PropertyKind, QueryableProperty};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(ActionType {
    RunAntiVirusScan,
    Offboard,
    LiveResponse,
    CollectInvestigationPackage,
    Isolate,
    Unisolate,
    StopAndQuarantineFile,
    RestrictCodeExecution,
    UnrestrictCodeExecution,
});

wire_enum!(ActionStatus {
    Pending,
    InProgress,
    Succeeded,
    Failed,
    TimeOut,
    Cancelled,
});

impl ActionStatus {
    /// Pending and InProgress actions still count against "one active action per type".
    pub fn is_active(self) -> bool {
        matches!(self, ActionStatus::Pending | ActionStatus::InProgress)
    }
}

/// The file a `StopAndQuarantineFile` action is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RelatedFileInfo {
    pub file_identifier: String,
    /// `Sha1`, `Sha256` or `Md5`.
    pub file_identifier_type: String,
}

/// A machine action as `GET /api/machineactions/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineAction {
    /// A lower-case GUID.
    pub id: String,
    #[serde(rename = "type")]
    pub action_type: ActionType,
    pub title: Option<String>,
    pub requestor: String,
    pub requestor_comment: Option<String>,
    pub status: ActionStatus,
    pub machine_id: String,
    pub computer_dns_name: Option<String>,
    pub creation_date_time_utc: Timestamp,
    pub last_update_date_time_utc: Timestamp,
    pub cancellation_requestor: Option<String>,
    pub cancellation_comment: Option<String>,
    pub cancellation_date_time_utc: Option<Timestamp>,
    pub error_h_result: i64,
    /// `Full`/`Selective` for isolation, `Quick`/`Full` for scans, else `null`.
    pub scope: Option<String>,
    pub external_id: Option<String>,
    pub request_source: String,
    pub related_file_info: Option<RelatedFileInfo>,
    /// Live-response commands and how each went; always `[]` for the other action types.
    pub commands: Vec<crate::live_response::ActionCommand>,
    #[schema(value_type = Option<Object>)]
    pub troubleshoot_info: Option<serde_json::Value>,
}

/// The machine-action properties MDE documents as filterable (contract §4.12).
pub const MACHINE_ACTION_QUERYABLE: &[QueryableProperty] = &[
    qp("id", PropertyKind::String),
    qp("status", PropertyKind::String),
    qp("machineId", PropertyKind::String),
    qp("type", PropertyKind::String),
    qp("requestor", PropertyKind::String),
    qp("creationDateTimeUtc", PropertyKind::DateTime),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_error_h_result_as_mde_does() {
        let json = serde_json::to_value(MachineAction {
            id: "cd46c651-f570-4e32-abdb-a02a9e022a92".into(),
            action_type: ActionType::Offboard,
            title: None,
            requestor: "Customer App".into(),
            requestor_comment: Some("Offboard machine by postman".into()),
            status: ActionStatus::Pending,
            machine_id: "d95f8b657a36ced22147cb7b54802152caa29247".into(),
            computer_dns_name: Some("desktop-5o2hkn5".into()),
            creation_date_time_utc: Timestamp::parse("2023-08-08T01:34:32.1341831Z").unwrap(),
            last_update_date_time_utc: Timestamp::parse("2023-08-08T01:34:32.1341838Z").unwrap(),
            cancellation_requestor: None,
            cancellation_comment: None,
            cancellation_date_time_utc: None,
            error_h_result: 0,
            scope: None,
            external_id: None,
            request_source: "PublicApi".into(),
            related_file_info: None,
            commands: vec![],
            troubleshoot_info: None,
        })
        .unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert!(keys.contains(&"errorHResult"), "{keys:?}");
        assert!(keys.contains(&"type"));
        assert_eq!(json["creationDateTimeUtc"], "2023-08-08T01:34:32.1341831Z");
    }
}
