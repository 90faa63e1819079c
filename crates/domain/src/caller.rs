//! Who is calling, in which tenant, and what they may see.

use crate::access::Role;
use crate::identity::RequestAudit;
use palisade_contract::{Permission, Timestamp};
use std::sync::Arc;

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

/// Who stands behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An application token (client credentials): permissions in `roles`.
    App { client_id: String, name: String },
    /// A delegated token: scopes in `scp`, and the user's MDE roles.
    User {
        id: String,
        upn: String,
        roles: Vec<Role>,
    },
}

impl Principal {
    /// The id rate limits and the audit log key on: the app's client id or the user's id.
    pub fn id(&self) -> &str {
        match self {
            Principal::App { client_id, .. } => client_id,
            Principal::User { id, .. } => id,
        }
    }

    /// Written into `requestor`: the user's UPN, or the app's display name.
    pub fn requestor(&self) -> &str {
        match self {
            Principal::App { name, .. } => name,
            Principal::User { upn, .. } => upn,
        }
    }

    /// How the control plane names the caller (fault rules, the recorder):
    /// the app's client id, or the user's principal name.
    pub fn caller_name(&self) -> &str {
        match self {
            Principal::App { client_id, .. } => client_id,
            Principal::User { upn, .. } => upn,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Principal::App { .. } => "app",
            Principal::User { .. } => "user",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub principal: Principal,
    /// The token's `roles` (application) or `scp` (delegated) permissions.
    pub permissions: Vec<Permission>,
    pub device_groups: DeviceGroupAccess,
    /// The audit entry a change of this request writes with it (requests
    /// that change machines or actions; none elsewhere).
    pub audit: Option<Arc<RequestAudit>>,
}

/// What the store may show to one caller at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub tenant_id: String,
    /// Machines whose `lastSeen` is older are outside retention and do not exist.
    pub seen_since: Timestamp,
    pub device_groups: DeviceGroupAccess,
}

impl Visibility {
    /// Every machine of the tenant, however long unseen: what the device plane
    /// works on (a device checking in is its own machine, not a caller's view).
    pub fn whole_tenant(tenant_id: &str) -> Visibility {
        Visibility {
            tenant_id: tenant_id.to_string(),
            seen_since: Timestamp::from_ticks(i64::MIN),
            device_groups: DeviceGroupAccess::All,
        }
    }
}

impl Caller {
    pub fn requestor(&self) -> &str {
        self.principal.requestor()
    }

    pub fn visibility(&self, now: Timestamp) -> Visibility {
        Visibility {
            tenant_id: self.tenant.id.clone(),
            seen_since: now.minus_days(self.tenant.retention_days),
            device_groups: self.device_groups.clone(),
        }
    }
}
