//! The `Machine` entity (contract §2), in the property order real responses use.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use utoipa::ToSchema;

/// Declares a wire enum whose JSON value, `Display` and exact-match `FromStr`
/// are the variant name (or the given rename), as MDE documents them.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
                 strum::EnumString, strum::IntoStaticStr, strum::Display, strum::VariantArray)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// `osPlatform` values Palisade knows (decisions: Wire).
    OsPlatform {
        Windows10,
        Windows11,
        WindowsServer2012R2,
        WindowsServer2016,
        WindowsServer2019,
        WindowsServer2022,
        WindowsServer2025,
        #[serde(rename = "macOS")]
        #[strum(serialize = "macOS")]
        MacOs,
        Linux,
    }
);

impl OsPlatform {
    pub fn is_windows(self) -> bool {
        !matches!(self, OsPlatform::MacOs | OsPlatform::Linux)
    }
}

wire_enum!(HealthStatus {
    Active,
    Inactive,
    ImpairedCommunication,
    NoSensorData,
    NoSensorDataImpairedCommunication,
    Unknown,
});

wire_enum!(DeviceValue { Normal, Low, High });

wire_enum!(RiskScore {
    None,
    Informational,
    Low,
    Medium,
    High,
});

wire_enum!(ExposureLevel {
    None,
    Low,
    Medium,
    High,
});

wire_enum!(OnboardingStatus {
    Onboarded,
    CanBeOnboarded,
    Unsupported,
    InsufficientInfo,
});

/// One network interface of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    /// 12 upper-case hex digits without separators; `null` for loopback.
    pub mac_address: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub operational_status: String,
}

/// Cloud VM facts, when the machine is a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmMetadata {
    pub vm_id: Option<String>,
    pub cloud_provider: Option<String>,
    pub resource_id: Option<String>,
    pub subscription_id: Option<String>,
}

/// A [`Machine`] already in its wire form: serialized once, then shared by
/// every answer that shows it unchanged (reads are most of the API's traffic,
/// and serializing a machine cost as much as reading it from the store).
#[derive(Debug, Clone)]
pub struct SerializedMachine(Arc<RawValue>);

impl SerializedMachine {
    pub fn new(machine: &Machine) -> SerializedMachine {
        let json = serde_json::value::to_raw_value(machine).expect("a Machine serializes");
        SerializedMachine(Arc::from(json))
    }

    /// The machine's JSON object.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The machine's id, read back from its JSON (which a `Machine` wrote).
    pub fn id(&self) -> String {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        serde_json::from_str::<Id>(self.json())
            .map(|m| m.id)
            .expect("a serialized Machine has an id")
    }

    /// The machine's device group, read back from its JSON.
    pub fn rbac_group_name(&self) -> Option<String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Group {
            rbac_group_name: Option<String>,
        }
        serde_json::from_str::<Group>(self.json())
            .ok()
            .and_then(|m| m.rbac_group_name)
    }
}

impl Serialize for SerializedMachine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A machine as `GET /api/machines/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// 40 hexadecimal characters.
    pub id: String,
    pub merged_into_machine_id: Option<String>,
    pub is_potential_duplication: bool,
    pub is_excluded: bool,
    pub exclusion_reason: Option<String>,
    pub computer_dns_name: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub os_platform: OsPlatform,
    pub os_version: Option<String>,
    pub os_processor: Option<String>,
    /// OS version, e.g. `1709`, `21H2`.
    pub version: Option<String>,
    pub last_ip_address: Option<String>,
    pub last_external_ip_address: Option<String>,
    pub agent_version: Option<String>,
    pub os_build: Option<i64>,
    pub health_status: HealthStatus,
    pub device_value: Option<DeviceValue>,
    /// A JSON integer on the wire; 0 when ungrouped.
    pub rbac_group_id: i64,
    pub rbac_group_name: Option<String>,
    pub risk_score: Option<RiskScore>,
    pub exposure_level: Option<ExposureLevel>,
    pub is_aad_joined: bool,
    pub aad_device_id: Option<String>,
    pub machine_tags: Vec<String>,
    pub defender_av_status: Option<String>,
    pub onboarding_status: OnboardingStatus,
    pub os_architecture: Option<String>,
    pub managed_by: Option<String>,
    pub managed_by_status: Option<String>,
    pub ip_addresses: Vec<IpAddress>,
    pub vm_metadata: Option<VmMetadata>,
}

/// A property of an entity that `$filter` and `$orderby` accept, and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryableProperty {
    /// The wire name; matched case-insensitively in queries.
    pub name: &'static str,
    pub kind: PropertyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    String,
    Integer,
    Boolean,
    DateTime,
    /// `machineTags`: only usable inside `any(...)`.
    StringCollection,
}

/// The machine properties MDE documents as filterable (contract §4.1).
pub const MACHINE_QUERYABLE: &[QueryableProperty] = &[
    qp("id", PropertyKind::String),
    qp("computerDnsName", PropertyKind::String),
    qp("version", PropertyKind::String),
    qp("deviceValue", PropertyKind::String),
    qp("aadDeviceId", PropertyKind::String),
    qp("machineTags", PropertyKind::StringCollection),
    qp("lastSeen", PropertyKind::DateTime),
    qp("exposureLevel", PropertyKind::String),
    qp("onboardingStatus", PropertyKind::String),
    qp("lastIpAddress", PropertyKind::String),
    qp("healthStatus", PropertyKind::String),
    qp("osPlatform", PropertyKind::String),
    qp("riskScore", PropertyKind::String),
    qp("rbacGroupId", PropertyKind::Integer),
];

pub(crate) const fn qp(name: &'static str, kind: PropertyKind) -> QueryableProperty {
    QueryableProperty { name, kind }
}
