//! Extractors: who calls, what they sent, and the OData options they asked for.

use super::error::ApiError;
use super::{media_type, read_body, MAX_BODY_BYTES};
use crate::app::AppState;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};
use palisade_contract::odata::ODataQuery;
use palisade_contract::{ErrorCode, MdeError};
use palisade_domain::Caller;
use serde::de::DeserializeOwned;

/// The caller of this request. Every handler gets identity from here and only
/// here; the gate (`http::auth`) put it there after checking the token.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts.extensions.remove::<Caller>().ok_or_else(|| {
            MdeError::internal("the route is not behind the authentication gate").into()
        })
    }
}

/// A JSON request body, read as MDE reads it: `application/json` only, at most
/// 1 MiB, and an absent body counts as `{}` so that missing required properties
/// are reported by name.
pub struct JsonBody<T>(pub T);

fn bad_body(message: impl Into<String>) -> ApiError {
    MdeError::new(ErrorCode::InvalidRequestBody, message).into()
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        let content_type = media_type(request.headers());
        let bytes = read_body(request.into_body())
            .await
            .map_err(|error| error.refusal(MAX_BODY_BYTES))?;
        let is_json = content_type
            .as_deref()
            .is_some_and(|t| t == "application/json" || t.ends_with("+json"));
        // No Content-Type is fine only without a body (cancel's Comment is optional).
        if (content_type.is_some() && !is_json) || (!bytes.is_empty() && content_type.is_none()) {
            return Err(MdeError::new(
                ErrorCode::BadRequest,
                "The request body must be sent with Content-Type: application/json.",
            )
            .with_status(415)
            .into());
        }
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // JSON is UTF-8 throughout, also in the properties serde skips unread.
        if std::str::from_utf8(text).is_err() {
            return Err(bad_body(
                "Request body is incorrect: it is not valid UTF-8.",
            ));
        }
        // serde would read a struct from a JSON array too; MDE wants an object.
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(bad_body(
                "Request body is incorrect: expected a JSON object.",
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || inner.is_syntax() || inner.is_eof() {
                bad_body(format!("Request body is incorrect: {inner}"))
            } else {
                bad_body(format!("Request body is incorrect: {path}: {inner}"))
            }
        })?;
        deserializer
            .end()
            .map_err(|e| bad_body(format!("Request body is incorrect: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// The OData system query options of the request.
pub struct OData(pub ODataQuery);

impl<S: Send + Sync> FromRequestParts<S> for OData {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut query = ODataQuery::parse(parts.uri.query().unwrap_or(""))
            .map_err(|e| MdeError::new(ErrorCode::ODataError, e.0))?;
        query.max_page_size = max_page_size(&parts.headers);
        Ok(OData(query))
    }
}

/// The `odata.maxpagesize` preference of the request's `Prefer` headers
/// (OData 4.0 §8.2.8.3), if it asks for 1 or more.
pub fn max_page_size(headers: &HeaderMap) -> Option<u32> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let (name, size) = preference.split_once('=')?;
            let name = name.trim();
            let plain = name.strip_prefix("odata.").unwrap_or(name);
            plain
                .eq_ignore_ascii_case("maxpagesize")
                .then(|| size.trim().trim_matches('"').parse().ok())
                .flatten()
        })
        .find(|&size| size > 0)
}

/// Where this request was sent: `{scheme}://{host}`, for `@odata.context` and `@odata.nextLink`.
#[derive(Debug, Clone)]
pub struct RequestBase {
    pub origin: String,
    pub path: String,
    pub query: Option<String>,
}

impl FromRequestParts<AppState> for RequestBase {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Paging links point where the client went, before path canonicalisation.
        let path = match parts.extensions.get::<OriginalUri>() {
            Some(OriginalUri(uri)) => uri.path(),
            None => parts.uri.path(),
        };
        Ok(RequestBase {
            origin: origin(state, &parts.uri, &parts.headers),
            path: path.to_string(),
            query: parts.uri.query().map(str::to_string),
        })
    }
}

/// `{scheme}://{host}` the request was sent to, as configured
/// ([`super::host::PublicOrigins::of_request`]).
pub fn origin(app: &AppState, uri: &Uri, headers: &HeaderMap) -> String {
    app.origins.of_request(uri, headers).to_string()
}
