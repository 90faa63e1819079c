//! The access tokens Palisade issues: RS256 JWTs with the claims Entra ID puts
//! into tokens for the WindowsDefenderATP API (contract §6.2).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use palisade_domain::identity::SigningKey;
use serde::{Deserialize, Serialize};

/// Audiences the API accepts (decisions: Tokens). The first is what tokens
/// are issued for when the client names none of the others.
pub const ACCEPTED_AUDIENCES: [&str; 4] = [
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "fc780465-2017-40d4-a0c5-307022471b92",
];

pub const TOKEN_LIFETIME_SECONDS: i64 = 3600;
/// Tolerated difference between the clocks of issuer and API.
pub const CLOCK_SKEW_SECONDS: i64 = 300;

/// Which token endpoint issued a token: it decides `iss` and `ver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    /// `/{tenant}/oauth2/token`: `iss = {base}/{tid}/`, `ver = 1.0`.
    V1,
    /// `/{tenant}/oauth2/v2.0/token`: `iss = {base}/{tid}/v2.0`, `ver = 2.0`.
    V2,
}

/// Palisade's issuer for tokens of `tenant_id`, as served from `origin` (`https://host:port`).
pub fn issuer(origin: &str, tenant_id: &str, version: TokenVersion) -> String {
    match version {
        TokenVersion::V1 => format!("{origin}/{tenant_id}/"),
        TokenVersion::V2 => format!("{origin}/{tenant_id}/v2.0"),
    }
}

/// The `aud` claim: one audience (Entra ID, and Palisade, send a string) or
/// several (RFC 7519 §4.1.3 allows an array; Keycloak sends one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience(pub Vec<String>);

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        self.0.iter().any(|a| a == audience)
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Audience(vec![audience.to_string()])
    }
}

impl From<String> for Audience {
    fn from(audience: String) -> Self {
        Audience(vec![audience])
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl Serialize for Audience {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => Audience(vec![one]),
            OneOrMany::Many(many) => Audience(many),
        })
    }
}

/// The claims of an access token. Optional ones are absent rather than null,
/// as in Entra ID tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Claims {
    pub aud: Audience,
    pub iss: String,
    /// Optional in other providers' tokens (OIDC requires only `exp` of these).
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub nbf: i64,
    pub exp: i64,
    /// Entra ID's tenant; absent in other providers' tokens.
    #[serde(default)]
    pub tid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ver: Option<String>,
    #[serde(default)]
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// The client: `appid` in v1 tokens, `azp` in v2 tokens; Palisade sets both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_displayname: Option<String>,
    /// `app` or `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    /// Application permissions (client credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Delegated permissions, space-separated (user tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An ID token's: the client's nonce, as its authorization request sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl Claims {
    /// The user's sign-in name, from whichever claim the issuer uses.
    pub fn username(&self) -> Option<&str> {
        self.upn
            .as_deref()
            .or(self.preferred_username.as_deref())
            .or(self.unique_name.as_deref())
    }

    /// The client the token was issued to.
    pub fn client_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// A delegated (user) token carries scopes or says it is a user's; an
    /// application token does neither.
    pub fn is_delegated(&self) -> bool {
        self.scp.is_some() || self.idtyp.as_deref() == Some("user")
    }
}

/// Signs `claims` with `key` (RS256, `kid` in the header), its private key opened.
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    let encoding = EncodingKey::from_rsa_pem(key.private_key.as_bytes())?;
    jsonwebtoken::encode(&header, claims, &encoding)
}
