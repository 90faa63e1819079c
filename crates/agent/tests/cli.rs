//! The agent's command line, as an operator meets it.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade-agent"))
}

#[test]
fn help_names_what_an_operator_sets() {
    let output = agent().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--server",
        "--onboarding-token",
        "--state-dir",
        "--selective-allow",
        "--check-in-wait",
        "--ca-file",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn without_enrollment_or_token_it_says_what_to_do_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = agent()
        .args(["--server", "https://127.0.0.1:9", "--state-dir"])
        .arg(&state)
        .env_remove("PALISADE_ONBOARDING_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--onboarding-token"), "{stderr}");
    // The state directory holds a credential: owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_bad_allow_list_entry_is_a_usage_error() {
    let output = agent()
        .args(["--server", "https://x", "--selective-allow", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
