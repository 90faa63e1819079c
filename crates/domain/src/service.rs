//! The one domain service every front end calls (MDE REST API now; CLI and
//! device plane later). It applies the rules and leaves storage to the store.

use crate::access::Operation;
use crate::caller::{Caller, Tenant, Visibility};
use crate::clock::{Clock, TenantClocks, TenantScope};
use crate::control::{RulePlace, StoredOutcomeRule};
use crate::control_service::FaultRules;
use crate::devices::wakeups::Wakeups;
use crate::identity::AuditEntry;
use crate::ids::is_machine_id;
use crate::query::{ListQuery, LAMBDA_ELEMENT, PAGE_SIZE};
use crate::rules;
use crate::rules::audit::Subject;
use crate::rules::ip_history;
use crate::store::{MachineChange, MachineRef, Page, Store, StoreError, WriteError};
use palisade_contract::action::MACHINE_ACTION_QUERYABLE;
use palisade_contract::control::{NewOutcomeRule, OutcomeRule};
use palisade_contract::machine::MACHINE_QUERYABLE;
use palisade_contract::odata::{CompareOp, Filter, Literal, ODataQuery};
use palisade_contract::requests::{
    ActionKind, ActionRequest, BulkTagRequest, FindByIpRequest, TagRequest, UpdateMachineRequest,
};
use palisade_contract::{
    DeviceValue, ErrorCode, Machine, MachineAction, MdeError, SerializedMachine, Timestamp,
};
use palisade_device::Capability;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;

impl From<StoreError> for MdeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(message) => MdeError::new(
                ErrorCode::ServiceUnavailable,
                format!("The store is unavailable; retry shortly. ({message})"),
            ),
            StoreError::Internal(message) => MdeError::internal(message),
        }
    }
}

impl From<WriteError> for MdeError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::MachineNotFound(id) => MdeError::machine_not_found(&id),
            WriteError::ActionNotFound(id) => MdeError::action_not_found(&id),
            WriteError::Rejected(error) => error,
            WriteError::Store(error) => error.into(),
        }
    }
}

/// MDE answers a malformed action id with this 400 rather than a 404.
fn parse_action_id(id: &str) -> Result<String, MdeError> {
    uuid::Uuid::parse_str(id)
        .map(|g| g.to_string())
        .map_err(|_| {
            MdeError::new(
                ErrorCode::BadRequest,
                format!(
                    "The key value ({id}) from request is not valid. The key value should be format of type 'Edm.Guid'."
                ),
            )
        })
}

/// Pending actions no device picked up within this time end `TimeOut` (MDE
/// retries for three days), and so do InProgress actions whose device has not
/// reported for as long.
pub const DEFAULT_ACTION_TIMEOUT_SECONDS: i64 = 3 * 86_400;

/// How many recorded calls a tenant keeps unless told otherwise: a suite
/// that leaves its recorder on does not fill the disk.
pub const DEFAULT_RECORDED_CALLS_KEPT: u64 = 100_000;

/// How long a tenant's settings are reused before they are read again.
/// MDE too says setting changes take minutes to apply.
const TENANT_TTL_SECONDS: i64 = 5;

#[derive(Clone)]
pub struct Palisade {
    pub(crate) store: Arc<dyn Store>,
    /// `clocks`, as every part that reads time takes it.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) clocks: Arc<TenantClocks>,
    /// Each tenant's fault rules, as last read (`control_service`).
    pub(crate) faults: Arc<RwLock<FaultRules>>,
    /// The tenants whose recorder is on, as last read.
    pub(crate) recording: Arc<RwLock<std::collections::HashSet<String>>>,
    /// Counts this node's changes to the three above: a reload that began
    /// before one is dropped, so that it cannot bring back what it replaced.
    pub(crate) control_changes: Arc<std::sync::atomic::AtomicU64>,
    // A handful of tenants and a TTL check: a map under a lock does it, a cache
    // crate would bring more than it saves.
    tenants: Arc<RwLock<HashMap<String, (Tenant, Timestamp)>>>,
    action_timeout_seconds: i64,
    pub(crate) recorded_calls_kept: u64,
    /// Devices waiting for their next action.
    wakeups: Arc<Wakeups>,
}

impl Palisade {
    /// Over `clock`, the server's, which each tenant reads as its own clock says.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let clocks = Arc::new(TenantClocks::new(clock));
        Palisade {
            store,
            clock: clocks.clone(),
            clocks,
            faults: Arc::default(),
            recording: Arc::default(),
            control_changes: Arc::default(),
            tenants: Arc::default(),
            action_timeout_seconds: DEFAULT_ACTION_TIMEOUT_SECONDS,
            recorded_calls_kept: DEFAULT_RECORDED_CALLS_KEPT,
            wakeups: Arc::default(),
        }
    }

    pub fn with_action_timeout(mut self, seconds: i64) -> Self {
        self.action_timeout_seconds = seconds;
        self
    }

    /// How many recorded calls each tenant keeps (the newest).
    pub fn with_recorded_calls_kept(mut self, calls: u64) -> Self {
        self.recorded_calls_kept = calls;
        self
    }

    /// Ends with `TimeOut` every action still Pending, or InProgress without
    /// a report, after the action timeout (all tenants, each at its own
    /// time); returns how many. The server calls it periodically.
    pub async fn time_out_stale_actions(&self) -> Result<u64, MdeError> {
        let mut timed_out = 0;
        for (scope, now) in self.clocks.scopes() {
            timed_out += self.time_out_actions_of(&scope, now).await?;
        }
        Ok(timed_out)
    }

    pub(crate) async fn time_out_actions_of(
        &self,
        scope: &TenantScope,
        now: Timestamp,
    ) -> Result<u64, MdeError> {
        let stale_before = now.plus_seconds(-self.action_timeout_seconds);
        Ok(self
            .store
            .time_out_actions(scope, stale_before, now)
            .await?)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn wakeups(&self) -> &Arc<Wakeups> {
        &self.wakeups
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The server's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The time in the tenant (its clock, `clock::TenantClocks`).
    pub fn now_in(&self, tenant_id: &str) -> Timestamp {
        self.clock.now_in(tenant_id)
    }

    /// What the caller sees, at their tenant's time.
    pub(crate) fn visibility(&self, caller: &Caller) -> Visibility {
        caller.visibility(self.clock.now_in(&caller.tenant.id))
    }

    /// Reads the tenant again at its next use (its name or retention changed).
    pub(crate) fn forget_tenant(&self, id: &str) {
        if let Ok(mut tenants) = self.tenants.write() {
            tenants.remove(id);
        }
    }

    /// The tenant with this id, read at most every few seconds per tenant.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, MdeError> {
        let now = self.clock.now();
        let cached = self
            .tenants
            .read()
            .ok()
            .and_then(|tenants| tenants.get(id).cloned());
        if let Some((tenant, read_at)) = cached {
            if read_at.plus_seconds(TENANT_TTL_SECONDS) > now {
                return Ok(Some(tenant));
            }
        }
        let tenant = self.store.tenant(id).await?;
        if let (Some(tenant), Ok(mut tenants)) = (&tenant, self.tenants.write()) {
            tenants.insert(id.to_string(), (tenant.clone(), now));
        }
        Ok(tenant)
    }

    pub async fn list_machines(
        &self,
        caller: &Caller,
        query: &ODataQuery,
    ) -> Result<Page<SerializedMachine>, MdeError> {
        let query = ListQuery::resolve(query, MACHINE_QUERYABLE)?;
        let visibility = self.visibility(caller);
        Ok(self.store.machines(&visibility, &query).await?)
    }

    /// The machine `key` names (`MachineRef`), if the caller sees it.
    pub async fn get_machine(
        &self,
        caller: &Caller,
        key: &str,
    ) -> Result<SerializedMachine, MdeError> {
        let visibility = self.visibility(caller);
        self.find_machine(&visibility, key)
            .await?
            .ok_or_else(|| MdeError::machine_not_found(key))
    }

    /// By id, else by Entra device id, else by computer name (as MDE:
    /// `GET /api/machines/{id}` takes any of them; see [`MachineRef`]).
    async fn find_machine(
        &self,
        visibility: &Visibility,
        key: &str,
    ) -> Result<Option<SerializedMachine>, MdeError> {
        if crate::ids::names_nothing(key) {
            return Ok(None);
        }
        let machine = MachineRef::new(key);
        for lookup in machine.keys() {
            if let Some(found) = self.store.machine(visibility, lookup).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `findbytag`: machines carrying `tag` exactly, or a tag starting with it.
    pub async fn find_machines_by_tag(
        &self,
        caller: &Caller,
        tag: &str,
        starts_with: bool,
    ) -> Result<Vec<SerializedMachine>, MdeError> {
        // Tags hold no control characters (`rules::tags`): none starts with or is this.
        if tag.chars().any(char::is_control) {
            return Ok(vec![]);
        }
        let element = LAMBDA_ELEMENT.to_string();
        let predicate = if starts_with {
            Filter::StartsWith {
                property: element.clone(),
                prefix: tag.to_string(),
            }
        } else {
            Filter::Compare {
                property: element.clone(),
                op: CompareOp::Eq,
                value: Literal::String(tag.to_string()),
            }
        };
        let query = ListQuery {
            filter: Some(Filter::Any {
                collection: "machineTags".into(),
                variable: element,
                predicate: Box::new(predicate),
            }),
            limit: PAGE_SIZE,
            ..ListQuery::default()
        };
        let visibility = self.visibility(caller);
        Ok(self.store.machines(&visibility, &query).await?.items)
    }

    /// `findbyip`: the machines seen with internal address `ip` within 15
    /// minutes of `at` (default now), which may be at most 30 days back.
    pub async fn find_machines_by_ip(
        &self,
        caller: &Caller,
        request: &FindByIpRequest,
    ) -> Result<Vec<SerializedMachine>, MdeError> {
        let now = self.clock.now_in(&caller.tenant.id);
        let at = request.timestamp.unwrap_or(now);
        if at < now.minus_days(ip_history::HISTORY_DAYS) {
            return Err(MdeError::invalid_input(format!(
                "Invalid input timestamp {at}: it must be within the past {} days.",
                ip_history::HISTORY_DAYS
            )));
        }
        let window = ip_history::WINDOW_SECONDS;
        let ids = self
            .store
            .machines_seen_with_ip(
                &caller.tenant.id,
                &request.ip.to_string(),
                at.plus_seconds(-window),
                at.plus_seconds(window),
            )
            .await?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        // Through the machine list, so that visibility and retention apply as to every read.
        let query = ListQuery {
            filter: Some(Filter::In {
                property: "id".into(),
                values: ids.into_iter().map(Literal::String).collect(),
            }),
            limit: PAGE_SIZE,
            ..ListQuery::default()
        };
        let visibility = caller.visibility(now);
        Ok(self.store.machines(&visibility, &query).await?.items)
    }

    /// Forgets the address history `findbyip` can no longer ask about.
    pub async fn forget_old_ip_history(&self) -> Result<u64, MdeError> {
        let window = ip_history::WINDOW_SECONDS;
        let before = self
            .clock
            .now()
            .minus_days(ip_history::HISTORY_DAYS)
            .plus_seconds(-window);
        Ok(self.store.forget_ip_history(before).await?)
    }

    /// Applies `change` to each machine, all or none, and returns them as stored.
    async fn change_machines<F>(
        &self,
        caller: &Caller,
        keys: Vec<String>,
        mut change: F,
    ) -> Result<Vec<MachineChange>, MdeError>
    where
        F: FnMut(&Machine, &[MachineAction], &[Capability]) -> Result<MachineChange, MdeError>
            + Send
            + 'static,
    {
        if let Some(key) = keys.iter().find(|key| crate::ids::names_nothing(key)) {
            return Err(MdeError::machine_not_found(key));
        }
        let mut machines: Vec<MachineRef> = keys.iter().map(|key| MachineRef::new(key)).collect();
        // Each key once; an id in two cases is one id (MDE accepts any case).
        let mut seen = std::collections::HashSet::new();
        machines.retain(|m| seen.insert(m.id().unwrap_or(m.given()).to_string()));
        let visibility = self.visibility(caller);
        let decide = Box::new(
            move |m: &Machine, active: &[MachineAction], capabilities: &[Capability]| {
                change(m, active, capabilities)
            },
        );
        let audit = caller
            .audit
            .as_ref()
            .map(|audit| audit.entry(self.clock.now_in(&caller.tenant.id), || keys.join(",")));
        let changes = self
            .store
            .change_machines(&visibility, machines, decide, audit)
            .await?;
        if let Some(audit) = &caller.audit {
            audit.mark_written();
        }
        Ok(changes)
    }

    async fn change_machine<F>(
        &self,
        caller: &Caller,
        machine_id: &str,
        change: F,
    ) -> Result<MachineChange, MdeError>
    where
        F: FnMut(&Machine, &[MachineAction], &[Capability]) -> Result<MachineChange, MdeError>
            + Send
            + 'static,
    {
        let mut changed = self
            .change_machines(caller, vec![machine_id.to_string()], change)
            .await?;
        changed
            .pop()
            .ok_or_else(|| MdeError::machine_not_found(machine_id))
    }

    pub async fn tag_machine(
        &self,
        caller: &Caller,
        machine_id: &str,
        request: TagRequest,
    ) -> Result<Machine, MdeError> {
        rules::tags::validate_tag(&request.value)?;
        let changed = self
            .change_machine(caller, machine_id, move |machine, _, _| {
                let mut machine = machine.clone();
                rules::tags::apply(&mut machine.machine_tags, &request)?;
                Ok(MachineChange {
                    machine,
                    new_action: None,
                })
            })
            .await?;
        Ok(changed.machine)
    }

    pub async fn tag_machines(
        &self,
        caller: &Caller,
        request: BulkTagRequest,
    ) -> Result<Vec<Machine>, MdeError> {
        rules::tags::validate_tag(&request.tag.value)?;
        let tag = request.tag;
        let changed = self
            .change_machines(caller, request.machine_ids, move |machine, _, _| {
                let mut machine = machine.clone();
                rules::tags::apply(&mut machine.machine_tags, &tag)?;
                Ok(MachineChange {
                    machine,
                    new_action: None,
                })
            })
            .await?;
        Ok(changed.into_iter().map(|c| c.machine).collect())
    }

    pub async fn update_machine(
        &self,
        caller: &Caller,
        machine_id: &str,
        request: UpdateMachineRequest,
    ) -> Result<Machine, MdeError> {
        let tags = request
            .machine_tags
            .as_deref()
            .map(rules::tags::replacement)
            .transpose()?;
        let changed = self
            .change_machine(caller, machine_id, move |machine, _, _| {
                let mut machine = machine.clone();
                if let Some(tags) = &tags {
                    machine.machine_tags = tags.clone();
                }
                if let Some(value) = request.device_value {
                    machine.device_value = Some(value);
                }
                Ok(MachineChange {
                    machine,
                    new_action: None,
                })
            })
            .await?;
        Ok(changed.machine)
    }

    pub async fn set_device_value(
        &self,
        caller: &Caller,
        machine_id: &str,
        value: DeviceValue,
    ) -> Result<Machine, MdeError> {
        self.update_machine(
            caller,
            machine_id,
            UpdateMachineRequest {
                machine_tags: None,
                device_value: Some(value),
            },
        )
        .await
    }

    /// Creates a Pending machine action (isolate, offboard, scan, ...).
    pub async fn request_action(
        &self,
        caller: &Caller,
        machine_id: &str,
        request: ActionRequest,
    ) -> Result<MachineAction, MdeError> {
        if let ActionKind::LiveResponse(commands) = &request.kind {
            // An unknown machine is a 404 whatever the session names.
            self.get_machine(caller, machine_id).await?;
            self.check_library_has(caller, commands).await?;
        }
        let requestor = caller.requestor().to_string();
        let now = self.clock.now_in(&caller.tenant.id);
        let changed = self
            .change_machine(caller, machine_id, move |machine, active, capabilities| {
                let action = rules::actions::create(
                    machine,
                    active,
                    capabilities,
                    &request,
                    &requestor,
                    now,
                )?;
                Ok(MachineChange {
                    machine: machine.clone(),
                    new_action: Some(action),
                })
            })
            .await?;
        let action = changed
            .new_action
            .ok_or_else(|| MdeError::internal("the store did not return the new action"))?;
        self.wakeups.wake(&caller.tenant.id, &action.machine_id);
        Ok(action)
    }

    /// Machine actions, newest first; with `machine`, that machine's only
    /// (`GET /api/machines/{id}/machineactions`), and 404 for a machine the
    /// caller does not see.
    pub async fn list_actions(
        &self,
        caller: &Caller,
        machine: Option<&str>,
        query: &ODataQuery,
    ) -> Result<Page<MachineAction>, MdeError> {
        let mut query = ListQuery::resolve(query, MACHINE_ACTION_QUERYABLE)?;
        if let Some(key) = machine {
            let of_machine = Filter::Compare {
                property: "machineId".into(),
                op: CompareOp::Eq,
                value: Literal::String(self.get_machine(caller, key).await?.id()),
            };
            query.filter = Some(match query.filter.take() {
                Some(filter) => Filter::And(Box::new(of_machine), Box::new(filter)),
                None => of_machine,
            });
        }
        let visibility = self.visibility(caller);
        // Steps that have ended move on first, so that the filter compares
        // the actions as they now are.
        self.advance_due_scripts(Some(&visibility.tenant_id))
            .await?;
        let mut page = self.store.actions(&visibility, &query).await?;
        page.items = self.as_polled(&visibility.tenant_id, page.items).await?;
        Ok(page)
    }

    pub async fn get_action(&self, caller: &Caller, id: &str) -> Result<MachineAction, MdeError> {
        let id = parse_action_id(id)?;
        let visibility = self.visibility(caller);
        let action = self
            .store
            .action(&visibility, &id)
            .await?
            .ok_or_else(|| MdeError::action_not_found(&id))?;
        let mut read = self.as_polled(&visibility.tenant_id, vec![action]).await?;
        read.pop()
            .ok_or_else(|| MdeError::internal("an action read went missing"))
    }

    /// `actions` as a client reads them: those an outcome rule carries
    /// moved on through their scripts, and counted as polled.
    async fn as_polled(
        &self,
        tenant_id: &str,
        mut actions: Vec<MachineAction>,
    ) -> Result<Vec<MachineAction>, MdeError> {
        let open: Vec<String> = actions
            .iter()
            .filter(|a| a.status.is_active())
            .map(|a| a.id.clone())
            .collect();
        if open.is_empty() {
            return Ok(actions);
        }
        // A read first: most open actions wait for a device, not a script.
        let scripted = self.store.scripted_among(tenant_id, &open).await?;
        if scripted.is_empty() {
            return Ok(actions);
        }
        let now = self.clock.now_in(tenant_id);
        let advanced: HashMap<String, MachineAction> = self
            .store
            .advance_scripted_actions(tenant_id, scripted, now, true)
            .await?
            .into_iter()
            .map(|action| (action.id.clone(), action))
            .collect();
        for read in &mut actions {
            if let Some(advanced) = advanced.get(&read.id) {
                *read = advanced.clone();
            }
        }
        Ok(actions)
    }

    /// The tenant, or 404: what the control plane asks first.
    pub(crate) async fn existing_tenant(&self, tenant_id: &str) -> Result<Tenant, MdeError> {
        self.tenant(tenant_id).await?.ok_or_else(|| {
            MdeError::new(
                ErrorCode::ResourceNotFound,
                format!("Tenant {tenant_id} was not found"),
            )
        })
    }

    /// The tenant's outcome rules, in the order they apply.
    pub async fn outcome_rules(&self, tenant_id: &str) -> Result<Vec<OutcomeRule>, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let rules = self.store.outcome_rules(tenant_id).await?;
        Ok(rules.iter().map(StoredOutcomeRule::wire).collect())
    }

    /// Adds `rule` (checked first) before or after the tenant's others.
    pub async fn add_outcome_rule(
        &self,
        tenant_id: &str,
        rule: NewOutcomeRule,
        place: RulePlace,
    ) -> Result<OutcomeRule, MdeError> {
        self.existing_tenant(tenant_id).await?;
        rule.validate()?;
        let rule = StoredOutcomeRule::new(tenant_id, rule);
        self.store.add_outcome_rule(&rule, place).await?;
        Ok(rule.wire())
    }

    pub async fn delete_outcome_rule(&self, tenant_id: &str, id: &str) -> Result<(), MdeError> {
        self.existing_tenant(tenant_id).await?;
        match self.store.delete_outcome_rule(tenant_id, id).await? {
            true => Ok(()),
            false => Err(MdeError::new(
                ErrorCode::ResourceNotFound,
                format!("Outcome rule {id} was not found"),
            )),
        }
    }

    /// Removes every outcome rule of the tenant; how many there were.
    pub async fn delete_outcome_rules(&self, tenant_id: &str) -> Result<u64, MdeError> {
        self.existing_tenant(tenant_id).await?;
        Ok(self.store.delete_outcome_rules(tenant_id).await?)
    }

    /// Moves on every scripted action whose step's duration has ended (of
    /// the tenant, or of all); how many were due. The server calls it every
    /// second for all tenants.
    pub async fn advance_due_scripts(&self, tenant_id: Option<&str>) -> Result<usize, MdeError> {
        let scopes = match tenant_id {
            Some(tenant_id) => vec![(
                TenantScope::Tenant(tenant_id.to_string()),
                self.clock.now_in(tenant_id),
            )],
            None => self.clocks.scopes(),
        };
        let mut due_count = 0;
        for (scope, now) in scopes {
            due_count += self.advance_due_scripts_of(&scope, now).await?;
        }
        Ok(due_count)
    }

    async fn advance_due_scripts_of(
        &self,
        scope: &TenantScope,
        now: Timestamp,
    ) -> Result<usize, MdeError> {
        const AT_ONCE: u32 = 500;
        let due = self.store.due_scripted_actions(scope, now, AT_ONCE).await?;
        let due_count = due.len();
        let mut by_tenant: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (tenant_id, action_ids) in due {
            by_tenant.entry(tenant_id).or_default().push(action_ids);
        }
        for (tenant_id, action_ids) in by_tenant {
            self.store
                .advance_scripted_actions(&tenant_id, action_ids, now, false)
                .await?;
        }
        Ok(due_count)
    }

    pub async fn cancel_action(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<MachineAction, MdeError> {
        let id = parse_action_id(id)?;
        let requestor = caller.requestor().to_string();
        let now = self.clock.now_in(&caller.tenant.id);
        let visibility = caller.visibility(now);
        let decide = Box::new(move |action: &MachineAction| {
            rules::actions::cancel(action, &requestor, comment, now)
        });
        let audit = caller
            .audit
            .as_ref()
            .map(|audit| audit.entry(now, || id.clone()));
        let changed = self
            .store
            .change_action(&visibility, &id, decide, audit)
            .await?;
        if let Some(audit) = &caller.audit {
            audit.mark_written();
        }
        Ok(changed)
    }

    /// The caller's tenant's audit log, newest first; `$top` and `$skip` only.
    pub async fn list_audit(
        &self,
        caller: &Caller,
        query: &ODataQuery,
    ) -> Result<Page<AuditEntry>, MdeError> {
        if query.filter.is_some() || !query.order_by.is_empty() || query.count {
            return Err(MdeError::new(
                ErrorCode::ODataError,
                "The audit log supports $top, $skip and $select only.",
            ));
        }
        let top = query.top.unwrap_or(PAGE_SIZE);
        let visibility = self.visibility(caller);
        Ok(self
            .store
            .audit_entries(&visibility, query.skip.unwrap_or(0), top)
            .await?)
    }

    /// Appends the audit entry of an API change by `operation`, with the
    /// machines it is about (`rules::audit::subject`), so that the log shows
    /// a caller limited to device groups only entries about its machines.
    /// Keys are looked up as the change looked them up, with `caller`'s
    /// visibility: a name or Entra device id several machines share names
    /// the one the caller acted on. A key that names no machine the caller
    /// sees (or a lookup that fails) is kept as given: it matches none, which
    /// hides the entry from group-limited callers rather than losing it.
    pub async fn audit(
        &self,
        caller: &Caller,
        entry: &AuditEntry,
        operation: Operation,
    ) -> Result<(), MdeError> {
        let visibility = self.visibility(caller);
        let machine_ids = match rules::audit::subject(operation, entry.target.as_deref()) {
            Subject::Nothing => vec![],
            Subject::Machines(keys) => {
                let mut ids = Vec::with_capacity(keys.len());
                for key in keys {
                    let id = self.machine_id_of(&visibility, key).await;
                    ids.push(id.unwrap_or_else(|| key.to_string()));
                }
                ids
            }
            Subject::Action(key) => {
                let action = match parse_action_id(key) {
                    Ok(id) => self.store.action(&visibility, &id).await.ok().flatten(),
                    Err(_) => None,
                };
                vec![action.map_or_else(|| key.to_string(), |a| a.machine_id)]
            }
            Subject::Alerts(keys) => {
                let mut ids = Vec::with_capacity(keys.len());
                for key in keys {
                    let alert = self.store.alert(&visibility, key).await.ok().flatten();
                    ids.push(alert.map_or_else(|| key.to_string(), |a| a.machine_id));
                }
                ids
            }
        };
        Ok(self.store.append_audit(entry, &machine_ids).await?)
    }

    /// The id of the machine `key` names, as `get_machine` finds it (an id
    /// as it is stored, without a read).
    async fn machine_id_of(&self, visibility: &Visibility, key: &str) -> Option<String> {
        if is_machine_id(key) {
            return Some(key.to_ascii_lowercase());
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        let machine = self.find_machine(visibility, key).await.ok()??;
        serde_json::from_str::<Id>(machine.json())
            .ok()
            .map(|m| m.id)
    }
}
