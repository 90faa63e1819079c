//! How a refused request becomes a response. The JSON body itself is written by
//! the envelope, which knows the request id that goes into `target`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_contract::MdeError;

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
