//! `/api/alerts`: list, get, update, batch update, create by reference,
//! and an alert's machine; `/api/machines/{id}/alerts`.

use crate::app::AppState;
use crate::http::auth::AuditTarget;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, OData, RequestBase};
use crate::http::odata::{collection_resuming, Entity, Resume, Selection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_contract::alert::{AlertBatchUpdate, AlertByReference, AlertUpdate};
use palisade_contract::odata::ODataQuery;
use palisade_contract::{Alert, ErrorBody, Machine, SerializedMachine};
use palisade_domain::Caller;

/// List alerts, newest first (OData `$filter` on alertCreationTime,
/// lastUpdateTime, incidentId, investigationId, id, assignedTo,
/// detectionSource, lastEventTime, status, severity, category, machineId;
/// `$expand=evidence`). Ordered by lastUpdateTime, the next link resumes
/// after the last alert read (`$skiptoken`), so that incremental polling
/// misses none however many change meanwhile.
#[utoipa::path(get, path = "/api/alerts", tag = "Alerts",
    params(
        ("$filter" = Option<String>, Query, description = "e.g. lastUpdateTime gt 2024-01-01T00:00:00Z"),
        ("$top" = Option<u32>, Query, description = "At most 10,000; without it, pages of 10,000 (or the Prefer header's odata.maxpagesize) with @odata.nextLink"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query, description = "e.g. lastUpdateTime asc"),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
        ("$expand" = Option<String>, Query, description = "evidence"),
        ("$skiptoken" = Option<String>, Query, description = "As a next link gives it"),
    ),
    responses(
        (status = 200, description = "A collection of Alert (`value`)", body = [Alert]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn list_alerts(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    OData(query): OData,
) -> ApiResult<Response> {
    alert_collection(app, caller, base, None, query).await
}

/// List one machine's alerts, with the OData options of `/api/alerts`.
#[utoipa::path(get, path = "/api/machines/{id}/alerts", tag = "Alerts",
    params(
        ("id" = String, Path, description = "Machine id, Entra device id or computerDnsName"),
        ("$filter" = Option<String>, Query, description = "OData filter"),
        ("$top" = Option<u32>, Query, description = "At most 10,000"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
        ("$expand" = Option<String>, Query, description = "evidence"),
    ),
    responses(
        (status = 200, description = "A collection of Alert (`value`)", body = [Alert]),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such machine", body = ErrorBody),
    ))]
pub async fn list_machine_alerts(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    OData(query): OData,
) -> ApiResult<Response> {
    alert_collection(app, caller, base, Some(&id), query).await
}

async fn alert_collection(
    app: AppState,
    caller: Caller,
    base: RequestBase,
    machine: Option<&str>,
    query: ODataQuery,
) -> ApiResult<Response> {
    let selection = Selection::resolve::<Alert>(&query)?;
    let listed = app.palisade.list_alerts(&caller, machine, &query).await?;
    let resume = listed.resume_token.map_or(Resume::Skip, Resume::Token);
    collection_resuming(&base, &query, selection, listed.page, resume)
}

/// Get one alert, with its evidence.
#[utoipa::path(get, path = "/api/alerts/{id}", tag = "Alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses((status = 200, body = Alert), (status = 404, body = ErrorBody)))]
pub async fn get_alert(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Entity<Alert>> {
    let alert = app.palisade.get_alert(&caller, &id).await?;
    Ok(Entity::ok(&base, alert))
}

/// Update an alert's status, assignedTo, classification or determination, or add a comment.
#[utoipa::path(patch, path = "/api/alerts/{id}", tag = "Alerts",
    params(("id" = String, Path, description = "Alert id")),
    request_body = AlertUpdate,
    responses((status = 200, body = Alert), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_alert(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
    JsonBody(update): JsonBody<AlertUpdate>,
) -> ApiResult<Entity<Alert>> {
    let alert = app.palisade.update_alert(&caller, &id, update).await?;
    Ok(Entity::ok(&base, alert))
}

/// Update up to 500 alerts at once (all, or none): 200 with an empty body.
#[utoipa::path(post, path = "/api/alerts/batchUpdate", tag = "Alerts",
    request_body = AlertBatchUpdate,
    responses(
        (status = 200, description = "Every alert updated"),
        (status = 400, body = ErrorBody),
        (status = 404, description = "An alert is not there: none was updated", body = ErrorBody),
    ))]
pub async fn batch_update_alerts(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(batch): JsonBody<AlertBatchUpdate>,
) -> ApiResult<Response> {
    let target = AuditTarget(batch.alert_ids.clone().unwrap_or_default().join(","));
    app.palisade.batch_update_alerts(&caller, batch).await?;
    let mut response = StatusCode::OK.into_response();
    response.extensions_mut().insert(target);
    Ok(response)
}

/// Raise an alert on a machine from an event (or merge it into the
/// machine's open alert of the same title): 200 with the alert.
#[utoipa::path(post, path = "/api/alerts/CreateAlertByReference", tag = "Alerts",
    request_body = AlertByReference,
    responses(
        (status = 200, body = Alert),
        (status = 400, body = ErrorBody),
        (status = 404, description = "No such machine (or one the caller does not see)", body = ErrorBody),
    ))]
pub async fn create_alert_by_reference(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    JsonBody(body): JsonBody<AlertByReference>,
) -> ApiResult<Response> {
    let target = AuditTarget(body.machine_id.clone().unwrap_or_default());
    let alert = app
        .palisade
        .create_alert_by_reference(&caller, body)
        .await?;
    let mut response = Entity::ok(&base, alert).into_response();
    response.extensions_mut().insert(target);
    Ok(response)
}

/// The machine an alert is on.
#[utoipa::path(get, path = "/api/alerts/{id}/machine", tag = "Alerts",
    params(("id" = String, Path, description = "Alert id")),
    responses((status = 200, body = Machine), (status = 404, body = ErrorBody)))]
pub async fn get_alert_machine(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    Path(id): Path<String>,
) -> ApiResult<Entity<SerializedMachine>> {
    let machine = app.palisade.alert_machine(&caller, &id).await?;
    Ok(Entity::ok(&base, machine))
}
