//! How a device moves a machine action on, and what the outcome does to its
//! machine and to the device itself.

use crate::devices::{Device, DeviceActionChange};
use palisade_contract::{
    ActionStatus, ActionType, ErrorCode, HealthStatus, Machine, MachineAction, MdeError,
    OnboardingStatus, Timestamp,
};
use palisade_device::hresult::E_FAIL;
use palisade_device::{isolation_after, ActionResult, Isolation};

/// Longest failure detail kept (a device's error text is not trusted to be short).
pub const MAX_DETAIL_CHARS: usize = 2_000;

fn already(action: &MachineAction) -> MdeError {
    MdeError::new(
        ErrorCode::BadRequest,
        format!("Action {} is already {}", action.id, action.status),
    )
}

/// What the machine's device, as stored now, declares it enforces: nothing
/// once it is offboarded (or if none is enrolled).
pub fn capabilities_in_force(stored: Option<Device>) -> Vec<palisade_device::Capability> {
    stored
        .filter(Device::is_enrolled)
        .map(|d| d.capabilities)
        .unwrap_or_default()
}

/// The machine's device as stored now, if `caller`'s credential still speaks
/// for it: an offboard or a re-enrollment since the request was
/// authenticated ends that credential's say (checked inside the transaction).
pub fn still_enrolled(stored: Option<Device>, caller: &Device) -> Result<Device, MdeError> {
    stored
        .filter(|d| d.credential_id == caller.credential_id && d.offboarded_at.is_none())
        .ok_or_else(|| {
            MdeError::new(
                ErrorCode::Unauthorized,
                "The device credential is no longer valid.",
            )
        })
}

/// Pending → InProgress. Starting an InProgress action again is allowed: an
/// agent that restarted mid-action resumes it.
pub fn start(action: &MachineAction, now: Timestamp) -> Result<MachineAction, MdeError> {
    match action.status {
        ActionStatus::Pending => Ok(MachineAction {
            status: ActionStatus::InProgress,
            last_update_date_time_utc: now,
            ..action.clone()
        }),
        ActionStatus::InProgress => Ok(action.clone()),
        _ => Err(already(action)),
    }
}

/// InProgress → Succeeded | Failed, with what success changes: isolation
/// state after isolate/unisolate; after offboard the machine is no longer
/// onboarded and the device's credential is dead.
pub fn finish(
    action: &MachineAction,
    machine: &Machine,
    device: &Device,
    result: &ActionResult,
    now: Timestamp,
) -> Result<DeviceActionChange, MdeError> {
    if !matches!(
        result.status,
        ActionStatus::Succeeded | ActionStatus::Failed
    ) {
        return Err(MdeError::invalid_input(format!(
            "Invalid input {} for status. Allowed values are: 'Succeeded', 'Failed'.",
            result.status
        )));
    }
    match action.status {
        ActionStatus::InProgress => {}
        ActionStatus::Pending => {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                format!("Action {} has not been started", action.id),
            ))
        }
        _ => return Err(already(action)),
    }
    let succeeded = result.status == ActionStatus::Succeeded;
    let commands = match action.action_type {
        ActionType::LiveResponse => {
            super::live_response::reported(action, &result.commands, result.status)?
        }
        _ => action.commands.clone(),
    };
    let detail = result
        .detail
        .as_ref()
        .map(|d| serde_json::Value::String(d.chars().take(MAX_DETAIL_CHARS).collect()));
    let finished = MachineAction {
        status: result.status,
        last_update_date_time_utc: now,
        error_h_result: match (succeeded, result.error_h_result) {
            (true, _) => 0,
            (false, Some(code)) if code != 0 => code,
            (false, _) => E_FAIL,
        },
        troubleshoot_info: detail,
        commands,
        ..action.clone()
    };
    let mut change = DeviceActionChange {
        action: finished,
        machine: None,
        device: None,
    };
    if !succeeded {
        return Ok(change);
    }
    if let Some(isolation) = isolation_after(action.action_type, action.scope.as_deref()) {
        change.device = Some(Device {
            isolation,
            isolation_at: now,
            ..device.clone()
        });
    }
    if action.action_type == ActionType::Offboard {
        change.device = Some(Device {
            offboarded_at: Some(now),
            isolation: Isolation::None,
            isolation_at: now,
            ..device.clone()
        });
    }
    change.machine = machine_after(&change.action, machine);
    Ok(change)
}

/// What `action`, as it now stands, changes on its machine (whoever carried
/// it out, a device or an outcome script): an offboard that succeeded leaves
/// it no longer onboarded, inactive. (Isolation is the device's state.)
pub fn machine_after(action: &MachineAction, machine: &Machine) -> Option<Machine> {
    (action.action_type == ActionType::Offboard && action.status == ActionStatus::Succeeded).then(
        || Machine {
            onboarding_status: OnboardingStatus::CanBeOnboarded,
            health_status: HealthStatus::Inactive,
            ..machine.clone()
        },
    )
}
