//! Machine actions: when one may be created, what it looks like, how it ends.

use crate::ids::new_action_id;
use palisade_contract::live_response::{ActionCommand, Command, CommandStatus};
use palisade_contract::requests::{ActionKind, ActionRequest, IsolationType};
use palisade_contract::{
    ActionStatus, ActionType, ErrorCode, Machine, MachineAction, MdeError, OnboardingStatus,
    RelatedFileInfo, Timestamp,
};
use palisade_device::Capability;

/// `requestSource` of every action created through the API.
pub const REQUEST_SOURCE: &str = "PublicApi";

pub fn action_type(kind: &ActionKind) -> ActionType {
    match kind {
        ActionKind::Isolate(_) => ActionType::Isolate,
        ActionKind::Unisolate => ActionType::Unisolate,
        ActionKind::Offboard => ActionType::Offboard,
        ActionKind::RestrictCodeExecution => ActionType::RestrictCodeExecution,
        ActionKind::UnrestrictCodeExecution => ActionType::UnrestrictCodeExecution,
        ActionKind::RunAntiVirusScan(_) => ActionType::RunAntiVirusScan,
        ActionKind::CollectInvestigationPackage => ActionType::CollectInvestigationPackage,
        ActionKind::StopAndQuarantineFile { .. } => ActionType::StopAndQuarantineFile,
        ActionKind::LiveResponse(_) => ActionType::LiveResponse,
    }
}

/// Checks every rule for creating `request` on `machine`, given its active
/// actions and what its enrolled device declared it can do, and returns the
/// new Pending action.
pub fn create(
    machine: &Machine,
    active: &[MachineAction],
    capabilities: &[Capability],
    request: &ActionRequest,
    requestor: &str,
    now: Timestamp,
) -> Result<MachineAction, MdeError> {
    let action_type = action_type(&request.kind);
    let unmanaged = matches!(
        request.kind,
        ActionKind::Isolate(IsolationType::UnManagedDevice)
    );
    if unmanaged && machine.onboarding_status == OnboardingStatus::Onboarded {
        return Err(MdeError::invalid_input(
            "Invalid input IsolationType: UnManagedDevice applies only to devices that are not onboarded.",
        ));
    }
    super::platform::check(machine, capabilities, &request.kind, action_type.as_str())?;
    // One active action per type: isolate blocks isolate, unisolate blocks unisolate,
    // and an isolate behind a pending unisolate is accepted and ordered after it.
    if active.iter().any(|a| a.action_type == action_type) {
        return Err(MdeError::new(
            ErrorCode::ActiveRequestAlreadyExists,
            "Action is already in progress",
        ));
    }
    let (scope, related_file_info) = match &request.kind {
        ActionKind::Isolate(isolation) => (Some(isolation.to_string()), None),
        ActionKind::RunAntiVirusScan(scan) => (Some(scan.to_string()), None),
        ActionKind::StopAndQuarantineFile { sha1 } => (
            None,
            Some(RelatedFileInfo {
                file_identifier: sha1.clone(),
                file_identifier_type: "Sha1".into(),
            }),
        ),
        _ => (None, None),
    };
    Ok(MachineAction {
        id: new_action_id(),
        action_type,
        title: request.labels.title.clone(),
        requestor: requestor.to_string(),
        requestor_comment: request.comment.clone(),
        status: ActionStatus::Pending,
        machine_id: machine.id.clone(),
        computer_dns_name: Some(machine.computer_dns_name.clone()),
        creation_date_time_utc: now,
        last_update_date_time_utc: now,
        cancellation_requestor: None,
        cancellation_comment: None,
        cancellation_date_time_utc: None,
        error_h_result: 0,
        scope,
        external_id: request.labels.external_id.clone(),
        request_source: REQUEST_SOURCE.into(),
        related_file_info,
        commands: match &request.kind {
            ActionKind::LiveResponse(commands) => created_commands(commands),
            _ => vec![],
        },
        troubleshoot_info: None,
    })
}

/// A new session's `commands`: each Created, none started.
fn created_commands(commands: &[Command]) -> Vec<ActionCommand> {
    (0..)
        .zip(commands)
        .map(|(index, command)| ActionCommand {
            index,
            start_time: None,
            end_time: None,
            command_status: CommandStatus::Created,
            errors: vec![],
            command: command.clone(),
        })
        .collect()
}

/// Cancels an action that has not reached a final state; the action itself changes.
pub fn cancel(
    action: &MachineAction,
    requestor: &str,
    comment: Option<String>,
    now: Timestamp,
) -> Result<MachineAction, MdeError> {
    if !action.status.is_active() {
        return Err(MdeError::new(
            ErrorCode::BadRequest,
            format!("Action {} is already {}", action.id, action.status),
        ));
    }
    Ok(MachineAction {
        status: ActionStatus::Cancelled,
        cancellation_requestor: Some(requestor.to_string()),
        cancellation_comment: comment,
        cancellation_date_time_utc: Some(now),
        last_update_date_time_utc: now,
        ..action.clone()
    })
}
