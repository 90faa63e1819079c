//! The outermost layer: gives each request its id, writes its log line, and
//! makes every error response MDE-shaped — including the ones produced by axum
//! itself (unknown route, bad path) or by a panic.

use crate::token_service::OAuthBody;
use crate::transport::BodyTimedOut;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_contract::{ErrorCode, MdeError};
use std::time::Instant;

/// The request id of the request being served (also sent as `request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const SERVER_ERROR_MESSAGE: &str =
    "The server could not complete the request; retry it, and quote the target if it persists.";

const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The longest request URI served; longer ones get 414.
pub const MAX_URI_BYTES: usize = 16 * 1024;

pub async fn envelope(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = palisade_domain::ids::new_request_id();
    let method = request.method().clone();
    // A download link's token is a credential: never in the log.
    let path = crate::downloads::without_token(request.uri().path());
    request.extensions_mut().insert(RequestId(id.clone()));
    let body_timed_out = request.extensions().get::<BodyTimedOut>().cloned();

    let response = if uri_length(request.uri()) > MAX_URI_BYTES {
        refusal(
            MdeError::new(
                ErrorCode::BadRequest,
                format!("The request URI is longer than {MAX_URI_BYTES} bytes."),
            )
            .with_status(414),
        )
    } else {
        next.run(request).await
    };
    let (mut parts, body) = response.into_parts();
    if body_timed_out.is_some_and(|flag| flag.is_set()) {
        // Whatever the handler made of a body cut short, the client was too slow.
        parts.status = StatusCode::REQUEST_TIMEOUT;
        parts.extensions.insert(
            MdeError::new(
                ErrorCode::BadRequest,
                "The request body did not arrive in time.",
            )
            .with_status(408),
        );
        parts.extensions.remove::<OAuthBody>();
        // The rest of the body may still come: the connection cannot be reused.
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
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

/// The length of `uri` as sent, without writing it out.
fn uri_length(uri: &axum::http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// A response carrying `error`, for the envelope to give its body.
fn refusal(error: MdeError) -> Response {
    crate::http::error::ApiError(error).into_response()
}

/// The status of `head` if it is one hyper wrote on its own, for a request it
/// could not parse: an HTTP/1 error head without the `request-id` every
/// response of the envelope carries.
pub fn bare_http1_error_status(head: &[u8]) -> Option<StatusCode> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    let own = head
        .windows(b"\r\nrequest-id:".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\nrequest-id:"));
    let whole_head = head.ends_with(b"\r\n\r\n");
    (status.is_client_error() && whole_head && !own).then_some(status)
}

/// A whole HTTP/1.1 response, MDE-shaped, for a request hyper could not
/// parse; the connection closes after it.
pub fn http1_error_response(status: StatusCode, max_header_bytes: usize) -> Vec<u8> {
    let message = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => format!(
            "The request head (request line and header fields) is larger than {max_header_bytes} bytes, or has more than 100 header fields."
        ),
        StatusCode::URI_TOO_LONG => "The request URI is too long.".to_string(),
        StatusCode::BAD_REQUEST => "The request is not valid HTTP/1.1.".to_string(),
        other => bare_error(other).message,
    };
    let id = palisade_domain::ids::new_request_id();
    let error = MdeError::new(ErrorCode::BadRequest, message).with_status(status.as_u16());
    let body = serde_json::to_string(&error.body(id.clone())).unwrap_or_default();
    tracing::info!(request_id = %id, status = status.as_u16(), "request refused unparsed");
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ERROR_CONTENT_TYPE}\r\ncontent-length: {}\r\nrequest-id: {id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
