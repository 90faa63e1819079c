//! Live-response sessions: which command leaves a result, how a device's
//! report of its commands is taken, and how a session the emulator ends
//! shows its commands.

use palisade_contract::live_response::{ActionCommand, CommandStatus};
use palisade_contract::{ActionStatus, ActionType, ErrorCode, MachineAction, MdeError, Timestamp};
use palisade_device::CommandOutcome;

/// Longest error text kept of a command (a device's is not trusted to be short).
pub const MAX_COMMAND_ERROR_CHARS: usize = 1_000;

/// Whether command `index` of the session leaves a result to upload.
pub fn has_result(action: &MachineAction, index: i64) -> bool {
    command_at(action, index).is_some_and(|c| c.command.command_type.has_result())
}

fn command_at(action: &MachineAction, index: i64) -> Option<&ActionCommand> {
    usize::try_from(index)
        .ok()
        .and_then(|i| action.commands.get(i))
}

/// The command whose result `GetLiveResponseResultDownloadLink(index=n)`
/// asks for: 400 for an action that is no session or a command that leaves
/// none, 404 while it is not Completed.
pub fn result_command(action: &MachineAction, index: i64) -> Result<&ActionCommand, MdeError> {
    if action.action_type != ActionType::LiveResponse {
        return Err(MdeError::invalid_input(
            "Provided Guid is not a valid id for a LiveResponse action",
        ));
    }
    let command = command_at(action, index).ok_or_else(|| {
        MdeError::invalid_input(format!(
            "Invalid input index: the action has {} commands, from index 0.",
            action.commands.len()
        ))
    })?;
    if !command.command.command_type.has_result() {
        return Err(MdeError::invalid_input(format!(
            "Command {index} is a {}, which has no result.",
            command.command.command_type
        )));
    }
    if command.command_status != CommandStatus::Completed {
        return Err(MdeError::new(
            ErrorCode::NotFound,
            format!(
                "Command {index} of action {} is {}: its result is there once it is Completed.",
                action.id, command.command_status
            ),
        ));
    }
    Ok(command)
}

/// The session's commands after its device reported `outcomes` and the
/// session `status`: a Succeeded session has every command Completed; a
/// command after a failed one was not carried out.
pub fn reported(
    action: &MachineAction,
    outcomes: &[CommandOutcome],
    status: ActionStatus,
) -> Result<Vec<ActionCommand>, MdeError> {
    let mut commands = action.commands.clone();
    let mut failed = false;
    for (position, outcome) in outcomes.iter().enumerate() {
        let command = commands
            .get_mut(outcome.index as usize)
            .filter(|_| outcome.index as usize == position)
            .ok_or_else(|| {
                MdeError::invalid_input(format!(
                    "Invalid input commands: outcome {position} is for command {}; outcomes come in the session's order, from 0.",
                    outcome.index
                ))
            })?;
        if failed || outcome.command_status == CommandStatus::Created {
            return Err(MdeError::invalid_input(
                "Invalid input commands: each is Completed or Failed, and none follows a Failed one.",
            ));
        }
        failed = outcome.command_status == CommandStatus::Failed;
        command.command_status = outcome.command_status;
        command.start_time = Some(outcome.start_time);
        command.end_time = Some(outcome.end_time);
        command.errors = outcome
            .errors
            .iter()
            .take(10)
            .map(|e| e.chars().take(MAX_COMMAND_ERROR_CHARS).collect())
            .collect();
    }
    let all_completed = commands
        .iter()
        .all(|c| c.command_status == CommandStatus::Completed);
    if status == ActionStatus::Succeeded && !all_completed {
        return Err(MdeError::invalid_input(
            "Invalid input: a session Succeeded only if every command Completed.",
        ));
    }
    Ok(commands)
}

/// The commands of a session the emulator moves to `status` at `at`:
/// Succeeded completes every one; Failed fails the first not completed
/// (the rest are not carried out).
pub fn ended(
    commands: &[ActionCommand],
    status: ActionStatus,
    at: Timestamp,
) -> Vec<ActionCommand> {
    let mut commands = commands.to_vec();
    match status {
        ActionStatus::Succeeded => {
            for command in &mut commands {
                command.command_status = CommandStatus::Completed;
                command.start_time.get_or_insert(at);
                command.end_time = Some(at);
            }
        }
        ActionStatus::Failed | ActionStatus::TimeOut => {
            let open = commands
                .iter_mut()
                .find(|c| c.command_status != CommandStatus::Completed);
            if let Some(command) = open {
                command.command_status = CommandStatus::Failed;
                command.start_time.get_or_insert(at);
                command.end_time = Some(at);
                command.errors = vec![format!("The session ended {status}.")];
            }
        }
        _ => {}
    }
    commands
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::live_response::{Command, CommandParam, CommandType};

    fn session(types: &[CommandType]) -> MachineAction {
        let commands = (0..)
            .zip(types)
            .map(|(index, t)| ActionCommand {
                index,
                start_time: None,
                end_time: None,
                command_status: CommandStatus::Created,
                errors: vec![],
                command: Command {
                    command_type: *t,
                    params: vec![CommandParam {
                        key: t.keys()[0].into(),
                        value: "x".into(),
                    }],
                },
            })
            .collect();
        let at = "2026-01-01T00:00:00Z";
        let mut action: MachineAction = serde_json::from_value(serde_json::json!({
            "id": "a", "type": "LiveResponse", "title": null, "requestor": "r",
            "requestorComment": null, "status": "InProgress", "machineId": "m",
            "computerDnsName": null, "creationDateTimeUtc": at, "lastUpdateDateTimeUtc": at,
            "cancellationRequestor": null, "cancellationComment": null,
            "cancellationDateTimeUtc": null, "errorHResult": 0, "scope": null,
            "externalId": null, "requestSource": "PublicApi", "relatedFileInfo": null,
            "commands": [], "troubleshootInfo": null
        }))
        .unwrap();
        action.commands = commands;
        action
    }

    fn outcome(index: u32, status: CommandStatus) -> CommandOutcome {
        let at = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        CommandOutcome {
            index,
            command_status: status,
            errors: vec![],
            start_time: at,
            end_time: at,
        }
    }

    #[test]
    fn a_failed_command_ends_the_session_and_the_rest_stay_created() {
        let action = session(&[
            CommandType::PutFile,
            CommandType::RunScript,
            CommandType::GetFile,
        ]);
        let outcomes = [
            outcome(0, CommandStatus::Completed),
            outcome(1, CommandStatus::Failed),
        ];
        let commands = reported(&action, &outcomes, ActionStatus::Failed).unwrap();
        let statuses: Vec<_> = commands.iter().map(|c| c.command_status).collect();
        use CommandStatus::*;
        assert_eq!(statuses, [Completed, Failed, Created]);
        assert!(reported(&action, &outcomes, ActionStatus::Succeeded).is_err());
        let out_of_order = [outcome(1, Completed)];
        assert!(reported(&action, &out_of_order, ActionStatus::Failed).is_err());
        let after_failure = [outcome(0, Failed), outcome(1, Completed)];
        assert!(reported(&action, &after_failure, ActionStatus::Failed).is_err());
    }

    #[test]
    fn only_completed_scripts_and_files_have_results() {
        let mut action = session(&[CommandType::PutFile, CommandType::RunScript]);
        assert!(!has_result(&action, 0) && has_result(&action, 1) && !has_result(&action, 2));
        assert_eq!(result_command(&action, 1).unwrap_err().status, 404);
        assert_eq!(result_command(&action, 0).unwrap_err().status, 400);
        assert_eq!(result_command(&action, -1).unwrap_err().status, 400);
        let at = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        action.commands = ended(&action.commands, ActionStatus::Succeeded, at);
        assert!(result_command(&action, 1).is_ok());
    }
}
