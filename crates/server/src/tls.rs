//! HTTPS: with a certificate the operator gives (`--tls-cert`, `--tls-key`),
//! or with a local CA and a server certificate made once in a directory
//! (`--tls-self-signed DIR`), whose `ca.pem` clients are told to trust.
//! MDE clients (MSAL, azure-identity) accept only `https://` authorities.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the server's certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, names: Vec<String> },
}

/// A server certificate ready to serve, and the CA clients should trust (self-signed only).
pub struct Tls {
    pub config: Arc<ServerConfig>,
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
            let context = || {
                format!(
                    "cannot use the certificate {} with the key {}",
                    cert.display(),
                    key.display()
                )
            };
            let chain = std::fs::read(cert).with_context(context)?;
            let key = std::fs::read(key).with_context(context)?;
            Ok(Tls {
                config: server_config(&chain, &key).with_context(context)?,
                ca_file: None,
            })
        }
        TlsSource::SelfSigned { dir, names } => {
            let (cert, key) = self_signed(dir, names)?;
            Ok(Tls {
                config: server_config(cert.as_bytes(), key.as_bytes())
                    .context("cannot use the generated certificate")?,
                ca_file: Some(dir.join(CA_FILE)),
            })
        }
    }
}

/// A rustls server configuration for a PEM chain and key, offering HTTP/2
/// and HTTP/1.1 by ALPN.
pub fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate chain is not PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the certificate file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("the key is not a PEM private key")?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
/// clients trusting `ca.pem` keep working across restarts, unless it was
/// made by an earlier Palisade whose certificates strict verifiers refuse.
fn self_signed(dir: &Path, extra_names: &[String]) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    for name in extra_names {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let existing_ca = match (
        std::fs::read_to_string(dir.join(CA_FILE)),
        std::fs::read_to_string(dir.join(CA_KEY_FILE)),
    ) {
        (Ok(cert), Ok(key)) => Some((cert, KeyPair::from_pem(&key).context("ca-key.pem")?)),
        _ => None,
    };
    let existing_ca = existing_ca.filter(|(cert, _)| {
        let strict = passes_strict_verification(cert, Role::Ca);
        if !strict {
            tracing::warn!(
                "{} was made by an earlier Palisade and strict TLS clients (Python 3.13+, urllib3 2) refuse it: \
                 made a new CA and server certificate; clients must trust the new {} again",
                dir.join(CA_FILE).display(),
                dir.join(CA_FILE).display()
            );
        }
        strict
    });
    let (ca_pem, ca_key, ca_is_new) = match existing_ca {
        Some((cert, key)) => (cert, key, false),
        None => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
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
        if names == wanted && !ca_is_new && passes_strict_verification(&cert, Role::Server) {
            return Ok((format!("{cert}{ca_pem}"), key));
        }
    }
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.pem")?;
    let key = KeyPair::generate()?;
    let cert = server_params(names)?.signed_by(&key, &issuer)?;
    write_private(&dir.join(SERVER_KEY_FILE), &key.serialize_pem())?;
    std::fs::write(dir.join(SERVER_FILE), cert.pem())?;
    std::fs::write(dir.join(NAMES_FILE), &wanted)?;
    Ok((format!("{}{ca_pem}", cert.pem()), key.serialize_pem()))
}

/// The local CA: what OpenSSL's `-x509_strict` (Python 3.13's default
/// `VERIFY_X509_STRICT`) asks of a CA: key identifiers, a critical
/// basicConstraints CA:TRUE (rcgen writes it critical), key usage.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // It signs server certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "Palisade local CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A server certificate for `names`: key identifiers (rcgen writes the
/// subject's only with an explicit CA:FALSE), key usage and serverAuth.
fn server_params(names: Vec<String>) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Palisade server");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Ca,
    Server,
}

/// Whether a certificate in the directory has what strict verification
/// asks of its role; those of earlier versions lack the key identifiers.
fn passes_strict_verification(pem: &str, role: Role) -> bool {
    use x509_parser::extensions::ParsedExtension;
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let has = |wanted: fn(&ParsedExtension) -> bool| {
        cert.extensions()
            .iter()
            .any(|e| wanted(e.parsed_extension()))
    };
    let key_ids = has(|e| matches!(e, ParsedExtension::SubjectKeyIdentifier(_)))
        && has(|e| matches!(e, ParsedExtension::AuthorityKeyIdentifier(_)));
    let constraints = cert.basic_constraints().ok().flatten();
    let usage = cert.key_usage().ok().flatten().map(|u| u.value);
    match role {
        Role::Ca => {
            key_ids
                && constraints.is_some_and(|c| c.critical && c.value.ca)
                && usage.is_some_and(|u| u.key_cert_sign() && u.crl_sign() && u.digital_signature())
        }
        Role::Server => {
            key_ids
                && !constraints.is_some_and(|c| c.value.ca)
                && usage.is_some_and(|u| u.digital_signature() && u.key_encipherment())
                && cert
                    .extended_key_usage()
                    .ok()
                    .flatten()
                    .is_some_and(|u| u.value.server_auth)
        }
    }
}

/// Writes a secret (a private key, credentials) readable by its owner only.
pub fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
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
