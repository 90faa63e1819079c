//! What an audit entry is about: the machines whose visibility decides who
//! may read it (a user limited to device groups reads only entries about
//! machines of those groups, as every other read shows them only those).

use crate::access::Operation;

/// What an API change's entry names, from its operation and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// Not about a machine: shown to every caller who may read the log.
    Nothing,
    /// About these machines, as the request named them (an id, or another key).
    Machines(Vec<&'a str>),
    /// About the machine of this action.
    Action(&'a str),
    /// About the machines of these alerts.
    Alerts(Vec<&'a str>),
}

pub fn subject(operation: Operation, target: Option<&str>) -> Subject<'_> {
    use Operation::*;
    let Some(target) = target else {
        return Subject::Nothing;
    };
    match operation {
        UpdateMachine
        | TagMachine
        | SetDeviceValue
        | Isolate
        | Unisolate
        | Offboard
        | RestrictCodeExecution
        | UnrestrictCodeExecution
        | RunAntivirusScan
        | CollectInvestigationPackage
        | StopAndQuarantineFile
        | RunLiveResponse => Subject::Machines(vec![target]),
        // The bulk request's ids, as the gate records them.
        TagMachines => Subject::Machines(target.split(',').filter(|k| !k.is_empty()).collect()),
        CancelAction => Subject::Action(target),
        UpdateAlert | BatchUpdateAlerts => {
            Subject::Alerts(target.split(',').filter(|k| !k.is_empty()).collect())
        }
        CreateAlertByReference => Subject::Machines(vec![target]),
        // Indicators apply to the tenant's devices, not to one machine.
        SubmitIndicator | ImportIndicators | DeleteIndicator | BatchDeleteIndicators => {
            Subject::Nothing
        }
        // The library serves every machine of the tenant.
        UploadLibraryFile | DeleteLibraryFile => Subject::Nothing,
        // Reads are not audited.
        ListMachines
        | GetMachine
        | FindByTag
        | FindMachinesByIp
        | ListActions
        | ListMachineActions
        | GetAction
        | GetPackageUri
        | ListAlerts
        | GetAlert
        | GetAlertMachine
        | ListMachineAlerts
        | ListIndicators
        | ListAuditLog
        | GetLiveResponseResultDownloadLink
        | ListLibraryFiles
        | ListMachineSoftware
        | ListMachineLogonUsers => Subject::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_operations_are_about_their_machines_and_cancel_about_its_action() {
        assert_eq!(
            subject(Operation::Isolate, Some("ab")),
            Subject::Machines(vec!["ab"])
        );
        assert_eq!(
            subject(Operation::TagMachines, Some("a,b")),
            Subject::Machines(vec!["a", "b"])
        );
        assert_eq!(
            subject(Operation::CancelAction, Some("g")),
            Subject::Action("g")
        );
        assert_eq!(subject(Operation::Isolate, None), Subject::Nothing);
    }
}
