//! The token service's HTTP face, at the paths Entra ID serves it
//! (operations.md: URLs): a client changes only the authority host.

use crate::app::AppState;
use crate::http::envelope::RequestId;
use crate::http::extract::origin;
use crate::http::{read_body, BodyError, MAX_BODY_BYTES};
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::{Extension, Json, Router};
use base64::Engine;
use palisade_contract::control::FaultResponse;
use palisade_domain::rules::faults::TOKEN_OPERATION;
use palisade_identity::service::{canonical_guid, OAuthError, TokenRequest};
use palisade_identity::TokenVersion;
use std::net::SocketAddr;

/// Marks a response whose error body is its own (the token service's OAuth2 JSON, a page),
/// which the envelope must leave as it is.
#[derive(Debug, Clone, Copy)]
pub struct OAuthBody;

pub fn routes() -> Router<AppState> {
    let token_endpoint = || {
        post(token)
            .merge(on(MethodFilter::OPTIONS, preflight))
            .fallback(wrong_method)
    };
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", token_endpoint())
        .route("/{tenant}/oauth2/token", token_endpoint())
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

/// A fault's answer from the token service, in Entra's words for its status.
fn oauth_fault(response: &FaultResponse) -> OAuthError {
    let (error, aadsts, description) = match response.status {
        429 | 503 => (
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        ),
        500..=599 => (
            "server_error",
            90033,
            "A transient error has occurred. Please try again.",
        ),
        401 => ("invalid_client", 7000215, "Invalid client secret provided."),
        _ => ("invalid_request", 900144, "The request was refused."),
    };
    let description = response.message.as_deref().unwrap_or(description);
    OAuthError::new(response.status, error, aadsts, description)
}

fn invalid_request(description: &str) -> OAuthError {
    OAuthError::new(400, "invalid_request", 900144, description)
}

/// The token endpoint answers every method but POST as Entra ID does.
async fn wrong_method(
    State(app): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    method: Method,
) -> Response {
    let error = OAuthError::new(
        400,
        "invalid_request",
        900561,
        format!("The endpoint only accepts POST, OPTIONS requests. Received a {method} request."),
    );
    oauth_error(&app, error, &request_id)
}

/// OPTIONS (a browser's preflight, or a client asking what is allowed).
async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    response
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    route: MatchedPath,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (uri, headers) = (&parts.uri, &parts.headers);
    let version = version(&route);
    let tenant = canonical_guid(&tenant);
    let mut form: TokenRequest = match read_oauth_form(headers, body).await {
        Ok(form) => form,
        Err(error) => return oauth_error(&app, error, &request_id),
    };
    // client_secret_basic (RFC 6749 §2.3.1): id and secret, form-encoded, in Basic auth.
    let basic = basic_credentials(headers);
    let sent_basic = basic.is_some();
    if let Some((id, secret)) = basic {
        form.client_id.get_or_insert(id);
        form.client_secret.get_or_insert(secret);
    }
    let callers = [form.client_id.as_deref(), form.username.as_deref()];
    let callers: Vec<&str> = callers.into_iter().flatten().collect();
    match app
        .palisade
        .fault_for(&tenant, TOKEN_OPERATION, &callers)
        .await
    {
        Ok(Some(rule)) => {
            let answer =
                |response: &FaultResponse| oauth_error(&app, oauth_fault(response), &request_id);
            if let Some(answered) = crate::control::faults::inflict(&rule, answer).await {
                return answered;
            }
        }
        Ok(None) => {}
        Err(error) => {
            let error = OAuthError::new(503, "temporarily_unavailable", 90033, error.message);
            return oauth_error(&app, error, &request_id);
        }
    }
    let origin = origin(&app, uri, headers);
    match app
        .tokens
        .issue(&tenant, version, &origin, peer.ip(), form)
        .await
    {
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
            let mut response = oauth_error(&app, error.clone(), &request_id);
            // RFC 6749 §5.2: a client that authenticated with the Authorization
            // header and failed gets 401 and the scheme it used.
            if sent_basic && error.is_client_authentication_failure() {
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                if let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{tenant}\"")) {
                    response.headers_mut().insert(WWW_AUTHENTICATE, value);
                }
            }
            if let Some(seconds) = error.retry_after_seconds {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

/// A form posted to the token service (`application/x-www-form-urlencoded`),
/// or the OAuth error that says why it cannot be read.
pub(crate) async fn read_oauth_form<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, OAuthError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "The request body must be application/x-www-form-urlencoded.",
        ));
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Err(OAuthError::new(
                413,
                "invalid_request",
                90023,
                format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
            ))
        }
        Err(BodyError::Unreadable(reason)) => {
            return Err(invalid_request(&format!(
                "The request body could not be read: {reason}."
            )))
        }
    };
    serde_urlencoded::from_bytes(&body)
        .map_err(|e| invalid_request(&format!("The request body is malformed: {e}.")))
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
    let tenant = canonical_guid(&tenant);
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
    let tenant = canonical_guid(&tenant);
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
