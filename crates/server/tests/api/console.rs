//! The web console: in a real headless Chromium (sign in at `/`, filter the
//! machine table, tag, isolate until Succeeded, sign out; a reader without
//! the buttons whose forged posts are refused), and over HTTP for what a
//! browser does not show (cookies, the console's app, sessions ending).

use crate::browser::{browser_available, browser_dir, csp_violations, screenshots};
use crate::harness::*;
use palisade_contract::OsPlatform;
use palisade_domain::{DeviceGroupAccess, Role};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

async fn console_server() -> (TestServer, Vec<String>) {
    let server = TestServer::start().await;
    let people = [
        (
            "responder@contoso.example",
            vec![
                Role::ViewData,
                Role::ActiveRemediationActions,
                Role::ManageSecuritySettings,
            ],
        ),
        ("reader@contoso.example", vec![Role::ViewData]),
    ];
    for (name, roles) in people {
        server
            .admin
            .put_user(
                &server.tenant_id,
                name,
                &roles,
                DeviceGroupAccess::All,
                Some(PASSWORD),
            )
            .await
            .unwrap();
    }
    let mut machines = Vec::new();
    for name in [
        "web-01.contoso.example",
        "web-02.contoso.example",
        "db-01.contoso.example",
    ] {
        let mut m = machine(OsPlatform::Windows11);
        m.computer_dns_name = name.into();
        machines.push(m);
    }
    server.put_machines(&machines).await;
    (server, machines.into_iter().map(|m| m.id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_filters_tags_and_isolates_and_a_reader_cannot() {
    if !browser_available() {
        return;
    }
    let (server, _) = console_server().await;
    // Actions of machines without a device succeed at once (the emulator's outcome rule).
    let rule = server
        .client
        .post(server.url(&format!(
            "{}/tenants/{}/outcomes",
            palisade_server::control::BASE,
            server.tenant_id
        )))
        .bearer_auth(&server.operator_token)
        .json(&json!({"script": [{"status": "Succeeded", "duration": "PT1S"}]}))
        .send()
        .await
        .unwrap();
    assert!(rule.status().is_success(), "{:?}", rule.text().await);
    let shots = screenshots("console");
    let seen = json_report(
        tokio::process::Command::new("node")
            .arg(browser_dir().join("console.mjs"))
            .args([
                &server.origin,
                "responder@contoso.example",
                PASSWORD,
                "reader@contoso.example",
                PASSWORD,
                "web-",
            ])
            .arg(&shots),
    )
    .await;
    assert!(seen["error"].is_null(), "{seen}");
    assert_eq!(seen["sign_in_title"], "Sign in · Palisade", "{seen}");
    assert_eq!(seen["machines_title"], "Machines · Palisade", "{seen}");
    assert_eq!(seen["signed_in_user"], "responder@contoso.example");
    assert_eq!(
        seen["filtered"],
        json!(["web-01.contoso.example", "web-02.contoso.example"]),
        "{seen}"
    );
    assert!(
        seen["count_text"].as_str().unwrap().contains("of 2"),
        "{seen}"
    );
    assert_eq!(seen["tags"], json!(["Investigate"]), "{seen}");
    assert_eq!(seen["confirm_title"], "Isolate · Palisade");
    let timeline = seen["timeline"].as_str().unwrap();
    assert!(
        timeline.contains("Isolate") && timeline.contains("Succeeded"),
        "{timeline}"
    );
    assert!(timeline.contains("Isolated from the console"), "{timeline}");
    assert!(
        seen["actions"].as_str().unwrap().contains("web-0"),
        "{seen}"
    );
    assert_eq!(
        seen["signed_out"],
        "You are signed out of the Palisade console."
    );
    assert_eq!(
        seen["after_sign_out_title"], "Sign in · Palisade",
        "signed out is signed out"
    );
    assert_eq!(
        seen["reader_buttons"],
        json!([]),
        "a reader sees no action button: {seen}"
    );
    assert_eq!(seen["reader_tag_forms"], 0);
    assert_eq!(seen["reader_bulk"], 0);
    assert_eq!(seen["forged"]["without_token"]["status"], 403, "{seen}");
    assert!(
        seen["forged"]["without_token"]["text"]
            .as_str()
            .unwrap()
            .contains("nothing was done"),
        "{seen}"
    );
    assert_eq!(
        seen["forged"]["with_own_token"]["status"], 403,
        "the API refuses the reader: {seen}"
    );
    let refused = seen["forged"]["with_own_token"]["text"].as_str().unwrap();
    assert!(refused.contains("required to call Isolate"), "{refused}");
    assert_eq!(
        csp_violations(&seen),
        Vec::<&serde_json::Value>::new(),
        "{seen}"
    );
    // What the store holds: the responder's one isolation, with its comment; nothing of the reader's.
    let actions = server
        .get("/api/machineactions?$filter=type eq 'Isolate'")
        .await;
    let actions = actions.json["value"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["requestor"], "responder@contoso.example");
    assert_eq!(actions[0]["status"], "Succeeded");
    let audit = server.get("/api/auditlog?$top=50").await;
    assert!(
        audit.text.contains("reader@contoso.example"),
        "the refused attempt is audited: {}",
        audit.text
    );
    for shot in ["machines.png", "machine.png", "actions.png", "reader.png"] {
        assert!(
            std::fs::metadata(shots.join(shot)).unwrap().len() > 1000,
            "{shot}"
        );
    }
}

/// A client that keeps cookies and does not follow redirects.
fn browser_like() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(reply: &reqwest::Response) -> String {
    reply.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_console_signs_in_through_the_authorization_endpoint_and_its_session_ends() {
    let (server, ids) = console_server().await;
    let browser = browser_like();
    let mut hops = Vec::new();
    let mut next = server.url("/");
    let page = loop {
        let reply = browser.get(&next).send().await.unwrap();
        if reply.status() != 303 {
            assert_eq!(reply.status(), 200);
            break reply;
        }
        hops.push(location(&reply));
        next = server.url(hops.last().unwrap());
    };
    assert_eq!(hops[0], "/console/machines", "{hops:?}");
    assert!(hops[1].starts_with("/console/sign-in?return="), "{hops:?}");
    let sign_in = hops[2].clone();
    assert!(
        sign_in.starts_with(&format!("/{}/oauth2/v2.0/authorize?", server.tenant_id)),
        "{sign_in}"
    );
    assert!(
        sign_in.contains("code_challenge_method=S256") && sign_in.contains("state="),
        "{sign_in}"
    );
    let machines = page;
    let page = machines.text().await.unwrap();
    let csrf = page
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let signed_in = browser
        .post(server.url(&sign_in))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "responder@contoso.example"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 302);
    let callback = location(&signed_in);
    assert!(
        callback.starts_with(&format!("{}/console/signed-in?code=", server.origin)),
        "{callback}"
    );
    let session = browser.get(&callback).send().await.unwrap();
    assert_eq!(session.status(), 303);
    let cookie = session
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("palisade-console="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(location(&session), "/console/machines");
    let table = browser
        .get(server.url("/console/machines"))
        .send()
        .await
        .unwrap();
    assert_eq!(table.status(), 200);
    let csp = table.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !csp.contains("unsafe-inline") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = table.text().await.unwrap();
    assert!(
        html.contains("db-01.contoso.example") && html.contains("Machines 1–3 of 3"),
        "{html}"
    );
    // Bulk: a confirmation first, then the tag on every selected machine, and an isolation each.
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let bulk = |action: &'static str, confirmed: bool| {
        let mut form = vec![
            ("csrf_token", token.to_string()),
            ("action", action.into()),
            ("value", "Bulk".into()),
            ("comment", "bulk from the console".into()),
        ];
        form.extend(ids[..2].iter().map(|id| ("machine", id.clone())));
        if confirmed {
            form.push(("confirmed", "yes".into()));
        }
        browser
            .post(server.url("/console/machines/bulk"))
            .form(&form)
            .send()
    };
    let asked = bulk("tag", false).await.unwrap().text().await.unwrap();
    assert!(
        asked.contains("Confirm: Add the tag") && asked.contains("on 2 machine(s)"),
        "{asked}"
    );
    assert_eq!(
        server.get(&format!("/api/machines/{}", ids[0])).await.json["machineTags"],
        json!([]),
        "nothing before the confirmation"
    );
    let done = bulk("tag", true).await.unwrap();
    assert_eq!(done.status(), 200);
    for id in &ids[..2] {
        assert_eq!(
            server.get(&format!("/api/machines/{id}")).await.json["machineTags"],
            json!(["Bulk"])
        );
    }
    assert_eq!(
        server.get(&format!("/api/machines/{}", ids[2])).await.json["machineTags"],
        json!([])
    );
    let isolated = bulk("isolate", true).await.unwrap().text().await.unwrap();
    let actions = server
        .get("/api/machineactions?$filter=type eq 'Isolate'")
        .await;
    let actions = actions.json["value"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 2, "{isolated}");
    for action in &actions {
        assert_eq!(action["requestor"], "responder@contoso.example");
        assert_eq!(action["requestorComment"], "bulk from the console");
        assert!(
            isolated.contains(action["id"].as_str().unwrap()),
            "{isolated}"
        );
    }
    // The state of a sign-in the console did not start is refused.
    let stray = browser
        .get(format!(
            "{}/console/signed-in?code=x&state=y",
            server.origin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 400);
    // Another site's form (no token) changes nothing.
    let forged = browser
        .post(server.url(&format!("/console/machines/{}/tags", ids[0])))
        .form(&[("action", "Add"), ("value", "Forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let machine = server.get(&format!("/api/machines/{}", ids[0])).await;
    assert_eq!(
        machine.json["machineTags"],
        json!(["Bulk"]),
        "the forged tag is not added"
    );
    // The console's app signs in only through the console.
    let borrowed = server
        .token_request(&[
            ("grant_type", "password"),
            ("client_id", palisade_identity::console::CONSOLE_CLIENT_ID),
            ("username", "responder@contoso.example"),
            ("password", PASSWORD),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .await;
    assert_eq!(borrowed.status, 400, "{}", borrowed.text);
    assert!(
        borrowed.text.contains("unauthorized_client"),
        "{}",
        borrowed.text
    );
    // A new password ends the user's sessions.
    let user = server
        .palisade
        .store()
        .user_by_name(&server.tenant_id, "responder@contoso.example")
        .await
        .unwrap()
        .unwrap();
    server
        .admin
        .put_user(
            &server.tenant_id,
            &user.username,
            &user.roles,
            DeviceGroupAccess::All,
            Some("a new password of the responder"),
        )
        .await
        .unwrap();
    let after = browser
        .get(server.url("/console/machines"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        303,
        "the session ended with the old password"
    );
    assert!(location(&after).starts_with("/console/sign-in"));
}
