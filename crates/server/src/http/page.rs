//! What every HTML page Palisade serves (sign-in, console) is sent with:
//! a Content-Security-Policy without inline script or style, no framing,
//! no caching, no referrer; and the static files those pages load.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Hardens a page's headers: scripts only from this origin (if `script`),
/// forms posting only to `form_action` (CSP source list).
pub fn harden(headers: &mut HeaderMap, script: bool, form_action: &str) {
    let script = if script { "'self'" } else { "'none'" };
    let policy = format!("default-src 'none'; style-src 'self'; script-src {script}; connect-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert("content-security-policy", value);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Codes travel in URLs: no page tells another where it came from.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A static file of the pages (a stylesheet, a script), cached an hour.
pub fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The values of the request's cookies named `name`.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .flatten()
        .filter(move |c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` of this origin's pages: HttpOnly, SameSite=Lax, Secure
/// over HTTPS, for `minutes`; `None` removes it.
pub fn set_cookie(
    headers: &mut HeaderMap,
    name: &str,
    value: Option<&str>,
    path: &str,
    secure: bool,
    minutes: i64,
) {
    let mut cookie = cookie::Cookie::build((name.to_string(), value.unwrap_or("").to_string()))
        .path(path.to_string())
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::minutes(minutes))
        .build();
    if value.is_none() {
        cookie.make_removal();
    }
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(axum::http::header::SET_COOKIE, value);
    }
}

/// A cookie name bound to this origin over HTTPS (`__Host-`), plain otherwise.
pub fn cookie_name(name: &'static str, secure: bool) -> String {
    if secure {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}
