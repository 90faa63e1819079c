//! RSA signing keys: made per tenant, rotated, published as a JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use palisade_contract::Timestamp;
use palisade_domain::identity::SigningKey;
use rand::RngCore;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;

const RSA_BITS: usize = 2048;

/// How long a retired key keeps verifying tokens: the longest a token it
/// signed can still be valid (lifetime and clock skew).
pub const RETIRED_KEY_GRACE_SECONDS: i64 =
    crate::tokens::TOKEN_LIFETIME_SECONDS + crate::tokens::CLOCK_SKEW_SECONDS;

/// A new RSA-2048 key for `tenant_id`, with a random `kid`.
pub fn generate(tenant_id: &str, now: Timestamp) -> SigningKey {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
        .expect("RSA key generation with the OS random source");
    let mut kid = [0u8; 20];
    rand::rng().fill_bytes(&mut kid);
    SigningKey {
        tenant_id: tenant_id.to_string(),
        kid: URL_SAFE_NO_PAD.encode(kid),
        private_key: private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a fresh RSA key encodes")
            .to_string(),
        modulus: URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        exponent: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        created_at: now,
        retired_at: None,
    }
}

/// Whether tokens signed with `key` may still be valid at `now`.
pub fn is_trusted(key: &SigningKey, now: Timestamp) -> bool {
    key.retired_at
        .is_none_or(|retired| retired.plus_seconds(RETIRED_KEY_GRACE_SECONDS) > now)
}

/// The key new tokens are signed with: the newest one not retired.
pub fn active(keys: &[SigningKey]) -> Option<&SigningKey> {
    keys.iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| k.created_at)
}

/// `{"keys": [...]}` as Entra ID's `discovery/v2.0/keys` serves it.
#[derive(Debug, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
    pub issuer: String,
}

/// The public half of every key that may verify a token now.
pub fn jwks(keys: &[SigningKey], issuer: &str, now: Timestamp) -> Jwks {
    Jwks {
        keys: keys
            .iter()
            .filter(|k| is_trusted(k, now))
            .map(|k| Jwk {
                kty: "RSA",
                use_: "sig",
                alg: "RS256",
                kid: k.kid.clone(),
                n: k.modulus.clone(),
                e: k.exponent.clone(),
                issuer: issuer.to_string(),
            })
            .collect(),
    }
}
