//! What an enrollment makes of a device's report: a new machine, or, for a
//! device presenting its own credential, its machine updated in place.
//!
//! Holding a tenant's onboarding token says nothing about which device one
//! is: anyone with it could report an enrolled device's hardware id. So the
//! hardware id alone never hands an existing machine over (its credential,
//! its pending actions): only the device's current credential does. Known
//! hardware enrolling without it becomes a new machine marked as a potential
//! duplicate, as MDE marks a re-onboarded device, and the existing machine
//! and its device stay as they are.

use crate::devices::Device;
use crate::ids::new_machine_id;
use palisade_contract::{HealthStatus, Machine, MdeError, OnboardingStatus, Timestamp};
use palisade_device::EnrollRequest;

use super::device_report::{bounded, MAX_FIELD_CHARS};

const MAX_NAME_CHARS: usize = 255;

/// `managedBy` of a machine a device enrolled: it reports its own state (and inventory).
pub const MANAGED_BY: &str = "Palisade";

/// Whether a device enrolled the machine (it reports its own inventory and results).
pub fn is_device_machine(machine: &palisade_contract::Machine) -> bool {
    machine.managed_by.as_deref() == Some(MANAGED_BY)
}

/// Checks a device's report before anything is stored.
pub fn validate(request: &EnrollRequest) -> Result<(), MdeError> {
    bounded("hardwareId", &request.hardware_id, MAX_FIELD_CHARS, true)?;
    if let Some(credential) = &request.credential {
        bounded("credential", credential, MAX_FIELD_CHARS, true)?;
    }
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
        managed_by: Some(MANAGED_BY.into()),
        managed_by_status: Some("Success".into()),
        ip_addresses: request.ip_addresses.clone(),
        vm_metadata: None,
    }
}

/// An enrollment of the device that owns `existing`: the device's report
/// replaces what it reports, the rest (id, first seen, tags, value, group,
/// whether it is a potential duplicate) stays.
pub fn merge(existing: &Machine, reported: &Machine) -> Machine {
    Machine {
        id: existing.id.clone(),
        merged_into_machine_id: existing.merged_into_machine_id.clone(),
        is_potential_duplication: existing.is_potential_duplication,
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

/// What the store found enrolled when a device enrolls.
pub struct Enrolled<'a> {
    /// The enrolled (not offboarded) device whose credential the enrolling
    /// device presented, with its machine.
    pub presenting: Option<(&'a Device, &'a Machine)>,
    /// Whether an enrolled device already reported this hardware id.
    pub hardware_enrolled: bool,
}

/// Decides an enrollment: the machine and device to store, from the machine
/// the report makes (`new_machine`), the device with its new credential,
/// and what is enrolled already.
pub fn enroll(enrolled: Enrolled<'_>, reported: &Machine, device: &Device) -> (Machine, Device) {
    match enrolled.presenting {
        // The device itself: its machine, its credential and the isolation
        // in force stay; the rest is what it reports now.
        Some((current, existing)) => (
            merge(existing, reported),
            Device {
                machine_id: existing.id.clone(),
                credential_id: current.credential_id.clone(),
                credential_hash: current.credential_hash.clone(),
                isolation: current.isolation,
                isolation_at: current.isolation_at,
                ..device.clone()
            },
        ),
        None => (
            Machine {
                is_potential_duplication: enrolled.hardware_enrolled,
                ..reported.clone()
            },
            device.clone(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use palisade_contract::OsPlatform;
    use palisade_device::Isolation;

    /// A first enrollment's request of a Linux machine named `name`.
    pub(crate) fn request(name: &str) -> EnrollRequest {
        EnrollRequest {
            hardware_id: "hw-1".into(),
            computer_dns_name: name.into(),
            os_platform: OsPlatform::Linux,
            os_version: None,
            version: None,
            os_build: None,
            os_architecture: None,
            agent_version: "1".into(),
            ip_addresses: vec![],
            last_external_ip_address: None,
            capabilities: vec![],
            credential: None,
        }
    }

    fn device(machine: &Machine, credential_id: &str, now: Timestamp) -> Device {
        Device {
            tenant_id: "t".into(),
            machine_id: machine.id.clone(),
            credential_id: credential_id.into(),
            credential_hash: format!("hash of {credential_id}"),
            hardware_id: "hw-1".into(),
            onboarding_token_id: "token".into(),
            capabilities: vec![],
            enrolled_at: now,
            offboarded_at: None,
            isolation: Isolation::None,
            isolation_at: now,
        }
    }

    #[test]
    fn known_hardware_without_its_credential_is_a_new_potential_duplicate() {
        let now = Timestamp::now();
        let reported = new_machine(&request("intruder"), now);
        let new_device = device(&reported, "new", now);
        let first = enroll(
            Enrolled {
                presenting: None,
                hardware_enrolled: false,
            },
            &reported,
            &new_device,
        );
        assert_eq!(first, (reported.clone(), new_device.clone()));
        let (machine, stored) = enroll(
            Enrolled {
                presenting: None,
                hardware_enrolled: true,
            },
            &reported,
            &new_device,
        );
        assert_eq!(machine.id, reported.id);
        assert!(machine.is_potential_duplication);
        assert_eq!(stored, new_device);
    }

    #[test]
    fn the_device_presenting_its_credential_keeps_its_machine_credential_and_isolation() {
        let now = Timestamp::now();
        let mut existing = new_machine(&request("old-name"), now.minus_days(3));
        existing.machine_tags = vec!["finance".into()];
        let mut current = device(&existing, "current", now.minus_days(3));
        current.isolation = Isolation::Full;
        let reported = new_machine(&request("new-name"), now);
        let new_device = device(&reported, "new", now);
        let (machine, stored) = enroll(
            Enrolled {
                presenting: Some((&current, &existing)),
                hardware_enrolled: true,
            },
            &reported,
            &new_device,
        );
        assert_eq!(machine.id, existing.id);
        assert_eq!(machine.computer_dns_name, "new-name");
        assert_eq!(machine.machine_tags, existing.machine_tags);
        assert_eq!(machine.first_seen, existing.first_seen);
        assert!(!machine.is_potential_duplication);
        assert_eq!(stored.machine_id, existing.id);
        assert_eq!(stored.credential_id, "current");
        assert_eq!(stored.credential_hash, current.credential_hash);
        assert_eq!(stored.isolation, Isolation::Full);
        assert_eq!(stored.enrolled_at, now);
    }
}
