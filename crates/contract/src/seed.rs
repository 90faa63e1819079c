//! The tenant document (`control-plane.md`: State): what `palisade serve
//! --seed FILE` and `POST /_palisade/v1/tenants` create a tenant from, `PUT
//! .../state` replaces a tenant's state with, and `GET .../state` exports.
//! Machines, actions, alerts and indicators are MDE's objects with any of their properties (the
//! domain fills in the rest and names the field of what does not read).

use crate::control::{NewFaultRule, NewOutcomeRule};
use crate::permissions::Permission;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantDocument {
    /// A GUID, as Entra tenant ids are.
    pub tenant_id: String,
    pub name: String,
    /// Machines last seen longer ago are gone from the API (default 180).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub device_groups: Vec<SeedDeviceGroup>,
    /// MDE Machine objects (`GET /api/machines/{id}`), any properties given.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub machines: Vec<serde_json::Value>,
    /// MDE MachineAction objects, in any state; `machineId` names a machine above.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub machine_actions: Vec<serde_json::Value>,
    /// MDE Alert objects, any properties given; `machineId` names a machine above.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<serde_json::Value>,
    /// MDE Indicator objects: what `POST /api/indicators` takes, and an
    /// indicator's other properties (`id`, times, who made it).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub indicators: Vec<serde_json::Value>,
    #[serde(default)]
    pub apps: Vec<SeedApp>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Outcome rules, in the order they apply.
    #[serde(default)]
    pub outcomes: Vec<NewOutcomeRule>,
    /// Fault rules, in the order they apply.
    #[serde(default)]
    pub faults: Vec<NewFaultRule>,
}

/// A device group: machines matching its rules go to it (highest rank, 1,
/// first); without rules, a label machines are seeded with (`rbacGroupId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedDeviceGroup {
    pub id: i64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<SeedGroupRules>,
}

/// Which machines a device group takes: any that matches one of the lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedGroupRules {
    /// `computerDnsName` starts with one of these (letters in any case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_prefixes: Vec<String>,
    /// The machine carries one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub os_platforms: Vec<crate::OsPlatform>,
    /// Machines in the group whatever the other rules say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machine_ids: Vec<String>,
}

/// An app registration. Without `clientSecret`, an app that exists keeps
/// its secret and a new one gets a random secret nobody knows (set one with
/// `palisade apps`); exports never carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedApp {
    pub client_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Entra's "Allow public client flows": users sign in through the app
    /// (password, device code, authorization code with PKCE) without a secret.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_public_client: bool,
    /// Where the authorization endpoint may send codes (`http://localhost`
    /// matches any port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// PEM certificates whose keys may sign the app's client assertions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
}

/// A user with MDE roles (`View data`, `Active remediation actions`, ...)
/// and the device groups they see (absent: all). Passwords work as app secrets do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedUser {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_groups: Option<Vec<i64>>,
}
