//! What an enrollment makes of a device's report: a new machine, or the
//! machine this hardware already has (until it is offboarded).

use crate::ids::new_machine_id;
use palisade_contract::{HealthStatus, Machine, MdeError, OnboardingStatus, Timestamp};
use palisade_device::EnrollRequest;

use super::device_report::{bounded, MAX_FIELD_CHARS};

const MAX_NAME_CHARS: usize = 255;

/// Checks a device's report before anything is stored.
pub fn validate(request: &EnrollRequest) -> Result<(), MdeError> {
    bounded("hardwareId", &request.hardware_id, MAX_FIELD_CHARS, true)?;
    bounded(
        "computerDnsName",
        &request.computer_dns_name,
        MAX_NAME_CHARS,
        true,
    )?;
    bounded(
        "agentVersion",
        &request.agent_version,
        MAX_FIELD_CHARS,
        true,
    )?;
    for (field, value) in [
        ("osVersion", &request.os_version),
        ("version", &request.version),
        ("osArchitecture", &request.os_architecture),
        ("lastExternalIpAddress", &request.last_external_ip_address),
    ] {
        if let Some(value) = value {
            bounded(field, value, MAX_FIELD_CHARS, false)?;
        }
    }
    super::device_report::validate_addresses(&request.ip_addresses)
}

/// The machine a first enrollment creates.
pub fn new_machine(request: &EnrollRequest, now: Timestamp) -> Machine {
    let last_ip_address = super::device_report::first_address(&request.ip_addresses);
    Machine {
        id: new_machine_id(),
        merged_into_machine_id: None,
        is_potential_duplication: false,
        is_excluded: false,
        exclusion_reason: None,
        computer_dns_name: request.computer_dns_name.clone(),
        first_seen: now,
        last_seen: now,
        os_platform: request.os_platform,
        os_version: request.os_version.clone(),
        os_processor: request
            .os_architecture
            .as_deref()
            .map(|a| if a == "32-bit" { "x86" } else { "x64" }.to_string()),
        version: request.version.clone(),
        last_ip_address,
        last_external_ip_address: request.last_external_ip_address.clone(),
        agent_version: Some(request.agent_version.clone()),
        os_build: request.os_build,
        health_status: HealthStatus::Active,
        device_value: Some(palisade_contract::DeviceValue::Normal),
        rbac_group_id: 0,
        rbac_group_name: None,
        risk_score: Some(palisade_contract::RiskScore::None),
        exposure_level: Some(palisade_contract::ExposureLevel::None),
        is_aad_joined: false,
        aad_device_id: None,
        machine_tags: vec![],
        defender_av_status: None,
        onboarding_status: OnboardingStatus::Onboarded,
        os_architecture: request.os_architecture.clone(),
        managed_by: Some("Palisade".into()),
        managed_by_status: Some("Success".into()),
        ip_addresses: request.ip_addresses.clone(),
        vm_metadata: None,
    }
}

/// An enrollment of hardware that already has a machine: the device's report
/// replaces what it reports, the rest (id, first seen, tags, value) stays.
pub fn merge(existing: &Machine, reported: &Machine) -> Machine {
    Machine {
        id: existing.id.clone(),
        first_seen: existing.first_seen,
        machine_tags: existing.machine_tags.clone(),
        device_value: existing.device_value,
        rbac_group_id: existing.rbac_group_id,
        rbac_group_name: existing.rbac_group_name.clone(),
        risk_score: existing.risk_score,
        exposure_level: existing.exposure_level,
        is_aad_joined: existing.is_aad_joined,
        aad_device_id: existing.aad_device_id.clone(),
        ..reported.clone()
    }
}

/// The same hardware enrolling again while its device is enrolled: the new
/// device takes over the machine (`merge`d with the new report) and keeps
/// the isolation in force; returns the machine and device to store.
pub fn take_over(
    previous: &crate::devices::Device,
    existing: &Machine,
    reported: &Machine,
    device: &crate::devices::Device,
) -> (Machine, crate::devices::Device) {
    let device = crate::devices::Device {
        machine_id: existing.id.clone(),
        isolation: previous.isolation,
        isolation_at: previous.isolation_at,
        ..device.clone()
    };
    (merge(existing, reported), device)
}
