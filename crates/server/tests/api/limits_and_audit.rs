//! Rate limits (per API, per app or user, per tenant; minute and hour
//! windows) and the audit log of changes.

use crate::harness::*;
use palisade_contract::{OsPlatform, Permission};
use palisade_domain::rate_limit::RateLimits;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_parallel_calls_admits_exactly_100() {
    let server = Arc::new(
        TestServer::start_with(Options {
            rate_limits: Some(RateLimits::default()),
            ..Options::default()
        })
        .await,
    );
    let calls = (0..200).map(|_| {
        let server = server.clone();
        tokio::spawn(async move { server.get("/api/machines?$top=1").await })
    });
    let mut admitted = 0;
    let mut throttled = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let reply = call.await.unwrap();
        match reply.status.as_u16() {
            200 => admitted += 1,
            429 => throttled.push(reply),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(admitted, 100);
    assert_eq!(throttled.len(), 100);
    let reply = &throttled[0];
    let message = reply.assert_error(429, "TooManyRequests");
    assert!(message.contains("100 calls a minute"), "{message}");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // Counted per API: another endpoint is still open to the same app...
    assert_eq!(server.get("/api/machineactions").await.status, 200);
    // ...and per app: another app still gets through on the same endpoint.
    let other = server
        .app_token("Other app", &[Permission::MachineReadAll])
        .await;
    assert_eq!(
        server.get_as(Some(&other), "/api/machines").await.status,
        200
    );
    // Refused calls do not count: once the minute has passed, all 100 are back.
    server.clock.advance(61);
    assert_eq!(server.get("/api/machines").await.status, 200);
}

#[tokio::test]
async fn the_minute_and_the_hour_windows_slide_with_the_clock() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(RateLimits {
            per_minute: 10,
            per_hour: 25,
        }),
        ..Options::default()
    })
    .await;
    let calls = |n: usize| {
        let server = &server;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                statuses.push(server.get("/api/machines?$top=1").await.status.as_u16());
            }
            statuses
        }
    };
    assert_eq!(calls(10).await, vec![200; 10]);
    let minute = server.get("/api/machines").await;
    assert!(minute
        .assert_error(429, "TooManyRequests")
        .contains("a minute"));
    server.clock.advance(61);
    assert_eq!(calls(10).await, vec![200; 10]);
    server.clock.advance(61);
    assert_eq!(calls(5).await, vec![200; 5]);
    let hour = server.get("/api/machines").await;
    assert!(hour
        .assert_error(429, "TooManyRequests")
        .contains("25 calls an hour"));
    let retry: i64 = hour.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 3600 - 122, "until the first call leaves the hour");
    server.clock.advance(retry - 2);
    server
        .get("/api/machines")
        .await
        .assert_error(429, "TooManyRequests");
    server.clock.advance(3);
    assert_eq!(server.get("/api/machines").await.status, 200);
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_and_reads_are_not() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let reply = server
        .post(
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "audit me"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let isolate_request = reply.headers["request-id"].to_str().unwrap().to_string();
    server
        .post(
            "/api/machines/AddOrRemoveTagForMultipleMachines",
            json!({"Value": "t", "Action": "Add", "MachineIds": [m.id]}),
        )
        .await;
    server.get(&format!("/api/machines/{}", m.id)).await;
    let reader = server
        .app_token("Reader", &[Permission::MachineReadAll])
        .await;
    server
        .post_as(
            &reader,
            &format!("/api/machines/{}/offboard", m.id),
            json!({"Comment": "x"}),
        )
        .await
        .assert_error(403, "Forbidden");

    let log = server.get("/api/auditlog").await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert!(log.json["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("#AuditLog"));
    let entries = log.json["value"].as_array().unwrap();
    let api: Vec<_> = entries.iter().filter(|e| e["actorType"] == "app").collect();
    assert_eq!(
        api.len(),
        3,
        "two changes and one refused attempt, no reads: {entries:#?}"
    );
    // Newest first.
    assert_eq!(api[0]["operation"], "Offboard");
    assert_eq!(api[0]["result"], 403);
    assert_eq!(api[0]["actorName"], "Reader");
    assert_eq!(api[1]["operation"], "TagMachines");
    assert_eq!(api[1]["target"], m.id.as_str());
    assert_eq!(api[2]["operation"], "Isolate");
    assert_eq!(api[2]["target"], m.id.as_str());
    assert_eq!(api[2]["result"], 201);
    assert_eq!(api[2]["actorName"], "Test automation");
    assert_eq!(api[2]["requestId"], isolate_request.as_str());
    assert_eq!(api[2]["tenantId"], server.tenant_id.as_str());
    // Administration is audited too (the harness registered its apps).
    assert!(entries
        .iter()
        .any(|e| e["actorType"] == "cli" && e["operation"] == "apps put"));

    let page = server.get("/api/auditlog?$top=1&$skip=1").await;
    assert_eq!(page.json["value"][0]["id"], entries[1]["id"]);
    server
        .get("/api/auditlog?$filter=result eq 403")
        .await
        .assert_error(400, "ODataError");
    // Reading the audit log takes a user role beyond viewing.
    let viewer = server
        .user_token(
            "viewer@contoso.example",
            &[palisade_domain::Role::ViewData],
            None,
            &all_permissions(),
        )
        .await;
    server
        .get_as(Some(&viewer), "/api/auditlog")
        .await
        .assert_error(403, "Forbidden");
}

/// A change commits with its audit entry or not at all: while the audit
/// log refuses entries (a trigger, added from another connection), a tag
/// and an isolate fail, and the machine keeps its tags and gets no action.
#[tokio::test]
async fn a_change_whose_audit_entry_cannot_be_written_does_not_happen() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    crate::backend::refuse_audit_entries(&server.database).await;
    let tagged = server
        .post(
            &format!("/api/machines/{}/tags", m.id),
            json!({"Value": "unaudited", "Action": "Add"}),
        )
        .await;
    let isolated = server
        .post(
            &format!("/api/machines/{}/isolate", m.id),
            json!({"Comment": "unaudited", "IsolationType": "Full"}),
        )
        .await;
    for reply in [&tagged, &isolated] {
        assert!(
            [500, 503].contains(&reply.status.as_u16()),
            "{}: {}",
            reply.status,
            reply.text
        );
    }
    let machine = server.get(&format!("/api/machines/{}", m.id)).await;
    assert_eq!(machine.json["machineTags"], json!(m.machine_tags));
    let actions = server
        .get(&format!(
            "/api/machineactions?$filter=machineId eq '{}'",
            m.id
        ))
        .await;
    assert_eq!(actions.json["value"], json!([]), "{}", actions.text);
}

/// The audit log is filtered as every other read: a user limited to a device
/// group reads entries about machines of that group, and about no machine
/// (administration), but none about a machine it cannot see — nor about a
/// machine id that names none, so the log does not tell whether one exists.
#[tokio::test]
async fn a_user_limited_to_a_device_group_reads_only_audit_entries_about_its_machines() {
    let server = TestServer::start().await;
    server.put_group(7, "Finance").await;
    server.put_group(8, "Research").await;
    let mut seen = machine(OsPlatform::Windows11);
    seen.rbac_group_id = 7;
    let mut hidden = machine(OsPlatform::Windows11);
    hidden.rbac_group_id = 8;
    server.put_machines(&[seen.clone(), hidden.clone()]).await;

    let isolate = server
        .post(
            &format!("/api/machines/{}/isolate", hidden.id),
            json!({"Comment": "contain"}),
        )
        .await;
    assert_eq!(isolate.status, 201, "{}", isolate.text);
    let action_id = isolate.json["id"].as_str().unwrap();
    let tag = |id: &str| json!({"Value": "audited", "Action": "Add", "MachineIds": [id]});
    let bulk = "/api/machines/AddOrRemoveTagForMultipleMachines";
    assert_eq!(server.post(bulk, tag(&seen.id)).await.status, 200);
    let both = json!({"Value": "x", "Action": "Add", "MachineIds": [seen.id, hidden.id]});
    assert_eq!(server.post(bulk, both).await.status, 200);
    let cancel = server
        .post(
            &format!("/api/machineactions/{action_id}/cancel"),
            json!({"Comment": "no"}),
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    let tagged = server
        .post(
            &format!("/api/machines/{}/tags", seen.id.to_uppercase()),
            json!({"Value": "mine", "Action": "Add"}),
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.text);
    let nowhere = "f".repeat(40);
    server
        .post(
            &format!("/api/machines/{nowhere}/isolate"),
            json!({"Comment": "probe"}),
        )
        .await
        .assert_error(404, "ResourceNotFound");

    let auditor = server
        .user_token(
            "auditor@contoso.example",
            &[
                palisade_domain::Role::ViewData,
                palisade_domain::Role::ManageSecuritySettings,
            ],
            Some(vec![7]),
            &all_permissions(),
        )
        .await;
    server
        .get_as(Some(&auditor), &format!("/api/machines/{}", hidden.id))
        .await
        .assert_error(404, "ResourceNotFound");
    let log = server.get_as(Some(&auditor), "/api/auditlog").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entries = log.json["value"].as_array().unwrap();
    let api: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["actorType"] == "app")
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        api,
        vec![
            ("TagMachine", seen.id.to_uppercase().as_str()),
            ("TagMachines", seen.id.as_str())
        ],
        "{entries:#?}"
    );
    assert!(!log.text.contains(&hidden.id), "{}", log.text);
    assert!(!log.text.contains(action_id), "{}", log.text);
    assert!(entries
        .iter()
        .any(|e| e["actorType"] == "cli" && e["operation"] == "users put"));
    // Paging counts only what the caller sees.
    let page = server
        .get_as(Some(&auditor), "/api/auditlog?$top=1&$skip=1")
        .await;
    assert_eq!(
        page.json["value"][0]["id"], entries[1]["id"],
        "{}",
        page.text
    );
    // Applications see the whole tenant.
    let all = server.get("/api/auditlog").await;
    let operations: Vec<&str> = all.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actorType"] == "app")
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        vec![
            "Isolate",
            "TagMachine",
            "CancelAction",
            "TagMachines",
            "TagMachines",
            "Isolate"
        ]
    );
}

/// A name two machines share is audited as the machine the caller acted on,
/// the one it sees, not the tenant's most recently seen one.
#[tokio::test]
async fn a_change_by_a_shared_name_is_audited_as_the_machine_the_caller_sees() {
    let server = TestServer::start().await;
    server.put_group(7, "Finance").await;
    server.put_group(8, "Research").await;
    let name = "shared-pc.contoso.local";
    let mut mine = machine(OsPlatform::Windows11);
    mine.rbac_group_id = 7;
    mine.computer_dns_name = name.into();
    let mut theirs = machine(OsPlatform::Windows11);
    theirs.rbac_group_id = 8;
    theirs.computer_dns_name = name.into();
    theirs.last_seen = mine.last_seen.plus_seconds(30);
    server.put_machines(&[mine.clone(), theirs.clone()]).await;

    let finance = server
        .user_token(
            "finance@contoso.example",
            &[
                palisade_domain::Role::ViewData,
                palisade_domain::Role::ManageSecuritySettings,
            ],
            Some(vec![7]),
            &all_permissions(),
        )
        .await;
    let tagged = server
        .post_as(
            &finance,
            &format!("/api/machines/{name}/tags"),
            json!({"Value": "mine", "Action": "Add"}),
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.text);
    assert_eq!(tagged.json["id"], mine.id.as_str());

    let log = server.get_as(Some(&finance), "/api/auditlog").await;
    assert_eq!(log.status, 200, "{}", log.text);
    let own: Vec<&serde_json::Value> = log.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "TagMachine")
        .collect();
    assert_eq!(own.len(), 1, "{}", log.text);
    assert_eq!(own[0]["target"], name);
}

/// Audit entry ids are each tenant's own sequence: a tenant's log counts
/// from 1 without gaps however the tenants' writes interleave.
#[tokio::test]
async fn each_tenant_numbers_its_audit_entries_without_gaps() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let other = server
        .add_tenant("7b7b7b7b-0000-4000-8000-000000000003", "Fabrikam")
        .await;
    let mut theirs = machine(OsPlatform::Windows11);
    theirs.id = format!("{:040x}", u128::MAX);
    server
        .palisade
        .store()
        .put_machines(&other.id, std::slice::from_ref(&theirs))
        .await
        .unwrap();
    let token = server
        .app_token_in(&other.id, "Fabrikam app", &all_permissions())
        .await;
    for n in 0..5 {
        let body = json!({"Value": format!("t{n}"), "Action": "Add"});
        let ours = server
            .post(&format!("/api/machines/{}/tags", m.id), body.clone())
            .await;
        assert_eq!(ours.status, 200, "{}", ours.text);
        let reply = server
            .post_as(&token, &format!("/api/machines/{}/tags", theirs.id), body)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    for log in [
        server.get("/api/auditlog").await,
        server.get_as(Some(&token), "/api/auditlog").await,
    ] {
        assert_eq!(log.status, 200, "{}", log.text);
        let ids: Vec<i64> = log.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = (1..=ids.len() as i64).rev().collect();
        assert_eq!(ids, expected, "{}", log.text);
        assert!(ids.len() >= 6, "{ids:?}");
    }
}
