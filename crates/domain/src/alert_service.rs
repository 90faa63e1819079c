//! The alert and indicator operations of [`Palisade`], for every front end
//! (the MDE API, the control plane, devices): the rules are in
//! `rules::alerts` and `rules::indicators`, the writes in `writes`.

use crate::caller::{Caller, Principal};
use crate::identity::AuditEntry;
use crate::query::ListQuery;
use crate::rules::alerts::{self, ByReference};
use crate::rules::indicators::{self, Submitter, MAX_BATCH_INDICATORS};
use crate::service::Palisade;
use crate::store::{MachineRef, Page};
use crate::writes::{AlertRaise, ChangeAlerts, DeleteIndicators, RaiseAlert, SubmitIndicators};
use palisade_contract::alert::{
    AlertBatchUpdate, AlertByReference, AlertUpdate, ALERT_EXPANDABLE, ALERT_QUERYABLE,
};
use palisade_contract::indicator::{
    ImportResult, IndicatorBatchDelete, IndicatorImport, IndicatorSubmission, INDICATOR_QUERYABLE,
};
use palisade_contract::odata::{CompareOp, Filter, Literal, ODataQuery};
use palisade_contract::{Alert, ErrorCode, Indicator, MdeError, Permission, Timestamp};

/// The property whose order lets a next link resume after the last alert
/// read rather than at an offset (its values are unique in a tenant).
const RESUME_PROPERTY: &str = "lastUpdateTime";

/// A page of alerts, and how a next link resumes after it.
pub struct AlertPage {
    pub page: Page<Alert>,
    /// The `$skiptoken` that reads on after this page, when the query is
    /// ordered by `lastUpdateTime`: later pages then hold every alert
    /// updated since, however many change meanwhile (an offset would skip
    /// one for each that moved from before it to after it).
    pub resume_token: Option<String>,
}

fn odata_error(message: impl Into<String>) -> MdeError {
    MdeError::new(ErrorCode::ODataError, message)
}

/// `query`'s `$expand`, which may name `evidence` only: whether it does.
fn expands_evidence(query: &ODataQuery) -> Result<bool, MdeError> {
    let mut evidence = false;
    for name in &query.expand {
        match ALERT_EXPANDABLE
            .iter()
            .find(|p| p.eq_ignore_ascii_case(name))
        {
            Some(_) => evidence = true,
            None => {
                return Err(odata_error(format!(
                "Could not find a navigation property named '{name}' to expand; alerts expand: {}.",
                ALERT_EXPANDABLE.join(", ")
            )))
            }
        }
    }
    Ok(evidence)
}

/// `condition` and `filter`, if there is one.
fn and(condition: Filter, filter: Option<Filter>) -> Filter {
    match filter {
        Some(filter) => Filter::And(Box::new(condition), Box::new(filter)),
        None => condition,
    }
}

fn compare(property: &str, op: CompareOp, value: Literal) -> Filter {
    Filter::Compare {
        property: property.into(),
        op,
        value,
    }
}

/// The app's client id, when it may change only the indicators it made
/// (`Ti.ReadWrite` without `Ti.ReadWrite.All`).
fn indicator_owner(caller: &Caller) -> Option<String> {
    match &caller.principal {
        Principal::App { client_id, .. }
            if !caller.permissions.contains(&Permission::TiReadWriteAll) =>
        {
            Some(client_id.clone())
        }
        _ => None,
    }
}

/// The request's audit entry, written with its change, which answers `result`.
fn audit_entry(
    caller: &Caller,
    now: Timestamp,
    result: u16,
    target: impl FnOnce() -> String,
) -> Option<AuditEntry> {
    caller.audit.as_ref().map(|audit| AuditEntry {
        result,
        ..audit.entry(now, target)
    })
}

fn submitter(caller: &Caller) -> Submitter {
    match &caller.principal {
        Principal::App {
            client_id, name, ..
        } => Submitter {
            id: client_id.clone(),
            name: name.clone(),
            is_app: true,
        },
        Principal::User { upn, .. } => Submitter {
            id: upn.clone(),
            name: upn.clone(),
            is_app: false,
        },
    }
}

impl Palisade {
    /// Alerts, newest first unless ordered otherwise; with `machine`, that
    /// machine's (404 for a machine the caller does not see). Evidence only
    /// with `$expand=evidence`.
    pub async fn list_alerts(
        &self,
        caller: &Caller,
        machine: Option<&str>,
        query: &ODataQuery,
    ) -> Result<AlertPage, MdeError> {
        let evidence = expands_evidence(query)?;
        let plain = ODataQuery {
            expand: vec![],
            skip_token: None,
            ..query.clone()
        };
        let mut list = ListQuery::resolve(&plain, ALERT_QUERYABLE)?;
        let resumable = list
            .order_by
            .first()
            .filter(|o| o.property == RESUME_PROPERTY)
            .map(|o| o.descending);
        if let Some(token) = &query.skip_token {
            let (Some(descending), Ok(ticks)) = (resumable, token.parse::<i64>()) else {
                return Err(odata_error(format!(
                    "The $skiptoken '{token}' is not one this server gave for this query."
                )));
            };
            let op = if descending {
                CompareOp::Lt
            } else {
                CompareOp::Gt
            };
            let after = Timestamp::from_ticks(ticks).to_datetime();
            list.filter = Some(and(
                compare(RESUME_PROPERTY, op, Literal::DateTime(after)),
                list.filter.take(),
            ));
        }
        if let Some(key) = machine {
            let id = self.get_machine(caller, key).await?.id();
            list.filter = Some(and(
                compare("machineId", CompareOp::Eq, Literal::String(id)),
                list.filter.take(),
            ));
        }
        let visibility = self.visibility(caller);
        let page = self.store.alerts(&visibility, &list, evidence).await?;
        let resume_token = resumable
            .and(page.items.last())
            .map(|last| last.last_update_time.ticks().to_string());
        Ok(AlertPage { page, resume_token })
    }

    pub async fn get_alert(&self, caller: &Caller, id: &str) -> Result<Alert, MdeError> {
        let visibility = self.visibility(caller);
        self.store
            .alert(&visibility, id)
            .await?
            .ok_or_else(|| MdeError::alert_not_found(id))
    }

    /// The machine of alert `id` (404 if either is not there for the caller).
    pub async fn alert_machine(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<palisade_contract::SerializedMachine, MdeError> {
        let alert = self.get_alert(caller, id).await?;
        self.get_machine(caller, &alert.machine_id).await
    }

    /// Applies `update` to each of `ids` (all, or none), as the caller.
    async fn change_alerts(
        &self,
        caller: &Caller,
        ids: Vec<String>,
        update: AlertUpdate,
    ) -> Result<Vec<Alert>, MdeError> {
        alerts::validate_update(&update)?;
        let now = self.now_in(&caller.tenant.id);
        let requestor = caller.requestor().to_string();
        let audit = audit_entry(caller, now, 200, || ids.join(","));
        let write = ChangeAlerts {
            visibility: caller.visibility(now),
            ids,
            change: Some(Box::new(move |alert| {
                alerts::apply(alert, &update, &requestor, now)
            })),
            audit,
            now,
        };
        let changed = self.store.change_alerts(write).await?;
        if let Some(audit) = &caller.audit {
            audit.mark_written();
        }
        Ok(changed)
    }

    pub async fn update_alert(
        &self,
        caller: &Caller,
        id: &str,
        update: AlertUpdate,
    ) -> Result<Alert, MdeError> {
        let mut changed = self
            .change_alerts(caller, vec![id.to_string()], update)
            .await?;
        changed
            .pop()
            .ok_or_else(|| MdeError::internal("the store did not return the alert"))
    }

    pub async fn batch_update_alerts(
        &self,
        caller: &Caller,
        batch: AlertBatchUpdate,
    ) -> Result<(), MdeError> {
        let ids = alerts::batch_ids(&batch)?;
        self.change_alerts(caller, ids, batch.update).await?;
        Ok(())
    }

    /// Raises an alert on a machine the caller sees, as `raise` makes it
    /// (merged into the open alert titled `merge_title`, if there is one).
    async fn raise(
        &self,
        caller: Option<&Caller>,
        tenant_id: &str,
        machine: &str,
        merge_title: Option<String>,
        now: Timestamp,
        raise: AlertRaise,
    ) -> Result<Alert, MdeError> {
        let (visibility, audit) = match caller {
            Some(caller) => (
                caller.visibility(now),
                audit_entry(caller, now, 200, || machine.to_string()),
            ),
            None => (crate::caller::Visibility::whole_tenant(tenant_id), None),
        };
        let write = RaiseAlert {
            visibility,
            machine: MachineRef::new(machine),
            merge_title,
            raise: Some(raise),
            audit,
            now,
        };
        let alert = self.store.raise_alert(write).await?;
        if let Some(audit) = caller.and_then(|c| c.audit.as_ref()) {
            audit.mark_written();
        }
        Ok(alert)
    }

    pub async fn create_alert_by_reference(
        &self,
        caller: &Caller,
        body: AlertByReference,
    ) -> Result<Alert, MdeError> {
        let reference: ByReference = alerts::by_reference(body)?;
        let tenant_id = caller.tenant.id.clone();
        let now = self.now_in(&tenant_id);
        let machine = reference.machine_id.clone();
        let title = reference.title.clone();
        let tenant = tenant_id.clone();
        let raise: AlertRaise = Box::new(move |machine, open| {
            alerts::raise_by_reference(machine, &tenant, &reference, open, now)
        });
        self.raise(Some(caller), &tenant_id, &machine, Some(title), now, raise)
            .await
    }

    /// Raises `alert` (a partial MDE alert: its machine, and what it gives
    /// of the rest) on its machine, whatever its device group: the control
    /// plane's and the devices' way in.
    pub async fn raise_alert(
        &self,
        tenant_id: &str,
        alert: serde_json::Value,
    ) -> Result<Alert, MdeError> {
        self.raise_partial_alert(tenant_id, alerts::Partial::read(alert)?)
            .await
    }

    /// [`Self::raise_alert`], of an alert already read.
    pub async fn raise_partial_alert(
        &self,
        tenant_id: &str,
        partial: alerts::Partial,
    ) -> Result<Alert, MdeError> {
        self.existing_tenant(tenant_id).await?;
        let machine = partial.machine_id.clone();
        let tenant = tenant_id.to_string();
        let now = self.now_in(tenant_id);
        let raise: AlertRaise = Box::new(move |machine, _| partial.alert(machine, &tenant, now));
        self.raise(None, tenant_id, &machine, None, now, raise)
            .await
    }

    /// The indicators in force the caller may see.
    pub async fn list_indicators(
        &self,
        caller: &Caller,
        query: &ODataQuery,
    ) -> Result<Page<Indicator>, MdeError> {
        let query = ListQuery::resolve(query, INDICATOR_QUERYABLE)?;
        let tenant_id = &caller.tenant.id;
        let owner = indicator_owner(caller);
        let now = self.now_in(tenant_id);
        Ok(self
            .store
            .indicators(tenant_id, owner.as_deref(), now, &query)
            .await?)
    }

    /// Submits indicators (each checked alone), as the caller.
    async fn submit(
        &self,
        caller: &Caller,
        bodies: Vec<Result<IndicatorSubmission, MdeError>>,
    ) -> Result<Vec<Result<Indicator, MdeError>>, MdeError> {
        let tenant_id = caller.tenant.id.clone();
        let now = self.now_in(&tenant_id);
        let values: Vec<String> = bodies
            .iter()
            .flatten()
            .filter_map(|body| body.indicator_value.clone())
            .collect();
        let submissions = bodies
            .into_iter()
            .map(|body| body.and_then(|body| indicators::validate(body, now)))
            .collect();
        let audit = audit_entry(caller, now, 200, || values.join(","));
        let write = SubmitIndicators {
            tenant_id,
            submissions,
            submitter: submitter(caller),
            owner: indicator_owner(caller),
            audit,
            now,
        };
        let results = self.store.submit_indicators(write).await?;
        if let Some(audit) = &caller.audit {
            audit.mark_written();
        }
        Ok(results)
    }

    /// `POST /api/indicators`: creates, or updates the one of the same type and value.
    pub async fn submit_indicator(
        &self,
        caller: &Caller,
        body: IndicatorSubmission,
    ) -> Result<Indicator, MdeError> {
        let mut results = self.submit(caller, vec![Ok(body)]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(MdeError::internal("the store did not return the indicator")))
    }

    /// `POST /api/indicators/import`: each item taken or refused on its own.
    pub async fn import_indicators(
        &self,
        caller: &Caller,
        import: IndicatorImport,
    ) -> Result<Vec<ImportResult>, MdeError> {
        let items = import
            .indicators
            .ok_or_else(|| MdeError::missing("Indicators"))?;
        if items.is_empty() {
            return Err(MdeError::new(
                ErrorCode::InvalidRequestBody,
                "Indicators must hold at least one indicator.",
            ));
        }
        if items.len() > MAX_BATCH_INDICATORS {
            return Err(batch_too_large(items.len()));
        }
        let values: Vec<Option<String>> = items
            .iter()
            .map(|item| {
                item.get("indicatorValue")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .collect();
        let bodies = items
            .into_iter()
            .map(|item| {
                serde_json::from_value::<IndicatorSubmission>(item)
                    .map_err(|e| MdeError::new(ErrorCode::InvalidRequestBody, e.to_string()))
            })
            .collect();
        let results = self.submit(caller, bodies).await?;
        Ok(results
            .into_iter()
            .zip(values)
            .map(|(result, value)| match result {
                Ok(indicator) => ImportResult {
                    id: Some(indicator.id),
                    indicator: Some(indicator.indicator_value),
                    is_failed: false,
                    failure_reason: None,
                },
                Err(error) => ImportResult {
                    id: None,
                    indicator: value,
                    is_failed: true,
                    failure_reason: Some(error.message),
                },
            })
            .collect())
    }

    async fn delete(&self, caller: &Caller, ids: Vec<String>) -> Result<(), MdeError> {
        let now = self.now_in(&caller.tenant.id);
        let audit = audit_entry(caller, now, 204, || ids.join(","));
        let write = DeleteIndicators {
            tenant_id: caller.tenant.id.clone(),
            ids,
            owner: indicator_owner(caller),
            audit,
        };
        self.store.delete_indicators(write).await?;
        if let Some(audit) = &caller.audit {
            audit.mark_written();
        }
        Ok(())
    }

    pub async fn delete_indicator(&self, caller: &Caller, id: &str) -> Result<(), MdeError> {
        if id.parse::<i64>().is_err() {
            return Err(MdeError::indicator_not_found(id));
        }
        self.delete(caller, vec![id.to_string()]).await
    }

    pub async fn batch_delete_indicators(
        &self,
        caller: &Caller,
        body: IndicatorBatchDelete,
    ) -> Result<(), MdeError> {
        let ids = body
            .indicator_ids
            .ok_or_else(|| MdeError::missing("IndicatorIds"))?;
        if ids.is_empty() {
            return Err(MdeError::new(
                ErrorCode::InvalidRequestBody,
                "IndicatorIds must name at least one indicator.",
            ));
        }
        if ids.len() > MAX_BATCH_INDICATORS {
            return Err(batch_too_large(ids.len()));
        }
        self.delete(caller, ids).await
    }
}

fn batch_too_large(received: usize) -> MdeError {
    MdeError::new(
        ErrorCode::MaximumBatchSizeExceeded,
        format!(
            "Maximum batch size exceeded. Received: {received}, allowed: {MAX_BATCH_INDICATORS}."
        ),
    )
}
