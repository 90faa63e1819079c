//! Alerts: what a PATCH or batch update changes, what CreateAlertByReference
//! and the control plane raise, and the one rule incremental polling rests
//! on: every change gives the alert a `lastUpdateTime` later than any the
//! tenant's alerts had (`writes::ChangeAlerts` takes it from the tenant's
//! counter), so that `lastUpdateTime gt T` in ascending order misses none.

use crate::ids::new_alert_id;
use palisade_contract::alert::{
    AlertBatchUpdate, AlertByReference, AlertCategory, AlertComment, AlertSeverity, AlertStatus,
    AlertUpdate, InvestigationState,
};
use palisade_contract::{Alert, ErrorCode, Machine, MdeError, Timestamp};

/// Most alerts one batch update may name (MDE's pages are silent; the bulk
/// tag limit).
pub const MAX_BATCH_ALERTS: usize = 500;

/// Refuses an update that names nothing to change, or a status a client
/// cannot set.
pub fn validate_update(update: &AlertUpdate) -> Result<(), MdeError> {
    let AlertUpdate {
        status,
        assigned_to,
        classification,
        determination,
        comment,
    } = update;
    if status.is_none()
        && assigned_to.is_none()
        && classification.is_none()
        && determination.is_none()
        && comment.is_none()
    {
        return Err(MdeError::new(
            ErrorCode::InvalidRequestBody,
            "The request changes nothing: give status, assignedTo, classification, determination or comment.",
        ));
    }
    if *status == Some(AlertStatus::Unknown) {
        return Err(MdeError::new(
            ErrorCode::InvalidRequestBody,
            "status must be New, InProgress or Resolved.",
        ));
    }
    if comment.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(MdeError::new(
            ErrorCode::InvalidRequestBody,
            "comment must not be empty.",
        ));
    }
    Ok(())
}

/// The ids of a batch update, checked: 1 to [`MAX_BATCH_ALERTS`].
pub fn batch_ids(batch: &AlertBatchUpdate) -> Result<Vec<String>, MdeError> {
    let ids = batch
        .alert_ids
        .clone()
        .ok_or_else(|| MdeError::missing("alertIds"))?;
    if ids.is_empty() {
        return Err(MdeError::new(
            ErrorCode::InvalidRequestBody,
            "alertIds must name at least one alert.",
        ));
    }
    if ids.len() > MAX_BATCH_ALERTS {
        return Err(MdeError::new(
            ErrorCode::MaximumBatchSizeExceeded,
            format!(
                "Maximum batch size exceeded. Received: {}, allowed: {MAX_BATCH_ALERTS}.",
                ids.len()
            ),
        ));
    }
    validate_update(&batch.update)?;
    Ok(ids)
}

/// `alert` with `update` applied by `requestor` at `now` (its
/// `lastUpdateTime` is the write's to give).
pub fn apply(alert: &Alert, update: &AlertUpdate, requestor: &str, now: Timestamp) -> Alert {
    let mut changed = alert.clone();
    if let Some(status) = update.status {
        changed.status = status;
        changed.resolved_time = match (alert.status, status) {
            (AlertStatus::Resolved, AlertStatus::Resolved) => alert.resolved_time,
            (_, AlertStatus::Resolved) => Some(now),
            _ => None,
        };
    }
    if let Some(assigned_to) = &update.assigned_to {
        changed.assigned_to = Some(assigned_to.clone());
    }
    if let Some(classification) = update.classification {
        changed.classification = Some(classification);
    }
    if let Some(determination) = update.determination {
        changed.determination = Some(determination);
    }
    if let Some(comment) = &update.comment {
        changed.comments.push(AlertComment {
            comment: comment.clone(),
            created_by: requestor.to_string(),
            created_time: now,
        });
    }
    changed
}

/// A new alert on `machine` (its name and device group as they are now),
/// New and queued for investigation; the caller fills in the rest.
pub fn new_alert(machine: &Machine, tenant_id: &str, now: Timestamp) -> Alert {
    Alert {
        id: new_alert_id(now),
        incident_id: None,
        investigation_id: None,
        assigned_to: None,
        severity: AlertSeverity::Medium,
        status: AlertStatus::New,
        classification: None,
        determination: None,
        investigation_state: Some(InvestigationState::Queued),
        detection_source: "WindowsDefenderAtp".into(),
        detector_id: None,
        category: AlertCategory::SuspiciousActivity.as_str().into(),
        threat_family_name: None,
        title: String::new(),
        description: None,
        alert_creation_time: now,
        first_event_time: Some(now),
        last_event_time: Some(now),
        last_update_time: now,
        resolved_time: None,
        machine_id: machine.id.clone(),
        computer_dns_name: Some(machine.computer_dns_name.clone()),
        rbac_group_name: machine.rbac_group_name.clone(),
        aad_tenant_id: tenant_id.to_string(),
        threat_name: None,
        mitre_techniques: vec![],
        related_user: None,
        comments: vec![],
        evidence: vec![],
    }
}

/// A CreateAlertByReference body, checked: every property is required, and
/// the severity is Low, Medium or High.
#[derive(Debug, Clone)]
pub struct ByReference {
    pub machine_id: String,
    pub severity: AlertSeverity,
    pub title: String,
    pub description: String,
    pub recommended_action: String,
    pub event_time: Timestamp,
    pub report_id: String,
    pub category: AlertCategory,
}

pub fn by_reference(body: AlertByReference) -> Result<ByReference, MdeError> {
    fn required<T>(value: Option<T>, name: &str) -> Result<T, MdeError> {
        value.ok_or_else(|| MdeError::missing(name))
    }
    let severity = required(body.severity, "severity")?;
    if !matches!(
        severity,
        AlertSeverity::Low | AlertSeverity::Medium | AlertSeverity::High
    ) {
        return Err(MdeError::new(
            ErrorCode::InvalidRequestBody,
            "severity must be Low, Medium or High.",
        ));
    }
    Ok(ByReference {
        machine_id: required(body.machine_id, "machineId")?,
        severity,
        title: required(body.title, "title")?,
        description: required(body.description, "description")?,
        recommended_action: required(body.recommended_action, "recommendedAction")?,
        event_time: required(body.event_time, "eventTime")?,
        report_id: required(body.report_id, "reportId")?,
        category: required(body.category, "category")?,
    })
}

/// What CreateAlertByReference makes of `reference` on `machine`: MDE
/// merges it into an open alert of the machine with the same title
/// (`open`, if there is one: its last event moves on), else raises a new
/// one, from a custom detection, whose investigation is queued.
pub fn raise_by_reference(
    machine: &Machine,
    tenant_id: &str,
    reference: &ByReference,
    open: Option<&Alert>,
    now: Timestamp,
) -> Alert {
    if let Some(open) = open {
        let mut merged = open.clone();
        merged.last_event_time = open.last_event_time.max(Some(reference.event_time));
        merged.first_event_time = open.first_event_time.min(Some(reference.event_time));
        return merged;
    }
    Alert {
        severity: reference.severity,
        detection_source: "CustomDetection".into(),
        category: reference.category.as_str().into(),
        title: reference.title.clone(),
        description: Some(reference.description.clone()),
        first_event_time: Some(reference.event_time),
        last_event_time: Some(reference.event_time),
        ..new_alert(machine, tenant_id, now)
    }
}

/// An alert as the control plane (or a device) raises it: a partial MDE
/// alert that names its machine; what it leaves out has the defaults of
/// [`new_alert`]. What the server owns (ids, the machine's name and group,
/// the tenant, `lastUpdateTime`) is not taken from it.
#[derive(Debug, Clone)]
pub struct Partial {
    pub machine_id: String,
    given: serde_json::Map<String, serde_json::Value>,
}

/// Properties of an alert the server sets, whatever a raise gives.
const SERVER_OWNED: &[&str] = &[
    "id",
    "machineId",
    "computerDnsName",
    "rbacGroupName",
    "aadTenantId",
    "lastUpdateTime",
    "incidentId",
];

/// What a device may say of the alerts it raises: its detection. Triage
/// (status, assignment, classification, comments) is for analysts, and the
/// machine is the device's own.
const DETECTION_FIELDS: &[&str] = &[
    "title",
    "description",
    "severity",
    "category",
    "detectionSource",
    "detectorId",
    "threatName",
    "threatFamilyName",
    "mitreTechniques",
    "relatedUser",
    "evidence",
    "firstEventTime",
    "lastEventTime",
];

impl Partial {
    /// Reads a device's detection (only [`DETECTION_FIELDS`]) as an alert
    /// on its machine.
    pub fn read_detection(value: serde_json::Value, machine_id: &str) -> Result<Partial, MdeError> {
        let serde_json::Value::Object(mut given) = value else {
            return Err(MdeError::new(
                ErrorCode::InvalidRequestBody,
                "An alert is a JSON object.",
            ));
        };
        if let Some(key) = given
            .keys()
            .find(|k| !DETECTION_FIELDS.contains(&k.as_str()))
        {
            return Err(MdeError::new(
                ErrorCode::InvalidRequestBody,
                format!(
                    "A device's alert gives only its detection ({}); '{key}' is not one of them.",
                    DETECTION_FIELDS.join(", ")
                ),
            ));
        }
        given.insert("machineId".into(), machine_id.into());
        Partial::read(serde_json::Value::Object(given))
    }

    /// Reads `value`, refusing (naming the property) what no alert could hold.
    pub fn read(value: serde_json::Value) -> Result<Partial, MdeError> {
        let serde_json::Value::Object(mut given) = value else {
            return Err(MdeError::new(
                ErrorCode::InvalidRequestBody,
                "An alert is a JSON object.",
            ));
        };
        let machine_id = match given.get("machineId") {
            Some(serde_json::Value::String(id)) => id.clone(),
            _ => return Err(MdeError::missing("machineId")),
        };
        given.retain(|key, _| !SERVER_OWNED.contains(&key.as_str()));
        let partial = Partial { machine_id, given };
        // Checked on a stand-in machine: the same properties fit any other.
        let template = new_alert(&stand_in_machine(), "", Timestamp::from_ticks(0));
        partial.overlay(&template)?;
        Ok(partial)
    }

    fn overlay(&self, template: &Alert) -> Result<Alert, MdeError> {
        let mut alert =
            serde_json::to_value(template).map_err(|e| MdeError::internal(e.to_string()))?;
        for (key, value) in &self.given {
            let Some(slot) = alert.get_mut(key) else {
                return Err(MdeError::new(
                    ErrorCode::InvalidRequestBody,
                    format!("An alert has no property '{key}'."),
                ));
            };
            *slot = value.clone();
        }
        serde_path_to_error::deserialize(alert).map_err(|e| {
            MdeError::new(
                ErrorCode::InvalidRequestBody,
                format!("{}: {}", e.path(), e.inner()),
            )
        })
    }

    /// The alert on `machine` (as it is now), raised at `now`.
    pub fn alert(&self, machine: &Machine, tenant_id: &str, now: Timestamp) -> Alert {
        let template = new_alert(machine, tenant_id, now);
        // `read` checked that the given properties fit.
        let mut alert = self.overlay(&template).unwrap_or(template);
        for evidence in &mut alert.evidence {
            evidence.evidence_creation_time.get_or_insert(now);
        }
        alert
    }
}

fn stand_in_machine() -> Machine {
    Machine {
        id: String::new(),
        merged_into_machine_id: None,
        is_potential_duplication: false,
        is_excluded: false,
        exclusion_reason: None,
        computer_dns_name: String::new(),
        first_seen: Timestamp::from_ticks(0),
        last_seen: Timestamp::from_ticks(0),
        os_platform: palisade_contract::OsPlatform::Linux,
        os_version: None,
        os_processor: None,
        version: None,
        last_ip_address: None,
        last_external_ip_address: None,
        agent_version: None,
        os_build: None,
        health_status: palisade_contract::HealthStatus::Active,
        device_value: None,
        rbac_group_id: 0,
        rbac_group_name: None,
        risk_score: None,
        exposure_level: None,
        is_aad_joined: false,
        aad_device_id: None,
        machine_tags: vec![],
        defender_av_status: None,
        onboarding_status: palisade_contract::OnboardingStatus::Onboarded,
        os_architecture: None,
        managed_by: None,
        managed_by_status: None,
        ip_addresses: vec![],
        vm_metadata: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::alert::AlertClassification;

    fn alert() -> Alert {
        new_alert(&stand_in_machine(), "t", Timestamp::from_ticks(10))
    }

    #[test]
    fn a_partial_alert_takes_what_it_gives_and_names_what_does_not_fit() {
        let partial = Partial::read(serde_json::json!({
            "machineId": "m1", "title": "Suspicious", "severity": "High",
            "evidence": [{"entityType": "Ip", "ipAddress": "10.1.2.3"}],
            "id": "ignored"
        }))
        .unwrap();
        let raised = partial.alert(&stand_in_machine(), "t", Timestamp::from_ticks(5));
        assert_eq!(raised.severity, AlertSeverity::High);
        assert_eq!(raised.evidence[0].ip_address.as_deref(), Some("10.1.2.3"));
        assert_ne!(raised.id, "ignored");
        let wrong = Partial::read(serde_json::json!({"machineId": "m1", "severity": "Severe"}));
        assert!(wrong.unwrap_err().message.contains("severity"));
        let unknown = Partial::read(serde_json::json!({"machineId": "m1", "colour": 1}));
        assert!(unknown.unwrap_err().message.contains("colour"));
        assert!(Partial::read(serde_json::json!({"title": "x"})).is_err());
    }

    #[test]
    fn resolving_stamps_the_time_and_reopening_clears_it() {
        let update = |status| AlertUpdate {
            status: Some(status),
            ..AlertUpdate::default()
        };
        let now = Timestamp::from_ticks(50);
        let resolved = apply(&alert(), &update(AlertStatus::Resolved), "me", now);
        assert_eq!(resolved.resolved_time, Some(now));
        let again = apply(
            &resolved,
            &update(AlertStatus::Resolved),
            "me",
            Timestamp::from_ticks(60),
        );
        assert_eq!(again.resolved_time, Some(now), "resolved once");
        let reopened = apply(&resolved, &update(AlertStatus::InProgress), "me", now);
        assert_eq!(reopened.resolved_time, None);
    }

    #[test]
    fn a_comment_is_appended_with_its_author_and_the_rest_kept() {
        let update = AlertUpdate {
            classification: Some(AlertClassification::FalsePositive),
            comment: Some("checked".into()),
            ..AlertUpdate::default()
        };
        let changed = apply(
            &alert(),
            &update,
            "secop@contoso.com",
            Timestamp::from_ticks(70),
        );
        assert_eq!(changed.comments.len(), 1);
        assert_eq!(changed.comments[0].created_by, "secop@contoso.com");
        assert_eq!(
            changed.classification,
            Some(AlertClassification::FalsePositive)
        );
        assert_eq!(changed.status, AlertStatus::New);
    }

    #[test]
    fn an_update_of_nothing_and_the_unknown_status_are_refused() {
        assert!(validate_update(&AlertUpdate::default()).is_err());
        let unknown = AlertUpdate {
            status: Some(AlertStatus::Unknown),
            ..AlertUpdate::default()
        };
        assert!(validate_update(&unknown).is_err());
    }
}
