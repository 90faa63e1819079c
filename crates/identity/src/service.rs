//! The token service: Entra ID's token endpoint, discovery document and key
//! set, answering as Entra ID does so that MSAL, azure-identity and plain
//! scripts work by changing only the authority.

use crate::certificates::{check_assertion, JWT_BEARER};
use crate::grants::{self, GrantDetails};
use crate::keys::{self, Jwks};
use crate::lockout::{Account, AccountKind, Locked, Lockout};
use crate::sealing::KeySealer;
use crate::secrets::check_secret;
use crate::tokens::{
    self, issuer, Claims, TokenVersion, ACCEPTED_AUDIENCES, TOKEN_LIFETIME_SECONDS,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use palisade_contract::{Permission, Timestamp};
use palisade_domain::identity::{
    AppRegistration, GrantKind, GrantsOf, OAuthGrant, Redeemed, SigningKey, User,
};
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
    /// authorization_code: the code, the redirect URI it was sent to, the PKCE verifier.
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    /// The device-code grant's code (`device_code`, RFC 8628).
    pub device_code: Option<String>,
    /// A certificate credential: `client_assertion_type` is `JWT_BEARER`.
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    /// `1`: the answer carries `client_info` (MSAL asks, to key its cache).
    pub client_info: Option<String>,
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
    /// A user's sign-in asked for `offline_access` (v2), or any (v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// A user's sign-in asked for `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_info: Option<String>,
}

impl TokenResponse {
    /// The answer around a new access token, in the words of `version`'s endpoint.
    fn new(version: TokenVersion, audience: &str, claims: &Claims, access_token: String) -> Self {
        let v1 = version == TokenVersion::V1;
        TokenResponse {
            token_type: "Bearer",
            expires_in: TOKEN_LIFETIME_SECONDS - 1,
            ext_expires_in: TOKEN_LIFETIME_SECONDS - 1,
            expires_on: v1.then(|| claims.exp.to_string()),
            not_before: v1.then(|| claims.nbf.to_string()),
            resource: v1.then(|| audience.to_string()),
            scope: (!v1).then(|| match &claims.scp {
                Some(scp) => scp
                    .split(' ')
                    .map(|s| format!("{audience}/{s}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                None => format!("{audience}/.default"),
            }),
            access_token,
            refresh_token: None,
            id_token: None,
            client_info: None,
        }
    }
}

/// The grants the token endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    ClientCredentials,
    Password,
    AuthorizationCode,
    RefreshToken,
    DeviceCode,
}

/// RFC 8628's grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

impl Grant {
    const ALL: [Grant; 5] = [
        Grant::ClientCredentials,
        Grant::Password,
        Grant::AuthorizationCode,
        Grant::RefreshToken,
        Grant::DeviceCode,
    ];

    /// Its `grant_type`.
    fn name(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password => "password",
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
            Grant::DeviceCode => DEVICE_CODE_GRANT,
        }
    }

    fn parse(name: &str) -> Option<Grant> {
        Self::ALL.into_iter().find(|grant| grant.name() == name)
    }

    fn names() -> [&'static str; 5] {
        Self::ALL.map(Grant::name)
    }

    /// Every grant but client credentials acts for a user.
    fn signs_in_a_user(self) -> bool {
        self != Grant::ClientCredentials
    }
}

/// A user's sign-in, as the token endpoint turns it into tokens.
struct SignIn {
    user: User,
    /// The sign-in's grants (its code, refresh tokens) share it.
    family: String,
    /// What the client asks for now, else what the sign-in asked for.
    asked: GrantDetails,
    nonce: Option<String>,
}

/// The scope (v2) or resource (v1) a request names, or else the grant's.
fn asked(request: &TokenRequest, granted: Option<&GrantDetails>) -> GrantDetails {
    let granted = granted.cloned().unwrap_or_default();
    match (&request.scope, &request.resource) {
        (None, None) => GrantDetails {
            scope: granted.scope,
            resource: granted.resource,
            ..GrantDetails::default()
        },
        (scope, resource) => GrantDetails {
            scope: scope.clone(),
            resource: resource.clone(),
            ..GrantDetails::default()
        },
    }
}

fn invalid_grant(aadsts: u32, description: impl Into<String>) -> OAuthError {
    OAuthError::new(400, "invalid_grant", aadsts, description)
}

/// The token endpoint of `version`, as client assertions name it in `aud`.
pub fn token_endpoint(origin: &str, tenant_id: &str, version: TokenVersion) -> String {
    match version {
        TokenVersion::V1 => format!("{origin}/{tenant_id}/oauth2/token"),
        TokenVersion::V2 => format!("{origin}/{tenant_id}/oauth2/v2.0/token"),
    }
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
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
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
        self.require_tenant(tenant_id).await?;
        let name = request
            .grant_type
            .as_deref()
            .ok_or_else(|| OAuthError::missing("grant_type"))?;
        let grant = Grant::parse(name).ok_or_else(|| {
            OAuthError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!(
                    "The app requested an unsupported grant type '{name}'; Palisade supports {}.",
                    Grant::names().join(", ")
                ),
            )
        })?;
        let app = self
            .client(
                tenant_id,
                request.client_id.as_deref(),
                request.client_secret.as_deref(),
            )
            .await?;
        crate::console::refuse_other_grants(&app, grant.name())?;
        self.authenticate_client(&app, grant, origin, source, &request)
            .await?;
        let now = self.clock.now_in(tenant_id);
        let sign_in = match grant {
            Grant::ClientCredentials => {
                let (audience, _) = audience(
                    version,
                    request.scope.as_deref(),
                    request.resource.as_deref(),
                )?;
                let mut claims = self.claims(&app, version, origin, &audience, now);
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
                let access_token = self.sign(tenant_id, &claims).await?;
                return Ok(TokenResponse::new(
                    version,
                    &audience,
                    &claims,
                    access_token,
                ));
            }
            Grant::Password => {
                let username = request
                    .username
                    .as_deref()
                    .ok_or_else(|| OAuthError::missing("username"))?;
                let password = request
                    .password
                    .as_deref()
                    .ok_or_else(|| OAuthError::missing("password"))?;
                let user = self
                    .check_password(tenant_id, username, password, source)
                    .await?;
                SignIn {
                    user,
                    family: grants::new_secret(),
                    asked: asked(&request, None),
                    nonce: None,
                }
            }
            Grant::AuthorizationCode => {
                let code = request
                    .code
                    .as_deref()
                    .ok_or_else(|| OAuthError::missing("code"))?;
                let grant = self.redeem(&app, GrantKind::Code, code, now).await?;
                let details = GrantDetails::from_value(&grant.details);
                if request.redirect_uri != details.redirect_uri {
                    return Err(invalid_grant(
                        70000,
                        "The redirect_uri must be the one the authorization code was sent to.",
                    ));
                }
                if let (Some(challenge), method) =
                    (&details.code_challenge, &details.code_challenge_method)
                {
                    let verifier = request.code_verifier.as_deref().ok_or_else(|| {
                        invalid_grant(501481, "The code_verifier is missing: the authorization request sent a code_challenge.")
                    })?;
                    let method = method.as_deref().unwrap_or("plain");
                    if !grants::pkce_matches(challenge, method, verifier) {
                        return Err(invalid_grant(
                            501481,
                            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                        ));
                    }
                }
                self.sign_in_of(grant, &request).await?
            }
            Grant::RefreshToken => {
                let token = request
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| OAuthError::missing("refresh_token"))?;
                let grant = self.redeem(&app, GrantKind::Refresh, token, now).await?;
                self.sign_in_of(grant, &request).await?
            }
            Grant::DeviceCode => {
                let code = request
                    .device_code
                    .as_deref()
                    .ok_or_else(|| OAuthError::missing("device_code"))?;
                let grant = self.approved_device_grant(&app, code, now).await?;
                self.sign_in_of(grant, &request).await?
            }
        };
        let client_info = request.client_info.as_deref() == Some("1");
        self.user_tokens(&app, version, origin, sign_in, client_info, now)
            .await
    }

    /// Refuses a request to a tenant that does not exist.
    pub(crate) async fn require_tenant(&self, tenant_id: &str) -> Result<(), OAuthError> {
        if self.store.tenant(tenant_id).await?.is_none() {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                90002,
                format!("Tenant '{tenant_id}' not found. Check the tenant id in the authority."),
            ));
        }
        Ok(())
    }

    /// The app a request names, or Entra's answer for an unknown client.
    pub(crate) async fn client(
        &self,
        tenant_id: &str,
        client_id: Option<&str>,
        secret: Option<&str>,
    ) -> Result<AppRegistration, OAuthError> {
        let client_id = canonical_guid(client_id.ok_or_else(|| OAuthError::missing("client_id"))?);
        if client_id == crate::console::CONSOLE_CLIENT_ID {
            return Ok(crate::console::console_app(tenant_id));
        }
        match self.store.app(tenant_id, &client_id).await? {
            Some(app) => Ok(app),
            None => {
                // An unknown client costs the same hash check as a wrong secret,
                // so that the time taken does not tell which client ids exist.
                if let Some(secret) = secret {
                    check_secret(secret, None).await;
                }
                Err(OAuthError::new(
                    400,
                    "unauthorized_client",
                    UNKNOWN_CLIENT,
                    format!("Application with identifier '{client_id}' was not found in the directory '{tenant_id}'."),
                ))
            }
        }
    }

    /// The client proves who it is with a certificate's assertion or its
    /// secret; a public client (no secret) may only sign users in, and only
    /// if its app allows public client flows. So a user cannot borrow the
    /// permissions of a confidential app they hold no credential of.
    async fn authenticate_client(
        &self,
        app: &AppRegistration,
        grant: Grant,
        origin: &str,
        source: IpAddr,
        request: &TokenRequest,
    ) -> Result<(), OAuthError> {
        let tenant_id = app.tenant_id.as_str();
        if let Some(assertion) = request.client_assertion.as_deref() {
            if request.client_assertion_type.as_deref() != Some(JWT_BEARER) {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    900144,
                    format!("The request body must contain the following parameter: 'client_assertion_type' ({JWT_BEARER})."),
                ));
            }
            // The assertion is for this token endpoint (either version's URL).
            let audiences = [TokenVersion::V2, TokenVersion::V1]
                .map(|v| token_endpoint(origin, tenant_id, v))
                .to_vec();
            let now = self.clock.now_in(tenant_id).unix_seconds();
            return check_assertion(
                assertion,
                &app.client_id,
                &app.certificates,
                &audiences,
                now,
            )
            .map_err(|refusal| {
                OAuthError::new(401, "invalid_client", refusal.aadsts, refusal.description)
            });
        }
        if request.client_secret.is_none() && app.allow_public_client && grant.signs_in_a_user() {
            return Ok(());
        }
        let app_account = Account::new(tenant_id, AccountKind::App, &app.client_id);
        // Counted before the check: a request without a secret guesses nothing.
        let attempt = match request.client_secret {
            Some(_) => Some(
                self.lockout
                    .begin(&app_account, source)
                    .map_err(|locked| app_locked(app, locked))?,
            ),
            None => None,
        };
        check_client_secret(app, request.client_secret.as_deref()).await?;
        if let Some(attempt) = attempt {
            attempt.succeeded();
        }
        Ok(())
    }

    /// The user of `username` if `password` is theirs; counted towards the
    /// lock of that name (known or not, so that a lock tells no one which
    /// names exist). The password grant and the sign-in pages share it.
    pub async fn check_password(
        &self,
        tenant_id: &str,
        username: &str,
        password: &str,
        source: IpAddr,
    ) -> Result<User, OAuthError> {
        let user_account = Account::new(tenant_id, AccountKind::User, username);
        let attempt = self
            .lockout
            .begin(&user_account, source)
            .map_err(user_locked)?;
        let user = self.store.user_by_name(tenant_id, username).await?;
        // An unknown user costs the same hash check as a known one.
        let hash = user.as_ref().map(|u| u.password_hash.as_str());
        let matches = check_secret(password, hash).await;
        match user {
            Some(user) if matches => {
                attempt.succeeded();
                Ok(user)
            }
            _ => Err(invalid_grant(
                50126,
                "Error validating credentials due to invalid username or password.",
            )),
        }
    }

    /// Takes back a code or refresh token of `app` once. A replay revokes
    /// every grant of its sign-in (RFC 6749 §4.1.2, RFC 9700 §4.14.2): one of
    /// the two holders is not who the sign-in was for.
    async fn redeem(
        &self,
        app: &AppRegistration,
        kind: GrantKind,
        secret: &str,
        now: Timestamp,
    ) -> Result<OAuthGrant, OAuthError> {
        let tenant_id = app.tenant_id.as_str();
        let what = match kind {
            GrantKind::Code => "authorization code",
            GrantKind::Refresh => "refresh token",
            GrantKind::Device => "device code",
            GrantKind::Session => "console session",
        };
        let invalid = || {
            invalid_grant(70000, format!("The provided {what} is not valid: unknown, revoked, or issued to another client."))
        };
        match self
            .store
            .redeem_grant(tenant_id, &grants::key_of(secret), now)
            .await?
        {
            Redeemed::Fresh(grant) if grant.kind == kind && grant.client_id == app.client_id => {
                if grant.expires_at <= now {
                    return Err(invalid_grant(
                        70008,
                        format!("The provided {what} has expired."),
                    ));
                }
                Ok(grant)
            }
            Redeemed::Replayed(grant) if grant.kind == kind && grant.client_id == app.client_id => {
                self.store
                    .revoke_grants(tenant_id, GrantsOf::Family(&grant.family))
                    .await?;
                tracing::warn!(tenant = tenant_id, client = %app.client_id, kind = what, "a used grant was presented again: its sign-in is revoked");
                Err(invalid_grant(
                    54005,
                    format!("The {what} was already redeemed; every token of its sign-in is now revoked."),
                ))
            }
            _ => Err(invalid()),
        }
    }

    /// A device code a user approved, taken back once; until then Entra's
    /// polling answers (RFC 8628 §3.5).
    async fn approved_device_grant(
        &self,
        app: &AppRegistration,
        device_code: &str,
        now: Timestamp,
    ) -> Result<OAuthGrant, OAuthError> {
        let tenant_id = app.tenant_id.as_str();
        let key = grants::key_of(device_code);
        let grant = self
            .store
            .grant(tenant_id, &key)
            .await?
            .filter(|g| g.kind == GrantKind::Device && g.client_id == app.client_id)
            .ok_or_else(|| invalid_grant(70000, "The provided device code is not valid."))?;
        if grant.expires_at <= now {
            return Err(OAuthError::new(
                400,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
            ));
        }
        if grant.user_id.is_none() {
            // A poll within the interval (less a second of slack for the
            // client's timer) is told to slow down.
            let not_after = now.plus_seconds(1 - grants::DEVICE_POLL_INTERVAL_SECONDS);
            let on_time = self
                .store
                .poll_device_grant(tenant_id, &key, now, not_after)
                .await?;
            return Err(if on_time {
                OAuthError::new(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            } else {
                OAuthError::new(
                    400,
                    "slow_down",
                    70016,
                    format!(
                        "OAuth 2.0 device flow error. Poll at most every {} seconds.",
                        grants::DEVICE_POLL_INTERVAL_SECONDS
                    ),
                )
            });
        }
        match self.store.redeem_grant(tenant_id, &key, now).await? {
            Redeemed::Fresh(grant) => Ok(grant),
            _ => Err(invalid_grant(
                54005,
                "The device code was already redeemed.",
            )),
        }
    }

    /// The sign-in a redeemed grant goes on with: its user (if they still
    /// exist), its family, what it asked for (unless the request asks now),
    /// a code's nonce.
    async fn sign_in_of(
        &self,
        grant: OAuthGrant,
        request: &TokenRequest,
    ) -> Result<SignIn, OAuthError> {
        let user = match &grant.user_id {
            Some(id) => self.store.user(&grant.tenant_id, id).await?,
            None => None,
        };
        let user = user.ok_or_else(|| {
            invalid_grant(
                50173,
                "The provided grant has been revoked: its user no longer exists.",
            )
        })?;
        let details = GrantDetails::from_value(&grant.details);
        Ok(SignIn {
            user,
            asked: asked(request, Some(&details)),
            nonce: details.nonce,
            family: grant.family,
        })
    }

    /// The claims every token of `app` shares.
    fn claims(
        &self,
        app: &AppRegistration,
        version: TokenVersion,
        origin: &str,
        audience: &str,
        now: Timestamp,
    ) -> Claims {
        let now = now.unix_seconds();
        Claims {
            aud: audience.into(),
            iss: issuer(origin, &app.tenant_id, version),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECONDS,
            tid: app.tenant_id.clone(),
            ver: Some(match version {
                TokenVersion::V1 => "1.0".into(),
                TokenVersion::V2 => "2.0".into(),
            }),
            appid: Some(app.client_id.clone()),
            azp: Some(app.client_id.clone()),
            app_displayname: Some(app.display_name.clone()),
            ..Claims::default()
        }
    }

    async fn sign(&self, tenant_id: &str, claims: &Claims) -> Result<String, OAuthError> {
        let key = self.active_key(tenant_id).await?;
        tokens::sign(&key, claims)
            .map_err(|e| OAuthError::from(StoreError::Internal(format!("signing failed: {e}"))))
    }

    /// The tokens of a user's sign-in through `app`: an access token with
    /// the delegated permissions asked for, a new refresh token of the
    /// sign-in's family (`offline_access`, or any v1 request), an ID token
    /// (`openid`), `client_info` (when asked).
    async fn user_tokens(
        &self,
        app: &AppRegistration,
        version: TokenVersion,
        origin: &str,
        sign_in: SignIn,
        client_info: bool,
        now: Timestamp,
    ) -> Result<TokenResponse, OAuthError> {
        let SignIn {
            user,
            family,
            asked,
            nonce,
        } = sign_in;
        let (audience, requested) =
            audience(version, asked.scope.as_deref(), asked.resource.as_deref())?;
        let mut scopes: Vec<Permission> = Vec::new();
        for permission in app.permissions.iter().map(|p| p.delegated()) {
            let wanted = requested.as_ref().is_none_or(|r| r.contains(&permission));
            if wanted && !scopes.contains(&permission) {
                scopes.push(permission);
            }
        }
        if scopes.is_empty() {
            return Err(invalid_grant(
                65001,
                format!("The application '{}' has not been granted the delegated permissions requested.", app.display_name),
            ));
        }
        let mut claims = self.claims(app, version, origin, &audience, now);
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
        let access_token = self.sign(&app.tenant_id, &claims).await?;
        let mut response = TokenResponse::new(version, &audience, &claims, access_token);
        let oidc = |name: &str| {
            asked
                .scope
                .as_deref()
                .is_some_and(|s| s.split_whitespace().any(|item| item == name))
        };
        if version == TokenVersion::V1 || oidc("offline_access") {
            let secret = grants::new_secret();
            self.store
                .put_grant(&OAuthGrant {
                    key: grants::key_of(&secret),
                    tenant_id: app.tenant_id.clone(),
                    kind: GrantKind::Refresh,
                    client_id: app.client_id.clone(),
                    user_id: Some(user.id.clone()),
                    family,
                    user_code: None,
                    details: asked.to_value(),
                    created_at: now,
                    expires_at: now.plus_seconds(grants::REFRESH_LIFETIME_SECONDS),
                    used_at: None,
                    polled_at: None,
                })
                .await?;
            response.refresh_token = Some(secret);
        }
        if oidc("openid") {
            // The ID token is about the user, for the client (OIDC Core §2).
            let id_claims = Claims {
                aud: app.client_id.as_str().into(),
                iss: issuer(origin, &app.tenant_id, TokenVersion::V2),
                ver: Some("2.0".into()),
                appid: None,
                app_displayname: None,
                scp: None,
                idtyp: None,
                unique_name: None,
                upn: None,
                preferred_username: Some(user.username.clone()),
                nonce,
                ..claims.clone()
            };
            response.id_token = Some(self.sign(&app.tenant_id, &id_claims).await?);
        }
        if client_info {
            let info = json!({"uid": user.id, "utid": app.tenant_id}).to_string();
            response.client_info = Some(URL_SAFE_NO_PAD.encode(info));
        }
        Ok(response)
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
            "device_authorization_endpoint": format!("{base}/{oauth}/devicecode"),
            "jwks_uri": format!("{base}/{keys}"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
            "grant_types_supported": Grant::names(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ACCEPTED_AUDIENCES
                .iter()
                .map(|a| format!("{a}/.default"))
                .collect::<Vec<_>>(),
            "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "appid", "azp", "roles", "scp", "upn", "preferred_username", "name", "nonce"],
            "request_uri_parameter_supported": false,
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
pub(crate) fn audience(
    version: TokenVersion,
    scope: Option<&str>,
    resource: Option<&str>,
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
            let resource = resource
                .ok_or_else(|| OAuthError::missing("resource"))?
                .trim_end_matches('/');
            if !ACCEPTED_AUDIENCES.contains(&resource) {
                return Err(unknown(resource));
            }
            Ok((resource.to_string(), None))
        }
        TokenVersion::V2 => {
            let scope = scope.ok_or_else(|| OAuthError::missing("scope"))?;
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
