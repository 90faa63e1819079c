//! The token service's HTTP face, at the paths Entra ID serves it
//! (operations.md: URLs): a client changes only the authority host.

use crate::app::AppState;
use crate::http::envelope::RequestId;
use crate::http::extract::origin;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine;
use palisade_identity::service::{OAuthError, TokenRequest};
use palisade_identity::TokenVersion;

/// Marks a response whose error body is the token service's own (OAuth2),
/// which the envelope must leave as it is.
#[derive(Debug, Clone, Copy)]
pub struct OAuthBody;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/token", post(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery),
        )
        .route("/{tenant}/.well-known/openid-configuration", get(discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(keys))
        .route("/{tenant}/discovery/keys", get(keys))
}

pub(crate) fn oauth_error(app: &AppState, error: OAuthError, request_id: &str) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        Json(error.body(request_id.trim_matches(['|', '.']), app.palisade.now())),
    )
        .into_response();
    response.extensions_mut().insert(OAuthBody);
    response
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(400, "invalid_request", 900144, description)
}

/// Which endpoint was called: the v2.0 paths issue v2 tokens, the others v1.
fn version(route: &MatchedPath) -> TokenVersion {
    if route.as_str().contains("v2.0") {
        TokenVersion::V2
    } else {
        TokenVersion::V1
    }
}

async fn token(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    route: MatchedPath,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let version = version(&route);
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        let error = invalid_request("The request body must be application/x-www-form-urlencoded.");
        return oauth_error(&app, error, &request_id);
    }
    let mut form: TokenRequest = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(e) => {
            let error = invalid_request(&format!("The request body is malformed: {e}."));
            return oauth_error(&app, error, &request_id);
        }
    };
    // client_secret_basic (RFC 6749 §2.3.1): id and secret, form-encoded, in Basic auth.
    if let Some((id, secret)) = basic_credentials(&headers) {
        form.client_id.get_or_insert(id);
        form.client_secret.get_or_insert(secret);
    }
    let origin = origin(&app, &uri, &headers);
    match app.tokens.issue(&tenant, version, &origin, form).await {
        Ok(token) => {
            let mut response = Json(token).into_response();
            response.headers_mut().insert(
                CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache"),
            );
            response
        }
        Err(error) => {
            tracing::info!(%tenant, error = %error, "token request refused");
            oauth_error(&app, error, &request_id)
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()?
            .pop()
            .map(|(_, v)| v)
    };
    Some((unescape(id)?, unescape(secret)?))
}

async fn discovery(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    route: MatchedPath,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let version = version(&route);
    match app.palisade.tenant(&tenant).await {
        Ok(Some(_)) => Json(
            app.tokens
                .discovery(&origin(&app, &uri, &headers), &tenant, version),
        )
        .into_response(),
        Ok(None) => tenant_not_found(&app, &tenant, &request_id),
        Err(error) => crate::http::error::ApiError(error).into_response(),
    }
}

fn tenant_not_found(app: &AppState, tenant: &str, request_id: &str) -> Response {
    let error = OAuthError::new(
        400,
        "invalid_tenant",
        90002,
        format!("Tenant '{tenant}' not found."),
    );
    oauth_error(app, error, request_id)
}

async fn keys(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match app
        .tokens
        .jwks(&origin(&app, &uri, &headers), &tenant)
        .await
    {
        Ok(Some(jwks)) => Json(jwks).into_response(),
        Ok(None) => tenant_not_found(&app, &tenant, &request_id),
        Err(error) => crate::http::error::ApiError(error.into()).into_response(),
    }
}
