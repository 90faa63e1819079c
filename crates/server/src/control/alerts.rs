//! `/_palisade/v1/tenants/{tenantId}/alerts`: raises an alert on a machine,
//! so that a test has the alert its playbook starts from. It is an alert
//! like any other (incremental polling, PATCH, device-group visibility).

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{JsonBody, RequestBase};
use crate::http::odata::Entity;
use axum::extract::{Path, State};
use palisade_contract::{Alert, ErrorBody};

/// Raises an alert from a partial MDE Alert: `machineId` is required; the
/// rest (`title`, `severity`, `category`, `detectionSource`, `evidence`,
/// `mitreTechniques`, ...) have defaults (a New, Medium alert of
/// SuspiciousActivity from WindowsDefenderAtp, queued for investigation).
#[utoipa::path(post, path = "/tenants/{tenantId}/alerts", tag = "Alerts",
    operation_id = "RaiseAlert",
    params(("tenantId" = String, Path)),
    request_body(content = Object, description = "A partial MDE Alert; `machineId` required"),
    responses(
        (status = 201, description = "The alert, as GET /api/alerts/{id} shows it", body = Alert),
        (status = 400, description = "A property no alert could hold: the message names it", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant or machine", body = ErrorBody),
    ))]
pub async fn raise_alert(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    base: RequestBase,
    JsonBody(alert): JsonBody<serde_json::Value>,
) -> ApiResult<Entity<Alert>> {
    let alert = app.palisade.raise_alert(&tenant_id, alert).await?;
    Ok(Entity::created(&base, alert))
}
