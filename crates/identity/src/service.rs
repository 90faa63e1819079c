//! The token service: Entra ID's token endpoint, discovery document and key
//! set, answering as Entra ID does so that MSAL, azure-identity and plain
//! scripts work by changing only the authority.

use crate::keys::{self, Jwks};
use crate::lockout::{Account, AccountKind, Locked, Lockout};
use crate::sealing::KeySealer;
use crate::secrets::check_secret;
use crate::tokens::{
    self, issuer, Claims, TokenVersion, ACCEPTED_AUDIENCES, TOKEN_LIFETIME_SECONDS,
};
use palisade_contract::{Permission, Timestamp};
use palisade_domain::identity::{AppRegistration, SigningKey};
use palisade_domain::{Clock, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// The form fields of a token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// v2: `https://api.securitycenter.microsoft.com/.default`.
    pub scope: Option<String>,
    /// v1: `https://api.securitycenter.microsoft.com`.
    pub resource: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A successful token response, as Entra ID words it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub expires_in: i64,
    pub ext_expires_in: i64,
    /// v1 only, as strings (Unix seconds), as the v1 endpoint sends them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// v2 only: the scope granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub access_token: String,
}

/// A refused token request: the OAuth2 error and Entra's AADSTS code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub aadsts: u32,
    pub description: String,
    /// When to try again (a locked account), sent as `Retry-After`.
    pub retry_after_seconds: Option<u64>,
}

impl OAuthError {
    pub fn new(
        status: u16,
        error: &'static str,
        aadsts: u32,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            aadsts,
            description: format!("AADSTS{aadsts}: {}", description.into()),
            retry_after_seconds: None,
        }
    }

    /// The client did not prove who it is (an unknown client, a missing or
    /// wrong secret): RFC 6749 §5.2 answers these 401 when it used HTTP Basic.
    pub fn is_client_authentication_failure(&self) -> bool {
        self.status == 401 || self.aadsts == UNKNOWN_CLIENT
    }

    pub fn missing(field: &str) -> Self {
        Self::new(
            400,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{field}'."),
        )
    }

    /// The JSON body, in Entra ID's shape.
    pub fn body(&self, trace_id: &str, now: Timestamp) -> Value {
        json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.aadsts],
            "timestamp": now.to_datetime().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": trace_id,
            "correlation_id": trace_id,
        })
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "token request failed in the store");
        OAuthError::new(
            503,
            "temporarily_unavailable",
            90033,
            "The token service is temporarily unavailable; retry shortly.",
        )
    }
}

/// A tenant or client id as Palisade keeps it: a GUID names the same tenant
/// or app in any case, and Palisade's ids (and so tokens' `iss`, `tid` and
/// `appid`) are lower case. Anything else is left as it is.
pub fn canonical_guid(id: &str) -> String {
    match uuid::Uuid::try_parse(id) {
        Ok(guid) if id.len() == 36 => guid.to_string(),
        _ => id.to_string(),
    }
}

/// AADSTS700016: the application was not found in the directory.
const UNKNOWN_CLIENT: u32 = 700016;

/// Scopes MSAL adds to every request; they ask for nothing of the API.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

#[derive(Clone)]
pub struct TokenService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Failed secrets and passwords, per app and per user name, and per place.
    lockout: Lockout,
    /// Seals signing keys before they are stored, and opens them to sign.
    sealer: KeySealer,
}

impl TokenService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, sealer: KeySealer) -> Self {
        TokenService {
            lockout: Lockout::new(clock.clone()),
            store,
            clock,
            sealer,
        }
    }

    /// The key new tokens of `tenant_id` are signed with, opened; made on
    /// first use. A key that does not open is an error, never a reason to
    /// make another.
    pub async fn active_key(&self, tenant_id: &str) -> Result<SigningKey, StoreError> {
        let keys = self.store.signing_keys(tenant_id).await?;
        if let Some(key) = keys::active(&keys) {
            return self
                .sealer
                .open(key)
                .map_err(|e| StoreError::Internal(e.to_string()));
        }
        self.rotate_key(tenant_id).await
    }

    /// Every signing key of `tenant_id`, newest first, opened.
    pub async fn signing_keys(&self, tenant_id: &str) -> Result<Vec<SigningKey>, StoreError> {
        self.store
            .signing_keys(tenant_id)
            .await?
            .iter()
            .map(|key| {
                self.sealer
                    .open(key)
                    .map_err(|e| StoreError::Internal(e.to_string()))
            })
            .collect()
    }

    /// Makes a new active key (stored sealed; returned opened); the old ones
    /// keep verifying the tokens they signed.
    pub async fn rotate_key(&self, tenant_id: &str) -> Result<SigningKey, StoreError> {
        let tenant_id = tenant_id.to_string();
        let now = self.clock.now();
        // RSA key generation takes a while; keep it off the async workers.
        let key = tokio::task::spawn_blocking(move || keys::generate(&tenant_id, now))
            .await
            .map_err(|e| StoreError::Internal(format!("key generation failed: {e}")))?;
        self.store
            .rotate_signing_key(&self.sealer.seal(&key))
            .await?;
        Ok(key)
    }

    /// Answers a token request to `/{tenant}/oauth2/token` (v1) or `/oauth2/v2.0/token` (v2)
    /// from `source`, the caller's address (where its wrong secrets are counted).
    pub async fn issue(
        &self,
        tenant_id: &str,
        version: TokenVersion,
        origin: &str,
        source: IpAddr,
        request: TokenRequest,
    ) -> Result<TokenResponse, OAuthError> {
        if self.store.tenant(tenant_id).await?.is_none() {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                90002,
                format!("Tenant '{tenant_id}' not found. Check the tenant id in the authority."),
            ));
        }
        let grant = request
            .grant_type
            .as_deref()
            .ok_or_else(|| OAuthError::missing("grant_type"))?;
        if grant != "client_credentials" && grant != "password" {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{grant}'; Palisade supports client_credentials and password."),
            ));
        }
        let client_id = canonical_guid(
            request
                .client_id
                .as_deref()
                .ok_or_else(|| OAuthError::missing("client_id"))?,
        );
        let client_id = client_id.as_str();
        let Some(app) = self.store.app(tenant_id, client_id).await? else {
            // An unknown client costs the same hash check as a wrong secret,
            // so that the time taken does not tell which client ids exist.
            if let Some(secret) = request.client_secret.as_deref() {
                check_secret(secret, None).await;
            }
            return Err(OAuthError::new(
                400,
                "unauthorized_client",
                UNKNOWN_CLIENT,
                format!("Application with identifier '{client_id}' was not found in the directory '{tenant_id}'."),
            ));
        };
        let (audience, requested) = audience(version, &request)?;
        let now = self.clock.now_in(tenant_id).unix_seconds();
        let mut claims = Claims {
            aud: audience.clone().into(),
            iss: issuer(origin, tenant_id, version),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECONDS,
            tid: tenant_id.to_string(),
            ver: Some(match version {
                TokenVersion::V1 => "1.0".into(),
                TokenVersion::V2 => "2.0".into(),
            }),
            appid: Some(app.client_id.clone()),
            azp: Some(app.client_id.clone()),
            app_displayname: Some(app.display_name.clone()),
            ..Claims::default()
        };
        // Every app is a confidential client: both grants authenticate it, so a
        // user cannot borrow the permissions of an app they hold no secret of.
        let app_account = Account::new(tenant_id, AccountKind::App, &app.client_id);
        // Counted before the check: a request without a secret guesses nothing.
        let attempt = if request.client_secret.is_some() {
            let attempt = self.lockout.begin(&app_account, source);
            Some(attempt.map_err(|locked| app_locked(&app, locked))?)
        } else {
            None
        };
        check_client_secret(&app, request.client_secret.as_deref()).await?;
        if let Some(attempt) = attempt {
            attempt.succeeded();
        }
        if grant == "client_credentials" {
            claims.sub = app.client_id.clone();
            claims.oid = Some(app.client_id.clone());
            claims.idtyp = Some("app".into());
            claims.roles = Some(
                app.permissions
                    .iter()
                    .filter(|p| p.is_application())
                    .map(|p| p.as_str().to_string())
                    .collect(),
            );
        } else {
            let username = request
                .username
                .as_deref()
                .ok_or_else(|| OAuthError::missing("username"))?;
            let password = request
                .password
                .as_deref()
                .ok_or_else(|| OAuthError::missing("password"))?;
            // Counted by the name asked for, known or not: a lock must not
            // tell which user names exist.
            let user_account = Account::new(tenant_id, AccountKind::User, username);
            let attempt = self
                .lockout
                .begin(&user_account, source)
                .map_err(user_locked)?;
            let user = self.store.user_by_name(tenant_id, username).await?;
            // An unknown user costs the same hash check as a known one.
            let hash = user.as_ref().map(|u| u.password_hash.as_str());
            let matches = check_secret(password, hash).await;
            let user = match user {
                Some(user) if matches => user,
                _ => {
                    drop(attempt);
                    return Err(OAuthError::new(
                        400,
                        "invalid_grant",
                        50126,
                        "Error validating credentials due to invalid username or password.",
                    ));
                }
            };
            attempt.succeeded();
            let mut scopes: Vec<Permission> = Vec::new();
            for permission in app.permissions.iter().map(|p| p.delegated()) {
                let wanted = requested.as_ref().is_none_or(|r| r.contains(&permission));
                if wanted && !scopes.contains(&permission) {
                    scopes.push(permission);
                }
            }
            if scopes.is_empty() {
                return Err(OAuthError::new(
                    400,
                    "invalid_grant",
                    65001,
                    format!("The application '{}' has not been granted the delegated permissions requested.", app.display_name),
                ));
            }
            claims.sub = user.id.clone();
            claims.oid = Some(user.id.clone());
            claims.idtyp = Some("user".into());
            claims.scp = Some(
                scopes
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            claims.upn = Some(user.username.clone());
            claims.unique_name = Some(user.username.clone());
            claims.name = Some(user.username.clone());
        }
        let key = self.active_key(tenant_id).await?;
        let access_token = tokens::sign(&key, &claims)
            .map_err(|e| OAuthError::from(StoreError::Internal(format!("signing failed: {e}"))))?;
        Ok(TokenResponse {
            token_type: "Bearer",
            expires_in: TOKEN_LIFETIME_SECONDS - 1,
            ext_expires_in: TOKEN_LIFETIME_SECONDS - 1,
            expires_on: (version == TokenVersion::V1).then(|| claims.exp.to_string()),
            not_before: (version == TokenVersion::V1).then(|| claims.nbf.to_string()),
            resource: (version == TokenVersion::V1).then(|| audience.clone()),
            scope: (version == TokenVersion::V2).then(|| match &claims.scp {
                Some(scp) => scp
                    .split(' ')
                    .map(|s| format!("{audience}/{s}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => format!("{audience}/.default"),
            }),
            access_token,
        })
    }

    /// The OpenID configuration of `tenant_id` (v2, or v1 without `/v2.0`).
    pub fn discovery(&self, origin: &str, tenant_id: &str, version: TokenVersion) -> Value {
        let (oauth, keys) = match version {
            TokenVersion::V1 => ("oauth2", "discovery/keys"),
            TokenVersion::V2 => ("oauth2/v2.0", "discovery/v2.0/keys"),
        };
        let base = format!("{origin}/{tenant_id}");
        json!({
            "issuer": issuer(origin, tenant_id, version),
            "token_endpoint": format!("{base}/{oauth}/token"),
            "authorization_endpoint": format!("{base}/{oauth}/authorize"),
            "jwks_uri": format!("{base}/{keys}"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["client_credentials", "password"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ACCEPTED_AUDIENCES
                .iter()
                .map(|a| format!("{a}/.default"))
                .collect::<Vec<_>>(),
            "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "appid", "azp", "roles", "scp", "upn"],
            "tenant_region_scope": null,
            "cloud_instance_name": "palisade",
        })
    }

    /// The keys that verify `tenant_id`'s tokens now, for `/discovery/v2.0/keys`.
    pub async fn jwks(&self, origin: &str, tenant_id: &str) -> Result<Option<Jwks>, StoreError> {
        if self.store.tenant(tenant_id).await?.is_none() {
            return Ok(None);
        }
        let mut keys = self.store.signing_keys(tenant_id).await?;
        if keys::active(&keys).is_none() {
            keys.insert(0, self.rotate_key(tenant_id).await?);
        }
        Ok(Some(keys::jwks(
            &keys,
            &issuer(origin, tenant_id, TokenVersion::V2),
            self.clock.now(),
        )))
    }
}

/// AADSTS50053: locked after too many wrong secrets or passwords.
const LOCKED: u32 = 50053;

/// A locked user: Entra ID's answer (400 `invalid_grant`), with `Retry-After`.
fn user_locked(locked: Locked) -> OAuthError {
    OAuthError {
        retry_after_seconds: Some(locked.retry_after_seconds),
        ..OAuthError::new(
            400,
            "invalid_grant",
            LOCKED,
            format!("The account is locked because the user tried to sign in too many times with an incorrect user ID or password. Try again in {} seconds.", locked.retry_after_seconds),
        )
    }
}

/// A locked app: 429 with `Retry-After` (decisions: Tokens), which MSAL and
/// azure-identity honour by waiting, rather than a 401 that looks like a wrong secret.
fn app_locked(app: &AppRegistration, locked: Locked) -> OAuthError {
    OAuthError {
        retry_after_seconds: Some(locked.retry_after_seconds),
        ..OAuthError::new(
            429,
            "invalid_client",
            LOCKED,
            format!("The application '{}' is locked because a wrong client secret was sent for it too many times. Try again in {} seconds.", app.client_id, locked.retry_after_seconds),
        )
    }
}

async fn check_client_secret(
    app: &AppRegistration,
    secret: Option<&str>,
) -> Result<(), OAuthError> {
    match secret {
        Some(secret) if check_secret(secret, Some(&app.secret_hash)).await => Ok(()),
        None => Err(OAuthError::new(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
        Some(_) => Err(OAuthError::new(
            401,
            "invalid_client",
            7000215,
            format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id),
        )),
    }
}

/// The audience asked for, and (v2 with named scopes) which permissions.
fn audience(
    version: TokenVersion,
    request: &TokenRequest,
) -> Result<(String, Option<Vec<Permission>>), OAuthError> {
    let unknown = |resource: &str| {
        OAuthError::new(
            400,
            "invalid_resource",
            500011,
            format!("The resource principal named {resource} was not found in the tenant. Palisade issues tokens for {}.", ACCEPTED_AUDIENCES.join(", ")),
        )
    };
    match version {
        TokenVersion::V1 => {
            let resource = request
                .resource
                .as_deref()
                .ok_or_else(|| OAuthError::missing("resource"))?
                .trim_end_matches('/');
            if !ACCEPTED_AUDIENCES.contains(&resource) {
                return Err(unknown(resource));
            }
            Ok((resource.to_string(), None))
        }
        TokenVersion::V2 => {
            let scope = request
                .scope
                .as_deref()
                .ok_or_else(|| OAuthError::missing("scope"))?;
            let mut audience: Option<&str> = None;
            let mut permissions = Vec::new();
            let mut default = false;
            for item in scope.split_whitespace() {
                if OIDC_SCOPES.contains(&item) {
                    continue;
                }
                let (resource, name) = item.rsplit_once('/').ok_or_else(|| unknown(item))?;
                if !ACCEPTED_AUDIENCES.contains(&resource) {
                    return Err(unknown(resource));
                }
                if audience.is_some_and(|a| a != resource) {
                    return Err(OAuthError::new(
                        400,
                        "invalid_scope",
                        70011,
                        "The provided value for the input parameter 'scope' is not valid: scopes of one resource only.",
                    ));
                }
                audience = Some(resource);
                if name == ".default" {
                    default = true;
                } else {
                    let permission = Permission::from_str(name).map_err(|_| {
                        OAuthError::new(
                            400,
                            "invalid_scope",
                            70011,
                            format!("The provided value for the input parameter 'scope' is not valid: unknown permission {name}."),
                        )
                    })?;
                    permissions.push(permission);
                }
            }
            let audience = audience.ok_or_else(|| OAuthError::missing("scope"))?;
            Ok((
                audience.to_string(),
                (!default && !permissions.is_empty()).then_some(permissions),
            ))
        }
    }
}
