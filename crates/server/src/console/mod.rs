//! The web console at `/` (operations.md: Sign-in): server-rendered pages
//! with no build step. The console is an OAuth client of Palisade's own
//! authorization endpoint (`palisade_identity::console`) and an MDE API
//! client in process: every page reads, and every button calls, the MDE API
//! as the signed-in user ([`ConsoleCaller`]), so that the user's roles,
//! device groups, rate limits, faults and the audit log apply as they do to
//! scripts. It shows only the buttons the user may use; the API refuses the rest anyway.

mod machines;

use crate::app::AppState;
use crate::http::auth::{user_caller, ConsoleCaller};
use crate::http::envelope::RequestId;
use crate::http::extract::origin;
use crate::http::{page, read_body};
use crate::token_service::OAuthBody;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use maud::{html, Markup, DOCTYPE};
use palisade_contract::MdeError;
use palisade_domain::{Caller, Operation};
use palisade_identity::console::{
    console_app, ConsoleSession, CONSOLE_CLIENT_ID, CONSOLE_REDIRECT_PATH, SESSION_LIFETIME_SECONDS,
};
use palisade_identity::grants::{new_secret, pkce_challenge};
use palisade_identity::{TokenRequest, TokenVersion};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

/// What the console's handlers reach: the app, and the MDE API router they call.
#[derive(Clone)]
pub struct Console {
    app: AppState,
    api: Router,
}

const SESSION_COOKIE: &str = "palisade-console";
const SIGN_IN_COOKIE: &str = "palisade-console-sign-in";

pub fn routes(app: AppState, api: Router) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/console/machines") }))
        .route("/console", get(|| async { redirect("/console/machines") }))
        .route("/console/sign-in", get(sign_in))
        .route(CONSOLE_REDIRECT_PATH, get(signed_in))
        .route("/console/sign-out", post(sign_out))
        .merge(machines::routes())
        .route("/_palisade/static/console.css", get(stylesheet))
        .route("/_palisade/static/console.js", get(script))
        .with_state(Console { app, api })
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// A signed-in person, as one request sees them.
pub(crate) struct Signed {
    pub caller: Caller,
    pub session: ConsoleSession,
    host: Option<HeaderValue>,
}

impl Signed {
    /// Whether the user may call `operation` (what buttons they are shown).
    pub fn may(&self, operation: Operation) -> bool {
        self.caller.authorize(operation).is_ok()
    }
}

fn is_secure(app: &AppState, uri: &Uri, headers: &HeaderMap) -> bool {
    origin(app, uri, headers).starts_with("https://")
}

impl Console {
    /// The request's signed-in person; else, for a page, the way to sign in.
    pub(crate) async fn signed(&self, uri: &Uri, headers: &HeaderMap) -> Result<Signed, Response> {
        let name = page::cookie_name(SESSION_COOKIE, is_secure(&self.app, uri, headers));
        let mut found = None;
        for value in page::cookies(headers, &name) {
            match self.app.tokens.console_session(&value).await {
                Ok(Some(session)) => {
                    found = Some(session);
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()))
                }
            }
        }
        let Some(session) = found else {
            let back = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return", back)
                .finish();
            return Err(redirect(&format!("/console/sign-in?{query}")));
        };
        let tenant = match self.app.palisade.tenant(&session.user.tenant_id).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    "The session's tenant no longer exists.",
                ))
            }
            Err(error) => return Err(problem(StatusCode::SERVICE_UNAVAILABLE, &error.message)),
        };
        let mut permissions: Vec<_> = console_app(&tenant.id)
            .permissions
            .iter()
            .map(|p| p.delegated())
            .collect();
        permissions.sort_by_key(|p| p.as_str());
        permissions.dedup();
        Ok(Signed {
            caller: user_caller(tenant, session.user.clone(), permissions),
            session,
            host: headers.get(HOST).cloned(),
        })
    }

    /// Calls the MDE API as the signed-in user: its JSON answer, or its refusal's message.
    pub(crate) async fn api(
        &self,
        signed: &Signed,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<Value, (StatusCode, String)> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(host) = &signed.host {
            builder = builder.header(HOST, host);
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = builder
            .body(body)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        request
            .extensions_mut()
            .insert(ConsoleCaller(signed.caller.clone()));
        request
            .extensions_mut()
            .insert(RequestId(palisade_domain::ids::new_request_id()));
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let refusal = response.extensions().get::<MdeError>().cloned();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()));
        }
        let message = refusal.map(|e| e.message).unwrap_or_else(|| {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| status.to_string())
        });
        Err((status, message))
    }

    /// The form of a POST, after its CSRF token is checked against the session's.
    pub(crate) async fn form(
        &self,
        signed: &Signed,
        body: Body,
    ) -> Result<Vec<(String, String)>, Response> {
        let bytes = read_body(body)
            .await
            .map_err(|_| problem(StatusCode::BAD_REQUEST, "The form could not be read."))?;
        let fields: Vec<(String, String)> =
            url::form_urlencoded::parse(&bytes).into_owned().collect();
        let sent = field(&fields, "csrf_token").unwrap_or_default();
        let expected = signed.session.csrf_token.as_bytes();
        if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected)) {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "This form has expired or was not sent from the console's page: nothing was done. Reload the page and try again.",
            ));
        }
        Ok(fields)
    }
}

/// A page's signed-in person; without one, the way to sign in.
impl FromRequestParts<Console> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        console.signed(&parts.uri, &parts.headers).await
    }
}

/// A posted console form: who sent it and its fields, its CSRF token checked.
pub(crate) struct SignedForm {
    pub signed: Signed,
    pub fields: Vec<(String, String)>,
}

impl FromRequest<Console> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, console).await?;
        let fields = console.form(&signed, body).await?;
        Ok(SignedForm { signed, fields })
    }
}

/// The first value of a form's field.
pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A page of its own for what went wrong before any page could be shown.
fn problem(status: StatusCode, message: &str) -> Response {
    bare_page(
        status,
        "Something went wrong",
        html! { p.error role="alert" { (message) } p { a href="/console/machines" { "Back to the console" } } },
    )
}

/// A console page's head: its title, the stylesheet, and the script (if `script`).
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Palisade" }
            link rel="stylesheet" href="/_palisade/static/console.css";
            @if script { script src="/_palisade/static/console.js" defer {} }
        }
    }
}

/// A page without the signed-in frame (sign-in, sign-out, errors).
fn bare_page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { main #main { p.brand { "Palisade" } h1 { (title) } (body) } }
        }
    };
    let mut response = (status, markup).into_response();
    page::harden(response.headers_mut(), false, "'self'");
    response.extensions_mut().insert(OAuthBody);
    response
}

/// Where the console is, in its navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Machines,
    Actions,
}

/// A console page: the navigation, the user and sign-out, then `body`.
pub(crate) fn console_page(
    signed: &Signed,
    section: Section,
    title: &str,
    body: Markup,
) -> Response {
    let user = &signed.session.user;
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    let nav = [
        (Section::Machines, "/console/machines", "Machines"),
        (Section::Actions, "/console/actions", "Machine actions"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "Palisade" }
                    nav aria-label="Console" {
                        ul {
                            @for (s, href, label) in nav {
                                li { a href=(href) aria-current=[(s == section).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.user {
                        span #signed-in-user title=(roles.join(", ")) { (user.username) }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf_token" value=(signed.session.csrf_token);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { h1 { (title) } (body) }
            }
        }
    };
    let mut response = markup.into_response();
    page::harden(response.headers_mut(), true, "'self'");
    response.extensions_mut().insert(OAuthBody);
    response
}

/// What the sign-in cookie carries from the start of a sign-in to its return.
#[derive(Serialize, Deserialize)]
struct SignInState {
    state: String,
    verifier: String,
    tenant: String,
    back: String,
}

#[derive(Deserialize)]
struct SignInQuery {
    tenant: Option<String>,
    #[serde(rename = "return")]
    back: Option<String>,
}

/// A path of this console to go back to; anything else (another origin, `//host`) is not followed.
fn local_path(path: Option<&str>) -> String {
    match path {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/console/machines".into(),
    }
}

/// Sends a signed-out person to the authorization endpoint of their tenant
/// (the only one, or the one they name), with PKCE.
async fn sign_in(
    State(console): State<Console>,
    Query(query): Query<SignInQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let tenants = match console.app.palisade.store().tenants().await {
        Ok(tenants) => tenants,
        Err(error) => return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    };
    let named = query
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let tenant = match (named, tenants.as_slice()) {
        (Some(named), _) => tenants
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(named) || t.name.eq_ignore_ascii_case(named))
            .map(|t| t.id.clone()),
        (None, [only]) => Some(only.id.clone()),
        (None, _) => None,
    };
    let back = local_path(query.back.as_deref());
    let Some(tenant) = tenant else {
        let status = if named.is_some() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        return bare_page(
            status,
            "Sign in to Palisade",
            html! {
                @if named.is_some() { p.error role="alert" { "No tenant of that id or name is served here." } }
                form method="get" action="/console/sign-in" {
                    input type="hidden" name="return" value=(back);
                    label for="tenant" { "Tenant (id or name)" }
                    input #tenant type="text" name="tenant" required autofocus;
                    button type="submit" { "Continue" }
                }
            },
        );
    };
    let origin = origin(&console.app, &uri, &headers);
    let secure = origin.starts_with("https://");
    let state = SignInState {
        state: new_secret(),
        verifier: new_secret(),
        tenant: tenant.clone(),
        back,
    };
    let challenge = pkce_challenge(&state.verifier);
    let authorize = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", CONSOLE_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &format!("{origin}{CONSOLE_REDIRECT_PATH}"))
        .append_pair(
            "scope",
            "openid https://api.securitycenter.microsoft.com/.default",
        )
        .append_pair("state", &state.state)
        .append_pair("nonce", &new_secret())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let mut response = redirect(&format!("/{tenant}/oauth2/v2.0/authorize?{authorize}"));
    let carried = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&state).unwrap_or_default());
    let name = page::cookie_name(SIGN_IN_COOKIE, secure);
    page::set_cookie(
        response.headers_mut(),
        &name,
        Some(&carried),
        "/",
        secure,
        10,
    );
    response
}

#[derive(Deserialize)]
struct Returned {
    code: Option<String>,
    state: Option<String>,
    error_description: Option<String>,
}

/// The authorization endpoint's answer: the code redeemed at the token
/// service (as any client would), a session for its user.
async fn signed_in(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(returned): Query<Returned>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let origin = origin(&console.app, &uri, &headers);
    let secure = origin.starts_with("https://");
    let name = page::cookie_name(SIGN_IN_COOKIE, secure);
    let started = page::cookies(&headers, &name)
        .filter_map(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .filter_map(|v| serde_json::from_slice::<SignInState>(&v).ok())
        .find(|s| {
            returned
                .state
                .as_deref()
                .is_some_and(|r| bool::from(r.as_bytes().ct_eq(s.state.as_bytes())))
        });
    let again = |message: &str| {
        bare_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            html! {
                p.error role="alert" { (message) }
                p { a href="/console/sign-in" { "Sign in again" } }
            },
        )
    };
    let Some(started) = started else {
        return again(
            "This sign-in was not started here, or took too long. Nothing was signed in.",
        );
    };
    if let Some(error) = &returned.error_description {
        return again(error);
    }
    let request = TokenRequest {
        grant_type: Some("authorization_code".into()),
        client_id: Some(CONSOLE_CLIENT_ID.into()),
        code: returned.code.clone(),
        redirect_uri: Some(format!("{origin}{CONSOLE_REDIRECT_PATH}")),
        code_verifier: Some(started.verifier.clone()),
        ..TokenRequest::default()
    };
    let tokens = &console.app.tokens;
    let issued = tokens
        .issue(
            &started.tenant,
            TokenVersion::V2,
            &origin,
            peer.ip(),
            request,
        )
        .await;
    let issued = match issued {
        Ok(issued) => issued,
        Err(error) => return again(&error.description),
    };
    // The token was just issued here: its signature and claims are checked all the same.
    let verified = match console
        .app
        .validator
        .verify(&issued.access_token, &origin)
        .await
    {
        Ok(verified) => verified,
        Err(error) => return again(&error.to_string()),
    };
    let id = verified.claims.oid.clone().unwrap_or_default();
    let user = match console
        .app
        .palisade
        .store()
        .user(&started.tenant, &id)
        .await
    {
        Ok(user) => user,
        Err(error) => return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    };
    let Some(user) = user else {
        return again("The sign-in's user could not be found.");
    };
    let cookie = match tokens.start_console_session(&user).await {
        Ok(cookie) => cookie,
        Err(error) => return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    };
    let mut response = redirect(&local_path(Some(&started.back)));
    let headers = response.headers_mut();
    page::set_cookie(headers, &name, None, "/", secure, 0);
    let session = page::cookie_name(SESSION_COOKIE, secure);
    page::set_cookie(
        headers,
        &session,
        Some(&cookie),
        "/",
        secure,
        SESSION_LIFETIME_SECONDS / 60,
    );
    response
}

async fn sign_out(
    State(console): State<Console>,
    uri: Uri,
    headers: HeaderMap,
    SignedForm { signed, .. }: SignedForm,
) -> Response {
    if let Err(error) = console
        .app
        .tokens
        .end_console_session(&signed.session)
        .await
    {
        return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string());
    }
    let secure = is_secure(&console.app, &uri, &headers);
    let mut response = bare_page(
        StatusCode::OK,
        "Signed out",
        html! {
            p role="status" { "You are signed out of the Palisade console." }
            p { a href="/console/sign-in" { "Sign in again" } }
        },
    );
    let name = page::cookie_name(SESSION_COOKIE, secure);
    page::set_cookie(response.headers_mut(), &name, None, "/", secure, 0);
    response
}

async fn stylesheet() -> Response {
    page::static_file("text/css; charset=utf-8", include_str!("console.css"))
}

async fn script() -> Response {
    page::static_file("text/javascript; charset=utf-8", include_str!("console.js"))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn a_sign_in_goes_back_only_to_a_page_of_this_console() {
        assert_eq!(
            local_path(Some("/console/machines/42?x=1")),
            "/console/machines/42?x=1"
        );
        for elsewhere in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "machines",
            "",
        ] {
            assert_eq!(
                local_path(Some(elsewhere)),
                "/console/machines",
                "{elsewhere}"
            );
        }
        assert_eq!(local_path(None), "/console/machines");
    }
}
