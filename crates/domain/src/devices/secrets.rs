//! Onboarding tokens and device credentials: `{prefix}.{tenant}.{id}.{secret}`.
//!
//! The secret is 256 random bits, so a fast hash (SHA-256) is enough to keep
//! the stored form useless to a thief; a slow password hash would only make
//! every check-in cost milliseconds of CPU.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// A token as presented, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedSecret {
    pub tenant_id: String,
    pub id: String,
    secret: String,
}

impl PresentedSecret {
    /// Splits `text` if it has the form `{prefix}.{tenant}.{id}.{secret}`.
    pub fn parse(text: &str, prefix: &str) -> Option<PresentedSecret> {
        let rest = text.strip_prefix(prefix)?.strip_prefix('.')?;
        // From the right: tenant ids are the one part that may hold a dot.
        let (rest, secret) = rest.rsplit_once('.')?;
        let (tenant_id, id) = rest.rsplit_once('.')?;
        if [tenant_id, id, secret].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(PresentedSecret {
            tenant_id: tenant_id.to_string(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Whether the secret is the one `stored_hash` was made from.
    pub fn matches(&self, stored_hash: &str) -> bool {
        // Comparing digests leaks nothing about the secret, so no constant-time compare is needed.
        hash(&self.secret) == stored_hash
    }
}

/// The stored form of a 256-bit secret (also the control plane's operator token).
pub fn hash(secret: &str) -> String {
    crate::ids::hex(&Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, as URL-safe base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A new token for `tenant_id`/`id`: its text, shown once, and the hash to store.
pub fn issue(prefix: &str, tenant_id: &str, id: &str) -> (String, String) {
    let secret = new_secret();
    let stored = hash(&secret);
    (format!("{prefix}.{tenant_id}.{id}.{secret}"), stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_and_matches_only_its_hash() {
        let (text, stored) = issue("pot", "tenant.with.dots", "t1");
        let presented = PresentedSecret::parse(&text, "pot").unwrap();
        assert_eq!(presented.tenant_id, "tenant.with.dots");
        assert_eq!(presented.id, "t1");
        assert!(presented.matches(&stored));
        let (_, other) = issue("pot", "tenant.with.dots", "t1");
        assert!(!presented.matches(&other));
        assert!(PresentedSecret::parse(&text, "pdc").is_none());
        for bad in [
            "", "pot", "pot.", "pot.a.b", "pot..b.c", "pot.a..c", "pot.a.b.",
        ] {
            assert!(PresentedSecret::parse(bad, "pot").is_none(), "{bad}");
        }
    }
}
