//! Indicators (`/api/indicators`): submitted (created, or updated in place by
//! type and value), validated with MDE's error codes, listed with OData and
//! without the expired, imported item by item, deleted one at a time or in
//! batches (all or none), seen and changed by their own app only under
//! Ti.ReadWrite, capped at 15,000 in force, and audited.

use crate::control_plane::control;
use crate::harness::*;
use palisade_contract::{Permission, Timestamp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const SHA1: &str = "220e7d15b011d7fac48f2bd61114db1022197f7f";
const SHA256: &str = "881c0f10c75e64ec39d257a131fcd531f47dd2cff2070ae94baa347d375126fd";

/// An app with `permissions`: its client id and a token.
async fn app(server: &TestServer, name: &str, permissions: &[Permission]) -> (String, String) {
    let (app, secret) = server
        .admin
        .put_app(&server.tenant_id, None, name, permissions)
        .await
        .unwrap();
    let token = server
        .client_credentials_token(&server.tenant_id, &app.client_id, &secret)
        .await;
    (app.client_id, token)
}

/// A submission with every required property.
fn indicator(value: &str, indicator_type: &str, action: &str) -> Value {
    json!({
        "indicatorValue": value,
        "indicatorType": indicator_type,
        "action": action,
        "title": format!("{indicator_type} {value}"),
        "description": "Submitted by a test"
    })
}

/// `POST /api/indicators` as the holder of `token`.
async fn submit_as(server: &TestServer, token: &str, body: Value) -> Reply {
    server.post_as(token, "/api/indicators", body).await
}

/// Submits `body` with the harness's token; it must be taken. Returns the indicator.
async fn submitted(server: &TestServer, body: Value) -> Value {
    let reply = server.post("/api/indicators", body.clone()).await;
    assert_eq!(reply.status, 200, "{body}: {}", reply.text);
    reply.json
}

fn id_of(indicator: &Value) -> String {
    indicator["id"]
        .as_str()
        .expect("an indicator id")
        .to_string()
}

#[track_caller]
fn timestamp(value: &Value) -> Timestamp {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    Timestamp::parse(text).unwrap_or_else(|| panic!("not a timestamp: {text}"))
}

/// The ids `GET /api/indicators{query}` lists, as the holder of `token`.
async fn listed_as(server: &TestServer, token: &str, query: &str) -> Vec<String> {
    let reply = server
        .get_as(Some(token), &format!("/api/indicators{query}"))
        .await;
    assert_eq!(reply.status, 200, "{query}: {}", reply.text);
    reply.value_ids()
}

async fn listed(server: &TestServer, query: &str) -> Vec<String> {
    listed_as(server, &server.token, query).await
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

async fn delete_as(server: &TestServer, token: &str, id: &str) -> Reply {
    let path = format!("/api/indicators/{id}");
    send_as(server, token, Method::DELETE, &path, None).await
}

async fn batch_delete_as(server: &TestServer, token: &str, ids: &[&str]) -> Reply {
    let body = json!({ "IndicatorIds": ids });
    server
        .post_as(token, "/api/indicators/BatchDelete", body)
        .await
}

fn import_context(server: &TestServer) -> String {
    format!(
        "{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)",
        server.origin
    )
}

// ---------------------------------------------------------------------------
// Submit
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_submission_creates_an_indicator_and_one_of_the_same_type_and_value_updates_it() {
    let server = TestServer::start().await;
    let (client_id, feed) = app(&server, "TI feed", &[Permission::TiReadWriteAll]).await;
    let before = Timestamp::now();
    let first = submit_as(
        &server,
        &feed,
        indicator(&SHA256.to_uppercase(), "FileSha256", "AlertAndBlock"),
    )
    .await;
    assert_eq!(first.status, 200, "created: 200, not 201: {}", first.text);
    let created = first.json;
    assert_eq!(
        created["@odata.context"],
        format!("{}/api/$metadata#Indicators/$entity", server.origin)
    );
    let id = id_of(&created);
    assert!(
        id.parse::<u64>().is_ok(),
        "a number, as a string: {}",
        created["id"]
    );
    assert_eq!(created["indicatorValue"], SHA256.to_uppercase());
    assert_eq!(created["indicatorType"], "FileSha256");
    assert_eq!(created["action"], "AlertAndBlock");
    assert_eq!(created["source"], "TI feed");
    assert_eq!(created["sourceType"], "AadApp");
    assert_eq!(created["createdBy"], client_id.as_str());
    assert_eq!(created["createdByDisplayName"], "TI feed");
    assert_eq!(created["severity"], "Informational", "the default");
    assert_eq!(created["generateAlert"], true, "AlertAndBlock alerts");
    assert_eq!(created["expirationTime"], Value::Null);
    assert_eq!(created["lastUpdatedBy"], Value::Null);
    assert_eq!(created["rbacGroupNames"], json!([]));
    assert_eq!(created["rbacGroupIds"], json!([]));
    let creation = timestamp(&created["creationTimeDateTimeUtc"]);
    assert!(creation >= before.plus_seconds(-1) && creation <= Timestamp::now());
    let first_update = timestamp(&created["lastUpdateTime"]);
    assert!(first_update >= creation);

    // The same type and value, in another case: the same indicator, updated.
    let (_, other) = app(&server, "Other feed", &[Permission::TiReadWriteAll]).await;
    let mut update = indicator(SHA256, "FileSha256", "Block");
    update["severity"] = json!("High");
    update["title"] = json!("Known bad");
    let second = submit_as(&server, &other, update).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let updated = second.json;
    assert_eq!(updated["id"], id.as_str(), "updated in place");
    assert_eq!(updated["severity"], "High");
    assert_eq!(updated["title"], "Known bad");
    assert_eq!(updated["action"], "Block");
    assert_eq!(
        updated["creationTimeDateTimeUtc"],
        created["creationTimeDateTimeUtc"]
    );
    assert_eq!(updated["lastUpdatedBy"], "Other feed");
    assert_eq!(updated["createdBy"], client_id.as_str(), "its maker kept");
    assert_eq!(updated["source"], "TI feed");
    assert!(timestamp(&updated["lastUpdateTime"]) >= first_update);

    let list = server.get("/api/indicators").await;
    assert_eq!(list.value_ids(), vec![id.clone()], "one indicator");
    let mut listed = list.json["value"][0].clone();
    let mut answered = updated.clone();
    answered.as_object_mut().unwrap().remove("@odata.context");
    listed.as_object_mut().unwrap().remove("@odata.context");
    assert_eq!(listed, answered, "listed as the update answered it");

    // Another type with the same text is another indicator.
    let thumbprint = submitted(&server, indicator(SHA1, "CertificateThumbprint", "Allowed")).await;
    let sha1 = submitted(&server, indicator(SHA1, "FileSha1", "Block")).await;
    assert_ne!(thumbprint["id"], sha1["id"]);
    assert_eq!(listed_count(&server).await, 3);
}

async fn listed_count(server: &TestServer) -> usize {
    listed(server, "").await.len()
}

#[tokio::test]
async fn submissions_mde_would_refuse_are_400_with_its_error_codes() {
    let server = TestServer::start().await;
    for property in [
        "indicatorValue",
        "indicatorType",
        "action",
        "title",
        "description",
    ] {
        let mut body = indicator("8.8.8.8", "IpAddress", "Block");
        body.as_object_mut().unwrap().remove(property);
        let message = server
            .post("/api/indicators", body)
            .await
            .assert_error(400, "MissingRequiredParameter");
        assert!(message.contains(property), "{property}: {message}");
    }
    // Body parameters are case-sensitive.
    let mut cased = indicator("8.8.8.8", "IpAddress", "Block");
    let value = cased
        .as_object_mut()
        .unwrap()
        .remove("indicatorValue")
        .unwrap();
    cased["IndicatorValue"] = value;
    server
        .post("/api/indicators", cased)
        .await
        .assert_error(400, "MissingRequiredParameter");

    let mut audit = indicator("8.8.4.4", "IpAddress", "Audit");
    server
        .post("/api/indicators", audit.clone())
        .await
        .assert_error(400, "InvalidInput");
    audit["generateAlert"] = json!(false);
    let message = server
        .post("/api/indicators", audit.clone())
        .await
        .assert_error(400, "InvalidInput");
    assert!(message.contains("generateAlert"), "{message}");
    audit["generateAlert"] = json!(true);
    assert_eq!(submitted(&server, audit).await["action"], "Audit");

    let refusals = [
        (indicator("abc", "FileSha1", "Block"), "InvalidHashValue"),
        (indicator(SHA256, "FileSha1", "Block"), "InvalidHashValue"),
        (indicator(SHA1, "FileSha256", "Block"), "InvalidHashValue"),
        (
            indicator(&"g".repeat(32), "FileMd5", "Block"),
            "InvalidHashValue",
        ),
        (
            indicator("10.0.0.0/8", "IpAddress", "Block"),
            "InvalidIpAddress",
        ),
        (
            indicator("10.0.0.1-10.0.0.9", "IpAddress", "Block"),
            "InvalidIpAddress",
        ),
        (
            indicator("2001:db8::1", "IpAddress", "Block"),
            "InvalidIpAddress",
        ),
        (
            indicator("256.1.1.1", "IpAddress", "Block"),
            "InvalidIpAddress",
        ),
        (
            indicator("not a domain", "DomainName", "Block"),
            "InvalidDomainName",
        ),
        (
            indicator("nodot", "DomainName", "Block"),
            "InvalidDomainName",
        ),
        (indicator("ftp://x.com", "Url", "Block"), "InvalidUrl"),
        (indicator("Hash", "Bogus", "Block"), "InvalidRequestBody"),
        (
            indicator("8.8.8.8", "IpAddress", "Quarantine"),
            "InvalidRequestBody",
        ),
    ];
    for (body, code) in refusals {
        let reply = server.post("/api/indicators", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        reply.assert_error(400, code);
    }
    let message = server
        .post("/api/indicators", indicator("abc", "FileSha1", "Block"))
        .await
        .assert_error(400, "InvalidHashValue");
    assert!(message.contains("abc"), "{message}");

    let ipv6 = submitted(
        &server,
        indicator("2001:4860:4860:0:0:0:0:8888", "IpAddress", "Block"),
    )
    .await;
    assert_eq!(ipv6["indicatorValue"], "2001:4860:4860:0:0:0:0:8888");
    submitted(&server, indicator("example.com", "DomainName", "Warn")).await;
    submitted(&server, indicator("https://x.com/block", "Url", "Block")).await;

    let mut past = indicator("1.1.1.1", "IpAddress", "Block");
    past["expirationTime"] = json!(Timestamp::now().plus_seconds(-60).to_string());
    server
        .post("/api/indicators", past)
        .await
        .assert_error(400, "InvalidInput");
    let mut bad_severity = indicator("1.1.1.1", "IpAddress", "Block");
    bad_severity["severity"] = json!("Critical");
    server
        .post("/api/indicators", bad_severity)
        .await
        .assert_error(400, "InvalidRequestBody");

    let mut unknown_group = indicator("9.9.9.9", "IpAddress", "Block");
    unknown_group["rbacGroupNames"] = json!(["Nowhere"]);
    let message = server
        .post("/api/indicators", unknown_group.clone())
        .await
        .assert_error(400, "InvalidInput");
    assert!(message.contains("Nowhere"), "{message}");
    server.put_group(4, "Finance").await;
    unknown_group["rbacGroupNames"] = json!(["Finance"]);
    let grouped = submitted(&server, unknown_group).await;
    assert_eq!(grouped["rbacGroupNames"], json!(["Finance"]));
    assert_eq!(grouped["rbacGroupIds"], json!(["4"]));

    assert_eq!(
        listed_count(&server).await,
        5,
        "only the accepted ones were made"
    );
}

// ---------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_list_filters_on_documented_properties_and_leaves_out_expired_indicators() {
    let mut server = TestServer::start().await;
    let (other_id, other) = app(&server, "Other feed", &[Permission::TiReadWriteAll]).await;
    let mut blocked = indicator(SHA1, "FileSha1", "Block");
    blocked["severity"] = json!("High");
    let blocked = id_of(&submitted(&server, blocked).await);
    let address = id_of(&submitted(&server, indicator("12.13.14.15", "IpAddress", "Alert")).await);
    let mut audited = indicator("contoso.example", "DomainName", "Audit");
    audited["generateAlert"] = json!(true);
    audited["severity"] = json!("Low");
    let audited = id_of(&submitted(&server, audited).await);
    let mut allowed = indicator("https://contoso.example/ok", "Url", "Allowed");
    allowed["generateAlert"] = json!(false);
    let reply = submit_as(&server, &other, allowed).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let allowed = id_of(&reply.json);
    let mut expiring = indicator(SHA256, "FileSha256", "Warn");
    expiring["expirationTime"] = json!(Timestamp::now().plus_seconds(3600).to_string());
    let expiring = id_of(&submitted(&server, expiring).await);

    let all = server.get("/api/indicators").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        all.json["@odata.context"],
        format!("{}/api/$metadata#Indicators", server.origin)
    );
    let every = vec![
        blocked.clone(),
        address.clone(),
        audited.clone(),
        allowed.clone(),
        expiring.clone(),
    ];
    assert_eq!(all.value_ids(), every, "in the order they were made");
    let v1 = server.get("/api/v1.0/Indicators").await;
    assert_eq!(v1.value_ids(), every);

    let set = |ids: &[&String]| ids.iter().map(|id| id.to_string()).collect::<BTreeSet<_>>();
    let cases = vec![
        ("indicatorType eq 'IpAddress'".to_string(), set(&[&address])),
        ("action eq 'Block'".to_string(), set(&[&blocked])),
        ("action eq 'AlertAndBlock'".to_string(), set(&[])),
        (
            "indicatorValue eq '12.13.14.15'".to_string(),
            set(&[&address]),
        ),
        ("severity eq 'High'".to_string(), set(&[&blocked])),
        ("severity eq 'Informational'".to_string(), {
            set(&[&address, &allowed, &expiring])
        }),
        (
            "generateAlert eq true".to_string(),
            set(&[&address, &audited]),
        ),
        (
            "generateAlert eq false".to_string(),
            set(&[&blocked, &allowed, &expiring]),
        ),
        (format!("createdBy eq '{other_id}'"), set(&[&allowed])),
        (
            "title eq 'IpAddress 12.13.14.15'".to_string(),
            set(&[&address]),
        ),
        (
            "indicatorType eq 'FileSha1' or indicatorType eq 'Url'".to_string(),
            set(&[&blocked, &allowed]),
        ),
    ];
    for (filter, expected) in cases {
        let got: BTreeSet<String> = listed(&server, &format!("?$filter={filter}"))
            .await
            .into_iter()
            .collect();
        assert_eq!(got, expected, "$filter={filter}");
    }
    assert_eq!(
        listed(&server, "?$top=2&$skip=1").await,
        vec![address.clone(), audited.clone()]
    );
    let counted = server.get("/api/indicators?$count=true&$top=1").await;
    assert_eq!(counted.json["@odata.count"], 5, "{}", counted.text);
    let selected = server
        .get("/api/indicators?$select=id,action&$filter=action eq 'Warn'")
        .await;
    assert_eq!(
        selected.json["value"],
        json!([{"id": expiring, "action": "Warn"}])
    );
    for refused in [
        "?$filter=description eq 'x'",
        "?$filter=recommendedActions eq 'x'",
        "?$filter=source eq 'x'",
        "?$expand=evidence",
    ] {
        server
            .get(&format!("/api/indicators{refused}"))
            .await
            .assert_error(400, "ODataError");
    }

    // Two hours on, the indicator that expired after one is no longer listed.
    let operator = Some(server.operator_token.as_str());
    let clock = format!("/tenants/{}/clock", server.tenant_id);
    let advanced = control(
        &server,
        operator,
        Method::PUT,
        &clock,
        Some(json!({"advance": "PT2H"})),
    )
    .await;
    assert_eq!(advanced.status, 200, "{}", advanced.text);
    server
        .get("/api/indicators")
        .await
        .assert_error(401, "Unauthorized");
    server.renew_token().await;
    assert_eq!(
        listed(&server, "").await,
        vec![blocked, address, audited, allowed],
        "the expired one is gone"
    );
    assert_eq!(
        listed(&server, "?$filter=action eq 'Warn'").await,
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_import_answers_one_result_per_item_in_order_and_takes_the_good_ones() {
    let server = TestServer::start().await;
    let mut renamed = indicator("8.8.8.8", "IpAddress", "Alert");
    renamed["title"] = json!("Renamed in the same import");
    let items = json!([
        indicator(SHA1, "FileSha1", "Alert"),
        indicator("zz", "FileSha1", "Alert"),
        "not an indicator",
        {"indicatorValue": "1.2.3.4", "indicatorType": 5, "action": "Block",
         "title": "t", "description": "d"},
        indicator("8.8.8.8", "IpAddress", "Alert"),
        {"indicatorValue": "4.4.4.4", "indicatorType": "IpAddress", "action": "Block",
         "description": "no title"},
        renamed,
    ]);
    let reply = server
        .post("/api/indicators/import", json!({ "Indicators": items }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["@odata.context"], import_context(&server));
    let results = reply.json["value"].as_array().unwrap();
    assert_eq!(results.len(), 7, "one result per item: {}", reply.text);
    let ok = |result: &Value| {
        assert_eq!(result["isFailed"], false, "{result}");
        assert_eq!(result["failureReason"], Value::Null, "{result}");
        result["id"].as_str().unwrap().to_string()
    };
    let failed = |result: &Value| {
        assert_eq!(result["isFailed"], true, "{result}");
        assert_eq!(result["id"], Value::Null, "{result}");
        result["failureReason"].as_str().unwrap().to_string()
    };
    let first = ok(&results[0]);
    assert_eq!(results[0]["indicator"], SHA1);
    assert!(failed(&results[1]).contains("zz"), "{}", results[1]);
    assert_eq!(results[1]["indicator"], "zz");
    failed(&results[2]);
    assert_eq!(results[2]["indicator"], Value::Null);
    failed(&results[3]);
    assert_eq!(results[3]["indicator"], "1.2.3.4");
    let address = ok(&results[4]);
    assert!(failed(&results[5]).contains("title"), "{}", results[5]);
    assert_eq!(ok(&results[6]), address, "named twice: updated twice");
    assert_eq!(
        results[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<BTreeSet<_>>(),
        ["failureReason", "id", "indicator", "isFailed"]
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<BTreeSet<_>>()
    );

    let all = server.get("/api/indicators").await;
    assert_eq!(all.value_ids(), vec![first.clone(), address.clone()]);
    assert_eq!(
        all.json["value"][1]["title"], "Renamed in the same import",
        "saved as it ended"
    );

    // Importing the same value again updates it.
    let mut again = indicator(&SHA1.to_uppercase(), "FileSha1", "Block");
    again["severity"] = json!("Medium");
    let reply = server
        .post("/api/indicators/import", json!({"Indicators": [again]}))
        .await;
    assert_eq!(
        reply.json["value"][0]["id"],
        first.as_str(),
        "{}",
        reply.text
    );
    assert_eq!(
        listed(&server, "?$filter=severity eq 'Medium'").await,
        vec![first]
    );

    // Refused whole.
    let too_many: Vec<Value> = (0..501)
        .map(|n| indicator(&format!("{n:040x}"), "FileSha1", "Alert"))
        .collect();
    let message = server
        .post("/api/indicators/import", json!({ "Indicators": too_many }))
        .await
        .assert_error(400, "MaximumBatchSizeExceeded");
    assert!(message.contains("501"), "{message}");
    for body in [
        json!({}),
        json!({"indicators": [indicator("5.5.5.5", "IpAddress", "Block")]}),
    ] {
        let message = server
            .post("/api/indicators/import", body)
            .await
            .assert_error(400, "MissingRequiredParameter");
        assert!(message.contains("Indicators"), "{message}");
    }
    server
        .post("/api/indicators/import", json!({"Indicators": []}))
        .await
        .assert_error(400, "InvalidRequestBody");
    server
        .post("/api/indicators/import", json!({"Indicators": "x"}))
        .await
        .assert_error(400, "InvalidRequestBody");
    assert_eq!(listed_count(&server).await, 2, "nothing refused was made");
}

// ---------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_one_or_a_batch_removes_them_all_or_none() {
    let server = TestServer::start().await;
    let token = server.token.clone();
    let mut ids = Vec::new();
    for value in ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"] {
        ids.push(id_of(
            &submitted(&server, indicator(value, "IpAddress", "Block")).await,
        ));
    }
    let reply = delete_as(&server, &token, &ids[0]).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.text, "");
    let message = delete_as(&server, &token, &ids[0])
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains(&ids[0]), "{message}");
    delete_as(&server, &token, "abc")
        .await
        .assert_error(404, "ResourceNotFound");
    delete_as(&server, &token, "999999")
        .await
        .assert_error(404, "ResourceNotFound");
    assert_eq!(listed(&server, "").await, ids[1..].to_vec());

    // One unknown: 404 naming it, none deleted.
    let message = batch_delete_as(&server, &token, &[&ids[1], "999999"])
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(message.contains("999999"), "{message}");
    let message = batch_delete_as(&server, &token, &[&ids[1], &ids[0]])
        .await
        .assert_error(404, "ResourceNotFound");
    assert!(
        message.contains(&ids[0]),
        "an already deleted one: {message}"
    );
    batch_delete_as(&server, &token, &[&ids[1], "x"])
        .await
        .assert_error(400, "InvalidInput");
    assert_eq!(listed(&server, "").await, ids[1..].to_vec());

    let reply = batch_delete_as(&server, &token, &[&ids[1], &ids[2]]).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(listed(&server, "").await, vec![ids[3].clone()]);

    batch_delete_as(&server, &token, &[])
        .await
        .assert_error(400, "InvalidRequestBody");
    let too_many: Vec<String> = (0..501).map(|_| ids[3].clone()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let message = batch_delete_as(&server, &token, &too_many)
        .await
        .assert_error(400, "MaximumBatchSizeExceeded");
    assert!(message.contains("501"), "{message}");
    for body in [json!({}), json!({"indicatorIds": [ids[3]]})] {
        let message = server
            .post("/api/indicators/BatchDelete", body)
            .await
            .assert_error(400, "MissingRequiredParameter");
        assert!(message.contains("IndicatorIds"), "{message}");
    }
    assert_eq!(listed(&server, "").await, vec![ids[3].clone()]);
    // The path as documented, and in another case.
    let reply = server
        .post(
            "/api/indicators/batchdelete",
            json!({"IndicatorIds": [ids[3]]}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(listed(&server, "").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Ownership and permissions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_app_with_ti_read_write_alone_sees_and_changes_only_its_own_indicators() {
    let server = TestServer::start().await;
    let (_, mine) = app(&server, "Own feed", &[Permission::TiReadWrite]).await;
    let (_, theirs) = app(&server, "Their feed", &[Permission::TiReadWrite]).await;
    let (_, all) = app(&server, "All feeds", &[Permission::TiReadWriteAll]).await;
    let (_, alerts) = app(&server, "Alert reader", &[Permission::AlertReadAll]).await;

    let reply = submit_as(&server, &mine, indicator("1.1.1.1", "IpAddress", "Block")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let own = id_of(&reply.json);
    let reply = submit_as(&server, &theirs, indicator("2.2.2.2", "IpAddress", "Block")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let other = id_of(&reply.json);

    assert_eq!(listed_as(&server, &mine, "").await, vec![own.clone()]);
    assert_eq!(listed_as(&server, &theirs, "").await, vec![other.clone()]);
    assert_eq!(
        listed_as(&server, &all, "").await,
        vec![own.clone(), other.clone()]
    );

    // Not its own: not found to delete, forbidden to update.
    delete_as(&server, &mine, &other)
        .await
        .assert_error(404, "ResourceNotFound");
    batch_delete_as(&server, &mine, &[&own, &other])
        .await
        .assert_error(404, "ResourceNotFound");
    let mut takeover = indicator("2.2.2.2", "IpAddress", "Allowed");
    takeover["title"] = json!("Taken over");
    let message = submit_as(&server, &mine, takeover.clone())
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Ti.ReadWrite.All"), "{message}");
    let reply = server
        .post_as(
            &mine,
            "/api/indicators/import",
            json!({"Indicators": [takeover, indicator("3.3.3.3", "IpAddress", "Block")]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"][0]["isFailed"], true, "{}", reply.text);
    assert!(reply.json["value"][0]["failureReason"]
        .as_str()
        .unwrap()
        .contains("Ti.ReadWrite.All"));
    assert_eq!(reply.json["value"][1]["isFailed"], false, "{}", reply.text);
    let third = reply.json["value"][1]["id"].as_str().unwrap().to_string();
    let untouched = server
        .get_as(
            Some(&all),
            "/api/indicators?$filter=indicatorValue eq '2.2.2.2'",
        )
        .await;
    assert_eq!(untouched.json["value"][0]["title"], "IpAddress 2.2.2.2");
    assert_eq!(untouched.json["value"][0]["action"], "Block");
    assert_eq!(
        listed_as(&server, &all, "").await,
        vec![own.clone(), other.clone(), third.clone()],
        "none deleted by the refused batch"
    );

    // Its own it updates and deletes.
    let mut renamed = indicator("1.1.1.1", "IpAddress", "Block");
    renamed["title"] = json!("Renamed by its maker");
    let reply = submit_as(&server, &mine, renamed).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], own.as_str());
    let reply = delete_as(&server, &mine, &third).await;
    assert_eq!(reply.status, 204, "{}", reply.text);

    // Ti.ReadWrite.All changes and deletes any.
    let mut updated = indicator("2.2.2.2", "IpAddress", "Warn");
    updated["title"] = json!("Updated by the admin feed");
    let reply = submit_as(&server, &all, updated).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["id"], other.as_str());
    assert_eq!(reply.json["lastUpdatedBy"], "All feeds");
    let reply = delete_as(&server, &all, &own).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = batch_delete_as(&server, &all, &[&other]).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(listed_as(&server, &all, "").await, Vec::<String>::new());

    // Alert permissions do not open indicators.
    for reply in [
        server.get_as(Some(&alerts), "/api/indicators").await,
        submit_as(&server, &alerts, indicator("4.4.4.4", "IpAddress", "Block")).await,
        server
            .post_as(
                &alerts,
                "/api/indicators/import",
                json!({"Indicators": [indicator("4.4.4.4", "IpAddress", "Block")]}),
            )
            .await,
        delete_as(&server, &alerts, "1").await,
        batch_delete_as(&server, &alerts, &["1"]).await,
    ] {
        let message = reply.assert_error(403, "Forbidden");
        assert!(message.contains("Ti.ReadWrite"), "{message}");
    }
}

// ---------------------------------------------------------------------------
// The cap and the audit log
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_tenant_holds_15000_indicators_in_force_and_refuses_a_new_one_past_that() {
    let server = TestServer::start().await;
    let started = std::time::Instant::now();
    for call in 0..30u64 {
        let items: Vec<Value> = (0..500u64)
            .map(|n| {
                let value = format!("{:064x}", call * 500 + n + 1);
                json!({"indicatorValue": value, "indicatorType": "FileSha256",
                       "action": "Block", "title": "Bulk", "description": "Filling the tenant"})
            })
            .collect();
        let reply = server
            .post("/api/indicators/import", json!({ "Indicators": items }))
            .await;
        assert_eq!(reply.status, 200, "call {call}: {}", reply.text);
        let failed = reply.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["isFailed"] == true)
            .count();
        assert_eq!(failed, 0, "call {call}: {}", &reply.text[..500]);
    }
    eprintln!(
        "15,000 indicators imported in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let counted = server.get("/api/indicators?$count=true&$top=1").await;
    assert_eq!(counted.json["@odata.count"], 15_000, "{}", counted.text);

    let message = server
        .post(
            "/api/indicators",
            indicator("7.7.7.7", "IpAddress", "Block"),
        )
        .await
        .assert_error(400, "BadRequest");
    assert!(message.contains("15000"), "{message}");
    let reply = server
        .post(
            "/api/indicators/import",
            json!({"Indicators": [indicator("7.7.7.7", "IpAddress", "Block")]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"][0]["isFailed"], true, "{}", reply.text);

    // An update of one in force is no new indicator.
    let first = format!("{:064x}", 1);
    let mut update = indicator(&first, "FileSha256", "AlertAndBlock");
    update["severity"] = json!("High");
    let updated = submitted(&server, update).await;
    assert_eq!(updated["severity"], "High");

    // One deleted makes room for one.
    let reply = server
        .send(
            server
                .client
                .delete(server.url(&format!("/api/indicators/{}", id_of(&updated)))),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    submitted(&server, indicator("7.7.7.7", "IpAddress", "Block")).await;
    server
        .post(
            "/api/indicators",
            indicator("7.7.7.8", "IpAddress", "Block"),
        )
        .await
        .assert_error(400, "BadRequest");
}

/// Submits two indicators, imports one, deletes it, batch-deletes the
/// two; returns the app entries of the audit log (newest first), the ids
/// of the two and of the imported one.
async fn audited_indicator_changes() -> (Vec<Value>, String, String, String) {
    let server = TestServer::start().await;
    let a = id_of(&submitted(&server, indicator("1.1.1.1", "IpAddress", "Block")).await);
    let b = id_of(&submitted(&server, indicator("2.2.2.2", "IpAddress", "Block")).await);
    let reply = server
        .post(
            "/api/indicators/import",
            json!({"Indicators": [indicator("3.3.3.3", "IpAddress", "Block")]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let c = reply.json["value"][0]["id"].as_str().unwrap().to_string();
    let reply = server
        .send(
            server
                .client
                .delete(server.url(&format!("/api/indicators/{c}"))),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let reply = server
        .post(
            "/api/indicators/BatchDelete",
            json!({"IndicatorIds": [a, b]}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    server.get("/api/indicators").await;

    let log = server.get("/api/auditlog").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let api: Vec<Value> = log.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actorType"] == "app")
        .cloned()
        .collect();
    (api, a, b, c)
}

#[tokio::test]
async fn indicator_changes_are_in_the_audit_log() {
    let (api, a, b, c) = audited_indicator_changes().await;
    let operations: Vec<&str> = api
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        vec![
            "BatchDeleteIndicators",
            "DeleteIndicator",
            "ImportIndicators",
            "SubmitIndicator",
            "SubmitIndicator"
        ],
        "newest first, no reads: {api:#?}"
    );
    assert_eq!(api[0]["target"], format!("{a},{b}"));
    assert_eq!(api[1]["target"], c.as_str());
    assert!(api.iter().all(|e| e["actorName"] == "Test automation"));
}

/// The entries indicator writes make in their own transaction record the
/// status answered: 200 (submit, import), 204 (delete, batch delete).
#[tokio::test]
async fn the_audit_entry_of_an_indicator_change_records_the_status_answered() {
    let (api, ..) = audited_indicator_changes().await;
    let results: Vec<(&str, &Value)> = api
        .iter()
        .map(|e| (e["operation"].as_str().unwrap(), &e["result"]))
        .collect();
    assert_eq!(
        results,
        vec![
            ("BatchDeleteIndicators", &json!(204)),
            ("DeleteIndicator", &json!(204)),
            ("ImportIndicators", &json!(200)),
            ("SubmitIndicator", &json!(200)),
            ("SubmitIndicator", &json!(200)),
        ],
        "each entry records the status answered"
    );
}

/// A submission's entry names the indicator's value as its target, whether
/// it was taken (written with the change) or refused (after the answer).
#[tokio::test]
async fn the_audit_entry_of_a_submission_names_the_indicator_value() {
    let (api, ..) = audited_indicator_changes().await;
    let submissions: Vec<&Value> = api
        .iter()
        .filter(|e| e["operation"] == "SubmitIndicator")
        .map(|e| &e["target"])
        .collect();
    assert_eq!(
        submissions,
        vec![&json!("2.2.2.2"), &json!("1.1.1.1")],
        "a submission's entry names its value"
    );
}
