//! Signing keys at rest: each private key is sealed with XChaCha20-Poly1305
//! under a key-encryption key kept outside the database (a key file, or an
//! environment variable), with its tenant and key id as associated data, so
//! that a copy of the database alone cannot mint tokens, and a sealed key
//! moved to another row does not open.
//!
//! A sealed key is stored in the same column as the PEM was, as
//! `sealed:v1:` and the base64 of the 24-byte nonce and the ciphertext, so no
//! schema change was needed; rows without the prefix are plaintext PEM from
//! databases made before, sealed by [`seal_stored_keys`] at start.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use palisade_domain::identity::SigningKey;
use palisade_domain::{Store, StoreError};
use std::path::Path;
use std::sync::Arc;

const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;
/// The key-encryption key: 256 bits.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error("the key-encryption key from {source_name} is not the base64 of {KEY_BYTES} bytes")]
    Malformed { source_name: String },
    #[error("cannot read the key-encryption key file {path}: {error}")]
    Unreadable { path: String, error: String },
    #[error("cannot create the key-encryption key file {path}: {error}")]
    Uncreatable { path: String, error: String },
    #[error("signing key {kid} of tenant {tenant_id} does not open with the key-encryption key from {source_name}: start with the key it was sealed with (--key-file or PALISADE_KEY_ENCRYPTION_KEY)")]
    WrongKey {
        tenant_id: String,
        kid: String,
        source_name: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seals and opens signing keys with one key-encryption key.
#[derive(Clone)]
pub struct KeySealer {
    cipher: Arc<XChaCha20Poly1305>,
    /// Where the key came from, for error messages: never the key itself.
    source_name: Arc<str>,
}

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySealer")
            .field("source", &self.source_name)
            .finish_non_exhaustive()
    }
}

/// The associated data binding a sealed key to its row.
fn associated_data(tenant_id: &str, kid: &str) -> Vec<u8> {
    format!("palisade signing key\0{tenant_id}\0{kid}").into_bytes()
}

impl KeySealer {
    /// The key given as base64 (a key file's content, or the environment
    /// variable); `source_name` says where it came from in errors.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Self, SealingError> {
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|b| b.len() == KEY_BYTES)
            .ok_or_else(|| SealingError::Malformed {
                source_name: source_name.to_string(),
            })?;
        Ok(KeySealer {
            cipher: Arc::new(XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| {
                SealingError::Malformed {
                    source_name: source_name.to_string(),
                }
            })?),
            source_name: source_name.into(),
        })
    }

    /// A fresh random key, as base64 (the content of a new key file).
    pub fn new_key_text() -> String {
        STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// A key of its own, kept nowhere: for tests and benchmarks whose
    /// database does not outlive the process.
    pub fn ephemeral() -> Self {
        Self::from_base64(&Self::new_key_text(), "a key of this process only")
            .expect("a fresh key is well formed")
    }

    /// The key in the file at `path`.
    pub fn read_file(path: &Path) -> Result<Self, SealingError> {
        let text = std::fs::read_to_string(path).map_err(|e| SealingError::Unreadable {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Self::from_base64(&text, &format!("the key file {}", path.display()))
    }

    /// Writes a new key file at `path`, readable by its owner only (0600),
    /// refusing to replace one that exists.
    pub fn create_file(path: &Path) -> Result<Self, SealingError> {
        use std::io::Write;
        let uncreatable = |e: std::io::Error| SealingError::Uncreatable {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let text = Self::new_key_text();
        let mut file = options.open(path).map_err(uncreatable)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(uncreatable)?;
        Self::from_base64(&text, &format!("the key file {}", path.display()))
    }

    /// Whether a stored private key is sealed (rather than plaintext PEM from before).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// `key` as the store keeps it: its private key sealed.
    pub fn seal(&self, key: &SigningKey) -> SigningKey {
        let aad = associated_data(&key.tenant_id, &key.kid);
        SigningKey {
            private_key: self.seal_text(&aad, &key.private_key),
            ..key.clone()
        }
    }

    /// `key` as read from the store, its private key opened (plaintext PEM
    /// from before passes as it is).
    pub fn open(&self, key: &SigningKey) -> Result<SigningKey, SealingError> {
        if !Self::is_sealed(&key.private_key) {
            return Ok(key.clone());
        }
        let aad = associated_data(&key.tenant_id, &key.kid);
        let private_key =
            self.open_text(&aad, &key.private_key)
                .ok_or_else(|| SealingError::WrongKey {
                    tenant_id: key.tenant_id.clone(),
                    kid: key.kid.clone(),
                    source_name: self.source_name.to_string(),
                })?;
        Ok(SigningKey {
            private_key,
            ..key.clone()
        })
    }

    /// `text` sealed, bound to `aad` (what it belongs to: it opens only
    /// with the same), as the store keeps it.
    pub fn seal_text(&self, aad: &[u8], text: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: text.as_bytes(),
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of a secret's size");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// The text `seal_text` sealed with `aad`; `None` if it was sealed with
    /// another key or for something else.
    pub fn open_text(&self, aad: &[u8], stored: &str) -> Option<String> {
        let sealed = STANDARD.decode(stored.strip_prefix(SEALED_PREFIX)?).ok()?;
        let (nonce, ciphertext) = sealed.split_first_chunk::<NONCE_BYTES>()?;
        let text = self
            .cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()?;
        String::from_utf8(text).ok()
    }

    /// Where the key came from (never the key), for error messages.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }
}

/// Whether any signing key in the store is sealed (then a key-encryption key
/// must be given, never made anew).
pub async fn any_sealed(store: &dyn Store) -> Result<bool, StoreError> {
    for tenant in store.tenants().await? {
        let keys = store.signing_keys(&tenant.id).await?;
        if keys.iter().any(|k| KeySealer::is_sealed(&k.private_key)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// At start: checks that every sealed key opens with `sealer` (a wrong key is
/// an error, never a reason to make new keys), and seals the plaintext keys
/// of databases made before. Returns how many it sealed.
pub async fn seal_stored_keys(
    store: &dyn Store,
    sealer: &KeySealer,
) -> Result<usize, SealingError> {
    let mut sealed = 0;
    for tenant in store.tenants().await? {
        for key in store.signing_keys(&tenant.id).await? {
            if KeySealer::is_sealed(&key.private_key) {
                sealer.open(&key)?;
            } else {
                let replacement = sealer.seal(&key);
                let replaced = store
                    .seal_signing_key(
                        &key.tenant_id,
                        &key.kid,
                        &key.private_key,
                        &replacement.private_key,
                    )
                    .await?;
                // Another node starting at once may have sealed it first.
                sealed += usize::from(replaced);
            }
        }
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::Timestamp;

    #[test]
    fn a_sealed_key_opens_with_its_key_and_row_only() {
        let sealer = KeySealer::ephemeral();
        let key = crate::keys::generate("t", Timestamp::now());
        let sealed = sealer.seal(&key);
        assert!(KeySealer::is_sealed(&sealed.private_key));
        assert!(!sealed.private_key.contains("BEGIN"));
        assert_eq!(sealer.open(&sealed).unwrap(), key);
        assert_ne!(
            sealer.seal(&key).private_key,
            sealed.private_key,
            "a fresh nonce"
        );
        assert!(matches!(
            KeySealer::ephemeral().open(&sealed),
            Err(SealingError::WrongKey { .. })
        ));
        let moved = SigningKey {
            kid: "another".into(),
            ..sealed.clone()
        };
        assert!(sealer.open(&moved).is_err(), "bound to its row");
        assert_eq!(
            sealer.open(&key).unwrap(),
            key,
            "plaintext from before passes"
        );
        assert!(KeySealer::from_base64("c2hvcnQ=", "test").is_err());
    }
}
