//! Clients MDE users already have, pointed at Palisade by changing only the
//! authority: MSAL for Python over HTTPS with the self-signed CA.

use crate::harness::*;

fn msal_available() -> bool {
    python_with("msal, requests", "pip install msal requests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_for_python_gets_a_token_and_isolates_over_https() {
    if !msal_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let tls = tls_dir.to_str().unwrap();
    let server = ServerProcess::start_in(dir.path(), &["--tls-self-signed", tls]).await;
    assert!(server.origin.starts_with("https://"), "{}", server.origin);
    let credentials = server.demo_credentials();
    assert!(credentials["token_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let ca_file = credentials["ca_file"].as_str().unwrap().to_string();
    assert_eq!(std::path::Path::new(&ca_file), tls_dir.join("ca.pem"));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/msal_client.py");
    let seen = json_report(
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(&server.credentials)
            .env("REQUESTS_CA_BUNDLE", &ca_file),
    )
    .await;
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(seen["token_source"], "identity_provider");
    assert_eq!(
        seen["cached_source"], "cache",
        "MSAL caches the token as it does Entra's"
    );
    assert_eq!(seen["machines"], 3);
    assert_eq!(seen["isolate_status"], 201);
    assert_eq!(seen["action_type"], "Isolate");
    assert_eq!(seen["action_status"], "Pending");
    assert_eq!(seen["requestor"], "Palisade demo app");
    assert_eq!(seen["fetched_status"], 200);
    assert_eq!(seen["unauthenticated_status"], 401);
    assert_eq!(seen["unauthenticated_code"], "Unauthorized");

    // A restart reuses the CA: clients that trust it keep working.
    let ca_before = std::fs::read(&ca_file).unwrap();
    drop(server);
    let server = ServerProcess::start_in(dir.path(), &["--tls-self-signed", tls]).await;
    assert_eq!(std::fs::read(&ca_file).unwrap(), ca_before);
    let reply = server.get("/api/machines?$top=1").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);

    // The operator's own certificate and key (here: the ones just made).
    drop(server);
    let (cert, key) = (tls_dir.join("server.pem"), tls_dir.join("server-key.pem"));
    let own = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let server =
        ServerProcess::start_trusting(dir.path(), &own, Some(std::path::Path::new(&ca_file))).await;
    assert!(server.origin.starts_with("https://"));
    let reply = server.get("/api/machines?$top=1").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    drop(server);
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
        ])
        .arg(&key)
        .arg("--database")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("other.db").display()
        ))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot use the certificate"));
}
