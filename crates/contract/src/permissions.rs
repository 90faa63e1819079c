//! The WindowsDefenderATP permissions of the machine, alert and indicator
//! surfaces (contract §6.3), as they appear in a token's `roles`
//! (application) or `scp` (delegated) claim.

use crate::machine::wire_enum;

wire_enum!(
    /// One permission value, spelled as Entra ID puts it into tokens.
    Permission {
        #[serde(rename = "Machine.Read.All")]
        #[strum(serialize = "Machine.Read.All")]
        MachineReadAll,
        #[serde(rename = "Machine.ReadWrite.All")]
        #[strum(serialize = "Machine.ReadWrite.All")]
        MachineReadWriteAll,
        #[serde(rename = "Machine.Read")]
        #[strum(serialize = "Machine.Read")]
        MachineRead,
        #[serde(rename = "Machine.ReadWrite")]
        #[strum(serialize = "Machine.ReadWrite")]
        MachineReadWrite,
        #[serde(rename = "Machine.Isolate")]
        #[strum(serialize = "Machine.Isolate")]
        MachineIsolate,
        #[serde(rename = "Machine.RestrictExecution")]
        #[strum(serialize = "Machine.RestrictExecution")]
        MachineRestrictExecution,
        #[serde(rename = "Machine.Scan")]
        #[strum(serialize = "Machine.Scan")]
        MachineScan,
        #[serde(rename = "Machine.CollectForensics")]
        #[strum(serialize = "Machine.CollectForensics")]
        MachineCollectForensics,
        #[serde(rename = "Machine.Offboard")]
        #[strum(serialize = "Machine.Offboard")]
        MachineOffboard,
        #[serde(rename = "Machine.StopAndQuarantine")]
        #[strum(serialize = "Machine.StopAndQuarantine")]
        MachineStopAndQuarantine,
        #[serde(rename = "Machine.LiveResponse")]
        #[strum(serialize = "Machine.LiveResponse")]
        MachineLiveResponse,
        /// Upload, list and delete live-response library files.
        #[serde(rename = "Library.Manage")]
        #[strum(serialize = "Library.Manage")]
        LibraryManage,
        /// Software inventory (vulnerability management), tenant-wide.
        #[serde(rename = "Software.Read.All")]
        #[strum(serialize = "Software.Read.All")]
        SoftwareReadAll,
        #[serde(rename = "Software.Read")]
        #[strum(serialize = "Software.Read")]
        SoftwareRead,
        /// The users who logged on to machines.
        #[serde(rename = "User.Read.All")]
        #[strum(serialize = "User.Read.All")]
        UserReadAll,
        #[serde(rename = "Alert.Read.All")]
        #[strum(serialize = "Alert.Read.All")]
        AlertReadAll,
        #[serde(rename = "Alert.ReadWrite.All")]
        #[strum(serialize = "Alert.ReadWrite.All")]
        AlertReadWriteAll,
        #[serde(rename = "Alert.Read")]
        #[strum(serialize = "Alert.Read")]
        AlertRead,
        #[serde(rename = "Alert.ReadWrite")]
        #[strum(serialize = "Alert.ReadWrite")]
        AlertReadWrite,
        /// An app's own indicators (application), or the user's (delegated).
        #[serde(rename = "Ti.ReadWrite")]
        #[strum(serialize = "Ti.ReadWrite")]
        TiReadWrite,
        /// Every indicator of the tenant.
        #[serde(rename = "Ti.ReadWrite.All")]
        #[strum(serialize = "Ti.ReadWrite.All")]
        TiReadWriteAll,
    }
);

impl Permission {
    /// The form this permission takes in a delegated (`scp`) token: the
    /// tenant-wide `.All` read permissions have user-bound twins, the action
    /// permissions keep their name.
    pub fn delegated(self) -> Permission {
        match self {
            Permission::MachineReadAll => Permission::MachineRead,
            Permission::MachineReadWriteAll => Permission::MachineReadWrite,
            Permission::AlertReadAll => Permission::AlertRead,
            Permission::AlertReadWriteAll => Permission::AlertReadWrite,
            Permission::TiReadWriteAll => Permission::TiReadWrite,
            Permission::SoftwareReadAll => Permission::SoftwareRead,
            other => other,
        }
    }

    /// Whether an app can hold it as an application permission (`roles`).
    pub fn is_application(self) -> bool {
        !matches!(
            self,
            Permission::MachineRead
                | Permission::MachineReadWrite
                | Permission::SoftwareRead
                | Permission::AlertRead
                | Permission::AlertReadWrite
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn permissions_read_and_print_as_in_tokens() {
        for p in <Permission as strum::VariantArray>::VARIANTS {
            assert_eq!(Permission::from_str(p.as_str()).unwrap(), *p);
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!(
            Permission::from_str("machine.isolate").is_err(),
            "exact case"
        );
        assert_eq!(
            Permission::MachineReadWriteAll.delegated(),
            Permission::MachineReadWrite
        );
    }
}
