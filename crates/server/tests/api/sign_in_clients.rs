//! Real sign-in clients against a `palisade serve --demo` over HTTPS: MSAL
//! for Python's PublicClientApplication (device code, password, refresh
//! after the access token expired on the tenant's clock), its
//! ConfidentialClientApplication with a certificate, and azure-identity's
//! CertificateCredential. The scripts are in `tests/clients/`.

use crate::harness::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn clients_available() -> bool {
    python_with(
        "msal, requests, azure.identity, cryptography",
        "pip install msal azure-identity requests",
    )
}

fn script(name: &str) -> String {
    format!("{}/tests/clients/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a client script; its one JSON line.
async fn run(ca_file: &str, args: &[&str]) -> Value {
    run_with(ca_file, args, &[]).await
}

async fn run_with(ca_file: &str, args: &[&str], envs: &[(&str, String)]) -> Value {
    json_report(
        tokio::process::Command::new("python3")
            .args(args)
            .env("REQUESTS_CA_BUNDLE", ca_file)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str()))),
    )
    .await
}

async fn https_demo(dir: &Path) -> (ServerProcess, String) {
    let tls = dir.join("tls");
    let server = ServerProcess::start_in(dir, &["--tls-self-signed", tls.to_str().unwrap()]).await;
    let ca_file = server.demo_credentials()["ca_file"]
        .as_str()
        .unwrap()
        .to_string();
    (server, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_public_clients_sign_in_by_device_code_password_and_refresh() {
    if !clients_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = https_demo(dir.path()).await;
    let credentials = server.credentials.to_str().unwrap();
    let client = script("msal_public_client.py");

    let device = run(&ca, &[&client, credentials, "device_code"]).await;
    assert!(
        device["flow"]["verification_uri"]
            .as_str()
            .unwrap()
            .ends_with("/devicelogin"),
        "{device}"
    );
    assert_eq!(device["flow"]["user_code_in_message"], true);
    assert_eq!(device["user_errors"], json!([]), "{device}");
    let steps = &device["user_steps"];
    assert_eq!(steps["code_form_has_csrf"], true, "{device}");
    assert_eq!(steps["sign_in_form"], true, "{device}");
    assert_eq!(steps["signed_in_page"], true, "{device}");
    assert_eq!(
        device["polls"][0], "authorization_pending",
        "MSAL was told to wait: {device}"
    );
    assert_eq!(
        *device["polls"].as_array().unwrap().last().unwrap(),
        200,
        "{device}"
    );
    assert_eq!(device["machines_status"], 200, "{device}");
    assert_eq!(device["claims"]["idtyp"], "user");
    assert_eq!(device["claims"]["upn"], device["username"]);
    assert_eq!(device["has_refresh_token"], true);
    assert_eq!(
        device["accounts"][0], device["username"],
        "MSAL keeps the account"
    );

    let password = run(&ca, &[&client, credentials, "password"]).await;
    assert_eq!(password["machines_status"], 200, "{password}");
    assert_eq!(
        password["userrealm"]["account_type"], "Managed",
        "{password}"
    );
    assert!(!password["sent"][0]
        .as_array()
        .unwrap()
        .contains(&json!("client_secret")));
    let refused = &password["confidential_without_secret"];
    assert_eq!(refused["got_token"], false, "{password}");
    assert_eq!(refused["status"], 401, "{password}");
    assert_eq!(refused["error_codes"][0], 7000218, "{password}");

    let refresh = run(&ca, &[&client, credentials, "refresh"]).await;
    assert_eq!(refresh["first_machines_status"], 200, "{refresh}");
    assert_eq!(refresh["clock_status"], 200, "{refresh}");
    assert_eq!(
        refresh["old_token_status"], 401,
        "the access token expired on the tenant's clock: {refresh}"
    );
    assert_eq!(refresh["refreshed_machines_status"], 200, "{refresh}");
    assert_eq!(refresh["refresh_requests"][0]["status"], 200, "{refresh}");
    assert_eq!(refresh["refresh_requests"][0]["rotated"], true, "{refresh}");
    assert_eq!(refresh["replay"]["status"], 400, "{refresh}");
    assert_eq!(refresh["replay"]["error_codes"][0], 54005, "{refresh}");
    assert_eq!(
        refresh["after_replay"]["got_token"], false,
        "the replay revoked the sign-in: {refresh}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_signs_a_user_in_interactively_through_chromium() {
    if !clients_available() || !crate::browser::browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = https_demo(dir.path()).await;
    let credentials = server.demo_credentials();
    let user = &credentials["users"][0];
    let report = dir.path().join("browser.json");
    let browse = crate::browser::browser_dir().join("browse.mjs");
    let envs = [
        ("BROWSER", format!("node {} %s", browse.display())),
        (
            "PALISADE_USERNAME",
            user["username"].as_str().unwrap().to_string(),
        ),
        (
            "PALISADE_PASSWORD",
            user["password"].as_str().unwrap().to_string(),
        ),
        ("PALISADE_BROWSER_REPORT", report.display().to_string()),
    ];
    let client = script("msal_public_client.py");
    let seen = run_with(
        &ca,
        &[&client, server.credentials.to_str().unwrap(), "interactive"],
        &envs,
    )
    .await;
    let browser: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(browser["error"].is_null(), "{browser}");
    let asked = browser["authorize_url"].as_str().unwrap();
    assert!(
        asked.contains("response_mode=form_post") && asked.contains("code_challenge="),
        "{asked}"
    );
    assert!(
        browser["final_url"]
            .as_str()
            .unwrap()
            .starts_with("http://localhost:"),
        "{browser}"
    );
    assert_eq!(
        crate::browser::csp_violations(&browser),
        Vec::<&Value>::new(),
        "the form_post page's script and form are allowed: {browser}"
    );
    assert_eq!(seen["code_redemptions"][0]["status"], 200, "{seen}");
    assert!(
        seen["code_redemptions"][0]["sent"]
            .as_array()
            .unwrap()
            .contains(&json!("code_verifier")),
        "{seen}"
    );
    assert_eq!(seen["machines_status"], 200, "{seen}");
    assert_eq!(seen["claims"]["upn"], user["username"], "{seen}");
    assert_eq!(
        seen["id_token_claims"]["preferred_username"], user["username"],
        "{seen}"
    );
    assert_eq!(seen["accounts"][0], user["username"], "{seen}");
}

/// Registers an app with `certificate` (a PEM file) through the CLI, as an operator would.
fn register_certificate_app(dir: &Path, tenant: &str, certificate: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["apps", "create", "--name", "Certificate daemon"])
        .args([
            "--permission",
            "Machine.Read.All",
            "--permission",
            "Machine.Isolate",
        ])
        .args(["--certificate", certificate, "--tenant", tenant])
        .arg("--database")
        .arg(format!("sqlite://{}", dir.join("palisade.db").display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("client_id:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_and_azure_identity_authenticate_with_a_certificate() {
    if !clients_available() || crate::BACKEND != crate::backend::Backend::Sqlite {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = https_demo(dir.path()).await;
    let credentials = server.demo_credentials();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let make = script("make_certificate.py");
    let registered = run(&ca, &[&make, keys.to_str().unwrap(), "registered"]).await;
    let unregistered = run(&ca, &[&make, keys.to_str().unwrap(), "unregistered"]).await;
    let tenant = credentials["tenant_id"].as_str().unwrap();
    let client_id = register_certificate_app(
        dir.path(),
        tenant,
        registered["cert_file"].as_str().unwrap(),
    );

    let origin = server.origin.clone();
    let config = json!({
        "authority": format!("{origin}/{tenant}"),
        "origin": origin,
        "tenant_id": tenant,
        "client_id": client_id,
        "api_url": credentials["api_url"],
        "certificate": registered,
        "unregistered": unregistered,
    });
    let config_file = dir.path().join("certificate.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let config_file = config_file.to_str().unwrap();

    let forms = run(&ca, &[&script("msal_certificate.py"), config_file, "forms"]).await;
    for form in ["thumbprint", "thumbprint_and_certificate", "certificate"] {
        let seen = &forms[form];
        assert_eq!(seen["status"], 200, "{form}: {seen}");
        assert_eq!(seen["machines_status"], 200, "{form}: {seen}");
        assert_eq!(seen["claims"]["idtyp"], "app", "{form}: {seen}");
        assert_eq!(
            seen["claims"]["roles"],
            json!(["Machine.Isolate", "Machine.Read.All"]),
            "{form}: {seen}"
        );
        assert!(
            seen["sent"]
                .as_array()
                .unwrap()
                .contains(&json!("client_assertion")),
            "{form}: {seen}"
        );
    }
    assert!(
        forms["thumbprint"]["assertion_header"]["x5t"].is_string(),
        "{forms}"
    );
    assert!(
        forms["certificate"]["assertion_header"]["x5t#S256"].is_string(),
        "MSAL signs PS256 with the certificate itself: {forms}"
    );
    let unregistered = &forms["unregistered"];
    assert_eq!(unregistered["status"], 401, "{unregistered}");
    assert_eq!(unregistered["error"], "invalid_client", "{unregistered}");
    assert_eq!(unregistered["error_codes"][0], 700027, "{unregistered}");

    let reuse = run(&ca, &[&script("msal_certificate.py"), config_file, "reuse"]).await;
    assert_eq!(reuse["first"]["status"], 200, "{reuse}");
    assert_eq!(
        reuse["second"]["status"], 200,
        "MSAL's reused assertion is accepted, as by Entra: {reuse}"
    );

    let azure = run(
        &ca,
        &[&script("azure_identity_certificate.py"), config_file],
    )
    .await;
    assert_eq!(azure["machines_status"], 200, "{azure}");
    assert_eq!(azure["claims"]["idtyp"], "app", "{azure}");
    assert_eq!(azure["cached"], true, "{azure}");
}
