//! Which operating systems and client versions each action supports (contract §4).

use palisade_contract::requests::{ActionKind, IsolationType};
use palisade_contract::{ErrorCode, Machine, MdeError, OsPlatform};
use palisade_device::Capability;

/// What a machine on a supported platform must also have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Minimum {
    None,
    /// A Windows 10 feature release, checked on `osBuild` (e.g. 1703 is build 15063).
    WindowsRelease {
        release: &'static str,
        build: i64,
    },
    /// The macOS/Linux sensor version (`agentVersion`).
    SensorVersion(&'static str),
    /// Server 2012 R2/2016 with the unified agent (sensor 10.8xxx).
    UnifiedAgent,
}

const WIN10_1703: Minimum = Minimum::WindowsRelease {
    release: "1703",
    build: 15063,
};
const WIN10_1709: Minimum = Minimum::WindowsRelease {
    release: "1709",
    build: 16299,
};
const SENSOR_101_98_84: Minimum = Minimum::SensorVersion("101.98.84");
const UNIFIED_AGENT_VERSION: &str = "10.8000";

use Minimum::None as Any;
use OsPlatform::*;

const WINDOWS_SERVERS: [(OsPlatform, Minimum); 5] = [
    (WindowsServer2012R2, Any),
    (WindowsServer2016, Any),
    (WindowsServer2019, Any),
    (WindowsServer2022, Any),
    (WindowsServer2025, Any),
];

fn supported(kind: &ActionKind) -> Vec<(OsPlatform, Minimum)> {
    let mut table = match kind {
        ActionKind::Isolate(IsolationType::Selective) => vec![
            (Windows10, WIN10_1709),
            (Windows11, Any),
            (MacOs, SENSOR_101_98_84),
        ],
        ActionKind::Isolate(_) | ActionKind::Unisolate => vec![
            (Windows10, WIN10_1703),
            (Windows11, Any),
            (Linux, Any),
            (MacOs, SENSOR_101_98_84),
        ],
        ActionKind::Offboard => vec![
            (Windows10, WIN10_1703),
            (Windows11, Any),
            (WindowsServer2012R2, Minimum::UnifiedAgent),
            (WindowsServer2016, Minimum::UnifiedAgent),
            (WindowsServer2019, Any),
            (WindowsServer2022, Any),
            (WindowsServer2025, Any),
        ],
        ActionKind::RestrictCodeExecution | ActionKind::UnrestrictCodeExecution => vec![
            (Windows10, WIN10_1709),
            (Windows11, Any),
            (WindowsServer2019, Any),
            (WindowsServer2022, Any),
            (WindowsServer2025, Any),
        ],
        ActionKind::RunAntiVirusScan(_) => vec![
            (Windows10, WIN10_1709),
            (Windows11, Any),
            (MacOs, SENSOR_101_98_84),
            (Linux, SENSOR_101_98_84),
        ],
        ActionKind::CollectInvestigationPackage => vec![
            (Windows10, WIN10_1703),
            (Windows11, Any),
            (MacOs, Any),
            (Linux, Any),
        ],
        ActionKind::StopAndQuarantineFile { .. } => vec![(Windows10, WIN10_1703), (Windows11, Any)],
        // The live-response page: Windows 10 1709 on (with updates), 11,
        // Server 2019 on, macOS and Linux.
        ActionKind::LiveResponse(_) => vec![
            (Windows10, WIN10_1709),
            (Windows11, Any),
            (WindowsServer2019, Any),
            (WindowsServer2022, Any),
            (WindowsServer2025, Any),
            (MacOs, Any),
            (Linux, Any),
        ],
    };
    // Isolation (full and selective), its release, and collection work on every
    // Windows Server release.
    if matches!(
        kind,
        ActionKind::Isolate(_) | ActionKind::Unisolate | ActionKind::CollectInvestigationPackage
    ) {
        table.extend(WINDOWS_SERVERS);
    }
    table
}

/// Compares dotted version strings numerically ("101.98.84" < "101.100.1").
fn version_at_least(actual: &str, minimum: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(actual) >= parse(minimum)
}

/// Whether a device declaring `capabilities` carries out `kind` itself.
fn declared(capabilities: &[Capability], kind: &ActionKind) -> bool {
    let has = |c: Capability| capabilities.contains(&c);
    match kind {
        ActionKind::Isolate(IsolationType::Full) => has(Capability::FullIsolation),
        ActionKind::Isolate(IsolationType::Selective) => has(Capability::SelectiveIsolation),
        ActionKind::Unisolate => {
            has(Capability::FullIsolation) || has(Capability::SelectiveIsolation)
        }
        ActionKind::Offboard => has(Capability::Offboard),
        ActionKind::StopAndQuarantineFile { .. } => has(Capability::StopAndQuarantineFile),
        ActionKind::RunAntiVirusScan(_) => has(Capability::AntivirusScan),
        ActionKind::LiveResponse(_) => has(Capability::LiveResponse),
        _ => false,
    }
}

/// Refuses an action the machine's platform or client version cannot carry
/// out, unless its enrolled device declared it can (`capabilities`).
pub fn check(
    machine: &Machine,
    capabilities: &[Capability],
    kind: &ActionKind,
    action_name: &str,
) -> Result<(), MdeError> {
    if declared(capabilities, kind) {
        return Ok(());
    }
    if matches!(kind, ActionKind::Isolate(IsolationType::UnManagedDevice)) {
        // Containing an unmanaged device is done by the other devices: any OS will do.
        return Ok(());
    }
    let table = supported(kind);
    let Some((_, minimum)) = table.iter().find(|(p, _)| *p == machine.os_platform) else {
        return Err(MdeError::new(
            ErrorCode::OsPlatformNotSupported,
            format!(
                "OS Platform {} isn't supported for this action.",
                machine.os_platform
            ),
        ));
    };
    let (met, shown) = match *minimum {
        Minimum::None => (true, ""),
        Minimum::WindowsRelease { release, build } => {
            (machine.os_build.is_some_and(|b| b >= build), release)
        }
        Minimum::SensorVersion(v) => (
            machine
                .agent_version
                .as_deref()
                .is_some_and(|a| version_at_least(a, v)),
            v,
        ),
        Minimum::UnifiedAgent => (
            machine
                .agent_version
                .as_deref()
                .is_some_and(|a| version_at_least(a, UNIFIED_AGENT_VERSION)),
            UNIFIED_AGENT_VERSION,
        ),
    };
    if met {
        Ok(())
    } else {
        Err(MdeError::new(
            ErrorCode::ClientVersionNotSupported,
            format!("{action_name} is supported on client version {shown} and above."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("101.100.1", "101.98.84"));
        assert!(!version_at_least("101.9.99", "101.98.84"));
        assert!(version_at_least("10.8470.19041.2788", "10.8000"));
        assert!(!version_at_least("10.3720.14393.4046", "10.8000"));
    }
}
