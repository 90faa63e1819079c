//! The emulator control plane (`/_palisade/v1`, `control-plane.md`): only
//! the operator token opens it, per tenant; outcome rules kept in order.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};

const BASE: &str = "/_palisade/v1";

/// A call to the control plane with `token` (`None`: no Authorization).
async fn control(
    server: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = reqwest::Client::new().request(method, server.url(&format!("{BASE}{path}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

fn outcomes(server: &TestServer) -> String {
    format!("/tenants/{}/outcomes", server.tenant_id)
}

#[tokio::test]
async fn only_the_operator_token_opens_the_control_plane_and_it_opens_nothing_else() {
    let server = TestServer::start().await;
    let path = outcomes(&server);
    let operator = Some(server.operator_token.as_str());
    let refused = [
        None,
        Some("palisade_operator_not-the-one"),
        // An MDE access token of an app holding every permission.
        Some(server.token.as_str()),
    ];
    for token in refused {
        let reply = control(&server, token, Method::GET, &path, None).await;
        let message = reply.assert_error(401, "Unauthorized");
        assert!(message.contains("operator token"), "{message}");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        let reply = control(&server, token, Method::DELETE, &path, None).await;
        reply.assert_error(401, "Unauthorized");
    }
    let reply = control(&server, operator, Method::GET, &path, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json, json!({"value": []}));

    // The MDE API does not take the operator token.
    let mde = server.get_as(operator, "/api/machines").await;
    mde.assert_error(401, "Unauthorized");

    // A tenant that does not exist is not found, whatever is asked of it.
    let unknown = "/tenants/00000000-0000-0000-0000-00000000dead/outcomes";
    for method in [Method::GET, Method::DELETE] {
        let reply = control(&server, operator, method, unknown, None).await;
        reply.assert_error(404, "ResourceNotFound");
    }
    let rule = json!({"script": [{"status": "Succeeded"}]});
    let reply = control(&server, operator, Method::POST, unknown, Some(rule)).await;
    reply.assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn outcome_rules_are_kept_in_order_first_or_last_and_removed_one_or_all() {
    let server = TestServer::start().await;
    let path = outcomes(&server);
    let operator = Some(server.operator_token.as_str());
    let add = |body: Value, query: &'static str| {
        let path = format!("{path}{query}");
        let server = &server;
        async move { control(server, operator, Method::POST, &path, Some(body)).await }
    };
    let isolate_fails = json!({
        "match": {"actionType": "Isolate", "namePrefix": "ws-", "tag": "VIP", "osPlatform": "Windows11"},
        "script": [
            {"status": "Pending", "polls": 2},
            {"status": "InProgress", "duration": "PT3S"},
            {"status": "Failed", "errorHResult": -2147024891, "troubleshootInfo": "Access denied"}
        ]
    });
    let first = add(isolate_fails.clone(), "").await;
    assert_eq!(first.status, 201, "{}", first.text);
    let first_id = first.json["id"].as_str().expect("an id").to_string();
    assert_eq!(first.json["match"], isolate_fails["match"]);
    assert_eq!(first.json["script"], isolate_fails["script"]);
    assert_eq!(first.json["hits"], 0);

    let anything = json!({"script": [{"status": "Succeeded", "duration": "PT0.5S"}]});
    let last = add(anything, "").await;
    assert_eq!(last.status, 201, "{}", last.text);
    assert_eq!(last.json["match"], json!({}));
    // Written back as ISO-8601 writes it.
    assert_eq!(last.json["script"][0]["duration"], "PT0.500S");
    let stuck = json!({"match": {"machineId": "0123"}, "script": [{"status": "Pending"}]});
    let before_all = add(stuck, "?position=0").await;
    assert_eq!(before_all.status, 201, "{}", before_all.text);

    let listed = control(&server, operator, Method::GET, &path, None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let ids = listed.value_ids();
    assert_eq!(
        ids,
        [&before_all.json["id"], &first.json["id"], &last.json["id"]]
            .map(|id| id.as_str().unwrap().to_string())
    );
    assert_eq!(
        listed.json["value"][1], first.json,
        "a rule reads back as it was answered"
    );

    let one = format!("{path}/{first_id}");
    let deleted = control(&server, operator, Method::DELETE, &one, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let again = control(&server, operator, Method::DELETE, &one, None).await;
    again.assert_error(404, "ResourceNotFound");
    let listed = control(&server, operator, Method::GET, &path, None).await;
    assert_eq!(listed.value_ids().len(), 2);

    let cleared = control(&server, operator, Method::DELETE, &path, None).await;
    assert_eq!(cleared.status, 204, "{}", cleared.text);
    let listed = control(&server, operator, Method::GET, &path, None).await;
    assert_eq!(listed.json, json!({"value": []}));
}

#[tokio::test]
async fn a_rule_that_cannot_be_carried_out_is_refused_naming_the_field() {
    let server = TestServer::start().await;
    let path = outcomes(&server);
    let operator = Some(server.operator_token.as_str());
    let refused = [
        (json!({"script": []}), "", "InvalidInput", "script"),
        (
            json!({"script": [{"status": "Succeeded", "polls": 1}, {"status": "Failed"}]}),
            "",
            "InvalidInput",
            "script[0].status",
        ),
        (
            json!({"script": [{"status": "Pending"}, {"status": "Succeeded"}]}),
            "",
            "InvalidInput",
            "script[0]",
        ),
        (
            json!({"script": [{"status": "Succeeded", "errorHResult": 5}]}),
            "",
            "InvalidInput",
            "errorHResult",
        ),
        (
            json!({"script": [{"status": "Pending", "duration": "3s"}, {"status": "Succeeded"}]}),
            "",
            "InvalidRequestBody",
            "ISO-8601",
        ),
        (
            json!({"script": [{"status": "Done"}]}),
            "",
            "InvalidRequestBody",
            "Done",
        ),
        (
            json!({"match": {"actionType": "Reboot"}, "script": [{"status": "Succeeded"}]}),
            "",
            "InvalidRequestBody",
            "Reboot",
        ),
        (
            json!({"match": {"name": "x"}, "script": [{"status": "Succeeded"}]}),
            "",
            "InvalidRequestBody",
            "name",
        ),
        (
            json!({"script": [{"status": "Succeeded"}]}),
            "?position=2",
            "InvalidInput",
            "position",
        ),
    ];
    for (body, query, code, named) in refused {
        let reply = control(
            &server,
            operator,
            Method::POST,
            &format!("{path}{query}"),
            Some(body.clone()),
        )
        .await;
        let message = reply.assert_error(400, code);
        assert!(message.contains(named), "{body}: {message}");
    }
    let listed = control(&server, operator, Method::GET, &path, None).await;
    assert_eq!(
        listed.json,
        json!({"value": []}),
        "nothing refused was kept"
    );
}

#[tokio::test]
async fn the_control_plane_has_an_openapi_document_of_its_own() {
    let server = TestServer::start().await;
    let reply = server.get_as(None, &format!("{BASE}/openapi.json")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let document = &reply.json;
    assert_eq!(document["servers"][0]["url"], BASE);
    let rules = &document["paths"]["/tenants/{tenantId}/outcomes"];
    assert_eq!(rules["get"]["operationId"], "ListOutcomeRules");
    assert_eq!(rules["post"]["operationId"], "AddOutcomeRule");
    assert_eq!(rules["delete"]["operationId"], "DeleteOutcomeRules");
    assert!(document["components"]["securitySchemes"]["operatorToken"].is_object());
    // Not in the MDE API's document.
    let mde = server.get_as(None, "/openapi.json").await;
    let paths = mde.json["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| !p.contains("outcomes")));
}

/// The operator token of a running server, from its demo credentials.
fn operator_token_of(server: &ServerProcess) -> String {
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(&server.credentials).unwrap()).unwrap();
    credentials["operator_token"]
        .as_str()
        .expect("operator_token in the demo credentials")
        .to_string()
}

async fn rules_status(server: &ServerProcess, token: &str) -> u16 {
    let url = format!(
        "{}{BASE}/tenants/{}/outcomes",
        server.origin,
        palisade_server::demo::DEMO_TENANT_ID
    );
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_operator_token_is_kept_across_restarts_and_rotated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let token = operator_token_of(&server);
    assert!(token.starts_with("palisade_operator_"), "{token}");
    assert_eq!(rules_status(&server, &token).await, 200);
    drop(server);

    let server = ServerProcess::start_in(dir.path(), &[]).await;
    assert_eq!(
        operator_token_of(&server),
        token,
        "a restart keeps the token"
    );
    assert_eq!(rules_status(&server, &token).await, 200);

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["emulator", "rotate-operator-token"])
        .env("PALISADE_DATABASE", database_url(dir.path()).await)
        .envs(shared_key_environment())
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let new_token = String::from_utf8(rotated.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(new_token.starts_with("palisade_operator_") && new_token != token);
    // The running server takes the new token at once, and no longer the old.
    assert_eq!(rules_status(&server, &token).await, 401);
    assert_eq!(rules_status(&server, &new_token).await, 200);
}
