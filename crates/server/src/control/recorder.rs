//! The recorder (`/_palisade/v1/tenants/{tenantId}/recorder`): every MDE API
//! call of a tenant kept while it is on, listed, as HAR 1.2, and a report
//! of how each client behaved.

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{origin, JsonBody};
use crate::http::MAX_BODY_BYTES;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{CONTENT_LENGTH, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palisade_contract::control::{ClientReport, RecordedEntries, RecorderSetting};
use palisade_contract::ErrorBody;
use palisade_domain::control::RecordedCall;
use palisade_domain::rules::recorder;
use palisade_domain::{Caller, Operation, Principal};
use serde::Deserialize;
use std::time::Instant;
use utoipa::IntoParams;

/// Most of a body an entry keeps (the rest is cut).
const RECORDED_BODY_BYTES: usize = 1 << 20;

/// What the gate knows of a call the recorder keeps: put on its response.
#[derive(Debug, Clone)]
pub struct Recording {
    tenant_id: String,
    caller: String,
    operation: &'static str,
    granted: Vec<String>,
    used: Vec<String>,
}

impl Recording {
    pub fn of(caller: &Caller, operation: Operation) -> Recording {
        let requirement = operation.requirement();
        let needed = match caller.principal {
            Principal::App { .. } => requirement.app,
            Principal::User { .. } => requirement.delegated,
        };
        let name = match &caller.principal {
            Principal::App { client_id, .. } => client_id.clone(),
            Principal::User { upn, .. } => upn.clone(),
        };
        Recording {
            tenant_id: caller.tenant.id.clone(),
            caller: name,
            operation: operation.name(),
            granted: caller
                .permissions
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            used: caller
                .permissions
                .iter()
                .filter(|p| needed.contains(p))
                .map(|p| p.as_str().to_string())
                .collect(),
        }
    }
}

/// Keeps the calls of tenants whose recorder is on (outermost layer: it
/// sees the request as it came and the response as it leaves). Until some
/// tenant records, it only passes calls on.
pub async fn record(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if !app.palisade.recording_anywhere() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let time = app.palisade.now();
    let (parts, body) = request.into_parts();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    // Bodies the API takes are kept; others (larger, or of unknown length)
    // go on as they come, unrecorded.
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let (body, request_body) = match declared {
        Some(length) if length <= MAX_BODY_BYTES => {
            match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
                Ok(bytes) => (Body::from(bytes.clone()), bytes),
                // The client went away while sending.
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            }
        }
        _ => (body, Bytes::new()),
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(recording) = response.extensions().get::<Recording>().cloned() else {
        return response;
    };
    if !app.palisade.is_recording(&recording.tenant_id) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(response_body) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let call = RecordedCall {
        tenant_id: recording.tenant_id,
        id: palisade_domain::ids::new_guid(),
        time,
        caller: recording.caller,
        operation: recording.operation.to_string(),
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        request_body: kept(&request_body),
        status: i64::from(parts.status.as_u16()),
        response_body: kept(&response_body),
        latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        retry_after: parts
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok()),
        granted: recording.granted,
        used: recording.used,
    };
    if let Err(error) = app.palisade.record_call(&call).await {
        tracing::warn!(%error, "could not record a call");
    }
    Response::from_parts(parts, Body::from(response_body))
}

/// A body as an entry keeps it: text, at most [`RECORDED_BODY_BYTES`]; none if empty.
fn kept(body: &Bytes) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(RECORDED_BODY_BYTES)];
    Some(String::from_utf8_lossy(cut).into_owned())
}

/// Whether the tenant's calls are being recorded.
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder", tag = "Recorder",
    operation_id = "GetRecorder",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = RecorderSetting),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn get_recorder(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<RecorderSetting>> {
    Ok(Json(app.palisade.recorder(&tenant_id).await?))
}

/// Turns recording of the tenant's MDE API calls on or off (what was recorded stays).
#[utoipa::path(put, path = "/tenants/{tenantId}/recorder", tag = "Recorder",
    operation_id = "SetRecorder",
    params(("tenantId" = String, Path)),
    request_body = RecorderSetting,
    responses(
        (status = 200, body = RecorderSetting),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn set_recorder(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    JsonBody(setting): JsonBody<RecorderSetting>,
) -> ApiResult<Json<RecorderSetting>> {
    Ok(Json(app.palisade.set_recorder(&tenant_id, setting).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Paging {
    /// At most this many entries (default 1,000).
    #[serde(rename = "$top")]
    top: Option<u64>,
    /// After this many.
    #[serde(rename = "$skip")]
    skip: Option<u64>,
}

/// The recorded calls, oldest first: time, caller, operation, method, path,
/// query, status, latency, request and response bodies (headers are not
/// kept: they carry the bearer token).
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder/entries", tag = "Recorder",
    operation_id = "ListRecordedCalls",
    params(("tenantId" = String, Path), Paging),
    responses(
        (status = 200, body = RecordedEntries),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_entries(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    Query(paging): Query<Paging>,
) -> ApiResult<Json<RecordedEntries>> {
    let calls = app
        .palisade
        .recorded_calls(
            &tenant_id,
            paging.skip.unwrap_or(0),
            paging.top.unwrap_or(1000),
        )
        .await?;
    Ok(Json(RecordedEntries {
        value: calls.iter().map(RecordedCall::wire).collect(),
    }))
}

/// Forgets the recorded calls.
#[utoipa::path(delete, path = "/tenants/{tenantId}/recorder/entries", tag = "Recorder",
    operation_id = "DeleteRecordedCalls",
    params(("tenantId" = String, Path)),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn delete_entries(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<StatusCode> {
    app.palisade.clear_recorded_calls(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The recorded calls as a HAR 1.2 log, for a browser's or a proxy's tools.
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder/har", tag = "Recorder",
    operation_id = "GetRecordedHar",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, description = "HAR 1.2", content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn har(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let calls = app.palisade.recorded_calls(&tenant_id, 0, u64::MAX).await?;
    let origin = origin(&app, &uri, &headers);
    Ok(Json(recorder::har(&calls, &origin)))
}

/// Per caller: calls made before a `Retry-After` had passed, paging URLs
/// built instead of followed, actions polled faster than once a second, and
/// the permissions used, granted and never used.
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder/report", tag = "Recorder",
    operation_id = "GetClientReport",
    params(("tenantId" = String, Path)),
    responses(
        (status = 200, body = ClientReport),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn report(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
) -> ApiResult<Json<ClientReport>> {
    Ok(Json(app.palisade.recorder_report(&tenant_id).await?))
}
