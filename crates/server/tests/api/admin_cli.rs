//! The administration commands of the `palisade` binary, as an operator runs them.

use crate::harness::*;
use serde_json::json;
use std::process::{Command, Output};

fn palisade(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("PALISADE_DATABASE", db)
        .env("USER", "operator")
        .envs(shared_key_environment())
        .output()
        .expect("run palisade")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The value printed after `label` on its own line.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {text}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_operator_sets_up_a_tenant_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    for command in ["tenants", "apps", "users", "groups", "keys", "audit"] {
        let help = palisade(&db, &[command, "--help"]);
        assert!(stdout(&help).contains("Usage:"), "{command} --help");
    }

    let created = stdout(&palisade(&db, &["tenants", "create", "--name", "Fabrikam"]));
    let tenant = created.split_whitespace().nth(2).unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&tenant).is_ok(), "{created}");
    assert!(stdout(&palisade(&db, &["tenants", "list"])).contains("Fabrikam"));
    assert!(stdout(&palisade(&db, &["keys", "list", "--tenant", &tenant])).contains("active"));

    let app = stdout(&palisade(
        &db,
        &[
            "apps",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "SOAR",
            "--permission",
            "Machine.Read.All",
            "--permission",
            "Machine.Isolate",
        ],
    ));
    let (client_id, secret) = (field(&app, "client_id:"), field(&app, "client_secret:"));
    assert!(
        stdout(&palisade(&db, &["apps", "list", "--tenant", &tenant])).contains("Machine.Isolate")
    );
    stdout(&palisade(
        &db,
        &[
            "groups",
            "create",
            "--tenant",
            &tenant,
            "--id",
            "3",
            "--name",
            "Finance",
            "--tag",
            "Finance",
            "--os",
            "Windows11",
        ],
    ));
    let groups = stdout(&palisade(&db, &["groups", "list", "--tenant", &tenant]));
    assert!(groups.contains(r#""tags":["Finance"]"#), "{groups}");
    let bad = palisade(
        &db,
        &[
            "groups",
            "create",
            "--tenant",
            &tenant,
            "--id",
            "4",
            "--name",
            "X",
            "--os",
            "Windows 11",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let user = stdout(&palisade(
        &db,
        &[
            "users",
            "create",
            "--tenant",
            &tenant,
            "--username",
            "ana@fabrikam.example",
            "--role",
            "View data",
            "--group",
            "3",
        ],
    ));
    assert!(field(&user, "password:").len() >= 32);

    // Clear errors, exit codes 2 (usage) and 1 (refused).
    let bad = palisade(
        &db,
        &[
            "apps",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "X",
            "--permission",
            "Machine.Everything",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("unknown permission; one of: Machine.Read.All"));
    let bad = palisade(
        &db,
        &[
            "users",
            "create",
            "--tenant",
            &tenant,
            "--username",
            "bob@fabrikam.example",
            "--role",
            "View data",
            "--group",
            "99",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("device group 99 does not exist"));
    let bad = palisade(
        &db,
        &[
            "apps",
            "list",
            "--tenant",
            "no-such-tenant",
            "--database",
            "sqlite:///nonexistent-dir/x.db",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).lines().count(),
        1,
        "one line"
    );

    // The app works against a server on that database.
    let server = ServerProcess::start_in(dir.path(), &[]).await;
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/token", server.origin))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("resource", "https://api.securitycenter.microsoft.com"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reply["access_token"].as_str().expect("a token");
    let list = reqwest::Client::new()
        .get(format!("{}/api/machines", server.origin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(
        list.json::<serde_json::Value>().await.unwrap()["value"],
        json!([])
    );

    // Rotation, and every step in the audit log.
    assert!(
        stdout(&palisade(&db, &["keys", "rotate", "--tenant", &tenant]))
            .contains("new signing key")
    );
    let audit = stdout(&palisade(&db, &["audit", "list", "--tenant", &tenant]));
    for operation in ["keys rotate", "users put", "apps put"] {
        assert!(audit.contains(operation), "{operation} in {audit}");
    }
    assert!(audit.contains("cli operator"), "{audit}");
}

#[tokio::test]
async fn a_config_file_with_a_mistake_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let cases = [
        ("rate_limits = \"off\"\n", "unknown setting 'rate_limits'"),
        (
            "[[external_issuers]]\nissuer = \"https://idp.example\"\n",
            "missing field `tenant_id`",
        ),
        ("listen = \n", "not valid TOML"),
    ];
    for (text, reason) in cases {
        let config = dir.path().join("palisade.toml");
        std::fs::write(&config, text).unwrap();
        let output = palisade(&db, &["serve", "--config", config.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{text}: {stderr}");
    }
    // A setting in the file reaches its flag: here, a bad value clap refuses (exit 2).
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, "rate-limit = \"many\"\n").unwrap();
    let output = palisade(&db, &["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("rate-limit"));
}

#[tokio::test]
async fn an_operator_issues_lists_and_revokes_onboarding_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_url(dir.path()).await;
    let created = stdout(&palisade(&db, &["tenants", "create", "--name", "Devices"]));
    let tenant = created.split_whitespace().nth(2).unwrap().to_string();
    let t = ["--tenant", tenant.as_str()];

    let issued = stdout(&palisade(
        &db,
        &[
            &[
                "onboarding",
                "create",
                "--id",
                "lab",
                "--description",
                "Lab racks",
            ][..],
            &t,
        ]
        .concat(),
    ));
    let token = field(&issued, "onboarding_token:");
    assert!(token.starts_with(&format!("pot.{tenant}.lab.")), "{issued}");
    let listed = stdout(&palisade(&db, &[&["onboarding", "list"][..], &t].concat()));
    assert!(
        listed.contains("lab") && listed.contains("active") && listed.contains("Lab racks"),
        "{listed}"
    );
    assert!(stdout(&palisade(&db, &[&["devices", "list"][..], &t].concat())).is_empty());

    let bad_id = palisade(
        &db,
        &[&["onboarding", "create", "--id", "no spaces"][..], &t].concat(),
    );
    assert_eq!(bad_id.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("not a token id"));

    stdout(&palisade(
        &db,
        &[&["onboarding", "revoke", "--id", "lab"][..], &t].concat(),
    ));
    assert!(
        stdout(&palisade(&db, &[&["onboarding", "list"][..], &t].concat())).contains("revoked")
    );
    let again = palisade(
        &db,
        &[&["onboarding", "revoke", "--id", "lab"][..], &t].concat(),
    );
    assert_eq!(
        again.status.code(),
        Some(1),
        "a revoked token cannot be revoked twice"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("no unrevoked onboarding token lab"));
}
