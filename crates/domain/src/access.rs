//! Who may do what: the MDE roles, and for each operation of the API the
//! application permission, delegated scope and user role it needs (contract
//! §4 table, §6.3, §7.1). This is the one table the HTTP layer, the OpenAPI
//! document and the tests read.

use crate::caller::{Caller, Principal};
use palisade_contract::{ErrorCode, MdeError, Permission};
use serde::{Deserialize, Serialize};

/// MDE role permissions a user can hold (contract §7.1).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
pub enum Role {
    /// Read-only access to machines and actions.
    #[serde(rename = "View data")]
    #[strum(serialize = "View data")]
    ViewData,
    /// Manage alerts, run scans, collect investigation packages, manage tags.
    #[serde(rename = "Alerts investigation")]
    #[strum(serialize = "Alerts investigation")]
    AlertsInvestigation,
    /// Take response actions: isolate, restrict, quarantine.
    #[serde(rename = "Active remediation actions")]
    #[strum(serialize = "Active remediation actions")]
    ActiveRemediationActions,
    /// Onboard and offboard devices, indicators, tags.
    #[serde(rename = "Manage security settings")]
    #[strum(serialize = "Manage security settings")]
    ManageSecuritySettings,
    /// Live response with scripts and files of the library, and the
    /// library itself.
    #[serde(rename = "Live response advanced")]
    #[strum(serialize = "Live response advanced")]
    LiveResponseAdvanced,
    /// Entra Global Administrator: every permission, every device group.
    #[serde(rename = "Global administrator")]
    #[strum(serialize = "Global administrator")]
    GlobalAdministrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Every operation of the management API (one per endpoint and method).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
pub enum Operation {
    ListMachines,
    GetMachine,
    FindByTag,
    FindMachinesByIp,
    UpdateMachine,
    TagMachine,
    TagMachines,
    SetDeviceValue,
    Isolate,
    Unisolate,
    Offboard,
    RestrictCodeExecution,
    UnrestrictCodeExecution,
    RunAntivirusScan,
    CollectInvestigationPackage,
    StopAndQuarantineFile,
    ListActions,
    ListMachineActions,
    GetAction,
    CancelAction,
    GetPackageUri,
    ListMachineSoftware,
    ListMachineLogonUsers,
    RunLiveResponse,
    GetLiveResponseResultDownloadLink,
    ListLibraryFiles,
    UploadLibraryFile,
    DeleteLibraryFile,
    ListAlerts,
    GetAlert,
    UpdateAlert,
    BatchUpdateAlerts,
    CreateAlertByReference,
    GetAlertMachine,
    ListMachineAlerts,
    ListIndicators,
    SubmitIndicator,
    ImportIndicators,
    DeleteIndicator,
    BatchDeleteIndicators,
    ListAuditLog,
}

/// What a caller needs for one operation: any one of `app` (application
/// tokens) or any one of `delegated` (user tokens) and then any one of `roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub app: &'static [Permission],
    pub delegated: &'static [Permission],
    pub roles: &'static [Role],
}

use Permission as P;
use Role as R;

const READ_APP: &[Permission] = &[P::MachineReadAll, P::MachineReadWriteAll];
const READ_DELEGATED: &[Permission] = &[P::MachineRead, P::MachineReadWrite];
const VIEW: &[Role] = &[R::ViewData];
/// The tag pages ask for "Manage security setting", the roles page puts tags
/// under "Alerts investigation": either will do (contract §7.1).
const MANAGE_MACHINE: &[Role] = &[R::ManageSecuritySettings, R::AlertsInvestigation];
const REMEDIATE: &[Role] = &[R::ActiveRemediationActions];
/// MDE's roles page: scripts and library files need advanced live response.
const LIVE_RESPONSE: &[Role] = &[R::LiveResponseAdvanced];
const ALERT_READ_APP: &[Permission] = &[P::AlertReadAll, P::AlertReadWriteAll];
const ALERT_READ_DELEGATED: &[Permission] = &[P::AlertRead, P::AlertReadWrite];
const INDICATORS_APP: &[Permission] = &[P::TiReadWrite, P::TiReadWriteAll];
/// Indicators: "Manage security settings" (the roles page) or "Active
/// remediation actions" ("manage allowed/blocked lists ... and indicators").
const MANAGE_INDICATORS: &[Role] = &[R::ManageSecuritySettings, R::ActiveRemediationActions];
const ACTION_PERMISSIONS: &[Permission] = &[
    P::MachineIsolate,
    P::MachineRestrictExecution,
    P::MachineScan,
    P::MachineCollectForensics,
    P::MachineOffboard,
    P::MachineStopAndQuarantine,
    P::MachineLiveResponse,
];

const fn same(permissions: &'static [Permission], roles: &'static [Role]) -> Requirement {
    Requirement {
        app: permissions,
        delegated: permissions,
        roles,
    }
}

impl Operation {
    pub fn requirement(self) -> Requirement {
        use Operation::*;
        match self {
            ListMachines | GetMachine | FindByTag | FindMachinesByIp | ListActions
            | ListMachineActions | GetAction | GetAlertMachine => Requirement {
                app: READ_APP,
                delegated: READ_DELEGATED,
                roles: VIEW,
            },
            UpdateMachine | TagMachine | TagMachines | SetDeviceValue => Requirement {
                app: &[P::MachineReadWriteAll],
                delegated: &[P::MachineReadWrite],
                roles: MANAGE_MACHINE,
            },
            Isolate | Unisolate => same(&[P::MachineIsolate], REMEDIATE),
            // The offboard page: "The user needs 'Global Admin' AD role".
            Offboard => same(&[P::MachineOffboard], &[R::GlobalAdministrator]),
            RestrictCodeExecution | UnrestrictCodeExecution => {
                same(&[P::MachineRestrictExecution], REMEDIATE)
            }
            // The scan page asks for remediation, the roles page lists scans under investigation.
            RunAntivirusScan => same(
                &[P::MachineScan],
                &[R::ActiveRemediationActions, R::AlertsInvestigation],
            ),
            CollectInvestigationPackage => {
                same(&[P::MachineCollectForensics], &[R::AlertsInvestigation])
            }
            StopAndQuarantineFile => same(&[P::MachineStopAndQuarantine], REMEDIATE),
            // The package page: Machine.Read.All or Machine.ReadWrite.All;
            // delegated, Machine.CollectForensics and "Alerts investigation".
            GetPackageUri => Requirement {
                app: READ_APP,
                delegated: &[P::MachineCollectForensics],
                roles: &[R::AlertsInvestigation],
            },
            ListMachineSoftware => Requirement {
                app: &[P::SoftwareReadAll],
                delegated: &[P::SoftwareRead],
                roles: VIEW,
            },
            ListMachineLogonUsers => same(&[P::UserReadAll], VIEW),
            RunLiveResponse => same(&[P::MachineLiveResponse], LIVE_RESPONSE),
            // The result page: Machine.Read.All or Machine.ReadWrite.All;
            // delegated, Machine.LiveResponse.
            GetLiveResponseResultDownloadLink => Requirement {
                app: READ_APP,
                delegated: &[P::MachineLiveResponse],
                roles: LIVE_RESPONSE,
            },
            ListLibraryFiles | UploadLibraryFile | DeleteLibraryFile => {
                same(&[P::LibraryManage], LIVE_RESPONSE)
            }
            // MDE is silent: whoever may create actions may cancel them.
            CancelAction => same(
                ACTION_PERMISSIONS,
                &[R::ActiveRemediationActions, R::AlertsInvestigation],
            ),
            ListAlerts | GetAlert | ListMachineAlerts => Requirement {
                app: ALERT_READ_APP,
                delegated: ALERT_READ_DELEGATED,
                roles: VIEW,
            },
            UpdateAlert | BatchUpdateAlerts | CreateAlertByReference => Requirement {
                app: &[P::AlertReadWriteAll],
                delegated: &[P::AlertReadWrite],
                roles: &[R::AlertsInvestigation],
            },
            ListIndicators => Requirement {
                app: INDICATORS_APP,
                delegated: &[P::TiReadWrite],
                roles: VIEW,
            },
            // The delete pages name no delegated permission; Palisade takes
            // the one the other indicator pages name.
            SubmitIndicator | ImportIndicators | DeleteIndicator | BatchDeleteIndicators => {
                Requirement {
                    app: INDICATORS_APP,
                    delegated: &[P::TiReadWrite],
                    roles: MANAGE_INDICATORS,
                }
            }
            // Palisade's own: who did what is for those who administer security.
            ListAuditLog => Requirement {
                app: &[P::MachineReadWriteAll],
                delegated: READ_DELEGATED,
                roles: &[R::ManageSecuritySettings],
            },
        }
    }

    /// Operations that change state; each is written to the audit log.
    pub fn is_mutation(self) -> bool {
        use Operation::*;
        !matches!(
            self,
            ListMachines
                | GetMachine
                | FindByTag
                | FindMachinesByIp
                | ListActions
                | ListMachineActions
                | GetAction
                | GetPackageUri
                | GetLiveResponseResultDownloadLink
                | ListLibraryFiles
                | ListMachineSoftware
                | ListMachineLogonUsers
                | ListAlerts
                | GetAlert
                | GetAlertMachine
                | ListMachineAlerts
                | ListIndicators
                | ListAuditLog
        )
    }

    /// The limits MDE's page for the operation gives where they are not the
    /// usual 100 calls a minute and 1,500 an hour (contract §4; the pages
    /// that give a minute's limit only keep the usual hour's).
    pub fn own_rate_limits(self) -> Option<crate::rate_limit::RateLimits> {
        use crate::rate_limit::RateLimits;
        let limits = |per_minute, per_hour| {
            Some(RateLimits {
                per_minute,
                per_hour,
            })
        };
        match self {
            Operation::BatchUpdateAlerts => limits(10, 500),
            Operation::GetPackageUri => limits(2, 120),
            Operation::RunLiveResponse => limits(10, 1_500),
            Operation::CreateAlertByReference => limits(15, 1_500),
            Operation::ImportIndicators | Operation::BatchDeleteIndicators => limits(30, 1_500),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The operation named `name` in any case, with or without underscores:
    /// `run_antivirus_scan` (an OpenAPI operation id) is `RunAntivirusScan`.
    pub fn from_name(name: &str) -> Option<Operation> {
        let plain = |s: &str| s.replace('_', "").to_ascii_lowercase();
        let wanted = plain(name);
        <Operation as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|op| plain(op.name()) == wanted)
    }
}

impl Caller {
    /// Refuses (403 `Forbidden`) a caller without the permission, scope or role `operation` needs.
    pub fn authorize(&self, operation: Operation) -> Result<(), MdeError> {
        let requirement = operation.requirement();
        let forbidden = |what: String| {
            Err(MdeError::new(
                ErrorCode::Forbidden,
                format!("{what} is required to call {}.", operation.name()),
            ))
        };
        let has_any = |needed: &[Permission]| needed.iter().any(|p| self.permissions.contains(p));
        match &self.principal {
            Principal::App { .. } => {
                if !has_any(requirement.app) {
                    return forbidden(format!(
                        "The application permission {}",
                        one_of(requirement.app.iter().map(|p| p.as_str()))
                    ));
                }
            }
            Principal::User { roles, .. } => {
                if !has_any(requirement.delegated) {
                    return forbidden(format!(
                        "The delegated permission (scope) {}",
                        one_of(requirement.delegated.iter().map(|p| p.as_str()))
                    ));
                }
                let has_role = roles.contains(&Role::GlobalAdministrator)
                    || requirement.roles.iter().any(|r| roles.contains(r));
                if !has_role {
                    return forbidden(format!(
                        "The user role {}",
                        one_of(requirement.roles.iter().map(|r| r.as_str()))
                    ));
                }
            }
        }
        Ok(())
    }
}

fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("'{n}'")).collect();
    match names.len() {
        1 => names[0].clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}
