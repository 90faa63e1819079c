//! The emulator control plane's state (`control-plane.md`): the operator
//! credential that guards it, and each tenant's outcome rules.

use palisade_contract::control::{NewOutcomeRule, OutcomeMatch, OutcomeRule, OutcomeStep};
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

/// Where `POST .../outcomes` puts a new rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePlace {
    First,
    Last,
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
