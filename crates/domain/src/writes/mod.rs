//! The store's writes, written once for both databases. Each runs inside one
//! transaction of its store, through the rows that a [`Transaction`] loads,
//! locks and saves; the rules decide in between. A store only opens the
//! transaction, runs the write in it ([`Write::attempt`]) and commits: it
//! decides nothing.

use crate::caller::{Tenant, Visibility};
use crate::clock::TenantClock;
use crate::control::{ScriptRun, StoredFaultRule, StoredOutcomeRule};
use crate::devices::{CheckInRecord, Device, DeviceActionDecision};
use crate::identity::{change_result, AuditEntry};
use crate::rules::ip_history::{self, IpHistorySync};
use crate::rules::{device_actions, device_groups, device_report, enrollment, faults, outcomes};
use crate::seed::TenantState;
use crate::store::{
    ActionDecision, DeviceGroup, MachineChange, MachineDecision, MachineKey, MachineRef,
    StoreError, WriteError,
};
use palisade_contract::control::ClockChange;
use palisade_contract::{Alert, Indicator, Machine, MachineAction, MdeError, Timestamp};
use palisade_device::Capability;
use std::collections::{HashMap, HashSet};
use std::future::Future;

mod alerts;
mod indicators;
pub use alerts::{AlertChange, AlertRaise, ChangeAlerts, RaiseAlert};
pub use indicators::{DeleteIndicators, SubmitIndicators};

/// What the writes need of a database, inside one transaction. A row read
/// stays as read until the transaction ends: PostgreSQL locks it (where a
/// method says so, or `lock` asks), SQLite's single writer holds the whole
/// database. Locks are taken machine first, then its device, then its
/// actions, so that concurrent transactions wait for each other rather than
/// deadlock.
pub trait Transaction {
    /// The machine `key` names among those `visibility` shows; `lock`ed
    /// unless [`Transaction::lock_machines`] locked it already.
    fn machine(
        &mut self,
        visibility: &Visibility,
        key: MachineKey<'_>,
        lock: bool,
    ) -> impl Future<Output = Result<Option<Machine>, StoreError>> + Send;
    /// The tenant's machines of `ids` (sorted, without repeats) that are
    /// stored, locked, in id order.
    fn stored_machines(
        &mut self,
        tenant_id: &str,
        ids: &[&str],
    ) -> impl Future<Output = Result<Vec<Machine>, StoreError>> + Send;
    /// Locks the tenant's machines of `ids` (sorted) that exist.
    fn lock_machines(
        &mut self,
        tenant_id: &str,
        ids: &[&str],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every machine of the tenant, locked.
    fn tenant_machines(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<Machine>, StoreError>> + Send;
    /// The machine's Pending and InProgress actions, oldest first. Reads
    /// that take `&self` may run together (PostgreSQL sends them in one
    /// round trip).
    fn open_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> impl Future<Output = Result<Vec<MachineAction>, StoreError>> + Send;
    /// The action `id` among those `visibility` shows, locked.
    fn action(
        &mut self,
        visibility: &Visibility,
        id: &str,
    ) -> impl Future<Output = Result<Option<MachineAction>, StoreError>> + Send;
    /// The device enrolled as the machine (offboarded or not); `lock`ed if asked.
    fn device_of_machine(
        &self,
        tenant_id: &str,
        machine_id: &str,
        lock: bool,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send;
    fn device_by_credential(
        &mut self,
        tenant_id: &str,
        credential_id: &str,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send;
    /// Whether a device of this hardware is enrolled and not offboarded.
    fn hardware_enrolled(
        &mut self,
        tenant_id: &str,
        hardware_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Makes enrollments of this hardware take turns, until the transaction ends.
    fn lock_hardware(
        &mut self,
        tenant_id: &str,
        hardware_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant's device groups, by id.
    fn device_groups(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<DeviceGroup>, StoreError>> + Send;
    /// The machines of `keys` (tenant and machine ids, sorted, without
    /// repeats) that have a device, with it, both locked.
    fn reporting_machines(
        &mut self,
        keys: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<(Machine, Device)>, StoreError>> + Send;

    /// Creates the tenant unless one with its id exists; whether it did.
    fn insert_tenant(
        &mut self,
        tenant: &Tenant,
        created_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn save_device_group(
        &mut self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Creates or overwrites each machine's row (no id twice), and brings
    /// its tags from the old tags beside it (as stored) to the machine's.
    fn save_machines(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Brings the tags of machines whose row is otherwise as stored from the
    /// old tags beside each to the machine's (the row gets a new revision
    /// from the tags' triggers, as for any change to its tags).
    fn save_tags(
        &mut self,
        tenant_id: &str,
        machines: &[(&Machine, &[String])],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Moves each machine of `moves` (id, device group id) to its group.
    fn move_machines(
        &mut self,
        tenant_id: &str,
        moves: &[(&str, i64)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes what check-ins change: each machine's report fields
    /// (`rules::device_report::apply`) and its device's isolation.
    fn save_reports(
        &mut self,
        reports: &[(&Machine, &Device)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Brings the address history of each machine (by id, no id twice) in
    /// line with its sync.
    fn save_ip_history(
        &mut self,
        tenant_id: &str,
        syncs: &[(&str, IpHistorySync)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Creates or overwrites the action's row.
    fn save_action(
        &mut self,
        tenant_id: &str,
        action: &MachineAction,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Tells every node, once the transaction commits, that the machine has
    /// a new action (its device's long poll ends).
    fn announce_new_action(
        &mut self,
        tenant_id: &str,
        machine_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn save_device(
        &mut self,
        device: &Device,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Appends the audit entry of the write, about `machine_ids`
    /// (`Store::append_audit`), to commit with it.
    fn append_audit(
        &mut self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The tenant's outcome rules, in the order they apply.
    fn outcome_rules(
        &self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredOutcomeRule>, StoreError>> + Send;
    /// One more action taken by the rule.
    fn count_outcome_hit(
        &mut self,
        tenant_id: &str,
        rule_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The run of the action, if an outcome rule took it.
    fn action_script(
        &self,
        tenant_id: &str,
        action_id: &str,
    ) -> impl Future<Output = Result<Option<ScriptRun>, StoreError>> + Send;
    /// Saves the action's run, or (none) forgets it.
    fn save_action_script(
        &mut self,
        tenant_id: &str,
        action_id: &str,
        run: Option<&ScriptRun>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes the tenant's state (`Store::seed_tenant`): machines, their
    /// tags, history, devices and actions, alerts, indicators, device
    /// groups, audit, outcome and fault rules; with `control`, its clock and
    /// recorder too.
    fn clear_tenant_state(
        &mut self,
        tenant_id: &str,
        control: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Saves the tenant's name and retention.
    fn update_tenant(
        &mut self,
        tenant: &Tenant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Saves the rule at its position.
    fn save_outcome_rule(
        &mut self,
        rule: &StoredOutcomeRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn save_fault_rule(
        &mut self,
        rule: &StoredFaultRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Keeps the document the tenant is reset to.
    fn save_tenant_seed(
        &mut self,
        tenant_id: &str,
        document: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant's fault rule `id`, locked.
    fn fault_rule(
        &mut self,
        tenant_id: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredFaultRule>, StoreError>> + Send;
    /// Saves the rule's `seen` and `hits`.
    fn save_fault_counts(
        &mut self,
        rule: &StoredFaultRule,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant's clock, if it was set, locked.
    fn tenant_clock(
        &mut self,
        tenant_id: &str,
    ) -> impl Future<Output = Result<Option<TenantClock>, StoreError>> + Send;
    fn save_tenant_clock(
        &mut self,
        tenant_id: &str,
        clock: &TenantClock,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reserves `count` values of the tenant's `counter`, the first one past
    /// the last reserved and at least `at_least`; returns the first. The
    /// counter stays locked until the transaction ends, so that writes
    /// commit in the order of the values they took. A `count` of 0 (with
    /// `at_least` 0) takes the lock alone.
    fn reserve(
        &mut self,
        tenant_id: &str,
        counter: Counter,
        at_least: i64,
        count: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// The alerts of `ids` (no repeats) among those `visibility` shows, locked.
    fn alerts(
        &mut self,
        visibility: &Visibility,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Alert>, StoreError>> + Send;
    /// The machine's open (not Resolved) alert titled `title`, if any, locked.
    fn open_alert_titled(
        &mut self,
        tenant_id: &str,
        machine_id: &str,
        title: &str,
    ) -> impl Future<Output = Result<Option<Alert>, StoreError>> + Send;
    /// Creates or overwrites each alert's row.
    fn save_alerts(
        &mut self,
        tenant_id: &str,
        alerts: &[Alert],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant's indicators whose matched value is one of `keys`
    /// (`rules::indicators::value_key`), of any type, locked.
    fn indicators_with_keys(
        &mut self,
        tenant_id: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Indicator>, StoreError>> + Send;
    /// The tenant's indicators of `ids`, locked.
    fn indicators_with_ids(
        &mut self,
        tenant_id: &str,
        ids: &[i64],
    ) -> impl Future<Output = Result<Vec<Indicator>, StoreError>> + Send;
    /// How many of the tenant's indicators are in force at `now`.
    fn active_indicator_count(
        &mut self,
        tenant_id: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Creates or overwrites each indicator's row, with the value it is
    /// matched by beside it.
    fn save_indicators(
        &mut self,
        tenant_id: &str,
        indicators: &[(Indicator, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn delete_indicators(
        &mut self,
        tenant_id: &str,
        ids: &[i64],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The per-tenant counters writes reserve values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Counter {
    /// The last `lastUpdateTime` (ticks) an alert was given.
    #[strum(serialize = "alert_update")]
    AlertUpdate,
    /// The last incident id.
    #[strum(serialize = "incident_id")]
    IncidentId,
    /// The last indicator id.
    #[strum(serialize = "indicator_id")]
    IndicatorId,
}

impl Counter {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// One of the writes below with what it was asked, as a store runs it:
/// attempted in a transaction of the store's, perhaps more than once (a
/// PostgreSQL batch runs again a write that gave way to another
/// transaction's lock), but only while [`Write::may_retry`] says so.
pub trait Write: Send + 'static {
    type Output: Send + 'static;
    fn attempt<'t, T: Transaction + Send>(
        &'t mut self,
        tx: &'t mut T,
    ) -> impl Future<Output = Result<Self::Output, WriteError>> + Send + 't;
    /// Whether a failed attempt may be made again: not once it has asked
    /// for its decision, which may decide otherwise the next time.
    fn may_retry(&self) -> bool;
}

/// Stores each `after` over its `before` (the machine as loaded, if it was
/// stored; no id twice), with its tags and its address history
/// (`rules::ip_history::sync`).
async fn save_machines(
    tx: &mut impl Transaction,
    tenant_id: &str,
    changes: &[(Option<&Machine>, &Machine)],
) -> Result<(), StoreError> {
    // A change of tags alone (a tag POST) leaves the row as it is.
    let (mut rows, mut tags_only): (Vec<(&Machine, &[String])>, Vec<_>) = (vec![], vec![]);
    for (before, after) in changes {
        let old_tags = before.map_or(&[][..], |m| &m.machine_tags[..]);
        match before {
            Some(before) if same_but_tags(before, after) => tags_only.push((*after, old_tags)),
            _ => rows.push((*after, old_tags)),
        }
    }
    if !rows.is_empty() {
        tx.save_machines(tenant_id, &rows).await?;
    }
    if !tags_only.is_empty() {
        tx.save_tags(tenant_id, &tags_only).await?;
    }
    let syncs: Vec<(&str, IpHistorySync)> = changes
        .iter()
        .filter_map(|(before, after)| Some((after.id.as_str(), ip_history::sync(*before, after)?)))
        .collect();
    if !syncs.is_empty() {
        tx.save_ip_history(tenant_id, &syncs).await?;
    }
    Ok(())
}

/// Whether two machines differ in their tags alone.
fn same_but_tags(before: &Machine, after: &Machine) -> bool {
    let retagged = Machine {
        machine_tags: before.machine_tags.clone(),
        ..after.clone()
    };
    retagged == *before
}

/// Stores `after` over `before`, as [`save_machines`] does.
async fn save_machine(
    tx: &mut impl Transaction,
    tenant_id: &str,
    before: Option<&Machine>,
    after: &Machine,
) -> Result<(), StoreError> {
    save_machines(tx, tenant_id, &[(before, after)]).await
}

/// Stores `machines`, each placed in its device group (`groups`), over the
/// stored ones: a few statements for many machines. A machine given twice
/// is stored twice, in order, as if by two calls.
async fn put_placed_machines(
    tx: &mut impl Transaction,
    tenant_id: &str,
    groups: &[DeviceGroup],
    machines: &[Machine],
) -> Result<(), StoreError> {
    for run in runs_without_repeats(machines, |m| m.id.as_str()) {
        let mut ids: Vec<&str> = run.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        let mut stored: HashMap<String, Machine> = tx
            .stored_machines(tenant_id, &ids)
            .await?
            .into_iter()
            .map(|machine| (machine.id.clone(), machine))
            .collect();
        let placed: Vec<(Option<Machine>, Machine)> = run
            .iter()
            .map(|machine| {
                let mut machine = machine.clone();
                device_groups::place(groups, &mut machine);
                (stored.remove(&machine.id), machine)
            })
            .collect();
        let changes: Vec<(Option<&Machine>, &Machine)> = placed
            .iter()
            .map(|(before, after)| (before.as_ref(), after))
            .collect();
        save_machines(tx, tenant_id, &changes).await?;
    }
    Ok(())
}

/// `items` cut, in order, into the longest runs in which no `id` repeats.
fn runs_without_repeats<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut ids = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if !ids.insert(id(item)) {
            runs.push(&items[start..i]);
            start = i;
            ids.clear();
            ids.insert(id(item));
        }
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// `Store::create_tenant`.
pub struct CreateTenant {
    pub tenant: Tenant,
    pub groups: Vec<DeviceGroup>,
    pub machines: Vec<Machine>,
    pub now: Timestamp,
}

impl Write for CreateTenant {
    type Output = bool;
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<bool, WriteError> {
        let CreateTenant {
            tenant,
            groups,
            machines,
            now,
        } = self;
        Ok(create_tenant(tx, tenant, groups, machines, *now).await?)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

async fn create_tenant(
    tx: &mut impl Transaction,
    tenant: &Tenant,
    groups: &[DeviceGroup],
    machines: &[Machine],
    now: Timestamp,
) -> Result<bool, StoreError> {
    if !tx.insert_tenant(tenant, now).await? {
        return Ok(false);
    }
    for group in groups {
        tx.save_device_group(&tenant.id, group).await?;
    }
    put_placed_machines(tx, &tenant.id, groups, machines).await?;
    Ok(true)
}

/// `Store::put_device_group`: the group, and every machine of the tenant in its group again.
pub struct PutDeviceGroup {
    pub tenant_id: String,
    pub group: DeviceGroup,
}

impl Write for PutDeviceGroup {
    type Output = ();
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<(), WriteError> {
        Ok(put_device_group(tx, &self.tenant_id, &self.group).await?)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

async fn put_device_group(
    tx: &mut impl Transaction,
    tenant_id: &str,
    group: &DeviceGroup,
) -> Result<(), StoreError> {
    // The machines first (the lock order): naming a group gives its machines
    // new revisions (the stores' triggers), which writes their rows.
    let machines = tx.tenant_machines(tenant_id).await?;
    tx.save_device_group(tenant_id, group).await?;
    let groups = tx.device_groups(tenant_id).await?;
    let moves: Vec<(&str, i64)> = machines
        .iter()
        .filter_map(|machine| {
            let (group, _) = device_groups::assign(&groups, machine);
            (group != machine.rbac_group_id).then_some((machine.id.as_str(), group))
        })
        .collect();
    if moves.is_empty() {
        return Ok(());
    }
    tx.move_machines(tenant_id, &moves).await
}

/// `Store::put_machines`.
pub struct PutMachines {
    pub tenant_id: String,
    pub machines: Vec<Machine>,
}

impl Write for PutMachines {
    type Output = ();
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<(), WriteError> {
        Ok(put_machines(tx, &self.tenant_id, &self.machines).await?)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

async fn put_machines(
    tx: &mut impl Transaction,
    tenant_id: &str,
    machines: &[Machine],
) -> Result<(), StoreError> {
    let groups = tx.device_groups(tenant_id).await?;
    put_placed_machines(tx, tenant_id, &groups, machines).await
}

/// `Store::change_machines`.
pub struct ChangeMachines {
    pub visibility: Visibility,
    pub machines: Vec<MachineRef>,
    pub decide: MachineDecision,
    /// Whether an attempt has asked for the decision.
    decided: bool,
    /// The request's audit entry, written with the change.
    pub audit: Option<AuditEntry>,
}

impl ChangeMachines {
    pub fn new(
        visibility: Visibility,
        machines: Vec<MachineRef>,
        decide: MachineDecision,
        audit: Option<AuditEntry>,
    ) -> ChangeMachines {
        ChangeMachines {
            visibility,
            machines,
            decide,
            decided: false,
            audit,
        }
    }
}

impl Write for ChangeMachines {
    type Output = Vec<MachineChange>;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<Vec<MachineChange>, WriteError> {
        let ChangeMachines {
            visibility,
            machines,
            decide,
            decided,
            audit,
        } = self;
        let mut decide =
            |machine: &Machine, active: &[MachineAction], capabilities: &[Capability]| {
                *decided = true;
                decide(machine, active, capabilities)
            };
        let changes = change_machines(tx, visibility, machines, &mut decide).await?;
        if let Some(entry) = audit {
            let created_action = changes.iter().any(|c| c.new_action.is_some());
            let entry = AuditEntry {
                result: change_result(created_action),
                ..entry.clone()
            };
            let machine_ids: Vec<String> = changes.iter().map(|c| c.machine.id.clone()).collect();
            tx.append_audit(&entry, &machine_ids).await?;
        }
        Ok(changes)
    }
    fn may_retry(&self) -> bool {
        !self.decided
    }
}

async fn change_machines(
    tx: &mut impl Transaction,
    visibility: &Visibility,
    machines: &[MachineRef],
    decide: &mut (impl FnMut(&Machine, &[MachineAction], &[Capability]) -> Result<MachineChange, MdeError>
              + Send),
) -> Result<Vec<MachineChange>, WriteError> {
    let tenant_id = &visibility.tenant_id;
    // Locked in key order first, so that two bulk changes wait for each
    // other instead of deadlocking. A machine named otherwise than by its id
    // is locked as it is found, and so is a single one (a statement fewer).
    let mut sorted: Vec<&str> = machines.iter().filter_map(MachineRef::id).collect();
    sorted.sort_unstable();
    let prelocked = sorted.len() > 1;
    if prelocked {
        tx.lock_machines(tenant_id, &sorted).await?;
    }
    let mut changes = Vec::with_capacity(machines.len());
    let mut groups: Option<Vec<DeviceGroup>> = None;
    // The tenant's outcome rules, read for the first new action of a
    // machine without an enrolled device.
    let mut rules: Option<Vec<StoredOutcomeRule>> = None;
    for wanted in machines {
        let mut found = None;
        for key in wanted.keys() {
            let locked = prelocked && matches!(key, MachineKey::Id(_));
            found = tx.machine(visibility, key, !locked).await?;
            if found.is_some() {
                break;
            }
        }
        let machine =
            found.ok_or_else(|| WriteError::MachineNotFound(wanted.given().to_string()))?;
        let reads = &*tx;
        let (active, device) = tokio::try_join!(
            reads.open_actions(tenant_id, &machine.id),
            reads.device_of_machine(tenant_id, &machine.id, false),
        )?;
        let enrolled = device.as_ref().is_some_and(Device::is_enrolled);
        let capabilities = device_actions::capabilities_in_force(device);
        let mut change = decide(&machine, &active, &capabilities)?;
        if device_groups::may_move(&machine, &change.machine) {
            if groups.is_none() {
                groups = Some(tx.device_groups(tenant_id).await?);
            }
            device_groups::place(groups.as_deref().unwrap_or(&[]), &mut change.machine);
        }
        if change.machine != machine {
            save_machine(tx, tenant_id, Some(&machine), &change.machine).await?;
        }
        if let Some(action) = &change.new_action {
            if !enrolled {
                if rules.is_none() {
                    rules = Some(tx.outcome_rules(tenant_id).await?);
                }
                let rules = rules.as_deref().unwrap_or_default();
                if let Some(rule) = outcomes::first_match(rules, action, &change.machine) {
                    tx.count_outcome_hit(tenant_id, &rule.id).await?;
                    let now = action.creation_date_time_utc;
                    let scripted = outcomes::begin(rule, action, &change.machine, now);
                    if let Some(machine) = scripted.machine {
                        save_machine(tx, tenant_id, Some(&change.machine), &machine).await?;
                        change.machine = machine;
                    }
                    let run = scripted.run.as_ref();
                    tx.save_action_script(tenant_id, &action.id, run).await?;
                    change.new_action = Some(scripted.action);
                }
            }
        }
        if let Some(action) = &change.new_action {
            tx.save_action(tenant_id, action).await?;
            tx.announce_new_action(tenant_id, &action.machine_id)
                .await?;
        }
        changes.push(change);
    }
    Ok(changes)
}

/// A decision of a write asked for once (its type is `FnOnce`): taken
/// when it is asked for, so that an attempt that failed before can be made
/// again with it.
fn decision<D>(decide: &mut Option<D>) -> Result<D, WriteError> {
    decide
        .take()
        .ok_or_else(|| StoreError::Internal("a write's decision was asked for twice".into()).into())
}

/// `Store::change_action`.
pub struct ChangeAction {
    pub visibility: Visibility,
    pub id: String,
    pub decide: Option<ActionDecision>,
    /// The request's audit entry, written with the change.
    pub audit: Option<AuditEntry>,
}

impl Write for ChangeAction {
    type Output = MachineAction;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<MachineAction, WriteError> {
        let ChangeAction {
            visibility,
            id,
            decide,
            audit,
        } = self;
        let action = tx
            .action(visibility, id)
            .await?
            .ok_or_else(|| WriteError::ActionNotFound(id.to_string()))?;
        let changed = decision(decide)?(&action)?;
        tx.save_action(&visibility.tenant_id, &changed).await?;
        if !changed.status.is_active() {
            // An outcome rule's script, if one carried it, ends with it.
            tx.save_action_script(&visibility.tenant_id, id, None)
                .await?;
        }
        if let Some(entry) = audit {
            let entry = AuditEntry {
                result: change_result(false),
                ..entry.clone()
            };
            tx.append_audit(&entry, std::slice::from_ref(&changed.machine_id))
                .await?;
        }
        Ok(changed)
    }
    fn may_retry(&self) -> bool {
        self.decide.is_some()
    }
}

fn vanished(what: &str) -> StoreError {
    StoreError::Internal(format!("{what} vanished inside its transaction"))
}

/// `Store::enroll_device`, as `rules::enrollment::enroll` decides.
pub struct EnrollDevice {
    pub machine: Machine,
    pub device: Device,
    pub presented_credential_id: Option<String>,
}

impl Write for EnrollDevice {
    type Output = (Machine, Device);
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<(Machine, Device), WriteError> {
        let presented = self.presented_credential_id.as_deref();
        Ok(enroll_device(tx, &self.machine, &self.device, presented).await?)
    }
    /// Nothing is decided but in the write: every attempt starts afresh.
    fn may_retry(&self) -> bool {
        true
    }
}

async fn enroll_device(
    tx: &mut impl Transaction,
    machine: &Machine,
    device: &Device,
    presented_credential_id: Option<&str>,
) -> Result<(Machine, Device), StoreError> {
    let tenant_id = &device.tenant_id;
    // One enrollment of a piece of hardware at a time: the second sees the
    // first's device (and is a potential duplicate of it).
    tx.lock_hardware(tenant_id, &device.hardware_id).await?;
    let groups = tx.device_groups(tenant_id).await?;
    let presented = match presented_credential_id {
        Some(credential_id) => tx.device_by_credential(tenant_id, credential_id).await?,
        None => None,
    };
    // Machine first, then its device (the lock order), checked again once locked.
    let (mut presenting, mut existing) = (None, None);
    if let Some(presented) = presented.filter(|d| d.offboarded_at.is_none()) {
        let whole_tenant = Visibility::whole_tenant(tenant_id);
        let machine = tx
            .machine(&whole_tenant, MachineKey::Id(&presented.machine_id), true)
            .await?
            .ok_or_else(|| vanished("the machine of an enrolled device"))?;
        presenting = tx
            .device_of_machine(tenant_id, &machine.id, true)
            .await?
            .filter(|d| d.credential_id == presented.credential_id && d.offboarded_at.is_none());
        existing = presenting.is_some().then_some(machine);
    }
    let hardware_enrolled = tx.hardware_enrolled(tenant_id, &device.hardware_id).await?;
    let enrolled = enrollment::Enrolled {
        presenting: presenting.as_ref().zip(existing.as_ref()),
        hardware_enrolled,
    };
    let (mut stored, device) = enrollment::enroll(enrolled, machine, device);
    device_groups::place(&groups, &mut stored);
    save_machine(tx, tenant_id, existing.as_ref(), &stored).await?;
    tx.save_device(&device).await?;
    Ok((stored, device))
}

/// `Store::record_check_ins`: the machines and devices read at once, each
/// report applied in turn (`rules::device_report::apply`), and what changed
/// written back at once.
pub struct RecordCheckIns(pub Vec<CheckInRecord>);

impl Write for RecordCheckIns {
    type Output = ();
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<(), WriteError> {
        Ok(record_check_ins(tx, &self.0).await?)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

async fn record_check_ins(
    tx: &mut impl Transaction,
    records: &[CheckInRecord],
) -> Result<(), StoreError> {
    let mut keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.tenant_id.as_str(), r.machine_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut reporting: HashMap<(String, String), (Machine, Device)> = tx
        .reporting_machines(&keys)
        .await?
        .into_iter()
        .map(|(machine, device)| {
            (
                (device.tenant_id.clone(), machine.id.clone()),
                (machine, device),
            )
        })
        .collect();
    // Each changed machine as it was before this batch, for its address history.
    let mut before: HashMap<(String, String), Machine> = HashMap::new();
    for record in records {
        let key = (record.tenant_id.clone(), record.machine_id.clone());
        let Some((machine, device)) = reporting.get_mut(&key) else {
            continue;
        };
        let was = machine.clone();
        if device_report::apply(machine, device, record) {
            before.entry(key).or_insert(was);
        }
    }
    if before.is_empty() {
        return Ok(());
    }
    let mut changed: Vec<(&(String, String), &Machine)> = before.iter().collect();
    changed.sort_unstable_by_key(|(key, _)| *key);
    let reports: Vec<(&Machine, &Device)> = changed
        .iter()
        .map(|(key, _)| {
            let (machine, device) = &reporting[*key];
            (machine, device)
        })
        .collect();
    tx.save_reports(&reports).await?;
    // In key order, so each tenant's machines come together.
    for tenant in changed.chunk_by(|((a, _), _), ((b, _), _)| a == b) {
        let syncs: Vec<(&str, IpHistorySync)> = tenant
            .iter()
            .filter_map(|(key, was)| {
                let (now, _) = &reporting[*key];
                Some((key.1.as_str(), ip_history::sync(Some(was), now)?))
            })
            .collect();
        if !syncs.is_empty() {
            tx.save_ip_history(&tenant[0].0 .0, &syncs).await?;
        }
    }
    Ok(())
}

/// `Store::change_device_action`: the device's report on one of its
/// machine's actions.
pub struct ChangeDeviceAction {
    pub device: Device,
    pub action_id: String,
    pub decide: Option<DeviceActionDecision>,
}

impl Write for ChangeDeviceAction {
    type Output = MachineAction;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<MachineAction, WriteError> {
        let ChangeDeviceAction {
            device,
            action_id,
            decide,
        } = self;
        change_device_action(tx, device, action_id, decide).await
    }
    fn may_retry(&self) -> bool {
        self.decide.is_some()
    }
}

async fn change_device_action(
    tx: &mut impl Transaction,
    device: &Device,
    action_id: &str,
    decide: &mut Option<DeviceActionDecision>,
) -> Result<MachineAction, WriteError> {
    let (tenant_id, machine_id) = (&device.tenant_id, &device.machine_id);
    let whole_tenant = Visibility::whole_tenant(tenant_id);
    let machine = tx
        .machine(&whole_tenant, MachineKey::Id(machine_id), true)
        .await?
        .ok_or_else(|| WriteError::MachineNotFound(machine_id.clone()))?;
    let current = device_actions::still_enrolled(
        tx.device_of_machine(tenant_id, machine_id, true).await?,
        device,
    )?;
    let action = tx
        .action(&whole_tenant, action_id)
        .await?
        .filter(|action| action.machine_id == *machine_id)
        .ok_or_else(|| WriteError::ActionNotFound(action_id.to_string()))?;
    let change = decision(decide)?(&action, &machine, &current)?;
    if change.action != action {
        tx.save_action(tenant_id, &change.action).await?;
    }
    if let Some(changed) = &change.machine {
        save_machine(tx, tenant_id, Some(&machine), changed).await?;
    }
    if let Some(changed) = &change.device {
        tx.save_device(changed).await?;
    }
    Ok(change.action)
}

/// `Store::advance_scripted_actions`: the actions of `action_ids` that an
/// outcome rule carries, moved on to `now` (and counted as read, if
/// `polled`); each as it now reads.
pub struct AdvanceScripts {
    pub tenant_id: String,
    pub action_ids: Vec<String>,
    pub now: Timestamp,
    pub polled: bool,
}

impl Write for AdvanceScripts {
    type Output = Vec<MachineAction>;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<Vec<MachineAction>, WriteError> {
        let tenant_id = &self.tenant_id;
        let whole_tenant = Visibility::whole_tenant(tenant_id);
        let mut advanced = Vec::new();
        // In id order, and each machine before its action, as the other
        // writes lock them: no wait cycle with them or another of these.
        let mut ids = self.action_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            let Some(run) = tx.action_script(tenant_id, id).await? else {
                continue;
            };
            let key = MachineKey::Id(&run.machine_id);
            let machine = tx.machine(&whole_tenant, key, true).await?;
            let action = tx.action(&whole_tenant, id).await?;
            let enrolled = match &machine {
                Some(machine) => tx
                    .device_of_machine(tenant_id, &machine.id, false)
                    .await?
                    .is_some_and(|d| d.is_enrolled()),
                None => false,
            };
            let (Some(machine), Some(action), false) = (machine, action, enrolled) else {
                // Its action or machine is gone, or a device enrolled as the
                // machine since: the device carries the action from here.
                tx.save_action_script(tenant_id, id, None).await?;
                continue;
            };
            let scripted = outcomes::advance(outcomes::resume(run, &action), &machine, self.now);
            let read = scripted.action.clone();
            let scripted = match self.polled {
                true => outcomes::polled(scripted, &machine, self.now),
                false => scripted,
            };
            if scripted.action != action {
                tx.save_action(tenant_id, &scripted.action).await?;
            }
            if let Some(changed) = &scripted.machine {
                save_machine(tx, tenant_id, Some(&machine), changed).await?;
            }
            tx.save_action_script(tenant_id, id, scripted.run.as_ref())
                .await?;
            advanced.push(read);
        }
        Ok(advanced)
    }
    /// Nothing is decided but in the write: every attempt starts afresh.
    fn may_retry(&self) -> bool {
        true
    }
}

/// How [`SeedTenant`] treats the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeding {
    /// Created (nothing is done if it exists), `seed` kept as what a reset goes back to.
    Create { seed: String },
    /// Its state replaced; its clock and recorder stay.
    Replace,
    /// Its state replaced, its clock and recorder too.
    Reset,
}

/// `Store::seed_tenant`: the tenant's state made `state`, in one
/// transaction: the tenant created, or its name and retention saved; its
/// state removed (and, but when replaced, its clock and recorder); then the
/// document's groups, machines (placed in their groups), actions and rules
/// written.
pub struct SeedTenant {
    pub state: TenantState,
    pub seeding: Seeding,
    pub now: Timestamp,
}

impl Write for SeedTenant {
    type Output = bool;
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<bool, WriteError> {
        let state = &self.state;
        let tenant_id = &state.tenant.id;
        match &self.seeding {
            Seeding::Create { seed } => {
                if !tx.insert_tenant(&state.tenant, self.now).await? {
                    return Ok(false);
                }
                tx.save_tenant_seed(tenant_id, seed).await?;
            }
            Seeding::Replace | Seeding::Reset => tx.update_tenant(&state.tenant).await?,
        }
        let control = self.seeding != Seeding::Replace;
        tx.clear_tenant_state(tenant_id, control).await?;
        for group in &state.groups {
            tx.save_device_group(tenant_id, group).await?;
        }
        put_placed_machines(tx, tenant_id, &state.groups, &state.machines).await?;
        for action in &state.actions {
            tx.save_action(tenant_id, action).await?;
        }
        tx.save_alerts(tenant_id, &state.alerts).await?;
        tx.save_indicators(tenant_id, &state.indicators).await?;
        // The counters go on from what was seeded (the state's were cleared).
        let highest = |values: Vec<i64>| values.into_iter().max();
        let counters = [
            (
                Counter::AlertUpdate,
                highest(
                    state
                        .alerts
                        .iter()
                        .map(|a| a.last_update_time.ticks())
                        .collect(),
                ),
            ),
            (
                Counter::IncidentId,
                highest(state.alerts.iter().filter_map(|a| a.incident_id).collect()),
            ),
            (
                Counter::IndicatorId,
                highest(
                    state
                        .indicators
                        .iter()
                        .filter_map(|(i, _)| i.id.parse().ok())
                        .collect(),
                ),
            ),
        ];
        for (counter, highest) in counters {
            if let Some(highest) = highest {
                tx.reserve(tenant_id, counter, highest, 1).await?;
            }
        }
        for rule in &state.outcomes {
            tx.save_outcome_rule(rule).await?;
        }
        for rule in &state.faults {
            tx.save_fault_rule(rule).await?;
        }
        Ok(true)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

/// `Store::take_fault_call`: one more call the rule matched, and whether it takes it.
pub struct TakeFaultCall {
    pub tenant_id: String,
    pub id: String,
    pub draw: f64,
}

impl Write for TakeFaultCall {
    type Output = Option<StoredFaultRule>;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<Option<StoredFaultRule>, WriteError> {
        let Some(mut rule) = tx.fault_rule(&self.tenant_id, &self.id).await? else {
            return Ok(None);
        };
        if faults::is_spent(&rule) {
            return Ok(None);
        }
        let taken = faults::take(&mut rule, self.draw);
        tx.save_fault_counts(&rule).await?;
        Ok(taken.then_some(rule))
    }
    fn may_retry(&self) -> bool {
        true
    }
}

/// `Store::change_tenant_clock`: the tenant's clock after `change`, read at
/// `server_now` (`TenantClock::changed`).
pub struct ChangeClock {
    pub tenant_id: String,
    pub change: ClockChange,
    pub server_now: Timestamp,
}

impl Write for ChangeClock {
    type Output = TenantClock;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<TenantClock, WriteError> {
        let clock = tx.tenant_clock(&self.tenant_id).await?.unwrap_or_default();
        let changed = clock
            .changed(&self.change, self.server_now)
            .map_err(WriteError::Rejected)?;
        tx.save_tenant_clock(&self.tenant_id, &changed).await?;
        Ok(changed)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::runs_without_repeats;

    fn runs(ids: &[&'static str]) -> Vec<Vec<&'static str>> {
        runs_without_repeats(ids, |id| id)
            .into_iter()
            .map(<[_]>::to_vec)
            .collect()
    }

    #[test]
    fn a_repeated_id_starts_a_new_run() {
        assert!(runs(&[]).is_empty());
        assert_eq!(runs(&["a", "b", "c"]), vec![vec!["a", "b", "c"]]);
        assert_eq!(
            runs(&["a", "b", "a", "c", "b", "b"]),
            vec![vec!["a", "b"], vec!["a", "c", "b"], vec!["b"]]
        );
    }
}
