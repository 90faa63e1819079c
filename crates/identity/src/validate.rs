//! Validating the bearer token of a request: whose it is, and that it is
//! genuine, current and meant for this API. Nothing here trusts the token
//! before its signature has been checked with a key Palisade holds or fetched
//! from a configured issuer.

use crate::keys;
use crate::tokens::{issuer, Claims, TokenVersion, ACCEPTED_AUDIENCES, CLOCK_SKEW_SECONDS};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use palisade_domain::{Clock, Store, StoreError};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a token is refused (401), said so that its owner can fix it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("The request has no Authorization header with a bearer token.")]
    Missing,
    #[error("The Authorization header is not of the form 'Bearer <token>'.")]
    NotBearer,
    #[error("The bearer token is malformed: {0}.")]
    Malformed(String),
    #[error("The token is signed with {0}; only RS256 is accepted.")]
    Algorithm(String),
    #[error("The token names no signing key (kid).")]
    MissingKid,
    #[error("The token's issuer {0} is not trusted.")]
    UntrustedIssuer(String),
    #[error("The token is signed with key {0}, which the issuer does not (or no longer) publish.")]
    UnknownKey(String),
    #[error("The token's signature is invalid.")]
    BadSignature,
    #[error("The token is for audience {0}, not for this API.")]
    WrongAudience(String),
    #[error("The token expired.")]
    Expired,
    #[error("The token is not valid yet (nbf is in the future).")]
    NotYetValid,
    #[error("The keys of issuer {0} cannot be fetched: {1}")]
    IssuerUnreachable(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The longest Authorization header read; real tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token of an `Authorization: Bearer <token>` header value. Its
/// characters are checked by [`check_token_syntax`] when it is verified, not
/// here: a token verified before is known to be well formed.
pub fn bearer_token(header: Option<&[u8]>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?;
    if value.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("it is too long".into()));
    }
    let value = std::str::from_utf8(value).map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed("it is empty".into()));
    }
    Ok(token)
}

/// A JWT is base64url parts joined by dots.
pub fn check_token_syntax(token: &str) -> Result<(), TokenError> {
    let well_formed = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='));
    if well_formed {
        Ok(())
    } else {
        Err(TokenError::Malformed(
            "it must be base64url parts joined by dots".into(),
        ))
    }
}

/// An OIDC provider whose tokens the API accepts (Entra ID, Keycloak...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuer {
    /// Exactly the `iss` of its tokens.
    pub issuer: String,
    /// Where its keys are; by default found through `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The Palisade tenant its tokens act in. Required: a provider's `tid`
    /// (if it has one) names its own tenants, not Palisade's.
    pub tenant_id: String,
    /// Accepted `aud` values; by default those of the MDE API.
    #[serde(default)]
    pub audiences: Vec<String>,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tenant_id: String,
    pub claims: Claims,
    /// Issued by a configured external provider rather than by Palisade.
    pub external: bool,
}

/// How long fetched keys are reused before they are read again.
const OWN_KEYS_TTL: Duration = Duration::from_secs(5);
const EXTERNAL_KEYS_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` makes the keys be read again, but not more often than this.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    read_at: Instant,
}

impl KeySet {
    fn is_fresh(&self, ttl: Duration) -> bool {
        self.read_at.elapsed() < ttl
    }
}

#[derive(Clone)]
pub struct Validator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    external: Arc<Vec<ExternalIssuer>>,
    http: reqwest::Client,
    // Keyed by tenant id (own keys) or issuer (external keys).
    own_keys: Arc<Mutex<HashMap<String, Arc<KeySet>>>>,
    external_keys: Arc<Mutex<HashMap<String, Arc<KeySet>>>>,
    /// Tokens that passed, keyed by the whole token. Not by a digest: hashing
    /// the whole token with SHA-256 on every call cost more than the rest of
    /// the lookup, and the map compares the whole key on a hit anyway; not by
    /// a part of it (the signature), which would let another payload borrow a
    /// verified token's entry. Only verified tokens are inserted, so callers
    /// cannot choose keys that collide (and foldhash is seeded per map).
    verified: Arc<Mutex<VerifiedTokens>>,
}

type VerifiedTokens = HashMap<Box<str>, RememberedToken, foldhash::fast::RandomState>;

/// A verified token and the origin it was presented at (its audience was checked against it).
struct RememberedToken {
    origin: Box<str>,
    verified: Arc<Verified>,
}

/// How many verified tokens are remembered; far more than clients hold at once.
/// Tokens are a few KiB (at most `MAX_TOKEN_BYTES`): some tens of MiB when full.
const VERIFIED_CACHE_ENTRIES: usize = 10_000;
/// How many tenants' key sets are remembered; only tenants that exist are.
const KEY_CACHE_ENTRIES: usize = 1_000;

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
    tid: Option<String>,
}

enum Source<'a> {
    Own(String),
    External(&'a ExternalIssuer),
}

impl Validator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        external: Vec<ExternalIssuer>,
    ) -> Self {
        Validator {
            store,
            clock,
            external: Arc::new(external),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with default TLS roots"),
            own_keys: Arc::default(),
            external_keys: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// Validates `token` presented to the API at `origin` (`https://host:port`).
    ///
    /// A token whose signature and claims were checked once is remembered
    /// until it expires, so that its clients pay for the RSA check
    /// once rather than on every call; its times are checked on every call.
    pub async fn verify(&self, token: &str, origin: &str) -> Result<Arc<Verified>, TokenError> {
        let remembered = self.verified.lock().ok().and_then(|cache| {
            cache
                .get(token)
                .filter(|entry| *entry.origin == *origin)
                .map(|entry| entry.verified.clone())
        });
        let verified = match remembered {
            Some(verified) => verified,
            None => {
                let verified = Arc::new(self.verify_once(token, origin).await?);
                if let Ok(mut cache) = self.verified.lock() {
                    if cache.len() >= VERIFIED_CACHE_ENTRIES {
                        let now = self.clock.now().unix_seconds();
                        cache.retain(|_, entry| {
                            entry.verified.claims.exp.saturating_add(CLOCK_SKEW_SECONDS) > now
                        });
                        if cache.len() >= VERIFIED_CACHE_ENTRIES {
                            cache.clear();
                        }
                    }
                    let entry = RememberedToken {
                        origin: origin.into(),
                        verified: verified.clone(),
                    };
                    cache.insert(token.into(), entry);
                }
                verified
            }
        };
        self.check_times(&verified.claims)?;
        Ok(verified)
    }

    fn check_times(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = self.clock.now_in(&claims.tid).unix_seconds();
        if now >= claims.exp.saturating_add(CLOCK_SKEW_SECONDS) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + CLOCK_SKEW_SECONDS {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// Every check but the times: header, issuer, key, signature, audience, tenant.
    async fn verify_once(&self, token: &str, origin: &str) -> Result<Verified, TokenError> {
        check_token_syntax(token)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        // Only to find which keys to check the signature with.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .map_err(|e| TokenError::Malformed(e.to_string()))?
            .claims;
        let iss = unverified
            .iss
            .ok_or(TokenError::UntrustedIssuer("(none)".into()))?;
        let source = self.source(&iss, unverified.tid.as_deref(), origin)?;
        let key = self.key(&source, &kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Times and audience are checked below, against the tenant's clock and with clear messages.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;

        let audience_ok = match &source {
            Source::External(external) if !external.audiences.is_empty() => {
                external.audiences.iter().any(|a| claims.aud.contains(a))
            }
            _ => ACCEPTED_AUDIENCES.iter().any(|a| claims.aud.contains(a)),
        };
        if !audience_ok {
            return Err(TokenError::WrongAudience(claims.aud.to_string()));
        }
        let (tenant_id, external) = match source {
            Source::Own(tid) => (tid, false),
            Source::External(external) => (external.tenant_id.clone(), true),
        };
        Ok(Verified {
            tenant_id,
            claims,
            external,
        })
    }

    fn source<'a>(
        &'a self,
        iss: &str,
        tid: Option<&str>,
        origin: &str,
    ) -> Result<Source<'a>, TokenError> {
        if let Some(tid) = tid {
            let own = [TokenVersion::V1, TokenVersion::V2]
                .iter()
                .any(|v| issuer(origin, tid, *v) == iss);
            if own {
                return Ok(Source::Own(tid.to_string()));
            }
        }
        self.external
            .iter()
            .find(|e| e.issuer == iss)
            .map(Source::External)
            .ok_or_else(|| TokenError::UntrustedIssuer(iss.to_string()))
    }

    async fn key(&self, source: &Source<'_>, kid: &str) -> Result<DecodingKey, TokenError> {
        let (cache, name, ttl) = match source {
            Source::Own(tid) => (&self.own_keys, tid.as_str(), OWN_KEYS_TTL),
            Source::External(e) => (&self.external_keys, e.issuer.as_str(), EXTERNAL_KEYS_TTL),
        };
        let cached = cache.lock().ok().and_then(|c| c.get(name).cloned());
        if let Some(set) = &cached {
            if let Some(key) = set.keys.get(kid) {
                if set.is_fresh(ttl) {
                    return Ok(key.clone());
                }
            } else if !set.is_fresh(REFRESH_AT_MOST_EVERY) {
                // An unknown kid may be a key rotated in since: read again below.
            } else {
                return Err(TokenError::UnknownKey(kid.to_string()));
            }
        }
        let set = Arc::new(match source {
            Source::Own(tid) => self.read_own_keys(tid).await?,
            Source::External(e) => self.fetch_external_keys(e).await?,
        });
        // An unknown tenant or issuer has no keys: remembering that would let
        // made-up names fill the cache.
        if !set.keys.is_empty() {
            if let Ok(mut cache) = cache.lock() {
                if cache.len() >= KEY_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(name.to_string(), set.clone());
            }
        }
        set.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))
    }

    async fn read_own_keys(&self, tenant_id: &str) -> Result<KeySet, TokenError> {
        let now = self.clock.now();
        let keys = self
            .store
            .signing_keys(tenant_id)
            .await?
            .into_iter()
            .filter(|k| keys::is_trusted(k, now))
            .filter_map(|k| {
                DecodingKey::from_rsa_components(&k.modulus, &k.exponent)
                    .ok()
                    .map(|d| (k.kid, d))
            })
            .collect();
        Ok(KeySet {
            keys,
            read_at: Instant::now(),
        })
    }

    async fn fetch_external_keys(&self, external: &ExternalIssuer) -> Result<KeySet, TokenError> {
        let unreachable = |e: String| TokenError::IssuerUnreachable(external.issuer.clone(), e);
        let jwks_uri = match &external.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                #[derive(Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    external.issuer.trim_end_matches('/')
                );
                let discovery = self
                    .get_json::<Discovery>(&url)
                    .await
                    .map_err(unreachable)?;
                // OIDC Discovery §4.3: the document must be the issuer's own.
                if discovery.issuer != external.issuer {
                    return Err(unreachable(format!(
                        "its discovery document names the issuer {}",
                        discovery.issuer
                    )));
                }
                discovery.jwks_uri
            }
        };
        if !is_secure_url(&jwks_uri) {
            return Err(unreachable(format!(
                "keys are fetched over https only (or from loopback), not from {jwks_uri}"
            )));
        }
        let set: JwkSet = self.get_json(&jwks_uri).await.map_err(unreachable)?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect();
        Ok(KeySet {
            keys,
            read_at: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        response.json().await.map_err(|e| format!("{url}: {e}"))
    }
}

/// `https://`, or `http://` to a loopback address (a provider on the same host).
fn is_secure_url(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(url) if url.scheme() == "https" => true,
        Ok(url) if url.scheme() == "http" => url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}
