//! A tenant document (`palisade_contract::seed`) read into what the store
//! writes, with MDE's defaults for what it leaves out; and a tenant's state
//! written back as one. A document that does not read is refused whole, the
//! message naming the entry and field (`machines[3].osPlatform`).

use crate::access::Role;
use crate::caller::{DeviceGroupAccess, Tenant, DEFAULT_RETENTION_DAYS};
use crate::control::{StoredFaultRule, StoredOutcomeRule};
use crate::ids;
use crate::rules::{device_groups::GroupRules, faults};
use crate::store::DeviceGroup;
use palisade_contract::seed::{SeedApp, SeedDeviceGroup, SeedGroupRules, SeedUser, TenantDocument};
use palisade_contract::{Alert, Indicator, Machine, MachineAction, MdeError, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::str::FromStr;

/// A document as the store writes it.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub tenant: Tenant,
    pub groups: Vec<DeviceGroup>,
    pub machines: Vec<Machine>,
    pub actions: Vec<MachineAction>,
    /// Each with a `lastUpdateTime` of its own (no two alike).
    pub alerts: Vec<Alert>,
    /// With the value each is matched by.
    pub indicators: Vec<(Indicator, String)>,
    pub outcomes: Vec<StoredOutcomeRule>,
    pub faults: Vec<StoredFaultRule>,
    pub apps: Vec<SeedApp>,
    pub users: Vec<SeededUser>,
}

/// A user of a document, its roles and groups read.
#[derive(Debug, Clone)]
pub struct SeededUser {
    pub username: String,
    pub password: Option<String>,
    pub roles: Vec<Role>,
    pub access: DeviceGroupAccess,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> MdeError {
    MdeError::invalid_input(format!("Invalid input {field}: {why}"))
}

/// What did not read at `path` (as `serde_path_to_error` writes it) within
/// `entry` (none: the document), as an error naming the field once (YAML's
/// messages name it too).
pub fn unreadable(entry: &str, path: &str, why: &str) -> MdeError {
    let (inner, why) = match path {
        "." | "" | "?" => ("", why),
        path => (path, why.strip_prefix(&format!("{path}: ")).unwrap_or(why)),
    };
    let field = match (entry, inner) {
        ("", "") => return MdeError::invalid_input(format!("Invalid input: {why}")),
        (entry, "") => entry.to_string(),
        ("", inner) => inner.to_string(),
        (entry, inner) => format!("{entry}.{inner}"),
    };
    invalid(&field, why)
}

/// `value` read as a `T`, an error naming `entry` and the field within it.
fn read<T: DeserializeOwned>(entry: &str, value: Value) -> Result<T, MdeError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        unreadable(entry, &path, &error.into_inner().to_string())
    })
}

/// `given` laid over `defaults`: what the document says, else MDE's default.
fn overlay(entry: &str, mut defaults: Value, given: &Value) -> Result<Value, MdeError> {
    let Value::Object(given) = given else {
        return Err(invalid(entry, "an object"));
    };
    let object = defaults.as_object_mut().expect("defaults are an object");
    for (key, value) in given {
        object.insert(key.clone(), value.clone());
    }
    Ok(defaults)
}

/// What a seeded machine is unless its entry says otherwise: seen a minute
/// ago, onboarded, active, in no group.
fn machine_defaults(now: Timestamp) -> Value {
    json!({
        "id": ids::new_machine_id(),
        "isPotentialDuplication": false,
        "isExcluded": false,
        "firstSeen": now.minus_days(30),
        "lastSeen": now.plus_seconds(-60),
        "osPlatform": "Windows11",
        "healthStatus": "Active",
        "rbacGroupId": 0,
        "isAadJoined": false,
        "machineTags": [],
        "onboardingStatus": "Onboarded",
        "ipAddresses": [],
    })
}

/// What a seeded action is unless its entry says otherwise: Pending, made now.
fn action_defaults(now: Timestamp, machine: &Machine) -> Value {
    json!({
        "id": ids::new_action_id(),
        "requestor": "seed",
        "status": "Pending",
        "computerDnsName": machine.computer_dns_name,
        "creationDateTimeUtc": now,
        "errorHResult": 0,
        "requestSource": crate::rules::actions::REQUEST_SOURCE,
        "commands": [],
    })
}

/// Reads and checks the whole document; `now` dates what it leaves undated.
pub fn resolve(document: &TenantDocument, now: Timestamp) -> Result<TenantState, MdeError> {
    let tenant_id = uuid::Uuid::parse_str(&document.tenant_id)
        .map_err(|_| {
            invalid(
                "tenantId",
                format!("'{}' is not a GUID", document.tenant_id),
            )
        })?
        .to_string();
    if document.name.trim().is_empty() {
        return Err(invalid("name", "the tenant needs a name"));
    }
    let tenant = Tenant {
        id: tenant_id.clone(),
        name: document.name.clone(),
        retention_days: document.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
    };
    let groups = document
        .device_groups
        .iter()
        .enumerate()
        .map(|(i, group)| device_group(i, group))
        .collect::<Result<Vec<_>, _>>()?;
    unique(
        groups.iter().map(|g| g.id.to_string()),
        "deviceGroups",
        "id",
    )?;

    let mut machines = Vec::with_capacity(document.machines.len());
    for (i, given) in document.machines.iter().enumerate() {
        let entry = format!("machines[{i}]");
        let machine: Machine = read(&entry, overlay(&entry, machine_defaults(now), given)?)?;
        if !ids::is_machine_id(&machine.id) {
            return Err(invalid(&format!("{entry}.id"), "40 hexadecimal characters"));
        }
        if machine.computer_dns_name.is_empty() {
            return Err(invalid(
                &format!("{entry}.computerDnsName"),
                "a machine needs a name",
            ));
        }
        if machine.rbac_group_id != 0 && !groups.iter().any(|g| g.id == machine.rbac_group_id) {
            return Err(invalid(
                &format!("{entry}.rbacGroupId"),
                format!("no device group {} in deviceGroups", machine.rbac_group_id),
            ));
        }
        crate::rules::tags::replacement(&machine.machine_tags)
            .map_err(|e| invalid(&format!("{entry}.machineTags"), e.message))?;
        machines.push(Machine {
            id: machine.id.to_ascii_lowercase(),
            ..machine
        });
    }
    unique(machines.iter().map(|m| m.id.clone()), "machines", "id")?;

    let mut actions = Vec::with_capacity(document.machine_actions.len());
    for (i, given) in document.machine_actions.iter().enumerate() {
        let entry = format!("machineActions[{i}]");
        let machine_id = given
            .get("machineId")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{entry}.machineId"), "the id of a machine above"))?
            .to_ascii_lowercase();
        let machine = machines
            .iter()
            .find(|m| m.id == machine_id)
            .ok_or_else(|| {
                invalid(
                    &format!("{entry}.machineId"),
                    format!("no machine {machine_id} in machines"),
                )
            })?;
        let mut defaults = action_defaults(now, machine);
        let created = given.get("creationDateTimeUtc").cloned();
        defaults["lastUpdateDateTimeUtc"] = created.unwrap_or_else(|| json!(now));
        let mut given = given.clone();
        given["machineId"] = json!(machine_id);
        let action: MachineAction = read(&entry, overlay(&entry, defaults, &given)?)?;
        let id = uuid::Uuid::parse_str(&action.id)
            .map_err(|_| invalid(&format!("{entry}.id"), "a GUID"))?
            .to_string();
        actions.push(MachineAction { id, ..action });
    }
    unique(actions.iter().map(|a| a.id.clone()), "machineActions", "id")?;
    // A machine has at most one open action of a kind, as the API keeps it.
    let open: Vec<String> = actions
        .iter()
        .filter(|a| a.status.is_active())
        .map(|a| format!("{} {:?}", a.machine_id, a.action_type))
        .collect();
    unique(
        open.into_iter(),
        "machineActions",
        "status (one open action of a type per machine)",
    )?;

    let alerts = seeded_alerts(document, &tenant_id, &machines, &groups, now)?;
    let indicators = seeded_indicators(document, &groups, now)?;

    let mut outcomes = Vec::new();
    for (i, rule) in document.outcomes.iter().enumerate() {
        rule.validate().map_err(|e| {
            MdeError::invalid_input(
                e.message
                    .replace("Invalid input ", &format!("Invalid input outcomes[{i}].")),
            )
        })?;
        let mut stored = StoredOutcomeRule::new(&tenant_id, rule.clone());
        stored.position = i as i64;
        outcomes.push(stored);
    }
    let mut fault_rules = Vec::new();
    for (i, rule) in document.faults.iter().enumerate() {
        let rule = faults::checked(rule.clone()).map_err(|e| {
            MdeError::invalid_input(
                e.message
                    .replace("Invalid input ", &format!("Invalid input faults[{i}].")),
            )
        })?;
        let mut stored = StoredFaultRule::new(&tenant_id, rule);
        stored.position = i as i64;
        fault_rules.push(stored);
    }

    for (i, app) in document.apps.iter().enumerate() {
        uuid::Uuid::parse_str(&app.client_id)
            .map_err(|_| invalid(&format!("apps[{i}].clientId"), "a GUID"))?;
        if app.name.trim().is_empty() {
            return Err(invalid(&format!("apps[{i}].name"), "an app needs a name"));
        }
        if app.client_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(invalid(
                &format!("apps[{i}].clientSecret"),
                "at least 16 characters",
            ));
        }
    }
    unique(
        document
            .apps
            .iter()
            .map(|a| a.client_id.to_ascii_lowercase()),
        "apps",
        "clientId",
    )?;
    let users = document
        .users
        .iter()
        .enumerate()
        .map(|(i, user)| seeded_user(i, user, &groups))
        .collect::<Result<Vec<_>, _>>()?;
    unique(
        users.iter().map(|u| u.username.to_ascii_lowercase()),
        "users",
        "username",
    )?;

    Ok(TenantState {
        tenant,
        groups,
        machines,
        actions,
        alerts,
        indicators,
        outcomes,
        faults: fault_rules,
        apps: document.apps.clone(),
        users,
    })
}

/// The document's alerts, each on a machine of `machines` (its name and
/// group from it unless given), New and queued unless it says otherwise.
/// Update times that repeat are moved on by a tick each, in order, so that
/// no two alerts share one (incremental polling rests on it).
fn seeded_alerts(
    document: &TenantDocument,
    tenant_id: &str,
    machines: &[Machine],
    groups: &[DeviceGroup],
    now: Timestamp,
) -> Result<Vec<Alert>, MdeError> {
    let mut alerts = Vec::with_capacity(document.alerts.len());
    for (i, given) in document.alerts.iter().enumerate() {
        let entry = format!("alerts[{i}]");
        let machine_id = given
            .get("machineId")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{entry}.machineId"), "the id of a machine above"))?
            .to_ascii_lowercase();
        let mut machine = machines
            .iter()
            .find(|m| m.id == machine_id)
            .ok_or_else(|| {
                invalid(
                    &format!("{entry}.machineId"),
                    format!("no machine {machine_id} in machines"),
                )
            })?
            .clone();
        // In the group the store will place it in.
        crate::rules::device_groups::place(groups, &mut machine);
        let machine = &machine;
        let created = given
            .get("alertCreationTime")
            .and_then(Value::as_str)
            .and_then(Timestamp::parse)
            .unwrap_or(now);
        let mut defaults =
            serde_json::to_value(crate::rules::alerts::new_alert(machine, tenant_id, created))
                .expect("an Alert serializes");
        defaults["incidentId"] = json!(i + 1);
        let mut given = given.clone();
        given["machineId"] = json!(machine_id);
        let alert: Alert = read(&entry, overlay(&entry, defaults, &given)?)?;
        if alert.title.trim().is_empty() {
            return Err(invalid(&format!("{entry}.title"), "an alert needs a title"));
        }
        alerts.push(alert);
    }
    unique(alerts.iter().map(|a| a.id.clone()), "alerts", "id")?;
    let mut order: Vec<usize> = (0..alerts.len()).collect();
    order.sort_by_key(|&i| (alerts[i].last_update_time, i));
    let mut last = None;
    for i in order {
        let time = &mut alerts[i].last_update_time;
        if let Some(last) = last.filter(|last: &Timestamp| *time <= *last) {
            *time = Timestamp::from_ticks(last.ticks() + 1);
        }
        last = Some(*time);
    }
    Ok(alerts)
}

/// The document's indicators, checked as `POST /api/indicators` checks a
/// submission (an expired one may be seeded), numbered after the highest
/// id given.
fn seeded_indicators(
    document: &TenantDocument,
    groups: &[DeviceGroup],
    now: Timestamp,
) -> Result<Vec<(Indicator, String)>, MdeError> {
    let given_ids = document
        .indicators
        .iter()
        .filter_map(|i| i.get("id").and_then(Value::as_str))
        .filter_map(|id| id.parse::<i64>().ok());
    let mut next_id = given_ids.max().unwrap_or(0) + 1;
    let mut indicators = Vec::with_capacity(document.indicators.len());
    for (i, given) in document.indicators.iter().enumerate() {
        let entry = format!("indicators[{i}]");
        let id = match given.get("id") {
            Some(Value::String(id)) if id.parse::<i64>().is_ok_and(|n| n > 0) => id.clone(),
            Some(_) => return Err(invalid(&format!("{entry}.id"), "a number, as a string")),
            None => {
                next_id += 1;
                (next_id - 1).to_string()
            }
        };
        let defaults = json!({
            "id": id,
            "application": null,
            "source": "seed",
            "sourceType": "User",
            "createdBy": "seed",
            "createdByDisplayName": "seed",
            "createdBySource": "PublicApi",
            "severity": "Informational",
            "recommendedActions": null,
            "creationTimeDateTimeUtc": now,
            "expirationTime": null,
            "lastUpdateTime": now,
            "lastUpdatedBy": null,
            "rbacGroupNames": [],
            "rbacGroupIds": [],
            "generateAlert": false,
            "mitreTechniques": [],
            "educateUrl": null,
        });
        let mut indicator: Indicator = read(&entry, overlay(&entry, defaults, given)?)?;
        let key = crate::rules::indicators::value_key(
            indicator.indicator_type,
            &indicator.indicator_value,
        )
        .map_err(|e| invalid(&format!("{entry}.indicatorValue"), e.message))?;
        let mut ids = Vec::new();
        for (g, name) in indicator.rbac_group_names.iter().enumerate() {
            let group = groups
                .iter()
                .find(|group| group.name == *name)
                .ok_or_else(|| {
                    invalid(
                        &format!("{entry}.rbacGroupNames[{g}]"),
                        format!("no device group named '{name}'"),
                    )
                })?;
            ids.push(group.id.to_string());
        }
        indicator.rbac_group_ids = ids;
        indicators.push((indicator, key));
    }
    unique(
        indicators.iter().map(|(i, _)| i.id.clone()),
        "indicators",
        "id",
    )?;
    unique(
        indicators
            .iter()
            .map(|(i, key)| format!("{} {key}", i.indicator_type.as_str())),
        "indicators",
        "indicatorValue (one indicator per type and value)",
    )?;
    Ok(indicators)
}

fn unique(keys: impl Iterator<Item = String>, list: &str, field: &str) -> Result<(), MdeError> {
    let mut seen = HashSet::new();
    for (i, key) in keys.enumerate() {
        if !seen.insert(key.clone()) {
            return Err(invalid(
                &format!("{list}[{i}].{field}"),
                format!("'{key}' is given twice"),
            ));
        }
    }
    Ok(())
}

fn device_group(i: usize, group: &SeedDeviceGroup) -> Result<DeviceGroup, MdeError> {
    let entry = format!("deviceGroups[{i}]");
    if group.id <= 0 {
        return Err(invalid(
            &format!("{entry}.id"),
            "a positive number (0 is 'Ungrouped devices')",
        ));
    }
    let rules = group.rules.clone().unwrap_or_default();
    let rules = GroupRules {
        name_prefixes: rules.name_prefixes,
        tags: rules.tags,
        os_platforms: rules.os_platforms,
        machine_ids: rules.machine_ids,
    };
    Ok(DeviceGroup {
        id: group.id,
        name: group.name.clone(),
        rank: group.rank.unwrap_or(group.id),
        rules,
    })
}

fn seeded_user(i: usize, user: &SeedUser, groups: &[DeviceGroup]) -> Result<SeededUser, MdeError> {
    let entry = format!("users[{i}]");
    if !user.username.contains('@') {
        return Err(invalid(
            &format!("{entry}.username"),
            "a user principal name (name@domain)",
        ));
    }
    let roles = user
        .roles
        .iter()
        .enumerate()
        .map(|(r, role)| {
            Role::from_str(role).map_err(|_| {
                invalid(
                    &format!("{entry}.roles[{r}]"),
                    format!(
                        "'{role}' is not an MDE role (e.g. View data, Active remediation actions)"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if user
        .password
        .as_ref()
        .is_some_and(|p| p.chars().count() < 12)
    {
        return Err(invalid(
            &format!("{entry}.password"),
            "at least 12 characters",
        ));
    }
    if user.roles.is_empty() {
        return Err(invalid(
            &format!("{entry}.roles"),
            "a user needs at least one role",
        ));
    }
    let access = match &user.device_groups {
        None => DeviceGroupAccess::All,
        Some(ids) => {
            for (g, id) in ids.iter().enumerate() {
                if *id != 0 && !groups.iter().any(|group| group.id == *id) {
                    return Err(invalid(
                        &format!("{entry}.deviceGroups[{g}]"),
                        format!("no device group {id}"),
                    ));
                }
            }
            DeviceGroupAccess::Only(ids.clone())
        }
    };
    Ok(SeededUser {
        username: user.username.clone(),
        password: user.password.clone(),
        roles,
        access,
    })
}

/// What the store holds of a tenant, for [`document`].
pub struct StoredState {
    pub tenant: Tenant,
    pub groups: Vec<DeviceGroup>,
    /// MDE Machine objects.
    pub machines: Vec<Value>,
    pub actions: Vec<MachineAction>,
    pub alerts: Vec<Alert>,
    pub indicators: Vec<Indicator>,
    pub outcomes: Vec<StoredOutcomeRule>,
    pub faults: Vec<StoredFaultRule>,
    pub apps: Vec<crate::identity::AppRegistration>,
    pub users: Vec<crate::identity::User>,
}

impl StoredState {
    /// A tenant with nothing in it.
    pub fn empty(tenant: Tenant) -> StoredState {
        StoredState {
            tenant,
            groups: vec![],
            machines: vec![],
            actions: vec![],
            alerts: vec![],
            indicators: vec![],
            outcomes: vec![],
            faults: vec![],
            apps: vec![],
            users: vec![],
        }
    }

    /// What a write of `state` stores (apps and users aside: a reset leaves them).
    pub fn written(state: &TenantState) -> StoredState {
        StoredState {
            tenant: state.tenant.clone(),
            groups: state.groups.clone(),
            machines: state
                .machines
                .iter()
                .map(|m| serde_json::to_value(m).expect("a Machine serializes"))
                .collect(),
            actions: state.actions.clone(),
            alerts: state.alerts.clone(),
            indicators: state.indicators.iter().map(|(i, _)| i.clone()).collect(),
            outcomes: state.outcomes.clone(),
            faults: state.faults.clone(),
            apps: vec![],
            users: vec![],
        }
    }
}

/// The tenant as a document ([`resolve`] reads it back to the same state),
/// in a stable order (by id); without secrets.
pub fn document(mut state: StoredState) -> TenantDocument {
    state.groups.sort_by_key(|g| g.id);
    state
        .machines
        .sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    state.actions.sort_by(|a, b| a.id.cmp(&b.id));
    state.alerts.sort_by(|a, b| a.id.cmp(&b.id));
    state
        .indicators
        .sort_by_key(|i| i.id.parse::<i64>().unwrap_or(i64::MAX));
    state.apps.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    state.users.sort_by(|a, b| a.username.cmp(&b.username));
    TenantDocument {
        tenant_id: state.tenant.id,
        name: state.tenant.name,
        retention_days: Some(state.tenant.retention_days),
        device_groups: state
            .groups
            .iter()
            .map(|g| SeedDeviceGroup {
                id: g.id,
                name: g.name.clone(),
                rank: Some(g.rank),
                rules: (g.rules != GroupRules::default()).then(|| SeedGroupRules {
                    name_prefixes: g.rules.name_prefixes.clone(),
                    tags: g.rules.tags.clone(),
                    os_platforms: g.rules.os_platforms.clone(),
                    machine_ids: g.rules.machine_ids.clone(),
                }),
            })
            .collect(),
        machines: state.machines,
        machine_actions: state
            .actions
            .iter()
            .map(|a| serde_json::to_value(a).expect("a MachineAction serializes"))
            .collect(),
        alerts: state
            .alerts
            .iter()
            .map(|a| serde_json::to_value(a).expect("an Alert serializes"))
            .collect(),
        indicators: state
            .indicators
            .iter()
            .map(|i| serde_json::to_value(i).expect("an Indicator serializes"))
            .collect(),
        apps: state
            .apps
            .iter()
            .map(|a| SeedApp {
                client_id: a.client_id.clone(),
                name: a.display_name.clone(),
                client_secret: None,
                permissions: a.permissions.clone(),
                allow_public_client: a.allow_public_client,
                redirect_uris: a.redirect_uris.clone(),
                certificates: a.certificates.clone(),
            })
            .collect(),
        users: state
            .users
            .iter()
            .map(|u| SeedUser {
                username: u.username.clone(),
                password: None,
                roles: u.roles.iter().map(|r| r.as_str().to_string()).collect(),
                device_groups: match &u.device_groups {
                    DeviceGroupAccess::All => None,
                    DeviceGroupAccess::Only(ids) => Some(ids.clone()),
                },
            })
            .collect(),
        outcomes: state
            .outcomes
            .iter()
            .map(|r| palisade_contract::control::NewOutcomeRule {
                matches: r.matches.clone(),
                script: r.script.clone(),
            })
            .collect(),
        faults: state.faults.iter().map(|r| r.rule.clone()).collect(),
    }
}
