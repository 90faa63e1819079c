//! `/_palisade/v1/tenants/{tenantId}/outcomes`: the tenant's outcome rules,
//! in the order they apply.

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::JsonBody;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use palisade_contract::control::{NewOutcomeRule, OutcomeRule};
use palisade_contract::{ErrorBody, MdeError};
use palisade_domain::control::RulePlace;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `{"value": [rule...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeRules {
    pub value: Vec<OutcomeRule>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Placement {
    /// `0` puts the rule first; without it the rule goes last.
    position: Option<String>,
}

impl Placement {
    pub fn place(&self) -> Result<RulePlace, MdeError> {
        match self.position.as_deref() {
            None => Ok(RulePlace::Last),
            Some("0") => Ok(RulePlace::First),
            Some(other) => Err(MdeError::invalid_input(format!(
                "Invalid input position: '{other}'; 0 puts the rule first, and without position it goes last."
            ))),
        }
    }
}

/// The tenant's outcome rules, in the order they apply (the first that matches takes an action).
#[utoipa::path(get, path = "/tenants/{tenantId}/outcomes", tag = "Outcomes",
    operation_id = "ListOutcomeRules",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = OutcomeRules),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_outcome_rules(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<OutcomeRules>> {
    let value = app.palisade.outcome_rules(&tenant_id).await?;
    Ok(Json(OutcomeRules { value }))
}

/// Adds a rule, last (or first with `?position=0`); answers it with its id.
#[utoipa::path(post, path = "/tenants/{tenantId}/outcomes", tag = "Outcomes",
    operation_id = "AddOutcomeRule",
    params(("tenantId" = String, Path), Placement),
    request_body = NewOutcomeRule,
    responses(
        (status = 201, body = OutcomeRule),
        (status = 400, description = "The rule is not valid: the message names the field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn add_outcome_rule(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    Query(placement): Query<Placement>,
    JsonBody(rule): JsonBody<NewOutcomeRule>,
) -> ApiResult<impl IntoResponse> {
    let place = placement.place()?;
    let rule = app
        .palisade
        .add_outcome_rule(&tenant_id, rule, place)
        .await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// Removes every outcome rule of the tenant.
#[utoipa::path(delete, path = "/tenants/{tenantId}/outcomes", tag = "Outcomes",
    operation_id = "DeleteOutcomeRules",
    params(("tenantId" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn delete_outcome_rules(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade.delete_outcome_rules(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one outcome rule.
#[utoipa::path(delete, path = "/tenants/{tenantId}/outcomes/{id}", tag = "Outcomes",
    operation_id = "DeleteOutcomeRule",
    params(("tenantId" = String, Path), ("id" = String, Path, description = "The rule's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant or rule", body = ErrorBody),
    ))]
pub async fn delete_outcome_rule(
    State(app): State<AppState>,
    Path((tenant_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    app.palisade.delete_outcome_rule(&tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
