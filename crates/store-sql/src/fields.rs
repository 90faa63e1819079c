//! One field table per stored entity: each field's column, how it is stored
//! (its [`Codec`]) and the OData property it answers to. The column lists a
//! read selects, the decoder of a row, the values a save binds and the
//! OData column map are all derived from it ([`stored_entity!`]), so that a
//! field cannot be read, written and queried by lists that disagree.
//!
//! A row of either database is read through [`StoredRow`], which each store
//! implements for its driver's row in a few lines.

use crate::{Dialect, Value};
use palisade_contract::{Alert, Indicator, Machine, MachineAction, Timestamp};
use palisade_domain::caller::DeviceGroupAccess;
use palisade_domain::caller::Tenant;
use palisade_domain::control::{
    OperatorCredential, RecordedCall, RulePlace, ScriptRun, StoredFaultRule, StoredOutcomeRule,
};
use palisade_domain::devices::{Device, OnboardingToken};
use palisade_domain::files::StoredFile;
use palisade_domain::identity::{AppRegistration, AuditEntry, OAuthGrant, SigningKey, User};
use palisade_domain::live_response::LibraryEntry;
use palisade_domain::store::{DeviceGroup, StoreError};
use palisade_domain::TenantClock;
use std::str::FromStr;

/// A row of either database, column by column.
pub trait StoredRow {
    fn text(&self, index: usize) -> Result<Option<String>, StoreError>;
    fn integer(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// SQLite stores booleans as 0 and 1; PostgreSQL as `boolean`.
    fn boolean(&self, index: usize) -> Result<Option<bool>, StoreError>;
    fn bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError>;
}

/// A column that does not read back as what was stored: a fault, not a retry.
pub fn unreadable(index: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("column {index} does not read back: {error}"))
}

/// A column's value, which must not be NULL.
pub fn required<T>(value: Option<T>, index: usize) -> Result<T, StoreError> {
    value.ok_or_else(|| unreadable(index, "NULL in a column that holds a value"))
}

/// What a column holds, as PostgreSQL types an array of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Boolean,
}

impl Kind {
    pub fn postgres_type(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Integer => "int8",
            Kind::Boolean => "bool",
        }
    }
}

/// The kind of the column a field (named by `field`, which returns it) is stored in.
pub fn kind_of<C: Codec<T>, T, E>(_field: fn(&E) -> &T) -> Kind {
    C::KIND
}

/// How a field of type `T` is stored in one column.
pub trait Codec<T> {
    const KIND: Kind;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<T, StoreError>;
    fn value(field: &T) -> Value;
}

/// Text, integers and booleans as themselves; `None` as NULL.
pub struct Plain;
/// Timestamps as integer ticks.
pub struct Ticks;
/// The contract's wire enums as their wire text.
pub struct Wire;
/// Structured values as JSON text; `None` as NULL.
pub struct Json;

macro_rules! plain {
    ($type:ty, $read:ident, $variant:ident) => {
        impl Codec<$type> for Plain {
            const KIND: Kind = Kind::$variant;
            fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<$type, StoreError> {
                required(row.$read(index)?, index)
            }
            fn value(field: &$type) -> Value {
                Value::$variant(field.clone())
            }
        }
        impl Codec<Option<$type>> for Plain {
            const KIND: Kind = Kind::$variant;
            fn read(
                row: &(impl StoredRow + ?Sized),
                index: usize,
            ) -> Result<Option<$type>, StoreError> {
                row.$read(index)
            }
            fn value(field: &Option<$type>) -> Value {
                field.clone().map_or(Value::Null, Value::$variant)
            }
        }
    };
}

plain!(String, text, Text);
plain!(i64, integer, Integer);
plain!(bool, boolean, Boolean);

/// Narrower integers, stored as integers and checked as they are read back.
macro_rules! narrow {
    ($type:ty) => {
        impl Codec<$type> for Plain {
            const KIND: Kind = Kind::Integer;
            fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<$type, StoreError> {
                let wide = required(row.integer(index)?, index)?;
                <$type>::try_from(wide).map_err(|e| unreadable(index, e))
            }
            fn value(field: &$type) -> Value {
                Value::Integer(i64::from(*field))
            }
        }
    };
}

narrow!(u16);
narrow!(u32);

impl Codec<Timestamp> for Ticks {
    const KIND: Kind = Kind::Integer;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<Timestamp, StoreError> {
        required(row.integer(index)?, index).map(Timestamp::from_ticks)
    }
    fn value(field: &Timestamp) -> Value {
        Value::Integer(field.ticks())
    }
}

impl Codec<Option<Timestamp>> for Ticks {
    const KIND: Kind = Kind::Integer;
    fn read(
        row: &(impl StoredRow + ?Sized),
        index: usize,
    ) -> Result<Option<Timestamp>, StoreError> {
        Ok(row.integer(index)?.map(Timestamp::from_ticks))
    }
    fn value(field: &Option<Timestamp>) -> Value {
        field.map_or(Value::Null, |t| Value::Integer(t.ticks()))
    }
}

/// A wire enum of the contract: parsed from, and written as, its wire text.
pub trait WireText: FromStr + Copy + Into<&'static str> {}
impl<T: FromStr + Copy + Into<&'static str>> WireText for T {}

fn parse<T: FromStr>(text: &str, index: usize) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| unreadable(index, format!("unknown value '{text}'")))
}

impl<T: WireText> Codec<T> for Wire {
    const KIND: Kind = Kind::Text;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<T, StoreError> {
        parse(&required(row.text(index)?, index)?, index)
    }
    fn value(field: &T) -> Value {
        let text: &'static str = (*field).into();
        Value::Text(text.to_string())
    }
}

/// An optional wire enum: `None` as NULL.
pub struct WireOpt;

impl<T: WireText> Codec<Option<T>> for WireOpt {
    const KIND: Kind = Kind::Text;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<Option<T>, StoreError> {
        row.text(index)?.map(|text| parse(&text, index)).transpose()
    }
    fn value(field: &Option<T>) -> Value {
        field.map_or(Value::Null, |v| {
            let text: &'static str = v.into();
            Value::Text(text.to_string())
        })
    }
}

/// Values stored as JSON text. `Option`s are NULL when `None` (not `null`),
/// so this codec is for a field's own type, and [`JsonOpt`] for an `Option`.
pub struct JsonOpt;

impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<T> for Json {
    const KIND: Kind = Kind::Text;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<T, StoreError> {
        let text = required(row.text(index)?, index)?;
        serde_json::from_str(&text).map_err(|e| unreadable(index, e))
    }
    fn value(field: &T) -> Value {
        Value::Text(serde_json::to_string(field).expect("stored values serialise"))
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Codec<Option<T>> for JsonOpt {
    const KIND: Kind = Kind::Text;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<Option<T>, StoreError> {
        row.text(index)?
            .map(|text| serde_json::from_str(&text).map_err(|e| unreadable(index, e)))
            .transpose()
    }
    fn value(field: &Option<T>) -> Value {
        field.as_ref().map_or(Value::Null, |v| {
            Value::Text(serde_json::to_string(v).expect("stored values serialise"))
        })
    }
}

/// Declares an entity's field table and derives from it:
/// - `COLUMNS`: the columns saved, in bind order (the tenant id comes first, apart);
/// - `select(dialect)`: the expressions a read selects, in `from_row` order
///   (saved columns, and `<-` ones computed by the read: a joined name, a
///   tag list);
/// - `READ_COLUMNS`: how many `select` yields;
/// - `from_row`: the entity from a row of `select`;
/// - `values`: the values a save binds, in `COLUMNS` order;
/// - `column(property)`: the column of a queryable OData property.
macro_rules! stored_entity {
    (
        $(#[$meta:meta])*
        pub mod $module:ident for $entity:ident, alias $alias:literal {
            $( $field:ident: $codec:ident
                $( = $column:literal $( , query $property:literal )? )?
                $( <- $read:expr )? ; )*
        }
    ) => {
        $(#[$meta])*
        pub mod $module {
            #[allow(unused_imports)]
            use super::*;

            pub const COLUMNS: &[&str] = &[ $( $( $column, )? )* ];

            pub const READ_COLUMNS: usize = [ $( stringify!($field), )* ].len();

            /// The expressions a read selects, in `from_row` order.
            pub fn select(dialect: Dialect) -> &'static str {
                fn build(dialect: Dialect) -> String {
                    // Read by the `<-` fields, if the entity has any.
                    let _ = dialect;
                    let parts: Vec<String> = vec![
                        $(
                            $( concat!($alias, ".", $column).to_string(), )?
                            $( ($read)(dialect), )?
                        )*
                    ];
                    parts.join(", ")
                }
                once_per_dialect!(dialect, build)
            }

            /// The entity from a row of `select`'s columns, from `first` on.
            pub fn from_row(
                row: &(impl StoredRow + ?Sized),
                first: usize,
            ) -> Result<$entity, StoreError> {
                let mut index = first;
                let mut next = || {
                    index += 1;
                    index - 1
                };
                // Fields are read in the order written, which is `select`'s.
                Ok($entity {
                    $( $field: <$codec as Codec<_>>::read(row, next())?, )*
                })
            }

            /// The values a save binds, in `COLUMNS` order.
            pub fn values(entity: &$entity) -> Vec<Value> {
                let mut values = Vec::with_capacity(COLUMNS.len());
                $( $( let _ = $column; values.push(<$codec as Codec<_>>::value(&entity.$field)); )? )*
                values
            }

            /// The kinds of `COLUMNS`, in order.
            pub fn kinds() -> Vec<Kind> {
                let mut kinds = Vec::with_capacity(COLUMNS.len());
                $( $(
                    let _ = $column;
                    kinds.push(kind_of::<$codec, _, $entity>(|entity| &entity.$field));
                )? )*
                kinds
            }

            /// The column of a queryable property (canonical name, see `ListQuery`).
            pub fn column(property: &str) -> Option<&'static str> {
                match property {
                    $( $( $( $property => Some(concat!($alias, ".", $column)), )? )? )*
                    _ => None,
                }
            }
        }
    };
}

/// The machine's tags, in order, as a JSON array.
fn machine_tags(dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => "(SELECT json_group_array(tag) FROM (SELECT t.tag FROM machine_tags t \
            WHERE t.tenant_id = m.tenant_id AND t.machine_id = m.id ORDER BY t.position))"
            .into(),
        Dialect::Postgres => "(SELECT COALESCE(json_agg(t.tag ORDER BY t.position), '[]')::text \
            FROM machine_tags t WHERE t.tenant_id = m.tenant_id AND t.machine_id = m.id)"
            .into(),
    }
}

stored_entity! {
    /// `machines m`, with `g` its device group (joined on `rbac_group_id`).
    pub mod machine_fields for Machine, alias "m" {
        id: Plain = "id", query "id";
        merged_into_machine_id: Plain = "merged_into_machine_id";
        is_potential_duplication: Plain = "is_potential_duplication";
        is_excluded: Plain = "is_excluded";
        exclusion_reason: Plain = "exclusion_reason";
        computer_dns_name: Plain = "computer_dns_name", query "computerDnsName";
        first_seen: Ticks = "first_seen";
        last_seen: Ticks = "last_seen", query "lastSeen";
        os_platform: Wire = "os_platform", query "osPlatform";
        os_version: Plain = "os_version";
        os_processor: Plain = "os_processor";
        version: Plain = "version", query "version";
        last_ip_address: Plain = "last_ip_address", query "lastIpAddress";
        last_external_ip_address: Plain = "last_external_ip_address";
        agent_version: Plain = "agent_version";
        os_build: Plain = "os_build";
        health_status: Wire = "health_status", query "healthStatus";
        device_value: WireOpt = "device_value", query "deviceValue";
        rbac_group_id: Plain = "rbac_group_id", query "rbacGroupId";
        rbac_group_name: Plain <- |_| "g.name".to_string();
        risk_score: WireOpt = "risk_score", query "riskScore";
        exposure_level: WireOpt = "exposure_level", query "exposureLevel";
        is_aad_joined: Plain = "is_aad_joined";
        aad_device_id: Plain = "aad_device_id", query "aadDeviceId";
        machine_tags: Json <- machine_tags;
        defender_av_status: Plain = "defender_av_status";
        onboarding_status: Wire = "onboarding_status", query "onboardingStatus";
        os_architecture: Plain = "os_architecture";
        managed_by: Plain = "managed_by";
        managed_by_status: Plain = "managed_by_status";
        ip_addresses: Json = "ip_addresses";
        vm_metadata: JsonOpt = "vm_metadata";
    }
}

/// Where a machine's read selects from: `machines m` and its device group `g`.
pub const MACHINE_FROM: &str = "machines m LEFT JOIN device_groups g \
    ON g.tenant_id = m.tenant_id AND g.id = m.rbac_group_id";

stored_entity! {
    /// `machine_actions a`.
    pub mod action_fields for MachineAction, alias "a" {
        id: Plain = "id", query "id";
        action_type: Wire = "type", query "type";
        title: Plain = "title";
        requestor: Plain = "requestor", query "requestor";
        requestor_comment: Plain = "requestor_comment";
        status: Wire = "status", query "status";
        machine_id: Plain = "machine_id", query "machineId";
        computer_dns_name: Plain = "computer_dns_name";
        creation_date_time_utc: Ticks = "creation_time", query "creationDateTimeUtc";
        last_update_date_time_utc: Ticks = "last_update_time";
        cancellation_requestor: Plain = "cancellation_requestor";
        cancellation_comment: Plain = "cancellation_comment";
        cancellation_date_time_utc: Ticks = "cancellation_time";
        error_h_result: Plain = "error_hresult";
        scope: Plain = "scope";
        external_id: Plain = "external_id";
        request_source: Plain = "request_source";
        related_file_info: JsonOpt = "related_file_info";
        commands: Json = "commands";
        troubleshoot_info: JsonOpt = "troubleshoot_info";
    }
}

stored_entity! {
    /// `alerts l`.
    pub mod alert_fields for Alert, alias "l" {
        id: Plain = "id", query "id";
        incident_id: Plain = "incident_id", query "incidentId";
        investigation_id: Plain = "investigation_id", query "investigationId";
        assigned_to: Plain = "assigned_to", query "assignedTo";
        severity: Wire = "severity", query "severity";
        status: Wire = "status", query "status";
        classification: WireOpt = "classification";
        determination: WireOpt = "determination";
        investigation_state: WireOpt = "investigation_state";
        detection_source: Plain = "detection_source", query "detectionSource";
        detector_id: Plain = "detector_id";
        category: Plain = "category", query "category";
        threat_family_name: Plain = "threat_family_name";
        title: Plain = "title";
        description: Plain = "description";
        alert_creation_time: Ticks = "alert_creation_time", query "alertCreationTime";
        first_event_time: Ticks = "first_event_time";
        last_event_time: Ticks = "last_event_time", query "lastEventTime";
        last_update_time: Ticks = "last_update_time", query "lastUpdateTime";
        resolved_time: Ticks = "resolved_time";
        machine_id: Plain = "machine_id", query "machineId";
        computer_dns_name: Plain = "computer_dns_name";
        rbac_group_name: Plain = "rbac_group_name";
        aad_tenant_id: Plain = "aad_tenant_id";
        threat_name: Plain = "threat_name";
        mitre_techniques: Json = "mitre_techniques";
        related_user: JsonOpt = "related_user";
        comments: Json = "comments";
        evidence: Json = "evidence";
    }
}

/// Saves an alert row: parameter 1 is the tenant id, then `alert_fields::values`.
pub fn alert_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let columns = with_tenant(alert_fields::COLUMNS);
        upsert(dialect, "alerts", &columns, &["tenant_id", "id"], &[], &[])
    }
    once_per_dialect!(dialect, build)
}

/// Indicator ids are numbers on the wire's strings (`"995"`), stored as
/// integers so that they sort and count as numbers.
pub struct Numbered;

impl Codec<String> for Numbered {
    const KIND: Kind = Kind::Integer;
    fn read(row: &(impl StoredRow + ?Sized), index: usize) -> Result<String, StoreError> {
        required(row.integer(index)?, index).map(|n| n.to_string())
    }
    fn value(field: &String) -> Value {
        // Ids are made by the store's counter; a stored one always parses.
        field.parse().map_or(Value::Null, Value::Integer)
    }
}

stored_entity! {
    /// `indicators i`. Saved with `value_key` beside its fields (`indicator_upsert`).
    pub mod indicator_fields for Indicator, alias "i" {
        id: Numbered = "id", query "id";
        indicator_value: Plain = "indicator_value", query "indicatorValue";
        indicator_type: Wire = "indicator_type", query "indicatorType";
        action: Wire = "action", query "action";
        application: Plain = "application", query "application";
        source: Plain = "source";
        source_type: Plain = "source_type";
        created_by: Plain = "created_by", query "createdBy";
        created_by_display_name: Plain = "created_by_display_name", query "createdByDisplayName";
        created_by_source: Plain = "created_by_source";
        severity: Wire = "severity", query "severity";
        title: Plain = "title", query "title";
        description: Plain = "description";
        recommended_actions: Plain = "recommended_actions";
        creation_time_date_time_utc: Ticks = "creation_time", query "creationTimeDateTimeUtc";
        expiration_time: Ticks = "expiration_time", query "expirationTime";
        last_update_time: Ticks = "last_update_time", query "lastUpdateTime";
        last_updated_by: Plain = "last_updated_by";
        rbac_group_names: Json = "rbac_group_names";
        rbac_group_ids: Json = "rbac_group_ids";
        generate_alert: Plain = "generate_alert", query "generateAlert";
        mitre_techniques: Json = "mitre_techniques";
        educate_url: Plain = "educate_url";
    }
}

/// Saves an indicator row: parameter 1 is the tenant id, then its
/// [`indicator_row`].
pub fn indicator_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let mut columns = with_tenant(indicator_fields::COLUMNS);
        columns.push("value_key");
        upsert(
            dialect,
            "indicators",
            &columns,
            &["tenant_id", "id"],
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Inserts a row of `table` or, where one with the same `key` is stored,
/// replaces its columns but `key` and `keep`. `extra` columns take SQL
/// expressions rather than parameters.
fn upsert(
    dialect: Dialect,
    table: &str,
    columns: &[&str],
    key: &[&str],
    keep: &[&str],
    extra: &[(&str, &str)],
) -> String {
    let mut names = columns.to_vec();
    let mut values: Vec<String> = (1..=names.len()).map(|n| dialect.parameter(n)).collect();
    for (column, value) in extra {
        names.push(column);
        values.push(value.to_string());
    }
    format!(
        "INSERT INTO {table} ({}) VALUES ({}){}",
        names.join(", "),
        values.join(", "),
        on_conflict(&names, key, keep)
    )
}

/// An upsert's `ON CONFLICT`: every column written but `key` and `keep` replaced.
fn on_conflict(columns: &[&str], key: &[&str], keep: &[&str]) -> String {
    let updates: Vec<String> = columns
        .iter()
        .filter(|column| !key.contains(column) && !keep.contains(column))
        .map(|column| format!("{column} = excluded.{column}"))
        .collect();
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        key.join(", "),
        updates.join(", ")
    )
}

/// The tenant id's column, then `columns`: how machines and actions are
/// saved (their entities do not carry their tenant).
fn with_tenant(columns: &[&'static str]) -> Vec<&'static str> {
    std::iter::once("tenant_id")
        .chain(columns.iter().copied())
        .collect()
}

/// Saves a machine row (its tags are rows of their own, see `TagRows`):
/// parameter 1 is the tenant id, then `machine_fields::values`.
pub fn machine_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        // SQLite's rows carry a revision for its machine cache: a new one with every write.
        let extra: &[(&str, &str)] = match dialect {
            Dialect::Sqlite => &[("revision", "random()")],
            Dialect::Postgres => &[],
        };
        let columns = with_tenant(machine_fields::COLUMNS);
        upsert(
            dialect,
            "machines",
            &columns,
            &["tenant_id", "id"],
            &[],
            extra,
        )
    }
    once_per_dialect!(dialect, build)
}

/// An upsert of many rows of `table` in one statement, on PostgreSQL:
/// parameter 1 is the tenant id, then one array per column of `columns`
/// (of `kinds`), one element per row. No key twice: a statement updates a
/// row once.
fn unnest_upsert(table: &str, columns: &[&'static str], kinds: &[Kind]) -> String {
    let arrays: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| format!("${}::{}[]", i + 2, kind.postgres_type()))
        .collect();
    let columns = with_tenant(columns);
    format!(
        "INSERT INTO {table} ({}) SELECT $1, u.* FROM unnest({}) AS u{}",
        columns.join(", "),
        arrays.join(", "),
        on_conflict(&columns, &["tenant_id", "id"], &[])
    )
}

/// [`machine_upsert`] for many machines in one statement, on PostgreSQL
/// (`unnest_upsert` of `machine_fields`).
pub fn machines_upsert_unnest() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        unnest_upsert(
            "machines",
            machine_fields::COLUMNS,
            &machine_fields::kinds(),
        )
    });
    SQL.as_str()
}

/// [`alert_upsert`] for many alerts in one statement, on PostgreSQL
/// (`alert_fields::values` each).
pub fn alerts_upsert_unnest() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        unnest_upsert("alerts", alert_fields::COLUMNS, &alert_fields::kinds())
    });
    SQL.as_str()
}

/// An indicator row's saved values: `indicator_fields::values`, then the
/// value it is matched by (`value_key`).
pub fn indicator_row(indicator: &Indicator, key: &str) -> Vec<Value> {
    let mut values = indicator_fields::values(indicator);
    values.push(Value::Text(key.to_string()));
    values
}

/// The kinds of [`indicator_row`]'s values.
pub fn indicator_row_kinds() -> Vec<Kind> {
    let mut kinds = indicator_fields::kinds();
    kinds.push(Kind::Text);
    kinds
}

/// [`indicator_upsert`] for many indicators in one statement, on PostgreSQL
/// (an [`indicator_row`] each).
pub fn indicators_upsert_unnest() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut columns = indicator_fields::COLUMNS.to_vec();
        columns.push("value_key");
        unnest_upsert("indicators", &columns, &indicator_row_kinds())
    });
    SQL.as_str()
}

/// Saves an action row: parameter 1 is the tenant id, then `action_fields::values`.
pub fn action_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let columns = with_tenant(action_fields::COLUMNS);
        upsert(
            dialect,
            "machine_actions",
            &columns,
            &["tenant_id", "id"],
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Who a user may see: `all`, or the JSON list of their device group ids.
pub struct GroupAccess;

const ALL_GROUPS: &str = "all";

impl Codec<DeviceGroupAccess> for GroupAccess {
    const KIND: Kind = Kind::Text;
    fn read(
        row: &(impl StoredRow + ?Sized),
        index: usize,
    ) -> Result<DeviceGroupAccess, StoreError> {
        let text = required(row.text(index)?, index)?;
        if text == ALL_GROUPS {
            return Ok(DeviceGroupAccess::All);
        }
        serde_json::from_str(&text)
            .map(DeviceGroupAccess::Only)
            .map_err(|e| unreadable(index, e))
    }
    fn value(field: &DeviceGroupAccess) -> Value {
        match field {
            DeviceGroupAccess::All => Value::Text(ALL_GROUPS.into()),
            DeviceGroupAccess::Only(ids) => Json::value(ids),
        }
    }
}

stored_entity! {
    /// `apps`: app registrations.
    pub mod app_fields for AppRegistration, alias "apps" {
        tenant_id: Plain = "tenant_id";
        client_id: Plain = "client_id";
        display_name: Plain = "display_name";
        permissions: Json = "permissions";
        secret_hash: Plain = "secret_hash";
        allow_public_client: Plain = "allow_public_client";
        redirect_uris: Json = "redirect_uris";
        certificates: Json = "certificates";
        created_at: Ticks = "created_at";
    }
}

stored_entity! {
    /// `oauth_grants`: codes, device codes, refresh tokens.
    pub mod grant_fields for OAuthGrant, alias "oauth_grants" {
        key: Plain = "key";
        tenant_id: Plain = "tenant_id";
        kind: Wire = "kind";
        client_id: Plain = "client_id";
        user_id: Plain = "user_id";
        family: Plain = "family";
        user_code: Plain = "user_code";
        details: Json = "details";
        created_at: Ticks = "created_at";
        expires_at: Ticks = "expires_at";
        used_at: Ticks = "used_at";
        polled_at: Ticks = "polled_at";
    }
}

stored_entity! {
    /// `users`.
    pub mod user_fields for User, alias "users" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        username: Plain = "username";
        roles: Json = "roles";
        device_groups: GroupAccess = "device_groups";
        password_hash: Plain = "password_hash";
        created_at: Ticks = "created_at";
    }
}

stored_entity! {
    /// `signing_keys`.
    pub mod key_fields for SigningKey, alias "signing_keys" {
        tenant_id: Plain = "tenant_id";
        kid: Plain = "kid";
        private_key: Plain = "private_key_pem";
        modulus: Plain = "modulus";
        exponent: Plain = "exponent";
        created_at: Ticks = "created_at";
        retired_at: Ticks = "retired_at";
    }
}

stored_entity! {
    /// `onboarding_tokens`.
    pub mod token_fields for OnboardingToken, alias "onboarding_tokens" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        description: Plain = "description";
        secret_hash: Plain = "secret_hash";
        created_at: Ticks = "created_at";
        revoked_at: Ticks = "revoked_at";
    }
}

stored_entity! {
    /// `devices`: enrolled devices, one per machine.
    pub mod device_fields for Device, alias "devices" {
        tenant_id: Plain = "tenant_id";
        machine_id: Plain = "machine_id";
        credential_id: Plain = "credential_id";
        credential_hash: Plain = "credential_hash";
        hardware_id: Plain = "hardware_id";
        onboarding_token_id: Plain = "onboarding_token_id";
        capabilities: Json = "capabilities";
        enrolled_at: Ticks = "enrolled_at";
        offboarded_at: Ticks = "offboarded_at";
        isolation: Wire = "isolation";
        isolation_at: Ticks = "isolation_at";
    }
}

stored_entity! {
    /// `tenants`.
    pub mod tenant_fields for Tenant, alias "tenants" {
        id: Plain = "id";
        name: Plain = "name";
        retention_days: Plain = "retention_days";
    }
}

stored_entity! {
    /// `device_groups`, of one tenant (whose id is bound apart).
    pub mod group_fields for DeviceGroup, alias "device_groups" {
        id: Plain = "id";
        name: Plain = "name";
        rank: Plain = "rank";
        rules: Json = "rules";
    }
}

stored_entity! {
    /// `audit_log e`.
    pub mod audit_fields for AuditEntry, alias "e" {
        id: Plain = "id";
        tenant_id: Plain = "tenant_id";
        time: Ticks = "time";
        actor_type: Plain = "actor_type";
        actor_id: Plain = "actor_id";
        actor_name: Plain = "actor_name";
        operation: Plain = "operation";
        target: Plain = "target";
        result: Plain = "result";
        request_id: Plain = "request_id";
    }
}

stored_entity! {
    /// `operator_credential`: the one row (`id` 1).
    pub mod operator_fields for OperatorCredential, alias "operator_credential" {
        token_sealed: Plain = "token_sealed";
        token_hash: Plain = "token_hash";
        created_at: Ticks = "created_at";
    }
}

/// Makes `operator_fields::values` the operator credential: in place of
/// the one stored (`replace`), or only if there is none.
pub fn operator_upsert(dialect: Dialect, replace: bool) -> &'static str {
    fn build(dialect: Dialect, replace: bool) -> String {
        let columns = operator_fields::COLUMNS;
        let key = ["id"];
        let upsert = upsert(
            dialect,
            "operator_credential",
            columns,
            &key,
            &[],
            &[("id", "1")],
        );
        match replace {
            true => upsert,
            false => match upsert.split_once(" ON CONFLICT") {
                Some((insert, _)) => format!("{insert} ON CONFLICT (id) DO NOTHING"),
                None => upsert,
            },
        }
    }
    match replace {
        true => once_per_dialect!(dialect, |d| build(d, true)),
        false => once_per_dialect!(dialect, |d| build(d, false)),
    }
}

stored_entity! {
    /// `outcome_rules`.
    pub mod outcome_rule_fields for StoredOutcomeRule, alias "outcome_rules" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        position: Plain = "position";
        matches: Json = "matches";
        script: Json = "script";
        hits: Plain = "hits";
    }
}

/// Adds a rule (`outcome_rule_fields::values`) in its place (`ordered_insert`).
pub fn outcome_rule_insert(dialect: Dialect, place: RulePlace) -> &'static str {
    fn build(dialect: Dialect, place: RulePlace) -> String {
        ordered_insert(
            dialect,
            "outcome_rules",
            outcome_rule_fields::COLUMNS,
            place,
        )
    }
    match place {
        RulePlace::First => once_per_dialect!(dialect, |d| build(d, RulePlace::First)),
        RulePlace::Last => once_per_dialect!(dialect, |d| build(d, RulePlace::Last)),
    }
}

stored_entity! {
    /// `fault_rules`.
    pub mod fault_rule_fields for StoredFaultRule, alias "fault_rules" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        position: Plain = "position";
        rule: Json = "definition";
        seen: Plain = "seen";
        hits: Plain = "hits";
    }
}

/// Adds a rule (`fault_rule_fields::values`) in its place (`ordered_insert`).
pub fn fault_rule_insert(dialect: Dialect, place: RulePlace) -> &'static str {
    fn build(dialect: Dialect, place: RulePlace) -> String {
        ordered_insert(dialect, "fault_rules", fault_rule_fields::COLUMNS, place)
    }
    match place {
        RulePlace::First => once_per_dialect!(dialect, |d| build(d, RulePlace::First)),
        RulePlace::Last => once_per_dialect!(dialect, |d| build(d, RulePlace::Last)),
    }
}

/// Saves an outcome rule at the position it holds (`outcome_rule_fields::values`).
pub fn outcome_rule_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "id"];
        upsert(
            dialect,
            "outcome_rules",
            outcome_rule_fields::COLUMNS,
            &key,
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Saves a fault rule at the position it holds (`fault_rule_fields::values`).
pub fn fault_rule_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "id"];
        upsert(
            dialect,
            "fault_rules",
            fault_rule_fields::COLUMNS,
            &key,
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

stored_entity! {
    /// `recorded_calls`.
    pub mod recorded_call_fields for RecordedCall, alias "recorded_calls" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        time: Ticks = "time";
        caller: Plain = "caller";
        operation: Plain = "operation";
        method: Plain = "method";
        path: Plain = "path";
        query: Plain = "query";
        request_body: Plain = "request_body";
        status: Plain = "status";
        response_body: Plain = "response_body";
        latency_ms: Plain = "latency_ms";
        retry_after: Plain = "retry_after";
        granted: Json = "granted";
        used: Json = "used";
    }
}

/// Saves a recorded call (`recorded_call_fields::values`).
pub fn recorded_call_insert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        plain_insert(dialect, "recorded_calls", recorded_call_fields::COLUMNS)
    }
    once_per_dialect!(dialect, build)
}

/// Saves the document a tenant was made from: parameter 1 the tenant id, 2 the document.
pub fn tenant_seed_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let columns = ["tenant_id", "document"];
        upsert(dialect, "tenant_seeds", &columns, &["tenant_id"], &[], &[])
    }
    once_per_dialect!(dialect, build)
}

/// Inserts a row of an ordered rule table (its `columns` start with
/// `tenant_id` and hold `position`) whose position is counted from the
/// tenant's first rule (`First`: -1 puts it before) or last rule (`Last`:
/// +1 puts it after), in the statement. (Two rules added at the same moment
/// on PostgreSQL may count from the same rule and share a position: their
/// ids then order them.)
fn ordered_insert(dialect: Dialect, table: &str, columns: &[&str], place: RulePlace) -> String {
    let bound = match place {
        RulePlace::First => "MIN",
        RulePlace::Last => "MAX",
    };
    let values: Vec<String> = (1..=columns.len())
        .map(|n| match columns[n - 1] {
            "position" => format!(
                "{} + (SELECT COALESCE({bound}(r.position), 0) FROM {table} r \
                 WHERE r.tenant_id = {})",
                dialect.parameter(n),
                dialect.parameter(1)
            ),
            _ => dialect.parameter(n),
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    )
}

stored_entity! {
    /// `action_scripts`.
    pub mod script_run_fields for ScriptRun, alias "action_scripts" {
        tenant_id: Plain = "tenant_id";
        action_id: Plain = "action_id";
        machine_id: Plain = "machine_id";
        script: Json = "script";
        step: Plain = "step";
        step_started: Ticks = "step_started";
        step_polls: Plain = "step_polls";
        due_at: Ticks = "due_at";
    }
}

/// Saves a script run (`script_run_fields::values`).
pub fn script_run_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "action_id"];
        upsert(
            dialect,
            "action_scripts",
            script_run_fields::COLUMNS,
            &key,
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

stored_entity! {
    /// `files`: files devices upload (their bytes are in `file_chunks`).
    pub mod file_fields for StoredFile, alias "files" {
        tenant_id: Plain = "tenant_id";
        id: Plain = "id";
        action_id: Plain = "action_id";
        kind: Wire = "kind";
        part: Plain = "part";
        size: Plain = "size";
        sha256: Plain = "sha256";
        created_at: Ticks = "created_at";
        completed_at: Ticks = "completed_at";
    }
}

stored_entity! {
    /// `library_files`: the live-response library (each file's bytes are a `files` row's).
    pub mod library_fields for LibraryEntry, alias "library_files" {
        tenant_id: Plain = "tenant_id";
        file_name: Plain = "file_name";
        file_id: Plain = "file_id";
        sha256: Plain = "sha256";
        description: Plain = "description";
        parameters_description: Plain = "parameters_description";
        has_parameters: Plain = "has_parameters";
        created_by: Plain = "created_by";
        creation_time: Ticks = "creation_time";
        last_updated_time: Ticks = "last_updated_time";
    }
}

stored_entity! {
    /// `tenant_clocks`: a tenant's clock, once the control plane set it.
    pub mod clock_fields for TenantClock, alias "tenant_clocks" {
        frozen_at: Ticks = "frozen_at";
        offset_ticks: Plain = "offset_ticks";
    }
}

/// Saves a tenant's clock: parameter 1 is the tenant id, then `clock_fields::values`.
pub fn clock_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let columns = with_tenant(clock_fields::COLUMNS);
        upsert(dialect, "tenant_clocks", &columns, &["tenant_id"], &[], &[])
    }
    once_per_dialect!(dialect, build)
}

/// Saves a device group: parameter 1 is the tenant id, then `group_fields::values`.
pub fn group_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let columns = with_tenant(group_fields::COLUMNS);
        upsert(
            dialect,
            "device_groups",
            &columns,
            &["tenant_id", "id"],
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Saves an app (`app_fields::values`); a replaced one keeps its creation time.
pub fn app_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "client_id"];
        upsert(
            dialect,
            "apps",
            app_fields::COLUMNS,
            &key,
            &["created_at"],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Saves a user (`user_fields::values`); a replaced one keeps its creation time.
pub fn user_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "id"];
        upsert(
            dialect,
            "users",
            user_fields::COLUMNS,
            &key,
            &["created_at"],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Adds a signing key (`key_fields::values`).
pub fn key_insert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        plain_insert(dialect, "signing_keys", key_fields::COLUMNS)
    }
    once_per_dialect!(dialect, build)
}

/// Adds a grant (`grant_fields::values`).
pub fn grant_insert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        plain_insert(dialect, "oauth_grants", grant_fields::COLUMNS)
    }
    once_per_dialect!(dialect, build)
}

/// `INSERT INTO table (columns) VALUES (?1, ...)`.
fn plain_insert(dialect: Dialect, table: &str, columns: &[&str]) -> String {
    let values: Vec<String> = (1..=columns.len()).map(|n| dialect.parameter(n)).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    )
}

/// Saves an onboarding token (`token_fields::values`).
pub fn token_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "id"];
        upsert(
            dialect,
            "onboarding_tokens",
            token_fields::COLUMNS,
            &key,
            &[],
            &[],
        )
    }
    once_per_dialect!(dialect, build)
}

/// Saves a device (`device_fields::values`).
pub fn device_upsert(dialect: Dialect) -> &'static str {
    fn build(dialect: Dialect) -> String {
        let key = ["tenant_id", "machine_id"];
        upsert(dialect, "devices", device_fields::COLUMNS, &key, &[], &[])
    }
    once_per_dialect!(dialect, build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_read_and_every_saved_column_bound() {
        assert_eq!(machine_fields::READ_COLUMNS, 32);
        assert_eq!(machine_fields::COLUMNS.len(), 30);
        assert_eq!(action_fields::READ_COLUMNS, action_fields::COLUMNS.len());
        assert_eq!(machine_fields::column("riskScore"), Some("m.risk_score"));
        assert_eq!(
            action_fields::column("creationDateTimeUtc"),
            Some("a.creation_time")
        );
        assert_eq!(machine_fields::column("firstSeen"), None, "not queryable");
        let kinds = machine_fields::kinds();
        assert_eq!(kinds.len(), machine_fields::COLUMNS.len());
        let kind = |column| {
            kinds[machine_fields::COLUMNS
                .iter()
                .position(|c| *c == column)
                .unwrap()]
        };
        assert_eq!(kind("first_seen"), Kind::Integer);
        assert_eq!(kind("is_excluded"), Kind::Boolean);
        assert_eq!(kind("vm_metadata"), Kind::Text);
    }
}
