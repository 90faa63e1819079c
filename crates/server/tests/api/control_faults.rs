//! Fault rules (`/_palisade/v1/tenants/{t}/faults`): errors and latency
//! injected into the MDE API and the token service, counted and spent.

use crate::control_plane::{act, control, palisade_cli};
use crate::harness::*;
use palisade_contract::OsPlatform;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn faults(server: &TestServer) -> String {
    format!("/tenants/{}/faults", server.tenant_id)
}

pub(crate) async fn add_fault(server: &TestServer, rule: Value) -> Value {
    let operator = Some(server.operator_token.as_str());
    let reply = control(server, operator, Method::POST, &faults(server), Some(rule)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

async fn list_faults(server: &TestServer) -> Value {
    let operator = Some(server.operator_token.as_str());
    let reply = control(server, operator, Method::GET, &faults(server), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

#[tokio::test]
async fn a_429_with_retry_after_for_the_first_three_calls_then_the_real_answer() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let rule = add_fault(
        &server,
        json!({"match": {"operation": "ListMachines"}, "count": 3,
               "response": {"status": 429, "retryAfter": 7}}),
    )
    .await;
    assert_eq!(rule["hits"], 0);
    assert_eq!(rule["spent"], false);
    for _ in 0..3 {
        let reply = server.get("/api/machines").await;
        let message = reply.assert_error(429, "TooManyRequests");
        assert!(message.contains("7 seconds"), "{message}");
        assert_eq!(reply.headers["retry-after"], "7");
        // The body is MDE's, with the request id as target.
        assert!(reply.json["error"]["target"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    let real = server.get("/api/machines").await;
    assert_eq!(real.status, 200, "{}", real.text);
    assert_eq!(real.value_ids(), vec![m.id.clone()]);
    // Other operations were never touched.
    assert_eq!(
        server.get(&format!("/api/machines/{}", m.id)).await.status,
        200
    );
    let listed = list_faults(&server).await;
    assert_eq!(listed["value"][0]["hits"], 3, "{listed}");
    assert_eq!(listed["value"][0]["spent"], true, "{listed}");
}

#[tokio::test]
async fn latency_delays_the_real_answer_and_every_nth_call_mimics_read_after_write_lag() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    add_fault(
        &server,
        json!({"match": {"operation": "GetMachine"}, "latency": "PT0.4S"}),
    )
    .await;
    let started = Instant::now();
    let slow = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(slow.status, 200, "{}", slow.text);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );

    add_fault(
        &server,
        json!({"match": {"operation": "GetAction"}, "everyNth": 2,
               "response": {"status": 404, "message": "Action was not found"}}),
    )
    .await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/machineactions/{id}");
    let seen: Vec<u16> = {
        let mut seen = vec![];
        for _ in 0..4 {
            seen.push(server.get(&path).await.status.as_u16());
        }
        seen
    };
    assert_eq!(seen, [200, 404, 200, 404]);
    let fifth = server.get(&path).await;
    assert_eq!(fifth.status, 200, "{}", fifth.text);
    assert_eq!(fifth.json["id"], id.as_str());
    let listed = list_faults(&server).await;
    assert_eq!(listed["value"][1]["hits"], 2, "{listed}");
}

#[tokio::test]
async fn a_rule_for_one_caller_leaves_the_others_alone_and_a_deleted_rule_stops() {
    let server = TestServer::start().await;
    let other = server.app_token("Other app", &all_permissions()).await;
    let other_id = jwt_claims(&other)["appid"].as_str().unwrap().to_string();
    let rule = add_fault(
        &server,
        json!({"match": {"caller": other_id}, "response": {"status": 503}}),
    )
    .await;
    assert_eq!(server.get("/api/machines").await.status, 200);
    let refused = server.get_as(Some(&other), "/api/machines").await;
    refused.assert_error(503, "ServiceUnavailable");
    let operator = Some(server.operator_token.as_str());
    let one = format!("{}/{}", faults(&server), rule["id"].as_str().unwrap());
    let deleted = control(&server, operator, Method::DELETE, &one, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let again = control(&server, operator, Method::DELETE, &one, None).await;
    again.assert_error(404, "ResourceNotFound");
    assert_eq!(
        server.get_as(Some(&other), "/api/machines").await.status,
        200
    );
}

#[tokio::test]
async fn the_token_service_answers_a_fault_as_entra_does() {
    let server = TestServer::start().await;
    add_fault(
        &server,
        json!({"match": {"operation": "Token"}, "count": 1,
               "response": {"status": 503, "retryAfter": 2}}),
    )
    .await;
    let (app, secret) = server
        .admin
        .put_app(&server.tenant_id, None, "Retrying app", &all_permissions())
        .await
        .unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app.client_id.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ];
    let refused = server.token_request(&form).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.json["error"], "temporarily_unavailable",
        "{}",
        refused.text
    );
    assert!(refused.json["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS"));
    assert_eq!(refused.headers["retry-after"], "2");
    let issued = server.token_request(&form).await;
    assert_eq!(issued.status, 200, "{}", issued.text);
    assert!(issued.json["access_token"].is_string());
}

#[tokio::test]
async fn a_fault_rule_that_cannot_apply_is_refused_naming_the_field() {
    let server = TestServer::start().await;
    let operator = Some(server.operator_token.as_str());
    for (rule, field) in [
        (
            json!({"match": {"operation": "Isolated"}, "response": {"status": 500}}),
            "match.operation",
        ),
        (json!({"count": 2}), "response"),
        (json!({"response": {"status": 200}}), "response.status"),
        (
            json!({"probability": 1.5, "response": {"status": 500}}),
            "probability",
        ),
        (
            json!({"everyNth": 0, "response": {"status": 500}}),
            "everyNth",
        ),
        (json!({"latency": "PT301S"}), "latency"),
        (
            json!({"response": {"status": 500, "code": "NoSuchCode"}}),
            "code",
        ),
        (json!({"response": {"status": 500}, "hit": 1}), "hit"),
    ] {
        let reply = control(
            &server,
            operator,
            Method::POST,
            &faults(&server),
            Some(rule.clone()),
        )
        .await;
        assert_eq!(reply.status, 400, "{rule}: {}", reply.text);
        let message = reply.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{rule}: {message}");
    }
    assert_eq!(list_faults(&server).await, json!({"value": []}));
    let unknown = "/tenants/00000000-0000-0000-0000-00000000dead/faults";
    control(&server, operator, Method::GET, unknown, None)
        .await
        .assert_error(404, "ResourceNotFound");
    // MDE tokens do not open it.
    control(
        &server,
        Some(&server.token),
        Method::GET,
        &faults(&server),
        None,
    )
    .await
    .assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn faults_and_the_clock_are_set_from_the_command_line_as_over_http() {
    let server = TestServer::start().await;
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--tenant", server.tenant_id.as_str()]);
        palisade_cli(&server.database, &all)
    };
    let rule = r#"{"match":{"operation":"ListMachines"},"count":1,"response":{"status":500}}"#;
    let added = cli(&["emulator", "faults", "add", rule]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let added: Value = serde_json::from_slice(&added.stdout).unwrap();
    assert_eq!(list_faults(&server).await["value"][0]["id"], added["id"]);
    // The server reads rules set elsewhere again every second.
    let mut status = 200;
    for _ in 0..30 {
        status = server.get("/api/machines").await.status.as_u16();
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 500, "the rule set from the command line applied");
    assert_eq!(
        server.get("/api/machines").await.status,
        200,
        "and was spent"
    );
    let listed = cli(&["emulator", "faults", "list"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["value"][0]["spent"], true, "{listed}");
    let bad = cli(&[
        "emulator",
        "faults",
        "add",
        r#"{"response":{"status":200}}"#,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("response.status"));
    assert!(cli(&["emulator", "faults", "clear"]).status.success());
    assert_eq!(list_faults(&server).await, json!({"value": []}));

    let advanced = cli(&["emulator", "clock", "advance", "P1D"]);
    assert!(
        advanced.status.success(),
        "{}",
        String::from_utf8_lossy(&advanced.stderr)
    );
    let shown: Value = serde_json::from_slice(&advanced.stdout).unwrap();
    assert!(
        shown["offset"].as_str().unwrap().starts_with("P1D"),
        "{shown}"
    );
    let operator = Some(server.operator_token.as_str());
    let path = format!("/tenants/{}/clock", server.tenant_id);
    let over_http = control(&server, operator, Method::GET, &path, None).await;
    assert!(
        over_http.json["offset"]
            .as_str()
            .unwrap()
            .starts_with("P1D"),
        "{}",
        over_http.text
    );
    let frozen = cli(&["emulator", "clock", "freeze"]);
    let frozen: Value = serde_json::from_slice(&frozen.stdout).unwrap();
    assert_eq!(frozen["mode"], "frozen");
    let back = cli(&[
        "emulator",
        "clock",
        "freeze",
        "--at",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(back.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&back.stderr).contains("backwards"));
}
