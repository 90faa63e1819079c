//! HTTPS: with a certificate the operator gives (`--tls-cert`, `--tls-key`),
//! or with a local CA and a server certificate made once in a directory
//! (`--tls-self-signed DIR`), whose `ca.pem` clients are told to trust.
//! MDE clients (MSAL, azure-identity) accept only `https://` authorities.

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// A server certificate ready to serve, and the CA clients should trust (self-signed only).
pub struct Tls {
    pub config: RustlsConfig,
    pub ca_file: Option<PathBuf>,
}

/// rustls needs one process-wide crypto provider; Palisade uses ring throughout.
pub fn install_crypto_provider() {
    // Fails only if one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn load(source: &TlsSource) -> anyhow::Result<Tls> {
    install_crypto_provider();
    match source {
        TlsSource::Files { cert, key } => {
            let config = RustlsConfig::from_pem_chain_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot use the certificate {} with the key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            Ok(Tls {
                config,
                ca_file: None,
            })
        }
        TlsSource::SelfSigned { dir, names } => {
            let (cert, key) = self_signed(dir, names)?;
            let config = RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
                .await
                .context("cannot use the generated certificate")?;
            Ok(Tls {
                config,
                ca_file: Some(dir.join(CA_FILE)),
            })
        }
    }
}

const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const SERVER_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server-key.pem";
const NAMES_FILE: &str = "server-names.txt";

/// The names every self-signed server certificate carries.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The server certificate chain and key in `dir`, made (with the CA) when
/// missing, and remade when the names asked for change. The CA is kept, so
/// clients trusting `ca.pem` keep working across restarts.
fn self_signed(dir: &Path, extra_names: &[String]) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let (ca_pem, ca_key, ca_is_new) = match (
        std::fs::read_to_string(dir.join(CA_FILE)),
        std::fs::read_to_string(dir.join(CA_KEY_FILE)),
    ) {
        (Ok(cert), Ok(key)) => (cert, KeyPair::from_pem(&key).context("ca-key.pem")?, false),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            // It signs server certificates only, never another CA.
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params
                .distinguished_name
                .push(DnType::CommonName, "Palisade local CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key)?;
            write_private(&dir.join(CA_KEY_FILE), &key.serialize_pem())?;
            std::fs::write(dir.join(CA_FILE), cert.pem())?;
            (cert.pem(), key, true)
        }
    };
    let wanted = names.join("\n");
    let current = (
        std::fs::read_to_string(dir.join(SERVER_FILE)),
        std::fs::read_to_string(dir.join(SERVER_KEY_FILE)),
        std::fs::read_to_string(dir.join(NAMES_FILE)),
    );
    if let (Ok(cert), Ok(key), Ok(names)) = current {
        // A new CA did not sign the old certificate: make a new one.
        if names == wanted && !ca_is_new {
            return Ok((format!("{cert}{ca_pem}"), key));
        }
    }
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.pem")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Palisade server");
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&dir.join(SERVER_KEY_FILE), &key.serialize_pem())?;
    std::fs::write(dir.join(SERVER_FILE), cert.pem())?;
    std::fs::write(dir.join(NAMES_FILE), &wanted)?;
    Ok((format!("{}{ca_pem}", cert.pem()), key.serialize_pem()))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode on open: tighten it.
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(pem.as_bytes())?;
    Ok(())
}
