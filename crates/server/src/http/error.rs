//! How a refused request becomes a response. The JSON body itself is written by
//! the envelope, which knows the request id that goes into `target`.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use palisade_contract::{ErrorCode, MdeError};
use palisade_domain::rate_limit::{Throttled, Window};

/// An `MdeError` on its way out of a handler.
#[derive(Debug)]
pub struct ApiError(pub MdeError);

impl From<MdeError> for ApiError {
    fn from(error: MdeError) -> Self {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// 429 `TooManyRequests` with `Retry-After`, naming the limit reached: "100
/// `calls` a minute `to Isolate for this app in this tenant`".
pub fn too_many_requests(throttled: Throttled, counted: &str, of_what: &str) -> Response {
    let window = match throttled.window {
        Window::Minute => "a minute",
        Window::Hour => "an hour",
    };
    let mut response = ApiError(MdeError::new(
        ErrorCode::TooManyRequests,
        format!(
            "Rate limit exceeded: {} {counted} {window} {of_what}. Retry in {} seconds.",
            throttled.limit, throttled.retry_after_seconds
        ),
    ))
    .into_response();
    response.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(throttled.retry_after_seconds),
    );
    response
}
