//! The emulator control plane's operations on [`Palisade`] beyond outcome
//! rules (`control-plane.md`): each tenant's clock, fault rules, state and
//! recorder. Clocks, fault rules and whether a tenant records are read on
//! every request, so each node keeps them in memory, changed at once by what
//! it sets and read again from the store every second (what other nodes set).

use crate::caller::Visibility;
use crate::clock::{TenantClock, TenantScope};
use crate::control::{RecordFilter, RecordedCall, RulePlace, StoredFaultRule};
use crate::query::ListQuery;
use crate::rules::{faults, recorder};
use crate::seed::{self, StoredState, TenantState};
use crate::service::Palisade;
use crate::writes::Seeding;
use palisade_contract::control::{
    ClientReport, ClockChange, ClockReading, FaultRule, NewFaultRule, RecorderSetting,
};
use palisade_contract::seed::TenantDocument;
use palisade_contract::{ErrorCode, MdeError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The fault rules of each tenant that has some, in order.
pub(crate) type FaultRules = HashMap<String, Arc<[StoredFaultRule]>>;

impl Palisade {
    /// Reads again every tenant's clock, fault rules and recorder from the store
    /// (what other nodes set); the server calls it every second.
    pub async fn load_control_settings(&self) -> Result<(), MdeError> {
        let changes = self.control_changes.load(Ordering::SeqCst);
        let clocks = self.store.tenant_clocks().await?;
        let mut by_tenant: HashMap<String, Vec<StoredFaultRule>> = HashMap::new();
        for rule in self.store.fault_rules(None).await? {
            by_tenant
                .entry(rule.tenant_id.clone())
                .or_default()
                .push(rule);
        }
        let recording = self.store.recording_tenants().await?;
        // Changed here meanwhile: what was read may be older; the next load reads again.
        if self.control_changes.load(Ordering::SeqCst) != changes {
            return Ok(());
        }
        self.clocks.load(clocks);
        if let Ok(mut faults) = self.faults.write() {
            *faults = by_tenant.into_iter().map(|(t, r)| (t, r.into())).collect();
        }
        if let Ok(mut set) = self.recording.write() {
            *set = recording.into_iter().collect();
        }
        Ok(())
    }

    /// Notes a change of this node's clocks, fault rules or recorders.
    fn changed_control(&self) {
        self.control_changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The tenant's clock as `GET .../clock` shows it.
    pub async fn tenant_clock(&self, tenant_id: &str) -> Result<ClockReading, MdeError> {
        self.existing_tenant(tenant_id).await?;
        // From the store: what another node or the CLI set shows at once.
        let clock = self
            .store
            .tenant_clocks()
            .await?
            .into_iter()
            .find_map(|(tenant, clock)| (tenant == tenant_id).then_some(clock))
            .unwrap_or_default();
        self.changed_control();
        self.clocks.put(tenant_id, clock);
        Ok(clock.wire(self.clock.now()))
    }

    /// Changes the tenant's clock; what the new time implies is done before
    /// this returns (actions past their time-out or step end move on), so
    /// that the next read sees it.
    pub async fn change_tenant_clock(
        &self,
        tenant_id: &str,
        change: &ClockChange,
    ) -> Result<ClockReading, MdeError> {
        change.validate()?;
        self.existing_tenant(tenant_id).await?;
        let server_now = self.clock.now();
        let clock: TenantClock = self
            .store
            .change_tenant_clock(tenant_id, change, server_now)
            .await?;
        self.changed_control();
        self.clocks.put(tenant_id, clock);
        let scope = TenantScope::Tenant(tenant_id.to_string());
        self.advance_due_scripts(Some(tenant_id)).await?;
        self.time_out_actions_of(&scope, clock.reading(server_now))
            .await?;
        Ok(clock.wire(server_now))
    }

    /// The tenant's fault rules, in the order they apply.
    pub async fn fault_rules(&self, tenant_id: &str) -> Result<Vec<FaultRule>, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let rules = self.store.fault_rules(Some(tenant_id)).await?;
        Ok(rules.iter().map(StoredFaultRule::wire).collect())
    }

    /// Adds `rule` (checked first) before or after the tenant's others.
    pub async fn add_fault_rule(
        &self,
        tenant_id: &str,
        rule: NewFaultRule,
        place: RulePlace,
    ) -> Result<FaultRule, MdeError> {
        let rule = faults::checked(rule)?;
        self.existing_tenant(tenant_id).await?;
        let stored = StoredFaultRule::new(tenant_id, rule);
        self.store.add_fault_rule(&stored, place).await?;
        self.reload_faults(tenant_id).await?;
        Ok(stored.wire())
    }

    pub async fn delete_fault_rule(&self, tenant_id: &str, id: &str) -> Result<(), MdeError> {
        self.existing_tenant(tenant_id).await?;
        let deleted = self.store.delete_fault_rule(tenant_id, id).await?;
        self.reload_faults(tenant_id).await?;
        match deleted {
            true => Ok(()),
            false => Err(MdeError::new(
                ErrorCode::ResourceNotFound,
                format!("Fault rule {id} was not found"),
            )),
        }
    }

    /// Removes every fault rule of the tenant; how many there were.
    pub async fn delete_fault_rules(&self, tenant_id: &str) -> Result<u64, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let deleted = self.store.delete_fault_rules(tenant_id).await?;
        self.reload_faults(tenant_id).await?;
        Ok(deleted)
    }

    async fn reload_faults(&self, tenant_id: &str) -> Result<(), MdeError> {
        self.changed_control();
        let rules = self.store.fault_rules(Some(tenant_id)).await?;
        if let Ok(mut faults) = self.faults.write() {
            match rules.is_empty() {
                true => faults.remove(tenant_id),
                false => faults.insert(tenant_id.to_string(), rules.into()),
            };
        }
        Ok(())
    }

    /// The fault rule that takes this call of `operation` (an operation
    /// name, or `Token`) in the tenant by one of `callers`, counted; none
    /// for the call to go on as usual. Calls of tenants without fault rules
    /// cost a map lookup.
    pub async fn fault_for(
        &self,
        tenant_id: &str,
        operation: &str,
        callers: &[&str],
    ) -> Result<Option<StoredFaultRule>, MdeError> {
        let rules = match self.faults.read() {
            Ok(faults) if !faults.is_empty() => faults.get(tenant_id).cloned(),
            _ => None,
        };
        let Some(rules) = rules else { return Ok(None) };
        for rule in rules
            .iter()
            .filter(|r| faults::matches(r, operation, callers))
        {
            let draw: f64 = rand::random();
            if let Some(taken) = self
                .store
                .take_fault_call(tenant_id, &rule.id, draw)
                .await?
            {
                if faults::is_spent(&taken) {
                    self.reload_faults(tenant_id).await?;
                }
                return Ok(Some(taken));
            }
        }
        Ok(None)
    }

    /// The tenant as a document (`GET .../state`): what `PUT .../state`
    /// takes back. Every machine, retention aside; no secrets.
    pub async fn export_tenant(&self, tenant_id: &str) -> Result<TenantDocument, MdeError> {
        let tenant = self.existing_tenant(tenant_id).await?;
        let whole = Visibility::whole_tenant(tenant_id);
        let mut machines = Vec::new();
        let mut actions = Vec::new();
        // Pages of the store's largest size, while it says there are more.
        let page = |skip: usize| ListQuery {
            limit: 10_000,
            skip: skip as u64,
            ..ListQuery::default()
        };
        loop {
            let read = self.store.machines(&whole, &page(machines.len())).await?;
            for machine in read.items {
                let json = serde_json::from_str(machine.json());
                machines.push(json.map_err(|e| MdeError::internal(e.to_string()))?);
            }
            if !read.more {
                break;
            }
        }
        loop {
            let read = self.store.actions(&whole, &page(actions.len())).await?;
            actions.extend(read.items);
            if !read.more {
                break;
            }
        }
        let mut alerts = Vec::new();
        loop {
            let read = self.store.alerts(&whole, &page(alerts.len()), true).await?;
            alerts.extend(read.items);
            if !read.more {
                break;
            }
        }
        // Expired indicators too: they are the tenant's as much as the others.
        let ever = palisade_contract::Timestamp::from_ticks(i64::MIN);
        let mut indicators = Vec::new();
        loop {
            let read = self
                .store
                .indicators(tenant_id, None, ever, &page(indicators.len()))
                .await?;
            indicators.extend(read.items);
            if !read.more {
                break;
            }
        }
        Ok(seed::document(StoredState {
            groups: self.store.device_groups(tenant_id).await?,
            machines,
            actions,
            alerts,
            indicators,
            outcomes: self.store.outcome_rules(tenant_id).await?,
            faults: self.store.fault_rules(Some(tenant_id)).await?,
            apps: self.store.apps(tenant_id).await?,
            users: self.store.users(tenant_id).await?,
            tenant,
        }))
    }

    /// Creates the tenant a document describes, unless it exists (none
    /// then); what a reset puts it back to is the document as read (its
    /// defaults filled in: ids, times). The
    /// apps and users it names are left to the caller (the identity service).
    pub async fn create_seeded_tenant(
        &self,
        document: &TenantDocument,
    ) -> Result<Option<TenantState>, MdeError> {
        let state = seed::resolve(document, self.clock.now())?;
        let seed = serde_json::to_string(&seed::document(StoredState::written(&state)))
            .map_err(|e| MdeError::internal(e.to_string()))?;
        let created = self
            .store
            .seed_tenant(state.clone(), Seeding::Create { seed }, self.clock.now())
            .await?;
        if !created {
            return Ok(None);
        }
        self.after_state_change(&state.tenant.id, true).await?;
        Ok(Some(state))
    }

    /// Replaces the tenant's state with the document's (checked whole
    /// first: nothing changes on an error); its clock and recorder stay;
    /// its apps and users are left to the caller.
    pub async fn replace_tenant_state(
        &self,
        tenant_id: &str,
        document: &TenantDocument,
    ) -> Result<TenantState, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let state = seed::resolve(document, self.now_in(tenant_id))?;
        if state.tenant.id != tenant_id {
            return Err(MdeError::invalid_input(format!(
                "Invalid input tenantId: the document is of tenant {}, not of {tenant_id}",
                state.tenant.id
            )));
        }
        self.store
            .seed_tenant(state.clone(), Seeding::Replace, self.clock.now())
            .await?;
        self.after_state_change(tenant_id, false).await?;
        Ok(state)
    }

    /// Puts the tenant back to the document it was made from (or, if it was
    /// not made from one, to no machines, groups, actions, rules, audit),
    /// in one transaction; its clock runs on the server's time again, its
    /// recorder is off and empty, its rate-limit counts start afresh.
    pub async fn reset_tenant(&self, tenant_id: &str) -> Result<(), MdeError> {
        let tenant = self.existing_tenant(tenant_id).await?;
        let document = match self.store.tenant_seed(tenant_id).await? {
            Some(seed) => serde_json::from_str(&seed)
                .map_err(|e| MdeError::internal(format!("the tenant's seed does not read: {e}")))?,
            None => seed::document(StoredState::empty(tenant)),
        };
        let state = seed::resolve(&document, self.clock.now())?;
        self.store
            .seed_tenant(state, Seeding::Reset, self.clock.now())
            .await?;
        // Calls counted at the old clock's times would hold the new clock back.
        self.store.forget_calls_of(tenant_id).await?;
        self.after_state_change(tenant_id, true).await
    }

    /// What this node keeps of a tenant whose state was replaced.
    async fn after_state_change(&self, tenant_id: &str, control: bool) -> Result<(), MdeError> {
        if control {
            self.changed_control();
            self.clocks.put(tenant_id, TenantClock::default());
            self.note_recorder(tenant_id, false);
        }
        self.forget_tenant(tenant_id);
        self.reload_faults(tenant_id).await
    }

    /// Whether some tenant's calls are recorded: until one is, requests
    /// are not buffered for the recorder.
    pub fn recording_anywhere(&self) -> bool {
        self.recording.read().is_ok_and(|set| !set.is_empty())
    }

    pub fn is_recording(&self, tenant_id: &str) -> bool {
        self.recording
            .read()
            .is_ok_and(|set| set.contains(tenant_id))
    }

    fn note_recorder(&self, tenant_id: &str, enabled: bool) {
        self.changed_control();
        if let Ok(mut set) = self.recording.write() {
            match enabled {
                true => set.insert(tenant_id.to_string()),
                false => set.remove(tenant_id),
            };
        }
    }

    pub async fn recorder(&self, tenant_id: &str) -> Result<RecorderSetting, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let on = self.store.recording_tenants().await?;
        let enabled = on.iter().any(|t| t == tenant_id);
        self.note_recorder(tenant_id, enabled);
        Ok(RecorderSetting { enabled })
    }

    /// Turns the tenant's recorder on or off (what was recorded stays).
    pub async fn set_recorder(
        &self,
        tenant_id: &str,
        setting: RecorderSetting,
    ) -> Result<RecorderSetting, MdeError> {
        self.existing_tenant(tenant_id).await?;
        self.store.set_recorder(tenant_id, setting.enabled).await?;
        self.note_recorder(tenant_id, setting.enabled);
        Ok(setting)
    }

    /// Keeps the call, and of the tenant's calls only the newest.
    pub async fn record_call(&self, call: &RecordedCall) -> Result<(), MdeError> {
        self.store.append_recorded_call(call).await?;
        let keep = self.recorded_calls_kept;
        Ok(self
            .store
            .prune_recorded_calls(&call.tenant_id, keep)
            .await?)
    }

    /// The tenant's recorded calls that `filter` lets through, oldest first.
    pub async fn recorded_calls(
        &self,
        tenant_id: &str,
        filter: &RecordFilter,
        skip: u64,
        top: u64,
    ) -> Result<Vec<RecordedCall>, MdeError> {
        self.existing_tenant(tenant_id).await?;
        Ok(self
            .store
            .recorded_calls(tenant_id, filter, skip, top)
            .await?)
    }

    /// How each caller used the API, from every recorded call.
    pub async fn recorder_report(&self, tenant_id: &str) -> Result<ClientReport, MdeError> {
        let calls = self
            .recorded_calls(tenant_id, &RecordFilter::default(), 0, u64::MAX)
            .await?;
        Ok(ClientReport {
            value: recorder::report(&calls),
        })
    }

    pub async fn clear_recorded_calls(&self, tenant_id: &str) -> Result<u64, MdeError> {
        self.existing_tenant(tenant_id).await?;
        Ok(self.store.delete_recorded_calls(tenant_id).await?)
    }
}
