//! Tokens of an external OIDC provider (Entra ID, Keycloak...) configured as
//! a trusted issuer: its keys are found through its discovery document.

use crate::harness::*;
use axum::routing::get;
use axum::Json;
use palisade_contract::OsPlatform;
use palisade_domain::identity::SigningKey;
use palisade_domain::Role;
use palisade_identity::keys;
use palisade_identity::tokens::{self, Claims};
use palisade_identity::ExternalIssuer;
use serde_json::json;

/// A minimal OIDC provider: discovery and JWKS for one key. Returns its issuer.
async fn start_provider(key: &SigningKey) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}/realms/corp", listener.local_addr().unwrap());
    let jwks = serde_json::to_value(keys::jwks(
        std::slice::from_ref(key),
        &issuer,
        palisade_contract::Timestamp::now(),
    ))
    .unwrap();
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
    });
    let app = axum::Router::new()
        .route(
            "/realms/corp/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route(
            "/realms/corp/protocol/openid-connect/certs",
            get(move || async move { Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

#[tokio::test]
async fn tokens_of_a_configured_issuer_are_accepted_and_mapped() {
    let key = keys::generate("external", palisade_contract::Timestamp::now());
    let issuer = start_provider(&key).await;
    let server = TestServer::start_with(Options {
        external_issuers: vec![ExternalIssuer {
            issuer: issuer.clone(),
            jwks_uri: None,
            tenant_id: palisade_server::app::DEFAULT_TENANT_ID.into(),
            audiences: vec![],
        }],
        ..Options::default()
    })
    .await;
    let m = machine(OsPlatform::Windows11);
    server.put_machines(std::slice::from_ref(&m)).await;
    let now = server.palisade.now().unix_seconds();
    let base = Claims {
        aud: "https://api.securitycenter.microsoft.com".into(),
        iss: issuer.clone(),
        iat: now,
        nbf: now,
        exp: now + 600,
        tid: "keycloak-realm".into(),
        sub: "svc".into(),
        azp: Some("soar-playbook".into()),
        ..Claims::default()
    };

    // An application token: `roles` are its permissions.
    let app = tokens::sign(
        &key,
        &Claims {
            roles: Some(vec!["Machine.Read.All".into()]),
            ..base.clone()
        },
    )
    .unwrap();
    let list = server.get_as(Some(&app), "/api/machines").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["value"][0]["id"], m.id.as_str());
    server
        .post_as(
            &app,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");

    // Keycloak's shape: `aud` an array, no `tid`, no `nbf`.
    let keycloak = tokens::sign(
        &key,
        &Claims {
            aud: palisade_identity::tokens::Audience(vec![
                "account".into(),
                "https://api.securitycenter.microsoft.com".into(),
            ]),
            tid: String::new(),
            nbf: 0,
            roles: Some(vec!["Machine.Read.All".into()]),
            ..base.clone()
        },
    )
    .unwrap();
    let list = server.get_as(Some(&keycloak), "/api/machines").await;
    assert_eq!(list.status, 200, "{}", list.text);

    // A user unknown to Palisade: scopes from `scp`, MDE roles from `roles`.
    let user = Claims {
        scp: Some("Machine.Read Machine.Isolate".into()),
        preferred_username: Some("ext.user@corp.example".into()),
        roles: Some(vec!["View data".into()]),
        ..base.clone()
    };
    let viewer = tokens::sign(&key, &user).unwrap();
    assert_eq!(
        server.get_as(Some(&viewer), "/api/machines").await.status,
        200
    );
    let message = server
        .post_as(
            &viewer,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Active remediation actions"), "{message}");

    // Once Palisade knows the user, its roles and device groups apply.
    server
        .admin
        .put_user(
            &server.tenant_id,
            "ext.user@corp.example",
            &[Role::ViewData, Role::ActiveRemediationActions],
            palisade_domain::DeviceGroupAccess::All,
            None,
        )
        .await
        .unwrap();
    let reply = server
        .post_as(
            &viewer,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["requestor"], "ext.user@corp.example");

    // Same kid, another key: refused. An issuer not configured: refused.
    let mut impostor = keys::generate("external", palisade_contract::Timestamp::now());
    impostor.kid = key.kid.clone();
    let forged = tokens::sign(&impostor, &user).unwrap();
    let reply = server.get_as(Some(&forged), "/api/machines").await;
    assert!(reply
        .assert_error(401, "Unauthorized")
        .contains("signature"));
    let elsewhere = tokens::sign(
        &key,
        &Claims {
            iss: "https://idp.example/realms/other".into(),
            ..base.clone()
        },
    )
    .unwrap();
    let reply = server.get_as(Some(&elsewhere), "/api/machines").await;
    assert!(reply
        .assert_error(401, "Unauthorized")
        .contains("not trusted"));
}
