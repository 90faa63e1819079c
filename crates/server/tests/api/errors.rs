use crate::harness::*;
use palisade_contract::OsPlatform;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

const ERROR_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const MIB: usize = 1 << 20;
const UNKNOWN_ID: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Sends `body` as it is, with `content_type` (or none).
async fn post_raw(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = server.client.post(server.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    server.send(request).await
}

async fn post_json_text(server: &TestServer, path: &str, body: &str) -> Reply {
    post_raw(server, path, Some("application/json"), body.to_string()).await
}

async fn method(server: &TestServer, method: Method, path: &str) -> Reply {
    server
        .send(server.client.request(method, server.url(path)))
        .await
}

/// An MDE error body with the exact error content type.
#[track_caller]
fn assert_mde_error(reply: &Reply, status: u16, code: &str) -> String {
    let message = reply.assert_error(status, code);
    assert_eq!(
        reply.headers[CONTENT_TYPE], ERROR_CONTENT_TYPE,
        "{}",
        reply.text
    );
    assert!(!message.is_empty(), "an error has a message");
    message
}

/// What every answer to a hostile request must be: no 5xx, and an MDE error
/// body (or a normal OData body), except 405 which has none.
#[track_caller]
fn assert_mde_shaped(reply: &Reply, what: &str) {
    let status = reply.status.as_u16();
    assert!(status < 500, "{what}: {status} {}", reply.text);
    if status == 405 {
        assert!(reply.text.is_empty(), "{what}: 405 with a body");
        assert!(
            reply.headers.contains_key("allow"),
            "{what}: 405 without Allow"
        );
        return;
    }
    if status >= 400 {
        let error = &reply.json["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{what}: not an MDE error body: {status} {:?}",
            reply.text
        );
        assert_eq!(
            reply
                .headers
                .get("request-id")
                .and_then(|v| v.to_str().ok()),
            error["target"].as_str(),
            "{what}: target is the request id"
        );
        assert_eq!(
            reply
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(ERROR_CONTENT_TYPE),
            "{what}"
        );
        let keys: Vec<&String> = reply.json.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error"], "{what}: only `error` at the top");
    } else {
        assert!(
            reply.json.is_object() && reply.json.get("@odata.context").is_some(),
            "{what}: {status} without an OData body: {:?}",
            reply.text
        );
    }
}

/// The actions recorded so far (to check that a refused request created none).
async fn action_count(server: &TestServer) -> usize {
    let reply = server.get("/api/machineactions").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["value"].as_array().expect("value").len()
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_route_is_not_found() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    for path in [
        "/api/nothing".to_string(),
        "/nothing/here".to_string(),
        "/api/v2.0/machines".to_string(),
        format!("/api/machines/{}/explode", m.id),
        format!("/api/machines/{}/tags/extra", m.id),
        format!("/api/machines/{}/isolate/now", m.id),
        "/api/machineactions/a/b/c".to_string(),
        "/api/alerts/a/b".to_string(),
    ] {
        let reply = server.get(&path).await;
        assert_mde_error(&reply, 404, "NotFound");
    }
    let reply = server
        .post(
            &format!("/api/machines/{}/explode", m.id),
            json!({"Comment": "x"}),
        )
        .await;
    assert_mde_error(&reply, 404, "NotFound");
    let reply = server.post("/api/nothing", json!({})).await;
    assert_mde_error(&reply, 404, "NotFound");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_no_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let cases = [
        (
            Method::GET,
            format!("/api/machines/{}/isolate", m.id),
            "POST",
        ),
        (
            Method::GET,
            format!("/API/Machines/{}/ISOLATE", m.id),
            "POST",
        ),
        (
            Method::GET,
            format!("/api/v1.0/machines/{}/unisolate", m.id),
            "POST",
        ),
        (Method::DELETE, "/api/machines".to_string(), "GET"),
        (Method::POST, "/api/machines".to_string(), "GET"),
        (Method::PUT, format!("/api/machines/{}", m.id), "PATCH"),
        (Method::DELETE, format!("/api/machines/{}", m.id), "GET"),
        (
            Method::DELETE,
            format!("/api/machines/{}/tags", m.id),
            "POST",
        ),
        (Method::DELETE, "/api/machineactions".to_string(), "GET"),
    ];
    for (verb, path, allowed) in cases {
        assert_405(&server, verb, &path, &[allowed]).await;
    }
    assert_eq!(action_count(&server).await, 0);
}

/// `verb` on `path` is 405 with no body and an `Allow` naming every method
/// of `allowed` and not `verb`.
async fn assert_405(server: &TestServer, verb: Method, path: &str, allowed: &[&str]) {
    let reply = method(server, verb.clone(), path).await;
    assert_eq!(reply.status, 405, "{verb} {path}: {}", reply.text);
    assert_eq!(reply.text, "", "{verb} {path}: a 405 has no body");
    let allow = reply
        .headers
        .get("allow")
        .unwrap_or_else(|| panic!("{verb} {path}: no Allow header"))
        .to_str()
        .unwrap()
        .to_string();
    let named: Vec<&str> = allow.split(',').map(str::trim).collect();
    for method in allowed {
        assert!(named.contains(method), "{verb} {path}: Allow is {allow:?}");
    }
    assert!(
        !named.contains(&verb.as_str()),
        "{verb} {path}: Allow {allow:?} names the refused method"
    );
}

/// The routes of live response, its library and the inventories answer a
/// wrong method as every other route does, and do nothing.
#[tokio::test]
async fn wrong_method_on_live_response_library_and_inventory_routes_is_405() {
    let (server, m) = server_with(OsPlatform::Linux).await;
    let session = server
        .post(
            &format!("/api/machines/{}/runliveresponse", m.id),
            json!({"Commands": [{"type": "GetFile", "params": [{"key": "Path", "value": "/etc/hostname"}]}], "Comment": "c"}),
        )
        .await;
    assert_eq!(session.status, 201, "{}", session.text);
    let action = session.json["id"].as_str().unwrap().to_string();
    let run = format!("/api/machines/{}/runliveresponse", m.id);
    let link = format!("/api/machineactions/{action}/GetLiveResponseResultDownloadLink(index=0)");
    let software = format!("/api/machines/{}/software", m.id);
    let logons = format!("/api/machines/{}/logonusers", m.id);
    let cases = [
        (Method::GET, run.clone(), &["POST"][..]),
        (Method::PUT, run.clone(), &["POST"]),
        (Method::DELETE, run.to_uppercase(), &["POST"]),
        (Method::POST, link.clone(), &["GET"]),
        (Method::DELETE, link.clone(), &["GET"]),
        (Method::PUT, link.to_lowercase(), &["GET"]),
        (
            Method::PUT,
            "/api/libraryfiles".to_string(),
            &["GET", "POST"],
        ),
        (
            Method::PATCH,
            "/api/libraryfiles".to_string(),
            &["GET", "POST"],
        ),
        (
            Method::DELETE,
            "/api/LibraryFiles".to_string(),
            &["GET", "POST"],
        ),
        (
            Method::GET,
            "/api/libraryfiles/triage.sh".to_string(),
            &["DELETE"],
        ),
        (
            Method::PUT,
            "/api/libraryfiles/triage.sh".to_string(),
            &["DELETE"],
        ),
        (
            Method::POST,
            "/api/libraryfiles/triage.sh".to_string(),
            &["DELETE"],
        ),
        (Method::POST, software.clone(), &["GET"]),
        (Method::DELETE, software.clone(), &["GET"]),
        (Method::PUT, logons.clone(), &["GET"]),
        (Method::POST, logons.clone(), &["GET"]),
    ];
    for (verb, path, allowed) in cases {
        assert_405(&server, verb, &path, allowed).await;
    }
    // Only the session made here: no other action, the library still empty.
    assert_eq!(action_count(&server).await, 1);
    let library = server.get("/api/libraryfiles").await;
    assert_eq!(library.status, 200, "{}", library.text);
    assert_eq!(library.json["value"], json!([]), "{}", library.text);
    // The same paths with their own methods are answered.
    for path in [&software, &logons] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

#[tokio::test]
async fn non_json_content_type_is_415() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    let body = r#"{"Comment":"contain"}"#;
    for content_type in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let reply = post_raw(&server, &isolate, content_type, body).await;
        assert_mde_error(&reply, 415, "BadRequest");
    }
    let tags = format!("/api/machines/{}/tags", m.id);
    let reply = post_raw(
        &server,
        &tags,
        Some("text/plain"),
        r#"{"Value":"t","Action":"Add"}"#,
    )
    .await;
    assert_mde_error(&reply, 415, "BadRequest");
    let reply = post_raw(
        &server,
        "/api/machines/AddOrRemoveTagForMultipleMachines",
        Some("text/plain"),
        format!(
            r#"{{"Value":"t","Action":"Add","MachineIds":["{}"]}}"#,
            m.id
        ),
    )
    .await;
    assert_mde_error(&reply, 415, "BadRequest");
    assert_eq!(action_count(&server).await, 0, "nothing was created");
    let stored = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(stored.json["machineTags"], json!([]), "nothing was tagged");

    // JSON, however it is spelled, is accepted.
    let reply = post_raw(
        &server,
        &isolate,
        Some("Application/JSON; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

#[tokio::test]
async fn malformed_json_is_invalid_request_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    for body in [
        r#"{"Comment":"#,
        r#"{"Comment":"x""#,
        r#"{"Comment":"x",}"#,
        r#"{Comment:"x"}"#,
        r#"{'Comment':'x'}"#,
        r#"{"Comment":"x"} trailing"#,
        r#"{"Comment":"x"}{"Comment":"y"}"#,
        r#"{"Comment":"unterminated}"#,
        r#"{"Comment":"bad escape \q"}"#,
        r#"{"Comment":"lone surrogate \ud800"}"#,
        "not json at all",
        "{",
        "}",
    ] {
        let reply = post_json_text(&server, &isolate, body).await;
        assert_mde_error(&reply, 400, "InvalidRequestBody");
    }
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn json_that_is_not_an_object_is_invalid_request_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let paths = [
        format!("/api/machines/{}/isolate", m.id),
        format!("/api/machines/{}/tags", m.id),
        format!("/api/machines/{}/setDeviceValue", m.id),
        "/api/machines/AddOrRemoveTagForMultipleMachines".to_string(),
    ];
    for path in &paths {
        for body in [
            "[]",
            r#"["Comment","x"]"#,
            r#"[{"Comment":"x"}]"#,
            r#""x""#,
            r#""{\"Comment\":\"x\"}""#,
            "5",
            "true",
            "null",
        ] {
            let reply = post_json_text(&server, path, body).await;
            assert_mde_error(&reply, 400, "InvalidRequestBody");
        }
    }
    let reply = server
        .patch(&format!("/api/machines/{}", m.id), json!(["x"]))
        .await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn an_array_body_is_not_read_as_positional_properties() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = post_json_text(
        &server,
        &format!("/api/machines/{}/tags", m.id),
        r#"["positional","Add"]"#,
    )
    .await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    let reply = post_json_text(
        &server,
        &format!("/api/machines/{}/setDeviceValue", m.id),
        r#"["High"]"#,
    )
    .await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    let reply = post_json_text(
        &server,
        &format!("/api/machines/{}/isolate", m.id),
        r#"["by position","Full",null]"#,
    )
    .await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    let stored = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(stored.json["machineTags"], json!([]), "nothing was tagged");
    assert_eq!(stored.json["deviceValue"], Value::Null);
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_invalid_request_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let id = &m.id;
    let cases = [
        (format!("/api/machines/{id}/isolate"), json!({"Comment": 5})),
        (
            format!("/api/machines/{id}/isolate"),
            json!({"Comment": ["x"]}),
        ),
        (
            format!("/api/machines/{id}/isolate"),
            json!({"Comment": {"text": "x"}}),
        ),
        (
            format!("/api/machines/{id}/isolate"),
            json!({"Comment": "x", "IsolationType": 1}),
        ),
        (
            format!("/api/machines/{id}/unisolate"),
            json!({"Comment": true}),
        ),
        (
            format!("/api/machines/{id}/runAntiVirusScan"),
            json!({"Comment": "x", "ScanType": ["Quick"]}),
        ),
        (
            format!("/api/machines/{id}/StopAndQuarantineFile"),
            json!({"Comment": "x", "Sha1": 123}),
        ),
        (
            format!("/api/machines/{id}/tags"),
            json!({"Value": ["a"], "Action": "Add"}),
        ),
        (
            format!("/api/machines/{id}/tags"),
            json!({"Value": "a", "Action": 0}),
        ),
        (
            format!("/api/machines/{id}/setDeviceValue"),
            json!({"DeviceValue": 3}),
        ),
        (
            "/api/machines/AddOrRemoveTagForMultipleMachines".to_string(),
            json!({"Value": "a", "Action": "Add", "MachineIds": id}),
        ),
        (
            "/api/machines/AddOrRemoveTagForMultipleMachines".to_string(),
            json!({"Value": "a", "Action": "Add", "MachineIds": [1, 2]}),
        ),
    ];
    for (path, body) in cases {
        let reply = server.post(&path, body.clone()).await;
        let message = assert_mde_error(&reply, 400, "InvalidRequestBody");
        assert!(!message.is_empty(), "{path} {body}");
    }
    for body in [
        json!({"machineTags": "a"}),
        json!({"machineTags": [1]}),
        json!({"deviceValue": 1}),
    ] {
        let reply = server.patch(&format!("/api/machines/{id}"), body).await;
        assert_mde_error(&reply, 400, "InvalidRequestBody");
    }
    assert_eq!(action_count(&server).await, 0);
    let stored = server.get(&format!("/api/machines/{id}")).await;
    assert_eq!(stored.json["machineTags"], json!([]));
    assert_eq!(stored.json["deviceValue"], Value::Null);
}

#[tokio::test]
async fn a_body_over_1_mib_is_413() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    // `{"Comment":"x","Pad":"…"}` of exactly `size` bytes.
    let body_of = |size: usize| {
        let frame = r#"{"Comment":"x","Pad":""}"#.len();
        format!(r#"{{"Comment":"x","Pad":"{}"}}"#, "p".repeat(size - frame))
    };
    let reply = post_json_text(&server, &isolate, &body_of(MIB + 1)).await;
    assert_mde_error(&reply, 413, "BadRequest");
    let reply = post_json_text(&server, &isolate, &body_of(2 * MIB)).await;
    assert_mde_error(&reply, 413, "BadRequest");
    let tags = format!("/api/machines/{}/tags", m.id);
    let reply = post_json_text(&server, &tags, &body_of(MIB + 1)).await;
    assert_mde_error(&reply, 413, "BadRequest");
    assert_eq!(action_count(&server).await, 0);

    // Exactly 1 MiB is accepted (the padding is an unknown property).
    let body = body_of(MIB);
    assert_eq!(body.len(), MIB);
    let reply = post_json_text(&server, &isolate, &body).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        &reply.text[..reply.text.len().min(500)]
    );
}

#[tokio::test]
async fn a_wrongly_cased_property_is_missing() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    for body in [
        json!({"comment": "x"}),
        json!({"COMMENT": "x"}),
        json!({"comment": "x", "IsolationType": "Full"}),
    ] {
        let reply = server.post(&isolate, body).await;
        let message = assert_mde_error(&reply, 400, "MissingRequiredParameter");
        assert_eq!(message, "Parameter Comment is missing.");
    }
    let reply = server
        .post(
            &format!("/api/machines/{}/runAntiVirusScan", m.id),
            json!({"Comment": "x", "scanType": "Quick"}),
        )
        .await;
    let message = assert_mde_error(&reply, 400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter ScanType is missing.");
    let reply = server
        .post(
            &format!("/api/machines/{}/StopAndQuarantineFile", m.id),
            json!({"Comment": "x", "SHA1": "a".repeat(40)}),
        )
        .await;
    let message = assert_mde_error(&reply, 400, "MissingRequiredParameter");
    assert_eq!(message, "Parameter Sha1 is missing.");
    assert_eq!(action_count(&server).await, 0);

    // A wrongly cased optional property is ignored: the default applies.
    let reply = server
        .post(
            &isolate,
            json!({"Comment": "x", "isolationType": "Selective"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["scope"], "Full", "{}", reply.text);
}

#[tokio::test]
async fn an_empty_body_on_isolate_is_missing_comment() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    let replies = [
        post_raw(&server, &isolate, None, "").await,
        post_raw(&server, &isolate, Some("application/json"), "").await,
        post_raw(&server, &isolate, Some("application/json"), " \r\n\t ").await,
        post_json_text(&server, &isolate, "{}").await,
    ];
    for reply in replies {
        let message = assert_mde_error(&reply, 400, "MissingRequiredParameter");
        assert_eq!(message, "Parameter Comment is missing.");
    }
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn enum_values_must_match_exactly() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    for value in ["full", "FULL", "selective", " Full", "Full ", "Partial", ""] {
        let reply = server
            .post(&isolate, json!({"Comment": "x", "IsolationType": value}))
            .await;
        let message = assert_mde_error(&reply, 400, "InvalidInput");
        assert!(message.contains("IsolationType"), "{message}");
    }
    let tags = format!("/api/machines/{}/tags", m.id);
    for value in ["add", "ADD", "remove", "Delete"] {
        let reply = server
            .post(&tags, json!({"Value": "t", "Action": value}))
            .await;
        let message = assert_mde_error(&reply, 400, "InvalidInput");
        assert!(message.contains("Action"), "{message}");
    }
    let reply = server
        .post(
            &format!("/api/machines/{}/runAntiVirusScan", m.id),
            json!({"Comment": "x", "ScanType": "quick"}),
        )
        .await;
    assert_mde_error(&reply, 400, "InvalidInput");
    assert_eq!(action_count(&server).await, 0);
    let stored = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(stored.json["machineTags"], json!([]));
}

#[tokio::test]
async fn unknown_extra_properties_are_ignored() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server
        .post(
            &format!("/api/machines/{}/isolate", m.id),
            json!({
                "Comment": "contain",
                "IsolationType": "Selective",
                "Foo": 1,
                "Nested": {"a": [1, {"b": null}], "c": 1.5e300},
                "comment": "the other spelling is just another unknown property",
                "": "empty name"
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["type"], "Isolate");
    assert_eq!(reply.json["scope"], "Selective");
    assert_eq!(reply.json["requestorComment"], "contain");

    let reply = server
        .post(
            &format!("/api/machines/{}/tags", m.id),
            json!({"Value": "t", "Action": "Add", "MachineIds": ["ignored here"], "Extra": []}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["machineTags"], json!(["t"]));

    let reply = server
        .post(
            "/api/machines/AddOrRemoveTagForMultipleMachines",
            json!({"Value": "u", "Action": "Add", "MachineIds": [m.id], "Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let reply = server
        .post(
            &format!("/api/machines/{}/setDeviceValue", m.id),
            json!({"DeviceValue": "High", "Value": "Low"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["deviceValue"], "High");

    let reply = server
        .patch(
            &format!("/api/machines/{}", m.id),
            json!({"deviceValue": "Low", "computerDnsName": "renamed", "id": "x"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["deviceValue"], "Low");
    assert_eq!(reply.json["id"], m.id, "id is not writable");
    assert_eq!(reply.json["computerDnsName"], m.computer_dns_name);
}

// ---------------------------------------------------------------------------
// Unknown machines
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_machine_is_resource_not_found() {
    let (server, _) = server_with(OsPlatform::Windows11).await;
    for id in [UNKNOWN_ID, "not-a-machine", "desktop-nowhere.contoso.local"] {
        let reply = server.get(&format!("/api/machines/{id}")).await;
        let message = assert_mde_error(&reply, 404, "ResourceNotFound");
        assert_eq!(message, format!("Machine {id} was not found"));
    }
    let comment = json!({"Comment": "x"});
    let id = UNKNOWN_ID;
    let cases = [
        ("isolate", comment.clone()),
        ("unisolate", comment.clone()),
        ("offboard", comment.clone()),
        ("restrictCodeExecution", comment.clone()),
        ("unrestrictCodeExecution", comment.clone()),
        ("collectInvestigationPackage", comment.clone()),
        (
            "runAntiVirusScan",
            json!({"Comment": "x", "ScanType": "Quick"}),
        ),
        (
            "StopAndQuarantineFile",
            json!({"Comment": "x", "Sha1": "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"}),
        ),
        ("tags", json!({"Value": "t", "Action": "Add"})),
        ("setDeviceValue", json!({"DeviceValue": "High"})),
    ];
    for (endpoint, body) in cases {
        let reply = server
            .post(&format!("/api/machines/{id}/{endpoint}"), body)
            .await;
        let message = assert_mde_error(&reply, 404, "ResourceNotFound");
        assert_eq!(message, format!("Machine {id} was not found"), "{endpoint}");
    }
    let reply = server
        .patch(
            &format!("/api/machines/{id}"),
            json!({"deviceValue": "Low"}),
        )
        .await;
    let message = assert_mde_error(&reply, 404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {id} was not found"));
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn machine_action_ids_are_guids() {
    let server = TestServer::start().await;
    let reply = server
        .get("/api/machineactions/7f3c1d2e-0000-4000-8000-000000000001")
        .await;
    assert_mde_error(&reply, 404, "ResourceNotFound");
    let reply = server
        .get(&format!("/api/machineactions/{UNKNOWN_ID}"))
        .await;
    let message = assert_mde_error(&reply, 400, "BadRequest");
    assert!(message.contains("Edm.Guid"), "{message}");
}

// ---------------------------------------------------------------------------
// Path spellings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn versioned_and_differently_cased_paths_work_as_canonical_ones() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::Windows11);
    m.machine_tags = vec!["x".into()];
    server.put_machines(std::slice::from_ref(&m)).await;
    let id = &m.id;

    let canonical = server.get(&format!("/api/machines/{id}")).await;
    assert_eq!(canonical.status, 200, "{}", canonical.text);
    for path in [
        format!("/api/v1.0/machines/{id}"),
        format!("/API/Machines/{id}"),
        format!("/Api/V1.0/MACHINES/{id}"),
        format!("/api/machines/{id}/"),
        format!("/api/v1.0/machines/{id}/"),
    ] {
        let reply = server.get(&path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.json, canonical.json, "{path}");
        assert_eq!(reply.headers[CONTENT_TYPE], canonical.headers[CONTENT_TYPE]);
    }

    let list = server.get("/api/machines").await;
    for path in [
        "/api/v1.0/machines",
        "/API/MACHINES",
        "/api/machines/",
        "/API/V1.0/Machines/",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.json, list.json, "{path}");
    }

    let by_tag = server.get("/api/machines/findbytag?tag=x").await;
    assert_eq!(by_tag.json["value"][0]["id"], *id, "{}", by_tag.text);
    for path in [
        "/API/V1.0/MACHINES/FINDBYTAG?tag=x",
        "/api/machines/FindByTag?tag=x",
        "/api/machines/findbytag/?tag=x",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.json, by_tag.json, "{path}");
    }

    let reply = server
        .post(
            &format!("/API/Machines/{id}/ISOLATE"),
            json!({"Comment": "cased"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["type"], "Isolate");
    assert_eq!(reply.json["machineId"], *id);
    let reply = server
        .post(
            &format!("/api/v1.0/machines/{id}/unisolate/"),
            json!({"Comment": "versioned, trailing slash"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["type"], "Unisolate");
    let reply = server
        .post(
            &format!("/api/V1.0/machines/{id}/RunAntiVirusScan"),
            json!({"Comment": "x", "ScanType": "Quick"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = server
        .post(
            &format!("/api/machines/{id}/Tags/"),
            json!({"Value": "y", "Action": "Add"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = server
        .post(
            "/api/v1.0/machines/addorremovetagformultiplemachines",
            json!({"Value": "z", "Action": "Add", "MachineIds": [id]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["value"][0]["machineTags"],
        json!(["x", "y", "z"])
    );
    let reply = server
        .patch(
            &format!("/API/V1.0/MACHINES/{id}"),
            json!({"deviceValue": "Low"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let actions = server.get("/api/machineactions").await;
    for path in ["/api/v1.0/machineactions", "/API/MachineActions/"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert_eq!(reply.json, actions.json, "{path}");
    }

    // Errors are the same too.
    let canonical = server.get(&format!("/api/machines/{UNKNOWN_ID}")).await;
    let expected = assert_mde_error(&canonical, 404, "ResourceNotFound");
    for path in [
        format!("/api/v1.0/machines/{UNKNOWN_ID}"),
        format!("/API/MACHINES/{UNKNOWN_ID}/"),
    ] {
        let reply = server.get(&path).await;
        assert_eq!(assert_mde_error(&reply, 404, "ResourceNotFound"), expected);
    }
    let reply = server
        .post(&format!("/API/MACHINES/{id}/ISOLATE"), json!({}))
        .await;
    assert_mde_error(&reply, 400, "MissingRequiredParameter");
    let reply = server.get("/api/v1.0/nothing").await;
    assert_mde_error(&reply, 404, "NotFound");
}

// ---------------------------------------------------------------------------
// OData
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_odata_is_odata_error() {
    let (server, _) = server_with(OsPlatform::Windows11).await;
    for query in [
        "$filter=foo%20eq%201",
        "$top=10001",
        "$filter=(((",
        "$filter=computerDnsName%20eq%20'unterminated",
        "$filter=computerDnsName%20eq",
        "$filter=firstSeen%20gt%202024-01-01Z",
        "$top=abc",
        "$top=-1",
        "$skip=abc",
        "$orderby=nonsense",
        "$select=nope",
    ] {
        for entity in ["machines", "machineactions"] {
            let reply = server.get(&format!("/api/{entity}?{query}")).await;
            let message = assert_mde_error(&reply, 400, "ODataError");
            assert!(!message.is_empty(), "{entity}?{query}");
        }
    }
    let reply = server.get("/api/machines?$top=10000").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = server.get("/api/machineactions?$top=10000").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

// ---------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn hostile_paths_never_fail_the_server() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let long = "a".repeat(8 * 1024);
    let longer = "b".repeat(60 * 1024);
    let paths = [
        format!("/api/machines/{long}"),
        format!("/api/machines/{longer}"),
        format!("/api/machines/{long}/isolate"),
        "/api/machines/%00".to_string(),
        "/api/machines/%00%ff%fe%c0%af".to_string(),
        "/api/machines/%ff".to_string(),
        "/api/machines/%zz%".to_string(),
        "/api/machines/%".to_string(),
        "/api/machines/%E2%80%AE%F0%9F%92%A9".to_string(),
        "/api/machines/..%2f..%2fetc%2fpasswd".to_string(),
        "/api/machines/%2e%2e".to_string(),
        "/api/machines/'%20OR%201=1%20--".to_string(),
        "/api/machines/\";DROP%20TABLE%20machines;--".to_string(),
        "/api/machines/%252e".to_string(),
        "/api/machines//isolate".to_string(),
        "//api//machines//".to_string(),
        "/api/machines/findbytag?tag=%00".to_string(),
        "/api/machines/findbytag?tag=%ff%fe".to_string(),
        "/api/machines/findbytag?tag=a&tag=b".to_string(),
        "/api/machines/findbytag?tag=x&useStartsWithFilter=maybe".to_string(),
        "/api/machines?$filter=%ff%fe".to_string(),
        "/api/machines?%zz=1".to_string(),
        "/api/machines?$top=99999999999999999999999999".to_string(),
        "/api/machines?$skip=99999999999999999999999999".to_string(),
        "/api/machines?$top=1e400".to_string(),
        format!("/api/machines?$filter={}", "(".repeat(10_000)),
        format!("/api/machines?$filter={}", "not%20".repeat(5_000)),
        format!("/api/machines?$filter=computerDnsName%20eq%20'{long}'"),
        format!("/api/machines?$orderby={}", vec!["id"; 5_000].join(",")),
        format!("/api/machines?$select={}", vec!["id"; 5_000].join(",")),
        "/api/machineactions/%00".to_string(),
        format!("/api/machineactions/{long}"),
        format!("/api/machineactions/{long}/cancel"),
    ];
    for path in &paths {
        let reply = server.get(path).await;
        assert_mde_shaped(&reply, &format!("GET {}", &path[..path.len().min(120)]));
        let reply = server.post(path, json!({"Comment": "x"})).await;
        assert_mde_shaped(&reply, &format!("POST {}", &path[..path.len().min(120)]));
    }
    let reply = server.get(&format!("/api/machines/{long}")).await;
    assert_mde_error(&reply, 404, "ResourceNotFound");
    let reply = server.get("/api/machines/'%20OR%201=1%20--").await;
    assert_mde_error(&reply, 404, "ResourceNotFound");
    let reply = server.get("/api/machines/findbytag?tag=%00").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"], json!([]));

    // Odd methods.
    for verb in ["FOO", "PROPFIND", "TRACE"] {
        let verb = Method::from_bytes(verb.as_bytes()).unwrap();
        let reply = method(&server, verb.clone(), &format!("/api/machines/{}", m.id)).await;
        assert_mde_shaped(&reply, verb.as_str());
    }
    assert_eq!(action_count(&server).await, 0, "nothing was created");
}

/// Sends `head` (a request line and headers, without the blank line) over a
/// plain TCP connection, for requests no HTTP client library will build.
/// Returns the status, the lower-cased headers and the (de-chunked) body.
async fn raw_request(server: &TestServer, head: &str) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = server.origin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("{head}\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (status, headers, body)
}

#[tokio::test]
async fn a_path_over_64_kib_is_refused_and_the_server_stays_up() {
    let server = TestServer::start().await;
    let segment = "a".repeat(100 * 1024);
    for path in [
        format!("/api/machines/{segment}"),
        format!("/api/machines/{segment}/isolate"),
    ] {
        // hyper refuses such a request line itself (414, no body) before any
        // Palisade layer runs; what matters is a 4xx and a server that lives on.
        let (status, _, _) = raw_request(&server, &format!("GET {path} HTTP/1.1")).await;
        assert!(
            (400..500).contains(&status),
            "a 100 KiB path segment: {status}"
        );
    }
    // The same helper on an ordinary request, so that the check above is not the helper's fault.
    let head = format!(
        "GET /api/machines/unknown HTTP/1.1\r\nAuthorization: Bearer {}",
        server.token
    );
    let (status, _, body) = raw_request(&server, &head).await;
    assert_eq!(status, 404, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn hostile_bodies_never_fail_the_server() {
    let server = TestServer::start().await;
    let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
    let deep_unclosed = "[".repeat(100_000);
    let deep_in_unknown = format!(
        r#"{{"Comment":"x","Deep":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_in_value = format!(
        r#"{{"Value":{}{},"Action":"Add"}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let many_ids = format!(
        r#"{{"Value":"t","Action":"Add","MachineIds":[{}]}}"#,
        vec![r#""a""#; 100_000].join(",")
    );
    let many_keys = format!(
        "{{{}\"Comment\":\"x\"}}",
        (0..30_000)
            .map(|i| format!("\"k{i}\":0,"))
            .collect::<String>()
    );
    // (endpoint under /api/machines/{id}/, or "bulk"; body)
    let text_bodies: Vec<(&str, String)> = vec![
        ("isolate", deep_arrays.clone()),
        ("isolate", deep_objects.clone()),
        ("isolate", deep_unclosed.clone()),
        ("isolate", deep_in_unknown.clone()),
        ("tags", deep_in_value.clone()),
        ("bulk", deep_arrays.clone()),
        ("bulk", many_ids),
        ("isolate", many_keys),
        ("isolate", r#"{"Comment":1e999999}"#.to_string()),
        ("isolate", r#"{"Comment":"x","Big":1e400}"#.to_string()),
        ("isolate", r#"{"Comment":"x","Big":-1e400}"#.to_string()),
        (
            "isolate",
            format!(r#"{{"Comment":"x","Big":{}}}"#, "9".repeat(100_000)),
        ),
        (
            "isolate",
            r#"{"Comment":123456789012345678901234567890}"#.to_string(),
        ),
        ("isolate", r#"{"Comment":"nul \u0000 inside"}"#.to_string()),
        ("isolate", r#"{"Comment\u0000":"x"}"#.to_string()),
        ("tags", r#"{"Value":"\u0000","Action":"Add"}"#.to_string()),
        ("tags", r#"{"Value":"a\u0000b","Action":"Add"}"#.to_string()),
        ("tags", r#"{"Value":"t","Action":"Add\u0000"}"#.to_string()),
        ("tags", r#"{"Value":"\udfff","Action":"Add"}"#.to_string()),
        (
            "bulk",
            r#"{"Value":"t","Action":"Add","MachineIds":["\u0000"]}"#.to_string(),
        ),
        (
            "setDeviceValue",
            r#"{"DeviceValue":"High\u0000"}"#.to_string(),
        ),
        (
            "isolate",
            format!(r#"{{"Comment":"{}"}}"#, "x".repeat(900_000)),
        ),
        (
            "tags",
            format!(r#"{{"Value":"{}","Action":"Add"}}"#, "é".repeat(400_000)),
        ),
    ];
    for (endpoint, body) in &text_bodies {
        // A fresh machine each time, so that an accepted body cannot change the next answer.
        let m = machine(OsPlatform::Windows11);
        server.put_machines(std::slice::from_ref(&m)).await;
        let path = match *endpoint {
            "bulk" => "/api/machines/AddOrRemoveTagForMultipleMachines".to_string(),
            other => format!("/api/machines/{}/{other}", m.id),
        };
        let reply = post_json_text(&server, &path, body).await;
        let what = format!("POST {endpoint} {}", &body[..body.len().min(60)]);
        assert_mde_shaped(&reply, &what);
    }

    // The clear cases, precisely.
    let (m, victim) = {
        let m = machine(OsPlatform::Windows11);
        server.put_machines(std::slice::from_ref(&m)).await;
        let id = m.id.clone();
        (m, id)
    };
    let isolate = format!("/api/machines/{victim}/isolate");
    let tags = format!("/api/machines/{victim}/tags");
    for body in [&deep_arrays, &deep_unclosed] {
        let reply = post_json_text(&server, &isolate, body).await;
        assert_mde_error(&reply, 400, "InvalidRequestBody");
    }
    // Valid JSON whose only member is unknown: no Comment (or refused as too deep).
    let reply = post_json_text(&server, &isolate, &deep_objects).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let reply = post_json_text(&server, &tags, &deep_in_value).await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    let reply = post_json_text(&server, &isolate, r#"{"Comment":1e999999}"#).await;
    assert_mde_error(&reply, 400, "InvalidRequestBody");
    for bad in [r#""\u0000""#, r#""a\u0000b""#] {
        let reply = post_json_text(
            &server,
            &tags,
            &format!(r#"{{"Value":{bad},"Action":"Add"}}"#),
        )
        .await;
        assert_mde_error(&reply, 400, "InvalidInput");
    }
    let reply = post_json_text(&server, &tags, r#"{"Value":"t","Action":"Add\u0000"}"#).await;
    assert_mde_error(&reply, 400, "InvalidInput");
    let reply = post_json_text(
        &server,
        &format!("/api/machines/{victim}/setDeviceValue"),
        r#"{"DeviceValue":"High\u0000"}"#,
    )
    .await;
    assert_mde_error(&reply, 400, "InvalidInput");

    // Bytes that are not UTF-8 at all.
    let raw_bodies: Vec<Vec<u8>> = vec![
        b"{\"Comment\":\"\xff\xfe\"}".to_vec(),
        b"{\"Comment\":\"\xc0\xaf\"}".to_vec(),
        b"{\"Comment\":\"\xed\xa0\x80\"}".to_vec(),
        b"\xff\xfe{\x00\"\x00".to_vec(),
        b"{\"Comm\x00ent\":\"x\"}".to_vec(),
        vec![0u8; 4096],
        (0..=255u8).cycle().take(100_000).collect(),
    ];
    for body in raw_bodies {
        let reply = post_raw(&server, &isolate, Some("application/json"), body.clone()).await;
        let what = format!("raw {:?}", &body[..body.len().min(16)]);
        assert_mde_shaped(&reply, &what);
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
    }
    for body in [
        b"{\"Comment\":\"\xff\xfe\"}".to_vec(),
        b"{\"Comment\":\"\xc0\xaf\"}".to_vec(),
    ] {
        let reply = post_raw(&server, &isolate, Some("application/json"), body).await;
        assert_mde_error(&reply, 400, "InvalidRequestBody");
    }

    let reply = server
        .get(&format!(
            "/api/machineactions?$filter=machineId%20eq%20'{victim}'"
        ))
        .await;
    assert_eq!(
        reply.json["value"],
        json!([]),
        "no hostile body created an action"
    );
    let stored = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(
        stored.json["machineTags"],
        json!([]),
        "no hostile body tagged"
    );
}

#[tokio::test]
async fn invalid_utf8_anywhere_in_the_body_is_invalid_request_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    // Not UTF-8, hence not JSON, even where the bad bytes sit in an ignored property.
    for body in [
        b"{\"Comment\":\"ok\",\"Extra\":\"\xff\"}".to_vec(),
        b"{\"Comment\":\"ok\",\"\xfe\":1}".to_vec(),
    ] {
        let reply = post_raw(&server, &isolate, Some("application/json"), body).await;
        assert_mde_error(&reply, 400, "InvalidRequestBody");
    }
    assert_eq!(action_count(&server).await, 0);
}

#[tokio::test]
async fn the_server_still_answers_after_hostile_input() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let isolate = format!("/api/machines/{}/isolate", m.id);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for _ in 0..3 {
        let reply = post_json_text(&server, &isolate, &deep).await;
        assert_mde_shaped(&reply, "deep");
    }
    let reply = server.post(&isolate, json!({"Comment": "after"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let reply = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

// ---------------------------------------------------------------------------
// In a process of its own
// ---------------------------------------------------------------------------

#[tokio::test]
async fn long_filter_chains_do_not_crash_the_server() {
    let mut server = ServerProcess::start(&[]).await;
    let ok = server.get("/api/machines").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);

    // All within the 8 KiB a $filter may have.
    let cases = [
        ("or", 100),
        ("and", 100),
        ("or", 450),
        ("or", 500),
        ("and", 500),
        ("or", 620),
    ];
    for (operator, terms) in cases {
        let filter = vec!["id eq 'x'"; terms].join(&format!(" {operator} "));
        assert!(filter.len() <= 8 * 1024, "{}", filter.len());
        let encoded = filter.replace(' ', "%20").replace('\'', "%27");
        for entity in ["machines", "machineactions"] {
            let what = format!("{entity}: {terms} terms joined by '{operator}'");
            let reply = server
                .get(&format!("/api/{entity}?$filter={encoded}"))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}; server log: {}", server.log_tail()));
            assert_mde_shaped(&reply, &what);
            assert!(
                reply.status == 200 || reply.json["error"]["code"] == "ODataError",
                "{what}: {} {}",
                reply.status,
                reply.text
            );
            server.assert_alive();
        }
    }
    let ok = server.get("/api/machines").await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn a_non_json_content_type_is_415_even_without_a_body() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server
        .send(
            server
                .client
                .post(server.url(&format!("/api/machines/{}/isolate", m.id)))
                .header("content-type", "text/plain"),
        )
        .await;
    reply.assert_error(415, "BadRequest");
    // Without any Content-Type and without a body, cancel's optional Comment is simply absent.
    let action = server
        .post(
            &format!("/api/machines/{}/isolate", m.id),
            serde_json::json!({"Comment": "x"}),
        )
        .await;
    let id = action.json["id"].as_str().unwrap();
    let reply = server
        .send(
            server
                .client
                .post(server.url(&format!("/api/machineactions/{id}/cancel"))),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}
