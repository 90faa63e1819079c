//! The outermost layer: gives each request its id, writes its log line, and
//! makes every error response MDE-shaped — including the ones produced by axum
//! itself (unknown route, bad path) or by a panic.

use crate::token_service::OAuthBody;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderValue, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use palisade_contract::{ErrorCode, MdeError};
use std::time::Instant;

/// The request id of the request being served (also sent as `request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Opaque, in the shape MDE's own targets have (`|b1838e63-40a6640ddd2719ac.`).
fn new_request_id() -> String {
    format!(
        "|{:08x}-{:016x}.",
        rand::random::<u32>(),
        rand::random::<u64>()
    )
}

const SERVER_ERROR_MESSAGE: &str =
    "The server could not complete the request; retry it, and quote the target if it persists.";

const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub async fn envelope(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = new_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));

    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    let refused = parts.extensions.remove::<MdeError>();
    let own_body = parts.extensions.get::<OAuthBody>().is_some();
    let error = match refused {
        Some(error) => Some(error),
        None if own_body => None,
        // 405 carries no body, as MDE's does; other bare errors get one.
        None if status.is_client_error() || status.is_server_error() => {
            (status != StatusCode::METHOD_NOT_ALLOWED).then(|| bare_error(status))
        }
        None => None,
    };
    let body = match error {
        Some(error) => {
            let error = if status.is_server_error() {
                // The detail is for the operator's log, not for the client.
                tracing::error!(request_id = %id, message = %error.message, "request failed");
                MdeError {
                    message: SERVER_ERROR_MESSAGE.into(),
                    ..error
                }
            } else {
                error
            };
            let json = serde_json::to_vec(&error.body(id.clone())).unwrap_or_default();
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(ERROR_CONTENT_TYPE));
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Body::from(json)
        }
        None => body,
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        parts.headers.insert("request-id", value);
    }
    tracing::info!(
        request_id = %id,
        %method,
        path,
        status = status.as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Response::from_parts(parts, body)
}

/// An error response that no handler described: name it by its status.
fn bare_error(status: StatusCode) -> MdeError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (
            ErrorCode::NotFound,
            "The requested resource does not exist.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BadRequest, "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::BadRequest,
            "The request body must be application/json.",
        ),
        s if s.is_server_error() => (ErrorCode::InternalServerError, SERVER_ERROR_MESSAGE),
        _ => (ErrorCode::BadRequest, "The request is invalid."),
    };
    MdeError::new(code, message).with_status(status.as_u16())
}
