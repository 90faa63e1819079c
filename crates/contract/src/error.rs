//! The MDE error body and the one error type every layer returns.
//!
//! `ErrorCode` answers both the wire code and its usual HTTP status, so a status
//! can never disagree with its code except where MDE itself answers a code with
//! another status (413 and 415 carry `BadRequest`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::IntoStaticStr,
)]
pub enum ErrorCode {
    BadRequest,
    ODataError,
    InvalidInput,
    InvalidRequestBody,
    InvalidHashValue,
    InvalidIpAddress,
    InvalidDomainName,
    InvalidUrl,
    MaximumBatchSizeExceeded,
    MissingRequiredParameter,
    OsPlatformNotSupported,
    ClientVersionNotSupported,
    ActiveRequestAlreadyExists,
    Unauthorized,
    Forbidden,
    DisallowedOperation,
    NotFound,
    ResourceNotFound,
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The HTTP status MDE answers this code with.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadRequest
            | ODataError
            | InvalidInput
            | InvalidRequestBody
            | InvalidHashValue
            | InvalidIpAddress
            | InvalidDomainName
            | InvalidUrl
            | MaximumBatchSizeExceeded
            | MissingRequiredParameter
            | OsPlatformNotSupported
            | ClientVersionNotSupported
            | ActiveRequestAlreadyExists => 400,
            Unauthorized => 401,
            Forbidden | DisallowedOperation => 403,
            NotFound | ResourceNotFound => 404,
            TooManyRequests => 429,
            InternalServerError => 500,
            ServiceUnavailable => 503,
        }
    }
}

/// `{"error": {...}}` as MDE sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// Opaque per-request id, also sent as the `request-id` header.
    pub target: String,
}

/// A refused or failed request, as every layer reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} ({status}): {message}")]
pub struct MdeError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
}

impl MdeError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        MdeError {
            status: code.status(),
            code,
            message: message.into(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn machine_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ResourceNotFound,
            format!("Machine {id} was not found"),
        )
    }

    pub fn action_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ResourceNotFound,
            format!("Machine action {id} was not found"),
        )
    }

    pub fn alert_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ResourceNotFound,
            format!("Alert {id} was not found"),
        )
    }

    pub fn indicator_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::ResourceNotFound,
            format!("Indicator {id} was not found"),
        )
    }

    pub fn missing(parameter: &str) -> Self {
        Self::new(
            ErrorCode::MissingRequiredParameter,
            format!("Parameter {parameter} is missing."),
        )
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalServerError, message)
    }

    pub fn body(&self, target: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                target: target.into(),
            },
        }
    }
}
