//! The storage interface, implemented once (`palisade_store_sql`'s `SqlStore`)
//! over SQLite (the embedded default) and PostgreSQL.
//!
//! Reads take a [`Visibility`] so that tenant, retention and device-group limits
//! are applied inside the query, never after it. Writes hand the store a
//! decision function: the store loads the current rows inside its transaction,
//! the domain decides, the store applies the decision and commits. The rule is
//! thus written once (in the domain) and is atomic on every back end.

use crate::caller::{Tenant, Visibility};
use crate::clock::{TenantClock, TenantScope};
use crate::control::{
    OperatorCredential, RecordFilter, RecordedCall, RulePlace, StoredFaultRule, StoredOutcomeRule,
};
use crate::devices::wakeups::Wakeups;
use crate::devices::{CheckInRecord, Device, DeviceActionDecision, OnboardingToken};
use crate::files::{FileKind, StoredFile};
use crate::identity::{
    AppRegistration, AuditEntry, GrantsOf, OAuthGrant, Redeemed, SigningKey, User,
};
use crate::inventory::{StoredLogon, StoredSoftware};
use crate::live_response::LibraryEntry;
use crate::query::ListQuery;
use crate::rate_limit::{RateKey, RateLimits, Throttled};
use crate::rules::device_groups::GroupRules;
use crate::seed::TenantState;
use crate::writes::{ChangeAlerts, DeleteIndicators, RaiseAlert, Seeding, SubmitIndicators};
use async_trait::async_trait;
use palisade_contract::control::ClockChange;
use palisade_contract::{
    Alert, Indicator, Machine, MachineAction, MdeError, SerializedMachine, Timestamp,
};
use palisade_device::Capability;
use std::sync::Arc;

/// How a single machine is looked up.
#[derive(Debug, Clone, Copy)]
pub enum MachineKey<'a> {
    /// A 40-hex id, lower case.
    Id(&'a str),
    /// The Entra device id (`aadDeviceId`): a lower-case hyphenated GUID,
    /// matched case-insensitively; it repeats across re-onboarded devices,
    /// and the most recently seen wins.
    AadDeviceId(&'a str),
    /// Case-insensitive; names repeat across re-onboarded devices, and the most
    /// recently seen wins.
    Name(&'a str),
}

/// A machine as a client names it in `{id}`: MDE's `GET /api/machines/{id}`
/// takes a machine id or a computer name, and responders send the Entra
/// device id too. The one rule for every endpoint that takes a machine: its
/// id (40 hex, any case), else its `aadDeviceId` when the text is a GUID,
/// else its computer name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRef {
    given: String,
    id: Option<String>,
    aad_device_id: Option<String>,
}

impl MachineRef {
    pub fn new(given: &str) -> MachineRef {
        MachineRef {
            given: given.to_string(),
            id: crate::ids::is_machine_id(given).then(|| given.to_ascii_lowercase()),
            aad_device_id: uuid::Uuid::parse_str(given).ok().map(|g| g.to_string()),
        }
    }

    /// As the client wrote it (for the 404 that names it).
    pub fn given(&self) -> &str {
        &self.given
    }

    /// The machine id it is, if it has an id's form.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The keys to try, in order; the first that finds a machine names it.
    pub fn keys(&self) -> impl Iterator<Item = MachineKey<'_>> {
        let id = self.id.as_deref().map(MachineKey::Id);
        let aad = self.aad_device_id.as_deref().map(MachineKey::AadDeviceId);
        id.into_iter()
            .chain(aad)
            .chain(std::iter::once(MachineKey::Name(&self.given)))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("machine {0} not found")]
    MachineNotFound(String),
    #[error("machine action {0} not found")]
    ActionNotFound(String),
    #[error(transparent)]
    Rejected(#[from] MdeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteError {
    /// The error of a write that refuses nothing but store failures (a
    /// seed, a check-in, an enrollment): any other is a fault.
    pub fn into_store_error(self) -> StoreError {
        match self {
            WriteError::Store(error) => error,
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// One page of a list, and what the caller needs to page on.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// With `$count=true`: how many match in all.
    pub count: Option<u64>,
    /// More rows match beyond this page.
    pub more: bool,
}

/// A device group (MDE "machine group"); `rbacGroupId`/`rbacGroupName` on machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroup {
    pub id: i64,
    pub name: String,
    /// 1 is the highest; a machine matching several groups goes to the highest.
    pub rank: i64,
    pub rules: GroupRules,
}

impl DeviceGroup {
    /// A group without rules: a label machines are reported or seeded with.
    pub fn label(id: i64, name: &str) -> DeviceGroup {
        DeviceGroup {
            id,
            name: name.to_string(),
            rank: id,
            rules: GroupRules::default(),
        }
    }
}

/// What the domain decided to do to one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineChange {
    /// The machine as it must be stored (tags, device value, ...).
    pub machine: Machine,
    /// An action to create in the same transaction.
    pub new_action: Option<MachineAction>,
}

/// Decides, from a machine, its active (Pending/InProgress) actions and the
/// capabilities its enrolled device declared, what to change.
pub type MachineDecision = Box<
    dyn FnMut(&Machine, &[MachineAction], &[Capability]) -> Result<MachineChange, MdeError> + Send,
>;

/// Decides, from an action as stored, what it becomes.
pub type ActionDecision = Box<dyn FnOnce(&MachineAction) -> Result<MachineAction, MdeError> + Send>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Creates the tenant with its device groups and machines, in one
    /// transaction, unless a tenant with its id exists. Returns whether it did.
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        groups: &[DeviceGroup],
        machines: &[Machine],
    ) -> Result<bool, StoreError>;
    /// Creates or replaces a device group, and places every machine of the
    /// tenant in its group again (`rules::device_groups::assign`), in one transaction.
    async fn put_device_group(
        &self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), StoreError>;
    /// Creates or replaces machines (with their tags), as reported by devices or seeded.
    /// This, `create_tenant`, `enroll_device` and `record_check_ins` keep
    /// each machine's address history (`rules::ip_history::sync`).
    async fn put_machines(&self, tenant_id: &str, machines: &[Machine]) -> Result<(), StoreError>;
    /// The ids of the tenant's machines seen with internal address `ip` at
    /// some time from `from` to `to` (`rules::ip_history`), in id order,
    /// whatever their visibility.
    async fn machines_seen_with_ip(
        &self,
        tenant_id: &str,
        ip: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<String>, StoreError>;
    /// Forgets, in all tenants, the address spans that ended before `before`; returns how many.
    async fn forget_ip_history(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Files devices upload (`crate::files`): a new, incomplete one.
    async fn create_file(&self, file: &StoredFile) -> Result<(), StoreError>;
    /// The file's chunk `seq` (0, 1, ... in order).
    async fn append_file_chunk(
        &self,
        tenant_id: &str,
        file_id: &str,
        seq: i64,
        data: Vec<u8>,
    ) -> Result<(), StoreError>;
    /// Marks `file` complete (its size, digest and `completed_at` as
    /// given), in place of any other file of its action, kind and part.
    async fn complete_file(&self, file: &StoredFile) -> Result<(), StoreError>;
    /// Deletes a file and its chunks (an upload given up).
    async fn delete_file(&self, tenant_id: &str, file_id: &str) -> Result<(), StoreError>;
    /// The action's newest complete file of `kind` (and part).
    async fn action_file(
        &self,
        tenant_id: &str,
        action_id: &str,
        kind: (FileKind, i64),
    ) -> Result<Option<StoredFile>, StoreError>;
    /// The file's chunk `seq`, if it has one.
    async fn file_chunk(
        &self,
        tenant_id: &str,
        file_id: &str,
        seq: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    async fn create_file_link(
        &self,
        token_hash: &str,
        tenant_id: &str,
        file_id: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// The (complete) file a link reads, and when the link expires.
    async fn linked_file(
        &self,
        token_hash: &str,
    ) -> Result<Option<(StoredFile, Timestamp)>, StoreError>;
    /// Deletes, in all tenants, the files created before `before` (their
    /// chunks and links with them) and the links expired at `now`; returns
    /// how many files. Library files stay while the library holds them.
    async fn forget_files(&self, before: Timestamp, now: Timestamp) -> Result<u64, StoreError>;

    /// Replaces the machine's inventory with these rows.
    async fn replace_inventory(
        &self,
        tenant_id: &str,
        machine_id: &str,
        software: &[StoredSoftware],
        logons: &[StoredLogon],
    ) -> Result<(), StoreError>;
    /// The machine's software by id, each with how many of the tenant's
    /// machines have it.
    async fn machine_software(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Vec<(StoredSoftware, i64)>, StoreError>;
    /// The users who logged on to the machine, most recently seen first.
    async fn machine_logons(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Vec<StoredLogon>, StoreError>;

    /// The tenant's live-response library, by name.
    async fn library_files(&self, tenant_id: &str) -> Result<Vec<LibraryEntry>, StoreError>;
    async fn library_file(
        &self,
        tenant_id: &str,
        file_name: &str,
    ) -> Result<Option<LibraryEntry>, StoreError>;
    /// Completes `file` (uploaded for the library under the entry's name)
    /// and makes it the entry's, in place of a file of that name if
    /// `replace`; false (the library unchanged, `file` left incomplete) if
    /// the name is taken and not `replace`.
    async fn put_library_file(
        &self,
        entry: &LibraryEntry,
        file: &StoredFile,
        replace: bool,
    ) -> Result<bool, StoreError>;
    /// Deletes the entry and its file; false if there was none.
    async fn delete_library_file(
        &self,
        tenant_id: &str,
        file_name: &str,
    ) -> Result<bool, StoreError>;

    async fn machines(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<SerializedMachine>, StoreError>;
    async fn machine(
        &self,
        visibility: &Visibility,
        key: MachineKey<'_>,
    ) -> Result<Option<SerializedMachine>, StoreError>;
    /// Applies `decide` to each machine (each the first its keys find) in one
    /// transaction: all change, or none; with `audit`, the entry of the
    /// change (about the machines changed) in the same transaction.
    async fn change_machines(
        &self,
        visibility: &Visibility,
        machines: Vec<MachineRef>,
        decide: MachineDecision,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<MachineChange>, WriteError>;

    async fn actions(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
    ) -> Result<Page<MachineAction>, StoreError>;
    async fn action(
        &self,
        visibility: &Visibility,
        id: &str,
    ) -> Result<Option<MachineAction>, StoreError>;
    /// Sets to `TimeOut`, in all tenants, every action created before
    /// `stale_before` and still Pending, and every InProgress action whose
    /// last update was before it (its device took it on and never reported).
    async fn time_out_actions(
        &self,
        scope: &TenantScope,
        stale_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// As `change_machines`, for one action.
    async fn change_action(
        &self,
        visibility: &Visibility,
        id: &str,
        decide: ActionDecision,
        audit: Option<AuditEntry>,
    ) -> Result<MachineAction, WriteError>;

    // Alerts and indicators.

    /// A page of the alerts `visibility` shows: those of machines it shows,
    /// updated within retention; their evidence empty unless `with_evidence`.
    async fn alerts(
        &self,
        visibility: &Visibility,
        query: &ListQuery,
        with_evidence: bool,
    ) -> Result<Page<Alert>, StoreError>;
    async fn alert(&self, visibility: &Visibility, id: &str) -> Result<Option<Alert>, StoreError>;
    async fn change_alerts(&self, write: ChangeAlerts) -> Result<Vec<Alert>, WriteError>;
    async fn raise_alert(&self, write: RaiseAlert) -> Result<Alert, WriteError>;
    /// A page of the tenant's indicators in force at `now` (`created_by`:
    /// those it made only).
    async fn indicators(
        &self,
        tenant_id: &str,
        created_by: Option<&str>,
        now: Timestamp,
        query: &ListQuery,
    ) -> Result<Page<Indicator>, StoreError>;
    /// Each submission's indicator, or why it was refused.
    async fn submit_indicators(
        &self,
        write: SubmitIndicators,
    ) -> Result<Vec<Result<Indicator, MdeError>>, WriteError>;
    async fn delete_indicators(&self, write: DeleteIndicators) -> Result<(), WriteError>;

    // Identity: app registrations, users, signing keys.

    /// Creates the app, or replaces the one with its client id (in its tenant).
    async fn put_app(&self, app: &AppRegistration) -> Result<(), StoreError>;
    async fn app(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<AppRegistration>, StoreError>;
    async fn apps(&self, tenant_id: &str) -> Result<Vec<AppRegistration>, StoreError>;
    /// Returns whether it existed.
    async fn delete_app(&self, tenant_id: &str, client_id: &str) -> Result<bool, StoreError>;

    /// Creates the user, or replaces the one with its id.
    async fn put_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user(&self, tenant_id: &str, id: &str) -> Result<Option<User>, StoreError>;
    /// By UPN, case-insensitively.
    async fn user_by_name(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> Result<Option<User>, StoreError>;
    async fn users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError>;
    async fn delete_user(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;

    /// Keeps a new grant (a code, device code, refresh token).
    async fn put_grant(&self, grant: &OAuthGrant) -> Result<(), StoreError>;
    async fn grant(&self, tenant_id: &str, key: &str) -> Result<Option<OAuthGrant>, StoreError>;
    /// The device code a person typed the user code of (any tenant's).
    async fn device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<OAuthGrant>, StoreError>;
    /// Marks the grant used, if it was not: one caller wins a race.
    async fn redeem_grant(
        &self,
        tenant_id: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError>;
    /// Gives an unexpired, unapproved device code to `user_id`; whether it did.
    async fn approve_device_grant(
        &self,
        tenant_id: &str,
        key: &str,
        user_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Records a device code's poll at `now` unless the last one was after
    /// `not_after`; whether it did (false: polled too soon, or no such code).
    async fn poll_device_grant(
        &self,
        tenant_id: &str,
        key: &str,
        now: Timestamp,
        not_after: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Removes the grants of a sign-in, a user or an app; how many.
    async fn revoke_grants(&self, tenant_id: &str, of: GrantsOf<'_>) -> Result<u64, StoreError>;
    /// Removes every grant expired before `before`; how many.
    async fn forget_expired_grants(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// A tenant's signing keys, newest first, retired ones included.
    async fn signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError>;
    /// Adds `key` as the tenant's active key and marks every other active key
    /// retired at `key.created_at`, in one transaction.
    async fn rotate_signing_key(&self, key: &SigningKey) -> Result<(), StoreError>;
    /// Replaces the stored private key of `kid` with `sealed`, if it is still
    /// `plaintext` (another node may have sealed it first); whether it did.
    async fn seal_signing_key(
        &self,
        tenant_id: &str,
        kid: &str,
        plaintext: &str,
        sealed: &str,
    ) -> Result<bool, StoreError>;

    async fn device_groups(&self, tenant_id: &str) -> Result<Vec<DeviceGroup>, StoreError>;

    // Device plane.

    async fn put_onboarding_token(&self, token: &OnboardingToken) -> Result<(), StoreError>;
    async fn onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<OnboardingToken>, StoreError>;
    async fn onboarding_tokens(&self, tenant_id: &str) -> Result<Vec<OnboardingToken>, StoreError>;
    /// Returns whether a token that was not yet revoked is now.
    async fn revoke_onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Enrolls `device` with the machine its report makes, in one
    /// transaction, as `rules::enrollment::enroll` decides from what is
    /// enrolled: the device of `presented_credential_id` (if it is still
    /// enrolled) and whether this hardware id is. The machine is placed in
    /// its device group. Returns the machine and the device as stored.
    async fn enroll_device(
        &self,
        machine: &Machine,
        device: &Device,
        presented_credential_id: Option<&str>,
    ) -> Result<(Machine, Device), StoreError>;
    async fn device_by_credential(
        &self,
        tenant_id: &str,
        credential_id: &str,
    ) -> Result<Option<Device>, StoreError>;
    /// A tenant's devices, offboarded ones included, newest enrollment first.
    async fn devices(&self, tenant_id: &str) -> Result<Vec<Device>, StoreError>;
    /// The device enrolled as a machine, if one is (offboarded or not).
    async fn device_of_machine(
        &self,
        tenant_id: &str,
        machine_id: &str,
    ) -> Result<Option<Device>, StoreError>;
    /// Writes check-ins (`rules::device_report::apply`) in one transaction.
    async fn record_check_ins(&self, check_ins: &[CheckInRecord]) -> Result<(), StoreError>;
    /// Delivers the machine's Pending and InProgress actions, oldest first,
    /// that no delivery holds at `now`, and holds them until `held_until`:
    /// two check-ins, on any nodes, never both deliver an action, and one a
    /// device received but never finished is delivered again once its hold ends.
    async fn claim_device_actions(
        &self,
        tenant_id: &str,
        machine_id: &str,
        now: Timestamp,
        held_until: Timestamp,
    ) -> Result<Vec<MachineAction>, StoreError>;
    /// Starts waking `wakeups` for actions that other nodes create (this
    /// node's own wake it directly). A store only one node uses has none.
    fn relay_new_actions(&self, wakeups: Arc<Wakeups>);
    /// Applies a device's report on one of its machine's actions, in one transaction.
    async fn change_device_action(
        &self,
        device: &Device,
        action_id: &str,
        decide: DeviceActionDecision,
    ) -> Result<MachineAction, WriteError>;

    // Rate limits, counted where every node of the deployment counts.

    /// Admits one call of `key` at `now` (`rate_limit::admit`), or says why not.
    async fn admit_call(
        &self,
        key: &RateKey,
        limits: RateLimits,
        now: Timestamp,
    ) -> Result<Result<(), Throttled>, StoreError>;
    /// Forgets the call logs of keys idle for an hour.
    async fn forget_idle_calls(&self, now: Timestamp) -> Result<(), StoreError>;

    // Audit log.

    /// Appends an entry about `machine_ids` (the machines whose visibility
    /// decides who reads it; none for administration), once it is durable.
    /// Its `id` is assigned: the next of its tenant's, without gaps.
    async fn append_audit(
        &self,
        entry: &AuditEntry,
        machine_ids: &[String],
    ) -> Result<(), StoreError>;
    /// Newest first, the entries `visibility` shows (`store_sql::audit_entries`).
    async fn audit_entries(
        &self,
        visibility: &Visibility,
        skip: u64,
        top: u32,
    ) -> Result<Page<AuditEntry>, StoreError>;

    // The emulator control plane.

    /// The control API's credential, once made.
    async fn operator_credential(&self) -> Result<Option<OperatorCredential>, StoreError>;
    /// Makes `credential` the one: in place of any before it if `replace`,
    /// else only if there is none yet (nodes starting together keep one).
    async fn put_operator_credential(
        &self,
        credential: &OperatorCredential,
        replace: bool,
    ) -> Result<(), StoreError>;
    /// The tenant's outcome rules, in the order they apply.
    async fn outcome_rules(&self, tenant_id: &str) -> Result<Vec<StoredOutcomeRule>, StoreError>;
    /// Adds `rule` before or after the tenant's others (its `position` is
    /// chosen here).
    async fn add_outcome_rule(
        &self,
        rule: &StoredOutcomeRule,
        place: RulePlace,
    ) -> Result<(), StoreError>;
    async fn delete_outcome_rule(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Removes every rule of the tenant; how many there were.
    async fn delete_outcome_rules(&self, tenant_id: &str) -> Result<u64, StoreError>;
    /// The actions of `action_ids` (of one tenant) that an outcome rule
    /// carries, moved on to `now` through their scripts, and counted as read
    /// if `polled`; each as it now reads (`writes::AdvanceScripts`).
    async fn advance_scripted_actions(
        &self,
        tenant_id: &str,
        action_ids: Vec<String>,
        now: Timestamp,
        polled: bool,
    ) -> Result<Vec<MachineAction>, StoreError>;
    /// (tenant, action) of the scripted actions of `scope` whose step ends
    /// by `now`, soonest first, at most `limit`.
    async fn due_scripted_actions(
        &self,
        scope: &TenantScope,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// The tenant's fault rules in the order they apply (none: every
    /// tenant's, by tenant).
    async fn fault_rules(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<StoredFaultRule>, StoreError>;
    async fn add_fault_rule(
        &self,
        rule: &StoredFaultRule,
        place: RulePlace,
    ) -> Result<(), StoreError>;
    async fn delete_fault_rule(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Removes every fault rule of the tenant; how many there were.
    async fn delete_fault_rules(&self, tenant_id: &str) -> Result<u64, StoreError>;
    /// Counts a call the rule matched and says whether it takes it
    /// (`rules::faults::take`, `draw` uniform in [0, 1)): the rule as
    /// counted if it does, none if not (or if it is gone).
    async fn take_fault_call(
        &self,
        tenant_id: &str,
        id: &str,
        draw: f64,
    ) -> Result<Option<StoredFaultRule>, StoreError>;
    /// Makes the tenant's state `state` (`writes::SeedTenant`); false if it
    /// was to be created and exists (nothing is changed then).
    async fn seed_tenant(
        &self,
        state: TenantState,
        seeding: Seeding,
        now: Timestamp,
    ) -> Result<bool, WriteError>;
    /// Forgets the rate-limit counts of the tenant's callers.
    async fn forget_calls_of(&self, tenant_id: &str) -> Result<(), StoreError>;
    /// The document the tenant was made from, if it was made from one.
    async fn tenant_seed(&self, tenant_id: &str) -> Result<Option<String>, StoreError>;
    /// Turns the tenant's recorder on or off.
    async fn set_recorder(&self, tenant_id: &str, enabled: bool) -> Result<(), StoreError>;
    /// The tenants whose recorder is on.
    async fn recording_tenants(&self) -> Result<Vec<String>, StoreError>;
    async fn append_recorded_call(&self, call: &RecordedCall) -> Result<(), StoreError>;
    /// The tenant's recorded calls that `filter` lets through, oldest
    /// first, `top` after `skip`.
    async fn recorded_calls(
        &self,
        tenant_id: &str,
        filter: &RecordFilter,
        skip: u64,
        top: u64,
    ) -> Result<Vec<RecordedCall>, StoreError>;
    /// Forgets the tenant's recorded calls older than its newest `keep`.
    async fn prune_recorded_calls(&self, tenant_id: &str, keep: u64) -> Result<(), StoreError>;
    /// Forgets the tenant's recorded calls; how many there were.
    async fn delete_recorded_calls(&self, tenant_id: &str) -> Result<u64, StoreError>;
    /// Every tenant clock the control plane set.
    async fn tenant_clocks(&self) -> Result<Vec<(String, TenantClock)>, StoreError>;
    /// The tenant's clock after `change` (`writes::ChangeClock`).
    async fn change_tenant_clock(
        &self,
        tenant_id: &str,
        change: &ClockChange,
        server_now: Timestamp,
    ) -> Result<TenantClock, WriteError>;
    /// Which of the tenant's actions `action_ids` an outcome rule carries.
    async fn scripted_among(
        &self,
        tenant_id: &str,
        action_ids: &[String],
    ) -> Result<Vec<String>, StoreError>;
}
