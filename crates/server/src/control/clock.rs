//! `/_palisade/v1/tenants/{tenantId}/clock`: the tenant's time, which every
//! rule of the tenant reads (retention, time-outs, token times, rate-limit
//! windows, outcome delays).

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::JsonBody;
use axum::extract::{Path, State};
use axum::Json;
use palisade_contract::control::{ClockChange, ClockReading};
use palisade_contract::ErrorBody;

/// The tenant's clock: running or frozen, its reading, and its offset from the server's.
#[utoipa::path(get, path = "/tenants/{tenantId}/clock", tag = "Clock",
    operation_id = "GetClock",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = ClockReading),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn get_clock(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<ClockReading>> {
    Ok(Json(app.palisade.tenant_clock(&tenant_id).await?))
}

/// Freezes the clock (at its reading, or at `now`), runs it on from its
/// reading, and/or advances it. Time never goes backwards; the next read
/// already sees what the new time implies (time-outs, retention, expired tokens).
#[utoipa::path(put, path = "/tenants/{tenantId}/clock", tag = "Clock",
    operation_id = "SetClock",
    params(("tenantId" = String, Path)),
    request_body = ClockChange,
    responses(
        (status = 200, body = ClockReading),
        (status = 400, description = "Not a change, or one that would go back: the message names the field", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn set_clock(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    JsonBody(change): JsonBody<ClockChange>,
) -> ApiResult<Json<ClockReading>> {
    Ok(Json(
        app.palisade
            .change_tenant_clock(&tenant_id, &change)
            .await?,
    ))
}
