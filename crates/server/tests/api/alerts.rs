//! Alerts (`/api/alerts`, `/api/machines/{id}/alerts`, the control plane's
//! raise): the entity as MDE shows it, OData on it, PATCH, batch update and
//! CreateAlertByReference with their refusals, who may read and change
//! which alert, the batch update's own rate limit, the audit log, and
//! incremental polling on `lastUpdateTime` that, while writers change
//! alerts, sees every change once and misses none.

use crate::control_plane::control;
use crate::harness::*;
use palisade_contract::{OsPlatform, Permission, Timestamp};
use palisade_domain::rate_limit::RateLimits;
use palisade_domain::Role;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The properties of an alert in the order MDE's alerts.md example gives them.
const ALERT_PROPERTIES: [&str; 29] = [
    "id",
    "incidentId",
    "investigationId",
    "assignedTo",
    "severity",
    "status",
    "classification",
    "determination",
    "investigationState",
    "detectionSource",
    "detectorId",
    "category",
    "threatFamilyName",
    "title",
    "description",
    "alertCreationTime",
    "firstEventTime",
    "lastEventTime",
    "lastUpdateTime",
    "resolvedTime",
    "machineId",
    "computerDnsName",
    "rbacGroupName",
    "aadTenantId",
    "threatName",
    "mitreTechniques",
    "relatedUser",
    "comments",
    "evidence",
];

const SHA256: &str = "a4752c71d81afd3d5865d24ddb11a6b0c615062fcc448d24050c2172d2cbccd6";

fn raise_path(tenant_id: &str) -> String {
    format!("/tenants/{tenant_id}/alerts")
}

/// `POST /_palisade/v1/tenants/{t}/alerts` with the operator token.
async fn raise_reply(server: &TestServer, body: Value) -> Reply {
    let operator = Some(server.operator_token.as_str());
    let path = raise_path(&server.tenant_id);
    control(server, operator, Method::POST, &path, Some(body)).await
}

/// Raises `body` (a partial alert) through the control plane; returns the alert.
async fn raise(server: &TestServer, body: Value) -> Value {
    let reply = raise_reply(server, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json
}

/// Raises an alert titled `title` on `machine_id`; returns its id.
async fn raise_on(server: &TestServer, machine_id: &str, title: &str) -> String {
    let alert = raise(server, json!({"machineId": machine_id, "title": title})).await;
    id_of(&alert)
}

fn id_of(alert: &Value) -> String {
    alert["id"].as_str().expect("an alert id").to_string()
}

#[track_caller]
fn timestamp(value: &Value) -> Timestamp {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    Timestamp::parse(text).unwrap_or_else(|| panic!("not a timestamp: {text}"))
}

/// `GET /api/alerts/{id}`, which must answer 200.
async fn get_alert(server: &TestServer, id: &str) -> Value {
    let reply = server.get(&format!("/api/alerts/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

/// `GET /api/alerts{query}`, which must answer 200.
async fn list(server: &TestServer, query: &str) -> Reply {
    let reply = server.get(&format!("/api/alerts{query}")).await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.text);
    reply
}

async fn listed_ids(server: &TestServer, query: &str) -> Vec<String> {
    list(server, query).await.value_ids()
}

async fn listed_set(server: &TestServer, query: &str) -> BTreeSet<String> {
    listed_ids(server, query).await.into_iter().collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// A request as the holder of `token`, with a JSON body if given.
async fn send_as(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .request(method, server.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

async fn patch_as(server: &TestServer, token: &str, id: &str, body: Value) -> Reply {
    let path = format!("/api/alerts/{id}");
    send_as(server, token, Method::PATCH, &path, Some(body)).await
}

/// PATCHes alert `id` with `body`, which must be taken; returns the alert.
async fn patched(server: &TestServer, id: &str, body: Value) -> Value {
    let reply = server
        .patch(&format!("/api/alerts/{id}"), body.clone())
        .await;
    assert_eq!(reply.status, 200, "{body}: {}", reply.text);
    reply.json
}

/// The names of a JSON object's members in the order the text gives them
/// (`serde_json::Value` may keep them sorted).
fn member_order(text: &str) -> Vec<String> {
    struct Names(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Names {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Names;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Names, A::Error> {
                    let mut names = Vec::new();
                    while let Some(name) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        names.push(name);
                    }
                    Ok(Names(names))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    serde_json::from_str::<Names>(text)
        .expect("a JSON object")
        .0
}

fn by_reference(machine_id: &str, title: &str, event_time: Timestamp) -> Value {
    json!({
        "machineId": machine_id,
        "severity": "High",
        "title": title,
        "description": "A test alert raised by reference",
        "recommendedAction": "Collect an investigation package",
        "eventTime": event_time.to_string(),
        "reportId": "20",
        "category": "Exploit"
    })
}

/// Percent-encodes an OData query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The entity
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_alert_reads_as_mde_shows_it_with_its_machine_name_group_and_evidence() {
    let server = TestServer::start().await;
    server.put_group(5, "Finance").await;
    let mut m = machine(OsPlatform::Windows11);
    m.rbac_group_id = 5;
    server.put_machines(std::slice::from_ref(&m)).await;
    let raised = raise(
        &server,
        json!({
            "machineId": m.id,
            "title": "Low-reputation arbitrary code executed by signed executable",
            "description": "Binaries signed by Microsoft can be used to run low-reputation code.",
            "severity": "High",
            "category": "Execution",
            "detectionSource": "WindowsDefenderAv",
            "mitreTechniques": ["T1064", "T1085"],
            "relatedUser": {"userName": "temp123", "domainName": "DOMAIN"},
            "evidence": [{"entityType": "File", "sha256": SHA256, "fileName": "rundll32.exe"}]
        }),
    )
    .await;
    let id = id_of(&raised);

    let reply = server.get(&format!("/api/alerts/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json; odata.metadata=minimal"));
    let alert = &reply.json;
    assert_eq!(
        alert["@odata.context"],
        format!("{}/api/$metadata#Alerts/$entity", server.origin)
    );
    let mut expected = vec!["@odata.context".to_string()];
    expected.extend(ALERT_PROPERTIES.iter().map(|p| p.to_string()));
    assert_eq!(
        member_order(&reply.text),
        expected,
        "every property, in order"
    );
    assert!(
        id.starts_with("da") && id.contains('_'),
        "an MDE-shaped id: {id}"
    );
    assert!(alert["incidentId"].is_i64(), "{alert}");
    assert_eq!(alert["severity"], "High");
    assert_eq!(alert["status"], "New");
    assert_eq!(alert["investigationState"], "Queued");
    assert_eq!(alert["category"], "Execution");
    assert_eq!(alert["detectionSource"], "WindowsDefenderAv");
    assert_eq!(alert["machineId"], m.id.as_str());
    assert_eq!(alert["computerDnsName"], m.computer_dns_name.as_str());
    assert_eq!(alert["rbacGroupName"], "Finance");
    assert_eq!(alert["aadTenantId"], server.tenant_id.as_str());
    assert_eq!(alert["mitreTechniques"], json!(["T1064", "T1085"]));
    assert_eq!(alert["relatedUser"]["userName"], "temp123");
    assert_eq!(alert["comments"], json!([]));
    assert_eq!(alert["resolvedTime"], Value::Null);
    let evidence = alert["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 1, "GET by id carries the evidence");
    assert_eq!(evidence[0]["entityType"], "File");
    assert_eq!(evidence[0]["sha256"], SHA256);
    assert_eq!(evidence[0]["fileName"], "rundll32.exe");
    assert_eq!(
        evidence[0]["ipAddress"],
        Value::Null,
        "every property, null"
    );
    assert_eq!(
        alert, &raised,
        "the control plane answered the alert as GET shows it"
    );

    // The same alert under /api/v1.0 and with a differently cased segment.
    for path in [
        format!("/api/v1.0/alerts/{id}"),
        format!("/api/Alerts/{id}"),
        format!("/API/ALERTS/{id}"),
    ] {
        let other = server.get(&path).await;
        assert_eq!(other.status, 200, "{path}: {}", other.text);
        assert_eq!(&other.json, alert, "{path}");
    }

    // In lists evidence is empty unless expanded.
    let listed = list(&server, "").await;
    assert_eq!(
        listed.json["@odata.context"],
        format!("{}/api/$metadata#Alerts", server.origin)
    );
    assert_eq!(listed.value_ids(), vec![id.clone()]);
    let item = &listed.json["value"][0];
    assert_eq!(item["evidence"], json!([]));
    assert_eq!(
        member_order(&item.to_string()).len(),
        ALERT_PROPERTIES.len()
    );
    let expanded = list(&server, "?$expand=evidence").await;
    assert_eq!(expanded.json["value"][0]["evidence"], alert["evidence"]);
    let v1 = server.get("/api/v1.0/alerts?$expand=evidence").await;
    assert_eq!(v1.status, 200, "{}", v1.text);
    assert_eq!(v1.json["value"][0]["evidence"], alert["evidence"]);
    let cased = server.get("/api/Alerts").await;
    assert_eq!(cased.value_ids(), vec![id.clone()]);

    server
        .get("/api/alerts?$expand=machine")
        .await
        .assert_error(400, "ODataError");
    let unknown = "da637472900382838869_1364969609";
    let message = server
        .get(&format!("/api/alerts/{unknown}"))
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains(unknown), "{message}");
}

// ---------------------------------------------------------------------------
// OData
// ---------------------------------------------------------------------------

#[tokio::test]
async fn alerts_are_newest_first_and_filter_page_order_count_and_select_as_documented() {
    let server = TestServer::start().await;
    let (m1, m2) = (
        machine(OsPlatform::Windows11),
        machine(OsPlatform::WindowsServer2022),
    );
    server.put_machines(&[m1.clone(), m2.clone()]).await;
    let mut raised = Vec::new();
    for (m, severity, category) in [
        (&m1, "Low", "Execution"),
        (&m1, "High", "Malware"),
        (&m2, "Medium", "Execution"),
        (&m2, "High", "SuspiciousActivity"),
    ] {
        let alert = raise(
            &server,
            json!({"machineId": m.id, "title": format!("{severity} {category}"),
                   "severity": severity, "category": category}),
        )
        .await;
        raised.push(alert);
    }
    let ids: Vec<String> = raised.iter().map(id_of).collect();
    let [a1, a2, a3, a4] = [&ids[0], &ids[1], &ids[2], &ids[3]];
    patched(&server, a2, json!({"status": "InProgress"})).await;
    patched(&server, a4, json!({"status": "Resolved"})).await;

    // Newest first, by creation (the PATCHes do not move them).
    assert_eq!(
        listed_ids(&server, "").await,
        vec![a4.clone(), a3.clone(), a2.clone(), a1.clone()]
    );
    let cases: Vec<(String, BTreeSet<String>)> = vec![
        ("severity eq 'High'".into(), set(&[a2, a4])),
        ("severity eq 'Informational'".into(), set(&[])),
        ("status eq 'Resolved'".into(), set(&[a4])),
        ("status eq 'New'".into(), set(&[a1, a3])),
        ("status eq 'InProgress'".into(), set(&[a2])),
        ("category eq 'Execution'".into(), set(&[a1, a3])),
        (format!("machineId eq '{}'", m1.id), set(&[a1, a2])),
        (
            format!("machineId eq '{}' and severity eq 'High'", m2.id),
            set(&[a4]),
        ),
        (
            format!("incidentId eq {}", raised[2]["incidentId"]),
            set(&[a3]),
        ),
        (
            format!(
                "alertCreationTime ge {}",
                raised[2]["alertCreationTime"].as_str().unwrap()
            ),
            set(&[a3, a4]),
        ),
        (
            format!(
                "alertCreationTime lt {}",
                raised[1]["alertCreationTime"].as_str().unwrap()
            ),
            set(&[a1]),
        ),
    ];
    for (filter, expected) in cases {
        let got = listed_set(&server, &format!("?$filter={filter}")).await;
        assert_eq!(got, expected, "$filter={filter}");
    }

    // lastUpdateTime: the PATCHes made a2 and a4 the latest updated.
    let current: Vec<Value> = list(&server, "").await.json["value"]
        .as_array()
        .unwrap()
        .clone();
    let mut by_update: Vec<(Timestamp, String)> = current
        .iter()
        .map(|a| (timestamp(&a["lastUpdateTime"]), id_of(a)))
        .collect();
    by_update.sort();
    let in_update_order: Vec<String> = by_update.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(
        in_update_order,
        vec![a1.clone(), a3.clone(), a2.clone(), a4.clone()]
    );
    let third = current.iter().find(|a| a["id"] == a2.as_str()).unwrap()["lastUpdateTime"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        listed_set(&server, &format!("?$filter=lastUpdateTime gt {third}")).await,
        set(&[a4])
    );
    assert_eq!(
        listed_set(&server, &format!("?$filter=lastUpdateTime ge {third}")).await,
        set(&[a2, a4])
    );
    assert_eq!(
        listed_ids(&server, "?$orderby=lastUpdateTime asc").await,
        in_update_order
    );
    let mut descending = in_update_order.clone();
    descending.reverse();
    assert_eq!(
        listed_ids(&server, "?$orderby=lastUpdateTime desc").await,
        descending
    );

    // $top and $skip page through newest first; $top gives no next link.
    let first = list(&server, "?$top=2").await;
    assert_eq!(first.value_ids(), vec![a4.clone(), a3.clone()]);
    assert!(
        first.json.get("@odata.nextLink").is_none(),
        "{}",
        first.text
    );
    assert_eq!(
        listed_ids(&server, "?$top=2&$skip=2").await,
        vec![a2.clone(), a1.clone()]
    );
    assert_eq!(listed_ids(&server, "?$skip=3").await, vec![a1.clone()]);

    let counted = list(&server, "?$count=true&$filter=severity eq 'High'&$top=1").await;
    assert_eq!(counted.json["@odata.count"], 2, "{}", counted.text);
    assert_eq!(counted.value_ids().len(), 1);
    assert_eq!(list(&server, "?$count=true").await.json["@odata.count"], 4);

    let selected = list(&server, "?$select=id,severity&$filter=status eq 'Resolved'").await;
    assert_eq!(
        selected.json["value"],
        json!([{"id": a4, "severity": "High"}]),
        "{}",
        selected.text
    );
    server
        .get("/api/alerts?$select=colour")
        .await
        .assert_error(400, "ODataError");

    for refused in [
        "?$filter=title eq 'Low Execution'",
        "?$filter=description eq 'x'",
        "?$filter=severity eq",
        "?$orderby=title",
    ] {
        server
            .get(&format!("/api/alerts{refused}"))
            .await
            .assert_error(400, "ODataError");
    }
}

// ---------------------------------------------------------------------------
// PATCH
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_patch_changes_status_owner_classification_and_comments_and_moves_the_update_time() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let id = raise_on(&server, &m.id, "Suspicious PowerShell").await;
    let soc = server
        .app_token("SOC automation", &[Permission::AlertReadWriteAll])
        .await;
    let mut last = timestamp(&get_alert(&server, &id).await["lastUpdateTime"]);
    let mut step = |alert: &Value, what: &str| {
        let at = timestamp(&alert["lastUpdateTime"]);
        assert!(at > last, "{what}: lastUpdateTime {at} after {last}");
        last = at;
    };

    let resolved = patched(&server, &id, json!({"status": "Resolved"})).await;
    assert_eq!(
        resolved["@odata.context"],
        format!("{}/api/$metadata#Alerts/$entity", server.origin)
    );
    assert_eq!(resolved["status"], "Resolved");
    let resolved_at = timestamp(&resolved["resolvedTime"]);
    assert!(resolved_at <= timestamp(&resolved["lastUpdateTime"]));
    step(&resolved, "resolved");

    let reopened = patched(&server, &id, json!({"status": "InProgress"})).await;
    assert_eq!(reopened["status"], "InProgress");
    assert_eq!(reopened["resolvedTime"], Value::Null, "reopening clears it");
    step(&reopened, "reopened");

    let assigned = patched(&server, &id, json!({"assignedTo": "secop2@contoso.com"})).await;
    assert_eq!(assigned["assignedTo"], "secop2@contoso.com");
    assert_eq!(assigned["status"], "InProgress", "what is absent is kept");
    step(&assigned, "assigned");

    for classification in [
        "TruePositive",
        "InformationalExpectedActivity",
        "FalsePositive",
    ] {
        let alert = patched(&server, &id, json!({"classification": classification})).await;
        assert_eq!(alert["classification"], classification);
        step(&alert, classification);
    }
    for determination in [
        "Malware",
        "ConfirmedUserActivity",
        "ConfirmedActivity",
        "Other",
    ] {
        let alert = patched(&server, &id, json!({"determination": determination})).await;
        assert_eq!(alert["determination"], determination, "kept as sent");
        step(&alert, determination);
    }
    let both = patched(
        &server,
        &id,
        json!({"classification": "TruePositive", "determination": "Phishing"}),
    )
    .await;
    assert_eq!(both["classification"], "TruePositive");
    assert_eq!(both["determination"], "Phishing");
    step(&both, "both");

    let before = Timestamp::now();
    let reply = patch_as(&server, &soc, &id, json!({"comment": "Checked the hash"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let commented = reply.json;
    let comments = commented["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["comment"], "Checked the hash");
    assert_eq!(comments[0]["createdBy"], "SOC automation", "the app's name");
    let created = timestamp(&comments[0]["createdTime"]);
    assert!(
        created >= before.plus_seconds(-1) && created <= Timestamp::now(),
        "{created}"
    );
    step(&commented, "commented");
    let again = patched(&server, &id, json!({"comment": "Second look"})).await;
    let comments = again["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 2, "appended");
    assert_eq!(comments[0]["comment"], "Checked the hash");
    assert_eq!(comments[1]["comment"], "Second look");
    assert_eq!(comments[1]["createdBy"], "Test automation");
    step(&again, "second comment");

    let resolved_twice = patched(&server, &id, json!({"status": "Resolved"})).await;
    step(&resolved_twice, "resolved again");
    let stored = get_alert(&server, &id).await;
    assert_eq!(stored, resolved_twice, "GET reads what the PATCH answered");
    assert_eq!(stored["assignedTo"], "secop2@contoso.com");
    assert_eq!(stored["comments"].as_array().unwrap().len(), 2);
    assert_eq!(stored["evidence"], json!([]));

    // Refused: nothing to change, wrong values, wrongly cased names.
    let path = format!("/api/alerts/{id}");
    let refusals = [
        (json!({}), "InvalidRequestBody"),
        (json!({"Status": "New"}), "InvalidRequestBody"),
        (json!({"AssignedTo": "x@contoso.com"}), "InvalidRequestBody"),
        (json!({"status": "Closed"}), "InvalidRequestBody"),
        (json!({"status": "Unknown"}), "InvalidRequestBody"),
        (json!({"classification": "Benign"}), "InvalidRequestBody"),
        (json!({"determination": "Apt"}), "InvalidRequestBody"),
        (json!({"comment": "  "}), "InvalidRequestBody"),
        (json!({"status": 3}), "InvalidRequestBody"),
    ];
    for (body, code) in refusals {
        let reply = server.patch(&path, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        reply.assert_error(400, code);
    }
    let bare = server.send(server.client.patch(server.url(&path))).await;
    bare.assert_error(400, "InvalidRequestBody");
    assert_eq!(
        get_alert(&server, &id).await,
        stored,
        "a refused PATCH changes nothing, not even the update time"
    );

    let message = server
        .patch("/api/alerts/da000_404", json!({"status": "Resolved"}))
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains("da000_404"), "{message}");
}

#[tokio::test]
async fn a_patch_that_leaves_the_alert_as_it_was_keeps_its_update_time() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let id = raise_on(&server, &m.id, "Idempotent").await;
    let first = patched(&server, &id, json!({"assignedTo": "a@contoso.com"})).await;
    let same = patched(&server, &id, json!({"assignedTo": "a@contoso.com"})).await;
    assert_eq!(same["lastUpdateTime"], first["lastUpdateTime"]);
    let changed = patched(&server, &id, json!({"assignedTo": "b@contoso.com"})).await;
    assert!(timestamp(&changed["lastUpdateTime"]) > timestamp(&first["lastUpdateTime"]));
}

// ---------------------------------------------------------------------------
// batchUpdate
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_batch_update_changes_every_listed_alert_or_none() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let mut ids = Vec::new();
    for title in ["One", "Two", "Three"] {
        ids.push(raise_on(&server, &m.id, title).await);
    }
    let untouched = raise_on(&server, &m.id, "Four").await;
    let before: HashMap<String, Timestamp> = {
        let mut map = HashMap::new();
        for id in ids.iter().chain([&untouched]) {
            map.insert(
                id.clone(),
                timestamp(&get_alert(&server, id).await["lastUpdateTime"]),
            );
        }
        map
    };

    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": ids, "status": "Resolved", "assignedTo": "secop@contoso.com",
                   "classification": "FalsePositive", "determination": "Clean",
                   "comment": "Bulk triage"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, "", "an empty body");
    let mut times = HashSet::new();
    for id in &ids {
        let alert = get_alert(&server, id).await;
        assert_eq!(alert["status"], "Resolved", "{id}");
        assert!(alert["resolvedTime"].is_string(), "{alert}");
        assert_eq!(alert["assignedTo"], "secop@contoso.com");
        assert_eq!(alert["classification"], "FalsePositive");
        assert_eq!(alert["determination"], "Clean");
        assert_eq!(alert["comments"][0]["comment"], "Bulk triage");
        assert_eq!(alert["comments"][0]["createdBy"], "Test automation");
        let at = timestamp(&alert["lastUpdateTime"]);
        assert!(at > before[id], "{id} moved");
        assert!(times.insert(at), "every alert its own update time");
    }
    let other = get_alert(&server, &untouched).await;
    assert_eq!(other["status"], "New", "an alert not listed is not changed");
    assert_eq!(timestamp(&other["lastUpdateTime"]), before[&untouched]);

    // One unknown id: a 404 naming it, and none changed.
    let unknown = "da637472900382838869_404";
    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [ids[0], untouched, unknown], "status": "InProgress"}),
        )
        .await;
    let message = reply.assert_error(404, "ResourceNotFound");
    assert!(message.contains(unknown), "{message}");
    assert_eq!(get_alert(&server, &ids[0]).await["status"], "Resolved");
    assert_eq!(get_alert(&server, &untouched).await["status"], "New");

    let too_many: Vec<String> = (0..501).map(|_| ids[0].clone()).collect();
    let message = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": too_many, "status": "New"}),
        )
        .await
        .assert_error(400, "MaximumBatchSizeExceeded");
    assert!(message.contains("501"), "{message}");
    let message = server
        .post("/api/alerts/batchUpdate", json!({"status": "New"}))
        .await
        .assert_error(400, "MissingRequiredParameter");
    assert!(message.contains("alertIds"), "{message}");
    server
        .post(
            "/api/alerts/batchUpdate",
            json!({"AlertIds": [ids[0]], "status": "New"}),
        )
        .await
        .assert_error(400, "MissingRequiredParameter");
    server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [], "status": "New"}),
        )
        .await
        .assert_error(400, "InvalidRequestBody");
    server
        .post("/api/alerts/batchUpdate", json!({"alertIds": [ids[0]]}))
        .await
        .assert_error(400, "InvalidRequestBody");
    server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [ids[0]], "status": "Closed"}),
        )
        .await
        .assert_error(400, "InvalidRequestBody");
    assert_eq!(get_alert(&server, &ids[0]).await["status"], "Resolved");

    // 500 (the same alert named again and again) are taken.
    let most: Vec<String> = (0..500).map(|i| ids[i % 3].clone()).collect();
    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": most, "status": "New"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for id in &ids {
        let alert = get_alert(&server, id).await;
        assert_eq!(alert["status"], "New");
        assert_eq!(alert["resolvedTime"], Value::Null);
    }
}

// ---------------------------------------------------------------------------
// CreateAlertByReference
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_alert_by_reference_raises_merges_into_the_open_alert_and_raises_anew_once_resolved()
{
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let path = "/api/alerts/CreateAlertByReference";
    let event = Timestamp::now().plus_seconds(-600);
    let reply = server
        .post(path, by_reference(&m.id, "Test alert", event))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let alert = reply.json;
    assert_eq!(
        alert["@odata.context"],
        format!("{}/api/$metadata#Alerts/$entity", server.origin)
    );
    let id = id_of(&alert);
    assert_eq!(alert["detectionSource"], "CustomDetection");
    assert_eq!(alert["category"], "Exploit");
    assert_eq!(alert["severity"], "High");
    assert_eq!(alert["title"], "Test alert");
    assert_eq!(alert["description"], "A test alert raised by reference");
    assert_eq!(alert["status"], "New");
    assert_eq!(alert["machineId"], m.id.as_str());
    assert_eq!(alert["computerDnsName"], m.computer_dns_name.as_str());
    assert_eq!(timestamp(&alert["firstEventTime"]), event);
    assert_eq!(timestamp(&alert["lastEventTime"]), event);
    assert!(alert["incidentId"].is_i64());
    assert_eq!(get_alert(&server, &id).await, alert);

    // The same title on the same machine, while open: merged.
    let later = event.plus_seconds(300);
    let merged = server
        .post(path, by_reference(&m.id, "Test alert", later))
        .await;
    assert_eq!(merged.status, 200, "{}", merged.text);
    assert_eq!(merged.json["id"], id.as_str(), "merged into the open alert");
    assert_eq!(merged.json["incidentId"], alert["incidentId"]);
    assert_eq!(timestamp(&merged.json["firstEventTime"]), event);
    assert_eq!(timestamp(&merged.json["lastEventTime"]), later);
    assert!(timestamp(&merged.json["lastUpdateTime"]) > timestamp(&alert["lastUpdateTime"]));
    // Another title, or another machine: another alert.
    let other_title = server
        .post(path, by_reference(&m.id, "Other alert", later))
        .await;
    assert_eq!(other_title.status, 200, "{}", other_title.text);
    assert_ne!(other_title.json["id"], id.as_str());
    let m2 = machine(OsPlatform::Windows10);
    server.put_machines(std::slice::from_ref(&m2)).await;
    let other_machine = server
        .post(path, by_reference(&m2.id, "Test alert", later))
        .await;
    assert_eq!(other_machine.status, 200, "{}", other_machine.text);
    assert_ne!(other_machine.json["id"], id.as_str());

    // Once resolved, the same title raises a new alert.
    patched(&server, &id, json!({"status": "Resolved"})).await;
    let anew = server
        .post(path, by_reference(&m.id, "Test alert", later))
        .await;
    assert_eq!(anew.status, 200, "{}", anew.text);
    let new_id = id_of(&anew.json);
    assert_ne!(new_id, id);
    assert_eq!(anew.json["status"], "New");
    assert_ne!(anew.json["incidentId"], alert["incidentId"]);
    let on_machine = listed_set(&server, &format!("?$filter=machineId eq '{}'", m.id)).await;
    assert_eq!(on_machine.len(), 3, "{on_machine:?}");

    // Every property is required, and named when missing.
    for property in [
        "machineId",
        "severity",
        "title",
        "description",
        "recommendedAction",
        "eventTime",
        "reportId",
        "category",
    ] {
        let mut body = by_reference(&m.id, "Missing", event);
        body.as_object_mut().unwrap().remove(property);
        let message = server
            .post(path, body)
            .await
            .assert_error(400, "MissingRequiredParameter");
        assert!(message.contains(property), "{property}: {message}");
    }
    for (property, value) in [
        ("severity", json!("Informational")),
        ("severity", json!("UnSpecified")),
        ("severity", json!("Severe")),
        ("category", json!("Mystery")),
        ("eventTime", json!("yesterday")),
    ] {
        let mut body = by_reference(&m.id, "Refused", event);
        body[property] = value.clone();
        let reply = server.post(path, body).await;
        assert_eq!(reply.status, 400, "{property} {value}: {}", reply.text);
        reply.assert_error(400, "InvalidRequestBody");
    }
    let nowhere = "f".repeat(40);
    let message = server
        .post(path, by_reference(&nowhere, "Nowhere", event))
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains(&nowhere), "{message}");
    let titles: Vec<Value> = list(&server, "").await.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].clone())
        .collect();
    assert_eq!(titles.len(), 4, "nothing refused was raised: {titles:?}");
}

// ---------------------------------------------------------------------------
// An alert's machine, a machine's alerts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_alert_names_its_machine_and_a_machine_lists_only_its_own_alerts() {
    let server = TestServer::start().await;
    let (m1, m2) = (machine(OsPlatform::Windows11), machine(OsPlatform::Linux));
    server.put_machines(&[m1.clone(), m2.clone()]).await;
    let a1 = raise_on(&server, &m1.id, "First on m1").await;
    let a2 = raise_on(&server, &m2.id, "On m2").await;
    let a3 = raise_on(&server, &m1.id, "Second on m1").await;

    let reply = server.get(&format!("/api/alerts/{a1}/machine")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", server.origin)
    );
    assert_eq!(reply.json["id"], m1.id.as_str());
    assert_eq!(reply.json["computerDnsName"], m1.computer_dns_name.as_str());
    let direct = server.get(&format!("/api/machines/{}", m1.id)).await;
    assert_eq!(
        reply.json, direct.json,
        "the machine as GET /api/machines/{{id}} shows it"
    );
    let of_a2 = server.get(&format!("/api/v1.0/Alerts/{a2}/Machine")).await;
    assert_eq!(of_a2.json["id"], m2.id.as_str(), "{}", of_a2.text);

    let listed = server.get(&format!("/api/machines/{}/alerts", m1.id)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(
        listed.json["@odata.context"],
        format!("{}/api/$metadata#Alerts", server.origin)
    );
    assert_eq!(
        listed.value_ids(),
        vec![a3.clone(), a1.clone()],
        "newest first"
    );
    let second = server
        .get(&format!("/api/machines/{}/alerts?$top=1&$skip=1", m1.id))
        .await;
    assert_eq!(second.value_ids(), vec![a1.clone()]);
    let filtered = server
        .get(&format!(
            "/api/machines/{}/alerts?$filter=title eq 'x'",
            m1.id
        ))
        .await;
    filtered.assert_error(400, "ODataError");
    let of_m2 = server
        .get(&format!("/api/machines/{}/alerts", m2.id.to_uppercase()))
        .await;
    assert_eq!(of_m2.value_ids(), vec![a2.clone()]);
    let by_name = server
        .get(&format!("/api/machines/{}/alerts", m2.computer_dns_name))
        .await;
    assert_eq!(by_name.value_ids(), vec![a2.clone()], "{}", by_name.text);

    let nowhere = "e".repeat(40);
    server
        .get(&format!("/api/machines/{nowhere}/alerts"))
        .await
        .assert_error(404, "ResourceNotFound");
    server
        .get("/api/alerts/da000_1/machine")
        .await
        .assert_error(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------
// Permissions and device groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reading_and_changing_alerts_take_the_alert_permissions_and_their_machine_the_machine_one()
{
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let id = raise_on(&server, &m.id, "Permissions").await;
    let machine_reader = server
        .app_token("Machine reader", &[Permission::MachineReadAll])
        .await;
    let alert_reader = server
        .app_token("Alert reader", &[Permission::AlertReadAll])
        .await;
    let alert_writer = server
        .app_token("Alert writer", &[Permission::AlertReadWriteAll])
        .await;
    let alert_path = format!("/api/alerts/{id}");
    let machine_path = format!("/api/alerts/{id}/machine");
    let machine_alerts = format!("/api/machines/{}/alerts", m.id);
    let update = json!({"status": "InProgress"});
    let batch = json!({"alertIds": [id], "assignedTo": "x@contoso.com"});
    let reference = by_reference(&m.id, "By reference", Timestamp::now());

    let forbidden = |reply: Reply, what: &str| {
        let message = reply.assert_error(403, "Forbidden");
        assert!(message.contains("Alert."), "{what}: {message}");
    };
    forbidden(
        server.get_as(Some(&machine_reader), "/api/alerts").await,
        "list",
    );
    forbidden(
        server.get_as(Some(&machine_reader), &alert_path).await,
        "get",
    );
    forbidden(
        server.get_as(Some(&machine_reader), &machine_alerts).await,
        "machine's alerts",
    );
    let machine = server.get_as(Some(&machine_reader), &machine_path).await;
    assert_eq!(machine.status, 200, "{}", machine.text);
    assert_eq!(machine.json["id"], m.id.as_str());

    let listed = server.get_as(Some(&alert_reader), "/api/alerts").await;
    assert_eq!(listed.value_ids(), vec![id.clone()]);
    let one = server.get_as(Some(&alert_reader), &alert_path).await;
    assert_eq!(one.status, 200, "{}", one.text);
    let of_machine = server.get_as(Some(&alert_reader), &machine_alerts).await;
    assert_eq!(of_machine.status, 200, "{}", of_machine.text);
    let message = server
        .get_as(Some(&alert_reader), &machine_path)
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Machine.Read.All"), "{message}");
    let message = patch_as(&server, &alert_reader, &id, update.clone())
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Alert.ReadWrite.All"), "{message}");
    forbidden(
        server
            .post_as(&alert_reader, "/api/alerts/batchUpdate", batch.clone())
            .await,
        "batch",
    );
    forbidden(
        server
            .post_as(
                &alert_reader,
                "/api/alerts/CreateAlertByReference",
                reference.clone(),
            )
            .await,
        "by reference",
    );
    assert_eq!(get_alert(&server, &id).await["status"], "New");

    let reply = patch_as(&server, &alert_writer, &id, update).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "InProgress");
    let reply = server
        .post_as(&alert_writer, "/api/alerts/batchUpdate", batch)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = server
        .post_as(
            &alert_writer,
            "/api/alerts/CreateAlertByReference",
            reference,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    server
        .get_as(Some(&alert_writer), &machine_path)
        .await
        .assert_error(403, "Forbidden");
}

#[tokio::test]
async fn a_user_sees_and_changes_only_the_alerts_of_machines_in_their_device_groups() {
    let server = TestServer::start().await;
    server.put_group(7, "Finance").await;
    server.put_group(8, "Research").await;
    let mut seen = machine(OsPlatform::Windows11);
    seen.rbac_group_id = 7;
    let mut hidden = machine(OsPlatform::Windows11);
    hidden.rbac_group_id = 8;
    server.put_machines(&[seen.clone(), hidden.clone()]).await;
    let mine = raise_on(&server, &seen.id, "In Finance").await;
    let theirs = raise_on(&server, &hidden.id, "In Research").await;
    assert_eq!(get_alert(&server, &mine).await["rbacGroupName"], "Finance");

    let reader = server
        .user_token(
            "reader@contoso.example",
            &[Role::ViewData],
            Some(vec![7]),
            &[Permission::AlertRead],
        )
        .await;
    let listed = server.get_as(Some(&reader), "/api/alerts").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.value_ids(), vec![mine.clone()]);
    let counted = server
        .get_as(Some(&reader), "/api/alerts?$count=true")
        .await;
    assert_eq!(counted.json["@odata.count"], 1);
    let one = server
        .get_as(Some(&reader), &format!("/api/alerts/{mine}"))
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    server
        .get_as(Some(&reader), &format!("/api/alerts/{theirs}"))
        .await
        .assert_error(404, "ResourceNotFound");
    let filtered = server
        .get_as(
            Some(&reader),
            &format!("/api/alerts?$filter=machineId eq '{}'", hidden.id),
        )
        .await;
    assert_eq!(filtered.value_ids(), Vec::<String>::new());
    server
        .get_as(
            Some(&reader),
            &format!("/api/machines/{}/alerts", hidden.id),
        )
        .await
        .assert_error(404, "ResourceNotFound");
    // Reading takes View data; changing takes Alerts investigation.
    let message = patch_as(&server, &reader, &mine, json!({"status": "Resolved"}))
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Alert.ReadWrite"), "{message}");

    let viewer = server
        .user_token(
            "viewer@contoso.example",
            &[Role::ViewData],
            None,
            &[Permission::AlertReadWrite],
        )
        .await;
    let message = patch_as(&server, &viewer, &mine, json!({"status": "Resolved"}))
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Alerts investigation"), "{message}");
    assert_eq!(get_alert(&server, &mine).await["status"], "New");

    let investigator = server
        .user_token(
            "investigator@contoso.example",
            &[Role::ViewData, Role::AlertsInvestigation],
            Some(vec![7]),
            &[Permission::AlertReadWrite],
        )
        .await;
    let reply = patch_as(&server, &investigator, &mine, json!({"comment": "Mine"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["comments"][0]["createdBy"], "investigator@contoso.example",
        "a user's comment is theirs"
    );
    patch_as(
        &server,
        &investigator,
        &theirs,
        json!({"comment": "Not mine"}),
    )
    .await
    .assert_error(404, "ResourceNotFound");
    let both = json!({"alertIds": [mine, theirs], "status": "Resolved"});
    let message = server
        .post_as(&investigator, "/api/alerts/batchUpdate", both)
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains(&theirs), "{message}");
    assert_eq!(
        get_alert(&server, &mine).await["status"],
        "New",
        "none changed"
    );
    assert_eq!(get_alert(&server, &theirs).await["comments"], json!([]));
    let by_reference_hidden = server
        .post_as(
            &investigator,
            "/api/alerts/CreateAlertByReference",
            by_reference(&hidden.id, "Hidden", Timestamp::now()),
        )
        .await;
    by_reference_hidden.assert_error(404, "ResourceNotFound");
}

// ---------------------------------------------------------------------------
// Rate limits and the audit log
// ---------------------------------------------------------------------------

#[tokio::test]
async fn batch_update_is_limited_to_ten_calls_a_minute() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(RateLimits {
            per_minute: 100,
            per_hour: 1500,
        }),
        ..Options::default()
    })
    .await;
    let m = machine(OsPlatform::Windows11);
    server.put_machines(std::slice::from_ref(&m)).await;
    let id = raise_on(&server, &m.id, "Throttled").await;
    for n in 0..10 {
        let reply = server
            .post(
                "/api/alerts/batchUpdate",
                json!({"alertIds": [id], "assignedTo": format!("analyst{n}@contoso.com")}),
            )
            .await;
        assert_eq!(reply.status, 200, "call {n}: {}", reply.text);
    }
    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [id], "assignedTo": "eleventh@contoso.com"}),
        )
        .await;
    let message = reply.assert_error(429, "TooManyRequests");
    assert!(message.contains("10 calls a minute"), "{message}");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        get_alert(&server, &id).await["assignedTo"],
        "analyst9@contoso.com",
        "the throttled call changed nothing"
    );
    // The other alert operations keep the usual limit.
    patched(&server, &id, json!({"status": "InProgress"})).await;
    assert_eq!(server.get("/api/alerts").await.status, 200);
    server.clock.advance(61);
    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [id], "status": "Resolved"}),
        )
        .await;
    assert_eq!(reply.status, 200, "a minute later: {}", reply.text);
}

/// Makes a PATCH, a batch update and a CreateAlertByReference with the
/// harness's app, and a PATCH refused (403) to a reader; returns the app
/// entries of the audit log (newest first), the two alert ids, the machine
/// id and the request id of the PATCH.
async fn audited_alert_changes() -> (Vec<Value>, String, String, String, String) {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let a = raise_on(&server, &m.id, "Audited").await;
    let b = raise_on(&server, &m.id, "Audited too").await;
    let reply = server
        .patch(&format!("/api/alerts/{a}"), json!({"status": "Resolved"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let patch_request = reply.headers["request-id"].to_str().unwrap().to_string();
    let reply = server
        .post(
            "/api/alerts/batchUpdate",
            json!({"alertIds": [a, b], "assignedTo": "x@contoso.com"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = server
        .post(
            "/api/alerts/CreateAlertByReference",
            by_reference(&m.id, "Referenced", Timestamp::now()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reader = server
        .app_token("Reader", &[Permission::AlertReadAll])
        .await;
    patch_as(&server, &reader, &b, json!({"status": "Resolved"}))
        .await
        .assert_error(403, "Forbidden");
    get_alert(&server, &a).await;
    server.get("/api/alerts").await;

    let log = server.get("/api/auditlog").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let api: Vec<Value> = log.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actorType"] == "app")
        .cloned()
        .collect();
    (api, a, b, m.id, patch_request)
}

#[tokio::test]
async fn alert_changes_are_in_the_audit_log_with_the_alert_as_target() {
    let (api, a, b, machine_id, patch_request) = audited_alert_changes().await;
    let summary: Vec<(String, Value)> = api
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_string(),
                e["target"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("UpdateAlert".into(), json!(b)),
            ("CreateAlertByReference".into(), json!(machine_id)),
            ("BatchUpdateAlerts".into(), json!(format!("{a},{b}"))),
            ("UpdateAlert".into(), json!(a)),
        ],
        "newest first, no reads: {api:#?}"
    );
    assert_eq!(api[0]["actorName"], "Reader");
    assert_eq!(api[0]["result"], 403, "the refused PATCH");
    assert_eq!(api[3]["actorName"], "Test automation");
    assert_eq!(api[3]["requestId"], patch_request.as_str());
}

/// The entry an alert change writes in its own transaction records the
/// status the request answered (200), as the one of a refused call does
/// (written after its answer).
#[tokio::test]
async fn the_audit_entry_of_an_alert_change_records_the_status_answered() {
    let (api, ..) = audited_alert_changes().await;
    let results: Vec<(&str, &Value)> = api
        .iter()
        .map(|e| (e["operation"].as_str().unwrap(), &e["result"]))
        .collect();
    assert_eq!(
        results,
        vec![
            ("UpdateAlert", &json!(403)),
            ("CreateAlertByReference", &json!(200)),
            ("BatchUpdateAlerts", &json!(200)),
            ("UpdateAlert", &json!(200)),
        ],
        "each entry records the status answered"
    );
}

// ---------------------------------------------------------------------------
// Incremental polling
// ---------------------------------------------------------------------------

const PAGE: usize = 7;

/// What the poller saw of one page.
struct Poll {
    /// `(id, lastUpdateTime)`, in the order answered.
    seen: Vec<(String, String)>,
    pages: usize,
    next_links: usize,
}

/// `lastUpdateTime gt {after}` in ascending order, pages of [`PAGE`],
/// following every next link.
async fn poll(server: &TestServer, after: &str) -> Poll {
    let filter = encode(&format!("lastUpdateTime gt {after}"));
    let order = encode("lastUpdateTime asc");
    let mut url = server.url(&format!("/api/alerts?$filter={filter}&$orderby={order}"));
    let mut result = Poll {
        seen: Vec::new(),
        pages: 0,
        next_links: 0,
    };
    loop {
        let request = server
            .client
            .get(&url)
            .header("Prefer", format!("odata.maxpagesize={PAGE}"));
        let reply = server.send(request).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text);
        assert_eq!(
            reply.headers["preference-applied"],
            format!("odata.maxpagesize={PAGE}").as_str()
        );
        result.pages += 1;
        let value = reply.json["value"].as_array().unwrap();
        assert!(value.len() <= PAGE, "{} on a page", value.len());
        for alert in value {
            let at = alert["lastUpdateTime"].as_str().unwrap().to_string();
            result.seen.push((id_of(alert), at));
        }
        match reply.json["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                assert!(next.starts_with(&server.origin), "{next}");
                assert_eq!(value.len(), PAGE, "a next link after a full page only");
                result.next_links += 1;
                url = next.to_string();
            }
            None => break,
        }
    }
    result
}

/// A small deterministic generator (the writers need no real randomness).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_on_last_update_time_while_writers_change_alerts_sees_every_change_once() {
    const ALERTS: usize = 60;
    const WRITERS: usize = 3;
    const PATCHES: usize = 40;
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let server = Arc::new(server);
    let start = Timestamp::now().plus_seconds(-60).to_string();
    let mut ids = Vec::new();
    for n in 0..ALERTS {
        ids.push(raise_on(&server, &m.id, &format!("Polled {n}")).await);
    }
    let ids = Arc::new(ids);

    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (server, ids) = (server.clone(), ids.clone());
            tokio::spawn(async move {
                let mut random = Lcg(w as u64 + 1);
                for n in 0..PATCHES {
                    let id = &ids[random.below(ids.len())];
                    let body = if n % 2 == 0 {
                        json!({"assignedTo": format!("writer{w}-{n}@contoso.com")})
                    } else {
                        json!({"comment": format!("writer {w}, change {n}")})
                    };
                    let reply = server.patch(&format!("/api/alerts/{id}"), body).await;
                    assert_eq!(reply.status, 200, "{}", reply.text);
                }
            })
        })
        .collect();
    let reader = {
        let (server, done) = (server.clone(), done.clone());
        tokio::spawn(async move {
            let mut after = start;
            let mut seen: Vec<(String, String)> = Vec::new();
            let (mut polls, mut next_links) = (0, 0);
            loop {
                // Read before the poll: a poll begun after the writers
                // ended that finds nothing new is the last.
                let finished = done.load(Ordering::Acquire);
                let got = poll(&server, &after).await;
                polls += 1;
                next_links += got.next_links;
                if let Some((_, at)) = got.seen.last() {
                    after = at.clone();
                }
                let nothing_new = got.seen.is_empty();
                seen.extend(got.seen);
                if finished && nothing_new {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (seen, polls, next_links)
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let (seen, polls, next_links) = reader.await.unwrap();
    eprintln!(
        "{polls} polls, {next_links} next links, {} versions seen of {} made",
        seen.len(),
        ALERTS + WRITERS * PATCHES
    );
    assert!(polls >= 2, "{polls} polls");
    assert!(
        next_links >= ALERTS / PAGE,
        "the first poll alone pages through the {ALERTS} alerts: {next_links} next links"
    );

    let mut pairs = HashSet::new();
    for pair in &seen {
        assert!(pairs.insert(pair.clone()), "seen twice: {pair:?}");
    }
    for window in seen.windows(2) {
        let (a, b) = (
            Timestamp::parse(&window[0].1).unwrap(),
            Timestamp::parse(&window[1].1).unwrap(),
        );
        assert!(
            a < b,
            "lastUpdateTime must rise strictly: {:?} then {:?}",
            window[0],
            window[1]
        );
    }
    let mut missed = Vec::new();
    for id in ids.iter() {
        let current = get_alert(&server, id).await;
        let last = current["lastUpdateTime"].as_str().unwrap().to_string();
        if !pairs.contains(&(id.clone(), last.clone())) {
            missed.push((id.clone(), last));
        }
    }
    assert!(missed.is_empty(), "final versions never polled: {missed:?}");
    // Every version seen is one the alert had: at most the raise and each PATCH.
    assert!(
        seen.len() <= ALERTS + WRITERS * PATCHES,
        "{} versions seen",
        seen.len()
    );
    let distinct_ids: HashSet<&String> = seen.iter().map(|(id, _)| id).collect();
    assert_eq!(distinct_ids.len(), ALERTS);
}

#[tokio::test]
async fn a_skiptoken_resumes_after_the_last_alert_read_even_when_earlier_ones_change() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(raise_on(&server, &m.id, &format!("Paged {n}")).await);
    }
    let first = server
        .send(
            server
                .client
                .get(server.url("/api/alerts?$orderby=lastUpdateTime asc"))
                .header("Prefer", "odata.maxpagesize=2"),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.value_ids(), vec![ids[0].clone(), ids[1].clone()]);
    let next = first.json["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(next.contains("$skiptoken="), "{next}");
    // The first alert changes: it moves to the end, and an offset would
    // skip ids[2]; the token does not.
    patched(&server, &ids[0], json!({"assignedTo": "moved@contoso.com"})).await;
    let second = server
        .send(
            server
                .client
                .get(&next)
                .header("Prefer", "odata.maxpagesize=2"),
        )
        .await;
    assert_eq!(second.value_ids(), vec![ids[2].clone(), ids[3].clone()]);
    let next = second.json["@odata.nextLink"].as_str().unwrap().to_string();
    let third = server
        .send(
            server
                .client
                .get(&next)
                .header("Prefer", "odata.maxpagesize=2"),
        )
        .await;
    assert_eq!(third.value_ids(), vec![ids[4].clone(), ids[0].clone()]);
    assert!(
        third.json.get("@odata.nextLink").is_none(),
        "{}",
        third.text
    );

    // Not ordered by lastUpdateTime: next links page by $skip.
    let by_default = server
        .send(
            server
                .client
                .get(server.url("/api/alerts"))
                .header("Prefer", "odata.maxpagesize=3"),
        )
        .await;
    assert_eq!(by_default.value_ids().len(), 3);
    assert_eq!(
        by_default.headers["preference-applied"],
        "odata.maxpagesize=3"
    );
    let next = by_default.json["@odata.nextLink"].as_str().unwrap();
    assert!(next.contains("$skip=3"), "{next}");
    // A token this server did not give is refused.
    server
        .get("/api/alerts?$orderby=lastUpdateTime asc&$skiptoken=abc")
        .await
        .assert_error(400, "ODataError");
    server
        .get("/api/alerts?$skiptoken=123")
        .await
        .assert_error(400, "ODataError");
    // $top wins over the preference: no next link, no Preference-Applied.
    let topped = server
        .send(
            server
                .client
                .get(server.url("/api/alerts?$top=2"))
                .header("Prefer", "odata.maxpagesize=1"),
        )
        .await;
    assert_eq!(topped.value_ids().len(), 2);
    assert!(topped.headers.get("preference-applied").is_none());
}

// ---------------------------------------------------------------------------
// The control plane
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_control_plane_raises_an_alert_with_defaults_and_names_what_it_cannot_take() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = raise_reply(
        &server,
        json!({
            "machineId": m.id,
            "id": "mine",
            "aadTenantId": "not-the-tenant",
            "computerDnsName": "elsewhere",
            "evidence": [
                {"entityType": "File", "sha256": SHA256},
                {"entityType": "Ip", "ipAddress": "10.1.2.3",
                 "evidenceCreationTime": "2024-01-02T03:04:05Z"}
            ]
        }),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let alert = &reply.json;
    assert_eq!(
        alert["@odata.context"],
        format!("{}/api/$metadata#Alerts/$entity", server.origin)
    );
    assert_ne!(alert["id"], "mine", "the server gives the id");
    assert_eq!(alert["aadTenantId"], server.tenant_id.as_str());
    assert_eq!(alert["computerDnsName"], m.computer_dns_name.as_str());
    assert_eq!(alert["severity"], "Medium");
    assert_eq!(alert["status"], "New");
    assert_eq!(alert["category"], "SuspiciousActivity");
    assert_eq!(alert["detectionSource"], "WindowsDefenderAtp");
    assert_eq!(alert["investigationState"], "Queued");
    let created = &alert["alertCreationTime"];
    assert_eq!(
        alert["evidence"][0]["evidenceCreationTime"], *created,
        "defaulted to the raise"
    );
    assert_eq!(alert["evidence"][0]["sha256"], SHA256);
    assert_eq!(
        alert["evidence"][1]["evidenceCreationTime"],
        "2024-01-02T03:04:05Z"
    );
    assert_eq!(get_alert(&server, &id_of(alert)).await, *alert);

    let message = raise_reply(&server, json!({"machineId": m.id, "severity": "Severe"}))
        .await
        .assert_error(400, "InvalidRequestBody");
    assert!(message.contains("severity"), "{message}");
    let message = raise_reply(&server, json!({"machineId": m.id, "mitreTechniques": "T1"}))
        .await
        .assert_error(400, "InvalidRequestBody");
    assert!(message.contains("mitreTechniques"), "{message}");
    let message = raise_reply(&server, json!({"machineId": m.id, "colour": "red"}))
        .await
        .assert_error(400, "InvalidRequestBody");
    assert!(message.contains("colour"), "{message}");
    let message = raise_reply(&server, json!({"title": "No machine"}))
        .await
        .assert_error(400, "MissingRequiredParameter");
    assert!(message.contains("machineId"), "{message}");
    let nowhere = "d".repeat(40);
    raise_reply(&server, json!({"machineId": nowhere}))
        .await
        .assert_error(404, "ResourceNotFound");
    let operator = Some(server.operator_token.as_str());
    let unknown = raise_path("00000000-0000-0000-0000-00000000dead");
    control(
        &server,
        operator,
        Method::POST,
        &unknown,
        Some(json!({"machineId": m.id})),
    )
    .await
    .assert_error(404, "ResourceNotFound");
    let path = raise_path(&server.tenant_id);
    for token in [None, Some(server.token.as_str())] {
        control(
            &server,
            token,
            Method::POST,
            &path,
            Some(json!({"machineId": m.id})),
        )
        .await
        .assert_error(401, "Unauthorized");
    }
    assert_eq!(listed_ids(&server, "").await.len(), 1, "one alert raised");
}

#[tokio::test]
async fn a_reset_of_the_tenant_removes_its_alerts() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let id = raise_on(&server, &m.id, "Before the reset").await;
    assert_eq!(listed_ids(&server, "").await, vec![id.clone()]);
    let operator = Some(server.operator_token.as_str());
    let reset = format!("/tenants/{}/reset", server.tenant_id);
    let reply = control(&server, operator, Method::POST, &reset, None).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(listed_ids(&server, "").await, Vec::<String>::new());
    server
        .get(&format!("/api/alerts/{id}"))
        .await
        .assert_error(404, "ResourceNotFound");
    // The tenant goes on raising alerts afterwards.
    server.put_machines(std::slice::from_ref(&m)).await;
    let after = raise_on(&server, &m.id, "After the reset").await;
    assert_ne!(after, id);
    assert_eq!(listed_ids(&server, "").await, vec![after]);
}
