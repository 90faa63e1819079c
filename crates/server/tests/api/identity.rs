//! Tokens: the token service (v1, v2, password grant, discovery, JWKS, key
//! rotation) and the API's refusal of every kind of bad token.

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palisade_contract::{OsPlatform, Permission};
use palisade_domain::identity::SigningKey;
use palisade_domain::Role;
use palisade_identity::keys;
use palisade_identity::tokens::{self, Claims};
use serde_json::{json, Value};

const API: &str = "https://api.securitycenter.microsoft.com";

async fn active_key(server: &TestServer) -> SigningKey {
    server.tokens.active_key(&server.tenant_id).await.unwrap()
}

/// The claims of `token`, read without checking it.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Claims of a valid application token of the test server's tenant, to tamper with.
fn app_claims(server: &TestServer) -> Claims {
    let now = server.palisade.now().unix_seconds();
    Claims {
        aud: API.into(),
        iss: format!("{}/{}/v2.0", server.origin, server.tenant_id),
        iat: now,
        nbf: now,
        exp: now + 3600,
        tid: server.tenant_id.clone(),
        sub: "forged".into(),
        appid: Some("forged".into()),
        roles: Some(vec!["Machine.Read.All".into(), "Machine.Isolate".into()]),
        ..Claims::default()
    }
}

async fn refused(server: &TestServer, token: &str) -> String {
    let reply = server.get_as(Some(token), "/api/machines").await;
    let message = reply.assert_error(401, "Unauthorized");
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "a 401 says how to authenticate"
    );
    message
}

#[tokio::test]
async fn a_signed_token_of_our_own_is_accepted_and_tampered_ones_are_not() {
    let server = TestServer::start().await;
    let key = active_key(&server).await;
    let good = tokens::sign(&key, &app_claims(&server)).unwrap();
    let reply = server.get_as(Some(&good), "/api/machines").await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // HEAD needs what GET needs.
    let head = server
        .send(reqwest::Client::new().head(server.url("/api/machines")))
        .await;
    assert_eq!(head.status, 401);
    let head = server
        .send(server.client.head(server.url("/api/machines")))
        .await;
    assert_eq!(head.status, 200);

    // No token, or not a bearer one.
    let reply = server.get_as(None, "/api/machines").await;
    assert!(reply
        .assert_error(401, "Unauthorized")
        .contains("no Authorization"));
    assert_eq!(reply.headers["www-authenticate"], "Bearer");
    let reply = server
        .send(
            reqwest::Client::new()
                .get(server.url("/api/machines"))
                .basic_auth("user", Some("pass")),
        )
        .await;
    reply.assert_error(401, "Unauthorized");
    assert!(refused(&server, "not-a-jwt").await.contains("malformed"));

    // alg none: the same claims, no signature.
    let header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
        key.kid
    ));
    let payload = good.split('.').nth(1).unwrap();
    refused(&server, &format!("{header}.{payload}.")).await;

    // HS256 "signed" with the public key as the HMAC secret (algorithm confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &app_claims(&server),
        &EncodingKey::from_secret(key.modulus.as_bytes()),
    )
    .unwrap();
    assert!(refused(&server, &confused).await.contains("only RS256"));

    // Unknown kid.
    let mut other = keys::generate(&server.tenant_id, server.palisade.now());
    other.kid = "unknown-kid".into();
    let unknown = tokens::sign(&other, &app_claims(&server)).unwrap();
    assert!(refused(&server, &unknown).await.contains("unknown-kid"));

    // A known kid, but signed by another key.
    other.kid = key.kid.clone();
    let forged = tokens::sign(&other, &app_claims(&server)).unwrap();
    assert!(refused(&server, &forged).await.contains("signature"));

    // A payload changed after signing.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut claims = claims_of(&good);
    claims["roles"] = json!(["Machine.Offboard"]);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert!(refused(&server, &parts.join("."))
        .await
        .contains("signature"));
}

#[tokio::test]
async fn times_audiences_issuers_and_tenants_are_checked() {
    let server = TestServer::start().await;
    let key = active_key(&server).await;
    let sign = |change: &dyn Fn(&mut Claims)| {
        let mut claims = app_claims(&server);
        change(&mut claims);
        tokens::sign(&key, &claims).unwrap()
    };
    let now = server.palisade.now().unix_seconds();

    let expired = sign(&|c| {
        c.iat = now - 7200;
        c.nbf = now - 7200;
        c.exp = now - 600;
    });
    assert!(refused(&server, &expired).await.contains("expired"));
    // Within the five minutes of clock skew: still good.
    let just_expired = sign(&|c| c.exp = now - 60);
    assert_eq!(
        server
            .get_as(Some(&just_expired), "/api/machines")
            .await
            .status,
        200
    );

    let future = sign(&|c| c.nbf = now + 3600);
    assert!(refused(&server, &future).await.contains("not valid yet"));

    let wrong_aud = sign(&|c| c.aud = "https://graph.microsoft.com".into());
    assert!(refused(&server, &wrong_aud).await.contains("audience"));
    for aud in palisade_identity::tokens::ACCEPTED_AUDIENCES {
        let token = sign(&|c| c.aud = aud.into());
        assert_eq!(
            server.get_as(Some(&token), "/api/machines").await.status,
            200,
            "{aud}"
        );
    }

    let wrong_iss = sign(&|c| c.iss = format!("https://login.microsoftonline.com/{}/v2.0", c.tid));
    assert!(refused(&server, &wrong_iss).await.contains("issuer"));
    let v1_iss = sign(&|c| c.iss = format!("{}/{}/", server.origin, c.tid));
    assert_eq!(
        server.get_as(Some(&v1_iss), "/api/machines").await.status,
        200
    );

    // A tenant that does not exist here: no keys are trusted for it.
    let ghost = "11111111-2222-3333-4444-555555555555".to_string();
    let other_tenant = sign(&|c| {
        c.tid = ghost.clone();
        c.iss = format!("{}/{ghost}/v2.0", server.origin);
    });
    refused(&server, &other_tenant).await;
}

#[tokio::test]
async fn tenants_see_only_their_own_machines() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    // A second tenant, with its own app and key.
    let other = server
        .add_tenant("7b7b7b7b-0000-4000-8000-000000000002", "Fabrikam")
        .await;
    let (app, secret) = server
        .admin
        .put_app(&other.id, None, "Fabrikam app", &all_permissions())
        .await
        .unwrap();
    let reply = server
        .send(
            reqwest::Client::new()
                .post(server.url(&format!("/{}/oauth2/v2.0/token", other.id)))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", app.client_id.as_str()),
                    ("client_secret", secret.as_str()),
                    ("scope", "https://api.securitycenter.microsoft.com/.default"),
                ]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let token = reply.json["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&token)["tid"], other.id.as_str());

    let list = server.get_as(Some(&token), "/api/machines").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["value"], json!([]), "nothing of the first tenant");
    server
        .get_as(Some(&token), &format!("/api/machines/{}", m.id))
        .await
        .assert_error(404, "ResourceNotFound");
    let reply = server
        .post_as(
            &token,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await;
    reply.assert_error(404, "ResourceNotFound");

    // The other tenant's app cannot get a token in this tenant either.
    let reply = server
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json["error"], "unauthorized_client");

    // Its token, relabelled as this tenant's, fails: this tenant's keys did not sign it.
    let other_keys = server.tokens.signing_keys(&other.id).await.unwrap();
    let mut claims = app_claims(&server);
    claims.roles = Some(vec!["Machine.Read.All".into()]);
    let relabelled = tokens::sign(keys::active(&other_keys).unwrap(), &claims).unwrap();
    refused(&server, &relabelled).await;
}

#[tokio::test]
async fn app_permissions_decide_what_an_app_may_do() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reader = server
        .app_token("Reader", &[Permission::MachineReadAll])
        .await;
    assert_eq!(
        server.get_as(Some(&reader), "/api/machines").await.status,
        200
    );
    let message = server
        .post_as(
            &reader,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Machine.Isolate"), "{message}");
    server
        .post_as(
            &reader,
            &format!("/api/machines/{}/tags", m.id),
            json!({"Value": "x", "Action": "Add"}),
        )
        .await
        .assert_error(403, "Forbidden");

    let isolator = server
        .app_token("Isolator", &[Permission::MachineIsolate])
        .await;
    server
        .get_as(Some(&isolator), "/api/machines")
        .await
        .assert_error(403, "Forbidden");
    let reply = server
        .post_as(
            &isolator,
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.json["requestor"], "Isolator",
        "requestor is the app's name"
    );
    server
        .post_as(
            &isolator,
            &format!("/api/machines/{}/offboard", m.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");
}

#[tokio::test]
async fn user_roles_scopes_and_device_groups_decide_what_a_user_may_do() {
    let server = TestServer::start().await;
    server.put_group(1, "Workstations").await;
    server.put_group(3, "Finance").await;
    let mut workstation = machine(OsPlatform::Windows11);
    workstation.rbac_group_id = 1;
    let mut finance = machine(OsPlatform::Windows11);
    finance.rbac_group_id = 3;
    server
        .put_machines(&[workstation.clone(), finance.clone()])
        .await;
    let every = all_permissions();

    // Limited to Finance: the workstation does not exist for them.
    let responder = server
        .user_token(
            "finance.responder@contoso.example",
            &[Role::ViewData, Role::ActiveRemediationActions],
            Some(vec![3]),
            &every,
        )
        .await;
    let claims = claims_of(&responder);
    assert!(claims["scp"].as_str().unwrap().contains("Machine.Isolate"));
    assert_eq!(claims["upn"], "finance.responder@contoso.example");
    let list = server.get_as(Some(&responder), "/api/machines").await;
    assert_eq!(list.value_ids(), vec![finance.id.clone()]);
    let hidden = server
        .get_as(
            Some(&responder),
            &format!("/api/machines/{}", workstation.id),
        )
        .await;
    let unknown = server
        .get_as(
            Some(&responder),
            &format!("/api/machines/{}", "f".repeat(40)),
        )
        .await;
    hidden.assert_error(404, "ResourceNotFound");
    unknown.assert_error(404, "ResourceNotFound");
    assert_eq!(
        hidden.json["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&workstation.id, "ID"),
        unknown.json["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&"f".repeat(40), "ID"),
        "hidden and missing read the same"
    );
    server
        .post_as(
            &responder,
            &format!("/api/machines/{}/isolate", workstation.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(404, "ResourceNotFound");
    let reply = server
        .post_as(
            &responder,
            &format!("/api/machines/{}/isolate", finance.id),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["requestor"], "finance.responder@contoso.example");
    // Offboarding needs Global Admin.
    let message = server
        .post_as(
            &responder,
            &format!("/api/machines/{}/offboard", finance.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Global administrator"), "{message}");

    // A read-only user may read, not change.
    let reader = server
        .user_token("reader@contoso.example", &[Role::ViewData], None, &every)
        .await;
    assert_eq!(
        server.get_as(Some(&reader), "/api/machines").await.json["value"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let message = server
        .post_as(
            &reader,
            &format!("/api/machines/{}/tags", finance.id),
            json!({"Value": "x", "Action": "Add"}),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Manage security settings"), "{message}");

    // The role is there but the app was not granted the scope.
    let no_scope = server
        .user_token(
            "secops@contoso.example",
            &[Role::ViewData, Role::ActiveRemediationActions],
            None,
            &[Permission::MachineReadAll],
        )
        .await;
    assert_eq!(claims_of(&no_scope)["scp"], "Machine.Read");
    let message = server
        .post_as(
            &no_scope,
            &format!("/api/machines/{}/isolate", workstation.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("scope"), "{message}");

    // A Global Admin offboards, whatever the device groups.
    let admin = server
        .user_token(
            "admin@contoso.example",
            &[Role::GlobalAdministrator],
            Some(vec![3]),
            &every,
        )
        .await;
    let reply = server
        .post_as(
            &admin,
            &format!("/api/machines/{}/offboard", workstation.id),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    // A deleted user's token stops working.
    server
        .admin
        .delete_user(&server.tenant_id, "reader@contoso.example")
        .await
        .unwrap();
    refused(&server, &reader).await;
}

#[tokio::test]
async fn the_token_service_answers_as_entra_id_does() {
    let server = TestServer::start().await;
    let (app, secret) = server
        .admin
        .put_app(
            &server.tenant_id,
            None,
            "Script",
            &[Permission::MachineReadAll, Permission::MachineIsolate],
        )
        .await
        .unwrap();
    let id = app.client_id.as_str();

    // v2 with the documented scopes.
    for scope in [
        "https://api.securitycenter.microsoft.com/.default",
        "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
    ] {
        let reply = server
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", &secret),
                ("scope", scope),
            ])
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["token_type"], "Bearer");
        assert_eq!(reply.json["expires_in"], 3599);
        let claims = claims_of(reply.json["access_token"].as_str().unwrap());
        assert_eq!(claims["aud"], scope.trim_end_matches("/.default"));
        assert_eq!(
            claims["iss"],
            format!("{}/{}/v2.0", server.origin, server.tenant_id)
        );
        assert_eq!(claims["tid"], server.tenant_id.as_str());
        assert_eq!(claims["appid"], id);
        assert_eq!(claims["azp"], id);
        assert_eq!(
            claims["roles"],
            json!(["Machine.Isolate", "Machine.Read.All"])
        );
        assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() == 3600);
    }

    // v1 with resource=, and client_secret_basic.
    let reply = server
        .send(
            reqwest::Client::new()
                .post(server.url(&format!("/{}/oauth2/token", server.tenant_id)))
                .basic_auth(id, Some(&secret))
                .form(&[("grant_type", "client_credentials"), ("resource", API)]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["resource"], API);
    let v1 = reply.json["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        claims_of(&v1)["iss"],
        format!("{}/{}/", server.origin, server.tenant_id)
    );
    assert_eq!(claims_of(&v1)["ver"], "1.0");
    assert_eq!(server.get_as(Some(&v1), "/api/machines").await.status, 200);

    // Refusals, in Entra's shape.
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", "wrong"),
                ("scope", "https://api.securitycenter.microsoft.com/.default"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("scope", "https://api.securitycenter.microsoft.com/.default"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "00000000-0000-0000-0000-00000000dead"),
                ("client_secret", &secret),
                ("scope", "https://api.securitycenter.microsoft.com/.default"),
            ],
            400,
            "unauthorized_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", &secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
            400,
            "invalid_resource",
        ),
        (
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
                ),
                ("client_id", id),
            ],
            400,
            "unsupported_grant_type",
        ),
        (vec![("client_id", id)], 400, "invalid_request"),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id),
                ("client_secret", &secret),
                ("username", "nobody@contoso.example"),
                ("password", "wrong password"),
                ("scope", "https://api.securitycenter.microsoft.com/.default"),
            ],
            400,
            "invalid_grant",
        ),
    ];
    // A user cannot borrow an app's permissions without its secret.
    let no_secret = server
        .token_request(&[
            ("grant_type", "password"),
            ("client_id", id),
            ("username", "nobody@contoso.example"),
            ("password", "wrong password"),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(no_secret.status, 401);
    assert_eq!(no_secret.json["error"], "invalid_client");
    for (form, status, error) in cases {
        let reply = server.token_request(&form).await;
        assert_eq!(reply.status.as_u16(), status, "{form:?}: {}", reply.text);
        assert_eq!(reply.json["error"], error, "{form:?}: {}", reply.text);
        assert!(reply.json["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS"));
        assert!(reply.json["error_codes"].is_array());
    }
    let reply = server
        .send(
            reqwest::Client::new()
                .post(server.url("/4b1d0000-0000-0000-0000-000000000000/oauth2/v2.0/token"))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json["error_description"]
        .as_str()
        .unwrap()
        .contains("AADSTS90002"));
}

#[tokio::test]
async fn discovery_and_jwks_verify_issued_tokens_across_a_key_rotation() {
    let server = TestServer::start().await;
    let discovery = server
        .get_as(
            None,
            &format!(
                "/{}/v2.0/.well-known/openid-configuration",
                server.tenant_id
            ),
        )
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text);
    let issuer = format!("{}/{}/v2.0", server.origin, server.tenant_id);
    assert_eq!(discovery.json["issuer"], issuer.as_str());
    assert_eq!(
        discovery.json["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", server.origin, server.tenant_id)
    );
    let jwks_uri = discovery.json["jwks_uri"].as_str().unwrap().to_string();

    let verify = |jwks: &Value, token: &str| -> bool {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let Some(jwk) = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
        else {
            return false;
        };
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[API]);
        validation.set_issuer(&[issuer.as_str()]);
        jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
    };
    let before = server.token.clone();
    let jwks = server
        .send(reqwest::Client::new().get(&jwks_uri))
        .await
        .json;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(
        verify(&jwks, &before),
        "an outside client verifies our token with the JWKS"
    );

    let old_kid = active_key(&server).await.kid;
    let new_key = server
        .admin
        .rotate_key(&server.tokens, &server.tenant_id)
        .await
        .unwrap();
    assert_ne!(new_key.kid, old_kid);
    let after = server.app_token("After rotation", &all_permissions()).await;
    assert_eq!(
        jsonwebtoken::decode_header(&after).unwrap().kid.unwrap(),
        new_key.kid
    );
    let jwks = server
        .send(reqwest::Client::new().get(&jwks_uri))
        .await
        .json;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the old key is still published"
    );
    assert!(verify(&jwks, &before) && verify(&jwks, &after));
    // Both tokens work on the API: rotation breaks nothing still valid.
    assert_eq!(
        server.get_as(Some(&before), "/api/machines").await.status,
        200
    );
    assert_eq!(
        server.get_as(Some(&after), "/api/machines").await.status,
        200
    );

    // Once no token it signed can be valid, the old key is gone.
    server.clock.advance(keys::RETIRED_KEY_GRACE_SECONDS + 1);
    let jwks = server
        .send(reqwest::Client::new().get(&jwks_uri))
        .await
        .json;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], new_key.kid.as_str());
}

/// The `error_codes` of an Entra-shaped error, after checking its shape.
#[track_caller]
fn entra_error(reply: &Reply, status: u16, error: &str) -> Vec<u64> {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(reply.json["error"], error, "{}", reply.text);
    assert!(
        reply.json["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS")),
        "{}",
        reply.text
    );
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    reply.json["error_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no error_codes: {}", reply.text))
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_token_endpoint_answers_methods_basic_failures_tenant_case_and_big_bodies_as_entra_does(
) {
    let server = TestServer::start().await;
    let scope = ("scope", "https://api.securitycenter.microsoft.com/.default");

    // Only POST (and OPTIONS): a GET gets Entra's JSON error.
    for path in ["oauth2/v2.0/token", "oauth2/token"] {
        let url = server.url(&format!("/{}/{path}", server.tenant_id));
        let reply = server.send(reqwest::Client::new().get(&url)).await;
        assert_eq!(entra_error(&reply, 400, "invalid_request"), [900561]);
        assert!(
            reply.json["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS900561: The endpoint only accepts POST, OPTIONS requests. Received a GET request."),
            "{}",
            reply.text
        );
        let reply = server
            .send(reqwest::Client::new().request(reqwest::Method::OPTIONS, &url))
            .await;
        assert!(reply.status.is_success(), "{}", reply.text);
        assert_eq!(reply.headers["allow"], "POST, OPTIONS");
    }

    // A wrong secret: 401 either way; with HTTP Basic also how to authenticate (RFC 6749 §5.2).
    let (app, _) = server
        .admin
        .put_app(&server.tenant_id, None, "Basic", &all_permissions())
        .await
        .unwrap();
    let url = server.url(&format!("/{}/oauth2/v2.0/token", server.tenant_id));
    let basic = server
        .send(
            reqwest::Client::new()
                .post(&url)
                .basic_auth(&app.client_id, Some("wrong"))
                .form(&[("grant_type", "client_credentials"), scope]),
        )
        .await;
    assert_eq!(entra_error(&basic, 401, "invalid_client"), [7000215]);
    assert!(
        basic.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm="),
        "{:?}",
        basic.headers
    );
    let unknown = server
        .send(
            reqwest::Client::new()
                .post(&url)
                .basic_auth("00000000-0000-0000-0000-00000000dead", Some("wrong"))
                .form(&[("grant_type", "client_credentials"), scope]),
        )
        .await;
    assert_eq!(entra_error(&unknown, 401, "unauthorized_client"), [700016]);
    assert!(unknown.headers.contains_key("www-authenticate"));
    let form = server
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.client_id),
            ("client_secret", "wrong"),
            scope,
        ])
        .await;
    assert_eq!(entra_error(&form, 401, "invalid_client"), [7000215]);
    assert!(!form.headers.contains_key("www-authenticate"));

    // A tenant GUID in upper case is the same tenant; tokens name it in lower case.
    let tenant = palisade_domain::Tenant {
        id: "abcdef12-3456-4789-abcd-ef0123456789".into(),
        name: "Upper".into(),
        retention_days: 180,
    };
    server
        .palisade
        .store()
        .create_tenant(&tenant, &[], &[])
        .await
        .unwrap();
    let (app, secret_upper) = server
        .admin
        .put_app(&tenant.id, None, "Upper", &all_permissions())
        .await
        .unwrap();
    let upper = tenant.id.to_ascii_uppercase();
    let reply = server
        .send(
            reqwest::Client::new()
                .post(server.url(&format!("/{upper}/oauth2/v2.0/token")))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &app.client_id.to_ascii_uppercase()),
                    ("client_secret", &secret_upper),
                    scope,
                ]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let claims = claims_of(reply.json["access_token"].as_str().unwrap());
    let issuer = format!("{}/{}/v2.0", server.origin, tenant.id);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["tid"], tenant.id.as_str());
    let discovery = server
        .get_as(
            None,
            &format!("/{upper}/v2.0/.well-known/openid-configuration"),
        )
        .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text);
    assert_eq!(discovery.json["issuer"], issuer.as_str());
    let keys = server
        .get_as(None, &format!("/{upper}/discovery/v2.0/keys"))
        .await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    assert_eq!(keys.json["keys"].as_array().unwrap().len(), 1);

    // A body over the limit: Entra's shape, not MDE's.
    let padding = "a".repeat((1 << 20) + 1);
    let reply = server
        .send(
            reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=client_credentials&x={padding}")),
        )
        .await;
    entra_error(&reply, 413, "invalid_request");
}

#[tokio::test]
async fn wrong_secrets_and_passwords_lock_the_account_for_a_while() {
    let server = TestServer::start().await;
    let server = &server;
    let (app, secret) = server
        .admin
        .put_app(&server.tenant_id, None, "Target", &all_permissions())
        .await
        .unwrap();
    let (other, other_secret) = server
        .admin
        .put_app(&server.tenant_id, None, "Bystander", &all_permissions())
        .await
        .unwrap();
    let scope = ("scope", "https://api.securitycenter.microsoft.com/.default");
    let client_credentials = |client_id: &str, secret: &str| {
        let (client_id, secret) = (client_id.to_string(), secret.to_string());
        async move {
            server
                .token_request(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &client_id),
                    ("client_secret", &secret),
                    scope,
                ])
                .await
        }
    };
    let threshold = palisade_identity::lockout::THRESHOLD;
    for _ in 0..threshold {
        let reply = client_credentials(&app.client_id, "wrong").await;
        assert_eq!(entra_error(&reply, 401, "invalid_client"), [7000215]);
    }
    // Locked: even the right secret is refused, saying for how long.
    let locked = client_credentials(&app.client_id, &secret).await;
    assert_eq!(entra_error(&locked, 429, "invalid_client"), [50053]);
    assert_eq!(locked.headers["retry-after"], "60");
    // Another app is not locked with it.
    let reply = client_credentials(&other.client_id, &other_secret).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // The lock ends by itself; the next one lasts longer.
    server.clock.advance(61);
    for _ in 0..threshold {
        let reply = client_credentials(&app.client_id, "wrong").await;
        assert_eq!(entra_error(&reply, 401, "invalid_client"), [7000215]);
    }
    server.clock.advance(61);
    let locked = client_credentials(&app.client_id, &secret).await;
    assert_eq!(entra_error(&locked, 429, "invalid_client"), [50053]);
    assert_eq!(
        locked.headers["retry-after"], "59",
        "a second lock lasts two minutes"
    );
    server.clock.advance(60);
    let reply = client_credentials(&app.client_id, &secret).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Users: Entra's AADSTS50053, for known and unknown names alike.
    let (user, password) = server
        .admin
        .put_user(
            &server.tenant_id,
            "alice@contoso.example",
            &[palisade_domain::Role::ViewData],
            palisade_domain::DeviceGroupAccess::All,
            None,
        )
        .await
        .unwrap();
    let sign_in = |username: &str, password: &str| {
        let (username, password) = (username.to_string(), password.to_string());
        let (client_id, secret) = (other.client_id.clone(), other_secret.clone());
        async move {
            server
                .token_request(&[
                    ("grant_type", "password"),
                    ("client_id", &client_id),
                    ("client_secret", &secret),
                    ("username", &username),
                    ("password", &password),
                    scope,
                ])
                .await
        }
    };
    for name in [user.username.as_str(), "nobody@contoso.example"] {
        for _ in 0..threshold {
            let reply = sign_in(name, "wrong password").await;
            assert_eq!(entra_error(&reply, 400, "invalid_grant"), [50126]);
        }
        let locked = sign_in(name, &password).await;
        assert_eq!(entra_error(&locked, 400, "invalid_grant"), [50053]);
        assert!(locked.json["error_description"]
            .as_str()
            .unwrap()
            .contains("account is locked because the user tried to sign in too many times with an incorrect user ID or password"));
        assert_eq!(locked.headers["retry-after"], "60");
    }
    // The app the users signed in through is not locked by their passwords.
    let reply = client_credentials(&other.client_id, &other_secret).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    server.clock.advance(61);
    let reply = sign_in("ALICE@contoso.example", &password).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn wrong_secrets_from_elsewhere_do_not_lock_out_the_account_here() {
    let server = TestServer::start().await;
    let (app, secret) = server
        .admin
        .put_app(&server.tenant_id, None, "Target", &all_permissions())
        .await
        .unwrap();
    let attacker: std::net::IpAddr = [127, 0, 0, 2].into();
    let here: std::net::IpAddr = [127, 0, 0, 1].into();
    let form = |secret: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", secret),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ]
    };
    let right = Box::leak(secret.into_boxed_str());
    for _ in 0..palisade_identity::lockout::THRESHOLD {
        let reply = server.token_request_from(attacker, &form("wrong")).await;
        assert_eq!(entra_error(&reply, 401, "invalid_client"), [7000215]);
    }
    let locked = server.token_request_from(attacker, &form(right)).await;
    assert_eq!(entra_error(&locked, 429, "invalid_client"), [50053]);
    // The app's own caller, elsewhere, still signs in, and can still be locked on its own.
    let reply = server.token_request_from(here, &form(right)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn wrong_secrets_sent_side_by_side_are_counted_before_they_are_checked() {
    let server = TestServer::start().await;
    let (app, _) = server
        .admin
        .put_app(&server.tenant_id, None, "Target", &all_permissions())
        .await
        .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app.client_id.as_str()),
        ("client_secret", "wrong"),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ];
    let threshold = palisade_identity::lockout::THRESHOLD as usize;
    let url = server.url(&format!("/{}/oauth2/v2.0/token", server.tenant_id));
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..threshold * 4 {
        let request = reqwest::Client::new().post(&url).form(&form);
        attempts.spawn(async move { server_reply(request.send().await.unwrap()).await });
    }
    let replies = attempts.join_all().await;
    let checked = replies
        .iter()
        .filter(|reply| reply.status == 401)
        .inspect(|reply| assert_eq!(entra_error(reply, 401, "invalid_client"), [7000215]))
        .count();
    let refused = replies
        .iter()
        .filter(|reply| reply.status == 429)
        .inspect(|reply| assert_eq!(entra_error(reply, 429, "invalid_client"), [50053]))
        .count();
    assert_eq!(checked + refused, replies.len(), "only checked or refused");
    assert!(
        checked <= threshold,
        "{checked} wrong secrets were checked: at most {threshold} may be"
    );
}

#[tokio::test]
async fn an_unknown_client_or_user_takes_as_long_to_refuse_as_a_wrong_secret() {
    let server = TestServer::start().await;
    let server = &server;
    let scope = ("scope", "https://api.securitycenter.microsoft.com/.default");
    let (sign_in_app, sign_in_secret) = server
        .admin
        .put_app(&server.tenant_id, None, "Sign-in", &all_permissions())
        .await
        .unwrap();
    // Client credentials with a wrong secret, or (with a user name) the
    // password grant with a wrong password.
    let timed = |client_id: String, username: Option<String>| {
        let (app, secret) = (sign_in_app.client_id.clone(), sign_in_secret.clone());
        async move {
            let form = match &username {
                None => vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", "wrong"),
                    scope,
                ],
                Some(username) => vec![
                    ("grant_type", "password"),
                    ("client_id", app.as_str()),
                    ("client_secret", secret.as_str()),
                    ("username", username.as_str()),
                    ("password", "wrong password"),
                    scope,
                ],
            };
            let started = std::time::Instant::now();
            let reply = server.token_request(&form).await;
            let elapsed = started.elapsed();
            assert!(reply.status.is_client_error(), "{}", reply.text);
            assert_ne!(reply.json["error_codes"][0], 50053, "not locked");
            elapsed
        }
    };
    let median = |mut times: Vec<std::time::Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let (mut known_users, mut unknown_users) = (Vec::new(), Vec::new());
    let (mut app, mut user) = (String::new(), String::new());
    for attempt in 0..20 {
        // Fresh ones before the lockout would answer for them without a check.
        if attempt % palisade_identity::lockout::THRESHOLD == 0 {
            app = server
                .admin
                .put_app(&server.tenant_id, None, "Known", &all_permissions())
                .await
                .unwrap()
                .0
                .client_id;
            user = format!("known{attempt}@contoso.example");
            server
                .admin
                .put_user(
                    &server.tenant_id,
                    &user,
                    &[palisade_domain::Role::ViewData],
                    palisade_domain::DeviceGroupAccess::All,
                    None,
                )
                .await
                .unwrap();
        }
        known.push(timed(app.clone(), None).await);
        unknown.push(timed(uuid::Uuid::new_v4().to_string(), None).await);
        known_users.push(timed(String::new(), Some(user.clone())).await);
        let stranger = format!("{}@contoso.example", uuid::Uuid::new_v4().simple());
        unknown_users.push(timed(String::new(), Some(stranger)).await);
    }
    for (what, known, unknown) in [
        ("client", median(known), median(unknown)),
        ("user", median(known_users), median(unknown_users)),
    ] {
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "unknown {what} {unknown:?}, known {what} with a wrong secret {known:?}"
        );
    }
}
