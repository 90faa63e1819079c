//! Indicators and detections on the device plane, seen over HTTP: the set a
//! check-in carries (scoped by `rbacGroupNames` to device groups, only to
//! devices that enforce indicators, again when it changes), the alerts a
//! device raises through `POST /device/v1/alerts` (its own machine, its
//! detection only, at most 30 a minute and 300 an hour), and concurrent
//! submissions of one indicator value.

use crate::device_plane::Enrolled;
use crate::harness::*;
use palisade_contract::alert::AlertStatus;
use palisade_contract::indicator::{IndicatorAction, IndicatorType};
use palisade_device::client::DeviceError;
use palisade_device::{Capability, CheckIn, DeviceIndicators, EnrollRequest};
use palisade_domain::rules::device_groups::GroupRules;
use palisade_domain::store::DeviceGroup;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ADDRESS: &str = "52.10.20.30";
const SHA256: &str = "881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd";
const OTHER_SHA256: &str = "5a6b7c8d9e0f11223344556677889900aabbccddeeff00112233445566778899";

/// Longer than the 2 s a tenant's indicator set is served from memory
/// (`FRESH_FOR`, measured on the real clock, not the test clock).
const PAST_THE_CACHE: Duration = Duration::from_millis(2100);

/// A submission with every required property.
fn indicator(value: &str, indicator_type: &str, action: &str) -> Value {
    json!({
        "indicatorValue": value,
        "indicatorType": indicator_type,
        "action": action,
        "title": format!("{indicator_type} {value}"),
        "description": "Submitted by a test of the device plane"
    })
}

/// Submits `body`; it must be taken. Returns the indicator.
async fn submitted(server: &TestServer, body: Value) -> Value {
    let reply = server.post("/api/indicators", body.clone()).await;
    assert_eq!(reply.status, 200, "{body}: {}", reply.text);
    reply.json
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

/// A check-in holding `held`, answered at once: the indicators it carries.
async fn indicators_after(device: &Enrolled, held: Option<&str>) -> Option<DeviceIndicators> {
    let report = CheckIn {
        indicators_version: held.map(str::to_string),
        ..CheckIn::default()
    };
    let reply = device
        .device
        .check_in(&report, Duration::ZERO)
        .await
        .unwrap();
    assert!(reply.actions.is_empty(), "{:?}", reply.actions);
    reply.indicators
}

/// The same, waiting up to `wait`; also how long the answer took.
async fn long_poll(
    device: &Enrolled,
    held: Option<&str>,
    wait: Duration,
) -> (Option<DeviceIndicators>, Duration) {
    let report = CheckIn {
        indicators_version: held.map(str::to_string),
        ..CheckIn::default()
    };
    let started = Instant::now();
    let reply = device.device.check_in(&report, wait).await.unwrap();
    (reply.indicators, started.elapsed())
}

/// An indicator as a device gets it: (id, type, value, action).
type Item = (String, &'static str, String, &'static str);

/// What a set holds.
fn contents(set: &DeviceIndicators) -> BTreeSet<Item> {
    set.indicators
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.indicator_type.as_str(),
                i.value.clone(),
                i.action.as_str(),
            )
        })
        .collect()
}

/// `rbacGroupId` and `rbacGroupName` of a machine, as GET answers them.
async fn group_of(server: &TestServer, id: &str) -> (Value, Value) {
    let reply = server.get(&format!("/api/machines/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    (
        reply.json["rbacGroupId"].clone(),
        reply.json["rbacGroupName"].clone(),
    )
}

async fn tag(server: &TestServer, id: &str, value: &str, action: &str) {
    let reply = server
        .post(
            &format!("/api/machines/{id}/tags"),
            json!({"Value": value, "Action": action}),
        )
        .await;
    assert_eq!(reply.status, 200, "{action} {value}: {}", reply.text);
}

/// A detection as the agent raises it: detection fields only.
fn detection(n: usize) -> Value {
    json!({
        "title": format!("Blocked connection to {ADDRESS} (hit {n})"),
        "description": format!("Traffic to {ADDRESS} met an indicator (hit {n})."),
        "severity": "High",
        "category": "CommandAndControl",
        "detectionSource": "CustomerTI",
        "evidence": [{
            "entityType": "Ip",
            "ipAddress": ADDRESS,
            "detectionStatus": "Blocked"
        }]
    })
}

/// `POST /device/v1/alerts` with the device's credential, as raw HTTP.
async fn raise(server: &TestServer, device: &Enrolled, body: Value) -> Reply {
    server
        .post_as(&device.enrollment.credential, "/device/v1/alerts", body)
        .await
}

/// The ids of the alerts on `machine_id`, every page of them.
async fn alerts_on(server: &TestServer, machine_id: &str) -> Vec<String> {
    let mut url = server.url(&format!("/api/alerts?$filter=machineId eq '{machine_id}'"));
    let mut ids = Vec::new();
    loop {
        let reply = server.send(server.client.get(&url)).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text);
        for alert in reply.json["value"].as_array().unwrap() {
            assert_eq!(alert["machineId"], machine_id, "{alert}");
        }
        ids.extend(reply.value_ids());
        match reply.json["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    ids
}

// ---------------------------------------------------------------------------
// Indicators in check-ins
// ---------------------------------------------------------------------------

#[tokio::test]
async fn indicators_scoped_to_a_device_group_reach_only_the_devices_of_that_group() {
    let server = TestServer::start().await;
    server
        .admin
        .put_device_group(
            &server.tenant_id,
            &DeviceGroup {
                id: 7,
                name: "Quarantine ring".into(),
                rank: 1,
                rules: GroupRules {
                    tags: vec!["ring-q".into()],
                    ..GroupRules::default()
                },
            },
        )
        .await
        .unwrap();
    let ringed = server
        .enroll(&linux_device("ring-q-01", &[Capability::Indicators]))
        .await;
    let outside = server
        .enroll(&linux_device("lab-02", &[Capability::Indicators]))
        .await;
    let ringed_id = ringed.enrollment.machine_id.clone();
    let outside_id = outside.enrollment.machine_id.clone();

    tag(&server, &ringed_id, "ring-q", "Add").await;
    assert_eq!(
        group_of(&server, &ringed_id).await,
        (json!(7), json!("Quarantine ring"))
    );
    assert_eq!(
        group_of(&server, &outside_id).await,
        (json!(0), Value::Null),
        "untagged: in no group"
    );

    // Submitted before either device checks in: the first check-ins read them.
    let everyone = submitted(&server, indicator(ADDRESS, "IpAddress", "Block")).await;
    let mut scoped_body = indicator(&SHA256.to_uppercase(), "FileSha256", "Block");
    scoped_body["rbacGroupNames"] = json!(["Quarantine ring"]);
    let scoped = submitted(&server, scoped_body).await;
    assert_eq!(scoped["rbacGroupNames"], json!(["Quarantine ring"]));
    assert_eq!(scoped["rbacGroupIds"], json!(["7"]));

    let everyone_item = (
        id_of(&everyone),
        IndicatorType::IpAddress.as_str(),
        ADDRESS.to_string(),
        IndicatorAction::Block.as_str(),
    );
    let scoped_item = (
        id_of(&scoped),
        IndicatorType::FileSha256.as_str(),
        SHA256.to_string(), // as matched: in lower case
        IndicatorAction::Block.as_str(),
    );

    let ringed_set = indicators_after(&ringed, None)
        .await
        .expect("a device holding none gets the set");
    assert_eq!(
        contents(&ringed_set),
        BTreeSet::from([everyone_item.clone(), scoped_item.clone()]),
        "the group's device: the unscoped indicator and its group's"
    );
    let outside_set = indicators_after(&outside, None)
        .await
        .expect("a device holding none gets the set");
    assert_eq!(
        contents(&outside_set),
        BTreeSet::from([everyone_item.clone()]),
        "a device of no group: only the unscoped indicator"
    );
    assert_ne!(ringed_set.version, outside_set.version);
    let hash = ringed_set
        .indicators
        .iter()
        .find(|i| i.indicator_type == IndicatorType::FileSha256)
        .unwrap();
    assert_eq!(hash.title, scoped["title"].as_str().unwrap());

    // Presenting the version it got: nothing new.
    assert_eq!(
        indicators_after(&ringed, Some(&ringed_set.version)).await,
        None
    );
    assert_eq!(
        indicators_after(&outside, Some(&outside_set.version)).await,
        None
    );
    // The check-ins written to the machines keep the tag and the group.
    server.devices.flush_check_ins().await.unwrap();
    assert_eq!(
        group_of(&server, &ringed_id).await,
        (json!(7), json!("Quarantine ring"))
    );
    assert_eq!(
        indicators_after(&ringed, Some(&ringed_set.version)).await,
        None,
        "still in the group after its check-ins were written"
    );
    // A device presenting another group's version gets its own set.
    assert_eq!(
        indicators_after(&outside, Some(&ringed_set.version)).await,
        Some(outside_set.clone())
    );

    // Out of the group, the device's next check-in drops the scoped indicator.
    tag(&server, &ringed_id, "ring-q", "Remove").await;
    assert_eq!(group_of(&server, &ringed_id).await, (json!(0), Value::Null));
    let after_removal = indicators_after(&ringed, Some(&ringed_set.version))
        .await
        .expect("its group changed: so did its set");
    assert_eq!(after_removal, outside_set);
}

#[tokio::test]
async fn a_device_that_does_not_enforce_indicators_gets_none_however_often_it_checks_in() {
    // (Not declaring the capability and holding no version.)
    let server = TestServer::start().await;
    submitted(&server, indicator(ADDRESS, "IpAddress", "Block")).await;
    submitted(
        &server,
        indicator(SHA256, "FileSha256", "BlockAndRemediate"),
    )
    .await;
    let older_request = linux_device("old-agent", &[Capability::FullIsolation]);
    let older = server.enroll(&older_request).await;
    let current = server
        .enroll(&linux_device("new-agent", &[Capability::Indicators]))
        .await;

    // The tenant has indicators: a device that enforces them gets both.
    let current_set = indicators_after(&current, None)
        .await
        .expect("the current agent gets the set");
    assert_eq!(current_set.indicators.len(), 2, "{current_set:?}");

    for _ in 0..3 {
        assert_eq!(indicators_after(&older, None).await, None);
    }
    // One that reports holding a version enforces them, whatever it
    // declared when it enrolled (an agent enrolled before the capability):
    // a stale version gets the set, the current one nothing new.
    let stale = indicators_after(&older, Some("0123456789abcdef")).await;
    assert_eq!(stale.as_ref(), Some(&current_set));
    assert_eq!(
        indicators_after(&older, Some(&*current_set.version)).await,
        None
    );
    tokio::time::sleep(PAST_THE_CACHE).await;
    assert_eq!(
        indicators_after(&older, None).await,
        None,
        "after the set is read again"
    );
    // Its long poll is not ended by the indicators it does not enforce...
    let (indicators, took) = long_poll(&older, None, Duration::from_secs(3)).await;
    assert_eq!(indicators, None);
    assert!(
        took >= Duration::from_millis(2500),
        "answered after {took:?}"
    );
    // ...while the current agent's answers at once with the set.
    let (indicators, took) = long_poll(&current, None, Duration::from_secs(20)).await;
    assert_eq!(indicators.as_ref(), Some(&current_set));
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // Upgraded in place, declaring the capability, it gets them.
    let upgraded_request = EnrollRequest {
        capabilities: vec![Capability::FullIsolation, Capability::Indicators],
        ..older_request
    };
    let upgraded = server.re_enroll(&older, &upgraded_request).await;
    assert_eq!(
        upgraded.enrollment.machine_id, older.enrollment.machine_id,
        "enrolled in place"
    );
    let upgraded_set = indicators_after(&upgraded, None)
        .await
        .expect("the upgraded agent enforces indicators");
    assert_eq!(contents(&upgraded_set), contents(&current_set));
}

#[tokio::test]
async fn a_long_poll_ends_with_the_new_set_when_indicators_change() {
    let server = TestServer::start().await;
    let device = server
        .enroll(&linux_device("poller", &[Capability::Indicators]))
        .await;

    // A tenant without indicators: the device holding none holds its set.
    assert_eq!(indicators_after(&device, None).await, None);
    let (indicators, took) = long_poll(&device, None, Duration::from_secs(3)).await;
    assert_eq!(indicators, None, "no indicators do not end the long poll");
    assert!(
        took >= Duration::from_millis(2500),
        "answered after {took:?}"
    );

    // A submission during a long poll ends it within a few seconds.
    let poll = {
        let device = Enrolled {
            device: device.device.clone(),
            enrollment: device.enrollment.clone(),
        };
        tokio::spawn(async move { long_poll(&device, None, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocked = submitted(&server, indicator(OTHER_SHA256, "FileSha256", "Block")).await;
    let (indicators, took) = poll.await.unwrap();
    let set = indicators.expect("the long poll ends with the new set");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(
        contents(&set),
        BTreeSet::from([(
            id_of(&blocked),
            IndicatorType::FileSha256.as_str(),
            OTHER_SHA256.to_string(),
            IndicatorAction::Block.as_str()
        )])
    );

    // Deleted, the device holding it gets the empty set, whose version is
    // the one a device holding none holds.
    let deleted = server
        .send(
            server
                .client
                .delete(server.url(&format!("/api/indicators/{}", id_of(&blocked)))),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let (indicators, took) = long_poll(&device, Some(&set.version), Duration::from_secs(30)).await;
    let empty = indicators.expect("the long poll ends with the emptied set");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert!(empty.indicators.is_empty(), "{empty:?}");
    assert_ne!(empty.version, set.version);
    assert_eq!(indicators_after(&device, Some(&empty.version)).await, None);
    assert_eq!(indicators_after(&device, None).await, None);
}

// ---------------------------------------------------------------------------
// Alerts a device raises
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_device_raises_alerts_on_its_own_machine_at_most_30_a_minute() {
    let server = TestServer::start().await;
    let sensor = server
        .enroll(&linux_device("sensor-01", &[Capability::Indicators]))
        .await;
    let neighbour = server
        .enroll(&linux_device("sensor-02", &[Capability::Indicators]))
        .await;
    let id = sensor.enrollment.machine_id.clone();
    let neighbour_id = neighbour.enrollment.machine_id.clone();

    // A detection: 201, on the device's own machine, New.
    let first = raise(&server, &sensor, detection(1)).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.json["machineId"], id.as_str());
    assert_eq!(first.json["status"], "New");
    assert_eq!(first.json["computerDnsName"], "sensor-01");
    assert_eq!(first.json["severity"], "High");
    assert_eq!(first.json["detectionSource"], "CustomerTI");
    let fetched = server
        .get(&format!("/api/alerts/{}", id_of(&first.json)))
        .await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    assert_eq!(fetched.json["machineId"], id.as_str());
    assert_eq!(fetched.json["status"], "New");
    assert_eq!(fetched.json["title"], detection(1)["title"]);
    let mut accepted = vec![id_of(&first.json)];

    // Through the device client too.
    let second = sensor.device.raise_alert(&detection(2)).await.unwrap();
    assert_eq!(second.machine_id, id);
    assert_eq!(second.status, AlertStatus::New);
    accepted.push(second.id.clone());

    // What only the API's callers set is refused, naming the property.
    for (property, value) in [
        ("status", json!("Resolved")),
        ("machineId", json!(neighbour_id)),
        ("assignedTo", json!("secops@contoso.test")),
    ] {
        let mut body = detection(0);
        body[property] = value;
        let reply = raise(&server, &sensor, body).await;
        let message = reply.assert_error(400, "InvalidRequestBody");
        assert!(message.contains(&format!("'{property}'")), "{message}");
    }
    raise(&server, &sensor, json!(["not", "an", "object"]))
        .await
        .assert_error(400, "InvalidRequestBody");
    match sensor
        .device
        .raise_alert(&json!({"title": "x", "status": "Resolved"}))
        .await
    {
        Err(DeviceError::Refused {
            status: 400, code, ..
        }) => assert_eq!(code, "InvalidRequestBody"),
        other => panic!("a status was taken: {other:?}"),
    }
    // No credential, no alert.
    server
        .post_as("pdc.forged", "/device/v1/alerts", detection(0))
        .await
        .assert_error(401, "Unauthorized");
    assert_eq!(
        alerts_on(&server, &neighbour_id).await,
        Vec::<String>::new()
    );
    assert_eq!(
        BTreeSet::from_iter(alerts_on(&server, &id).await),
        BTreeSet::from_iter(accepted.clone()),
        "refused bodies made no alert"
    );

    // The refused ones did not count: 28 more fill the minute.
    for n in 3..=30 {
        let reply = raise(&server, &sensor, detection(n)).await;
        assert_eq!(reply.status, 201, "alert {n}: {}", reply.text);
        accepted.push(id_of(&reply.json));
    }
    let throttled = raise(&server, &sensor, detection(31)).await;
    let message = throttled.assert_error(429, "TooManyRequests");
    assert!(message.contains("30"), "{message}");
    let retry_after: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (30..=60).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    match sensor.device.raise_alert(&detection(32)).await {
        Err(DeviceError::Throttled { retry_after, .. }) => {
            assert!(retry_after <= Duration::from_secs(60), "{retry_after:?}")
        }
        other => panic!("a 31st alert in the minute: {other:?}"),
    }
    let listed = alerts_on(&server, &id).await;
    assert_eq!(listed.len(), 30, "{listed:?}");
    assert_eq!(
        BTreeSet::from_iter(listed),
        BTreeSet::from_iter(accepted.clone())
    );

    // Another device counts its own.
    let theirs = raise(&server, &neighbour, detection(1)).await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    assert_eq!(theirs.json["machineId"], neighbour_id.as_str());

    // The limiter keeps the server's (test) clock: a minute later, alerts pass again.
    server.clock.advance(61);
    let later = raise(&server, &sensor, detection(33)).await;
    assert_eq!(later.status, 201, "{}", later.text);
    accepted.push(id_of(&later.json));
    let listed = alerts_on(&server, &id).await;
    assert_eq!(listed.len(), 31, "{listed:?}");
    assert_eq!(BTreeSet::from_iter(listed), BTreeSet::from_iter(accepted));
    assert_eq!(alerts_on(&server, &neighbour_id).await.len(), 1);
}

#[tokio::test]
async fn a_device_raises_at_most_300_alerts_an_hour() {
    let server = TestServer::start().await;
    let sensor = server.enroll(&linux_device("chatty", &[])).await;
    let id = sensor.enrollment.machine_id.clone();
    // Ten minutes of 30 each (a minute apart, on the test clock).
    for minute in 0..10 {
        for n in 0..30 {
            let reply = raise(&server, &sensor, detection(minute * 30 + n)).await;
            assert_eq!(
                reply.status, 201,
                "minute {minute}, alert {n}: {}",
                reply.text
            );
        }
        server.clock.advance(61);
    }
    let throttled = raise(&server, &sensor, detection(300)).await;
    let message = throttled.assert_error(429, "TooManyRequests");
    assert!(message.contains("300"), "{message}");
    let retry_after: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The first alerts leave the hour 3,600 s after they came, 610 s ago.
    assert!(
        (2900..=2990).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(alerts_on(&server, &id).await.len(), 300);
    server.clock.advance(retry_after as i64);
    let reply = raise(&server, &sensor, detection(301)).await;
    assert_eq!(reply.status, 201, "after Retry-After: {}", reply.text);
    assert_eq!(alerts_on(&server, &id).await.len(), 301);
}

// ---------------------------------------------------------------------------
// Concurrent submissions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_submissions_of_one_new_value_make_one_indicator() {
    let server = TestServer::start().await;
    const WRITERS: usize = 16;
    let url = server.url("/api/indicators");
    let titles: Vec<String> = (0..WRITERS).map(|n| format!("Feed {n}")).collect();
    let mut submissions = tokio::task::JoinSet::new();
    for title in &titles {
        let mut body = indicator(OTHER_SHA256, "FileSha256", "Block");
        body["title"] = json!(title);
        let request = server.client.post(&url).json(&body);
        submissions.spawn(async move { server_reply(request.send().await.unwrap()).await });
    }
    let replies = submissions.join_all().await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let ids: BTreeSet<String> = replies.iter().map(|r| id_of(&r.json)).collect();
    assert_eq!(ids.len(), 1, "one indicator answered to all: {ids:?}");

    let list = server.get("/api/indicators").await;
    assert_eq!(list.status, 200, "{}", list.text);
    let of_value: Vec<&Value> = list.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["indicatorValue"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(OTHER_SHA256))
        })
        .collect();
    assert_eq!(of_value.len(), 1, "{}", list.text);
    let listed = of_value[0];
    assert!(ids.contains(&id_of(listed)), "{listed}");
    let title = listed["title"].as_str().unwrap();
    assert!(titles.iter().any(|t| t == title), "title {title}");
}
