//! MDE matches path segments case-insensitively and serves every path under
//! `/api/v1.0/...` as well as `/api/...`. The router knows only the canonical
//! spelling; this rewrites a request's path to it before routing.
//!
//! The templates come from the OpenAPI document the router was built with, so
//! the rewrite can never disagree with the routes.

use axum::extract::{OriginalUri, Request};
use axum::http::Uri;

#[derive(Debug, Clone)]
pub struct PathCanon {
    /// Each route as segments; `None` is a `{parameter}`.
    templates: Vec<Vec<Option<String>>>,
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

    /// The canonical spelling of `path`, or `None` when it is already canonical
    /// or matches no route (the router will answer 404).
    pub fn canonical(&self, path: &str) -> Option<String> {
        let mut parts: Vec<&str> = segments(path).collect();
        let versioned = parts.len() > 1
            && parts[0].eq_ignore_ascii_case("api")
            && parts[1].eq_ignore_ascii_case("v1.0");
        if versioned {
            parts.remove(1);
        }
        let best = self
            .templates
            .iter()
            .filter(|t| t.len() == parts.len())
            .filter(|t| {
                t.iter().zip(&parts).all(|(literal, part)| match literal {
                    Some(literal) => literal.eq_ignore_ascii_case(part),
                    None => true,
                })
            })
            // Prefer the most literal template (`/machines/findbytag` over `/machines/{id}`).
            .max_by_key(|t| t.iter().filter(|s| s.is_some()).count())?;
        let rewritten: Vec<&str> = best
            .iter()
            .zip(&parts)
            .map(|(literal, part)| literal.as_deref().unwrap_or(part))
            .collect();
        let canonical = format!("/{}", rewritten.join("/"));
        (canonical != path).then_some(canonical)
    }

    pub fn rewrite(&self, mut request: Request) -> Request {
        if let Some(path) = self.canonical(request.uri().path()) {
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
            "/api/machines/AddOrRemoveTagForMultipleMachines",
        ])
    }

    #[test]
    fn rewrites_case_and_version() {
        let c = canon();
        assert_eq!(
            c.canonical("/API/Machines/ABC/Isolate").as_deref(),
            Some("/api/machines/ABC/isolate")
        );
        assert_eq!(
            c.canonical("/api/v1.0/machines").as_deref(),
            Some("/api/machines")
        );
        assert_eq!(
            c.canonical("/api/machines/addorremovetagformultiplemachines")
                .as_deref(),
            Some("/api/machines/AddOrRemoveTagForMultipleMachines")
        );
        assert_eq!(
            c.canonical("/api/machines/FindByTag").as_deref(),
            Some("/api/machines/findbytag")
        );
        assert_eq!(c.canonical("/api/machines"), None);
        assert_eq!(c.canonical("/nothing/here"), None);
    }
}
