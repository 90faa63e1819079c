//! The origin of discovery, JWKS URLs, token issuers and OData links comes
//! from configuration (`--public-url`), not from a `Host` of the client's
//! choosing: other hosts are refused.

use crate::harness::{Options, Reply, TestServer};
use base64::Engine;
use reqwest::header::HOST;
use serde_json::Value;

fn discovery_path(server: &TestServer) -> String {
    format!(
        "/{}/v2.0/.well-known/openid-configuration",
        server.tenant_id
    )
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

impl TestServer {
    /// Gets a token of an app holding every permission, asking for it under `host`.
    async fn token_under(&self, host: &str) -> Reply {
        let (app, secret) = self
            .admin
            .put_app(
                &self.tenant_id,
                None,
                "Host test",
                &crate::harness::all_permissions(),
            )
            .await
            .unwrap();
        let url = self.url(&format!("/{}/oauth2/v2.0/token", self.tenant_id));
        let request = reqwest::Client::new().post(url).header(HOST, host).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ]);
        self.send(request).await
    }
}

/// Asserts the token service's Entra-shaped refusal of a host.
#[track_caller]
fn assert_entra_host_refusal(reply: &Reply, host: &str) {
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.json["error"], "invalid_request", "{}", reply.text);
    let description = reply.json["error_description"].as_str().unwrap();
    assert!(description.starts_with("AADSTS"), "{description}");
    assert!(description.contains(host), "{description}");
    assert!(description.contains("--public-url"), "{description}");
}

#[tokio::test]
async fn a_host_the_server_is_not_reached_by_is_refused() {
    let server = TestServer::start().await;
    let api = server
        .send(
            server
                .client
                .get(server.url("/api/machines"))
                .header(HOST, "evil.example"),
        )
        .await;
    let message = api.assert_error(400, "BadRequest");
    assert!(message.contains("'evil.example'"), "{message}");
    assert!(message.contains("--public-url"), "{message}");

    let discovery = reqwest::Client::new()
        .get(server.url(&discovery_path(&server)))
        .header(HOST, "evil.example");
    assert_entra_host_refusal(&server.send(discovery).await, "evil.example");
    let keys = reqwest::Client::new()
        .get(server.url(&format!("/{}/discovery/v2.0/keys", server.tenant_id)))
        .header(HOST, "evil.example:8080");
    assert_entra_host_refusal(&server.send(keys).await, "evil.example:8080");
    assert_entra_host_refusal(&server.token_under("evil.example").await, "evil.example");

    // Probes name the node's own address; health reflects nothing.
    let health = reqwest::Client::new()
        .get(server.url("/healthz"))
        .header(HOST, "10.1.2.3:8080");
    assert_eq!(server.send(health).await.status, 200);
}

#[tokio::test]
async fn without_public_urls_loopback_names_with_the_listen_port_are_served() {
    let server = TestServer::start().await;
    let port = server.origin.rsplit(':').next().unwrap().to_string();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let reply = server
            .send(
                reqwest::Client::new()
                    .get(server.url(&discovery_path(&server)))
                    .header(HOST, &host),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let jwks = reply.json["jwks_uri"].as_str().unwrap();
        assert!(jwks.starts_with(&format!("http://{host}/")), "{jwks}");
    }
    let other_port = reqwest::Client::new()
        .get(server.url(&discovery_path(&server)))
        .header(HOST, "localhost:1");
    assert_eq!(server.send(other_port).await.status, 400);
}

#[tokio::test]
async fn a_public_url_is_the_origin_of_discovery_tokens_and_links() {
    let server = TestServer::start_with(Options {
        public_urls: vec!["https://palisade.example".parse().unwrap()],
        ..Options::default()
    })
    .await;
    let discovery = server
        .send(
            reqwest::Client::new()
                .get(server.url(&discovery_path(&server)))
                .header(HOST, "palisade.example"),
        )
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text);
    assert_eq!(
        discovery.json["jwks_uri"],
        format!(
            "https://palisade.example/{}/discovery/v2.0/keys",
            server.tenant_id
        )
    );
    let issuer = format!("https://palisade.example/{}/v2.0", server.tenant_id);
    assert_eq!(discovery.json["issuer"], issuer);

    let reply = server.token_under("palisade.example:443").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let token = reply.json["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["iss"], issuer);

    // The token is honoured where it was issued, and links point there.
    let machines = server
        .send(
            reqwest::Client::new()
                .get(server.url("/api/machines"))
                .bearer_auth(token)
                .header(HOST, "palisade.example"),
        )
        .await;
    assert_eq!(machines.status, 200, "{}", machines.text);
    let context = machines.json["@odata.context"].as_str().unwrap();
    assert!(
        context.starts_with("https://palisade.example/api/"),
        "{context}"
    );

    // Configured, the loopback names are no longer served (the test's own origin is configured too).
    let port = server.origin.rsplit(':').next().unwrap().to_string();
    let localhost = reqwest::Client::new()
        .get(server.url(&discovery_path(&server)))
        .header(HOST, format!("localhost:{port}"));
    assert_entra_host_refusal(&server.send(localhost).await, "localhost");
}
