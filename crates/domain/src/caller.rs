//! Who is calling, in which tenant, and what they may see.

use palisade_contract::Timestamp;

/// Default and maximum retention: MDE keeps data 180 days.
pub const DEFAULT_RETENTION_DAYS: u32 = 180;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// A GUID, as Entra ID tenant ids are.
    pub id: String,
    pub name: String,
    /// Machines not seen for this many days no longer exist for the API.
    pub retention_days: u32,
}

/// Which device groups a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceGroupAccess {
    /// Application tokens and unrestricted users: the whole tenant.
    All,
    /// Users restricted by device-group membership; `0` is "Ungrouped devices".
    Only(Vec<i64>),
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: Tenant,
    /// Written into `requestor`: the user's UPN, or the app's display name.
    pub requestor: String,
    pub device_groups: DeviceGroupAccess,
}

/// What the store may show to one caller at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub tenant_id: String,
    /// Machines whose `lastSeen` is older are outside retention and do not exist.
    pub seen_since: Timestamp,
    pub device_groups: DeviceGroupAccess,
}

impl Caller {
    pub fn visibility(&self, now: Timestamp) -> Visibility {
        Visibility {
            tenant_id: self.tenant.id.clone(),
            seen_since: now.minus_days(self.tenant.retention_days),
            device_groups: self.device_groups.clone(),
        }
    }
}
