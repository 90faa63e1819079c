//! Signing keys at rest: sealed with a key kept outside the database, opened
//! after a restart, refused with a clear error under a wrong or missing key,
//! and sealed at start when an older database kept them in plaintext.

use crate::harness::*;
use palisade_domain::identity::SigningKey;
use palisade_domain::Store;
use palisade_identity::keys;
use palisade_identity::tokens::{self, Claims};
use palisade_server::app;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

const API: &str = "https://api.securitycenter.microsoft.com";

async fn open(dir: &Path) -> Arc<dyn Store> {
    app::open_store(&database_url(dir).await, TEST_POOL)
        .await
        .unwrap()
}

/// Every signing key row of the database, as stored.
async fn stored_keys(store: &dyn Store) -> Vec<SigningKey> {
    let mut all = Vec::new();
    for tenant in store.tenants().await.unwrap() {
        all.extend(store.signing_keys(&tenant.id).await.unwrap());
    }
    all
}

#[track_caller]
fn assert_sealed(keys: &[SigningKey]) {
    assert!(!keys.is_empty());
    for key in keys {
        assert!(
            key.private_key.starts_with("sealed:v1:")
                && !key.private_key.contains("BEGIN")
                && !key.private_key.contains("PRIVATE KEY"),
            "key {} is stored as {}",
            key.kid,
            key.private_key
        );
    }
}

/// A token of the demo app from the server's token endpoint.
async fn demo_token(server: &ServerProcess) -> String {
    let text = std::fs::read_to_string(&server.credentials).unwrap();
    let credentials: Value = serde_json::from_str(&text).unwrap();
    token_from(
        server,
        credentials["tenant_id"].as_str().unwrap(),
        credentials["client_id"].as_str().unwrap(),
        credentials["client_secret"].as_str().unwrap(),
    )
    .await
}

async fn token_from(server: &ServerProcess, tenant: &str, client_id: &str, secret: &str) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", server.origin))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {reply}"))
        .to_string()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Whether the key the server publishes under the token's `kid` verifies its signature.
async fn verifies(server: &ServerProcess, tenant: &str, token: &str) -> bool {
    let jwks: Value = reqwest::get(format!("{}/{tenant}/discovery/v2.0/keys", server.origin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = kid_of(token);
    let Some(jwk) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
    else {
        return false;
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[API]);
    jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
}

/// Runs `palisade serve` on `dir`'s database, expecting it to refuse to
/// start; returns what it said.
fn refuses_to_start(dir: &Path, database: &str, env: &[(&str, &str)], extra: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args(extra)
        .env_remove(app::KEY_ENCRYPTION_KEY_VARIABLE)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("refused.log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            return std::fs::read_to_string(dir.join("refused.log")).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "the server started: {}",
        std::fs::read_to_string(dir.join("refused.log")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_are_sealed_at_rest_and_open_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let tenant = palisade_server::demo::DEMO_TENANT_ID;
    let before = demo_token(&server).await;

    let store = open(dir.path()).await;
    let rows = stored_keys(store.as_ref()).await;
    assert_sealed(&rows);
    if crate::BACKEND == crate::backend::Backend::Sqlite {
        // Nowhere in the database's files, and its key beside it, for its owner only.
        for file in ["palisade.db", "palisade.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("PRIVATE KEY"), "{file} holds a PEM key");
        }
        let key_file = dir.path().join("palisade.db.key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key_file).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    drop(server);
    let restarted = ServerProcess::start_in(dir.path(), &[]).await;
    let after = demo_token(&restarted).await;
    assert_eq!(kid_of(&after), kid_of(&before), "the same key signs");
    assert!(verifies(&restarted, tenant, &before).await);
    assert!(verifies(&restarted, tenant, &after).await);
    assert_eq!(stored_keys(store.as_ref()).await.len(), rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_key_refuses_to_start_and_makes_no_keys() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_url(dir.path()).await;
    drop(ServerProcess::start_in(dir.path(), &[]).await);
    let store = open(dir.path()).await;
    let rows = stored_keys(store.as_ref()).await;
    let other_key = palisade_identity::sealing::KeySealer::new_key_text();

    let wrong = match crate::BACKEND {
        crate::backend::Backend::Sqlite => {
            let key_file = dir.path().join("palisade.db.key");
            let kept = std::fs::read_to_string(&key_file).unwrap();
            std::fs::write(&key_file, &other_key).unwrap();
            let wrong = refuses_to_start(dir.path(), &database, &[], &[]);
            std::fs::remove_file(&key_file).unwrap();
            let missing = refuses_to_start(dir.path(), &database, &[], &[]);
            assert!(
                missing.contains("are sealed, but the key file")
                    && missing.contains("does not exist"),
                "{missing}"
            );
            assert!(!key_file.exists(), "no new key is made");
            std::fs::write(&key_file, kept).unwrap();
            wrong
        }
        crate::backend::Backend::Postgres => {
            let missing = refuses_to_start(dir.path(), &database, &[], &[]);
            assert!(missing.contains("with PostgreSQL, give"), "{missing}");
            // Nodes must share one key: PostgreSQL's is never made at start.
            let absent = dir.path().join("absent.key");
            let absent_text = absent.display().to_string();
            let missing =
                refuses_to_start(dir.path(), &database, &[], &["--key-file", &absent_text]);
            assert!(
                missing.contains("cannot read the key-encryption key file"),
                "{missing}"
            );
            assert!(!absent.exists());
            refuses_to_start(
                dir.path(),
                &database,
                &[(app::KEY_ENCRYPTION_KEY_VARIABLE, &other_key)],
                &[],
            )
        }
    };
    assert!(
        wrong.contains("does not open with the key-encryption key"),
        "{wrong}"
    );
    assert_eq!(
        wrong.lines().filter(|l| l.starts_with("palisade:")).count(),
        1,
        "{wrong}"
    );
    assert_eq!(
        stored_keys(store.as_ref()).await,
        rows,
        "no keys made or changed"
    );
    // With the right key it starts again.
    drop(ServerProcess::start_in(dir.path(), &[]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_key_of_an_older_database_is_sealed_at_start_and_keeps_verifying() {
    let dir = tempfile::tempdir().unwrap();
    // A database as an earlier Palisade left it: a tenant whose key is stored in plaintext.
    let store = open(dir.path()).await;
    let tenant = palisade_domain::Tenant {
        id: "01d00000-0000-4000-8000-00000000000a".into(),
        name: "Older".into(),
        retention_days: 180,
    };
    store.create_tenant(&tenant, &[], &[]).await.unwrap();
    let plaintext = keys::generate(&tenant.id, palisade_contract::Timestamp::now());
    store.rotate_signing_key(&plaintext).await.unwrap();
    assert!(stored_keys(store.as_ref()).await[0]
        .private_key
        .contains("BEGIN PRIVATE KEY"));
    let admin = palisade_identity::admin::Admin::new(
        store.clone(),
        Arc::new(palisade_domain::SystemClock),
        palisade_identity::admin::Administrator {
            kind: "cli",
            name: "test".into(),
        },
    );
    let (app, secret) = admin
        .put_app(&tenant.id, None, "Older app", &all_permissions())
        .await
        .unwrap();

    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("sealed token signing keys that were stored in plaintext"),
        "{log}"
    );
    let rows = store.signing_keys(&tenant.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kid, plaintext.kid);
    assert_sealed(&rows);
    assert_sealed(&stored_keys(store.as_ref()).await);

    // A token the old key signed before is still good, and the sealed key signs new ones.
    let now = palisade_contract::Timestamp::now().unix_seconds();
    let old_token = tokens::sign(
        &plaintext,
        &Claims {
            aud: API.into(),
            iss: format!("{}/{}/v2.0", server.origin, tenant.id),
            iat: now - 60,
            nbf: now - 60,
            exp: now + 3000,
            tid: tenant.id.clone(),
            sub: app.client_id.clone(),
            appid: Some(app.client_id.clone()),
            roles: Some(vec!["Machine.Read.All".into()]),
            ..Claims::default()
        },
    )
    .unwrap();
    let reply = reqwest::Client::new()
        .get(format!("{}/api/machines", server.origin))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let new_token = token_from(&server, &tenant.id, &app.client_id, &secret).await;
    assert_eq!(kid_of(&new_token), plaintext.kid);
    assert!(verifies(&server, &tenant.id, &new_token).await);
}
