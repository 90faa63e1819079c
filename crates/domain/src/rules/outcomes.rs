//! How an outcome rule carries an action of a machine without an enrolled
//! device through its script (`control-plane.md`): which rule takes an
//! action, and what each step does to the action and its machine, as the
//! device's report would (`device_actions`).

use crate::control::{ScriptRun, StoredOutcomeRule};
use crate::rules::device_actions::machine_after;
use palisade_contract::control::{OutcomeMatch, OutcomeStep};
use palisade_contract::{ActionStatus, Machine, MachineAction, Timestamp};
use palisade_device::hresult::E_FAIL;

/// Whether `rule` takes actions like `action` on `machine`.
pub fn matches(rule: &OutcomeMatch, action: &MachineAction, machine: &Machine) -> bool {
    let name = &machine.computer_dns_name;
    rule.action_type.is_none_or(|t| t == action.action_type)
        && rule.machine_id.as_ref().is_none_or(|id| *id == machine.id)
        && rule.name_prefix.as_ref().is_none_or(|prefix| {
            name.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        })
        && rule
            .tag
            .as_ref()
            .is_none_or(|tag| machine.machine_tags.contains(tag))
        && rule.os_platform.is_none_or(|os| os == machine.os_platform)
}

/// The first of `rules` (in order) that takes `action`.
pub fn first_match<'r>(
    rules: &'r [StoredOutcomeRule],
    action: &MachineAction,
    machine: &Machine,
) -> Option<&'r StoredOutcomeRule> {
    rules.iter().find(|r| matches(&r.matches, action, machine))
}

/// What a script does at a moment: the run as it goes on (none once the
/// action is done with it), and the action and machine as they become.
#[derive(Debug, Clone, PartialEq)]
pub struct Scripted {
    pub run: Option<ScriptRun>,
    pub action: MachineAction,
    /// The machine, if the step changed it.
    pub machine: Option<Machine>,
}

/// A new action taken by `rule`: at its first step from `now` (a step that
/// holds nothing passes on at once).
pub fn begin(
    rule: &StoredOutcomeRule,
    action: &MachineAction,
    machine: &Machine,
    now: Timestamp,
) -> Scripted {
    let run = ScriptRun {
        tenant_id: rule.tenant_id.clone(),
        action_id: action.id.clone(),
        machine_id: machine.id.clone(),
        script: rule.script.clone(),
        step: 0,
        step_started: now,
        step_polls: 0,
        due_at: None,
    };
    let entered = enter(run, action, machine, None, now, now);
    advance(entered, machine, now)
}

/// The action's run as stored, with the action as stored: done with if the
/// action ended otherwise meanwhile (a cancel).
pub fn resume(run: ScriptRun, action: &MachineAction) -> Scripted {
    Scripted {
        run: action.status.is_active().then_some(run),
        action: action.clone(),
        machine: None,
    }
}

/// `scripted` moved on to `now`, past every step whose duration or polls
/// are spent; each step timed from when its predecessor ended, but stamped
/// `now` (`lastUpdateDateTimeUtc`: a client polling for changes since its
/// last poll must not miss one). `machine` is the action's machine as stored.
pub fn advance(mut scripted: Scripted, machine: &Machine, now: Timestamp) -> Scripted {
    while let Some(run) = &scripted.run {
        let step = &run.script[run.step as usize];
        let last = run.step as usize + 1 == run.script.len();
        let ends_at = step
            .duration
            .map(|d| run.step_started.plus_millis(d.millis()));
        let by_time = ends_at.filter(|at| *at <= now);
        let by_polls = step.polls.is_some_and(|n| run.step_polls >= n);
        if last || (by_time.is_none() && !by_polls) {
            break;
        }
        let at = by_time.unwrap_or(now);
        let next = ScriptRun {
            step: run.step + 1,
            step_started: at,
            step_polls: 0,
            ..run.clone()
        };
        scripted = enter(next, &scripted.action, machine, scripted.machine, at, now);
    }
    scripted
}

/// An action read by a client at its current step (what it read is the
/// action before this): counted, and moved on at once if that was the last
/// read its step holds for, so that what is stored is what the next read
/// shows (and what a list's filter compares).
pub fn polled(mut scripted: Scripted, machine: &Machine, now: Timestamp) -> Scripted {
    if let Some(run) = &mut scripted.run {
        run.step_polls = run.step_polls.saturating_add(1);
    }
    advance(scripted, machine, now)
}

/// `run` at its step, timed from `at`, stamped `now`: the action takes the
/// step's status, and the machine (`machine` as stored, `changed` by an
/// earlier step) what that means for it.
fn enter(
    mut run: ScriptRun,
    action: &MachineAction,
    machine: &Machine,
    changed: Option<Machine>,
    at: Timestamp,
    now: Timestamp,
) -> Scripted {
    let step = &run.script[run.step as usize];
    let action = action_at_step(action, step, now);
    let machine = machine_after(&action, changed.as_ref().unwrap_or(machine)).or(changed);
    let last = run.step as usize + 1 == run.script.len();
    run.due_at = match last {
        true => None,
        false => step.duration.map(|d| at.plus_millis(d.millis())),
    };
    // A final status ends the run; a last step still open holds for ever.
    Scripted {
        run: action.status.is_active().then_some(run),
        action,
        machine,
    }
}

/// The action at `step`, from `at`.
fn action_at_step(action: &MachineAction, step: &OutcomeStep, at: Timestamp) -> MachineAction {
    let mut next = MachineAction {
        status: step.status,
        last_update_date_time_utc: at,
        ..action.clone()
    };
    match step.status {
        ActionStatus::Succeeded => next.error_h_result = 0,
        ActionStatus::Failed => {
            next.error_h_result = step.error_h_result.filter(|c| *c != 0).unwrap_or(E_FAIL);
        }
        ActionStatus::Cancelled => next.cancellation_date_time_utc = Some(at),
        _ => {}
    }
    if let Some(info) = &step.troubleshoot_info {
        next.troubleshoot_info = Some(serde_json::Value::String(info.clone()));
    }
    next.commands = super::live_response::ended(&next.commands, step.status, at);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::control::OutcomeMatch;
    use palisade_contract::{ActionType, OsPlatform};

    fn action(kind: ActionType) -> MachineAction {
        MachineAction {
            id: "a".into(),
            action_type: kind,
            title: None,
            requestor: "r".into(),
            requestor_comment: None,
            status: ActionStatus::Pending,
            machine_id: "m".into(),
            computer_dns_name: None,
            creation_date_time_utc: Timestamp::now(),
            last_update_date_time_utc: Timestamp::now(),
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
        }
    }

    #[test]
    fn a_rule_matches_when_every_field_it_gives_holds() {
        let mut request = crate::rules::enrollment::tests::request("WS-0042.contoso.test");
        request.os_platform = OsPlatform::Windows11;
        let mut machine = crate::rules::enrollment::new_machine(&request, Timestamp::now());
        machine.id = "m".into();
        machine.machine_tags = vec!["VIP".into()];
        let isolate = action(ActionType::Isolate);
        let rule =
            |json: serde_json::Value| -> OutcomeMatch { serde_json::from_value(json).unwrap() };
        let holds = [
            rule(serde_json::json!({})),
            rule(serde_json::json!({"namePrefix": "ws-00"})),
            rule(serde_json::json!({"tag": "VIP", "actionType": "Isolate"})),
            rule(serde_json::json!({"machineId": "m", "osPlatform": "Windows11"})),
        ];
        for r in &holds {
            assert!(matches(r, &isolate, &machine), "{r:?}");
        }
        let fails = [
            rule(serde_json::json!({"namePrefix": "ws-01"})),
            rule(serde_json::json!({"tag": "vip"})),
            rule(serde_json::json!({"actionType": "Offboard"})),
            rule(serde_json::json!({"machineId": "n"})),
            rule(serde_json::json!({"osPlatform": "Linux", "tag": "VIP"})),
            rule(serde_json::json!({"namePrefix": "WS-0042.contoso.test.longer"})),
        ];
        for r in &fails {
            assert!(!matches(r, &isolate, &machine), "{r:?}");
        }
        machine.os_platform = OsPlatform::Linux;
        assert!(matches(&fails[4], &isolate, &machine));
    }
}
