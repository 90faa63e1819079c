//! The OpenAPI document is generated from the routes: every operation it
//! lists is served, the API is all there, it is valid OpenAPI 3.1 (checked by
//! a real validator), and what the server answers conforms to it (checked by
//! Schemathesis against a running demo server).

use crate::harness::*;
use palisade_contract::requests::{MAX_BULK_MACHINES, MAX_COMMENT_CHARS};
use palisade_contract::OsPlatform;
use palisade_domain::rules::tags::MAX_TAG_CHARS;
use palisade_domain::Operation;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

#[tokio::test]
async fn every_documented_operation_is_served() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json["openapi"].as_str().unwrap().starts_with("3."));
    let paths = reply.json["paths"].as_object().expect("paths");
    for expected in [
        "/api/machines",
        "/api/machines/{id}",
        "/api/machines/{id}/tags",
        "/api/machines/AddOrRemoveTagForMultipleMachines",
        "/api/machines/findbytag",
        "/api/machines/{id}/setDeviceValue",
        "/api/machines/{id}/isolate",
        "/api/machines/{id}/unisolate",
        "/api/machines/{id}/offboard",
        "/api/machines/{id}/restrictCodeExecution",
        "/api/machines/{id}/unrestrictCodeExecution",
        "/api/machines/{id}/runAntiVirusScan",
        "/api/machines/{id}/collectInvestigationPackage",
        "/api/machines/{id}/StopAndQuarantineFile",
        "/api/machineactions",
        "/api/machineactions/{id}",
        "/api/machineactions/{id}/cancel",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", &m.id);
        for method in ["get", "post", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let request = match method {
                "get" => server.client.get(server.url(&concrete)),
                "post" => server
                    .client
                    .post(server.url(&concrete))
                    .json(&serde_json::json!({})),
                _ => server
                    .client
                    .patch(server.url(&concrete))
                    .json(&serde_json::json!({})),
            };
            let reply = server.send(request).await;
            // Served: anything but the router's own "no such route" and "wrong method".
            assert_ne!(reply.json["error"]["code"], "NotFound", "{method} {path}");
            assert_ne!(reply.status, 405, "{method} {path}");
            assert!(
                reply.status.as_u16() < 500,
                "{method} {path}: {}",
                reply.text
            );
        }
    }
    assert!(operations >= 19, "{operations} operations");
}

#[tokio::test]
async fn health_answers_once_the_store_is_open() {
    let server = TestServer::start().await;
    let reply = server.get("/healthz").await;
    assert_eq!(reply.status, 200);
}

/// Whether `python3` can import `module`; under CI=true it must (.ci/run installs it).
fn python_has(module: &str, package: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 has no {module} (.ci/run installs it: pip install {package})"
        );
        eprintln!("SKIPPED: python3 has no {module} (pip install {package})");
    }
    found
}

/// `#/components/schemas/X` resolved in `document`.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .expect("a schema reference");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every operation of the document: (method, path, operation).
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut all = vec![];
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            all.push((method.clone(), path.clone(), operation));
        }
    }
    all
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_describes_what_is_served() {
    let server = TestServer::start().await;
    let reply = server.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let document = &reply.json;
    assert_eq!(document["openapi"], "3.1.0");

    // Operation ids: unique, and exactly the access table's operations.
    let ids: Vec<&str> = operations(document)
        .iter()
        .map(|(method, path, op)| {
            op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"))
        })
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    let table: BTreeSet<&str> = <Operation as strum::VariantArray>::VARIANTS
        .iter()
        .map(|op| op.name())
        .collect();
    assert_eq!(
        unique, table,
        "the operation ids are the access table's names"
    );

    let bearer = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    let error_body = &document["components"]["schemas"]["ErrorBody"];
    assert_eq!(error_body["required"], serde_json::json!(["error"]));
    let detail = resolve(document, &error_body["properties"]["error"]);
    assert_eq!(
        detail["required"],
        serde_json::json!(["code", "message", "target"])
    );
    let header = |response: &Value, name: &str| -> Value {
        let reference = response["headers"][name]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} header: {response}"));
        let name = reference.strip_prefix("#/components/headers/").unwrap();
        document["components"]["headers"][name].clone()
    };

    for (method, path, operation) in operations(document) {
        let id = operation["operationId"].as_str().unwrap();
        assert_eq!(
            operation["security"],
            serde_json::json!([{"bearer": []}]),
            "{id}"
        );
        let responses = operation["responses"].as_object().unwrap();
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "{id} {status} has no description");
            assert!(
                response
                    .get("headers")
                    .is_some_and(|h| h["request-id"].is_object()),
                "{id} {status} names no request-id"
            );
        }
        let mut expected = vec!["400", "401", "403", "429", "500", "503"];
        if path.contains('{') {
            expected.push("404");
        }
        if operation.get("requestBody").is_some() {
            expected.extend(["413", "415"]);
        }
        for status in expected {
            let response = responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {path} does not list {status}"));
            let schema = &response["content"]["application/json"]["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{id} {status}"
            );
        }
        assert_eq!(
            header(&responses["401"], "WWW-Authenticate")["schema"]["type"],
            "string"
        );
        assert_eq!(
            header(&responses["429"], "Retry-After")["schema"]["type"],
            "integer"
        );

        // Successes as served: collections are OData's, never bare arrays.
        for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
            let schema = resolve(document, &response["content"]["application/json"]["schema"]);
            assert_ne!(schema["type"], "array", "{id} {status} is a bare array");
            if schema["properties"]["value"].is_object() {
                assert_eq!(schema["properties"]["value"]["type"], "array", "{id}");
                let required = schema["required"].as_array().unwrap();
                for property in ["@odata.context", "value"] {
                    assert!(required.contains(&property.into()), "{id}: {property}");
                }
                for optional in ["@odata.nextLink", "@odata.count"] {
                    assert!(
                        schema["properties"][optional].is_object(),
                        "{id}: {optional}"
                    );
                }
            }
        }
    }
    for list in [
        "ListMachines",
        "ListActions",
        "ListAuditLog",
        "FindByTag",
        "TagMachines",
    ] {
        let (_, _, operation) = operations(document)
            .into_iter()
            .find(|(_, _, op)| op["operationId"] == list)
            .unwrap();
        let schema = resolve(
            document,
            &operation["responses"]["200"]["content"]["application/json"]["schema"],
        );
        assert!(
            schema["properties"]["value"].is_object(),
            "{list}: {schema}"
        );
    }
    // 403 names what the access table asks.
    let (_, _, isolate) = operations(document)
        .into_iter()
        .find(|(_, _, op)| op["operationId"] == "Isolate")
        .unwrap();
    let forbidden = isolate["responses"]["403"]["description"].as_str().unwrap();
    assert!(forbidden.contains("Machine.Isolate"), "{forbidden}");
    assert!(
        forbidden.contains("Active remediation actions"),
        "{forbidden}"
    );

    // Request limits as the server checks them.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["IsolateBody"]["properties"]["Comment"]["maxLength"],
        MAX_COMMENT_CHARS
    );
    assert_eq!(
        schemas["TagBody"]["properties"]["Value"]["maxLength"],
        MAX_TAG_CHARS
    );
    assert_eq!(
        schemas["BulkTagBody"]["properties"]["MachineIds"]["maxItems"],
        MAX_BULK_MACHINES
    );

    let (_, _, list_machines) = operations(document)
        .into_iter()
        .find(|(_, _, op)| op["operationId"] == "ListMachines")
        .unwrap();
    let top = list_machines["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "$top")
        .unwrap();
    assert_eq!(top["schema"]["maximum"], palisade_contract::odata::MAX_TOP);
    assert_eq!(top["schema"]["minimum"], 1);

    if !python_has("openapi_spec_validator", "openapi-spec-validator") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &reply.text).unwrap();
    let output = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Schemathesis's stateless checks, with a bounded number of cases per
/// operation and a fixed seed, against the real server serving the demo
/// tenant; path ids are mostly the demo's own, so that the cases reach past
/// "not found" into the handlers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    if !python_has("schemathesis", "schemathesis") {
        return;
    }
    let server = ServerProcess::start(&[]).await;
    let token = demo_token(&server.credentials, None).await;
    let machines = server
        .get("/api/machines?$top=40&$select=id")
        .await
        .unwrap()
        .value_ids();
    // Actions to read and cancel: isolations of a few machines.
    let mut actions = vec![];
    for machine in &machines[..8] {
        let isolate = server
            .client
            .post(format!("{}/api/machines/{machine}/isolate", server.origin))
            .json(&serde_json::json!({"Comment": "schemathesis"}))
            .send()
            .await
            .unwrap();
        if isolate.status() == 201 {
            let action: Value = isolate.json().await.unwrap();
            actions.push(action["id"].as_str().unwrap().to_string());
        }
    }
    assert!(!actions.is_empty(), "no machine could be isolated");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    let list = |ids: &[String]| serde_json::to_string(ids).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
[dictionaries.machines]
values = {machines}
[dictionaries.actions]
values = {actions}

[[operations]]
include-path-regex = "^/api/machines/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "machines", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/api/machineactions/\\{{id\\}}"
parameters = {{ "path.id" = {{ dictionary = "actions", probability = 0.8 }} }}

[[operations]]
include-path = "/api/machines/AddOrRemoveTagForMultipleMachines"
parameters = {{ "body.MachineIds[*]" = {{ dictionary = "machines", probability = 0.8 }} }}
"#,
            machines = list(&machines),
            actions = list(&actions),
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(&config)
        .arg("run")
        .arg(format!("{}/openapi.json", server.origin))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "30",
            "--seed",
            "20260101",
            // One: Python 3.11's parser is not thread-safe under Hypothesis
            // ("AST constructor recursion depth mismatch"), and one is repeatable.
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ])
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .expect("schemathesis finishes within 10 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("schemathesis ran {:?}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}\nserver log: {}",
        String::from_utf8_lossy(&output.stderr),
        server.log_tail()
    );
    let all = <Operation as strum::VariantArray>::VARIANTS.len();
    assert!(
        stdout.contains(&format!("Tested: {all}")),
        "every operation is tested: {stdout}"
    );
}
