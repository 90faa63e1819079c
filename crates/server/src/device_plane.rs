//! The device plane's HTTP face (`/device/v1/...`): what the agent and the
//! simulated fleet call. Errors have the MDE shape, like the rest of the server.

use crate::app::AppState;
use crate::http::error::{too_many_requests, ApiError, ApiResult};
use crate::http::extract::JsonBody;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use palisade_contract::{ErrorCode, MachineAction, MdeError};
use palisade_device::{
    ActionResult, CheckIn, CheckInReply, EnrollRequest, Inventory, ALERTS_PATH, CHECK_IN_PATH,
    ENROLL_PATH, INVENTORY_PATH, MAX_WAIT_SECONDS,
};
use palisade_domain::devices::{Device, DeviceRefusal};
use palisade_domain::files::FileKind;
use palisade_identity::validate::bearer_token;
use serde::Deserialize;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ENROLL_PATH, post(enroll))
        .route(CHECK_IN_PATH, post(check_in))
        .route(ALERTS_PATH, post(raise_alert))
        .route(INVENTORY_PATH, put(report_inventory))
        .route("/device/v1/actions/{id}/start", post(start_action))
        .route("/device/v1/actions/{id}/result", post(finish_action))
        .route("/device/v1/actions/{id}/package", put(upload_package))
        .route(
            "/device/v1/actions/{id}/commands/{index}/result",
            put(upload_command_result),
        )
        .route(
            "/device/v1/actions/{id}/library/{name}",
            get(download_session_file),
        )
}

/// The bearer secret of the request: an onboarding token or a device credential.
fn presented_secret(parts: &Parts) -> Result<&str, ApiError> {
    bearer_token(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes())).map_err(|error| {
        MdeError::new(
            ErrorCode::Unauthorized,
            format!("The request has no valid credential: {error}"),
        )
        .into()
    })
}

/// The enrolled device that calls, authenticated by its credential.
struct CallingDevice(Device);

impl FromRequestParts<AppState> for CallingDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let credential = presented_secret(parts)?;
        Ok(CallingDevice(app.devices.authenticate(credential).await?))
    }
}

/// The onboarding token an enrolling device presents.
struct OnboardingTokenText(String);

impl FromRequestParts<AppState> for OnboardingTokenText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        presented_secret(parts).map(|t| OnboardingTokenText(t.to_string()))
    }
}

async fn enroll(
    State(app): State<AppState>,
    OnboardingTokenText(token): OnboardingTokenText,
    JsonBody(request): JsonBody<EnrollRequest>,
) -> Response {
    match app.devices.enroll(&token, request).await {
        Ok(enrollment) => {
            tracing::info!(tenant = %enrollment.tenant_id, machine = %enrollment.machine_id, "device enrolled");
            (StatusCode::CREATED, Json(enrollment)).into_response()
        }
        Err(DeviceRefusal::Refused(error)) => ApiError(error).into_response(),
        Err(DeviceRefusal::Throttled(throttled)) => {
            too_many_requests(throttled, "enrollments", "with this onboarding token")
        }
    }
}

#[derive(Debug, Deserialize)]
struct LongPoll {
    /// Seconds to wait for an action when none is open (at most `MAX_WAIT_SECONDS`).
    wait: Option<u64>,
}

async fn check_in(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Query(poll): Query<LongPoll>,
    JsonBody(report): JsonBody<CheckIn>,
) -> ApiResult<Json<CheckInReply>> {
    let wait = Duration::from_secs(poll.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    Ok(Json(app.devices.check_in(&device, report, wait).await?))
}

/// A detection of the device's agent, raised as an alert on its machine (201).
async fn raise_alert(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    JsonBody(alert): JsonBody<serde_json::Value>,
) -> Response {
    match app.devices.raise_alert(&device, alert).await {
        Ok(alert) => {
            tracing::info!(machine = %device.machine_id, alert = %alert.id, title = %alert.title, "device raised an alert");
            (StatusCode::CREATED, Json(alert)).into_response()
        }
        Err(DeviceRefusal::Refused(error)) => ApiError(error).into_response(),
        Err(DeviceRefusal::Throttled(throttled)) => {
            too_many_requests(throttled, "alerts", "from this device")
        }
    }
}

/// The device's inventory, in place of what it reported before (204).
async fn report_inventory(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    JsonBody(inventory): JsonBody<Inventory>,
) -> ApiResult<StatusCode> {
    let (software, users) = app.devices.report_inventory(&device, inventory).await?;
    tracing::info!(machine = %device.machine_id, software, users, "inventory reported");
    Ok(StatusCode::NO_CONTENT)
}

async fn start_action(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineAction>> {
    Ok(Json(app.devices.start_action(&device, &id).await?))
}

async fn finish_action(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Path(id): Path<String>,
    JsonBody(result): JsonBody<ActionResult>,
) -> ApiResult<Json<MachineAction>> {
    let action = app.devices.finish_action(&device, &id, result).await?;
    tracing::info!(machine = %device.machine_id, action = %action.id, status = %action.status, "device reported an action");
    Ok(Json(action))
}

/// The investigation package of an InProgress collection, streamed in as
/// the body (201 with its size and SHA-256); past the server's limit, 413
/// while it streams (or at once, by its Content-Length).
async fn upload_package(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let kind = (FileKind::InvestigationPackage, 0);
    upload(&app, &device, &id, kind, &headers, body).await
}

/// What command `index` of an InProgress live-response session left (a
/// script's transcript, a file), streamed in as the package is.
async fn upload_command_result(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Path((id, index)): Path<(String, u32)>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let kind = (FileKind::LiveResponseResult, i64::from(index));
    upload(&app, &device, &id, kind, &headers, body).await
}

async fn upload(
    app: &AppState,
    device: &Device,
    action_id: &str,
    kind: (FileKind, i64),
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Response {
    let mut body = body;
    match take_upload(app, device, action_id, kind, headers, &mut body).await {
        Ok(file) => {
            tracing::info!(machine = %device.machine_id, action = %action_id, kind = %file.kind, part = file.part, bytes = file.size, "file uploaded");
            let answer =
                serde_json::json!({"id": file.id, "size": file.size, "sha256": file.sha256});
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err(error) => {
            // Read on (to a bound) before answering: a device still sending
            // would otherwise lose the answer to a broken connection.
            let mut drained = 0;
            while drained < REFUSED_BODY_DRAINED {
                match body.frame().await {
                    Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            ApiError(error).into_response()
        }
    }
}

/// A library file the device's InProgress session puts or runs, streamed.
async fn download_session_file(
    State(app): State<AppState>,
    CallingDevice(device): CallingDevice,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    match app.palisade.session_library_file(&device, &id, &name).await {
        Ok(file) => crate::downloads::stream_file(app, file, "application/octet-stream", &name),
        Err(error) => ApiError(error).into_response(),
    }
}

/// How much of a refused upload is read before the refusal is answered.
const REFUSED_BODY_DRAINED: usize = 64 * 1024 * 1024;

async fn take_upload(
    app: &AppState,
    device: &Device,
    action_id: &str,
    kind: (FileKind, i64),
    headers: &axum::http::HeaderMap,
    body: &mut Body,
) -> Result<palisade_domain::files::StoredFile, MdeError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut upload = app
        .palisade
        .begin_upload(device, action_id, kind, app.max_package_bytes, declared)
        .await?;
    match stream_into(app, &mut upload, body).await {
        Ok(()) => app.palisade.finish_upload(upload).await,
        Err(error) => {
            if let Err(forgetting) = app.palisade.abandon_upload(upload).await {
                tracing::warn!(%forgetting, "an upload given up was not forgotten");
            }
            Err(error)
        }
    }
}

/// The body's bytes into `upload`, as they come.
async fn stream_into(
    app: &AppState,
    upload: &mut palisade_domain::files::Upload,
    body: &mut Body,
) -> Result<(), MdeError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            MdeError::new(
                ErrorCode::BadRequest,
                format!("The upload could not be read: {e}"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            app.palisade.upload_bytes(upload, data).await?;
        }
    }
    Ok(())
}
