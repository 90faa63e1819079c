//! The recorder (`/_palisade/v1/tenants/{t}/recorder`): calls kept while it
//! is on, listed, as HAR 1.2, and a report naming what clients got wrong.

use crate::control_faults::add_fault;
use crate::control_plane::{act, control, palisade_cli};
use crate::harness::*;
use palisade_contract::OsPlatform;
use reqwest::Method;
use serde_json::{json, Value};

async fn recorder(server: &TestServer, method: Method, rest: &str, body: Option<Value>) -> Reply {
    let path = format!("/tenants/{}/recorder{rest}", server.tenant_id);
    control(server, Some(&server.operator_token), method, &path, body).await
}

async fn entries(server: &TestServer) -> Vec<Value> {
    let reply = recorder(server, Method::GET, "/entries", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["value"].as_array().unwrap().clone()
}

#[tokio::test]
async fn calls_are_kept_while_the_recorder_is_on_and_read_back_as_har() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    assert_eq!(server.get("/api/machines").await.status, 200);
    assert_eq!(
        recorder(&server, Method::GET, "", None).await.json,
        json!({"enabled": false})
    );
    let on = recorder(&server, Method::PUT, "", Some(json!({"enabled": true}))).await;
    assert_eq!(on.json, json!({"enabled": true}), "{}", on.text);

    assert_eq!(server.get("/api/machines?$top=1").await.status, 200);
    let action = act(&server, &m.id, "isolate").await;
    server
        .get("/api/machines/nosuchmachine")
        .await
        .assert_error(404, "ResourceNotFound");
    let off = recorder(&server, Method::PUT, "", Some(json!({"enabled": false}))).await;
    assert_eq!(off.status, 200);
    assert_eq!(server.get("/api/machines").await.status, 200);

    let kept = entries(&server).await;
    let seen: Vec<(&str, &str, u64)> = kept
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["method"].as_str().unwrap(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ListMachines", "GET", 200),
            ("Isolate", "POST", 201),
            ("GetMachine", "GET", 404)
        ]
    );
    let client_id = jwt_claims(&server.token)["appid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        kept.iter().all(|e| e["caller"] == client_id.as_str()),
        "{kept:?}"
    );
    assert_eq!(kept[0]["query"], "$top=1");
    assert_eq!(kept[1]["path"], format!("/api/machines/{}/isolate", m.id));
    let sent: Value = serde_json::from_str(kept[1]["requestBody"].as_str().unwrap()).unwrap();
    assert_eq!(sent["IsolationType"], "Full");
    let answered: Value = serde_json::from_str(kept[1]["responseBody"].as_str().unwrap()).unwrap();
    assert_eq!(answered["id"], action["id"]);
    // The error body as the client got it.
    assert!(kept[2]["responseBody"]
        .as_str()
        .unwrap()
        .contains("ResourceNotFound"));
    let everything = serde_json::to_string(&kept).unwrap();
    assert!(!everything.contains(&server.token), "no token is kept");

    let har = recorder(&server, Method::GET, "/har", None).await;
    assert_eq!(har.status, 200, "{}", har.text);
    assert_eq!(har.json["log"]["version"], "1.2");
    assert_eq!(har.json["log"]["creator"]["name"], "Palisade");
    let har_entries = har.json["log"]["entries"].as_array().unwrap();
    assert_eq!(har_entries.len(), 3);
    let first = &har_entries[0];
    assert_eq!(
        first["request"]["url"],
        format!("{}/api/machines?$top=1", server.origin)
    );
    assert_eq!(
        first["request"]["queryString"],
        json!([{"name": "$top", "value": "1"}])
    );
    assert_eq!(first["response"]["status"], 200);
    assert!(
        palisade_contract::Timestamp::parse(first["startedDateTime"].as_str().unwrap()).is_some()
    );
    assert_eq!(
        har_entries[1]["request"]["postData"]["mimeType"],
        "application/json"
    );
    assert!(har_entries[1]["request"]["postData"]["text"]
        .as_str()
        .unwrap()
        .contains("Full"));

    // Filters, each of which must hold.
    let count = |query: &'static str| {
        let server = &server;
        async move {
            let reply = recorder(server, Method::GET, &format!("/entries?{query}"), None).await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            reply.json["value"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("operation=Isolate").await, 1);
    assert_eq!(count("status=404").await, 1);
    assert_eq!(count("method=get").await, 2);
    assert_eq!(count("method=GET&status=200").await, 1);
    assert_eq!(count("since=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count("caller=someone-else").await, 0);
    for (query, field) in [
        ("status=abc", "status"),
        ("since=yesterday", "since"),
        ("$top=-1", "$top"),
    ] {
        let reply = recorder(&server, Method::GET, &format!("/entries?{query}"), None).await;
        assert!(
            reply.assert_error(400, "InvalidInput").contains(field),
            "{}",
            reply.text
        );
    }
    let isolates = recorder(&server, Method::GET, "/har?operation=Isolate", None).await;
    assert_eq!(isolates.json["log"]["entries"].as_array().unwrap().len(), 1);

    let page = recorder(&server, Method::GET, "/entries?$top=1&$skip=1", None).await;
    assert_eq!(page.json["value"].as_array().unwrap().len(), 1);
    assert_eq!(page.json["value"][0]["operation"], "Isolate");
    let cleared = recorder(&server, Method::DELETE, "/entries", None).await;
    assert_eq!(cleared.status, 204);
    assert!(entries(&server).await.is_empty());
}

#[tokio::test]
async fn the_report_names_a_client_that_ignored_retry_after_built_paging_urls_and_polled_fast() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    recorder(&server, Method::PUT, "", Some(json!({"enabled": true}))).await;
    add_fault(
        &server,
        json!({"match": {"operation": "ListMachines"}, "count": 2, "response": {"status": 429, "retryAfter": 30}}),
    )
    .await;
    // A careless client: straight back after a 429, its own $skip, fast polls.
    for _ in 0..3 {
        server.get("/api/machines").await;
    }
    server.get("/api/machines?$skip=50").await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        server.get(&format!("/api/machineactions/{id}")).await;
    }
    // A careful one: reads once, holding only what it needs.
    let careful = server
        .app_token(
            "Careful app",
            &[palisade_contract::Permission::MachineReadAll],
        )
        .await;
    assert_eq!(
        server
            .get_as(Some(&careful), &format!("/api/machines/{}", m.id))
            .await
            .status,
        200
    );

    let report = recorder(&server, Method::GET, "/report", None).await;
    assert_eq!(report.status, 200, "{}", report.text);
    let of = |token: &str| {
        let client = jwt_claims(token)["appid"].as_str().unwrap().to_string();
        report.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["caller"] == client.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no report of {client}: {}", report.text))
    };
    let careless = of(&server.token);
    assert_eq!(careless["calls"], 8, "{careless}");
    // The two calls after the first 429, and the $skip one: all within its 30 s.
    assert_eq!(careless["retryAfterIgnored"], 3, "{careless}");
    assert_eq!(careless["pagingUrlsBuilt"], 1, "{careless}");
    assert_eq!(careless["fastPolls"], 2, "{careless}");
    let never: Vec<&str> = careless["permissionsNeverUsed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        never.contains(&"Machine.Offboard") && !never.contains(&"Machine.Isolate"),
        "{careless}"
    );
    let good = of(&careful);
    assert_eq!(good["retryAfterIgnored"], 0);
    assert_eq!(good["fastPolls"], 0);
    assert_eq!(good["permissionsUsed"], json!(["Machine.Read.All"]));
    assert_eq!(good["permissionsNeverUsed"], json!([]));

    // A reset forgets the record and turns the recorder off.
    let reset = control(
        &server,
        Some(&server.operator_token),
        Method::POST,
        &format!("/tenants/{}/reset", server.tenant_id),
        None,
    )
    .await;
    assert_eq!(reset.status, 204);
    assert!(entries(&server).await.is_empty());
    assert_eq!(
        recorder(&server, Method::GET, "", None).await.json,
        json!({"enabled": false})
    );
}

#[tokio::test]
async fn the_recorder_is_worked_from_the_command_line_as_over_http() {
    let server = TestServer::start().await;
    let cli = |args: &[&str]| {
        let mut all = vec!["emulator", "recorder"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--tenant", server.tenant_id.as_str()]);
        palisade_cli(&server.database, &all)
    };
    let on = cli(&["on"]);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert_eq!(
        recorder(&server, Method::GET, "", None).await.json,
        json!({"enabled": true})
    );
    // The server reads the setting again every second.
    let mut kept = vec![];
    for _ in 0..30 {
        server.get("/api/machines").await;
        kept = entries(&server).await;
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !kept.is_empty(),
        "the server records once the CLI turned it on"
    );
    let listed: Value = serde_json::from_slice(&cli(&["entries"]).stdout).unwrap();
    assert_eq!(listed["value"][0], kept[0]);
    let none: Value =
        serde_json::from_slice(&cli(&["entries", "--operation", "Isolate"]).stdout).unwrap();
    assert_eq!(none, json!({"value": []}));
    let har: Value = serde_json::from_slice(&cli(&["har"]).stdout).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    let report: Value = serde_json::from_slice(&cli(&["report"]).stdout).unwrap();
    assert!(
        report["value"][0]["calls"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(cli(&["clear"]).status.success());
    assert!(cli(&["off"]).status.success());
    assert!(entries(&server).await.is_empty());
}

#[tokio::test]
async fn a_tenant_keeps_only_its_newest_recorded_calls() {
    let server = ServerProcess::start(&["--recorder-keep", "3"]).await;
    let credentials = server.demo_credentials();
    let operator = credentials["operator_token"].as_str().unwrap();
    let recorder = format!(
        "{}/_palisade/v1/tenants/{}/recorder",
        server.origin,
        credentials["tenant_id"].as_str().unwrap()
    );
    let control = reqwest::Client::new();
    let on = control
        .put(&recorder)
        .bearer_auth(operator)
        .json(&json!({"enabled": true}));
    assert!(on.send().await.unwrap().status().is_success());
    for top in 1..=6 {
        let url = format!("{}/api/machines?$top={top}", server.origin);
        assert!(server
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
    }
    let kept: Value = control
        .get(format!("{recorder}/entries"))
        .bearer_auth(operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queries: Vec<&str> = kept["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["query"].as_str().unwrap())
        .collect();
    assert_eq!(queries, ["$top=4", "$top=5", "$top=6"]);
}
