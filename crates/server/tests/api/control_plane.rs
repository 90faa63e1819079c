//! The emulator control plane (`/_palisade/v1`, `control-plane.md`): only
//! the operator token opens it, per tenant; outcome rules kept in order.

use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) const BASE: &str = "/_palisade/v1";

/// A call to the control plane with `token` (`None`: no Authorization).
pub(crate) async fn control(
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

pub(crate) fn outcomes(server: &TestServer) -> String {
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
    // Every path of the contract, each operation named in PascalCase, once.
    let contract = [
        ("/tenants/{tenantId}/outcomes/{id}", &["delete"][..]),
        ("/tenants/{tenantId}/clock", &["get", "put"]),
        ("/tenants/{tenantId}/faults", &["get", "post", "delete"]),
        ("/tenants/{tenantId}/faults/{id}", &["delete"]),
        ("/tenants/{tenantId}/state", &["get", "put"]),
        ("/tenants/{tenantId}/reset", &["post"]),
        ("/tenants", &["post"]),
        ("/tenants/{tenantId}/recorder", &["get", "put"]),
        ("/tenants/{tenantId}/recorder/entries", &["get", "delete"]),
        ("/tenants/{tenantId}/recorder/har", &["get"]),
        ("/tenants/{tenantId}/recorder/report", &["get"]),
    ];
    let mut ids = std::collections::HashSet::new();
    for (path, methods) in contract {
        for method in methods {
            let id = document["paths"][path][method]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
            assert!(
                id.starts_with(|c: char| c.is_ascii_uppercase()) && !id.contains('_'),
                "{id}"
            );
            assert!(ids.insert(id.to_string()), "{id} twice");
            // And none of them opens without the operator token.
            let concrete = path
                .replace("{tenantId}", &server.tenant_id)
                .replace("{id}", "x");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = control(&server, None, method, &concrete, None).await;
            assert_eq!(reply.status, 401, "{path}: {}", reply.text);
        }
    }
    // Not in the MDE API's document.
    let mde = server.get_as(None, "/openapi.json").await;
    let paths = mde.json["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| !p.contains("outcomes")));
}

/// The operator token of a running server, from its demo credentials.
fn operator_token_of(server: &ServerProcess) -> String {
    let credentials = server.demo_credentials();
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

/// The tenant's outcome rules, as the control plane lists them.
async fn list_rules(server: &TestServer) -> Reply {
    let operator = Some(server.operator_token.as_str());
    let reply = control(server, operator, Method::GET, &outcomes(server), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply
}

/// Adds an outcome rule to the server's tenant; answers it.
pub(crate) async fn add_rule(server: &TestServer, rule: Value) -> Value {
    let operator = Some(server.operator_token.as_str());
    let reply = control(
        server,
        operator,
        Method::POST,
        &outcomes(server),
        Some(rule),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

/// POSTs an action of `kind` (`isolate`, `offboard`, ...) on the machine; answers it.
pub(crate) async fn act(server: &TestServer, machine_id: &str, kind: &str) -> Value {
    let body = match kind {
        "isolate" => json!({"Comment": "playbook", "IsolationType": "Full"}),
        _ => json!({"Comment": "playbook"}),
    };
    let reply = server
        .post(&format!("/api/machines/{machine_id}/{kind}"), body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

pub(crate) async fn poll(server: &TestServer, action_id: &str) -> Value {
    let reply = server
        .get(&format!("/api/machineactions/{action_id}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

#[tokio::test]
async fn an_outcome_script_is_followed_poll_by_poll_and_the_first_matching_rule_takes_the_action() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    let not_this_one = add_rule(
        &server,
        json!({"match": {"actionType": "Offboard"}, "script": [{"status": "Failed"}]}),
    )
    .await;
    let rule = add_rule(
        &server,
        json!({"match": {"actionType": "Isolate", "osPlatform": "Windows11"}, "script": [
            {"status": "Pending", "polls": 2},
            {"status": "InProgress", "polls": 3},
            {"status": "Succeeded"}
        ]}),
    )
    .await;
    let also_matching = add_rule(&server, json!({"script": [{"status": "TimeOut"}]})).await;

    let created = act(&server, &m.id, "isolate").await;
    assert_eq!(created["status"], "Pending");
    let id = created["id"].as_str().unwrap();
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(
            poll(&server, id).await["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        seen,
        [
            "Pending",
            "Pending",
            "InProgress",
            "InProgress",
            "InProgress",
            "Succeeded",
            "Succeeded"
        ]
    );
    let done = poll(&server, id).await;
    assert_eq!(done["errorHResult"], 0);

    let rules = list_rules(&server).await;
    let hits: Vec<(Value, Value)> = rules.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].clone(), r["hits"].clone()))
        .collect();
    assert_eq!(
        hits,
        [
            (not_this_one["id"].clone(), json!(0)),
            (rule["id"].clone(), json!(1)),
            (also_matching["id"].clone(), json!(0)),
        ]
    );
}

#[tokio::test]
async fn a_scripted_failure_carries_its_hresult_and_a_listing_counts_as_a_poll() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    add_rule(
        &server,
        json!({"script": [
            {"status": "Pending", "polls": 1},
            {"status": "Failed", "errorHResult": -2147024891, "troubleshootInfo": "Access is denied"}
        ]}),
    )
    .await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Listed: the one poll of the Pending step.
    let listed = server
        .get(&format!("/api/machines/{}/machineactions", m.id))
        .await;
    assert_eq!(
        listed.json["value"][0]["status"], "Pending",
        "{}",
        listed.text
    );
    let failed = poll(&server, &id).await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["errorHResult"], -2147024891);
    assert_eq!(failed["troubleshootInfo"], "Access is denied");
}

#[tokio::test]
async fn a_step_held_for_a_duration_passes_unread_and_an_offboard_offboards_the_machine() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    add_rule(
        &server,
        json!({"match": {"machineId": m.id}, "script": [
            {"status": "InProgress", "duration": "PT0.3S"},
            {"status": "Succeeded"}
        ]}),
    )
    .await;
    let created = act(&server, &m.id, "offboard").await;
    assert_eq!(
        created["status"], "InProgress",
        "the first step is where it starts"
    );
    // No client reads it meanwhile: the server moves it on by itself.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let stored = server
        .palisade
        .store()
        .action(
            &palisade_domain::caller::Visibility::whole_tenant(&server.tenant_id),
            created["id"].as_str().unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status.as_str(), "Succeeded");
    let machine = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(
        machine.json["onboardingStatus"], "CanBeOnboarded",
        "{}",
        machine.text
    );
    assert_eq!(machine.json["healthStatus"], "Inactive");
}

#[tokio::test]
async fn a_script_that_ends_open_holds_past_the_time_out_and_a_cancel_ends_it() {
    let (mut server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    add_rule(&server, json!({"script": [{"status": "Pending"}]})).await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Far past the action time-out, and swept.
    server.clock.advance(7 * 86_400);
    server.renew_token().await;
    assert!(server.palisade.time_out_stale_actions().await.is_ok());
    assert_eq!(poll(&server, &id).await["status"], "Pending");
    let cancelled = server
        .post(
            &format!("/api/machineactions/{id}/cancel"),
            json!({"Comment": "enough"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.json["status"], "Cancelled");
    for _ in 0..2 {
        assert_eq!(poll(&server, &id).await["status"], "Cancelled");
    }
    let left = server
        .palisade
        .store()
        .scripted_among(&server.tenant_id, std::slice::from_ref(&id))
        .await
        .unwrap();
    assert!(left.is_empty(), "the cancel ended the script: {left:?}");
}

#[tokio::test]
async fn without_a_matching_rule_an_action_waits_for_a_device_as_before() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    add_rule(
        &server,
        json!({"match": {"tag": "VIP"}, "script": [{"status": "Succeeded"}]}),
    )
    .await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(poll(&server, &id).await["status"], "Pending");
    }
}

#[tokio::test]
async fn with_demo_an_action_of_a_demo_machine_succeeds_after_a_short_delay() {
    let server = ServerProcess::start(&[]).await;
    let machines = server.get("/api/machines?$top=1").await.unwrap();
    let id = machines.json["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let isolated = server
        .client
        .post(format!("{}/api/machines/{id}/isolate", server.origin))
        .json(&json!({"Comment": "playbook", "IsolationType": "Full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(isolated.status(), 201);
    let action: Value = isolated.json().await.unwrap();
    assert_eq!(action["status"], "Pending");
    let path = format!("/api/machineactions/{}", action["id"].as_str().unwrap());
    let mut seen = vec![];
    for _ in 0..60 {
        let status = server.get(&path).await.unwrap().json["status"].clone();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "Succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        seen,
        [json!("Pending"), json!("InProgress"), json!("Succeeded")]
    );
}

#[tokio::test]
async fn a_machine_with_an_enrolled_device_is_never_driven_by_a_rule() {
    let server = TestServer::start().await;
    add_rule(&server, json!({"script": [{"status": "Succeeded"}]})).await;
    let enrolled = server.enroll_windows("ws-007.contoso.test").await;
    let id = server
        .isolate(&enrolled.enrollment.machine_id, "Full")
        .await;
    for _ in 0..3 {
        assert_eq!(server.action_status(&id).await["status"], "Pending");
    }
    let rules = list_rules(&server).await;
    assert_eq!(rules.json["value"][0]["hits"], 0);
}

pub(crate) fn palisade_cli(database: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("PALISADE_DATABASE", database)
        .envs(shared_key_environment())
        .output()
        .unwrap()
}

#[tokio::test]
async fn outcome_rules_are_set_from_the_command_line_as_over_http() {
    let server = TestServer::start().await;
    let tenant = ["--tenant", server.tenant_id.as_str()];
    let rule = r#"{"match":{"actionType":"Isolate"},"script":[{"status":"Pending","polls":2},{"status":"Succeeded"}]}"#;
    let add = |extra: &[&str]| {
        let mut args = vec!["emulator", "outcomes", "add", rule];
        args.extend_from_slice(extra);
        args.extend_from_slice(&tenant);
        palisade_cli(&server.database, &args)
    };
    let last = add(&[]);
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    let last: Value = serde_json::from_slice(&last.stdout).unwrap();
    let first = add(&["--first"]);
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();

    let operator = Some(server.operator_token.as_str());
    let listed = control(&server, operator, Method::GET, &outcomes(&server), None).await;
    let ids: Vec<Value> = [&first, &last].iter().map(|r| r["id"].clone()).collect();
    assert_eq!(
        listed.value_ids(),
        ids.iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    let mut list = vec!["emulator", "outcomes", "list"];
    list.extend_from_slice(&tenant);
    let shown: Value =
        serde_json::from_slice(&palisade_cli(&server.database, &list).stdout).unwrap();
    assert_eq!(shown, listed.json, "the CLI lists what the API lists");

    let bad = palisade_cli(
        &server.database,
        &[
            "emulator",
            "outcomes",
            "add",
            r#"{"script":[]}"#,
            "--tenant",
            &server.tenant_id,
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("script"));

    let mut delete = vec![
        "emulator",
        "outcomes",
        "delete",
        first["id"].as_str().unwrap(),
    ];
    delete.extend_from_slice(&tenant);
    assert!(palisade_cli(&server.database, &delete).status.success());
    let gone = palisade_cli(&server.database, &delete);
    assert_eq!(
        gone.status.code(),
        Some(1),
        "a rule deleted twice is not found"
    );
    let mut clear = vec!["emulator", "outcomes", "clear"];
    clear.extend_from_slice(&tenant);
    assert!(palisade_cli(&server.database, &clear).status.success());
    let listed = control(&server, operator, Method::GET, &outcomes(&server), None).await;
    assert_eq!(listed.json, json!({"value": []}));
}

#[tokio::test]
async fn a_collection_the_emulator_makes_succeed_has_a_package_to_download() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    add_rule(
        &server,
        json!({"match": {"actionType": "CollectInvestigationPackage"}, "script": [{"status": "Succeeded"}]}),
    )
    .await;
    let created = act(&server, &m.id, "collectInvestigationPackage").await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(poll(&server, id).await["status"], "Succeeded");
    let link = server
        .get(&format!("/api/machineactions/{id}/GetPackageUri"))
        .await;
    assert_eq!(link.status, 200, "{}", link.text);
    let url = link.json["value"].as_str().unwrap();
    let download = reqwest::get(url).await.unwrap();
    assert_eq!(download.status(), 200);
    let bytes = download.bytes().await.unwrap();
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let names: Vec<&str> = zip.file_names().collect();
    assert!(names.contains(&"Summary.txt"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("Processes/")),
        "{names:?}"
    );
    // Asked again, the same package.
    let again = server
        .get(&format!("/api/machineactions/{id}/GetPackageUri"))
        .await;
    let second = reqwest::get(again.json["value"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(second, bytes);
}
