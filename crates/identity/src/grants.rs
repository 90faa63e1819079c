//! What the sign-in flows hand out and take back once: authorization codes,
//! device codes, refresh tokens. Each is a random secret the client holds;
//! the store keeps only its SHA-256 (`OAuthGrant::key`), so that a copy of
//! the database redeems nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An authorization code is redeemed within minutes (Entra: 10).
pub const CODE_LIFETIME_SECONDS: i64 = 600;
/// A device code waits this long for its user (Entra: 15 minutes).
pub const DEVICE_CODE_LIFETIME_SECONDS: i64 = 900;
/// How often a device may poll (Entra: 5 seconds).
pub const DEVICE_POLL_INTERVAL_SECONDS: i64 = 5;
/// A refresh token lasts 90 days (Entra's default), each use giving a new one.
pub const REFRESH_LIFETIME_SECONDS: i64 = 90 * 24 * 3600;

/// A new secret: 32 random bytes, base64url.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key a secret is kept under.
pub fn key_of(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Letters and digits no one misreads (no 0/O, 1/I/L), as people type them.
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const USER_CODE_LENGTH: usize = 9;

/// A device code's code for people: 9 characters (31^9 of them), as Entra's.
pub fn new_user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LENGTH)
        .map(|_| USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect()
}

/// A user code as typed (any case, spaces or dashes) as it is kept; none if
/// it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        code.len() == USER_CODE_LENGTH && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then_some(code)
}

/// Whether `uri` may be registered as a redirect URI: absolute, without a
/// fragment (RFC 6749 §3.1.2), HTTPS, or HTTP only to the loopback (a native
/// app's listener, RFC 8252 §7.3), or a private scheme (`myapp://`).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.fragment().is_some() {
        return Err("a redirect URI has no fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("plain http is allowed only to localhost, 127.0.0.1 or [::1]".into()),
        "javascript" | "data" | "file" | "vbscript" => {
            Err(format!("the {} scheme is not a redirect URI", url.scheme()))
        }
        _ => Ok(()),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// Whether `asked` names one of `registered`: the same URL, except that a
/// loopback HTTP URI matches on any port (RFC 8252 §7.3: a native app
/// listens on the port it gets), as Entra matches `http://localhost`.
pub fn redirect_uri_registered(registered: &[String], asked: &str) -> bool {
    let Ok(asked_url) = url::Url::parse(asked) else {
        return false;
    };
    registered.iter().any(|uri| {
        if uri == asked {
            return true;
        }
        let Ok(uri) = url::Url::parse(uri) else {
            return false;
        };
        let loopback = uri.scheme() == "http" && is_loopback(&uri);
        loopback
            && asked_url.scheme() == "http"
            && asked_url.host_str() == uri.host_str()
            && asked_url.path() == uri.path()
            && asked_url.query() == uri.query()
            && asked_url.fragment().is_none()
    })
}

/// What a grant carries (`OAuthGrant::details`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantDetails {
    /// The scope asked for (v2), as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resource asked for (v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// A code's redirect URI, which its redemption must name again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// A code's PKCE challenge and method (`S256` or `plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_method: Option<String>,
    /// The client's nonce, put into the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl GrantDetails {
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("grant details serialize")
    }

    pub fn from_value(value: &serde_json::Value) -> GrantDetails {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}

/// The S256 PKCE challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` answers the PKCE `challenge` (RFC 7636 §4.6).
pub fn pkce_matches(challenge: &str, method: &str, verifier: &str) -> bool {
    let valid_verifier = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid_verifier {
        return false;
    }
    let computed = match method {
        "S256" => pkce_challenge(verifier),
        _ => verifier.to_string(),
    };
    // Both sides are public once the code is redeemed; what matters is that
    // only the holder of the verifier redeems it.
    computed == challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifier_matches_its_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(challenge, "S256", verifier));
        assert!(!pkce_matches(
            challenge,
            "S256",
            &verifier.replace('d', "e")
        ));
        assert!(!pkce_matches(challenge, "plain", verifier));
        assert!(pkce_matches(verifier, "plain", verifier));
        assert!(
            !pkce_matches("short", "plain", "short"),
            "verifiers are 43 to 128 characters"
        );
    }

    #[test]
    fn user_codes_are_read_as_people_type_them() {
        let code = new_user_code();
        assert_eq!(code.len(), 9);
        assert_eq!(
            normalize_user_code(&code.to_lowercase()),
            Some(code.clone())
        );
        let spaced = format!("{}-{} {}", &code[..3], &code[3..6], &code[6..]);
        assert_eq!(normalize_user_code(&spaced), Some(code));
        assert_eq!(
            normalize_user_code("ABCDEFGH0"),
            None,
            "0 is never in a code"
        );
        assert_eq!(normalize_user_code("ABC"), None);
    }

    #[test]
    fn redirect_uris_match_exactly_but_for_a_loopback_port() {
        let registered = vec![
            "https://app.example/callback".to_string(),
            "http://localhost".to_string(),
        ];
        assert!(redirect_uri_registered(
            &registered,
            "https://app.example/callback"
        ));
        assert!(!redirect_uri_registered(
            &registered,
            "https://app.example/callback/"
        ));
        assert!(!redirect_uri_registered(
            &registered,
            "https://app.example/callback?x=1"
        ));
        assert!(!redirect_uri_registered(
            &registered,
            "https://evil.example/callback"
        ));
        assert!(redirect_uri_registered(
            &registered,
            "http://localhost:53127"
        ));
        assert!(redirect_uri_registered(
            &registered,
            "http://localhost:53127/"
        ));
        assert!(!redirect_uri_registered(
            &registered,
            "http://localhost:53127/other"
        ));
        assert!(!redirect_uri_registered(
            &registered,
            "http://127.0.0.1:53127"
        ));
        assert!(check_redirect_uri("http://evil.example/").is_err());
        assert!(check_redirect_uri("https://app.example/cb#x").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("ms-appx-web://app").is_ok());
    }

    #[test]
    fn secrets_are_kept_by_their_hash() {
        let secret = new_secret();
        assert_eq!(secret.len(), 43);
        assert_eq!(key_of(&secret).len(), 64);
        assert_ne!(key_of(&secret), key_of(&new_secret()));
    }
}
