//! `/_palisade/v1/tenants/{tenantId}/faults`: the tenant's fault rules, in
//! the order they apply; and how a call they take is answered.

use super::outcomes::Placement;
use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palisade_contract::control::{FaultResponse, FaultRule, NewFaultRule};
use palisade_contract::ErrorBody;
use palisade_domain::control::StoredFaultRule;
use palisade_domain::rules::faults;
use serde::Serialize;
use utoipa::ToSchema;

/// `{"value": [rule...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultRules {
    pub value: Vec<FaultRule>,
}

/// The tenant's fault rules, in the order they apply (the first that takes a call wins).
#[utoipa::path(get, path = "/tenants/{tenantId}/faults", tag = "Faults",
    operation_id = "ListFaultRules",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = FaultRules),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_fault_rules(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<FaultRules>> {
    let value = app.palisade.fault_rules(&tenant_id).await?;
    Ok(Json(FaultRules { value }))
}

/// Adds a rule, last (or first with `?position=0`); answers it with its id.
/// It applies to the next call on this node, and within a second on the others.
#[utoipa::path(post, path = "/tenants/{tenantId}/faults", tag = "Faults",
    operation_id = "AddFaultRule",
    params(("tenantId" = String, Path), Placement),
    request_body = NewFaultRule,
    responses(
        (status = 201, body = FaultRule),
        (status = 400, description = "The rule is not valid: the message names the field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn add_fault_rule(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    Query(placement): Query<Placement>,
    JsonBody(rule): JsonBody<NewFaultRule>,
) -> ApiResult<impl IntoResponse> {
    let place = placement.place()?;
    let rule = app.palisade.add_fault_rule(&tenant_id, rule, place).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Removes every fault rule of the tenant.
#[utoipa::path(delete, path = "/tenants/{tenantId}/faults", tag = "Faults",
    operation_id = "DeleteFaultRules",
    params(("tenantId" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn delete_fault_rules(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade.delete_fault_rules(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one fault rule.
#[utoipa::path(delete, path = "/tenants/{tenantId}/faults/{id}", tag = "Faults",
    operation_id = "DeleteFaultRule",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant or rule", body = ErrorBody),
    ))]
pub async fn delete_fault_rule(
    State(app): State<AppState>,
    Path((tenant_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.palisade.delete_fault_rule(&tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Carries out what a fault rule that took a call says: waits its latency,
/// then answers its response if it has one (built by `respond`: the MDE
/// API's or the token service's error shape), or lets the call go on.
pub async fn inflict(
    rule: &StoredFaultRule,
    respond: impl FnOnce(&FaultResponse) -> Response,
) -> Option<Response> {
    if let Some(latency) = rule.rule.latency {
        tokio::time::sleep(latency.0).await;
    }
    let response = rule.rule.response.as_ref()?;
    let mut answered = respond(response);
    if let Some(seconds) = response.retry_after {
        answered
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    Some(answered)
}

/// A fault's answer from the MDE API (a 401 with the challenge a real one carries).
pub fn mde_answer(response: &FaultResponse) -> Response {
    let mut answer = ApiError(faults::answer(response)).into_response();
    if response.status == 401 {
        answer.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    answer
}
