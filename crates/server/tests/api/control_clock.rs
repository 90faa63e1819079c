//! The tenant's clock (`/_palisade/v1/tenants/{t}/clock`): frozen, running,
//! advanced; and what reads it, seen at the next read after a change.

use crate::control_plane::{act, add_rule, control, poll};
use crate::harness::*;
use palisade_contract::{OsPlatform, Timestamp};
use reqwest::Method;
use serde_json::{json, Value};

fn clock_path(tenant_id: &str) -> String {
    format!("/tenants/{tenant_id}/clock")
}

async fn set_clock(server: &TestServer, change: Value) -> Reply {
    let operator = Some(server.operator_token.as_str());
    let path = clock_path(&server.tenant_id);
    control(server, operator, Method::PUT, &path, Some(change)).await
}

async fn clock(server: &TestServer, tenant_id: &str) -> Value {
    let operator = Some(server.operator_token.as_str());
    let reply = control(server, operator, Method::GET, &clock_path(tenant_id), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

fn reading(clock: &Value) -> Timestamp {
    Timestamp::parse(clock["now"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_frozen_clock_stands_still_runs_on_from_its_reading_and_never_goes_back() {
    let (mut server, m) = server_with(OsPlatform::Windows11).await;
    let fresh = clock(&server, &server.tenant_id).await;
    assert_eq!(fresh["mode"], "running");
    assert_eq!(fresh["offset"], "PT0S");

    // A day ahead, to the second (within the machine's retention).
    let ticks_per_day = 86_400 * 10_000_000;
    let day = Timestamp::from_ticks(Timestamp::now().ticks() / ticks_per_day * ticks_per_day)
        .plus_seconds(2 * 86_400);
    let at = |days: i64| day.plus_seconds(days * 86_400).to_string();
    let frozen = set_clock(&server, json!({"mode": "frozen", "now": at(0)})).await;
    assert_eq!(frozen.status, 200, "{}", frozen.text);
    assert_eq!(frozen.json["mode"], "frozen");
    assert_eq!(frozen.json["now"], at(0));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(clock(&server, &server.tenant_id).await["now"], at(0));
    // The token expired years ago on this clock; a new one is issued at its time.
    server
        .get("/api/machines")
        .await
        .assert_error(401, "Unauthorized");
    server.renew_token().await;
    // What changes is stamped with the tenant's time.
    let action = act(&server, &m.id, "isolate").await;
    assert_eq!(action["creationDateTimeUtc"], at(0));

    let advanced = set_clock(&server, json!({"advance": "PT72H"})).await;
    assert_eq!(advanced.json["now"], at(3), "{}", advanced.text);
    let running = set_clock(&server, json!({"mode": "running"})).await;
    assert_eq!(running.json["mode"], "running", "{}", running.text);
    let later = clock(&server, &server.tenant_id).await;
    assert!(reading(&later) >= Timestamp::parse(&at(3)).unwrap());
    assert!(
        later["offset"].as_str().unwrap().starts_with('P'),
        "{later}"
    );

    let back = set_clock(&server, json!({"mode": "frozen", "now": at(1)})).await;
    let message = back.assert_error(400, "InvalidInput");
    assert!(
        message.contains("now") && message.contains("backwards"),
        "{message}"
    );
    for (bad, field) in [
        (json!({}), "mode"),
        (json!({"advance": "-PT1S"}), "advance"),
        (json!({"advance": "P1M"}), "advance"),
        (json!({"mode": "running", "now": at(9)}), "now"),
        (json!({"mode": "paused"}), "mode"),
        (json!({"mod": "frozen"}), "mod"),
    ] {
        let reply = set_clock(&server, bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        // A body that does not read is InvalidRequestBody, one that reads but asks the impossible InvalidInput.
        let code = reply.json["error"]["code"].as_str().unwrap();
        assert!(
            ["InvalidInput", "InvalidRequestBody"].contains(&code),
            "{}",
            reply.text
        );
        let message = reply.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message}");
    }
    // Nothing refused moved it.
    assert!(reading(&clock(&server, &server.tenant_id).await) < Timestamp::parse(&at(4)).unwrap());

    let unknown = clock_path("00000000-0000-0000-0000-00000000dead");
    let operator = Some(server.operator_token.as_str());
    for (method, body) in [
        (Method::GET, None),
        (Method::PUT, Some(json!({"advance": "PT1S"}))),
    ] {
        control(&server, operator, method, &unknown, body)
            .await
            .assert_error(404, "ResourceNotFound");
    }
    let mde = server
        .client
        .get(server.url(&format!("/_palisade/v1{}", clock_path(&server.tenant_id))));
    server.send(mde).await.assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn after_an_advance_the_next_read_sees_time_outs_retention_and_expired_tokens() {
    let (server, m) = server_with(OsPlatform::Windows11).await;
    let mut aging = machine(OsPlatform::Linux);
    aging.last_seen = Timestamp::now().minus_days(179);
    server.put_machines(std::slice::from_ref(&aging)).await;
    // No rule and no device: the isolate waits, as for a device.
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(poll(&server, &id).await["status"], "Pending");
    assert_eq!(
        server
            .get(&format!("/api/machines/{}", aging.id))
            .await
            .status,
        200
    );

    let moved = set_clock(&server, json!({"advance": "P3DT1M"})).await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    // The token was issued an hour's life at the old time: refused now.
    let refused = server.get("/api/machines").await;
    let message = refused.assert_error(401, "Unauthorized");
    assert!(message.to_lowercase().contains("expired"), "{message}");

    // A token issued now carries the tenant's time and passes.
    let token = server
        .app_token("After the advance", &all_permissions())
        .await;
    let claims = jwt_claims(&token);
    let tenant_now = reading(&clock(&server, &server.tenant_id).await).unix_seconds();
    assert!(
        (claims["iat"].as_i64().unwrap() - tenant_now).abs() < 60,
        "{claims}"
    );
    let action = server
        .get_as(Some(&token), &format!("/api/machineactions/{id}"))
        .await;
    assert_eq!(action.status, 200, "{}", action.text);
    assert_eq!(action.json["status"], "TimeOut", "{}", action.text);
    // 179 days old plus 3: past the tenant's 180-day retention.
    let gone = server
        .get_as(Some(&token), &format!("/api/machines/{}", aging.id))
        .await;
    gone.assert_error(404, "ResourceNotFound");
    let still = server
        .get_as(Some(&token), &format!("/api/machines/{}", m.id))
        .await;
    assert_eq!(still.status, 200, "{}", still.text);
    // A machine without a device keeps its lastSeen: it ages, it is not refreshed.
    assert_eq!(
        Timestamp::parse(still.json["lastSeen"].as_str().unwrap()).unwrap(),
        m.last_seen
    );
}

#[tokio::test]
async fn an_outcome_step_held_for_a_duration_ends_when_the_clock_is_advanced_past_it() {
    let (mut server, m) = server_with(OsPlatform::Windows11).await;
    set_clock(&server, json!({"mode": "frozen"})).await;
    add_rule(
        &server,
        json!({"script": [{"status": "InProgress", "duration": "PT1H"}, {"status": "Succeeded"}]}),
    )
    .await;
    let id = act(&server, &m.id, "isolate").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The clock stands still: an hour never passes by itself.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(poll(&server, &id).await["status"], "InProgress");
    set_clock(&server, json!({"advance": "PT59M"})).await;
    assert_eq!(poll(&server, &id).await["status"], "InProgress");
    set_clock(&server, json!({"advance": "PT1M"})).await;
    server.renew_token().await;
    let done = poll(&server, &id).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    // Stamped at the tenant's time: an hour after the action began.
    let began = Timestamp::parse(done["creationDateTimeUtc"].as_str().unwrap()).unwrap();
    let ended = Timestamp::parse(done["lastUpdateDateTimeUtc"].as_str().unwrap()).unwrap();
    assert!(ended >= began.plus_seconds(3600), "{done}");
}

#[tokio::test]
async fn a_tenant_clock_moves_that_tenant_only() {
    let server = TestServer::start().await;
    let other = server
        .add_tenant("7b7b7b7b-0000-4000-8000-0000000000c1", "Fabrikam")
        .await;
    set_clock(&server, json!({"advance": "P10D"})).await;
    let theirs = clock(&server, &other.id).await;
    assert_eq!(theirs["mode"], "running");
    assert_eq!(theirs["offset"], "PT0S");
    let ours = clock(&server, &server.tenant_id).await;
    assert!(
        reading(&ours) > reading(&theirs).plus_seconds(9 * 86_400),
        "{ours} {theirs}"
    );
    // The other tenant's token is not touched by our clock.
    let token = server
        .app_token_in(&other.id, "Fabrikam app", &all_permissions())
        .await;
    let reply = server.get_as(Some(&token), "/api/machines").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn rate_limit_windows_follow_the_tenant_clock() {
    let server = TestServer::start_with(Options {
        rate_limits: Some(palisade_domain::rate_limit::RateLimits {
            per_minute: 2,
            per_hour: 100,
        }),
        ..Options::default()
    })
    .await;
    for _ in 0..2 {
        assert_eq!(server.get("/api/machines").await.status, 200);
    }
    server
        .get("/api/machines")
        .await
        .assert_error(429, "TooManyRequests");
    set_clock(&server, json!({"advance": "PT61S"})).await;
    let again = server.get("/api/machines").await;
    assert_eq!(
        again.status, 200,
        "the minute has passed on the tenant's clock: {}",
        again.text
    );
}
