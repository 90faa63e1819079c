//! `/api/indicators`: list, submit (create or update), import, delete and batch delete.

use crate::app::AppState;
use crate::http::auth::AuditTarget;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, OData, RequestBase};
use crate::http::odata::{collection, list, Entity, Selection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_contract::indicator::{
    ImportResult, IndicatorBatchDelete, IndicatorImport, IndicatorSubmission,
};
use palisade_contract::{ErrorBody, Indicator};
use palisade_domain::Caller;

/// List the indicators in force (OData `$filter` on application,
/// createdByDisplayName, expirationTime, generateAlert, title,
/// indicatorValue, indicatorType, creationTimeDateTimeUtc, createdBy,
/// action, severity). An app with Ti.ReadWrite alone sees those it made.
#[utoipa::path(get, path = "/api/indicators", tag = "Indicators",
    params(
        ("$filter" = Option<String>, Query, description = "e.g. action eq 'Block'"),
        ("$top" = Option<u32>, Query, description = "At most 10,000"),
        ("$skip" = Option<u64>, Query),
        ("$orderby" = Option<String>, Query),
        ("$count" = Option<bool>, Query),
        ("$select" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "A collection of Indicator (`value`)", body = [Indicator]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn list_indicators(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    OData(query): OData,
) -> ApiResult<Response> {
    let selection = Selection::resolve::<Indicator>(&query)?;
    let page = app.palisade.list_indicators(&caller, &query).await?;
    collection(&base, &query, selection, page)
}

/// Submit an indicator: created, or the one of the same type and value updated; 200 either way.
#[utoipa::path(post, path = "/api/indicators", tag = "Indicators",
    request_body = IndicatorSubmission,
    responses((status = 200, body = Indicator), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn submit_indicator(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    JsonBody(body): JsonBody<IndicatorSubmission>,
) -> ApiResult<Response> {
    let target = AuditTarget(body.indicator_value.clone().unwrap_or_default());
    let indicator = app.palisade.submit_indicator(&caller, body).await?;
    let mut response = Entity::ok(&base, indicator).into_response();
    response.extensions_mut().insert(target);
    Ok(response)
}

/// Submit up to 500 indicators: each created, updated or refused on its own (`isFailed`, `failureReason`).
#[utoipa::path(post, path = "/api/indicators/import", tag = "Indicators",
    request_body = IndicatorImport,
    responses(
        (status = 200, description = "One result per indicator (`value`)", body = [ImportResult]),
        (status = 400, body = ErrorBody),
    ))]
pub async fn import_indicators(
    State(app): State<AppState>,
    caller: Caller,
    base: RequestBase,
    JsonBody(body): JsonBody<IndicatorImport>,
) -> ApiResult<Response> {
    let results = app.palisade.import_indicators(&caller, body).await?;
    list(&base, results)
}

/// Delete an indicator: 204.
#[utoipa::path(delete, path = "/api/indicators/{id}", tag = "Indicators",
    params(("id" = String, Path, description = "Indicator id (a number)")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_indicator(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade.delete_indicator(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete up to 500 indicators (all, or none): 204.
#[utoipa::path(post, path = "/api/indicators/BatchDelete", tag = "Indicators",
    request_body = IndicatorBatchDelete,
    responses(
        (status = 204, description = "Every one deleted"),
        (status = 400, body = ErrorBody),
        (status = 404, description = "One is not there: none was deleted", body = ErrorBody),
    ))]
pub async fn batch_delete_indicators(
    State(app): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<IndicatorBatchDelete>,
) -> ApiResult<Response> {
    let target = AuditTarget(body.indicator_ids.clone().unwrap_or_default().join(","));
    app.palisade.batch_delete_indicators(&caller, body).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(target);
    Ok(response)
}
