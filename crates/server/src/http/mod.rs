//! The HTTP front end's plumbing: the request envelope (request id, log line,
//! MDE error bodies), case-insensitive routing, extractors and OData responses.

pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod host;
pub mod odata;
pub mod page;
pub mod paths;

/// Largest request body accepted (decisions: Wire).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Why a request body was not read: each API words it in its own error shape.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed while it was read.
    Unreadable(String),
}

impl BodyError {
    /// The MDE API's answer to a body not read; `limit` is the most it takes.
    pub fn refusal(self, limit: usize) -> palisade_contract::MdeError {
        use palisade_contract::{ErrorCode, MdeError};
        match self {
            BodyError::TooLarge => MdeError::new(
                ErrorCode::BadRequest,
                format!("The request body is larger than {limit} bytes."),
            )
            .with_status(413),
            BodyError::Unreadable(error) => MdeError::new(
                ErrorCode::BadRequest,
                format!("The request body could not be read: {error}"),
            ),
        }
    }
}

/// The media type of a request's `Content-Type` (lower case, without parameters).
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The whole request body, at most [`MAX_BODY_BYTES`].
pub async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, BodyError> {
    read_body_up_to(body, MAX_BODY_BYTES).await
}

/// The whole request body, at most `limit` bytes.
pub async fn read_body_up_to(
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(error.to_string())
        }
    })
}
