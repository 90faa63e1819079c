//! Which origins this server is reached by (`--public-url`, or loopback and
//! the listen address), and the refusal of requests naming any other host:
//! discovery documents, JWKS URLs, token issuers and OData links are made
//! from the origin a request came to, so a `Host` of the client's choosing
//! must not reach them.

use crate::app::AppState;
use crate::http::envelope::RequestId;
use crate::token_service::oauth_error;
use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_contract::{ErrorCode, MdeError};
use palisade_identity::service::OAuthError;

/// An origin given with `--public-url`: `http(s)://HOST[:PORT]`, no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    scheme: &'static str,
    /// Lower case; an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
}

impl std::str::FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .trim_end_matches('/')
            .parse()
            .map_err(|e| format!("'{text}' is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") => "http",
            _ => return Err(format!("'{text}' must start with https:// or http://")),
        };
        let authority = uri
            .authority()
            .filter(|a| !a.as_str().contains('@'))
            .ok_or_else(|| format!("'{text}' must name a host (and no user)"))?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!(
                "'{text}' must be an origin only (scheme, host, port): Palisade serves at the root"
            ));
        }
        Ok(PublicUrl {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl PublicUrl {
    /// Whether `authority` (of `Host` or `:authority`) names this origin.
    fn is_named_by(&self, authority: &str) -> bool {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        let wanted_port = self.port.unwrap_or(default_port);
        let authority = authority.trim();
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]` has colons of its own; a port follows the bracket.
            Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()),
            _ => (authority, Some(default_port)),
        };
        port == Some(wanted_port) && host.eq_ignore_ascii_case(&self.host)
    }
}

/// The origins requests are accepted for; the first is the one named where
/// a request names none (HTTP/1.0).
#[derive(Debug, Clone)]
pub struct PublicOrigins {
    origins: Vec<(PublicUrl, String)>,
    configured: bool,
}

/// Where clients on this machine reach a server listening on any address.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl PublicOrigins {
    /// The `--public-url`s; without any, the loopback names and the listen
    /// address (`listen_authority`, `HOST:PORT`), with the listen port.
    pub fn new(public_urls: &[PublicUrl], scheme: &'static str, listen_authority: &str) -> Self {
        let configured = !public_urls.is_empty();
        let urls = if configured {
            public_urls.to_vec()
        } else {
            let (listen_host, port) = listen_authority
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>().ok()))
                .unwrap_or((listen_authority, None));
            let mut hosts = vec![listen_host.to_ascii_lowercase()];
            for host in LOOPBACK_HOSTS {
                if !hosts.iter().any(|h| h == host) {
                    hosts.push(host.to_string());
                }
            }
            hosts
                .into_iter()
                .map(|host| PublicUrl { scheme, host, port })
                .collect()
        };
        PublicOrigins {
            origins: urls
                .into_iter()
                .map(|url| {
                    let origin = url.to_string();
                    (url, origin)
                })
                .collect(),
            configured,
        }
    }

    /// The origin `authority` names, if it is one of these.
    fn resolve(&self, authority: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|(url, _)| url.is_named_by(authority))
            .map(|(_, origin)| origin.as_str())
    }

    /// Where this server is reached when nothing else tells: the first.
    pub fn first(&self) -> &str {
        &self.origins[0].1
    }

    /// `{scheme}://{host}` a request was sent to: the base of OData links,
    /// discovery and JWKS URLs, and Palisade's own issuer. HTTP/2 names the
    /// host in `:authority`, HTTP/1.1 in `Host`; a request naming none is
    /// taken as sent to the first origin. (Others were refused by [`require_known_host`].)
    pub fn of_request(&self, uri: &Uri, headers: &HeaderMap) -> &str {
        request_authority(uri, headers)
            .and_then(|authority| self.resolve(authority))
            .unwrap_or_else(|| self.first())
    }

    fn listing(&self) -> String {
        let names: Vec<&str> = self.origins.iter().map(|(_, o)| o.as_str()).collect();
        names.join(", ")
    }
}

fn request_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
}

/// Whether `path` is one the token service answers (Entra's error shape).
fn is_token_service_path(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/').skip(1);
    matches!(
        segments.next(),
        Some("oauth2" | "v2.0" | ".well-known" | "discovery")
    )
}

/// Refuses a request whose host is none of the server's origins.
/// `/healthz` is answered whatever the host: load balancers and probes
/// name the node's own address, and it reflects nothing.
pub async fn require_known_host(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(authority) = request_authority(request.uri(), request.headers()) else {
        return next.run(request).await;
    };
    if app.origins.resolve(authority).is_some() || request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let hint = if app.origins.configured {
        format!(
            "add it with --public-url if clients reach this server by it (now: {})",
            app.origins.listing()
        )
    } else {
        format!(
            "without --public-url only loopback and the listen address are served ({}); start the server with --public-url {}://{authority} if clients reach it by that name",
            app.origins.listing(),
            app.scheme
        )
    };
    let message = format!("The host '{authority}' is not one this server is reached by: {hint}.");
    if is_token_service_path(request.uri().path()) {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let error = OAuthError::new(400, "invalid_request", 9002313, message);
        return oauth_error(&app, error, &request_id);
    }
    crate::http::error::ApiError(MdeError::new(ErrorCode::BadRequest, message)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(urls: &[&str]) -> PublicOrigins {
        let urls: Vec<PublicUrl> = urls.iter().map(|u| u.parse().unwrap()).collect();
        PublicOrigins::new(&urls, "http", "127.0.0.1:8080")
    }

    #[test]
    fn a_host_resolves_to_the_origin_it_names() {
        let public = origins(&["https://Palisade.Example", "http://10.0.0.5:8080/"]);
        assert_eq!(
            public.resolve("palisade.example"),
            Some("https://palisade.example")
        );
        assert_eq!(
            public.resolve("palisade.example:443"),
            Some("https://palisade.example")
        );
        assert_eq!(
            public.resolve("10.0.0.5:8080"),
            Some("http://10.0.0.5:8080")
        );
        assert_eq!(public.resolve("palisade.example:8443"), None);
        assert_eq!(public.resolve("localhost:8080"), None);
        assert_eq!(public.resolve("evil.example"), None);
    }

    #[test]
    fn without_public_urls_loopback_and_the_listen_address_are_served() {
        let local = origins(&[]);
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
        ] {
            assert!(local.resolve(host).is_some(), "{host}");
        }
        for host in ["localhost", "localhost:8081", "evil.example:8080", "[::1]"] {
            assert!(local.resolve(host).is_none(), "{host}");
        }
        let wide = PublicOrigins::new(&[], "https", "192.0.2.7:8443");
        assert_eq!(
            wide.resolve("192.0.2.7:8443"),
            Some("https://192.0.2.7:8443")
        );
        assert_eq!(wide.first(), "https://192.0.2.7:8443");
    }

    #[test]
    fn a_public_url_is_an_origin() {
        for bad in [
            "palisade.example",
            "ftp://palisade.example",
            "https://palisade.example/api",
            "https://u@palisade.example",
            "https://x.example/?a=1",
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad}");
        }
    }
}
