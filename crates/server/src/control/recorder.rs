//! The recorder (`/_palisade/v1/tenants/{tenantId}/recorder`): every MDE API
//! call of a tenant kept while it is on, listed, as HAR 1.2, and a report
//! of how each client behaved.

use crate::app::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{origin, JsonBody};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use http_body_util::BodyExt;
use palisade_contract::control::{ClientReport, RecordedEntries, RecorderSetting};
use palisade_contract::{ErrorBody, MdeError, Timestamp};
use palisade_domain::control::{RecordFilter, RecordedCall};
use palisade_domain::rules::recorder;
use palisade_domain::{Caller, Operation, Principal};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
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
        Recording {
            tenant_id: caller.tenant.id.clone(),
            caller: caller.principal.caller_name().to_string(),
            operation: operation.name(),
            granted: caller
                .permissions
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            // The least that allows the call: a reader holding ReadWrite.All
            // too is told that it never needed it.
            used: needed
                .iter()
                .find(|p| caller.permissions.contains(p))
                .map(|p| p.as_str().to_string())
                .into_iter()
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
    // The body as the handler reads it, copied on the way (its limits and
    // errors stay the handler's).
    let copy: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = copy.clone();
    let body = Body::new(body.map_frame(move |frame| {
        if let (Some(data), Ok(mut sink)) = (frame.data_ref(), sink.lock()) {
            let room = RECORDED_BODY_BYTES.saturating_sub(sink.len());
            sink.extend_from_slice(&data[..data.len().min(room)]);
        }
        frame
    }));
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
        request_body: copy.lock().ok().and_then(|body| kept(&body)),
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
fn kept(body: &[u8]) -> Option<String> {
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

/// Which recorded calls, and which page of them. Each filter given must hold.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EntryQuery {
    /// At most this many entries (default 1,000).
    #[serde(rename = "$top")]
    #[param(value_type = Option<u64>)]
    top: Option<String>,
    /// After this many.
    #[serde(rename = "$skip")]
    #[param(value_type = Option<u64>)]
    skip: Option<String>,
    /// The app's client id or the user's principal name.
    caller: Option<String>,
    /// An operation id (`ListMachines`, `Isolate`, ...).
    operation: Option<String>,
    /// `GET`, `POST`, ...
    method: Option<String>,
    /// The answer's status.
    #[param(value_type = Option<u16>)]
    status: Option<String>,
    /// Calls made at or after this time (ISO-8601 UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
}

impl EntryQuery {
    /// The filter, and (skip, top); or an error naming the parameter.
    fn read(&self) -> Result<(RecordFilter, u64, u64), MdeError> {
        let invalid = |name: &str, text: &str, what: &str| {
            MdeError::invalid_input(format!("Invalid input {name}: '{text}' is not {what}"))
        };
        let number = |name: &str, given: &Option<String>, default: u64| match given {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| invalid(name, text, "a whole number of 0 or more")),
        };
        let status = match &self.status {
            None => None,
            Some(text) => Some(
                text.parse::<u16>()
                    .map_err(|_| invalid("status", text, "an HTTP status"))?,
            ),
        };
        let since = match &self.since {
            None => None,
            Some(text) => Some(
                Timestamp::parse(text).ok_or_else(|| invalid("since", text, "an ISO-8601 time"))?,
            ),
        };
        let filter = RecordFilter {
            caller: self.caller.clone(),
            operation: self.operation.clone(),
            method: self.method.as_ref().map(|m| m.to_ascii_uppercase()),
            status: status.map(i64::from),
            since,
        };
        Ok((
            filter,
            number("$skip", &self.skip, 0)?,
            number("$top", &self.top, 1000)?,
        ))
    }
}

/// The recorded calls, oldest first, those the filters let through: time,
/// caller, operation, method, path, query, status, latency, request and
/// response bodies (headers are not kept: they carry the bearer token).
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder/entries", tag = "Recorder",
    operation_id = "ListRecordedCalls",
    params(("tenantId" = String, Path), EntryQuery),
    responses(
        (status = 200, body = RecordedEntries),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn list_entries(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    Query(query): Query<EntryQuery>,
) -> ApiResult<Json<RecordedEntries>> {
    let (filter, skip, top) = query.read()?;
    let calls = app
        .palisade
        .recorded_calls(&tenant_id, &filter, skip, top)
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

/// The recorded calls as a HAR 1.2 log, for a browser's or a proxy's tools
/// (the filters and paging of `.../entries` apply).
#[utoipa::path(get, path = "/tenants/{tenantId}/recorder/har", tag = "Recorder",
    operation_id = "GetRecordedHar",
    params(("tenantId" = String, Path), EntryQuery),
    responses(
        (status = 200, description = "HAR 1.2", content_type = "application/json"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
    ))]
pub async fn har(
    State(app): State<AppState>,
    Path(tenant_id): Path<String>,
    Query(query): Query<EntryQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let (filter, skip, top) = query.read()?;
    let top = if query.top.is_some() { top } else { u64::MAX };
    let calls = app
        .palisade
        .recorded_calls(&tenant_id, &filter, skip, top)
        .await?;
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
