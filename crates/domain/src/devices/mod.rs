//! The device plane: onboarding tokens, enrolled devices, their check-ins, and
//! the hand-over of machine actions to the devices that carry them out.

pub mod check_ins;
pub mod indicators;
mod plane;
pub mod secrets;
pub mod wakeups;

pub use plane::{DevicePlane, DEFAULT_CHECK_IN_INTERVAL_SECONDS, DELIVERY_HOLD_SECONDS};

use crate::rate_limit::Throttled;
use crate::store::StoreError;
use palisade_contract::{Machine, MachineAction, MdeError, Timestamp};
use palisade_device::{Capability, CheckIn, Isolation};

/// A tenant's token for enrolling devices; revoking it stops new enrollments only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnboardingToken {
    pub tenant_id: String,
    pub id: String,
    pub description: String,
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// An enrolled device: the credential it calls with and what it enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub tenant_id: String,
    pub machine_id: String,
    /// Identifies the credential (`pdc.{tenant}.{credential_id}.{secret}`).
    pub credential_id: String,
    pub credential_hash: String,
    pub hardware_id: String,
    pub onboarding_token_id: String,
    pub capabilities: Vec<Capability>,
    pub enrolled_at: Timestamp,
    /// Set when an offboard succeeded: the credential is dead from then on.
    pub offboarded_at: Option<Timestamp>,
    pub isolation: Isolation,
    /// When `isolation` was last set: an older check-in does not overwrite it.
    pub isolation_at: Timestamp,
}

impl Device {
    /// Enrolled and not offboarded: it speaks for its machine.
    pub fn is_enrolled(&self) -> bool {
        self.offboarded_at.is_none()
    }
}

/// Why a device's call (an enrollment, an alert) did not go through.
#[derive(Debug)]
pub enum DeviceRefusal {
    Refused(MdeError),
    /// The onboarding token enrolled as many devices as its limit allows
    /// for now, or the device raised as many alerts.
    Throttled(Throttled),
}

impl From<MdeError> for DeviceRefusal {
    fn from(error: MdeError) -> Self {
        DeviceRefusal::Refused(error)
    }
}

impl From<StoreError> for DeviceRefusal {
    fn from(error: StoreError) -> Self {
        DeviceRefusal::Refused(error.into())
    }
}

/// One device's latest check-in, waiting to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckInRecord {
    pub tenant_id: String,
    pub machine_id: String,
    pub at: Timestamp,
    pub report: CheckIn,
}

/// What a device's report on an action changes, written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceActionChange {
    pub action: MachineAction,
    /// The machine as it must be stored, when the outcome changes it.
    pub machine: Option<Machine>,
    /// The device as it must be stored, when the outcome changes it.
    pub device: Option<Device>,
}

/// Decides, from an action, its machine and its device, what the device's report changes.
pub type DeviceActionDecision = Box<
    dyn FnOnce(&MachineAction, &Machine, &Device) -> Result<DeviceActionChange, MdeError> + Send,
>;
