//! Machine inventories: the software installed on a machine and the users
//! who logged on, as its device reports them (each report replaces the
//! last); a machine without a device (seeded, emulated) answers what its
//! seed implies for its operating system.

use crate::caller::Caller;
use crate::devices::{Device, DevicePlane};
use crate::rules::enrollment::is_device_machine;
use crate::service::Palisade;
use palisade_contract::inventory::{software_id, LogonUser, Software};
use palisade_contract::{Machine, MdeError, OsPlatform, Timestamp};
use palisade_device::{Inventory, MAX_INVENTORY_SOFTWARE, MAX_INVENTORY_USERS};

/// Longest name, vendor, version or account text kept.
pub const MAX_INVENTORY_TEXT_CHARS: usize = 256;

/// One package on a machine, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSoftware {
    pub software_id: String,
    pub name: String,
    pub vendor: String,
    pub version: String,
}

/// One user who logged on to a machine, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogon {
    pub account_domain: String,
    pub account_name: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub logon_types: String,
}

impl StoredLogon {
    fn wire(&self) -> LogonUser {
        LogonUser {
            id: format!("{}\\{}", self.account_domain, self.account_name),
            account_name: self.account_name.clone(),
            account_domain: self.account_domain.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            logon_types: self.logon_types.clone(),
            is_domain_admin: false,
            is_only_network_user: self.logon_types == "Network",
        }
    }
}

fn software(id: String, name: &str, vendor: &str, exposed_machines: i64) -> Software {
    Software {
        id,
        name: name.to_string(),
        vendor: vendor.to_string(),
        weaknesses: 0,
        public_exploit: false,
        active_alert: false,
        exposed_machines,
        impact_score: 0.0,
    }
}

impl Palisade {
    /// The machine `key` names, as the caller sees it, as an entity.
    pub(crate) async fn machine_entity(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Machine, MdeError> {
        let found = self.get_machine(caller, key).await?;
        serde_json::from_str(found.json())
            .map_err(|e| MdeError::internal(format!("a stored machine does not read back: {e}")))
    }

    /// `GET /api/machines/{id}/software`, by id.
    pub async fn machine_software(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Vec<Software>, MdeError> {
        let machine = self.machine_entity(caller, key).await?;
        if !is_device_machine(&machine) {
            return Ok(seeded_software(&machine));
        }
        let rows = self
            .store()
            .machine_software(&caller.tenant.id, &machine.id)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(s, exposed)| software(s.software_id, &s.name, &s.vendor, exposed))
            .collect())
    }

    /// `GET /api/machines/{id}/logonusers`, most recently seen first.
    pub async fn machine_logon_users(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<Vec<LogonUser>, MdeError> {
        let machine = self.machine_entity(caller, key).await?;
        if !is_device_machine(&machine) {
            return Ok(seeded_logons(&machine));
        }
        let rows = self
            .store()
            .machine_logons(&caller.tenant.id, &machine.id)
            .await?;
        Ok(rows.iter().map(StoredLogon::wire).collect())
    }
}

impl DevicePlane {
    /// Takes the device's inventory in place of what it reported before.
    pub async fn report_inventory(
        &self,
        device: &Device,
        inventory: Inventory,
    ) -> Result<(usize, usize), MdeError> {
        let (software, logons) = checked(inventory)?;
        self.palisade
            .store()
            .replace_inventory(&device.tenant_id, &device.machine_id, &software, &logons)
            .await?;
        Ok((software.len(), logons.len()))
    }
}

/// The report's rows: bounded, each package once (a package of several
/// architectures is one software), each user once.
fn checked(inventory: Inventory) -> Result<(Vec<StoredSoftware>, Vec<StoredLogon>), MdeError> {
    if inventory.software.len() > MAX_INVENTORY_SOFTWARE
        || inventory.logon_users.len() > MAX_INVENTORY_USERS
    {
        return Err(MdeError::invalid_input(format!(
            "Invalid input: an inventory has at most {MAX_INVENTORY_SOFTWARE} packages and {MAX_INVENTORY_USERS} users."
        )));
    }
    let bounded = |field: &str, text: &str| -> Result<String, MdeError> {
        if text.is_empty() || text.contains('\0') || text.chars().count() > MAX_INVENTORY_TEXT_CHARS
        {
            return Err(MdeError::invalid_input(format!(
                "Invalid input {field} {text:?}: from 1 to {MAX_INVENTORY_TEXT_CHARS} characters, without NUL."
            )));
        }
        Ok(text.to_string())
    };
    let mut software: Vec<StoredSoftware> = Vec::with_capacity(inventory.software.len());
    for package in &inventory.software {
        let row = StoredSoftware {
            software_id: software_id(&package.vendor, &package.name),
            name: bounded("name", &package.name)?,
            vendor: bounded("vendor", &package.vendor)?,
            version: bounded("version", &package.version)?,
        };
        software.push(row);
    }
    software.sort_by(|a, b| a.software_id.cmp(&b.software_id));
    software.dedup_by(|a, b| a.software_id == b.software_id);
    let mut logons: Vec<StoredLogon> = Vec::with_capacity(inventory.logon_users.len());
    for user in &inventory.logon_users {
        logons.push(StoredLogon {
            account_domain: bounded("accountDomain", &user.account_domain)?,
            account_name: bounded("accountName", &user.account_name)?,
            first_seen: user.first_seen.min(user.last_seen),
            last_seen: user.last_seen,
            logon_types: bounded("logonTypes", &user.logon_types)?,
        });
    }
    logons.sort_by(|a, b| {
        (&a.account_domain, &a.account_name).cmp(&(&b.account_domain, &b.account_name))
    });
    logons
        .dedup_by(|a, b| a.account_domain == b.account_domain && a.account_name == b.account_name);
    Ok((software, logons))
}

/// What a seeded machine of this OS has installed, as MDE names it.
fn seeded_software(machine: &Machine) -> Vec<Software> {
    let names: &[(&str, &str)] = match machine.os_platform {
        OsPlatform::Linux => &[
            ("openssl", "openssl"),
            ("openbsd", "openssh"),
            ("gnu", "bash"),
            ("haxx", "curl"),
        ],
        OsPlatform::MacOs => &[
            ("apple", "safari"),
            ("apple", "macos"),
            ("google", "chrome"),
        ],
        _ => &[
            ("microsoft", "windows"),
            ("microsoft", "edge"),
            ("microsoft", "office"),
            ("microsoft", "defender"),
        ],
    };
    names
        .iter()
        .map(|(vendor, name)| software(software_id(vendor, name), name, vendor, 1))
        .collect()
}

/// Who logged on to a seeded machine: its local administrator, over the
/// time the machine was seen.
fn seeded_logons(machine: &Machine) -> Vec<LogonUser> {
    let domain = machine
        .computer_dns_name
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let logon = StoredLogon {
        account_domain: domain,
        account_name: "administrator".into(),
        first_seen: machine.first_seen,
        last_seen: machine.last_seen,
        logon_types: "Interactive".into(),
    };
    vec![logon.wire()]
}
