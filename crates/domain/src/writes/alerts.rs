//! The writes of alerts. Every alert written takes its `lastUpdateTime`
//! from the tenant's counter (`Counter::AlertUpdate`): later than any before
//! it, unique in the tenant, and taken under the counter's lock, so that
//! alert changes commit in the order of their times. A reader of
//! `lastUpdateTime gt T` thus never finds, later, an alert committed with a
//! time at or before one it has already read.

use super::{decision, Counter, Transaction, Write};
use crate::caller::Visibility;
use crate::identity::AuditEntry;
use crate::store::{MachineRef, StoreError, WriteError};
use palisade_contract::{Alert, Machine, MdeError, Timestamp};

/// Decides, from an alert as stored, what it becomes.
pub type AlertChange = Box<dyn FnMut(&Alert) -> Alert + Send>;

/// Reserves `count` update times of the tenant, at least `now`: the first.
/// Reserved before the write decides anything (see `batch`'s lock order:
/// a write may give way, and be run again, only until it has decided).
async fn reserve_update_times(
    tx: &mut impl Transaction,
    tenant_id: &str,
    count: usize,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let count = i64::try_from(count.max(1)).unwrap_or(i64::MAX);
    tx.reserve(tenant_id, Counter::AlertUpdate, now.ticks(), count)
        .await
}

/// Gives each of `alerts`, in order, the next of the times reserved from
/// `first` (as many as there are alerts, or more: unused ones are gaps).
fn stamp(alerts: &mut [Alert], first: i64) {
    for (alert, ticks) in alerts.iter_mut().zip(first..) {
        alert.last_update_time = Timestamp::from_ticks(ticks);
    }
}

/// Writes the request's audit entry about `machine_ids`, if it has one.
async fn audit(
    tx: &mut impl Transaction,
    audit: &Option<AuditEntry>,
    machine_ids: &[String],
) -> Result<(), StoreError> {
    if let Some(entry) = audit {
        tx.append_audit(entry, machine_ids).await?;
    }
    Ok(())
}

/// `Store::change_alerts`: all of `ids` change, or (one is not there for
/// the caller) none. An alert its change leaves as it was keeps its time.
pub struct ChangeAlerts {
    pub visibility: Visibility,
    pub ids: Vec<String>,
    pub change: Option<AlertChange>,
    pub audit: Option<AuditEntry>,
    pub now: Timestamp,
}

impl Write for ChangeAlerts {
    type Output = Vec<Alert>;
    async fn attempt<T: Transaction + Send>(
        &mut self,
        tx: &mut T,
    ) -> Result<Vec<Alert>, WriteError> {
        let mut ids = self.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let stored = tx.alerts(&self.visibility, &ids).await?;
        if let Some(missing) = self
            .ids
            .iter()
            .find(|id| !stored.iter().any(|a| &a.id == *id))
        {
            return Err(MdeError::alert_not_found(missing).into());
        }
        let tenant_id = &self.visibility.tenant_id;
        let first = reserve_update_times(tx, tenant_id, stored.len(), self.now).await?;
        let mut change = decision(&mut self.change)?;
        let mut changed = Vec::new();
        let mut answers = Vec::with_capacity(stored.len());
        for alert in &stored {
            let after = change(alert);
            if after == *alert {
                answers.push(after);
            } else {
                changed.push(after);
            }
        }
        stamp(&mut changed, first);
        if !changed.is_empty() {
            tx.save_alerts(tenant_id, &changed).await?;
        }
        let mut machine_ids: Vec<String> = stored.iter().map(|a| a.machine_id.clone()).collect();
        machine_ids.sort_unstable();
        machine_ids.dedup();
        audit(tx, &self.audit, &machine_ids).await?;
        answers.extend(changed);
        // In the order asked for.
        let order = |alert: &Alert| self.ids.iter().position(|id| *id == alert.id);
        answers.sort_by_key(order);
        Ok(answers)
    }
    fn may_retry(&self) -> bool {
        self.change.is_some()
    }
}

/// Decides the alert raised on a machine, from it and (when `merge_title`
/// is set) its open alert of that title.
pub type AlertRaise = Box<dyn FnOnce(&Machine, Option<&Alert>) -> Alert + Send>;

/// `Store::raise_alert`: an alert on the machine `machine` names among
/// those `visibility` shows, new (with the tenant's next incident id) or
/// merged into its open alert titled `merge_title`.
pub struct RaiseAlert {
    pub visibility: Visibility,
    pub machine: MachineRef,
    pub merge_title: Option<String>,
    pub raise: Option<AlertRaise>,
    pub audit: Option<AuditEntry>,
    pub now: Timestamp,
}

impl Write for RaiseAlert {
    type Output = Alert;
    async fn attempt<T: Transaction + Send>(&mut self, tx: &mut T) -> Result<Alert, WriteError> {
        let mut machine = None;
        for key in self.machine.keys() {
            machine = tx.machine(&self.visibility, key, true).await?;
            if machine.is_some() {
                break;
            }
        }
        let machine =
            machine.ok_or_else(|| WriteError::MachineNotFound(self.machine.given().to_string()))?;
        let tenant_id = self.visibility.tenant_id.clone();
        let open = match &self.merge_title {
            Some(title) => tx.open_alert_titled(&tenant_id, &machine.id, title).await?,
            None => None,
        };
        let incident = match open {
            Some(_) => None,
            None => Some(tx.reserve(&tenant_id, Counter::IncidentId, 1, 1).await?),
        };
        let first = reserve_update_times(tx, &tenant_id, 1, self.now).await?;
        let mut alert = decision(&mut self.raise)?(&machine, open.as_ref());
        alert.incident_id = alert.incident_id.or(incident);
        let mut alerts = [alert];
        stamp(&mut alerts, first);
        tx.save_alerts(&tenant_id, &alerts).await?;
        audit(tx, &self.audit, std::slice::from_ref(&machine.id)).await?;
        let [alert] = alerts;
        Ok(alert)
    }
    fn may_retry(&self) -> bool {
        self.raise.is_some()
    }
}
