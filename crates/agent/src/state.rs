//! What the agent keeps on disk (`--state-dir`): its enrollment and the
//! isolation it must hold. Isolation is a desired state: it is re-applied at
//! every start (after a crash, a restart or a reboot) until a release succeeds.

use palisade_device::Isolation;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const ENROLLMENT: &str = "enrollment.json";
const ISOLATION: &str = "isolation.json";
const INDICATORS: &str = "indicators.json";
/// Left by an offboard. While it exists the agent does not enroll, though an
/// onboarding token is configured: a service manager starting the agent at
/// the next boot must not undo the offboard.
pub const OFFBOARDED: &str = "offboarded.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentState {
    pub server: String,
    pub tenant_id: String,
    pub machine_id: String,
    /// The device's own secret: the file is readable by its owner only.
    pub credential: String,
}

/// Which machine was offboarded, and when (RFC 3339), for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffboardedState {
    pub server: String,
    pub machine_id: String,
    pub offboarded_at: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationState {
    pub isolation: Isolation,
}

pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, owner-only) the state directory.
    pub fn open(dir: &Path) -> anyhow::Result<StateDir> {
        fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the state directory {}: {e}", dir.display())
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn read<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Replaces `name` atomically and durably: a crash leaves the old or the new file.
    fn write<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(value)?)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    pub fn enrollment(&self) -> anyhow::Result<Option<EnrollmentState>> {
        self.read(ENROLLMENT)
    }

    pub fn save_enrollment(&self, enrollment: &EnrollmentState) -> anyhow::Result<()> {
        self.write(ENROLLMENT, enrollment)
    }

    pub fn isolation(&self) -> anyhow::Result<Isolation> {
        Ok(self
            .read::<IsolationState>(ISOLATION)?
            .unwrap_or_default()
            .isolation)
    }

    pub fn save_isolation(&self, isolation: Isolation) -> anyhow::Result<()> {
        self.write(ISOLATION, &IsolationState { isolation })
    }

    /// The tenant's indicators as last received (enforced from the start,
    /// before the server is reached).
    pub fn indicators(&self) -> anyhow::Result<palisade_device::DeviceIndicators> {
        Ok(self.read(INDICATORS)?.unwrap_or_default())
    }

    pub fn save_indicators(
        &self,
        indicators: &palisade_device::DeviceIndicators,
    ) -> anyhow::Result<()> {
        self.write(INDICATORS, indicators)
    }

    /// Where an investigation package is collected before its upload (the
    /// state directory is root's alone, as what the package holds is).
    pub fn package_path(&self, action_id: &str) -> PathBuf {
        self.dir.join(format!("package-{action_id}.zip"))
    }

    /// Where quarantined files are kept.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    pub fn offboarded(&self) -> anyhow::Result<Option<OffboardedState>> {
        self.read(OFFBOARDED)
    }

    /// Where the offboard marker is (named to the operator).
    pub fn offboarded_path(&self) -> PathBuf {
        self.dir.join(OFFBOARDED)
    }

    /// Offboarding: the marker is written first (a crash after it still
    /// leaves the device offboarded), then the credential and the desired
    /// state go.
    pub fn end_enrollment(&self, offboarded: &OffboardedState) -> anyhow::Result<()> {
        self.write(OFFBOARDED, offboarded)?;
        for name in [ENROLLMENT, ISOLATION] {
            match fs::remove_file(self.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}
