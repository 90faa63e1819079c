//! Live response over HTTP: the tenant's library (`/api/libraryfiles`,
//! multipart uploads of at most 20 MiB), sessions (`runliveresponse`: their
//! validation, shape and one-at-a-time rule), a session carried out by a
//! device (library files down, results up, outcomes reported), the links
//! `GetLiveResponseResultDownloadLink(index=n)` answers (no bearer token, 30
//! minutes), who may do what, the 10-a-minute limit, and sessions the
//! emulator's outcome rules end.

use crate::control_plane::{add_rule, poll};
use crate::device_plane::Enrolled;
use crate::harness::*;
use palisade_contract::live_response::CommandStatus;
use palisade_contract::{ActionStatus, OsPlatform, Permission, Timestamp};
use palisade_device::client::DeviceError;
use palisade_device::{ActionResult, Capability, CommandOutcome};
use palisade_domain::rate_limit::RateLimits;
use palisade_domain::Role;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
/// The largest library file (`MAX_LIBRARY_FILE_BYTES`).
const LIBRARY_LIMIT: usize = 20 * MIB;
/// How long a result link downloads (`RESULT_LINK_SECONDS`).
const LINK_SECONDS: i64 = 30 * 60;

// ---------------------------------------------------------------------------
// The library
// ---------------------------------------------------------------------------

/// One part of a multipart/form-data body.
pub(crate) struct Part {
    name: &'static str,
    file_name: Option<String>,
    bytes: Vec<u8>,
}

/// A text field.
fn field(name: &'static str, value: &str) -> Part {
    Part {
        name,
        file_name: None,
        bytes: value.as_bytes().to_vec(),
    }
}

/// The file part (`file`), named `file_name`.
pub(crate) fn file(file_name: &str, bytes: &[u8]) -> Part {
    Part {
        name: "file",
        file_name: Some(file_name.to_string()),
        bytes: bytes.to_vec(),
    }
}

pub(crate) const BOUNDARY: &str = "palisade-live-response-boundary-7f3a";

/// The body of a form of `parts`, as a browser or MDE's PowerShell sends it.
pub(crate) fn form(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match &part.file_name {
            Some(file_name) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{file_name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                part.name
            ),
            None => format!(
                "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                part.name
            ),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `POST /api/libraryfiles` with the form of `parts`, as the holder of `token`.
async fn upload_as(server: &TestServer, token: &str, parts: &[Part]) -> Reply {
    let request = reqwest::Client::new()
        .post(server.url("/api/libraryfiles"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(parts));
    server.send(request).await
}

/// The same, as the server's app holding every permission.
async fn upload(server: &TestServer, parts: &[Part]) -> Reply {
    upload_as(server, &server.token, parts).await
}

/// The library file an upload answered (200), without its `@odata.context`
/// (an entity's), as the list shows it.
#[track_caller]
fn entity(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut entry = reply.json.clone();
    let context = entry
        .as_object_mut()
        .and_then(|o| o.remove("@odata.context"))
        .unwrap_or_else(|| panic!("no @odata.context: {}", reply.text));
    assert!(
        context
            .as_str()
            .is_some_and(|c| c.ends_with("$metadata#LibraryFiles/$entity")),
        "{context}"
    );
    entry
}

/// Puts `bytes` in the library as `name` (no other field): its entry.
pub(crate) async fn put_library_file(server: &TestServer, name: &str, bytes: &[u8]) -> Value {
    let reply = upload(server, &[file(name, bytes)]).await;
    let entry = entity(&reply);
    assert_eq!(entry["fileName"], name, "{}", reply.text);
    assert_eq!(entry["sha256"], sha256_hex(bytes), "{}", reply.text);
    entry
}

/// `GET /api/libraryfiles` as `token`: the reply, its shape checked if 200.
async fn list_library_as(server: &TestServer, token: &str) -> Reply {
    let reply = server.get_as(Some(token), "/api/libraryfiles").await;
    if reply.status == 200 {
        let context = reply.json["@odata.context"].as_str().unwrap_or_default();
        assert!(
            context.ends_with("$metadata#LibraryFiles"),
            "{}",
            reply.text
        );
        assert!(reply.json["value"].is_array(), "{}", reply.text);
    }
    reply
}

/// The library's entries, in the order listed.
pub(crate) async fn library(server: &TestServer) -> Vec<Value> {
    let reply = list_library_as(server, &server.token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json["value"].as_array().unwrap().clone()
}

fn library_names(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["fileName"].as_str().unwrap())
        .collect()
}

/// `DELETE /api/libraryfiles/{name}` as `token`.
async fn delete_as(server: &TestServer, token: &str, name: &str) -> Reply {
    let request = reqwest::Client::new()
        .delete(server.url(&format!("/api/libraryfiles/{name}")))
        .bearer_auth(token);
    server.send(request).await
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

/// One command of `runliveresponse`: `{"type", "params"}`.
fn command(kind: &str, params: &[(&str, &str)]) -> Value {
    let params: Vec<Value> = params
        .iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    json!({"type": kind, "params": params})
}

pub(crate) fn put_file(name: &str) -> Value {
    command("PutFile", &[("FileName", name)])
}

pub(crate) fn run_script(name: &str) -> Value {
    command("RunScript", &[("ScriptName", name)])
}

pub(crate) fn get_file(path: &str) -> Value {
    command("GetFile", &[("Path", path)])
}

fn run_path(machine_id: &str) -> String {
    format!("/api/machines/{machine_id}/runliveresponse")
}

/// `POST /api/machines/{id}/runliveresponse` with `body` as `token`.
async fn run_as(server: &TestServer, token: &str, machine_id: &str, body: Value) -> Reply {
    server.post_as(token, &run_path(machine_id), body).await
}

/// A session of `commands` that must be created: the new action.
pub(crate) async fn start_session(server: &TestServer, machine_id: &str, commands: Value) -> Value {
    let reply = server
        .post(
            &run_path(machine_id),
            json!({"Commands": commands, "Comment": "live response"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["type"], "LiveResponse", "{}", reply.text);
    reply.json
}

pub(crate) fn id_of(action: &Value) -> String {
    action["id"].as_str().expect("an action id").to_string()
}

pub(crate) fn link_path(action_id: &str, index: i64) -> String {
    format!("/api/machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})")
}

/// The link to command `index`'s result, asked for as `token`: it must be
/// answered, under the server's `/downloads/results/`.
async fn result_link_as(server: &TestServer, token: &str, action_id: &str, index: i64) -> String {
    let reply = server
        .get_as(Some(token), &link_path(action_id, index))
        .await;
    assert_eq!(reply.status, 200, "index {index}: {}", reply.text);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Edm.String", server.origin),
        "{}",
        reply.text
    );
    let link = reply.json["value"].as_str().expect("a link").to_string();
    let prefix = format!("{}/downloads/results/", server.origin);
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} is not under {prefix}"));
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()),
        "{link}"
    );
    link
}

pub(crate) async fn result_link(server: &TestServer, action_id: &str, index: i64) -> String {
    result_link_as(server, &server.token, action_id, index).await
}

/// What `link` downloads, with no Authorization header at all.
pub(crate) async fn download(link: &str) -> Vec<u8> {
    let response = reqwest::Client::new().get(link).send().await.unwrap();
    assert_eq!(response.status(), 200, "{link}");
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap().to_vec();
    assert_eq!(body.len(), length, "{link}: Content-Length");
    body
}

/// `link` downloads exactly `bytes`.
async fn assert_downloads(link: &str, bytes: &[u8]) {
    let body = download(link).await;
    assert_eq!(body.len(), bytes.len(), "{link}");
    assert_eq!(sha256_hex(&body), sha256_hex(bytes), "{link}");
}

/// The link no longer (or never) downloads: 404 in MDE's shape.
async fn assert_link_refused(server: &TestServer, link: &str) {
    let reply = server.send(reqwest::Client::new().get(link)).await;
    reply.assert_error(404, "NotFound");
}

/// A device refusal with `status`; its message.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, DeviceError>, status: u16) -> String {
    match result {
        Err(DeviceError::Refused {
            status: s, message, ..
        }) if s == status => message,
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

pub(crate) fn outcome(index: u32, status: CommandStatus, at: Timestamp) -> CommandOutcome {
    CommandOutcome {
        index,
        command_status: status,
        errors: vec![],
        start_time: at,
        end_time: at.plus_seconds(2),
    }
}

pub(crate) fn ended(status: ActionStatus, commands: Vec<CommandOutcome>) -> ActionResult {
    ActionResult {
        status,
        detail: Some(format!("session {status}")),
        error_h_result: None,
        commands,
    }
}

/// A Linux device that carries out live response.
pub(crate) async fn responder(server: &TestServer, name: &str) -> Enrolled {
    server
        .enroll(&linux_device(name, &[Capability::LiveResponse]))
        .await
}

/// A library file downloaded by the device for its session.
pub(crate) async fn session_file(device: &Enrolled, action_id: &str, name: &str) -> Vec<u8> {
    let response = device
        .device
        .download_session_file(action_id, name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

pub(crate) fn statuses(action: &Value) -> Vec<String> {
    action["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no commands: {action}"))
        .iter()
        .map(|c| c["commandStatus"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// The library: upload, list, override, delete
// ---------------------------------------------------------------------------

#[tokio::test]
async fn library_files_are_uploaded_listed_replaced_only_when_asked_and_deleted() {
    let server = TestServer::start().await;
    let curator = server
        .app_token("Library curator", &[Permission::LibraryManage])
        .await;
    assert!(library(&server).await.is_empty());

    let script = b"#!/bin/sh\necho collecting \"$@\"\n".to_vec();
    let reply = upload_as(
        &server,
        &curator,
        &[
            field("Description", "Collects the logs"),
            field("ParametersDescription", "-v: verbose"),
            file("collect.sh", &script),
        ],
    )
    .await;
    let created = entity(&reply);
    assert_eq!(created["fileName"], "collect.sh");
    assert_eq!(created["sha256"], sha256_hex(&script));
    assert_eq!(created["description"], "Collects the logs");
    assert_eq!(created["parametersDescription"], "-v: verbose");
    // Parameters described: it has parameters, unless told otherwise.
    assert_eq!(created["hasParameters"], true);
    assert_eq!(created["createdBy"], "Library curator");
    assert_eq!(created["creationTime"], created["lastUpdatedTime"]);
    assert!(Timestamp::parse(created["creationTime"].as_str().unwrap()).is_some());

    // Field names in any case; HasParameters as given; no description.
    let notes = noise(3 * MIB / 2 + 17, 1);
    let reply = upload_as(
        &server,
        &curator,
        &[
            field("hasparameters", "False"),
            field("parametersdescription", "ignored"),
            Part {
                name: "FILE",
                file_name: Some("a notes.txt".into()),
                bytes: notes.clone(),
            },
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["fileName"], "a notes.txt");
    assert_eq!(reply.json["sha256"], sha256_hex(&notes));
    assert_eq!(reply.json["hasParameters"], false);
    assert!(reply.json["description"].is_null(), "{}", reply.text);
    let plain = put_library_file(&server, "zz.ps1", b"Get-Process").await;
    assert_eq!(plain["hasParameters"], false);
    assert!(plain["parametersDescription"].is_null());

    // Listed by name, the same entries the uploads answered.
    let reply = list_library_as(&server, &curator).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let entries = reply.json["value"].as_array().unwrap().clone();
    assert_eq!(
        library_names(&entries),
        ["a notes.txt", "collect.sh", "zz.ps1"]
    );
    assert_eq!(entries[1], created);

    // The name is taken: refused without OverrideIfExists=true, whatever
    // else is sent, and the entry stays as it was.
    let other = b"#!/bin/sh\necho replaced\n".to_vec();
    for extra in [None, Some("false"), Some("")] {
        let mut parts = vec![field("Description", "Not taken")];
        if let Some(value) = extra {
            parts.push(field("OverrideIfExists", value));
        }
        parts.push(file("collect.sh", &other));
        let reply = upload_as(&server, &curator, &parts).await;
        let message = reply.assert_error(400, "BadRequest");
        assert!(message.contains("OverrideIfExists"), "{message}");
    }
    // Also when the refusing flag comes after the file.
    let reply = upload(
        &server,
        &[
            file("collect.sh", &other),
            field("OverrideIfExists", "false"),
        ],
    )
    .await;
    reply.assert_error(400, "BadRequest");
    // A flag that is neither true nor false.
    let reply = upload(
        &server,
        &[field("OverrideIfExists", "yes"), file("collect.sh", &other)],
    )
    .await;
    reply.assert_error(400, "InvalidInput");
    assert_eq!(library(&server).await[1], created);

    // Replaced when asked: created when it was, updated now, new bytes.
    server.clock.advance(90);
    let reply = upload(
        &server,
        &[
            field("OverrideIfExists", "true"),
            field("Description", "Collects more"),
            file("collect.sh", &other),
        ],
    )
    .await;
    let replaced = entity(&reply);
    assert_eq!(replaced["fileName"], "collect.sh");
    assert_eq!(replaced["sha256"], sha256_hex(&other));
    assert_ne!(replaced["sha256"], created["sha256"]);
    assert_eq!(replaced["creationTime"], created["creationTime"]);
    assert_ne!(replaced["lastUpdatedTime"], created["lastUpdatedTime"]);
    let (was, now) = (
        Timestamp::parse(created["lastUpdatedTime"].as_str().unwrap()).unwrap(),
        Timestamp::parse(replaced["lastUpdatedTime"].as_str().unwrap()).unwrap(),
    );
    assert!(now >= was.plus_seconds(90), "{was} then {now}");
    assert_eq!(replaced["description"], "Collects more");
    // A replaced file keeps who made it first.
    assert_eq!(replaced["createdBy"], "Library curator");
    // OverrideIfExists after the file works as well.
    server.clock.advance(5);
    let third = b"echo third".to_vec();
    let reply = upload(
        &server,
        &[
            file("collect.sh", &third),
            field("OverrideIfExists", "TRUE"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["sha256"], sha256_hex(&third));
    assert_eq!(reply.json["creationTime"], created["creationTime"]);
    let entries = library(&server).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1], entity(&reply));

    // Deleted once; a second time it is not there.
    let reply = delete_as(&server, &curator, "collect.sh").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.text, "");
    let message = delete_as(&server, &curator, "collect.sh")
        .await
        .assert_error(404, "NotFound");
    assert!(message.contains("collect.sh"), "{message}");
    delete_as(&server, &curator, "never-there.sh")
        .await
        .assert_error(404, "NotFound");
    // A name with a space, percent-encoded in the path.
    let reply = delete_as(&server, &curator, "a%20notes.txt").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(library_names(&library(&server).await), ["zz.ps1"]);
    // Deleted, the name is free again, with no override.
    let again = put_library_file(&server, "collect.sh", &script).await;
    assert_ne!(again["creationTime"], created["creationTime"]);
}

#[tokio::test]
async fn library_uploads_that_are_no_file_of_a_plain_name_are_refused() {
    let server = TestServer::start().await;
    // No file part at all.
    let reply = upload(&server, &[field("Description", "no file")]).await;
    reply.assert_error(400, "MissingRequiredParameter");
    // Not a form.
    let reply = server
        .post("/api/libraryfiles", json!({"file": "collect.sh"}))
        .await;
    reply.assert_error(400, "BadRequest");
    // Two files.
    let reply = upload(&server, &[file("one.sh", b"1"), file("two.sh", b"2")]).await;
    reply.assert_error(400, "BadRequest");
    // Names that are no plain file name.
    for name in ["..", ".", "", "a\tb", "dir\\evil.ps1", &"x".repeat(256)] {
        let reply = upload(&server, &[file(name, b"echo")]).await;
        assert_eq!(reply.status, 400, "{name:?}: {}", reply.text);
    }
    // A path: refused, or at most kept as its last component.
    let reply = upload(&server, &[file("../../etc/evil.sh", b"echo")]).await;
    if reply.status == 200 {
        assert_eq!(reply.json["fileName"], "evil.sh", "{}", reply.text);
    } else {
        assert_eq!(reply.status, 400, "{}", reply.text);
    }
    for entry in library(&server).await {
        let name = entry["fileName"].as_str().unwrap();
        assert!(!name.contains(['/', '\\']) && name != "..", "{name:?}");
    }
    // A description too long.
    let reply = upload(
        &server,
        &[
            field("Description", &"d".repeat(4_001)),
            file("long.sh", b"echo"),
        ],
    )
    .await;
    reply.assert_error(400, "InvalidInput");
    assert!(!library_names(&library(&server).await).contains(&"long.sh"));
}

#[tokio::test]
async fn a_library_file_larger_than_20_mib_is_refused_with_413_and_20_mib_is_taken() {
    let server = TestServer::start().await;
    let too_large = noise(LIBRARY_LIMIT + 1, 2);
    let reply = upload(&server, &[file("big.bin", &too_large)]).await;
    reply.assert_error(413, "BadRequest");
    assert!(library(&server).await.is_empty(), "nothing is listed");
    drop(too_large);

    let exact = noise(LIBRARY_LIMIT, 3);
    let reply = upload(&server, &[file("big.bin", &exact)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["sha256"], sha256_hex(&exact));
    let entries = library(&server).await;
    assert_eq!(library_names(&entries), ["big.bin"]);

    // Too large as a replacement: the file that was there stays.
    let reply = upload(
        &server,
        &[
            field("OverrideIfExists", "true"),
            file("big.bin", &noise(LIBRARY_LIMIT + 1, 4)),
        ],
    )
    .await;
    reply.assert_error(413, "BadRequest");
    let after = library(&server).await;
    assert_eq!(after, entries);
    assert_eq!(after[0]["sha256"], sha256_hex(&exact));
}

// ---------------------------------------------------------------------------
// Sessions: validation and shape
// ---------------------------------------------------------------------------

#[tokio::test]
async fn runliveresponse_validates_its_commands_and_answers_a_pending_session() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    put_library_file(&server, "notes.txt", b"notes").await;
    put_library_file(&server, "triage.ps1", b"Get-Process").await;
    let path = run_path(&m.id);
    let refusals = [
        (
            json!({"Comment": "no commands"}),
            400,
            "MissingRequiredParameter",
        ),
        (json!({"Commands": null}), 400, "MissingRequiredParameter"),
        (json!({"Commands": []}), 400, "InvalidInput"),
        (
            json!({"Commands": vec![get_file("/tmp/x"); 51]}),
            400,
            "InvalidInput",
        ),
        // Out of order: PutFile, RunScript, GetFile.
        (
            json!({"Commands": [run_script("triage.ps1"), put_file("notes.txt")]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [get_file("/tmp/x"), run_script("triage.ps1")]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [command("RunScript", &[("ScriptName", "triage.ps1"), ("Path", "/tmp")])]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [command("GetFile", &[("Path", "/a"), ("Path", "/b")])]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [command("RunScript", &[("Args", "-v")])]}),
            400,
            "MissingRequiredParameter",
        ),
        (
            json!({"Commands": [command("RunScript", &[("ScriptName", "")])]}),
            400,
            "MissingRequiredParameter",
        ),
        (
            json!({"Commands": [command("GetFile", &[])]}),
            400,
            "MissingRequiredParameter",
        ),
        (
            json!({"Commands": [command("RunCommand", &[("Command", "dir")])]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [run_script("not-uploaded.ps1")]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [put_file("notes.txt"), put_file("missing.txt")]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [put_file("../notes.txt")]}),
            400,
            "InvalidInput",
        ),
        (
            json!({"Commands": [run_script("C:\\scripts\\triage.ps1")]}),
            400,
            "InvalidInput",
        ),
    ];
    for (body, status, code) in &refusals {
        let reply = server.post(&path, body.clone()).await;
        let message = reply.assert_error(*status, code);
        assert!(!message.is_empty(), "{body}");
    }
    // Named: the script the library lacks.
    let reply = server
        .post(&path, json!({"Commands": [run_script("not-uploaded.ps1")]}))
        .await;
    let message = reply.assert_error(400, "InvalidInput");
    assert!(message.contains("not-uploaded.ps1"), "{message}");
    // Nothing refused made an action.
    let actions = server
        .get(&format!("/api/machines/{}/machineactions", m.id))
        .await;
    assert_eq!(actions.status, 200, "{}", actions.text);
    assert_eq!(actions.json["value"], json!([]), "{}", actions.text);

    // A session, without a comment: Pending, each command Created.
    let commands = json!([
        put_file("notes.txt"),
        command(
            "RunScript",
            &[("ScriptName", "triage.ps1"), ("Args", "-Full 1")]
        ),
        get_file("C:\\Windows\\Temp\\out.txt"),
        get_file("C:\\Windows\\Temp\\other.txt"),
    ]);
    let reply = server
        .post(&path, json!({"Commands": commands.clone()}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let action = reply.json.clone();
    assert_eq!(action["type"], "LiveResponse");
    assert_eq!(action["status"], "Pending");
    assert_eq!(action["machineId"], m.id);
    assert_eq!(action["requestor"], "Test automation");
    assert!(action["requestorComment"].is_null(), "{action}");
    let listed = action["commands"].as_array().expect("commands");
    assert_eq!(listed.len(), 4);
    for (i, c) in listed.iter().enumerate() {
        assert_eq!(
            c,
            &json!({
                "index": i,
                "startTime": null,
                "endTime": null,
                "commandStatus": "Created",
                "errors": [],
                "command": commands[i],
            })
        );
    }

    // One session at a time on a machine.
    let reply = server
        .post(
            &path,
            json!({"Commands": [get_file("/etc/hostname")], "Comment": "again"}),
        )
        .await;
    reply.assert_error(400, "ActiveRequestAlreadyExists");
    // The action reads back the same.
    let id = id_of(&action);
    let read = server.get(&format!("/api/machineactions/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json["commands"], action["commands"]);
    assert_eq!(read.json["status"], "Pending");
    // ... and in the list.
    let list = server
        .get(&format!(
            "/api/machineactions?$filter=machineId eq '{}'",
            m.id
        ))
        .await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["value"][0]["commands"], action["commands"]);
    // Other actions' commands are empty.
    let isolation = server.isolate(&m.id, "Full").await;
    assert_eq!(
        server.action_status(&isolation).await["commands"],
        json!([])
    );

    // Once cancelled, a new session is taken, with its comment.
    let cancel = server
        .post(
            &format!("/api/machineactions/{id}/cancel"),
            json!({"Comment": "enough"}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    let next = start_session(&server, &m.id, json!([get_file("/etc/hostname")])).await;
    assert_eq!(next["requestorComment"], "live response");
    assert_eq!(next["commands"][0]["command"], get_file("/etc/hostname"));
}

#[tokio::test]
async fn live_response_runs_on_the_platforms_mde_names() {
    let server = TestServer::start().await;
    let body = json!({"Commands": [get_file("/etc/hostname")]});
    let mut old_windows = machine(OsPlatform::Windows10);
    old_windows.os_build = Some(15063);
    let mut fall_creators = machine(OsPlatform::Windows10);
    fall_creators.os_build = Some(16299);
    let refused = [
        machine(OsPlatform::WindowsServer2012R2),
        machine(OsPlatform::WindowsServer2016),
    ];
    let taken = [
        fall_creators,
        machine(OsPlatform::Windows10),
        machine(OsPlatform::Windows11),
        machine(OsPlatform::WindowsServer2019),
        machine(OsPlatform::WindowsServer2022),
        machine(OsPlatform::WindowsServer2025),
        machine(OsPlatform::MacOs),
        machine(OsPlatform::Linux),
    ];
    server.put_machines(&refused).await;
    server.put_machines(&taken).await;
    server
        .put_machines(std::slice::from_ref(&old_windows))
        .await;
    for m in &refused {
        let reply = server.post(&run_path(&m.id), body.clone()).await;
        reply.assert_error(400, "OsPlatformNotSupported");
    }
    // Windows 10 before 1709 (build 16299): a client version too old.
    let message = server
        .post(&run_path(&old_windows.id), body.clone())
        .await
        .assert_error(400, "ClientVersionNotSupported");
    assert!(message.contains("1709"), "{message}");
    for m in &taken {
        let reply = server.post(&run_path(&m.id), body.clone()).await;
        assert_eq!(
            reply.status, 201,
            "{:?} {:?}: {}",
            m.os_platform, m.os_build, reply.text
        );
    }
    // A machine nobody has.
    let reply = server.post(&run_path(&"0".repeat(40)), body.clone()).await;
    reply.assert_error(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------
// A session carried out by a device
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_device_carries_out_a_session_and_its_results_download_by_link_for_30_minutes() {
    let server = TestServer::start().await;
    let notes = noise(MIB + MIB / 3, 5);
    let script = b"#!/bin/sh\necho \"collecting $1\"\ntar czf /tmp/out.tgz /var/log\n".to_vec();
    put_library_file(&server, "tools notes.txt", &notes).await;
    put_library_file(&server, "collect.sh", &script).await;
    put_library_file(&server, "unused.sh", b"echo unused").await;

    let device = responder(&server, "lnx-responder.contoso.test").await;
    let machine_id = device.enrollment.machine_id.clone();
    let action = start_session(
        &server,
        &machine_id,
        json!([
            put_file("tools notes.txt"),
            command(
                "RunScript",
                &[("ScriptName", "collect.sh"), ("Args", "/var/log")]
            ),
            get_file("/tmp/out.tgz"),
        ]),
    )
    .await;
    let id = id_of(&action);

    // Pending: the device may not fetch or upload yet.
    refused(
        device.device.download_session_file(&id, "collect.sh").await,
        400,
    );
    refused(
        device
            .device
            .upload_command_result(&id, 1, b"early".to_vec(), 5)
            .await,
        400,
    );

    let started = device.device.start(&id).await.unwrap();
    assert_eq!(started.status, ActionStatus::InProgress);
    assert_eq!(server.action_status(&id).await["status"], "InProgress");

    // The library files the session names, byte for byte.
    assert_eq!(session_file(&device, &id, "tools notes.txt").await, notes);
    assert_eq!(session_file(&device, &id, "collect.sh").await, script);
    // Not one it does not name, in the library or not.
    let message = refused(
        device.device.download_session_file(&id, "unused.sh").await,
        400,
    );
    assert!(message.contains("unused.sh"), "{message}");
    refused(
        device.device.download_session_file(&id, "nothing.sh").await,
        400,
    );
    // Nor another device.
    let other = responder(&server, "lnx-bystander.contoso.test").await;
    refused(
        other.device.download_session_file(&id, "collect.sh").await,
        404,
    );
    refused(
        other
            .device
            .upload_command_result(&id, 1, b"not mine".to_vec(), 8)
            .await,
        404,
    );

    // Results: not for the PutFile, nor past the last command.
    refused(
        device
            .device
            .upload_command_result(&id, 0, b"put".to_vec(), 3)
            .await,
        400,
    );
    refused(
        device
            .device
            .upload_command_result(&id, 3, b"none".to_vec(), 4)
            .await,
        400,
    );
    let transcript = serde_json::to_vec(&json!({
        "script_name": "collect.sh",
        "exit_code": 0,
        "script_output": "collecting /var/log\n",
        "script_errors": "",
    }))
    .unwrap();
    let collected = noise(2 * MIB + 77, 6);
    let uploaded = device
        .device
        .upload_command_result(&id, 1, transcript.clone(), transcript.len() as u64)
        .await
        .unwrap();
    assert_eq!(uploaded["sha256"], sha256_hex(&transcript), "{uploaded}");
    let uploaded = device
        .device
        .upload_command_result(&id, 2, collected.clone(), collected.len() as u64)
        .await
        .unwrap();
    assert_eq!(uploaded["size"], collected.len() as u64, "{uploaded}");
    assert_eq!(uploaded["sha256"], sha256_hex(&collected), "{uploaded}");
    // Uploaded, but no link before the command is reported Completed.
    server
        .get(&link_path(&id, 1))
        .await
        .assert_error(404, "NotFound");

    let at = Timestamp::now().plus_seconds(-30);
    let outcomes = vec![
        outcome(0, CommandStatus::Completed, at),
        outcome(1, CommandStatus::Completed, at.plus_seconds(3)),
        outcome(2, CommandStatus::Completed, at.plus_seconds(6)),
    ];
    // Succeeded needs every command.
    refused(
        device
            .device
            .finish(&id, &ended(ActionStatus::Succeeded, outcomes[..2].to_vec()))
            .await,
        400,
    );
    let done = device
        .device
        .finish(&id, &ended(ActionStatus::Succeeded, outcomes.clone()))
        .await
        .unwrap();
    assert_eq!(done.status, ActionStatus::Succeeded);
    let read = server.action_status(&id).await;
    assert_eq!(read["status"], "Succeeded");
    assert_eq!(statuses(&read), ["Completed", "Completed", "Completed"]);
    for (c, o) in read["commands"].as_array().unwrap().iter().zip(&outcomes) {
        assert_eq!(c["startTime"], o.start_time.to_string(), "{c}");
        assert_eq!(c["endTime"], o.end_time.to_string(), "{c}");
        assert_eq!(c["errors"], json!([]), "{c}");
    }
    assert_eq!(
        read["commands"][1]["command"]["params"][1]["value"],
        "/var/log"
    );

    // The results, without a token.
    let first = result_link(&server, &id, 1).await;
    assert_downloads(&first, &transcript).await;
    let file_link = result_link(&server, &id, 2).await;
    assert_downloads(&file_link, &collected).await;
    let response = reqwest::Client::new().get(&file_link).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    // The path matches in any case.
    let lower = server
        .get(&format!(
            "/api/machineactions/{id}/getliveresponseresultdownloadlink(index=1)"
        ))
        .await;
    assert_eq!(lower.status, 200, "{}", lower.text);

    // No result for the PutFile, nor past the last command.
    for index in [0, 3, -1, 1_000] {
        let reply = server.get(&link_path(&id, index)).await;
        reply.assert_error(400, "InvalidInput");
    }
    // No index, or one that is no number.
    server
        .get(&format!(
            "/api/machineactions/{id}/GetLiveResponseResultDownloadLink()"
        ))
        .await
        .assert_error(400, "MissingRequiredParameter");
    let reply = server
        .get(&format!(
            "/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index='one')"
        ))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    // An action that is no session.
    let isolation = server.isolate(&machine_id, "Full").await;
    let message = server
        .get(&link_path(&isolation, 1))
        .await
        .assert_error(400, "InvalidInput");
    assert!(message.contains("LiveResponse"), "{message}");
    // An action nobody has.
    server
        .get(&link_path("00000000-0000-4000-8000-000000000000", 1))
        .await
        .assert_error(404, "ResourceNotFound");

    // Asked again: another link, that works as well.
    let second = result_link(&server, &id, 1).await;
    assert_ne!(second, first);
    assert_downloads(&second, &transcript).await;
    assert_downloads(&first, &transcript).await;

    // 30 minutes of the tenant's clock, then refused.
    server.clock.advance(LINK_SECONDS - 60);
    assert_downloads(&first, &transcript).await;
    assert_downloads(&file_link, &collected).await;
    server.clock.advance(61);
    assert_link_refused(&server, &first).await;
    assert_link_refused(&server, &second).await;
    assert_link_refused(&server, &file_link).await;
    // A new link works again.
    let fresh = result_link(&server, &id, 2).await;
    assert_downloads(&fresh, &collected).await;

    // The session over, the device fetches nothing more.
    refused(
        device.device.download_session_file(&id, "collect.sh").await,
        400,
    );
    refused(
        device
            .device
            .upload_command_result(&id, 2, b"late".to_vec(), 4)
            .await,
        400,
    );
    // A new session is taken on the machine.
    start_session(&server, &machine_id, json!([get_file("/etc/hostname")])).await;
}

#[tokio::test]
async fn a_failed_script_ends_the_session_and_what_follows_has_no_result() {
    let server = TestServer::start().await;
    put_library_file(&server, "tools.txt", b"tools").await;
    put_library_file(&server, "broken.sh", b"exit 3").await;
    let device = responder(&server, "lnx-failing.contoso.test").await;
    let action = start_session(
        &server,
        &device.enrollment.machine_id,
        json!([
            put_file("tools.txt"),
            run_script("broken.sh"),
            get_file("/tmp/never.txt"),
        ]),
    )
    .await;
    let id = id_of(&action);
    device.device.start(&id).await.unwrap();
    assert_eq!(session_file(&device, &id, "broken.sh").await, b"exit 3");

    let at = Timestamp::now().plus_seconds(-10);
    // Completed without its result uploaded: refused, the session stays open.
    let message = refused(
        device
            .device
            .finish(
                &id,
                &ended(
                    ActionStatus::Succeeded,
                    vec![
                        outcome(0, CommandStatus::Completed, at),
                        outcome(1, CommandStatus::Completed, at),
                        outcome(2, CommandStatus::Completed, at),
                    ],
                ),
            )
            .await,
        400,
    );
    assert!(message.contains("uploaded"), "{message}");
    let message = refused(
        device
            .device
            .finish(
                &id,
                &ended(
                    ActionStatus::Failed,
                    vec![
                        outcome(0, CommandStatus::Completed, at),
                        outcome(1, CommandStatus::Completed, at),
                    ],
                ),
            )
            .await,
        400,
    );
    assert!(message.contains("Command 1"), "{message}");
    let read = server.action_status(&id).await;
    assert_eq!(read["status"], "InProgress");
    assert_eq!(statuses(&read), ["Created", "Created", "Created"]);
    // Outcomes out of order, or one after a failure: refused.
    refused(
        device
            .device
            .finish(
                &id,
                &ended(
                    ActionStatus::Failed,
                    vec![outcome(1, CommandStatus::Failed, at)],
                ),
            )
            .await,
        400,
    );
    refused(
        device
            .device
            .finish(
                &id,
                &ended(
                    ActionStatus::Failed,
                    vec![
                        outcome(0, CommandStatus::Failed, at),
                        outcome(1, CommandStatus::Completed, at),
                    ],
                ),
            )
            .await,
        400,
    );
    assert_eq!(server.action_status(&id).await["status"], "InProgress");

    // The script fails: the PutFile Completed (it leaves no result), the
    // GetFile is not carried out.
    let mut failed = outcome(1, CommandStatus::Failed, at.plus_seconds(1));
    failed.errors = vec!["broken.sh exited with code 3".into()];
    let done = device
        .device
        .finish(
            &id,
            &ended(
                ActionStatus::Failed,
                vec![outcome(0, CommandStatus::Completed, at), failed.clone()],
            ),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ActionStatus::Failed);
    let read = server.action_status(&id).await;
    assert_eq!(read["status"], "Failed");
    assert_eq!(statuses(&read), ["Completed", "Failed", "Created"]);
    let commands = read["commands"].as_array().unwrap();
    assert_eq!(
        commands[1]["errors"],
        json!(["broken.sh exited with code 3"])
    );
    assert_eq!(commands[1]["startTime"], failed.start_time.to_string());
    assert_eq!(commands[1]["endTime"], failed.end_time.to_string());
    assert!(commands[2]["startTime"].is_null(), "{read}");
    assert!(commands[2]["endTime"].is_null(), "{read}");
    assert_eq!(commands[2]["errors"], json!([]));

    // Neither the failed script nor what follows has a result.
    for index in [1, 2] {
        let message = server
            .get(&link_path(&id, index))
            .await
            .assert_error(404, "NotFound");
        assert!(message.contains(&format!("Command {index}")), "{message}");
    }
    server
        .get(&link_path(&id, 0))
        .await
        .assert_error(400, "InvalidInput");
    // A session that failed takes nothing more.
    refused(
        device
            .device
            .upload_command_result(&id, 2, b"late".to_vec(), 4)
            .await,
        400,
    );
    server
        .get(&link_path(&id, 2))
        .await
        .assert_error(404, "NotFound");
}

#[tokio::test]
async fn a_session_names_library_files_as_they_are_when_it_is_asked_for() {
    let server = TestServer::start().await;
    put_library_file(&server, "gone.sh", b"echo gone").await;
    let m = machine(OsPlatform::Linux);
    server.put_machines(std::slice::from_ref(&m)).await;
    let reply = delete_as(&server, &server.token, "gone.sh").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let message = server
        .post(
            &run_path(&m.id),
            json!({"Commands": [run_script("gone.sh")]}),
        )
        .await
        .assert_error(400, "InvalidInput");
    assert!(message.contains("gone.sh"), "{message}");

    // A replaced file: the device fetches the bytes in the library now.
    put_library_file(&server, "tool.sh", b"echo v1").await;
    let device = responder(&server, "lnx-versions.contoso.test").await;
    let id = id_of(
        &start_session(
            &server,
            &device.enrollment.machine_id,
            json!([run_script("tool.sh")]),
        )
        .await,
    );
    device.device.start(&id).await.unwrap();
    let reply = upload(
        &server,
        &[
            field("OverrideIfExists", "true"),
            file("tool.sh", b"echo v2"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(session_file(&device, &id, "tool.sh").await, b"echo v2");
    // Deleted meanwhile: the device is told it is not there.
    let reply = delete_as(&server, &server.token, "tool.sh").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    refused(
        device.device.download_session_file(&id, "tool.sh").await,
        404,
    );
}

// ---------------------------------------------------------------------------
// Who may, and how often
// ---------------------------------------------------------------------------

#[tokio::test]
async fn live_response_and_the_library_take_their_permissions_and_role() {
    let server = TestServer::start().await;
    put_library_file(&server, "triage.sh", b"uptime").await;
    let machines: Vec<_> = (0..4).map(|_| machine(OsPlatform::Linux)).collect();
    server.put_machines(&machines).await;
    let body = json!({"Commands": [run_script("triage.sh")]});
    // A session the emulator completes, for the links.
    add_rule(
        &server,
        json!({"match": {"actionType": "LiveResponse", "machineId": machines[0].id}, "script": [{"status": "Succeeded"}]}),
    )
    .await;
    let done =
        id_of(&start_session(&server, &machines[0].id, json!([run_script("triage.sh")])).await);
    assert_eq!(poll(&server, &done).await["status"], "Succeeded");

    // Apps: Machine.LiveResponse runs sessions; Library.Manage the library;
    // the links take Machine.Read.All or Machine.ReadWrite.All.
    let responder = server
        .app_token("Responder", &[Permission::MachineLiveResponse])
        .await;
    let librarian = server
        .app_token("Librarian", &[Permission::LibraryManage])
        .await;
    let readers = [
        server
            .app_token("Reader", &[Permission::MachineReadAll])
            .await,
        server
            .app_token("Writer", &[Permission::MachineReadWriteAll])
            .await,
    ];
    let neither = server
        .app_token(
            "Isolator",
            &[
                Permission::MachineIsolate,
                Permission::MachineCollectForensics,
                Permission::MachineReadWriteAll,
            ],
        )
        .await;

    let reply = run_as(&server, &responder, &machines[1].id, body.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["requestor"], "Responder");
    for token in [&librarian, &readers[0], &readers[1], &neither] {
        let reply = run_as(&server, token, &machines[2].id, body.clone()).await;
        reply.assert_error(403, "Forbidden");
    }
    // Refused before the body is looked at.
    run_as(&server, &neither, &machines[2].id, json!({}))
        .await
        .assert_error(403, "Forbidden");

    assert_eq!(list_library_as(&server, &librarian).await.status, 200);
    let reply = upload_as(&server, &librarian, &[file("by-librarian.sh", b"id")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["createdBy"], "Librarian");
    for token in [&responder, &readers[1], &neither] {
        list_library_as(&server, token)
            .await
            .assert_error(403, "Forbidden");
        upload_as(&server, token, &[file("refused.sh", b"id")])
            .await
            .assert_error(403, "Forbidden");
        delete_as(&server, token, "by-librarian.sh")
            .await
            .assert_error(403, "Forbidden");
    }
    assert_eq!(
        library_names(&library(&server).await),
        ["by-librarian.sh", "triage.sh"]
    );
    let reply = delete_as(&server, &librarian, "by-librarian.sh").await;
    assert_eq!(reply.status, 204, "{}", reply.text);

    for token in &readers {
        let link = result_link_as(&server, token, &done, 0).await;
        assert!(!download(&link).await.is_empty());
    }
    for token in [&responder, &librarian] {
        server
            .get_as(Some(token), &link_path(&done, 0))
            .await
            .assert_error(403, "Forbidden");
    }
    server
        .get_as(None, &link_path(&done, 0))
        .await
        .assert_error(401, "Unauthorized");
    server
        .get_as(None, "/api/libraryfiles")
        .await
        .assert_error(401, "Unauthorized");

    // Users: the delegated permission and "Live response advanced".
    let scopes = [Permission::MachineLiveResponse, Permission::LibraryManage];
    let advanced = server
        .user_token(
            "responder@contoso.example",
            &[Role::ViewData, Role::LiveResponseAdvanced],
            None,
            &scopes,
        )
        .await;
    let reply = run_as(&server, &advanced, &machines[3].id, body.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["requestor"], "responder@contoso.example");
    assert_eq!(list_library_as(&server, &advanced).await.status, 200);
    let reply = upload_as(&server, &advanced, &[file("by-user.sh", b"w")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["createdBy"], "responder@contoso.example");
    let link = result_link_as(&server, &advanced, &done, 0).await;
    assert!(!download(&link).await.is_empty());

    // The scopes without the role.
    let without_role = server
        .user_token(
            "analyst@contoso.example",
            &[
                Role::ViewData,
                Role::AlertsInvestigation,
                Role::ActiveRemediationActions,
            ],
            None,
            &scopes,
        )
        .await;
    let message = run_as(&server, &without_role, &machines[2].id, body.clone())
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Live response advanced"), "{message}");
    list_library_as(&server, &without_role)
        .await
        .assert_error(403, "Forbidden");
    upload_as(&server, &without_role, &[file("refused.sh", b"id")])
        .await
        .assert_error(403, "Forbidden");
    delete_as(&server, &without_role, "by-user.sh")
        .await
        .assert_error(403, "Forbidden");
    server
        .get_as(Some(&without_role), &link_path(&done, 0))
        .await
        .assert_error(403, "Forbidden");

    // The role without the scopes.
    let without_scope = server
        .user_token(
            "reader@contoso.example",
            &[Role::ViewData, Role::LiveResponseAdvanced],
            None,
            &[Permission::MachineReadAll, Permission::MachineIsolate],
        )
        .await;
    run_as(&server, &without_scope, &machines[2].id, body.clone())
        .await
        .assert_error(403, "Forbidden");
    list_library_as(&server, &without_scope)
        .await
        .assert_error(403, "Forbidden");
    server
        .get_as(Some(&without_scope), &link_path(&done, 0))
        .await
        .assert_error(403, "Forbidden");

    // Nothing refused made a session.
    let actions = server
        .get(&format!("/api/machines/{}/machineactions", machines[2].id))
        .await;
    assert_eq!(actions.json["value"], json!([]), "{}", actions.text);
    assert_eq!(
        library_names(&library(&server).await),
        ["by-user.sh", "triage.sh"]
    );
}

#[tokio::test]
async fn runliveresponse_is_limited_to_ten_calls_a_minute() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(RateLimits::default()),
        ..Options::default()
    })
    .await;
    // One session at a time per machine: a machine for each.
    let machines: Vec<_> = (0..13).map(|_| machine(OsPlatform::Linux)).collect();
    server.put_machines(&machines).await;
    let body = json!({"Commands": [get_file("/etc/hostname")]});
    for m in &machines[..10] {
        let reply = server.post(&run_path(&m.id), body.clone()).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let reply = server.post(&run_path(&machines[10].id), body.clone()).await;
    let message = reply.assert_error(429, "TooManyRequests");
    assert!(message.contains("10 calls a minute"), "{message}");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The throttled call made no session.
    let actions = server
        .get(&format!("/api/machines/{}/machineactions", machines[10].id))
        .await;
    assert_eq!(actions.status, 200, "{}", actions.text);
    assert_eq!(actions.json["value"], json!([]), "{}", actions.text);
    // Other APIs keep the usual limit.
    assert_eq!(library(&server).await.len(), 0);
    // Another app has its own count.
    let other = server
        .app_token("Other responder", &[Permission::MachineLiveResponse])
        .await;
    let reply = run_as(&server, &other, &machines[11].id, body.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    // Once the minute has passed, calls get through again.
    server.clock.advance(retry as i64);
    let reply = server.post(&run_path(&machines[12].id), body.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

// ---------------------------------------------------------------------------
// Sessions the emulator ends
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_session_the_emulator_ends_shows_its_commands_and_simulated_results() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let failing = machine(OsPlatform::Windows11);
    server.put_machines(std::slice::from_ref(&failing)).await;
    put_library_file(&server, "triage.ps1", b"Get-Process").await;
    put_library_file(&server, "tools.zip", b"PK").await;
    add_rule(
        &server,
        json!({"match": {"actionType": "LiveResponse", "machineId": failing.id}, "script": [{"status": "Failed"}]}),
    )
    .await;
    add_rule(
        &server,
        json!({"match": {"actionType": "LiveResponse"}, "script": [{"status": "Succeeded"}]}),
    )
    .await;
    let commands = json!([
        put_file("tools.zip"),
        run_script("triage.ps1"),
        get_file("C:\\Windows\\Temp\\triage.txt"),
    ]);

    let id = id_of(&start_session(&server, &m.id, commands.clone()).await);
    let done = poll(&server, &id).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(statuses(&done), ["Completed", "Completed", "Completed"]);
    for c in done["commands"].as_array().unwrap() {
        let start = Timestamp::parse(c["startTime"].as_str().expect("a start")).unwrap();
        let end = Timestamp::parse(c["endTime"].as_str().expect("an end")).unwrap();
        assert!(start <= end, "{c}");
        assert_eq!(c["errors"], json!([]), "{c}");
    }
    assert_eq!(done["commands"][1]["command"], commands[1]);

    // The script's simulated transcript, as MDE's fields.
    let link = result_link(&server, &id, 1).await;
    let bytes = download(&link).await;
    let transcript: Value = serde_json::from_slice(&bytes).expect("a JSON transcript");
    assert_eq!(transcript["script_name"], "triage.ps1", "{transcript}");
    assert_eq!(transcript["exit_code"], 0, "{transcript}");
    assert!(
        transcript["script_output"]
            .as_str()
            .is_some_and(|o| !o.is_empty()),
        "{transcript}"
    );
    assert_eq!(transcript["script_errors"], "", "{transcript}");
    // Asked again: the same result.
    let again = result_link(&server, &id, 1).await;
    assert_ne!(again, link);
    assert_eq!(download(&again).await, bytes);
    // The file collected: something, the same each time.
    let file = download(&result_link(&server, &id, 2).await).await;
    assert!(!file.is_empty());
    assert_eq!(download(&result_link(&server, &id, 2).await).await, file);
    server
        .get(&link_path(&id, 0))
        .await
        .assert_error(400, "InvalidInput");

    // Failed by the emulator: the first command Failed, the rest Created.
    let id = id_of(&start_session(&server, &failing.id, commands).await);
    let failed = poll(&server, &id).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    assert_eq!(statuses(&failed), ["Failed", "Created", "Created"]);
    assert!(
        failed["commands"][0]["errors"][0].as_str().is_some(),
        "{failed}"
    );
    for index in [1, 2] {
        server
            .get(&link_path(&id, index))
            .await
            .assert_error(404, "NotFound");
    }
}
