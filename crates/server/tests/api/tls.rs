//! The self-signed CA and server certificate of `--tls-self-signed`: strict
//! verifiers (OpenSSL's `-x509_strict`, Python 3.13's default
//! `VERIFY_X509_STRICT`) accept them, and a directory made by an earlier
//! version, which they refuse, is made anew at start.

use crate::harness::ServerProcess;
use palisade_server::tls::{self, TlsSource};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::Path;
use std::process::Command;

/// Whether `program` runs here; under CI=true it must.
fn available(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {program} is missing"
        );
        eprintln!("SKIPPED: {program} is not installed");
    }
    found
}

/// `openssl verify -x509_strict` of the directory's server certificate.
fn strict_openssl_verify(dir: &Path) -> Result<(), String> {
    let output = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("server.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    output.status.success().then_some(()).ok_or(text)
}

/// An HTTPS GET of `url` by Python's ssl module with `VERIFY_X509_STRICT`
/// set (Python 3.13 and urllib3 2 set it by default); returns the status.
fn strict_python_get(url: &str, ca: &Path) -> Result<String, String> {
    let script = "import ssl, sys, urllib.request\n\
                  ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
                  ctx.verify_flags |= ssl.VERIFY_X509_STRICT\n\
                  print(urllib.request.urlopen(sys.argv[1], context=ctx).status)\n";
    let output = Command::new("python3")
        .args(["-c", script, url])
        .arg(ca)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_self_signed_certificates_pass_strict_verification() {
    if !available("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = TlsSource::SelfSigned {
        dir: dir.path().to_path_buf(),
        names: vec!["palisade.test".into()],
    };
    tls::load(&source).await.unwrap();
    strict_openssl_verify(dir.path()).unwrap();
    // Loaded again, they are kept.
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    tls::load(&source).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);
}

/// Writes a CA and server certificate as Palisade made them before they
/// carried key identifiers, key usage and serverAuth.
fn write_old_style_directory(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Palisade local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(names.clone()).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "Palisade server");
    let server_cert = server.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), ca_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("server-names.txt"), names.join("\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_tls_directory_is_made_anew_and_strict_python_clients_connect() {
    if !available("openssl", &["version"]) || !available("python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    write_old_style_directory(&tls_dir);
    assert!(
        strict_openssl_verify(&tls_dir).is_err(),
        "the old shape passes strict verification: the test proves nothing"
    );
    let old_ca = std::fs::read(tls_dir.join("ca.pem")).unwrap();

    let server = ServerProcess::start_in(
        dir.path(),
        &["--tls-self-signed", tls_dir.to_str().unwrap()],
    )
    .await;
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("made a new CA and server certificate")
            && log.contains("clients must trust the new"),
        "no log line says the CA was replaced: {log}"
    );
    assert_ne!(std::fs::read(tls_dir.join("ca.pem")).unwrap(), old_ca);
    strict_openssl_verify(&tls_dir).unwrap();
    let status = strict_python_get(
        &format!("{}/healthz", server.origin),
        &tls_dir.join("ca.pem"),
    )
    .unwrap();
    assert_eq!(status, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_completes_the_tls_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("tls");
    let server = ServerProcess::start_in(
        dir.path(),
        &[
            "--tls-self-signed",
            tls_dir.to_str().unwrap(),
            "--tls-handshake-timeout",
            "1",
        ],
    )
    .await;
    let authority = server.origin.trim_start_matches("https://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(8), stream.read(&mut buf))
        .await
        .expect("the server kept a silent TLS client past the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(800));
}
