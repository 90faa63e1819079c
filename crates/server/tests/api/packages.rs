//! Investigation packages over HTTP: the device uploads the zip of its
//! InProgress CollectInvestigationPackage action (`PUT
//! /device/v1/actions/{id}/package`, streamed, at most `max_package_bytes`),
//! may then report it Succeeded; `GET /api/machineactions/{id}/GetPackageUri`
//! answers a link that downloads it without a bearer token for 15 minutes;
//! who may ask for one, how often, and which uploads are refused.

use crate::device_plane::Enrolled;
use crate::harness::*;
use palisade_contract::{ActionStatus, Permission};
use palisade_device::client::DeviceError;
use palisade_device::ActionResult;
use palisade_domain::rate_limit::RateLimits;
use palisade_domain::Role;
use reqwest::Method;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
/// Several stored chunks and a partial last one: 3.5 MiB and a few bytes.
const PACKAGE_BYTES: usize = 3 * MIB + MIB / 2 + 123;
/// A body small enough to be sent whole before the server answers a refusal.
const SMALL: usize = 16 * 1024;
/// How long a link downloads (`PACKAGE_LINK_SECONDS`).
const LINK_SECONDS: i64 = 900;

/// `POST /api/machines/{id}/collectInvestigationPackage`: the new action's id.
async fn collect(server: &TestServer, machine_id: &str) -> String {
    let reply = server
        .post(
            &format!("/api/machines/{machine_id}/collectInvestigationPackage"),
            json!({"Comment": "Collect forensics"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["type"], "CollectInvestigationPackage");
    reply.json["id"].as_str().unwrap().to_string()
}

fn package_uri(action_id: &str) -> String {
    format!("/api/machineactions/{action_id}/GetPackageUri")
}

/// Uploads `bytes` for `action_id` as the device does: streamed from a file.
async fn upload(device: &Enrolled, action_id: &str, bytes: &[u8]) -> Result<Value, DeviceError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("package.zip");
    tokio::fs::write(&path, bytes).await.unwrap();
    let file = tokio::fs::File::open(&path).await.unwrap();
    device
        .device
        .upload_package(action_id, file, bytes.len() as u64)
        .await
}

/// `PUT /device/v1/actions/{id}/package` with `body` in one piece, as `credential`
/// (`None`: no Authorization header).
async fn put_package(
    server: &TestServer,
    credential: Option<&str>,
    action_id: &str,
    body: &[u8],
) -> Reply {
    let mut request = reqwest::Client::new()
        .put(server.url(&format!("/device/v1/actions/{action_id}/package")))
        .header("content-type", "application/zip")
        .body(body.to_vec());
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    server.send(request).await
}

/// An upload that must be refused with `status` and `code`.
#[track_caller]
fn assert_refused(result: Result<Value, DeviceError>, status: u16, code: &str) -> String {
    match result {
        Err(DeviceError::Refused {
            status: s,
            code: c,
            message,
        }) if s == status && c == code => message,
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// The action has no package: GetPackageUri answers 404 NotFound.
async fn assert_no_package(server: &TestServer, action_id: &str) {
    let reply = server.get(&package_uri(action_id)).await;
    let message = reply.assert_error(404, "NotFound");
    assert!(message.contains(action_id), "{message}");
}

/// GetPackageUri as `token` must answer a link under the server's origin: the link.
async fn link_as(server: &TestServer, token: &str, action_id: &str) -> String {
    let reply = server.get_as(Some(token), &package_uri(action_id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    link_of(server, &reply)
}

#[track_caller]
fn link_of(server: &TestServer, reply: &Reply) -> String {
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Edm.String", server.origin),
        "{}",
        reply.text
    );
    let link = reply.json["value"].as_str().expect("a link").to_string();
    let prefix = format!("{}/downloads/packages/", server.origin);
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} is not under {prefix}"));
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()),
        "{link}"
    );
    link
}

/// GETs `link` with no Authorization header at all.
async fn download(link: &str) -> reqwest::Response {
    reqwest::Client::new().get(link).send().await.unwrap()
}

/// `link` downloads exactly `bytes`, as a zip of their length.
async fn assert_downloads(link: &str, bytes: &[u8]) {
    let response = download(link).await;
    assert_eq!(response.status(), 200, "{link}");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/zip");
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert_eq!(sha256_hex(&body), sha256_hex(bytes));
    assert!(body[..] == bytes[..], "the bytes uploaded");
}

/// The link no longer (or never) downloads: 404 in MDE's shape.
async fn assert_link_refused(server: &TestServer, link: &str) {
    let reply = server.send(reqwest::Client::new().get(link)).await;
    reply.assert_error(404, "NotFound");
}

/// A Linux device whose collection is InProgress; its action's id.
async fn started_collection(server: &TestServer, name: &str) -> (Enrolled, String) {
    let device = server.enroll(&linux_device(name, &[])).await;
    let action_id = collect(server, &device.enrollment.machine_id).await;
    let started = device.device.start(&action_id).await.unwrap();
    assert_eq!(started.status, ActionStatus::InProgress);
    (device, action_id)
}

/// A collection whose device uploaded `bytes` and reported it Succeeded.
async fn collected(server: &TestServer, name: &str, bytes: &[u8]) -> (Enrolled, String) {
    let (device, action_id) = started_collection(server, name).await;
    upload(&device, &action_id, bytes).await.unwrap();
    device
        .device
        .finish(&action_id, &ActionResult::succeeded("collected"))
        .await
        .unwrap();
    (device, action_id)
}

// ---------------------------------------------------------------------------
// The whole path
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_collected_package_is_uploaded_then_downloaded_by_link_without_a_token() {
    let server = TestServer::start().await;
    let device = server
        .enroll(&linux_device("lnx-forensics.contoso.test", &[]))
        .await;
    let action_id = collect(&server, &device.enrollment.machine_id).await;
    assert_no_package(&server, &action_id).await;
    let started = device.device.start(&action_id).await.unwrap();
    assert_eq!(started.status, ActionStatus::InProgress);
    assert_no_package(&server, &action_id).await;

    // Succeeded before the package is there: refused, the action stays open.
    let message = match device
        .device
        .finish(&action_id, &ActionResult::succeeded("collected"))
        .await
    {
        Err(DeviceError::Refused {
            status: 400,
            message,
            ..
        }) => message,
        other => panic!("a collection succeeded without its package: {other:?}"),
    };
    assert!(message.contains("package"), "{message}");
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "InProgress"
    );

    let bytes = noise(PACKAGE_BYTES, 1);
    let uploaded = upload(&device, &action_id, &bytes).await.unwrap();
    assert_eq!(uploaded["size"], PACKAGE_BYTES as u64, "{uploaded}");
    assert_eq!(uploaded["sha256"], sha256_hex(&bytes), "{uploaded}");
    assert!(uploaded["id"].as_str().is_some_and(|id| !id.is_empty()));

    let done = device
        .device
        .finish(&action_id, &ActionResult::succeeded("collected"))
        .await
        .unwrap();
    assert_eq!(done.status, ActionStatus::Succeeded);
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "Succeeded"
    );
    // A finished collection takes no other package.
    let credential = Some(device.enrollment.credential.as_str());
    let message = put_package(&server, credential, &action_id, b"not the package")
        .await
        .assert_error(400, "BadRequest");
    assert!(message.contains("Succeeded"), "{message}");

    let reply = server.get(&package_uri(&action_id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let first = link_of(&server, &reply);
    assert_downloads(&first, &bytes).await;
    // Downloads as often as asked while it holds.
    assert_downloads(&first, &bytes).await;

    // The path matches in any case; each call is a new link.
    let lower = server
        .get(&format!("/api/machineactions/{action_id}/getPackageUri"))
        .await;
    assert_eq!(lower.status, 200, "{}", lower.text);
    let second = link_of(&server, &lower);
    assert_ne!(second, first, "every call makes its own link");
    assert_downloads(&second, &bytes).await;

    // Only GET: another method is 405 with Allow and no body, as everywhere.
    for method in [Method::POST, Method::DELETE, Method::PUT, Method::PATCH] {
        let reply = server
            .send(
                server
                    .client
                    .request(method.clone(), server.url(&package_uri(&action_id))),
            )
            .await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.text);
        assert_eq!(reply.text, "", "{method}: a 405 has no body");
        let allow = reply.headers["allow"].to_str().unwrap().to_string();
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "{method}: Allow {allow:?}"
        );
    }

    // A link holds for 15 minutes of the tenant's clock, then is refused.
    server.clock.advance(LINK_SECONDS - 300);
    assert_downloads(&first, &bytes).await;
    server.clock.advance(301);
    assert_link_refused(&server, &first).await;
    assert_link_refused(&server, &second).await;
    // A new one works again, for its own 15 minutes.
    let fresh = link_as(&server, &server.token, &action_id).await;
    assert_downloads(&fresh, &bytes).await;
    server.clock.advance(LINK_SECONDS - 1);
    assert_downloads(&fresh, &bytes).await;
    server.clock.advance(2);
    assert_link_refused(&server, &fresh).await;

    // A token nobody was given is refused like an expired one, even one
    // a character away from a link that works.
    let live = link_as(&server, &server.token, &action_id).await;
    let token = &live[live.rfind('/').unwrap() + 1..];
    let last = token.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &token[..token.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for guess in [
        "nonsense".to_string(),
        "0".repeat(64),
        flipped,
        format!("{token}0"),
        token[..token.len() - 1].to_string(),
        token.to_ascii_uppercase(),
    ] {
        if guess == token {
            continue;
        }
        server
            .get_as(None, &format!("/downloads/packages/{guess}"))
            .await
            .assert_error(404, "NotFound");
    }
    assert_downloads(&live, &bytes).await;
}

#[tokio::test]
async fn an_empty_and_an_exact_chunk_package_download_whole() {
    let server = TestServer::start().await;
    for (n, len) in [0, MIB, 2 * MIB].into_iter().enumerate() {
        let bytes = noise(len, 10 + n as u64);
        let (_, action_id) = collected(&server, &format!("lnx-exact-{n}"), &bytes).await;
        let link = link_as(&server, &server.token, &action_id).await;
        assert_downloads(&link, &bytes).await;
    }
}

// ---------------------------------------------------------------------------
// Uploads refused
// ---------------------------------------------------------------------------

#[tokio::test]
async fn uploads_for_an_action_that_takes_no_package_are_refused_and_store_nothing() {
    let server = TestServer::start().await;
    let (a, of_a) = started_collection(&server, "lnx-a").await;
    let b = server.enroll(&linux_device("lnx-b", &[])).await;
    let bytes = noise(SMALL, 2);
    let b_credential = Some(b.enrollment.credential.as_str());

    // Another machine's action: b cannot even see it.
    let reply = put_package(&server, b_credential, &of_a, &bytes).await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert!(message.contains(&of_a), "{message}");
    assert_no_package(&server, &of_a).await;
    // Nor can b report it.
    assert!(matches!(
        b.device
            .finish(&of_a, &ActionResult::succeeded("not mine"))
            .await,
        Err(DeviceError::Refused { status: 404, .. })
    ));

    // An action nobody has.
    let unknown = "00000000-0000-4000-8000-000000000000";
    put_package(&server, b_credential, unknown, &bytes)
        .await
        .assert_error(404, "ResourceNotFound");
    server
        .get(&package_uri(unknown))
        .await
        .assert_error(404, "ResourceNotFound");

    // b's own collection, not started yet.
    let pending = collect(&server, &b.enrollment.machine_id).await;
    let reply = put_package(&server, b_credential, &pending, &bytes).await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("Pending"), "{message}");
    assert_no_package(&server, &pending).await;
    assert_eq!(server.action_status(&pending).await["status"], "Pending");

    // b's own started action that is not a collection.
    let isolation = server.isolate(&b.enrollment.machine_id, "Full").await;
    b.device.start(&isolation).await.unwrap();
    let reply = put_package(&server, b_credential, &isolation, &bytes).await;
    let message = reply.assert_error(400, "BadRequest");
    assert!(message.contains("Isolate"), "{message}");
    // Such an action has no package to link.
    assert_no_package(&server, &isolation).await;

    // No credential, a forged one, an API token: 401 in MDE's shape.
    put_package(&server, None, &of_a, &bytes)
        .await
        .assert_error(401, "Unauthorized");
    let forged = format!("{}x", a.enrollment.credential);
    put_package(&server, Some(&forged), &of_a, &bytes)
        .await
        .assert_error(401, "Unauthorized");
    put_package(&server, Some(&server.token), &of_a, &bytes)
        .await
        .assert_error(401, "Unauthorized");
    assert_no_package(&server, &of_a).await;

    // None of that got in the way of the device the action is for.
    let own = noise(MIB + 5, 3);
    let uploaded = upload(&a, &of_a, &own).await.unwrap();
    assert_eq!(uploaded["sha256"], sha256_hex(&own));
    // Held, but no link until the collection has succeeded (as MDE).
    assert_no_package(&server, &of_a).await;
    a.device
        .finish(&of_a, &ActionResult::succeeded("collected"))
        .await
        .unwrap();
    let link = link_as(&server, &server.token, &of_a).await;
    assert_downloads(&link, &own).await;
}

/// The agent streams its package from a file (`DeviceClient::upload_package`)
/// and reports the upload's error as the action's failure: when the server
/// refuses an upload before it has read it all, the device must still get
/// the refusal (400, 404, 413 with its message), not a broken connection.
#[tokio::test]
async fn a_device_streaming_a_refused_upload_reads_the_refusal() {
    const LIMIT: usize = 256 * 1024;
    let server = TestServer::start_with(Options {
        max_package_bytes: Some(LIMIT as u64),
        ..Options::default()
    })
    .await;
    let (a, of_a) = started_collection(&server, "lnx-streaming-a").await;
    let b = server.enroll(&linux_device("lnx-streaming-b", &[])).await;
    let pending = collect(&server, &b.enrollment.machine_id).await;
    for attempt in 1..=10 {
        let bytes = noise(MIB, attempt);
        match upload(&b, &pending, &bytes).await {
            Err(DeviceError::Refused { status: 400, .. }) => {}
            other => panic!("attempt {attempt}, a Pending action: {other:?}"),
        }
        match upload(&b, &of_a, &bytes).await {
            Err(DeviceError::Refused { status: 404, .. }) => {}
            other => panic!("attempt {attempt}, another machine's action: {other:?}"),
        }
        match upload(&a, &of_a, &noise(4 * MIB, attempt)).await {
            Err(DeviceError::Refused { status: 413, .. }) => {}
            other => panic!("attempt {attempt}, 4 MiB past a {LIMIT}-byte limit: {other:?}"),
        }
    }
    assert_no_package(&server, &of_a).await;
    assert_no_package(&server, &pending).await;
}

#[tokio::test]
async fn a_collection_that_failed_has_no_package() {
    let server = TestServer::start().await;
    let (device, action_id) = started_collection(&server, "lnx-failing").await;
    device
        .device
        .finish(&action_id, &ActionResult::failed("zip: disk full"))
        .await
        .expect("a failure needs no package");
    assert_eq!(server.action_status(&action_id).await["status"], "Failed");
    let credential = Some(device.enrollment.credential.as_str());
    put_package(&server, credential, &action_id, &noise(1000, 4))
        .await
        .assert_error(400, "BadRequest");
    assert_no_package(&server, &action_id).await;
}

#[tokio::test]
async fn a_package_larger_than_the_limit_is_refused_with_413() {
    const LIMIT: usize = 256 * 1024;
    let server = TestServer::start_with(Options {
        max_package_bytes: Some(LIMIT as u64),
        ..Options::default()
    })
    .await;
    let (device, action_id) = started_collection(&server, "lnx-large").await;

    // One byte too many.
    let message = assert_refused(
        upload(&device, &action_id, &noise(LIMIT + 1, 5)).await,
        413,
        "BadRequest",
    );
    assert!(message.contains(&LIMIT.to_string()), "{message}");
    assert_no_package(&server, &action_id).await;
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "InProgress"
    );
    // Succeeded still needs a package: the refused one is not one.
    assert!(matches!(
        device
            .device
            .finish(&action_id, &ActionResult::succeeded("collected"))
            .await,
        Err(DeviceError::Refused { status: 400, .. })
    ));

    // As raw HTTP: 413 in MDE's shape.
    let credential = Some(device.enrollment.credential.as_str());
    put_package(&server, credential, &action_id, &noise(LIMIT + SMALL, 6))
        .await
        .assert_error(413, "BadRequest");
    assert_no_package(&server, &action_id).await;

    // Exactly the limit is taken.
    let bytes = noise(LIMIT, 7);
    let uploaded = upload(&device, &action_id, &bytes).await.unwrap();
    assert_eq!(uploaded["size"], LIMIT as u64);
    assert_eq!(uploaded["sha256"], sha256_hex(&bytes));
    device
        .device
        .finish(&action_id, &ActionResult::succeeded("collected"))
        .await
        .unwrap();
    let link = link_as(&server, &server.token, &action_id).await;
    assert_downloads(&link, &bytes).await;
}

// ---------------------------------------------------------------------------
// Who may ask for a link, and how often
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_link_takes_machine_read_or_collect_forensics_with_alerts_investigation() {
    let server = TestServer::start().await;
    let bytes = noise(MIB / 2 + 9, 8);
    let (_, action_id) = collected(&server, "lnx-permissions", &bytes).await;
    let path = package_uri(&action_id);

    for permission in [Permission::MachineReadAll, Permission::MachineReadWriteAll] {
        let token = server
            .app_token(&format!("{permission}"), &[permission])
            .await;
        let link = link_as(&server, &token, &action_id).await;
        assert_downloads(&link, &bytes).await;
    }
    for permissions in [
        &[Permission::AlertReadAll][..],
        &[Permission::MachineCollectForensics],
        &[Permission::MachineIsolate, Permission::TiReadWriteAll],
    ] {
        let token = server.app_token("Not a reader", permissions).await;
        let reply = server.get_as(Some(&token), &path).await;
        reply.assert_error(403, "Forbidden");
        assert!(reply.json["value"].is_null(), "{}", reply.text);
    }

    let investigator = server
        .user_token(
            "investigator@contoso.example",
            &[Role::AlertsInvestigation],
            None,
            &[Permission::MachineCollectForensics],
        )
        .await;
    let link = link_as(&server, &investigator, &action_id).await;
    assert_downloads(&link, &bytes).await;

    let viewer = server
        .user_token(
            "viewer@contoso.example",
            &[Role::ViewData],
            None,
            &[Permission::MachineCollectForensics],
        )
        .await;
    let message = server
        .get_as(Some(&viewer), &path)
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Alerts investigation"), "{message}");
    // The role without the delegated permission is not enough either.
    let reader = server
        .user_token(
            "reader@contoso.example",
            &[Role::ViewData, Role::AlertsInvestigation],
            None,
            &[Permission::MachineReadAll],
        )
        .await;
    server
        .get_as(Some(&reader), &path)
        .await
        .assert_error(403, "Forbidden");

    // No token at all: 401.
    server
        .get_as(None, &path)
        .await
        .assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn get_package_uri_is_limited_to_two_calls_a_minute() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(RateLimits::default()),
        ..Options::default()
    })
    .await;
    let bytes = noise(1000, 9);
    let (_, action_id) = collected(&server, "lnx-throttled", &bytes).await;
    let path = package_uri(&action_id);
    let first = link_as(&server, &server.token, &action_id).await;
    link_as(&server, &server.token, &action_id).await;
    let reply = server.get(&path).await;
    let message = reply.assert_error(429, "TooManyRequests");
    assert!(message.contains("2 calls a minute"), "{message}");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The throttled call made no link; the links made still download.
    assert_downloads(&first, &bytes).await;
    // The other action APIs keep the usual limit...
    let action = server
        .get(&format!("/api/machineactions/{action_id}"))
        .await;
    assert_eq!(action.status, 200, "{}", action.text);
    // ...and another app has its own count.
    let other = server
        .app_token("Other reader", &[Permission::MachineReadAll])
        .await;
    link_as(&server, &other, &action_id).await;
    // Once the minute has passed, calls get through again.
    server.clock.advance(retry as i64);
    link_as(&server, &server.token, &action_id).await;
}

// ---------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------

#[tokio::test]
async fn another_tenants_package_is_not_there() {
    let server = TestServer::start().await;
    let bytes = noise(2000, 11);
    let (_, action_id) = collected(&server, "lnx-tenant", &bytes).await;
    let other = server
        .add_tenant("8f6d2b3a-1c4e-4b7a-9d0f-5e6a7b8c9d0e", "Fabrikam")
        .await;
    let theirs = server
        .app_token_in(&other.id, "Fabrikam reader", &[Permission::MachineReadAll])
        .await;
    server
        .get_as(Some(&theirs), &package_uri(&action_id))
        .await
        .assert_error(404, "ResourceNotFound");
    server
        .get_as(Some(&theirs), &format!("/api/machineactions/{action_id}"))
        .await
        .assert_error(404, "ResourceNotFound");
    // The package is still there for its own tenant.
    let link = link_as(&server, &server.token, &action_id).await;
    assert_downloads(&link, &bytes).await;
}

/// GetPackageUri's own limits are 2 calls a minute and 120 an hour. At two
/// a minute an hour holds at most 120 calls, so the minute's limit is the
/// one a caller meets: 120 calls at the full rate over the hour all get
/// through. A configured hourly limit tighter than 120 applies to it too.
#[tokio::test]
async fn get_package_uri_takes_120_calls_an_hour_at_two_a_minute() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(RateLimits::default()),
        ..Options::default()
    })
    .await;
    let bytes = noise(1000, 13);
    let (_, action_id) = collected(&server, "lnx-hourly", &bytes).await;
    let path = package_uri(&action_id);
    let mut last = String::new();
    for minute in 0..60 {
        for call in 0..2 {
            let reply = server.get(&path).await;
            assert_eq!(
                reply.status, 200,
                "minute {minute}, call {call}: {}",
                reply.text
            );
            last = link_of(&server, &reply);
        }
        if minute < 59 {
            server.clock.advance(60);
        }
    }
    // The 121st in the hour: refused by the minute's limit.
    let message = server.get(&path).await.assert_error(429, "TooManyRequests");
    assert!(message.contains("2 calls a minute"), "{message}");
    assert_downloads(&last, &bytes).await;
    // A minute on, the hour's first calls have left it: taken again.
    server.clock.advance(60);
    link_as(&server, &server.token, &action_id).await;
    link_as(&server, &server.token, &action_id).await;
    server.get(&path).await.assert_error(429, "TooManyRequests");

    // An operator's hourly limit of 3: the fourth call in the hour is
    // refused by the hour, to be retried once the first has left it.
    let tight = TestServer::start_with(Options {
        rate_limits: Some(RateLimits {
            per_minute: 100,
            per_hour: 3,
        }),
        ..Options::default()
    })
    .await;
    let (_, action_id) = collected(&tight, "lnx-hourly-tight", &bytes).await;
    let path = package_uri(&action_id);
    link_as(&tight, &tight.token, &action_id).await;
    link_as(&tight, &tight.token, &action_id).await;
    // Still GetPackageUri's own 2 a minute under the configured 100.
    let message = tight.get(&path).await.assert_error(429, "TooManyRequests");
    assert!(message.contains("2 calls a minute"), "{message}");
    tight.clock.advance(60);
    link_as(&tight, &tight.token, &action_id).await;
    let reply = tight.get(&path).await;
    let message = reply.assert_error(429, "TooManyRequests");
    assert!(message.contains("3 calls an hour"), "{message}");
    let retry: i64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3480..=3540).contains(&retry), "Retry-After {retry}");
    tight.clock.advance(retry);
    link_as(&tight, &tight.token, &action_id).await;
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

/// Stored files are kept 7 days from their upload (`FILE_RETENTION_DAYS`,
/// on the server's clock), then the sweeper (`forget_old_files`, run every
/// minute by `palisade serve`) forgets them: a package's link and a session
/// result's stop working, and no new one is given. The library's files are
/// no action's results: they stay, byte for byte, however old.
#[tokio::test]
async fn files_are_forgotten_after_seven_days_but_library_files_stay() {
    use crate::live_response as lr;
    use palisade_contract::live_response::CommandStatus;
    use palisade_contract::Timestamp;
    const DAY: i64 = 24 * 3600;

    let mut server = TestServer::start().await;
    let script = b"#!/bin/sh\necho kept\n".to_vec();
    lr::put_library_file(&server, "kept.sh", &script).await;
    let bytes = noise(MIB + 17, 12);
    let (_, action_id) = collected(&server, "lnx-retention", &bytes).await;

    // A live-response session of a device, its GetFile's result uploaded.
    let responder = lr::responder(&server, "lnx-retention-lr").await;
    let session = lr::id_of(
        &lr::start_session(
            &server,
            &responder.enrollment.machine_id,
            json!([lr::get_file("/etc/hostname")]),
        )
        .await,
    );
    responder.device.start(&session).await.unwrap();
    let result = noise(5000, 14);
    responder
        .device
        .upload_command_result(&session, 0, result.clone(), result.len() as u64)
        .await
        .unwrap();
    let at = Timestamp::now();
    responder
        .device
        .finish(
            &session,
            &lr::ended(
                ActionStatus::Succeeded,
                vec![lr::outcome(0, CommandStatus::Completed, at)],
            ),
        )
        .await
        .unwrap();
    assert_downloads(&link_as(&server, &server.token, &action_id).await, &bytes).await;
    assert_eq!(
        lr::download(&lr::result_link(&server, &session, 0).await).await,
        result
    );

    // Six days on: nothing is forgotten.
    server.clock.advance(6 * DAY);
    server.renew_token().await;
    assert_eq!(server.palisade.forget_old_files().await.unwrap(), 0);
    assert_downloads(&link_as(&server, &server.token, &action_id).await, &bytes).await;

    // Past the seven days the files are still there until the sweeper runs...
    server.clock.advance(DAY + 3600);
    server.renew_token().await;
    let package_link = link_as(&server, &server.token, &action_id).await;
    assert_downloads(&package_link, &bytes).await;
    let result_link = lr::result_link(&server, &session, 0).await;
    assert_eq!(lr::download(&result_link).await, result);
    // ...which forgets the package and the result, not the library file.
    assert_eq!(server.palisade.forget_old_files().await.unwrap(), 2);
    assert_link_refused(&server, &package_link).await;
    assert_link_refused(&server, &result_link).await;
    assert_no_package(&server, &action_id).await;
    let message = server
        .get(&lr::link_path(&session, 0))
        .await
        .assert_error(404, "NotFound");
    assert!(message.contains(&session), "{message}");
    // The actions themselves stay, as they were.
    assert_eq!(
        server.action_status(&action_id).await["status"],
        "Succeeded"
    );
    assert_eq!(server.action_status(&session).await["status"], "Succeeded");
    // Swept again: nothing more.
    assert_eq!(server.palisade.forget_old_files().await.unwrap(), 0);

    // The library file is listed as it was, and a new session puts it.
    let library = lr::library(&server).await;
    assert_eq!(library.len(), 1, "{library:?}");
    assert_eq!(library[0]["fileName"], "kept.sh");
    assert_eq!(library[0]["sha256"], sha256_hex(&script));
    let later = lr::id_of(
        &lr::start_session(
            &server,
            &responder.enrollment.machine_id,
            json!([lr::put_file("kept.sh")]),
        )
        .await,
    );
    responder.device.start(&later).await.unwrap();
    assert_eq!(
        lr::session_file(&responder, &later, "kept.sh").await,
        script
    );
}
