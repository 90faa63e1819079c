//! Palisade's pages in a real headless Chromium (Debian's `chromium`,
//! driven by Playwright: `tests/browser/`), as a person uses them: labelled
//! fields, the keyboard, a refusal, and a code the client redeems; no CSP
//! violation on the way. Screenshots are kept under the target directory.

use crate::harness::{json_report, needed};
use crate::oauth_flows::{fixture, query_of, PASSWORD, VERIFIER};
use std::path::{Path, PathBuf};

pub(crate) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium and playwright-core are here (the latter installed on
/// first use, from the committed lock file, where npm is).
pub(crate) fn browser_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let playwright = browser_dir().join("node_modules/playwright-core");
    if !playwright.exists() {
        let _ = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(browser_dir())
            .status();
    }
    let found = Path::new(&chromium).exists() && playwright.exists();
    let hint = "apt-get install chromium; cd crates/server/tests/browser && npm ci";
    needed(found, "Chromium or playwright-core", hint)
}

/// What a page's Content-Security-Policy refused, from a driver's report
/// (Chromium also reports the favicon it asks for and nobody serves: not these).
pub(crate) fn csp_violations(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.as_str().unwrap().contains("Content Security Policy"))
        .collect()
}

/// Where a test's screenshots are kept.
pub(crate) fn screenshots(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A native client's redirect listener on 127.0.0.1 (where `localhost`
/// reaches it): answers one request, and hands over its request line.
async fn client_listener() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (saw, seen) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 8192];
        let n = stream.read(&mut buffer).await.unwrap();
        let request = String::from_utf8_lossy(&buffer[..n]).to_string();
        let body = "<p>The client got its code.</p>";
        let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = saw.send(request.lines().next().unwrap_or_default().to_string());
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_the_keyboard_and_the_client_gets_its_code() {
    if !browser_available() {
        return;
    }
    let f = fixture().await;
    let (port, client_saw) = client_listener().await;
    let redirect = format!("http://localhost:{port}/callback");
    let redirect = redirect.as_str();
    let params = f.code_request(redirect);
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = f.authorize_url(&params);
    let shots = screenshots("sign_in");
    let seen = json_report(
        tokio::process::Command::new("node")
            .arg(browser_dir().join("sign_in.mjs"))
            .args([url.as_str(), f.username.as_str(), PASSWORD])
            .arg(&shots),
    )
    .await;
    assert!(seen["error"].is_null(), "{seen}");
    assert_eq!(seen["title"], "Sign in · Palisade", "{seen}");
    assert_eq!(
        seen["labels"],
        serde_json::json!(["User name", "Password"]),
        "{seen}"
    );
    assert_eq!(
        seen["focused"], "username",
        "the first field has the focus: {seen}"
    );
    let refused = seen["wrong_password_alert"].as_str().unwrap();
    assert_eq!(
        refused, "Your user name or password is incorrect.",
        "{seen}"
    );
    assert_eq!(seen["username_kept"], f.username.as_str(), "{seen}");
    assert_eq!(seen["focused_after_refusal"], "password", "{seen}");
    assert_eq!(
        csp_violations(&seen),
        Vec::<&serde_json::Value>::new(),
        "nothing the page needs is refused by its CSP: {seen}"
    );
    let final_url = seen["final_url"].as_str().unwrap();
    assert!(final_url.starts_with(redirect), "{seen}");
    let answer = query_of(final_url);
    assert_eq!(answer["state"], "state-42");
    let code = answer["code"].as_str().unwrap();
    let request_line = client_saw.await.unwrap();
    assert!(
        request_line.contains(code),
        "the client's listener got the code: {request_line}"
    );
    let tokens = f
        .redeem(&[
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    for shot in ["sign-in.png", "sign-in-refused.png"] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 1000, "{shot}: {size} bytes");
    }
}
