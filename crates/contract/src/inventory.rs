//! What MDE knows is on a machine: its installed software
//! (`GET /api/machines/{id}/software`) and who logged on to it
//! (`GET /api/machines/{id}/logonusers`).

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A software entity as MDE's vulnerability management shows it; Palisade
/// knows no vulnerabilities, so `weaknesses` and `impactScore` are 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Software {
    /// `{vendor}-_-{name}`, as MDE spells it.
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub weaknesses: i64,
    pub public_exploit: bool,
    pub active_alert: bool,
    /// Machines of the tenant that have it.
    pub exposed_machines: i64,
    pub impact_score: f64,
}

/// MDE's software id: `{vendor}-_-{name}`, lower case, spaces as `_`.
pub fn software_id(vendor: &str, name: &str) -> String {
    let part = |s: &str| s.trim().to_lowercase().replace(' ', "_");
    format!("{}-_-{}", part(vendor), part(name))
}

/// A user who logged on to a machine (`logonusers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogonUser {
    /// `{accountDomain}\{accountName}`.
    pub id: String,
    pub account_name: String,
    pub account_domain: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// `Interactive`, `RemoteInteractive`, `Network`...
    pub logon_types: String,
    pub is_domain_admin: bool,
    pub is_only_network_user: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn software_ids_are_spelt_as_mde_spells_them() {
        assert_eq!(
            super::software_id("Microsoft", "Internet Explorer"),
            "microsoft-_-internet_explorer"
        );
    }
}
