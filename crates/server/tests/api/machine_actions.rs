use crate::harness::*;

use palisade_contract::{Machine, OnboardingStatus, OsPlatform, Timestamp};
use serde_json::{json, Value};

const SHA1: &str = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `POST /api/machines/{id}/{endpoint}`.
async fn act(server: &TestServer, machine_id: &str, endpoint: &str, body: Value) -> Reply {
    server
        .post(&format!("/api/machines/{machine_id}/{endpoint}"), body)
        .await
}

/// POSTs an action that must be accepted; returns the action.
#[track_caller]
fn created(reply: &Reply) -> Value {
    assert_eq!(reply.status.as_u16(), 201, "body: {}", reply.text);
    reply.json.clone()
}

async fn isolate(server: &TestServer, machine_id: &str) -> Value {
    created(
        &act(
            server,
            machine_id,
            "isolate",
            json!({"Comment": "isolate", "IsolationType": "Full"}),
        )
        .await,
    )
}

async fn unisolate(server: &TestServer, machine_id: &str) -> Value {
    created(
        &act(
            server,
            machine_id,
            "unisolate",
            json!({"Comment": "release"}),
        )
        .await,
    )
}

/// `GET /api/machineactions{query}`'s `value`.
async fn actions(server: &TestServer, query: &str) -> Vec<Value> {
    let reply = server.get(&format!("/api/machineactions{query}")).await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    reply.json["value"]
        .as_array()
        .unwrap_or_else(|| panic!("no value array: {}", reply.text))
        .clone()
}

fn ids(actions: &[Value]) -> Vec<String> {
    actions
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

fn is_lower_case_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
        && s.len() == 36
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[track_caller]
fn timestamp(value: &Value) -> Timestamp {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    Timestamp::parse(text).unwrap_or_else(|| panic!("not a timestamp: {text}"))
}

/// Everything a freshly created action must say.
#[track_caller]
fn assert_new_action(
    server: &TestServer,
    reply: &Reply,
    machine: &Machine,
    action_type: &str,
    scope: Option<&str>,
    comment: &str,
) -> Value {
    let a = created(reply);
    assert_eq!(
        a["@odata.context"],
        format!("{}/api/$metadata#MachineActions/$entity", server.origin),
        "body: {}",
        reply.text
    );
    assert!(a["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("#MachineActions/$entity"),);
    assert_eq!(a["type"], action_type, "body: {}", reply.text);
    assert_eq!(a["status"], "Pending", "body: {}", reply.text);
    match scope {
        Some(scope) => assert_eq!(a["scope"], scope, "body: {}", reply.text),
        None => assert!(a["scope"].is_null(), "scope should be null: {}", reply.text),
    }
    assert_eq!(a["requestorComment"], comment);
    assert_eq!(a["machineId"], machine.id.as_str());
    assert_eq!(a["computerDnsName"], machine.computer_dns_name.as_str());
    assert_eq!(a["requestSource"], "PublicApi");
    assert_eq!(a["errorHResult"], 0);
    assert_eq!(a["commands"], json!([]));
    assert!(
        a["requestor"].as_str().is_some_and(|r| !r.is_empty()),
        "requestor: {}",
        reply.text
    );
    assert!(a["cancellationRequestor"].is_null());
    assert!(a["cancellationComment"].is_null());
    assert!(a["cancellationDateTimeUtc"].is_null());
    let id = a["id"].as_str().expect("id");
    assert!(is_lower_case_guid(id), "id is not a lower-case GUID: {id}");
    assert_eq!(
        a["creationDateTimeUtc"], a["lastUpdateDateTimeUtc"],
        "a new action has not been updated yet"
    );
    let created_at = timestamp(&a["creationDateTimeUtc"]);
    let now = Timestamp::now();
    assert!(
        created_at <= now && created_at >= now.plus_seconds(-60),
        "creationDateTimeUtc {created_at} is not now ({now})"
    );
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json; odata.metadata=minimal"),
        "{content_type}"
    );
    assert_eq!(reply.headers["odata-version"], "4.0");
    a
}

/// Runs one action endpoint on a fresh machine and checks the new action.
async fn check_endpoint(
    platform: OsPlatform,
    endpoint: &str,
    body: Value,
    action_type: &str,
    scope: Option<&str>,
) -> Value {
    let (server, m) = server_with(platform).await;
    let comment = body["Comment"].as_str().unwrap().to_string();
    let reply = act(&server, &m.id, endpoint, body).await;
    let a = assert_new_action(&server, &reply, &m, action_type, scope, &comment);
    assert!(
        a["externalId"].is_null(),
        "externalId without ExternalId: {}",
        reply.text
    );
    // The action is stored as answered.
    let id = a["id"].as_str().unwrap();
    let got = server.get(&format!("/api/machineactions/{id}")).await;
    assert_eq!(got.status.as_u16(), 200, "body: {}", got.text);
    let mut stored = got.json.clone();
    let mut answered = a.clone();
    stored.as_object_mut().unwrap().remove("@odata.context");
    answered.as_object_mut().unwrap().remove("@odata.context");
    assert_eq!(stored, answered);
    a
}

// ---------------------------------------------------------------------------
// Each endpoint creates a Pending action
// ---------------------------------------------------------------------------

#[tokio::test]
async fn isolate_full_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows11,
        "isolate",
        json!({"Comment": "Isolate for investigation", "IsolationType": "Full"}),
        "Isolate",
        Some("Full"),
    )
    .await;
}

#[tokio::test]
async fn isolate_selective_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows10,
        "isolate",
        json!({"Comment": "Selective please", "IsolationType": "Selective"}),
        "Isolate",
        Some("Selective"),
    )
    .await;
}

#[tokio::test]
async fn isolation_type_defaults_to_full() {
    check_endpoint(
        OsPlatform::Windows11,
        "isolate",
        json!({"Comment": "no type given"}),
        "Isolate",
        Some("Full"),
    )
    .await;
}

#[tokio::test]
async fn unisolate_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows10,
        "unisolate",
        json!({"Comment": "Release"}),
        "Unisolate",
        None,
    )
    .await;
}

#[tokio::test]
async fn offboard_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows11,
        "offboard",
        json!({"Comment": "Offboard machine by postman"}),
        "Offboard",
        None,
    )
    .await;
}

#[tokio::test]
async fn restrict_code_execution_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows10,
        "restrictCodeExecution",
        json!({"Comment": "Restrict"}),
        "RestrictCodeExecution",
        None,
    )
    .await;
}

#[tokio::test]
async fn unrestrict_code_execution_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows11,
        "unrestrictCodeExecution",
        json!({"Comment": "Unrestrict"}),
        "UnrestrictCodeExecution",
        None,
    )
    .await;
}

#[tokio::test]
async fn quick_scan_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows10,
        "runAntiVirusScan",
        json!({"Comment": "Quick scan", "ScanType": "Quick"}),
        "RunAntiVirusScan",
        Some("Quick"),
    )
    .await;
}

#[tokio::test]
async fn full_scan_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Linux,
        "runAntiVirusScan",
        json!({"Comment": "Full scan", "ScanType": "Full"}),
        "RunAntiVirusScan",
        Some("Full"),
    )
    .await;
}

#[tokio::test]
async fn collect_investigation_package_creates_a_pending_action() {
    check_endpoint(
        OsPlatform::Windows11,
        "collectInvestigationPackage",
        json!({"Comment": "Collect forensics"}),
        "CollectInvestigationPackage",
        None,
    )
    .await;
}

#[tokio::test]
async fn stop_and_quarantine_file_creates_a_pending_action_with_file_info() {
    let a = check_endpoint(
        OsPlatform::Windows10,
        "StopAndQuarantineFile",
        json!({"Comment": "Stop and quarantine", "Sha1": SHA1}),
        "StopAndQuarantineFile",
        None,
    )
    .await;
    assert_eq!(
        a["relatedFileInfo"],
        json!({"fileIdentifier": SHA1, "fileIdentifierType": "Sha1"})
    );
}

#[tokio::test]
async fn actions_other_than_stop_and_quarantine_have_no_file_info() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = isolate(&server, &m.id).await;
    assert!(a["relatedFileInfo"].is_null(), "{a}");
}

#[tokio::test]
async fn stop_and_quarantine_file_with_a_bad_sha1_is_invalid_hash_value() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    for bad in [
        "abc",
        "zz662bc3d60e4200ceaf7aae249d1c343f4b83c9",
        "87662bc3d60e4200ceaf7aae249d1c343f4b83c9aa",
    ] {
        let reply = act(
            &server,
            &m.id,
            "StopAndQuarantineFile",
            json!({"Comment": "x", "Sha1": bad}),
        )
        .await;
        let message = reply.assert_error(400, "InvalidHashValue");
        assert!(message.contains(bad), "{message}");
    }
    assert!(actions(&server, "").await.is_empty());
}

#[tokio::test]
async fn scan_without_scan_type_is_missing_required_parameter() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = act(&server, &m.id, "runAntiVirusScan", json!({"Comment": "x"})).await;
    let message = reply.assert_error(400, "MissingRequiredParameter");
    assert!(message.contains("ScanType"), "{message}");
    assert!(actions(&server, "").await.is_empty());
}

/// `ExternalId` and `Title` (as MDE's `$metadata` spells them) are stored
/// and echoed by every action endpoint, in its answer, its GET and the list;
/// `RequestSource` is accepted, null or a string, and the action stays `PublicApi`.
#[tokio::test]
async fn external_id_and_title_are_echoed_on_every_action() {
    let cases: [(&str, Value); 8] = [
        ("isolate", json!({"Comment": "c", "IsolationType": "Full"})),
        ("unisolate", json!({"Comment": "c"})),
        ("offboard", json!({"Comment": "c"})),
        ("restrictCodeExecution", json!({"Comment": "c"})),
        ("unrestrictCodeExecution", json!({"Comment": "c"})),
        (
            "runAntiVirusScan",
            json!({"Comment": "c", "ScanType": "Quick"}),
        ),
        ("collectInvestigationPackage", json!({"Comment": "c"})),
        (
            "StopAndQuarantineFile",
            json!({"Comment": "c", "Sha1": SHA1}),
        ),
    ];
    let server = TestServer::start().await;
    for (n, (endpoint, mut body)) in cases.into_iter().enumerate() {
        let m = machine(OsPlatform::Windows11);
        server.put_machines(std::slice::from_ref(&m)).await;
        let external = format!("corr-{endpoint}-42");
        let title = format!("Incident 7: {endpoint}");
        body["ExternalId"] = json!(external);
        body["Title"] = json!(title);
        body["RequestSource"] = if n % 2 == 0 {
            Value::Null
        } else {
            json!("PublicApi")
        };
        let reply = act(&server, &m.id, endpoint, body).await;
        let a = created(&reply);
        assert_eq!(
            a["externalId"],
            external.as_str(),
            "{endpoint}: {}",
            reply.text
        );
        assert_eq!(a["title"], title.as_str(), "{endpoint}: {}", reply.text);
        assert_eq!(a["requestSource"], "PublicApi", "{endpoint}");
        let id = a["id"].as_str().unwrap();
        let got = server.get(&format!("/api/machineactions/{id}")).await;
        assert_eq!(got.json["externalId"], external.as_str(), "{endpoint}");
        assert_eq!(got.json["title"], title.as_str(), "{endpoint}");
        let listed = actions(&server, &format!("?$filter=id eq '{id}'")).await;
        assert_eq!(listed[0]["externalId"], external.as_str(), "{endpoint}");
        assert_eq!(listed[0]["title"], title.as_str(), "{endpoint}");
    }
}

/// A non-string `ExternalId`, `Title` or `RequestSource` is a bad body, and
/// one too long is invalid input: nothing is created.
#[tokio::test]
async fn external_id_and_title_must_be_short_strings() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    for (property, value) in [
        ("ExternalId", json!(42)),
        ("ExternalId", json!({"id": "x"})),
        ("Title", json!(["t"])),
        ("RequestSource", json!(1)),
    ] {
        let mut body = json!({"Comment": "c"});
        body[property] = value;
        let reply = act(&server, &m.id, "isolate", body).await;
        let message = reply.assert_error(400, "InvalidRequestBody");
        assert!(message.contains(property), "{message}");
    }
    for property in ["ExternalId", "Title"] {
        let mut body = json!({"Comment": "c"});
        body[property] = json!("x".repeat(1_001));
        let reply = act(&server, &m.id, "isolate", body).await;
        let message = reply.assert_error(400, "InvalidInput");
        assert!(message.contains(property), "{message}");
    }
    assert!(actions(&server, "").await.is_empty());
}

/// Cancel accepts `ExternalId`, `Title` and `RequestSource` too (MDE's
/// metadata declares them there): checked as on the actions, and the action
/// keeps those of the request that created it.
#[tokio::test]
async fn cancel_takes_external_id_and_title_and_keeps_the_actions_own() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = created(
        &act(
            &server,
            &m.id,
            "isolate",
            json!({"Comment": "c", "ExternalId": "corr-1", "Title": "contain"}),
        )
        .await,
    );
    let path = format!("/api/machineactions/{}/cancel", a["id"].as_str().unwrap());
    let refused = server.post(&path, json!({"ExternalId": 7})).await;
    refused.assert_error(400, "InvalidRequestBody");
    let reply = server
        .post(
            &path,
            json!({"Comment": "stop", "ExternalId": "corr-2", "Title": "undo", "RequestSource": null}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    assert_eq!(reply.json["status"], "Cancelled");
    assert_eq!(reply.json["externalId"], "corr-1");
    assert_eq!(reply.json["title"], "contain");
}

#[tokio::test]
async fn action_on_an_unknown_machine_is_resource_not_found() {
    let server = TestServer::start().await;
    let reply = act(
        &server,
        "ffffffffffffffffffffffffffffffffffffffff",
        "isolate",
        json!({"Comment": "x"}),
    )
    .await;
    reply.assert_error(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------
// OS support
// ---------------------------------------------------------------------------

#[tokio::test]
async fn offboard_on_linux_and_macos_is_os_platform_not_supported() {
    let server = TestServer::start().await;
    for (platform, name) in [(OsPlatform::Linux, "Linux"), (OsPlatform::MacOs, "macOS")] {
        let m = machine(platform);
        server.put_machines(std::slice::from_ref(&m)).await;
        let reply = act(&server, &m.id, "offboard", json!({"Comment": "bye"})).await;
        let message = reply.assert_error(400, "OsPlatformNotSupported");
        assert_eq!(
            message,
            format!("OS Platform {name} isn't supported for this action.")
        );
    }
    assert!(actions(&server, "").await.is_empty());
}

#[tokio::test]
async fn offboard_on_windows_10_1607_is_client_version_not_supported() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::Windows10);
    m.version = Some("1607".into());
    m.os_build = Some(14393);
    m.agent_version = Some("10.3720.14393.2457".into());
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = act(&server, &m.id, "offboard", json!({"Comment": "bye"})).await;
    let message = reply.assert_error(400, "ClientVersionNotSupported");
    assert_eq!(
        message,
        "Offboard is supported on client version 1703 and above."
    );
}

#[tokio::test]
async fn offboard_is_accepted_on_supported_windows() {
    let server = TestServer::start().await;
    let mut win10_1703 = machine(OsPlatform::Windows10);
    win10_1703.version = Some("1703".into());
    win10_1703.os_build = Some(15063);
    win10_1703.agent_version = Some("10.4850.15063.1418".into());
    let mut server2016_unified = machine(OsPlatform::WindowsServer2016);
    server2016_unified.agent_version = Some("10.8210.14393.6343".into());
    let accepted = [
        win10_1703,
        machine(OsPlatform::Windows11),
        machine(OsPlatform::WindowsServer2019),
        machine(OsPlatform::WindowsServer2022),
        server2016_unified,
    ];
    server.put_machines(&accepted).await;
    for m in &accepted {
        let reply = act(&server, &m.id, "offboard", json!({"Comment": "bye"})).await;
        assert_new_action(&server, &reply, m, "Offboard", None, "bye");
    }
}

#[tokio::test]
async fn offboard_on_server_2016_without_the_unified_agent_is_refused() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::WindowsServer2016);
    m.agent_version = Some("10.3720.14393.4046".into());
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = act(&server, &m.id, "offboard", json!({"Comment": "bye"})).await;
    let message = reply.assert_error(400, "ClientVersionNotSupported");
    assert!(
        message.starts_with("Offboard is supported on client version "),
        "{message}"
    );
    assert!(actions(&server, "").await.is_empty());
}

#[tokio::test]
async fn selective_isolation_on_linux_is_os_platform_not_supported() {
    let (server, m) = server_with(OsPlatform::Linux).await;
    let reply = act(
        &server,
        &m.id,
        "isolate",
        json!({"Comment": "x", "IsolationType": "Selective"}),
    )
    .await;
    let message = reply.assert_error(400, "OsPlatformNotSupported");
    assert_eq!(
        message,
        "OS Platform Linux isn't supported for this action."
    );
}

/// MDE refuses code-execution restriction on Linux; so does Palisade, for a
/// machine of the seed and for an enrolled device declaring every capability
/// (none carries it out), and records no action.
#[tokio::test]
async fn code_execution_restriction_on_linux_is_os_platform_not_supported() {
    let (server, seeded) = server_with(OsPlatform::Linux).await;
    let every = <palisade_device::Capability as strum::VariantArray>::VARIANTS;
    let device = server.enroll(&linux_device("lnx-restrict", every)).await;
    let windows = machine(OsPlatform::Windows11);
    server.put_machines(std::slice::from_ref(&windows)).await;
    for machine_id in [&seeded.id, &device.enrollment.machine_id] {
        for endpoint in ["restrictCodeExecution", "unrestrictCodeExecution"] {
            let reply = act(&server, machine_id, endpoint, json!({"Comment": "x"})).await;
            let message = reply.assert_error(400, "OsPlatformNotSupported");
            assert_eq!(
                message, "OS Platform Linux isn't supported for this action.",
                "{endpoint} on {machine_id}"
            );
            let keys: Vec<&String> = reply.json.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["error"], "{}", reply.text);
            let mut fields: Vec<&String> =
                reply.json["error"].as_object().unwrap().keys().collect();
            fields.sort();
            assert_eq!(fields, ["code", "message", "target"], "{}", reply.text);
        }
    }
    assert!(actions(&server, "").await.is_empty());
    // The same calls on Windows 11 are taken: the refusal is the platform's.
    let reply = act(
        &server,
        &windows.id,
        "restrictCodeExecution",
        json!({"Comment": "x"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

#[tokio::test]
async fn full_isolation_on_linux_is_accepted() {
    let (server, m) = server_with(OsPlatform::Linux).await;
    let reply = act(
        &server,
        &m.id,
        "isolate",
        json!({"Comment": "contain", "IsolationType": "Full"}),
    )
    .await;
    assert_new_action(&server, &reply, &m, "Isolate", Some("Full"), "contain");
}

#[tokio::test]
async fn isolation_on_an_old_macos_sensor_is_client_version_not_supported() {
    let server = TestServer::start().await;
    let mut m = machine(OsPlatform::MacOs);
    m.version = Some("12.6".into());
    m.agent_version = Some("101.9.6".into());
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = act(
        &server,
        &m.id,
        "isolate",
        json!({"Comment": "x", "IsolationType": "Full"}),
    )
    .await;
    let message = reply.assert_error(400, "ClientVersionNotSupported");
    assert!(
        message.starts_with("Isolate is supported on client version "),
        "{message}"
    );
    // A current macOS sensor is fine.
    let current = machine(OsPlatform::MacOs);
    server.put_machines(std::slice::from_ref(&current)).await;
    let reply = act(&server, &current.id, "isolate", json!({"Comment": "x"})).await;
    assert_new_action(&server, &reply, &current, "Isolate", Some("Full"), "x");
}

#[tokio::test]
async fn unmanaged_device_isolation_only_for_machines_not_onboarded() {
    let server = TestServer::start().await;
    let onboarded = machine(OsPlatform::Windows11);
    let mut unmanaged = machine(OsPlatform::Windows11);
    unmanaged.onboarding_status = OnboardingStatus::CanBeOnboarded;
    server
        .put_machines(&[onboarded.clone(), unmanaged.clone()])
        .await;
    let body = json!({"Comment": "contain", "IsolationType": "UnManagedDevice"});
    let reply = act(&server, &onboarded.id, "isolate", body.clone()).await;
    reply.assert_error(400, "InvalidInput");
    assert!(actions(&server, "").await.is_empty());

    let reply = act(&server, &unmanaged.id, "isolate", body).await;
    let a = created(&reply);
    assert_eq!(a["type"], "Isolate");
    assert_eq!(a["status"], "Pending");
    assert_eq!(a["machineId"], unmanaged.id.as_str());
}

// ---------------------------------------------------------------------------
// One active action per type
// ---------------------------------------------------------------------------

async fn assert_second_is_refused(endpoint: &str, body: Value) {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let first = created(&act(&server, &m.id, endpoint, body.clone()).await);
    let reply = act(&server, &m.id, endpoint, body).await;
    let message = reply.assert_error(400, "ActiveRequestAlreadyExists");
    assert_eq!(message, "Action is already in progress", "{endpoint}");
    // Nothing new was stored, and the first action is untouched.
    let all = actions(&server, "").await;
    assert_eq!(ids(&all), vec![first["id"].as_str().unwrap().to_string()]);
    assert_eq!(all[0]["status"], "Pending");
}

#[tokio::test]
async fn second_isolate_while_one_is_pending_is_refused() {
    assert_second_is_refused("isolate", json!({"Comment": "x", "IsolationType": "Full"})).await;
}

#[tokio::test]
async fn second_isolate_of_another_isolation_type_is_refused_too() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    isolate(&server, &m.id).await;
    let reply = act(
        &server,
        &m.id,
        "isolate",
        json!({"Comment": "x", "IsolationType": "Selective"}),
    )
    .await;
    reply.assert_error(400, "ActiveRequestAlreadyExists");
}

#[tokio::test]
async fn second_scan_while_one_is_pending_is_refused() {
    assert_second_is_refused(
        "runAntiVirusScan",
        json!({"Comment": "x", "ScanType": "Quick"}),
    )
    .await;
}

#[tokio::test]
async fn second_collection_while_one_is_pending_is_refused() {
    assert_second_is_refused("collectInvestigationPackage", json!({"Comment": "x"})).await;
}

#[tokio::test]
async fn second_offboard_while_one_is_pending_is_refused() {
    assert_second_is_refused("offboard", json!({"Comment": "x"})).await;
}

#[tokio::test]
async fn second_unisolate_while_one_is_pending_is_refused() {
    assert_second_is_refused("unisolate", json!({"Comment": "x"})).await;
}

#[tokio::test]
async fn second_restrict_while_one_is_pending_is_refused() {
    assert_second_is_refused("restrictCodeExecution", json!({"Comment": "x"})).await;
}

#[tokio::test]
async fn second_stop_and_quarantine_while_one_is_pending_is_refused() {
    assert_second_is_refused(
        "StopAndQuarantineFile",
        json!({"Comment": "x", "Sha1": SHA1}),
    )
    .await;
}

#[tokio::test]
async fn pending_action_on_one_machine_does_not_block_another_machine() {
    let server = TestServer::start().await;
    let a = machine(OsPlatform::Windows11);
    let b = machine(OsPlatform::Windows11);
    server.put_machines(&[a.clone(), b.clone()]).await;
    isolate(&server, &a.id).await;
    isolate(&server, &b.id).await;
    assert_eq!(actions(&server, "").await.len(), 2);
}

#[tokio::test]
async fn isolate_while_an_unisolate_is_pending_is_accepted() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let release = unisolate(&server, &m.id).await;
    let again = isolate(&server, &m.id).await;
    assert_ne!(release["id"], again["id"]);
    let pending = actions(
        &server,
        &format!("?$filter=machineId eq '{}' and status eq 'Pending'", m.id),
    )
    .await;
    assert_eq!(pending.len(), 2);
}

#[tokio::test]
async fn unisolate_while_an_isolate_is_pending_is_accepted() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let first = isolate(&server, &m.id).await;
    let release = unisolate(&server, &m.id).await;
    assert_eq!(release["type"], "Unisolate");
    assert_ne!(first["id"], release["id"]);
    // The pending isolate still blocks a new isolate, the pending unisolate a new unisolate.
    let reply = act(&server, &m.id, "isolate", json!({"Comment": "again"})).await;
    reply.assert_error(400, "ActiveRequestAlreadyExists");
    let reply = act(&server, &m.id, "unisolate", json!({"Comment": "again"})).await;
    reply.assert_error(400, "ActiveRequestAlreadyExists");
    assert_eq!(actions(&server, "").await.len(), 2);
}

#[tokio::test]
async fn isolate_is_accepted_again_after_the_pending_one_is_cancelled() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let first = isolate(&server, &m.id).await;
    let id = first["id"].as_str().unwrap();
    let cancelled = server
        .post(
            &format!("/api/machineactions/{id}/cancel"),
            json!({"Comment": "oops"}),
        )
        .await;
    assert_eq!(cancelled.status.as_u16(), 200, "body: {}", cancelled.text);
    let second = isolate(&server, &m.id).await;
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["status"], "Pending");
}

#[tokio::test]
async fn refused_actions_leave_no_row_behind() {
    let server = TestServer::start().await;
    let win = machine(OsPlatform::Windows11);
    let linux = machine(OsPlatform::Linux);
    server.put_machines(&[win.clone(), linux.clone()]).await;
    let first = isolate(&server, &win.id).await;
    let before = ids(&actions(&server, "").await);
    assert_eq!(before, vec![first["id"].as_str().unwrap().to_string()]);

    let refusals = [
        (&win.id, "isolate", json!({"Comment": "dup"})),
        (
            &win.id,
            "isolate",
            json!({"Comment": "x", "IsolationType": "UnManagedDevice"}),
        ),
        (&linux.id, "offboard", json!({"Comment": "x"})),
        (
            &linux.id,
            "isolate",
            json!({"Comment": "x", "IsolationType": "Selective"}),
        ),
        (
            &linux.id,
            "StopAndQuarantineFile",
            json!({"Comment": "x", "Sha1": SHA1}),
        ),
        (&win.id, "runAntiVirusScan", json!({"Comment": "x"})),
        (
            &win.id,
            "StopAndQuarantineFile",
            json!({"Comment": "x", "Sha1": "nothex"}),
        ),
    ];
    for (id, endpoint, body) in refusals {
        let reply = act(&server, id, endpoint, body).await;
        assert_eq!(reply.status.as_u16(), 400, "{endpoint}: {}", reply.text);
        assert_eq!(ids(&actions(&server, "").await), before, "after {endpoint}");
    }
}

// ---------------------------------------------------------------------------
// GET /api/machineactions
// ---------------------------------------------------------------------------

/// Two machines and five actions, created in this order; returns their ids.
async fn five_actions(server: &TestServer) -> (Machine, Machine, Vec<Value>) {
    let a = machine(OsPlatform::Windows11);
    let b = machine(OsPlatform::Windows10);
    server.put_machines(&[a.clone(), b.clone()]).await;
    let mut created_actions = vec![
        isolate(server, &a.id).await,
        created(
            &act(
                server,
                &b.id,
                "runAntiVirusScan",
                json!({"Comment": "scan", "ScanType": "Full"}),
            )
            .await,
        ),
        isolate(server, &b.id).await,
        created(
            &act(
                server,
                &a.id,
                "collectInvestigationPackage",
                json!({"Comment": "c"}),
            )
            .await,
        ),
    ];
    created_actions.push(unisolate(server, &a.id).await);
    (a, b, created_actions)
}

/// `GET /api/machines/{id}/machineactions` (the navigation property of
/// MDE's Machine): that machine's actions, newest first, with the OData
/// options of `/api/machineactions`; by id or name, under /api/v1.0 too.
#[tokio::test]
async fn a_machines_actions_are_its_navigation_property() {
    let server = TestServer::start().await;
    let (a, b, made) = five_actions(&server).await;
    let of_a: Vec<String> = [4, 3, 0]
        .iter()
        .map(|&n| made[n]["id"].as_str().unwrap().to_string())
        .collect();
    for path in [
        format!("/api/machines/{}/machineactions", a.id),
        format!(
            "/api/v1.0/Machines/{}/MachineActions",
            a.id.to_ascii_uppercase()
        ),
        format!("/api/machines/{}/machineactions", a.computer_dns_name),
    ] {
        let reply = server.get(&path).await;
        assert_eq!(reply.status.as_u16(), 200, "{path}: {}", reply.text);
        assert_eq!(
            reply.json["@odata.context"],
            format!("{}/api/$metadata#MachineActions", server.origin)
        );
        assert_eq!(reply.value_ids(), of_a, "{path}");
    }
    let path = format!("/api/machines/{}/machineactions", b.id);
    let isolations = server
        .get(&format!("{path}?$filter=type eq 'Isolate'&$count=true"))
        .await;
    assert_eq!(isolations.status.as_u16(), 200, "{}", isolations.text);
    assert_eq!(
        isolations.value_ids(),
        vec![made[2]["id"].as_str().unwrap()]
    );
    assert_eq!(isolations.json["@odata.count"], 1);
    // Another machine's id in the filter finds nothing: the path decides.
    let crossed = server
        .get(&format!("{path}?$filter=machineId eq '{}'", a.id))
        .await;
    assert!(crossed.value_ids().is_empty(), "{}", crossed.text);
    let newest = server.get(&format!("{path}?$top=1&$select=id,type")).await;
    assert_eq!(
        newest.json["value"],
        json!([{"id": made[2]["id"], "type": "Isolate"}])
    );

    server
        .get(&format!("{path}?$filter=nope eq 1"))
        .await
        .assert_error(400, "ODataError");
    let message = server
        .get(&format!("/api/machines/{}/machineactions", "f".repeat(40)))
        .await
        .assert_error(404, "ResourceNotFound");
    assert_eq!(message, format!("Machine {} was not found", "f".repeat(40)));
}

/// A user limited to one device group gets 404 for another group's machine.
#[tokio::test]
async fn a_machines_actions_are_not_shown_to_who_cannot_see_it() {
    let server = TestServer::start().await;
    server.put_group(1, "Workstations").await;
    server.put_group(2, "Servers").await;
    let mut hidden = machine(OsPlatform::WindowsServer2022);
    hidden.rbac_group_id = 2;
    let mut shown = machine(OsPlatform::Windows11);
    shown.rbac_group_id = 1;
    server.put_machines(&[hidden.clone(), shown.clone()]).await;
    isolate(&server, &hidden.id).await;
    let own = isolate(&server, &shown.id).await;
    let token = server
        .user_token(
            "ws-reader@contoso.example",
            &[palisade_domain::Role::ViewData],
            Some(vec![1]),
            &all_permissions(),
        )
        .await;
    server
        .get_as(
            Some(&token),
            &format!("/api/machines/{}/machineactions", hidden.id),
        )
        .await
        .assert_error(404, "ResourceNotFound");
    let reply = server
        .get_as(
            Some(&token),
            &format!("/api/machines/{}/machineactions", shown.id),
        )
        .await;
    assert_eq!(reply.value_ids(), vec![own["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn list_is_newest_first_by_default() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    let reply = server.get("/api/machineactions").await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#MachineActions", server.origin)
    );
    let listed = reply.json["value"].as_array().unwrap().clone();
    let mut expected = ids(&made);
    expected.reverse();
    assert_eq!(ids(&listed), expected);
    let times: Vec<Timestamp> = listed
        .iter()
        .map(|a| timestamp(&a["creationDateTimeUtc"]))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
}

#[tokio::test]
async fn list_filters_by_machine_id() {
    let server = TestServer::start().await;
    let (a, b, made) = five_actions(&server).await;
    for m in [&a, &b] {
        let listed = actions(&server, &format!("?$filter=machineId eq '{}'", m.id)).await;
        let mut expected: Vec<String> = made
            .iter()
            .filter(|x| x["machineId"] == m.id.as_str())
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect();
        expected.reverse();
        assert!(!expected.is_empty());
        assert_eq!(ids(&listed), expected);
    }
}

#[tokio::test]
async fn list_filters_by_status() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    let cancelled_id = made[1]["id"].as_str().unwrap();
    let reply = server
        .post(
            &format!("/api/machineactions/{cancelled_id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);

    let pending = actions(&server, "?$filter=status eq 'Pending'").await;
    assert_eq!(pending.len(), 4);
    assert!(pending.iter().all(|a| a["status"] == "Pending"));
    assert!(!ids(&pending).contains(&cancelled_id.to_string()));

    let cancelled = actions(&server, "?$filter=status eq 'Cancelled'").await;
    assert_eq!(ids(&cancelled), vec![cancelled_id.to_string()]);
    assert!(actions(&server, "?$filter=status eq 'Succeeded'")
        .await
        .is_empty());
}

#[tokio::test]
async fn list_filters_by_type() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    let listed = actions(&server, "?$filter=type eq 'Isolate'").await;
    let mut expected: Vec<String> = made
        .iter()
        .filter(|x| x["type"] == "Isolate")
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    expected.reverse();
    assert_eq!(expected.len(), 2);
    assert_eq!(ids(&listed), expected);
    assert!(actions(&server, "?$filter=type eq 'Offboard'")
        .await
        .is_empty());
}

#[tokio::test]
async fn list_filters_by_requestor() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    let requestor = made[0]["requestor"].as_str().unwrap().to_string();
    let listed = actions(&server, &format!("?$filter=requestor eq '{requestor}'")).await;
    assert_eq!(listed.len(), 5);
    assert!(
        actions(&server, "?$filter=requestor eq 'nobody@contoso.com'")
            .await
            .is_empty()
    );
    // Combined with `and`, as the docs' example does.
    let scans = actions(
        &server,
        &format!("?$filter=requestor eq '{requestor}' and type eq 'RunAntiVirusScan'"),
    )
    .await;
    assert_eq!(
        ids(&scans),
        vec![made[1]["id"].as_str().unwrap().to_string()]
    );
}

#[tokio::test]
async fn list_filters_by_creation_time() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    assert_eq!(
        actions(&server, "?$filter=creationDateTimeUtc gt 2020-01-01Z")
            .await
            .len(),
        5
    );
    assert!(actions(
        &server,
        "?$filter=creationDateTimeUtc gt 2999-01-01T00:00:00Z"
    )
    .await
    .is_empty());
    // Strictly after the third action: the last two.
    let third = made[2]["creationDateTimeUtc"].as_str().unwrap();
    let listed = actions(&server, &format!("?$filter=creationDateTimeUtc gt {third}")).await;
    let expected = vec![
        made[4]["id"].as_str().unwrap().to_string(),
        made[3]["id"].as_str().unwrap().to_string(),
    ];
    assert_eq!(ids(&listed), expected);
}

#[tokio::test]
async fn list_top_returns_the_newest() {
    let server = TestServer::start().await;
    let (_, _, made) = five_actions(&server).await;
    let reply = server.get("/api/machineactions?$top=2").await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    let listed = reply.json["value"].as_array().unwrap().clone();
    let expected = vec![
        made[4]["id"].as_str().unwrap().to_string(),
        made[3]["id"].as_str().unwrap().to_string(),
    ];
    assert_eq!(ids(&listed), expected);
    assert!(
        reply.json.get("@odata.nextLink").is_none(),
        "{}",
        reply.text
    );
}

// ---------------------------------------------------------------------------
// GET /api/machineactions/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_action_by_id() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = isolate(&server, &m.id).await;
    let id = a["id"].as_str().unwrap();
    let reply = server.get(&format!("/api/machineactions/{id}")).await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#MachineActions/$entity", server.origin)
    );
    assert_eq!(reply.json, a);
}

#[tokio::test]
async fn get_unknown_action_is_resource_not_found() {
    let server = TestServer::start().await;
    let reply = server
        .get("/api/machineactions/cd46c651-f570-4e32-abdb-a02a9e022a92")
        .await;
    reply.assert_error(404, "ResourceNotFound");
}

#[tokio::test]
async fn get_action_with_a_non_guid_id_is_bad_request() {
    let server = TestServer::start().await;
    let reply = server.get("/api/machineactions/556b83ec").await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("Edm.Guid"), "{message}");
    assert!(message.contains("556b83ec"), "{message}");
}

// ---------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cancel_updates_the_action_itself() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = isolate(&server, &m.id).await;
    let id = a["id"].as_str().unwrap();
    let reply = server
        .post(
            &format!("/api/machineactions/{id}/cancel"),
            json!({"Comment": "x"}),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    let c = &reply.json;
    assert_eq!(
        c["@odata.context"],
        format!("{}/api/$metadata#MachineActions/$entity", server.origin)
    );
    assert_eq!(c["id"], id);
    assert_eq!(c["type"], "Isolate");
    assert_eq!(c["status"], "Cancelled");
    assert_eq!(c["cancellationComment"], "x");
    assert!(
        c["cancellationRequestor"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        reply.text
    );
    assert_eq!(c["cancellationRequestor"], a["requestor"]);
    let cancelled_at = timestamp(&c["cancellationDateTimeUtc"]);
    let created_at = timestamp(&a["creationDateTimeUtc"]);
    let updated_at = timestamp(&c["lastUpdateDateTimeUtc"]);
    assert!(
        updated_at > created_at,
        "lastUpdateDateTimeUtc did not move"
    );
    assert_eq!(updated_at, cancelled_at);
    // What did not change.
    assert_eq!(c["creationDateTimeUtc"], a["creationDateTimeUtc"]);
    assert_eq!(c["requestorComment"], a["requestorComment"]);
    assert_eq!(c["machineId"], a["machineId"]);
    // No new action; the stored one is the cancelled one.
    let all = actions(&server, "").await;
    assert_eq!(ids(&all), vec![id.to_string()]);
    let got = server.get(&format!("/api/machineactions/{id}")).await;
    assert_eq!(got.json, reply.json);
}

#[tokio::test]
async fn cancel_without_a_body_is_accepted() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = isolate(&server, &m.id).await;
    let id = a["id"].as_str().unwrap();
    let reply = server
        .send(
            server
                .client
                .post(server.url(&format!("/api/machineactions/{id}/cancel"))),
        )
        .await;
    assert_eq!(reply.status.as_u16(), 200, "body: {}", reply.text);
    assert_eq!(reply.json["id"], id);
    assert_eq!(reply.json["status"], "Cancelled");
    assert!(
        reply.json["cancellationComment"].is_null(),
        "{}",
        reply.text
    );
    assert!(reply.json["cancellationDateTimeUtc"].is_string());
}

#[tokio::test]
async fn cancelling_twice_is_bad_request() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = isolate(&server, &m.id).await;
    let id = a["id"].as_str().unwrap();
    let path = format!("/api/machineactions/{id}/cancel");
    let first = server.post(&path, json!({"Comment": "x"})).await;
    assert_eq!(first.status.as_u16(), 200, "body: {}", first.text);
    let second = server.post(&path, json!({"Comment": "y"})).await;
    let message = second.assert_error(400, "BadRequest");
    assert_eq!(message, format!("Action {id} is already Cancelled"));
    // The first cancellation stands.
    let got = server.get(&format!("/api/machineactions/{id}")).await;
    assert_eq!(got.json["cancellationComment"], "x");
    assert_eq!(got.json, first.json);
}

#[tokio::test]
async fn cancelling_an_unknown_action_is_resource_not_found() {
    let server = TestServer::start().await;
    let reply = server
        .post(
            "/api/machineactions/cd46c651-f570-4e32-abdb-a02a9e022a92/cancel",
            json!({"Comment": "x"}),
        )
        .await;
    reply.assert_error(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------
// Time-out, concurrency, id case
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pending_actions_time_out_after_three_days() {
    let (mut server, m) = server_with(OsPlatform::Windows11).await;
    let old = isolate(&server, &m.id).await;
    server.clock.advance(2 * 86_400);
    server.renew_token().await;
    let young = created(
        &act(
            &server,
            &m.id,
            "runAntiVirusScan",
            json!({"Comment": "x", "ScanType": "Quick"}),
        )
        .await,
    );
    assert_eq!(server.palisade.time_out_stale_actions().await.unwrap(), 0);

    server.clock.advance(86_400 + 60);
    server.renew_token().await;
    assert_eq!(server.palisade.time_out_stale_actions().await.unwrap(), 1);
    let reply = server
        .get(&format!(
            "/api/machineactions/{}",
            old["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.json["status"], "TimeOut", "{}", reply.text);
    assert!(
        timestamp(&reply.json["lastUpdateDateTimeUtc"]) > timestamp(&old["lastUpdateDateTimeUtc"])
    );
    let reply = server
        .get(&format!(
            "/api/machineactions/{}",
            young["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.json["status"], "Pending");
    // A timed-out isolate no longer blocks a new one.
    isolate(&server, &m.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_admit_exactly_one() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let server = std::sync::Arc::new(server);
    let attempts = (0..20).map(|_| {
        let (server, id) = (server.clone(), m.id.clone());
        tokio::spawn(async move {
            act(
                &server,
                &id,
                "isolate",
                json!({"Comment": "race", "IsolationType": "Full"}),
            )
            .await
            .status
            .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        statuses.push(attempt.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        actions(&server, &format!("?$filter=machineId eq '{}'", m.id))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn machine_ids_are_accepted_in_upper_case() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let upper = m.id.to_uppercase();
    let action = created(&act(&server, &upper, "isolate", json!({"Comment": "x"})).await);
    assert_eq!(action["machineId"], m.id);
    let reply = server
        .post(
            &format!("/api/machines/{upper}/tags"),
            json!({"Value": "t", "Action": "Add"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], m.id);
}
