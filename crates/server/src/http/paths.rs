//! MDE matches path segments case-insensitively and serves every path under
//! `/api/v1.0/...` as well as `/api/...`. The router knows only the canonical
//! spelling; this rewrites a request's path to it before routing.
//!
//! The templates come from the OpenAPI document the router was built with, so
//! the rewrite can never disagree with the routes. A template segment ending
//! in `()` is an OData function (`findbyip()`): a request names it with its
//! parameters inside the parentheses (`findbyip(ip='10.1.2.3',timestamp=...)`),
//! which the rewrite moves into a [`FunctionParameters`] extension, since no
//! router matches text inside a segment.

use axum::extract::{OriginalUri, Request};
use axum::http::Uri;

#[derive(Debug, Clone)]
pub struct PathCanon {
    /// Each route as segments; `None` is a `{parameter}`.
    templates: Vec<Vec<Option<String>>>,
}

/// The parameter list of the OData function a request called, as it stood
/// between the parentheses in the path (still percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionParameters(pub String);

/// The parameters of `part` if it calls the function `literal` (`name()`) names.
fn function_call<'a>(literal: &str, part: &'a str) -> Option<&'a str> {
    let name = literal.strip_suffix("()")?;
    let (head, rest) = (part.get(..name.len())?, part.get(name.len()..)?);
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    head.eq_ignore_ascii_case(name).then_some(inner)
}

impl PathCanon {
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> Self {
        let templates = routes
            .into_iter()
            .map(|route| {
                segments(route)
                    .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                    .collect()
            })
            .collect();
        PathCanon { templates }
    }

    /// The canonical spelling of `path`, and the parameters of the function
    /// it calls, if it matches a route (else the router will answer 404).
    fn resolve(&self, path: &str) -> Option<(String, Option<String>)> {
        let mut parts: Vec<&str> = segments(path).collect();
        let versioned = parts.len() > 1
            && parts[0].eq_ignore_ascii_case("api")
            && parts[1].eq_ignore_ascii_case("v1.0");
        if versioned {
            parts.remove(1);
        }
        let matches = |literal: &str, part: &str| {
            literal.eq_ignore_ascii_case(part) || function_call(literal, part).is_some()
        };
        let best = self
            .templates
            .iter()
            .filter(|t| t.len() == parts.len())
            .filter(|t| {
                t.iter().zip(&parts).all(|(literal, part)| match literal {
                    Some(literal) => matches(literal, part),
                    None => true,
                })
            })
            // Prefer the most literal template (`/machines/findbytag` over `/machines/{id}`).
            .max_by_key(|t| t.iter().filter(|s| s.is_some()).count())?;
        let mut parameters = None;
        let rewritten: Vec<&str> = best
            .iter()
            .zip(&parts)
            .map(|(literal, part)| match literal {
                Some(literal) => {
                    if let Some(inner) = function_call(literal, part) {
                        parameters = Some(inner.to_string());
                    }
                    literal.as_str()
                }
                None => part,
            })
            .collect();
        Some((format!("/{}", rewritten.join("/")), parameters))
    }

    pub fn rewrite(&self, mut request: Request) -> Request {
        let Some((path, parameters)) = self.resolve(request.uri().path()) else {
            return request;
        };
        if let Some(parameters) = parameters {
            request
                .extensions_mut()
                .insert(FunctionParameters(parameters));
        }
        if path != request.uri().path() {
            let original = OriginalUri(request.uri().clone());
            request.extensions_mut().insert(original);
            let path_and_query = match request.uri().query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            // Keep scheme and authority: HTTP/2 names the host only there.
            let mut parts = request.uri().clone().into_parts();
            if let Ok(pq) = path_and_query.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
            }
        }
        request
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon() -> PathCanon {
        PathCanon::new([
            "/api/machines",
            "/api/machines/{id}",
            "/api/machines/{id}/isolate",
            "/api/machines/findbytag",
            "/api/machines/findbyip()",
            "/api/machines/AddOrRemoveTagForMultipleMachines",
        ])
    }

    #[test]
    fn a_function_call_is_routed_to_its_function_with_its_parameters() {
        let c = canon();
        let call = "/api/v1.0/Machines/FindByIp(ip='10.1.2.3',timestamp=2019-09-22T08:44:05Z)";
        assert_eq!(
            c.resolve(call),
            Some((
                "/api/machines/findbyip()".to_string(),
                Some("ip='10.1.2.3',timestamp=2019-09-22T08:44:05Z".to_string())
            ))
        );
        assert_eq!(
            c.resolve("/api/machines/findbyip()"),
            Some(("/api/machines/findbyip()".to_string(), Some(String::new())))
        );
        // Not a call: an open parenthesis unclosed, or another name.
        for path in [
            "/api/machines/findbyip(ip='x'",
            "/api/machines/findby(ip='x')",
        ] {
            assert_eq!(c.resolve(path).unwrap().1, None, "{path}");
        }
        assert_eq!(c.resolve("/api/machines/findbytag(x)").unwrap().1, None);
    }

    /// The rewritten path, if it changes.
    fn canonical(c: &PathCanon, path: &str) -> Option<String> {
        c.resolve(path).map(|(p, _)| p).filter(|p| p != path)
    }

    #[test]
    fn rewrites_case_and_version() {
        let c = canon();
        assert_eq!(
            canonical(&c, "/API/Machines/ABC/Isolate").as_deref(),
            Some("/api/machines/ABC/isolate")
        );
        assert_eq!(
            canonical(&c, "/api/v1.0/machines").as_deref(),
            Some("/api/machines")
        );
        assert_eq!(
            canonical(&c, "/api/machines/addorremovetagformultiplemachines").as_deref(),
            Some("/api/machines/AddOrRemoveTagForMultipleMachines")
        );
        assert_eq!(
            canonical(&c, "/api/machines/FindByTag").as_deref(),
            Some("/api/machines/findbytag")
        );
        assert_eq!(canonical(&c, "/api/machines"), None);
        assert_eq!(canonical(&c, "/nothing/here"), None);
    }
}
