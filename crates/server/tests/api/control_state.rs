//! A tenant's state as a document (`/_palisade/v1/tenants/{t}/state`,
//! `.../reset`, `POST /_palisade/v1/tenants`, `serve --seed`): created,
//! exported, replaced, reset to its seed; a bad document refused whole,
//! naming the entry and field.

use crate::control_faults::add_fault;
use crate::control_plane::{act, control, palisade_cli};
use crate::harness::*;
use reqwest::Method;
use serde_json::{json, Value};

const SEEDED: &str = "5eed5eed-0000-4000-8000-000000000001";
const SEEDED_APP: &str = "5eed5eed-0000-4000-8000-00000000a001";
const SEEDED_SECRET: &str = "the seeded app's secret";

/// A small tenant: two groups, three machines (one in a group by its
/// rules), a finished action, an outcome rule, an app and a user.
fn document() -> Value {
    json!({
        "tenantId": SEEDED,
        "name": "Seeded",
        "retentionDays": 90,
        "deviceGroups": [
            {"id": 1, "name": "Servers", "rules": {"namePrefixes": ["srv-"]}},
            {"id": 2, "name": "Labels"}
        ],
        "machines": [
            {"id": "a".repeat(40), "computerDnsName": "srv-1.contoso.local", "osPlatform": "WindowsServer2022",
             "lastSeen": "2026-11-30T10:00:00Z", "machineTags": ["prod"]},
            {"id": "b".repeat(40), "computerDnsName": "ws-1.contoso.local", "rbacGroupId": 2,
             "riskScore": "High", "lastIpAddress": "10.1.0.7"},
            {"id": "c".repeat(40), "computerDnsName": "mac-1.contoso.local", "osPlatform": "macOS",
             "healthStatus": "Inactive"}
        ],
        "machineActions": [
            {"id": "5eed5eed-0000-4000-8000-0000000ac001", "type": "Isolate", "machineId": "b".repeat(40),
             "status": "Succeeded", "scope": "Full", "requestor": "soc@contoso.com",
             "creationDateTimeUtc": "2026-11-30T09:00:00Z", "lastUpdateDateTimeUtc": "2026-11-30T09:05:00Z"}
        ],
        "apps": [{"clientId": SEEDED_APP, "name": "Seeded playbook", "clientSecret": SEEDED_SECRET,
                  "permissions": ["Machine.Read.All", "Machine.ReadWrite.All", "Machine.Isolate"]}],
        "users": [{"username": "analyst@contoso.com", "password": "a long enough password",
                   "roles": ["View data"], "deviceGroups": [1]}],
        "outcomes": [{"match": {"actionType": "Isolate"}, "script": [{"status": "Succeeded"}]}]
    })
}

fn path(tenant: &str, rest: &str) -> String {
    format!("/tenants/{tenant}{rest}")
}

async fn operator_call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    control(server, Some(&server.operator_token), method, path, body).await
}

async fn export(server: &TestServer, tenant: &str) -> Value {
    let reply = operator_call(server, Method::GET, &path(tenant, "/state"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

/// A token of the seeded app, by its seeded secret.
async fn seeded_token(server: &TestServer) -> String {
    server
        .client_credentials_token(SEEDED, SEEDED_APP, SEEDED_SECRET)
        .await
}

#[tokio::test]
async fn a_tenant_is_created_from_a_document_and_a_reset_puts_it_back_exactly() {
    let server = TestServer::start().await;
    let created = operator_call(&server, Method::POST, "/tenants", Some(document())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["tenantId"], SEEDED);
    let again = operator_call(&server, Method::POST, "/tenants", Some(document())).await;
    assert_eq!(again.status, 409, "{}", again.text);

    // As the MDE API shows it: defaults filled in, groups placed.
    let token = seeded_token(&server).await;
    let machines = server.get_as(Some(&token), "/api/machines").await;
    assert_eq!(machines.status, 200, "{}", machines.text);
    let by_id = |id: char| {
        machines.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.to_string().repeat(40))
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id('a')["rbacGroupName"], "Servers");
    assert_eq!(by_id('a')["machineTags"], json!(["prod"]));
    assert_eq!(by_id('b')["rbacGroupName"], "Labels");
    assert_eq!(by_id('b')["riskScore"], "High");
    assert_eq!(
        by_id('b')["osPlatform"],
        "Windows11",
        "the default platform"
    );
    assert_eq!(by_id('c')["healthStatus"], "Inactive");
    let action = server
        .get_as(
            Some(&token),
            "/api/machineactions/5eed5eed-0000-4000-8000-0000000ac001",
        )
        .await;
    assert_eq!(action.json["status"], "Succeeded", "{}", action.text);
    assert_eq!(action.json["computerDnsName"], "ws-1.contoso.local");

    let seeded = export(&server, SEEDED).await;
    // Everything a test might change, changed.
    let a = "a".repeat(40);
    let tagged = server
        .post_as(
            &token,
            &format!("/api/machines/{a}/tags"),
            json!({"Value": "touched", "Action": "Add"}),
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.text);
    let isolated = server
        .post_as(
            &token,
            &format!("/api/machines/{a}/isolate"),
            json!({"Comment": "c", "IsolationType": "Full"}),
        )
        .await;
    assert_eq!(isolated.status, 201, "{}", isolated.text);
    let fault = json!({"match": {"operation": "GetMachine"}, "response": {"status": 500}});
    let added = operator_call(&server, Method::POST, &path(SEEDED, "/faults"), Some(fault)).await;
    assert_eq!(added.status, 201);
    let moved = operator_call(
        &server,
        Method::PUT,
        &path(SEEDED, "/clock"),
        Some(json!({"advance": "PT1M"})),
    )
    .await;
    assert_eq!(moved.status, 200);
    assert_ne!(export(&server, SEEDED).await, seeded);

    let reset = operator_call(&server, Method::POST, &path(SEEDED, "/reset"), None).await;
    assert_eq!(reset.status, 204, "{}", reset.text);
    assert_eq!(export(&server, SEEDED).await, seeded, "the seed, exactly");
    let clock = operator_call(&server, Method::GET, &path(SEEDED, "/clock"), None).await;
    assert_eq!(clock.json["offset"], "PT0S", "{}", clock.text);
    let audit = server
        .palisade
        .store()
        .audit_entries(
            &palisade_domain::caller::Visibility::whole_tenant(SEEDED),
            0,
            100,
        )
        .await
        .unwrap();
    assert!(
        audit.items.iter().all(|e| e.operation != "TagMachine"),
        "{audit:?}"
    );
    // Apps and users stay: the token still works, and the fault is gone.
    let machine = server
        .get_as(Some(&token), &format!("/api/machines/{a}"))
        .await;
    assert_eq!(machine.status, 200, "{}", machine.text);
    assert_eq!(machine.json["machineTags"], json!(["prod"]));
}

#[tokio::test]
async fn export_reset_import_export_gives_the_same_document_in_json_and_yaml() {
    let server = TestServer::start().await;
    let created = operator_call(&server, Method::POST, "/tenants", Some(document())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let token = seeded_token(&server).await;
    let b = "b".repeat(40);
    server
        .post_as(
            &token,
            &format!("/api/machines/{b}/tags"),
            json!({"Value": "later", "Action": "Add"}),
        )
        .await;
    let exported = export(&server, SEEDED).await;
    assert!(
        exported["apps"][0].get("clientSecret").is_none(),
        "no secrets: {}",
        exported["apps"]
    );

    operator_call(&server, Method::POST, &path(SEEDED, "/reset"), None).await;
    let imported = operator_call(
        &server,
        Method::PUT,
        &path(SEEDED, "/state"),
        Some(exported.clone()),
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text);
    assert_eq!(imported.json, exported);
    assert_eq!(export(&server, SEEDED).await, exported);

    // The same document as YAML.
    operator_call(&server, Method::POST, &path(SEEDED, "/reset"), None).await;
    let yaml = serde_norway::to_string(&exported).unwrap();
    let request = reqwest::Client::new()
        .put(server.url(&format!("/_palisade/v1{}", path(SEEDED, "/state"))))
        .bearer_auth(&server.operator_token)
        .header("content-type", "application/yaml")
        .body(yaml);
    let reply = server.send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(export(&server, SEEDED).await, exported);
    // The app kept its secret through it all.
    seeded_token(&server).await;
}

#[tokio::test]
async fn a_bad_document_is_refused_whole_naming_the_entry_and_the_field() {
    let server = TestServer::start().await;
    operator_call(&server, Method::POST, "/tenants", Some(document())).await;
    let before = export(&server, SEEDED).await;
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut doc = document();
        change(&mut doc);
        doc
    };
    for (doc, field) in [
        (
            broken(&|d| d["machines"][1]["osPlatform"] = json!("Windows95")),
            "machines[1].osPlatform",
        ),
        (
            broken(&|d| d["machines"][2]["id"] = json!("nothex")),
            "machines[2].id",
        ),
        (
            broken(&|d| d["machines"][0]["rbacGroupId"] = json!(7)),
            "machines[0].rbacGroupId",
        ),
        (
            broken(&|d| d["machines"][1]["id"] = json!("a".repeat(40))),
            "machines[1].id",
        ),
        (
            broken(&|d| d["machineActions"][0]["machineId"] = json!("d".repeat(40))),
            "machineActions[0].machineId",
        ),
        (
            broken(&|d| d["machineActions"][0]["status"] = json!("Done")),
            "machineActions[0].status",
        ),
        (
            broken(&|d| d["users"][0]["roles"] = json!(["Boss"])),
            "users[0].roles[0]",
        ),
        (
            broken(&|d| d["outcomes"][0]["script"] = json!([])),
            "outcomes[0].script",
        ),
        (
            broken(&|d| d["deviceGroups"][0]["rules"] = json!({"namePrefix": ["x"]})),
            "deviceGroups[0].rules",
        ),
        (broken(&|d| d["machine"] = json!([])), "machine"),
        (broken(&|d| d["tenantId"] = json!("not-a-guid")), "tenantId"),
    ] {
        let reply = operator_call(
            &server,
            Method::PUT,
            &path(SEEDED, "/state"),
            Some(doc.clone()),
        )
        .await;
        assert_eq!(reply.status, 400, "{field}: {}", reply.text);
        let message = reply.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field}: {message}");
    }
    // YAML names the field once, as JSON does.
    let request = reqwest::Client::new()
        .put(server.url(&format!("/_palisade/v1{}", path(SEEDED, "/state"))))
        .bearer_auth(&server.operator_token)
        .header("content-type", "application/yaml")
        .body("tenantId: [");
    let reply = server.send(request).await;
    let message = reply.assert_error(400, "InvalidInput");
    assert_eq!(message.matches("tenantId").count(), 1, "{message}");
    let other = broken(&|d| d["tenantId"] = json!(server.tenant_id));
    let reply = operator_call(&server, Method::PUT, &path(SEEDED, "/state"), Some(other)).await;
    assert!(reply.assert_error(400, "InvalidInput").contains("tenantId"));
    assert_eq!(export(&server, SEEDED).await, before, "nothing changed");
    let unknown = path("00000000-0000-0000-0000-00000000dead", "/reset");
    operator_call(&server, Method::POST, &unknown, None)
        .await
        .assert_error(404, "ResourceNotFound");
    control(
        &server,
        Some(&server.token),
        Method::GET,
        &path(SEEDED, "/state"),
        None,
    )
    .await
    .assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn a_tenant_made_without_a_document_resets_to_empty() {
    let (server, m) = server_with(palisade_contract::OsPlatform::Windows11).await;
    act(&server, &m.id, "isolate").await;
    add_fault(&server, json!({"latency": "PT0.01S"})).await;
    let reset = operator_call(
        &server,
        Method::POST,
        &path(&server.tenant_id, "/reset"),
        None,
    )
    .await;
    assert_eq!(reset.status, 204, "{}", reset.text);
    let state = export(&server, &server.tenant_id).await;
    assert_eq!(state["machines"], json!([]));
    assert_eq!(state["machineActions"], json!([]));
    assert_eq!(state["faults"], json!([]));
    assert_eq!(server.get("/api/machines").await.json["value"], json!([]));
}

#[tokio::test]
async fn serve_seeds_tenants_from_files_and_refuses_a_bad_one_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("tenant.yaml");
    std::fs::write(&seed, serde_norway::to_string(&document()).unwrap()).unwrap();
    let seed_arg = seed.to_str().unwrap();
    let server = ServerProcess::start_in(dir.path(), &["--seed", seed_arg]).await;
    let url = format!("{}/{SEEDED}/oauth2/v2.0/token", server.origin);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", SEEDED_APP),
        ("client_secret", SEEDED_SECRET),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ];
    let token: Value = reqwest::Client::new()
        .post(url)
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"]
        .as_str()
        .expect("the seeded app gets a token");
    let machines: Value = reqwest::Client::new()
        .get(format!("{}/api/machines", server.origin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(machines["value"].as_array().unwrap().len(), 3, "{machines}");
    drop(server);

    let bad = dir.path().join("bad.json");
    let mut doc = document();
    doc["machines"][2]["osPlatform"] = json!("Plan9");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let other = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            bad.to_str().unwrap(),
        ])
        .arg("--database")
        .arg(format!("sqlite://{}", other.path().join("p.db").display()))
        .envs(shared_key_environment())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.json")
            && stderr.contains("machines[2].osPlatform")
            && stderr.contains("Plan9"),
        "{stderr}"
    );
}

#[tokio::test]
async fn state_is_exported_imported_and_reset_from_the_command_line() {
    let server = TestServer::start().await;
    operator_call(&server, Method::POST, "/tenants", Some(document())).await;
    let tenant = ["--tenant", SEEDED];
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&tenant);
        palisade_cli(&server.database, &all)
    };
    let exported = cli(&["emulator", "export"]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let document: Value = serde_json::from_slice(&exported.stdout).unwrap();
    assert_eq!(document, export(&server, SEEDED).await);
    let yaml = cli(&["emulator", "export", "--yaml"]);
    let from_yaml: Value = serde_norway::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_yaml, document);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut changed = document.clone();
    changed["machines"].as_array_mut().unwrap().pop();
    std::fs::write(&file, changed.to_string()).unwrap();
    let imported = cli(&["emulator", "import", file.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(
        export(&server, SEEDED).await["machines"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let reset = cli(&["emulator", "reset"]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert_eq!(export(&server, SEEDED).await, document);
    changed["machines"][0]["osPlatform"] = json!("Amiga");
    std::fs::write(&file, changed.to_string()).unwrap();
    let refused = cli(&["emulator", "import", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("state.json") && stderr.contains("machines[0].osPlatform"),
        "{stderr}"
    );
}

/// The ids one run of a small playbook sees: a request id, a new action's,
/// a new rule's; on a server started with `extra`.
async fn ids_of_a_run(extra: &[&str]) -> Vec<String> {
    let server = ServerProcess::start(extra).await;
    let credentials = server.demo_credentials();
    let listed = server
        .client
        .get(format!("{}/api/machines?$top=1", server.origin))
        .send()
        .await
        .unwrap();
    let request_id = listed.headers()["request-id"].to_str().unwrap().to_string();
    let machines: Value = listed.json().await.unwrap();
    let machine = machines["value"][0]["id"].as_str().unwrap();
    let action: Value = server
        .client
        .post(format!("{}/api/machines/{machine}/isolate", server.origin))
        .json(&json!({"Comment": "run", "IsolationType": "Full"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = credentials["tenant_id"].as_str().unwrap();
    let rule: Value = reqwest::Client::new()
        .post(format!(
            "{}/_palisade/v1/tenants/{tenant}/outcomes",
            server.origin
        ))
        .bearer_auth(credentials["operator_token"].as_str().unwrap())
        .json(&json!({"script": [{"status": "Succeeded"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    vec![
        request_id,
        action["id"].as_str().unwrap().to_string(),
        rule["id"].as_str().unwrap().to_string(),
    ]
}

#[tokio::test]
async fn with_an_id_seed_a_run_twice_sees_the_same_ids() {
    let first = ids_of_a_run(&["--id-seed", "42"]).await;
    let second = ids_of_a_run(&["--id-seed", "42"]).await;
    assert_eq!(first, second);
    assert!(uuid::Uuid::parse_str(&first[1]).is_ok(), "{first:?}");
    let unseeded = ids_of_a_run(&[]).await;
    assert!(
        first.iter().zip(&unseeded).all(|(a, b)| a != b),
        "{first:?} {unseeded:?}"
    );
}

#[tokio::test]
async fn a_put_keeps_the_clock_and_recorder_and_a_reset_starts_rate_limits_afresh() {
    let mut server = TestServer::start_with(Options {
        rate_limits: Some(palisade_domain::rate_limit::RateLimits {
            per_minute: 2,
            per_hour: 100,
        }),
        ..Options::default()
    })
    .await;
    let tenant = server.tenant_id.clone();
    let on = json!({"enabled": true});
    operator_call(&server, Method::PUT, &path(&tenant, "/recorder"), Some(on)).await;
    let advance = json!({"advance": "P1D"});
    operator_call(
        &server,
        Method::PUT,
        &path(&tenant, "/clock"),
        Some(advance),
    )
    .await;
    server.renew_token().await;
    let state = export(&server, &tenant).await;
    let put = operator_call(&server, Method::PUT, &path(&tenant, "/state"), Some(state)).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let clock = operator_call(&server, Method::GET, &path(&tenant, "/clock"), None).await;
    assert!(
        clock.json["offset"].as_str().unwrap().starts_with("P1D"),
        "{}",
        clock.text
    );
    let recorder = operator_call(&server, Method::GET, &path(&tenant, "/recorder"), None).await;
    assert_eq!(recorder.json, json!({"enabled": true}));

    // Two calls counted a day ahead; the reset brings the clock back.
    for _ in 0..2 {
        assert_eq!(server.get("/api/machines").await.status, 200);
    }
    server
        .get("/api/machines")
        .await
        .assert_error(429, "TooManyRequests");
    let reset = operator_call(&server, Method::POST, &path(&tenant, "/reset"), None).await;
    assert_eq!(reset.status, 204);
    server.renew_token().await;
    let after = server.get("/api/machines").await;
    assert_eq!(
        after.status, 200,
        "the counts of the old clock are gone: {}",
        after.text
    );
}
