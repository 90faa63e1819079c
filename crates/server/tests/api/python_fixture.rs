//! The Python package `python/palisade-emulator` (the pytest fixture and the
//! control-plane client): installed with pip into a directory of its own, its
//! tests run by pytest against the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long pip, and then pytest, may take.
const LIMIT: Duration = Duration::from_secs(600);

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../python/palisade-emulator")
}

/// Whether `python3` with pip, pytest and requests is here; under CI=true it must be.
fn python_available() -> bool {
    let works = |args: &[&str]| {
        Command::new("python3")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let found = works(&["-c", "import pytest, requests"]) && works(&["-m", "pip", "--version"]);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 with pip, pytest and requests is missing (.ci/run installs them)"
        );
        eprintln!(
            "SKIPPED: python3 with pip, pytest and requests is not installed (pip install pytest requests)"
        );
    }
    found
}

/// Copies the package's sources (not what a build or a test run left there),
/// so that pip and pytest write nothing into the repository.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let left_over = ["__pycache__", "build", "dist", ".pytest_cache"].contains(&name.as_ref())
            || name.ends_with(".egg-info");
        if left_over {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `command` to its end (killed after [`LIMIT`]), its output kept in `dir`.
fn run(mut command: Command, dir: &Path, name: &str) -> Output {
    let stdout = dir.join(format!("{name}.out"));
    let stderr = dir.join(format!("{name}.err"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} took longer than {LIMIT:?}:\n{}\n{}",
                std::fs::read_to_string(&stdout).unwrap_or_default(),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&stdout).unwrap_or_default(),
        stderr: std::fs::read(&stderr).unwrap_or_default(),
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `pip install --no-deps --target site package`: with the setuptools at
/// hand first (offline), else in pip's isolated build environment.
fn pip_install(package: &Path, site: &Path, work: &Path) {
    let mut failures = Vec::new();
    for isolation in [&["--no-build-isolation"][..], &[]] {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--no-deps", "--quiet"])
            .args(isolation)
            .arg("--target")
            .arg(site)
            .arg(package)
            // Into a directory of its own: nothing of the system's Python changes.
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
            .env("PIP_USER", "0")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .env("PIP_ROOT_USER_ACTION", "ignore");
        let output = run(pip, work, "pip");
        if output.status.success() {
            return;
        }
        failures.push(format!("pip install {isolation:?}: {}", text(&output)));
    }
    panic!(
        "pip could not install the package:\n{}",
        failures.join("\n")
    );
}

/// The tests pytest should find: top-level `def test_` of the test files.
fn tests_written(tests: &Path) -> usize {
    std::fs::read_dir(tests)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("test_") && name.ends_with(".py")
        })
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("def test_"))
                .count()
        })
        .sum()
}

/// The count pytest's closing line (the last of its `-q` stdout naming an
/// outcome) gives for `outcome` (`passed`, `skipped`, ...): `16 passed in 11.07s`.
fn summary_count(output: &str, outcome: &str) -> usize {
    let Some(line) = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" failed") || l.contains(" error"))
    else {
        return 0;
    };
    let words: Vec<&str> = line
        .split(|c: char| c == ',' || c.is_whitespace() || c == '=')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches('s') == outcome.trim_end_matches('s'))
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_python_fixture_installs_with_pip_and_its_tests_pass_against_the_binary() {
    if !python_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let package = work.path().join("palisade-emulator");
    copy_sources(&package_dir(), &package);
    let site = work.path().join("site");
    pip_install(&package, &site, work.path());
    assert!(
        site.join("palisade_emulator/plugin.py").is_file(),
        "pip installed the package into {}",
        site.display()
    );

    let tests = package.join("tests");
    let expected = tests_written(&tests);
    assert!(expected >= 10, "only {expected} tests written");
    let mut pytest = Command::new("python3");
    // The fixture comes from the installed package's pytest11 entry point.
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&tests)
        .current_dir(&package)
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PALISADE_BIN", env!("CARGO_BIN_EXE_palisade"))
        .env_remove("PYTEST_ADDOPTS")
        .env_remove("PYTEST_PLUGINS")
        .env_remove("PYTEST_DISABLE_PLUGIN_AUTOLOAD");
    let output = run(pytest, work.path(), "pytest");
    let shown = text(&output);
    assert!(output.status.success(), "pytest failed:\n{shown}");
    let closing = String::from_utf8_lossy(&output.stdout);
    let passed = summary_count(&closing, "passed");
    assert_eq!(
        passed, expected,
        "pytest passed {passed} tests of the {expected} written:\n{shown}"
    );
    assert_eq!(summary_count(&closing, "skipped"), 0, "{shown}");
}
