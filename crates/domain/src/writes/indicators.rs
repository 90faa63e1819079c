//! The writes of indicators: submissions (one, or an import's many, each
//! taken or refused on its own, in one transaction) and deletions (all of
//! them, or none).

use super::{Counter, Transaction, Write};
use crate::identity::AuditEntry;
use crate::rules::indicators::{self, Submission, Submitter, MAX_ACTIVE_INDICATORS};
use crate::store::WriteError;
use palisade_contract::{ErrorCode, Indicator, MdeError, Timestamp};
use std::collections::HashMap;

/// `Store::submit_indicators`.
pub struct SubmitIndicators {
    pub tenant_id: String,
    /// Each already checked (`rules::indicators::validate`), or refused.
    pub submissions: Vec<Result<Submission, MdeError>>,
    pub submitter: Submitter,
    /// Set for an app with `Ti.ReadWrite` alone: the indicators it may
    /// change are those it made.
    pub owner: Option<String>,
    pub audit: Option<AuditEntry>,
    pub now: Timestamp,
}

impl Write for SubmitIndicators {
    type Output = Vec<Result<Indicator, MdeError>>;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<Self::Output, WriteError> {
        let tenant_id = self.tenant_id.clone();
        // First, so that the tenant's submissions run one after another:
        // each sees the rows of the one before (a value submitted twice at
        // once is one indicator) and counts them against the cap.
        tx.reserve(&tenant_id, Counter::IndicatorId, 0, 0).await?;
        let groups: HashMap<String, i64> = tx
            .device_groups(&tenant_id)
            .await?
            .into_iter()
            .map(|g| (g.name, g.id))
            .collect();
        let mut keys: Vec<String> = self
            .submissions
            .iter()
            .flatten()
            .map(|s| s.key.clone())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // By type and key; an import that names one twice updates it twice.
        let mut stored: HashMap<(&'static str, String), Indicator> = HashMap::new();
        for indicator in tx.indicators_with_keys(&tenant_id, &keys).await? {
            let key = indicators::value_key(indicator.indicator_type, &indicator.indicator_value)?;
            stored.insert((indicator.indicator_type.as_str(), key), indicator);
        }
        let mut active = tx.active_indicator_count(&tenant_id, self.now).await?;
        let mut saved: Vec<(Indicator, String)> = Vec::new();
        let mut results = Vec::with_capacity(self.submissions.len());
        for submission in &self.submissions {
            let submission = match submission {
                Ok(submission) => submission,
                Err(error) => {
                    results.push(Err(error.clone()));
                    continue;
                }
            };
            let slot = (submission.indicator_type.as_str(), submission.key.clone());
            let before = stored.get(&slot);
            let outcome = self.decide(submission, before, &groups, active);
            let indicator = match outcome {
                Ok(indicator) => indicator,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            if !before.is_some_and(|b| indicators::is_active(b, self.now)) {
                active += 1;
            }
            let indicator = match indicator {
                Some(indicator) => indicator,
                None => {
                    let id = tx.reserve(&tenant_id, Counter::IndicatorId, 1, 1).await?;
                    indicators::indicator(
                        submission,
                        None,
                        || id.to_string(),
                        group_ids(submission, &groups),
                        &self.submitter,
                        self.now,
                    )
                }
            };
            stored.insert(slot, indicator.clone());
            saved.push((indicator.clone(), submission.key.clone()));
            results.push(Ok(indicator));
        }
        // An indicator submitted twice is saved as it ended.
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, (indicator, _)) in saved.iter().enumerate() {
            last.insert(indicator.id.clone(), i);
        }
        let saved: Vec<(Indicator, String)> = saved
            .into_iter()
            .enumerate()
            .filter(|(i, (indicator, _))| last.get(&indicator.id) == Some(i))
            .map(|(_, row)| row)
            .collect();
        if !saved.is_empty() {
            tx.save_indicators(&tenant_id, &saved).await?;
        }
        if let Some(entry) = &self.audit {
            tx.append_audit(entry, &[]).await?;
        }
        Ok(results)
    }
    fn may_retry(&self) -> bool {
        true
    }
}

/// The ids of the device groups a submission names.
fn group_ids(submission: &Submission, groups: &HashMap<String, i64>) -> Vec<String> {
    let names = submission
        .body
        .rbac_group_names
        .as_deref()
        .unwrap_or_default();
    names
        .iter()
        .filter_map(|name| groups.get(name).map(|id| id.to_string()))
        .collect()
}

impl SubmitIndicators {
    /// What `submission` does to `before` (the stored indicator of its
    /// type and value): `Some` the indicator updated, `None` a new one to
    /// make, or why it is refused.
    fn decide(
        &self,
        submission: &Submission,
        before: Option<&Indicator>,
        groups: &HashMap<String, i64>,
        active: u64,
    ) -> Result<Option<Indicator>, MdeError> {
        let names = submission
            .body
            .rbac_group_names
            .as_deref()
            .unwrap_or_default();
        if let Some(unknown) = names.iter().find(|name| !groups.contains_key(*name)) {
            return Err(MdeError::new(
                ErrorCode::InvalidInput,
                format!("rbacGroupNames: there is no device group named '{unknown}'."),
            ));
        }
        if let (Some(owner), Some(before)) = (&self.owner, before) {
            if before.created_by != *owner {
                return Err(MdeError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "Indicator {} of this value was made by another application; changing it needs Ti.ReadWrite.All.",
                        before.id
                    ),
                ));
            }
        }
        let revived = !before.is_some_and(|b| indicators::is_active(b, self.now));
        if revived && active >= MAX_ACTIVE_INDICATORS {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                format!(
                    "The tenant has {MAX_ACTIVE_INDICATORS} active indicators, the most it may have; delete some first."
                ),
            ));
        }
        Ok(before.map(|before| {
            indicators::indicator(
                submission,
                Some(before),
                String::new,
                group_ids(submission, groups),
                &self.submitter,
                self.now,
            )
        }))
    }
}

/// `Store::delete_indicators`: every one of `ids`, or (one is not there,
/// or not the owner's) none.
pub struct DeleteIndicators {
    pub tenant_id: String,
    pub ids: Vec<String>,
    pub owner: Option<String>,
    pub audit: Option<AuditEntry>,
}

impl Write for DeleteIndicators {
    type Output = ();
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<(), WriteError> {
        let mut numbers = Vec::with_capacity(self.ids.len());
        for id in &self.ids {
            let number: i64 = id.parse().map_err(|_| {
                MdeError::new(
                    ErrorCode::InvalidInput,
                    format!("Indicator id '{id}' is not valid: ids are numbers."),
                )
            })?;
            numbers.push(number);
        }
        numbers.sort_unstable();
        numbers.dedup();
        let found = tx.indicators_with_ids(&self.tenant_id, &numbers).await?;
        let visible = |indicator: &Indicator| {
            self.owner
                .as_ref()
                .is_none_or(|owner| indicator.created_by == *owner)
        };
        // As written: "007" is not indicator 7.
        let is_there = |id: &String| found.iter().any(|i| i.id == *id && visible(i));
        if let Some(missing) = self.ids.iter().find(|id| !is_there(id)) {
            return Err(MdeError::indicator_not_found(missing).into());
        }
        tx.delete_indicators(&self.tenant_id, &numbers).await?;
        if let Some(entry) = &self.audit {
            tx.append_audit(entry, &[]).await?;
        }
        Ok(())
    }
    fn may_retry(&self) -> bool {
        true
    }
}
