//! What a device's check-in changes on its machine.

use crate::devices::{CheckInRecord, Device};
use palisade_contract::{ErrorCode, IpAddress, Machine, MdeError};
use palisade_device::CheckIn;

/// Longest free-text field a device reports (versions, names, addresses).
pub const MAX_FIELD_CHARS: usize = 128;

/// Refuses a reported field that is too long, has control characters, or
/// (when `required`) is blank.
pub fn bounded(field: &str, value: &str, max: usize, required: bool) -> Result<(), MdeError> {
    let length = value.chars().count();
    if (required && value.trim().is_empty()) || length > max || value.chars().any(char::is_control)
    {
        return Err(MdeError::new(
            ErrorCode::InvalidInput,
            format!("Invalid input {field}: 1 to {max} characters without control characters."),
        ));
    }
    Ok(())
}

/// Checks a check-in before it is kept: every field it stores is bounded.
pub fn validate(report: &CheckIn) -> Result<(), MdeError> {
    for (field, value) in [
        ("lastIpAddress", &report.last_ip_address),
        ("lastExternalIpAddress", &report.last_external_ip_address),
        ("agentVersion", &report.agent_version),
    ] {
        if let Some(value) = value {
            bounded(field, value, MAX_FIELD_CHARS, false)?;
        }
    }
    validate_addresses(&report.ip_addresses)
}

const MAX_ADDRESSES: usize = 64;
const MAX_ADDRESS_CHARS: usize = 64;

pub fn validate_addresses(addresses: &[IpAddress]) -> Result<(), MdeError> {
    let too_long = |s: &str| s.len() > MAX_ADDRESS_CHARS || s.chars().any(char::is_control);
    if addresses.len() > MAX_ADDRESSES
        || addresses.iter().any(|a| {
            too_long(&a.ip_address)
                || too_long(&a.kind)
                || too_long(&a.operational_status)
                || a.mac_address.as_deref().is_some_and(too_long)
        })
    {
        return Err(MdeError::new(
            ErrorCode::InvalidInput,
            format!("Invalid input ipAddresses: at most {MAX_ADDRESSES} entries of at most {MAX_ADDRESS_CHARS} characters."),
        ));
    }
    Ok(())
}

/// The address MDE shows as `lastIpAddress`: the first one up that is not loopback.
pub fn first_address(addresses: &[IpAddress]) -> Option<String> {
    addresses
        .iter()
        .find(|a| a.kind != "SoftwareLoopback" && a.operational_status == "Up")
        .map(|a| a.ip_address.clone())
}

/// Applies a check-in to the machine and device it came from; returns false,
/// changing nothing, for a device that was offboarded since.
pub fn apply(machine: &mut Machine, device: &mut Device, record: &CheckInRecord) -> bool {
    if device.offboarded_at.is_some() {
        return false;
    }
    let report = &record.report;
    // An action's outcome set after this check-in was sent is newer than its report.
    if record.at >= device.isolation_at {
        device.isolation = report.isolation;
        device.isolation_at = record.at;
    }
    if record.at > machine.last_seen {
        machine.last_seen = record.at;
    }
    if !report.ip_addresses.is_empty() {
        machine.ip_addresses = report.ip_addresses.clone();
    }
    if let Some(address) = report
        .last_ip_address
        .clone()
        .or_else(|| first_address(&report.ip_addresses))
    {
        machine.last_ip_address = Some(address);
    }
    if report.last_external_ip_address.is_some() {
        machine.last_external_ip_address = report.last_external_ip_address.clone();
    }
    if let Some(status) = report.health_status {
        machine.health_status = status;
    }
    if report.agent_version.is_some() {
        machine.agent_version = report.agent_version.clone();
    }
    true
}
