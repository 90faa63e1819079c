//! The pages a person signs in on, at Entra ID's paths (operations.md:
//! Sign-in): the authorization endpoint's sign-in form, the device code
//! endpoint and its verification page `/devicelogin`, and user realm
//! discovery (MSAL asks it before a password grant). What is decided is in
//! `palisade_identity::authorize`; this is HTML and cookies.
//!
//! Every form carries a CSRF token bound to a cookie of its own (HttpOnly,
//! SameSite=Lax, `__Host-` and Secure over HTTPS); every page is sent with
//! a Content-Security-Policy without inline script or style, may not be
//! framed, and is not cached.

use crate::app::AppState;
use crate::http::envelope::RequestId;
use crate::http::extract::origin;
use crate::http::{page, read_body};
use crate::token_service::{oauth_error, read_oauth_form, OAuthBody};
use axum::extract::{ConnectInfo, MatchedPath, Path, RawQuery, Request, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use maud::{html, Markup, DOCTYPE};
use palisade_identity::authorize::{
    Authorization, AuthorizeQuery, AuthorizeRefusal, PendingDevice, Redirect, ResponseMode,
};
use palisade_identity::service::canonical_guid;
use palisade_identity::{OAuthError, TokenVersion};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize_page).post(authorize_sign_in),
        )
        .route(
            "/{tenant}/oauth2/authorize",
            get(authorize_page).post(authorize_sign_in),
        )
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
        .route("/{tenant}/oauth2/devicecode", post(device_code))
        .route("/devicelogin", get(device_page).post(device_sign_in))
        .route("/common/userrealm/{username}", get(user_realm))
        .route("/_palisade/static/sign-in.css", get(stylesheet))
        .route("/_palisade/static/form-post.js", get(form_post_script))
}

fn version(route: &MatchedPath) -> TokenVersion {
    if route.as_str().contains("v2.0") {
        TokenVersion::V2
    } else {
        TokenVersion::V1
    }
}

/// What a sign-in form posts.
#[derive(Debug, Default, Deserialize)]
struct SignInForm {
    csrf_token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    user_code: Option<String>,
}

/// The CSRF cookie's name.
const CSRF_COOKIE: &str = "palisade-sign-in";

/// Whether the form's token is the one its cookie holds.
fn csrf_matches(headers: &HeaderMap, secure: bool, sent: Option<&str>) -> bool {
    let Some(sent) = sent.filter(|s| !s.is_empty()) else {
        return false;
    };
    let name = page::cookie_name(CSRF_COOKIE, secure);
    let matched =
        page::cookies(headers, &name).any(|c| bool::from(c.as_bytes().ct_eq(sent.as_bytes())));
    matched
}

/// A page of the sign-in flows.
struct Page {
    status: StatusCode,
    title: &'static str,
    body: Markup,
    /// Where its forms may post (besides this origin), e.g. a redirect URI.
    form_targets: Vec<String>,
    /// The form_post page submits itself with a script of this origin.
    script: bool,
    /// A new CSRF token for its form, set as a cookie.
    csrf: Option<(String, bool)>,
}

impl Page {
    fn new(status: StatusCode, title: &'static str, body: Markup) -> Page {
        Page {
            status,
            title,
            body,
            form_targets: Vec::new(),
            script: false,
            csrf: None,
        }
    }

    fn into_response(self) -> Response {
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · Palisade" }
                    link rel="stylesheet" href="/_palisade/static/sign-in.css";
                    @if self.script { script src="/_palisade/static/form-post.js" defer {} }
                }
                body {
                    main {
                        p.brand { "Palisade" }
                        h1 { (self.title) }
                        (self.body)
                    }
                }
            }
        };
        let mut response = (self.status, markup).into_response();
        let headers = response.headers_mut();
        let form_action: Vec<&str> = std::iter::once("'self'")
            .chain(self.form_targets.iter().map(String::as_str))
            .collect();
        page::harden(headers, self.script, &form_action.join(" "));
        if let Some((token, secure)) = self.csrf {
            let name = page::cookie_name(CSRF_COOKIE, secure);
            page::set_cookie(headers, &name, Some(&token), "/", secure, 30);
        }
        response.extensions_mut().insert(OAuthBody);
        response
    }
}

/// A refusal shown to the person (nothing is sent to the client).
fn error_page(error: &OAuthError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    Page::new(
        status,
        "Sign-in failed",
        html! {
            p role="alert" { (error.description) }
            p.detail { "Error: " code { (error.error) } }
        },
    )
    .into_response()
}

/// The origin a CSP `form-action` names for `uri` (a private scheme: `myapp:`).
fn csp_source(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
            url.origin().ascii_serialization()
        }
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => String::new(),
    }
}

/// Sends the client its code or error.
fn redirect(redirect: &Redirect) -> Response {
    match redirect.mode {
        ResponseMode::FormPost => {
            let mut page = Page::new(
                StatusCode::OK,
                "Signing in",
                html! {
                    form #form-post method="post" action=(redirect.redirect_uri) {
                        @for (name, value) in &redirect.params {
                            input type="hidden" name=(name) value=(value);
                        }
                        p { "Your sign-in is being sent to the application." }
                        button type="submit" { "Continue" }
                    }
                },
            );
            page.form_targets.push(csp_source(&redirect.redirect_uri));
            page.script = true;
            page.into_response()
        }
        _ => {
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(value) = HeaderValue::from_str(&redirect.location()) {
                response.headers_mut().insert(LOCATION, value);
            }
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.extensions_mut().insert(OAuthBody);
            response
        }
    }
}

/// The sign-in form: user name and password (operations.md), a hidden CSRF
/// token, and whatever else the flow carries.
fn sign_in_form(
    action: &str,
    secure: bool,
    status: StatusCode,
    intro: Markup,
    error: Option<&str>,
    username: Option<&str>,
    user_code: Option<&str>,
) -> Page {
    let token = palisade_identity::grants::new_secret();
    let mut page = Page::new(
        status,
        "Sign in",
        html! {
            (intro)
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action=(action) {
                input type="hidden" name="csrf_token" value=(token);
                @if let Some(code) = user_code { input type="hidden" name="user_code" value=(code); }
                label for="username" { "User name" }
                // After a refusal the name is kept and the password is what to type.
                input #username type="text" name="username" autocomplete="username" required autofocus[username.is_none()] value=[username];
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required autofocus[username.is_some()];
                button type="submit" { "Sign in" }
            }
        },
    );
    page.csrf = Some((token, secure));
    page
}

/// Why a sign-in form did not sign anyone in.
enum Refused {
    /// What the person is told on the form again. The same words for an
    /// unknown user and a wrong password, so that no one learns which names exist.
    Said(String),
    /// The store failed: a page of its own.
    Failed(Response),
}

/// The user a sign-in form's name and password are of (counted towards the lockout).
async fn check_sign_in(
    app: &AppState,
    tenant: &str,
    username: &str,
    password: &str,
    peer: SocketAddr,
) -> Result<palisade_domain::identity::User, Refused> {
    let checked = app
        .tokens
        .check_password(tenant, username.trim(), password, peer.ip())
        .await;
    checked.map_err(|error| match error.aadsts {
        _ if error.status == 503 => Refused::Failed(error_page(&error)),
        50126 => Refused::Said("Your user name or password is incorrect.".into()),
        _ => Refused::Said(error.description),
    })
}

const STALE_FORM: &str =
    "This sign-in form has expired or was not sent from Palisade's page. Sign in again.";

fn parse_query(query: Option<&str>) -> Result<AuthorizeQuery, OAuthError> {
    serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| {
        OAuthError::new(
            400,
            "invalid_request",
            900144,
            format!("The request is malformed: {e}."),
        )
    })
}

fn is_secure(app: &AppState, uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    origin(app, uri, headers).starts_with("https://")
}

fn authorize_form(
    authorization: &Authorization,
    action: &str,
    secure: bool,
    status: StatusCode,
    error: Option<&str>,
    username: Option<&str>,
) -> Response {
    let intro = html! { p { "to continue to " strong { (authorization.app.display_name) } } };
    let hint = username.or(authorization.login_hint.as_deref());
    let mut page = sign_in_form(action, secure, status, intro, error, hint, None);
    // Chromium applies form-action to the redirect that follows the post.
    page.form_targets
        .push(csp_source(authorization.redirect_uri()));
    page.into_response()
}

/// The authorization request a page or a post carries in its query, checked;
/// or the answer to a request that cannot go on (a page, or a redirect).
async fn authorization_of(
    app: &AppState,
    tenant: &str,
    route: &MatchedPath,
    origin: &str,
    query: Option<&str>,
) -> Result<Authorization, Response> {
    let query = parse_query(query).map_err(|error| error_page(&error))?;
    let tenant = canonical_guid(tenant);
    match app
        .tokens
        .authorization(&tenant, version(route), origin, &query)
        .await
    {
        Ok(authorization) => Ok(authorization),
        Err(AuthorizeRefusal::Shown(error)) => Err(error_page(&error)),
        Err(AuthorizeRefusal::Redirected(to)) => Err(redirect(&to)),
    }
}

async fn authorize_page(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    route: MatchedPath,
    RawQuery(query): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let origin = origin(&app, &uri, &headers);
    match authorization_of(&app, &tenant, &route, &origin, query.as_deref()).await {
        Ok(authorization) => {
            let secure = is_secure(&app, &uri, &headers);
            let action = uri.to_string();
            authorize_form(&authorization, &action, secure, StatusCode::OK, None, None)
        }
        Err(answer) => answer,
    }
}

async fn authorize_sign_in(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    route: MatchedPath,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let origin = origin(&app, &parts.uri, &parts.headers);
    let authorization =
        match authorization_of(&app, &tenant, &route, &origin, query.as_deref()).await {
            Ok(authorization) => authorization,
            Err(answer) => return answer,
        };
    let tenant = authorization.app.tenant_id.clone();
    let secure = is_secure(&app, &parts.uri, &parts.headers);
    let action = parts.uri.to_string();
    let form = match read_sign_in_form(body).await {
        Ok(form) => form,
        Err(error) => return error_page(&error),
    };
    if !csrf_matches(&parts.headers, secure, form.csrf_token.as_deref()) {
        let status = StatusCode::FORBIDDEN;
        return authorize_form(
            &authorization,
            &action,
            secure,
            status,
            Some(STALE_FORM),
            None,
        );
    }
    let (Some(username), Some(password)) = (form.username.as_deref(), form.password.as_deref())
    else {
        let error = "Enter your user name and password.";
        let status = StatusCode::BAD_REQUEST;
        return authorize_form(&authorization, &action, secure, status, Some(error), None);
    };
    let user = match check_sign_in(&app, &tenant, username, password, peer).await {
        Ok(user) => user,
        Err(Refused::Failed(answer)) => return answer,
        Err(Refused::Said(said)) => {
            let status = StatusCode::OK;
            return authorize_form(
                &authorization,
                &action,
                secure,
                status,
                Some(&said),
                Some(username),
            );
        }
    };
    match app.tokens.grant_code(&authorization, &user).await {
        Ok(to) => redirect(&to),
        Err(error) => redirect(&authorization.refusal(&error)),
    }
}

async fn read_sign_in_form(body: axum::body::Body) -> Result<SignInForm, OAuthError> {
    let body = read_body(body).await.map_err(|_| {
        OAuthError::new(
            400,
            "invalid_request",
            900144,
            "The form could not be read.",
        )
    })?;
    serde_urlencoded::from_bytes(&body).map_err(|e| {
        OAuthError::new(
            400,
            "invalid_request",
            900144,
            format!("The form is malformed: {e}."),
        )
    })
}

/// The device authorization endpoint (RFC 8628 §3.1), answered in JSON.
async fn device_code(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    route: MatchedPath,
    request: Request,
) -> Response {
    #[derive(Deserialize)]
    struct DeviceCodeRequest {
        client_id: Option<String>,
        scope: Option<String>,
        resource: Option<String>,
    }
    let (parts, body) = request.into_parts();
    let tenant = canonical_guid(&tenant);
    let form: DeviceCodeRequest = match read_oauth_form(&parts.headers, body).await {
        Ok(form) => form,
        Err(error) => return oauth_error(&app, error, &request_id),
    };
    let origin = origin(&app, &parts.uri, &parts.headers);
    match app
        .tokens
        .start_device_flow(
            &tenant,
            version(&route),
            &origin,
            form.client_id.as_deref(),
            form.scope.as_deref(),
            form.resource.as_deref(),
        )
        .await
    {
        Ok(flow) => {
            let mut response = Json(flow).into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => oauth_error(&app, error, &request_id),
    }
}

/// The verification page's first form: the code shown on the device.
fn code_form(secure: bool, status: StatusCode, error: Option<&str>) -> Response {
    let token = palisade_identity::grants::new_secret();
    let mut page = Page::new(
        status,
        "Enter code",
        html! {
            p { "Enter the code displayed on your app or device." }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/devicelogin" {
                input type="hidden" name="csrf_token" value=(token);
                label for="user_code" { "Code" }
                input #user_code type="text" name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false" required autofocus;
                button type="submit" { "Next" }
            }
        },
    );
    page.csrf = Some((token, secure));
    page.into_response()
}

fn device_sign_in_form(
    pending: &PendingDevice,
    secure: bool,
    status: StatusCode,
    error: Option<&str>,
    username: Option<&str>,
) -> Response {
    let intro = html! {
        p { "Sign in to let " strong { (pending.app.display_name) } " on your device act for you." }
    };
    let code = pending.grant.user_code.as_deref();
    sign_in_form("/devicelogin", secure, status, intro, error, username, code).into_response()
}

async fn device_page(
    State(app): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    code_form(is_secure(&app, &uri, &headers), StatusCode::OK, None)
}

const UNKNOWN_CODE: &str =
    "That code is not valid or has expired. Check the code on your device and try again.";

async fn device_sign_in(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let secure = is_secure(&app, &parts.uri, &parts.headers);
    let form = match read_sign_in_form(body).await {
        Ok(form) => form,
        Err(error) => return error_page(&error),
    };
    if !csrf_matches(&parts.headers, secure, form.csrf_token.as_deref()) {
        return code_form(secure, StatusCode::FORBIDDEN, Some(STALE_FORM));
    }
    let typed = form.user_code.as_deref().unwrap_or("");
    let pending = match app.tokens.pending_device(typed).await {
        Ok(Some(pending)) => pending,
        Ok(None) => return code_form(secure, StatusCode::BAD_REQUEST, Some(UNKNOWN_CODE)),
        Err(error) => return error_page(&OAuthError::from(error)),
    };
    let (Some(username), Some(password)) = (form.username.as_deref(), form.password.as_deref())
    else {
        return device_sign_in_form(&pending, secure, StatusCode::OK, None, None);
    };
    let tenant = pending.grant.tenant_id.clone();
    let user = match check_sign_in(&app, &tenant, username, password, peer).await {
        Ok(user) => user,
        Err(Refused::Failed(answer)) => return answer,
        Err(Refused::Said(said)) => {
            return device_sign_in_form(
                &pending,
                secure,
                StatusCode::OK,
                Some(&said),
                Some(username),
            );
        }
    };
    match app.tokens.approve_device(&pending, &user).await {
        Ok(true) => Page::new(
            StatusCode::OK,
            "You are signed in",
            html! {
                p { "You have signed in to " strong { (pending.app.display_name) } " on your device as " strong { (user.username) } "." }
                p { "You may now close this window." }
            },
        )
        .into_response(),
        Ok(false) => code_form(secure, StatusCode::BAD_REQUEST, Some(UNKNOWN_CODE)),
        Err(error) => error_page(&OAuthError::from(error)),
    }
}

/// User realm discovery: every Palisade user signs in here with a password
/// ("Managed"), whoever is asked about, so that it tells no one which names exist.
async fn user_realm(Path(username): Path<String>) -> Response {
    let domain = username.rsplit_once('@').map_or("", |(_, d)| d);
    let mut response = Json(json!({
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": domain,
        "cloud_instance_name": "palisade",
        "cloud_audience_urn": "urn:federation:palisade",
    }))
    .into_response();
    response.extensions_mut().insert(OAuthBody);
    response
}

async fn stylesheet() -> Response {
    page::static_file(
        "text/css; charset=utf-8",
        include_str!("sign_in/sign-in.css"),
    )
}

async fn form_post_script() -> Response {
    page::static_file(
        "text/javascript; charset=utf-8",
        include_str!("sign_in/form-post.js"),
    )
}
