//! Which device group a machine is in (contract §7.2): groups match machines
//! by rules (name prefix, tag, OS; any value of a property, every property
//! given) or list them explicitly; a machine matching several groups goes to
//! the highest-ranked one (rank 1 first), one matching none to "Ungrouped" (0).

use crate::store::DeviceGroup;
use palisade_contract::{Machine, OsPlatform};
use serde::{Deserialize, Serialize};

/// How a group picks its machines. Empty: the group is a label that machines
/// carry as they were reported or seeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRules {
    /// `computerDnsName` starts with one of these (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_prefixes: Vec<String>,
    /// The machine carries one of these tags (exact).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os_platforms: Vec<OsPlatform>,
    /// Machines in the group whatever the other rules say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine_ids: Vec<String>,
}

impl GroupRules {
    pub fn is_empty(&self) -> bool {
        *self == GroupRules::default()
    }

    pub fn matches(&self, machine: &Machine) -> bool {
        if self
            .machine_ids
            .iter()
            .any(|id| id.eq_ignore_ascii_case(&machine.id))
        {
            return true;
        }
        if self.name_prefixes.is_empty() && self.tags.is_empty() && self.os_platforms.is_empty() {
            return false;
        }
        let name = machine.computer_dns_name.to_lowercase();
        (self.name_prefixes.is_empty()
            || self
                .name_prefixes
                .iter()
                .any(|p| name.starts_with(&p.to_lowercase())))
            && (self.tags.is_empty() || self.tags.iter().any(|t| machine.machine_tags.contains(t)))
            && (self.os_platforms.is_empty() || self.os_platforms.contains(&machine.os_platform))
    }
}

/// The group `machine` belongs in among `groups`, as `(rbacGroupId, rbacGroupName)`:
/// the highest-ranked group whose rules match it; else the group it was
/// reported with, if that group has no rules (a label); else none.
pub fn assign(groups: &[DeviceGroup], machine: &Machine) -> (i64, Option<String>) {
    groups
        .iter()
        .filter(|g| g.rules.matches(machine))
        .min_by_key(|g| (g.rank, g.id))
        .or_else(|| {
            groups
                .iter()
                .find(|g| g.id == machine.rbac_group_id && g.rules.is_empty())
        })
        .map_or((0, None), |g| (g.id, Some(g.name.clone())))
}

/// Whether a change from `before` to `after` may move the machine to another
/// group: rules read its tags and its name.
pub fn may_move(before: &Machine, after: &Machine) -> bool {
    after.machine_tags != before.machine_tags || after.computer_dns_name != before.computer_dns_name
}

/// Puts `machine` in its group.
pub fn place(groups: &[DeviceGroup], machine: &mut Machine) {
    (machine.rbac_group_id, machine.rbac_group_name) = assign(groups, machine);
}
