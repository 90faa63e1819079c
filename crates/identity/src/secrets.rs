//! Client secrets and passwords: generated strong, stored only as argon2 hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;

/// The PHC string (`$argon2id$v=19$...`) of `secret`, with a fresh random salt.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

/// Whether `secret` hashes to `hash`; a malformed hash matches nothing.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashes checked at once: each takes ~19 MiB and tens of milliseconds.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(cores)
});

/// A hash no secret matches, checked when there is no real one, so that an
/// unknown user takes as long to refuse as a wrong password.
static NO_SECRET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_secret(&new_secret()));

/// [`verify_secret`] off the async workers, a few at a time; `None` checks
/// against a hash nothing matches (and answers false) in the same time.
pub async fn check_secret(secret: &str, hash: Option<&str>) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    let (secret, hash, real) = (
        secret.to_string(),
        hash.map_or_else(|| NO_SECRET.clone(), str::to_string),
        hash.is_some(),
    );
    tokio::task::spawn_blocking(move || verify_secret(&secret, &hash) && real)
        .await
        .unwrap_or(false)
}

/// A new random secret: 32 bytes, base64url (43 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let secret = new_secret();
        let hash = hash_secret(&secret);
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains(&secret));
        assert!(verify_secret(&secret, &hash));
        assert!(!verify_secret("wrong", &hash));
        assert!(!verify_secret(&secret, "not a hash"));
        assert_ne!(hash_secret(&secret), hash, "salted");
    }
}
