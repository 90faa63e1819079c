//! The emulator control plane's state (`control-plane.md`): the operator
//! credential that guards it, and each tenant's outcome and fault rules.

use palisade_contract::control::{
    FaultRule, NewFaultRule, NewOutcomeRule, OutcomeMatch, OutcomeRule, OutcomeStep,
};
use palisade_contract::Timestamp;

/// The control API's credential: one for the installation. Kept sealed (so
/// that every start can show it again) and hashed (what a call is checked by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorCredential {
    pub token_sealed: String,
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// An outcome rule as stored: its tenant and place among the tenant's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcomeRule {
    pub tenant_id: String,
    pub id: String,
    /// Rules apply in ascending position (then id).
    pub position: i64,
    pub matches: OutcomeMatch,
    pub script: Vec<OutcomeStep>,
    pub hits: i64,
}

impl StoredOutcomeRule {
    pub fn new(tenant_id: &str, rule: NewOutcomeRule) -> StoredOutcomeRule {
        StoredOutcomeRule {
            tenant_id: tenant_id.to_string(),
            id: crate::ids::new_guid(),
            position: 0,
            matches: rule.matches,
            script: rule.script,
            hits: 0,
        }
    }

    pub fn wire(&self) -> OutcomeRule {
        OutcomeRule {
            id: self.id.clone(),
            matches: self.matches.clone(),
            script: self.script.clone(),
            hits: u64::try_from(self.hits).unwrap_or_default(),
        }
    }
}

/// Where `POST .../outcomes` (or `.../faults`) puts a new rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePlace {
    First,
    Last,
}

impl RulePlace {
    /// The new rule's position from the tenant's first (or last) rule's.
    pub fn offset(self) -> i64 {
        match self {
            RulePlace::First => -1,
            RulePlace::Last => 1,
        }
    }
}

/// An action an outcome rule took, on its way through the rule's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRun {
    pub tenant_id: String,
    pub action_id: String,
    pub machine_id: String,
    pub script: Vec<OutcomeStep>,
    /// The step the action is at (its status is that step's).
    pub step: u32,
    pub step_started: Timestamp,
    /// How often the action has been read at this step.
    pub step_polls: u32,
    /// When the step's duration ends; none if it waits for polls only or is the last.
    pub due_at: Option<Timestamp>,
}

/// A fault rule as stored: its tenant, place among the tenant's rules, and
/// counts: `seen` the calls it matched, `hits` those it took.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFaultRule {
    pub tenant_id: String,
    pub id: String,
    /// Rules apply in ascending position (then id).
    pub position: i64,
    pub rule: NewFaultRule,
    pub seen: i64,
    pub hits: i64,
}

impl StoredFaultRule {
    pub fn new(tenant_id: &str, rule: NewFaultRule) -> StoredFaultRule {
        StoredFaultRule {
            tenant_id: tenant_id.to_string(),
            id: crate::ids::new_guid(),
            position: 0,
            rule,
            seen: 0,
            hits: 0,
        }
    }

    pub fn wire(&self) -> FaultRule {
        FaultRule {
            id: self.id.clone(),
            rule: self.rule.clone(),
            hits: u64::try_from(self.hits).unwrap_or_default(),
            spent: crate::rules::faults::is_spent(self),
        }
    }
}

/// Which recorded calls a listing shows: all that match every field given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub caller: Option<String>,
    pub operation: Option<String>,
    pub method: Option<String>,
    pub status: Option<i64>,
    /// Made at or after this time.
    pub since: Option<Timestamp>,
}

/// One call of the MDE API, recorded while the tenant's recorder is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub tenant_id: String,
    /// Unique in the tenant; entries are ordered by `time`, then `id`.
    pub id: String,
    /// The server's time (a client's pace is measured in real time).
    pub time: Timestamp,
    pub caller: String,
    pub operation: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub request_body: Option<String>,
    pub status: i64,
    pub response_body: Option<String>,
    pub latency_ms: i64,
    /// The `Retry-After` the answer carried, in seconds.
    pub retry_after: Option<i64>,
    /// The token's permissions, and those of them the operation asked for.
    pub granted: Vec<String>,
    pub used: Vec<String>,
}

impl RecordedCall {
    pub fn wire(&self) -> palisade_contract::control::RecordedEntry {
        palisade_contract::control::RecordedEntry {
            time: self.time,
            caller: self.caller.clone(),
            operation: self.operation.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            status: u16::try_from(self.status).unwrap_or_default(),
            latency_ms: u64::try_from(self.latency_ms).unwrap_or_default(),
            request_body: self.request_body.clone(),
            response_body: self.response_body.clone(),
        }
    }
}
