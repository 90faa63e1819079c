//! The sign-in flows' front half: the authorization endpoint's request
//! (authorization code with PKCE, RFC 6749 §4.1, RFC 7636) and the device
//! authorization request (RFC 8628), as Entra ID takes them. The pages a
//! person signs in on are the server's; what they decide is here.

use crate::grants::{self, GrantDetails};
use crate::service::{audience, OAuthError, TokenService};
use crate::TokenVersion;
use palisade_domain::identity::{AppRegistration, GrantKind, OAuthGrant, User};
use palisade_domain::StoreError;
use serde::{Deserialize, Serialize};

/// The parameters of an authorization request (query or form).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeQuery {
    pub client_id: Option<String>,
    pub response_type: Option<String>,
    pub redirect_uri: Option<String>,
    /// v2: the scopes; v1 names a `resource` instead.
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// `query` (the default), `fragment` or `form_post`.
    pub response_mode: Option<String>,
    /// A user name to put into the sign-in form.
    pub login_hint: Option<String>,
}

/// How the answer goes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    /// A form the browser posts to the redirect URI.
    FormPost,
}

/// An answer for the client's redirect URI: a code, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl Redirect {
    /// The URL a browser is sent to (query and fragment modes).
    pub fn location(&self) -> String {
        let encoded = serde_urlencoded::to_string(&self.params).unwrap_or_default();
        match self.mode {
            ResponseMode::Fragment => format!("{}#{encoded}", self.redirect_uri),
            _ if self.redirect_uri.contains('?') => format!("{}&{encoded}", self.redirect_uri),
            _ => format!("{}?{encoded}", self.redirect_uri),
        }
    }
}

/// A valid authorization request: the person may sign in.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub app: AppRegistration,
    pub version: TokenVersion,
    redirect_uri: String,
    mode: ResponseMode,
    state: Option<String>,
    details: GrantDetails,
    pub login_hint: Option<String>,
}

/// Why an authorization request was refused.
#[derive(Debug, Clone)]
pub enum AuthorizeRefusal {
    /// The tenant, the client or its redirect URI cannot be trusted: shown to
    /// the person, never sent anywhere (RFC 6749 §4.1.2.1).
    Shown(OAuthError),
    /// Sent back to the client's (registered) redirect URI.
    Redirected(Redirect),
}

impl From<StoreError> for AuthorizeRefusal {
    fn from(error: StoreError) -> Self {
        AuthorizeRefusal::Shown(error.into())
    }
}

impl Authorization {
    /// Where the answer goes (registered).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The refusal `error` of this request, for its redirect URI.
    pub fn refusal(&self, error: &OAuthError) -> Redirect {
        self.redirect(vec![
            ("error".into(), error.error.to_string()),
            ("error_description".into(), error.description.clone()),
        ])
    }

    fn redirect(&self, mut params: Vec<(String, String)>) -> Redirect {
        if let Some(state) = &self.state {
            params.push(("state".into(), state.clone()));
        }
        Redirect {
            redirect_uri: self.redirect_uri.clone(),
            mode: self.mode,
            params,
        }
    }
}

/// A device code made for a client to poll with, and the code for its user.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAuthorization {
    pub user_code: String,
    pub device_code: String,
    /// v2's name; v1 calls it `verification_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_url: Option<String>,
    pub expires_in: i64,
    pub interval: i64,
    pub message: String,
}

/// A device code waiting for its user, as the verification page shows it.
#[derive(Debug, Clone)]
pub struct PendingDevice {
    pub grant: OAuthGrant,
    pub app: AppRegistration,
}

impl TokenService {
    /// Checks an authorization request to `tenant_id` in the order that
    /// keeps a forged one from sending anything to an unregistered place.
    pub async fn authorization(
        &self,
        tenant_id: &str,
        version: TokenVersion,
        origin: &str,
        query: &AuthorizeQuery,
    ) -> Result<Authorization, AuthorizeRefusal> {
        self.require_tenant(tenant_id)
            .await
            .map_err(AuthorizeRefusal::Shown)?;
        let app = self
            .client(tenant_id, query.client_id.as_deref(), None)
            .await
            .map_err(AuthorizeRefusal::Shown)?;
        let registered = crate::console::redirect_uris(&app, origin);
        let redirect_uri = match (&query.redirect_uri, registered.as_slice()) {
            (Some(uri), registered) if grants::redirect_uri_registered(registered, uri) => {
                uri.clone()
            }
            (Some(uri), _) => {
                return Err(AuthorizeRefusal::Shown(OAuthError::new(
                    400,
                    "invalid_request",
                    50011,
                    format!("The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the application '{}'.", app.client_id),
                )))
            }
            (None, [only]) => only.clone(),
            (None, _) => return Err(AuthorizeRefusal::Shown(OAuthError::missing("redirect_uri"))),
        };
        let mode = match query.response_mode.as_deref() {
            None | Some("query") => ResponseMode::Query,
            Some("fragment") => ResponseMode::Fragment,
            Some("form_post") => ResponseMode::FormPost,
            Some(_) => ResponseMode::Query,
        };
        let authorization = Authorization {
            version,
            redirect_uri,
            mode,
            state: query.state.clone(),
            login_hint: query.login_hint.clone(),
            details: GrantDetails {
                scope: query.scope.clone(),
                resource: query.resource.clone(),
                redirect_uri: query.redirect_uri.clone(),
                code_challenge: query.code_challenge.clone(),
                code_challenge_method: query.code_challenge.as_ref().map(|_| {
                    query
                        .code_challenge_method
                        .clone()
                        .unwrap_or_else(|| "plain".into())
                }),
                nonce: query.nonce.clone(),
            },
            app,
        };
        let refuse =
            |error: OAuthError| AuthorizeRefusal::Redirected(authorization.refusal(&error));
        if let Some(mode) = query.response_mode.as_deref() {
            if !["query", "fragment", "form_post"].contains(&mode) {
                return Err(refuse(OAuthError::new(
                    400,
                    "invalid_request",
                    900144,
                    format!("The response_mode '{mode}' is not one of query, fragment, form_post."),
                )));
            }
        }
        match query.response_type.as_deref() {
            Some("code") => {}
            None => return Err(refuse(OAuthError::missing("response_type"))),
            Some(other) => {
                return Err(refuse(OAuthError::new(
                    400,
                    "unsupported_response_type",
                    700054,
                    format!("response_type '{other}' is not enabled for the application; Palisade issues authorization codes (response_type=code)."),
                )))
            }
        }
        audience(version, query.scope.as_deref(), query.resource.as_deref()).map_err(refuse)?;
        match (&query.code_challenge, query.code_challenge_method.as_deref()) {
            (Some(challenge), None | Some("S256" | "plain"))
                if (43..=128).contains(&challenge.len()) => {}
            (Some(_), Some(method)) if method != "S256" && method != "plain" => {
                return Err(refuse(OAuthError::new(
                    400,
                    "invalid_request",
                    501491,
                    format!("The code_challenge_method '{method}' is not supported: use S256."),
                )))
            }
            (Some(_), _) => {
                return Err(refuse(OAuthError::new(
                    400,
                    "invalid_request",
                    501491,
                    "The code_challenge must be 43 to 128 characters (RFC 7636 §4.2).",
                )))
            }
            // A public client has no secret to bind its code to: only PKCE
            // keeps a code caught on its way back from being redeemed.
            (None, _) if authorization.app.allow_public_client => {
                return Err(refuse(OAuthError::new(
                    400,
                    "invalid_request",
                    9002325,
                    "Proof Key for Code Exchange is required for public clients: send code_challenge (and code_challenge_method=S256).",
                )))
            }
            (None, _) => {}
        }
        Ok(authorization)
    }

    /// A code for `user`'s sign-in, sent to the client's redirect URI.
    pub async fn grant_code(
        &self,
        authorization: &Authorization,
        user: &User,
    ) -> Result<Redirect, OAuthError> {
        let app = &authorization.app;
        let now = self.clock.now_in(&app.tenant_id);
        let code = grants::new_secret();
        self.store
            .put_grant(&OAuthGrant {
                key: grants::key_of(&code),
                tenant_id: app.tenant_id.clone(),
                kind: GrantKind::Code,
                client_id: app.client_id.clone(),
                user_id: Some(user.id.clone()),
                family: grants::new_secret(),
                user_code: None,
                details: authorization.details.to_value(),
                created_at: now,
                expires_at: now.plus_seconds(grants::CODE_LIFETIME_SECONDS),
                used_at: None,
                polled_at: None,
            })
            .await?;
        Ok(authorization.redirect(vec![("code".into(), code)]))
    }

    /// A device authorization request (`/devicecode`): a device code for the
    /// client to poll with and a user code for the person, who enters it at
    /// `{origin}/devicelogin`. Only apps that allow public client flows.
    pub async fn start_device_flow(
        &self,
        tenant_id: &str,
        version: TokenVersion,
        origin: &str,
        client_id: Option<&str>,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<DeviceAuthorization, OAuthError> {
        self.require_tenant(tenant_id).await?;
        let app = self.client(tenant_id, client_id, None).await?;
        if !app.allow_public_client {
            return Err(OAuthError::new(
                400,
                "invalid_client",
                7000218,
                format!("The application '{}' does not allow public client flows: the device code flow needs 'Allow public client flows' (palisade apps put --public-client).", app.client_id),
            ));
        }
        audience(version, scope, resource)?;
        let now = self.clock.now_in(tenant_id);
        let device_code = grants::new_secret();
        let user_code = grants::new_user_code();
        self.store
            .put_grant(&OAuthGrant {
                key: grants::key_of(&device_code),
                tenant_id: tenant_id.to_string(),
                kind: GrantKind::Device,
                client_id: app.client_id.clone(),
                user_id: None,
                family: grants::new_secret(),
                user_code: Some(user_code.clone()),
                details: GrantDetails {
                    scope: scope.map(str::to_string),
                    resource: resource.map(str::to_string),
                    ..GrantDetails::default()
                }
                .to_value(),
                created_at: now,
                expires_at: now.plus_seconds(grants::DEVICE_CODE_LIFETIME_SECONDS),
                used_at: None,
                polled_at: None,
            })
            .await?;
        let page = format!("{origin}/devicelogin");
        Ok(DeviceAuthorization {
            message: format!("To sign in, use a web browser to open the page {page} and enter the code {user_code} to authenticate."),
            user_code,
            device_code,
            verification_uri: (version == TokenVersion::V2).then(|| page.clone()),
            verification_url: (version == TokenVersion::V1).then_some(page),
            expires_in: grants::DEVICE_CODE_LIFETIME_SECONDS,
            interval: grants::DEVICE_POLL_INTERVAL_SECONDS,
        })
    }

    /// The device code a person typed the user code of, while it waits for
    /// a user; none for a code unknown, expired or already approved.
    pub async fn pending_device(&self, typed: &str) -> Result<Option<PendingDevice>, StoreError> {
        let Some(user_code) = grants::normalize_user_code(typed) else {
            return Ok(None);
        };
        let Some(grant) = self.store.device_grant_by_user_code(&user_code).await? else {
            return Ok(None);
        };
        let now = self.clock.now_in(&grant.tenant_id);
        if grant.expires_at <= now || grant.user_id.is_some() || grant.used_at.is_some() {
            return Ok(None);
        }
        let app = self.store.app(&grant.tenant_id, &grant.client_id).await?;
        Ok(app.map(|app| PendingDevice { grant, app }))
    }

    /// Gives the device code to `user` (signed in at the verification page);
    /// the client's next poll gets the tokens. Whether it was still waiting.
    pub async fn approve_device(
        &self,
        pending: &PendingDevice,
        user: &User,
    ) -> Result<bool, StoreError> {
        let grant = &pending.grant;
        let now = self.clock.now_in(&grant.tenant_id);
        self.store
            .approve_device_grant(&grant.tenant_id, &grant.key, &user.id, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_put_their_answer_where_the_mode_says() {
        let redirect = Redirect {
            redirect_uri: "http://localhost:5000/cb".into(),
            mode: ResponseMode::Query,
            params: vec![
                ("code".into(), "a b".into()),
                ("state".into(), "s&t".into()),
            ],
        };
        assert_eq!(
            redirect.location(),
            "http://localhost:5000/cb?code=a+b&state=s%26t"
        );
        let fragment = Redirect {
            mode: ResponseMode::Fragment,
            ..redirect.clone()
        };
        assert_eq!(
            fragment.location(),
            "http://localhost:5000/cb#code=a+b&state=s%26t"
        );
        let with_query = Redirect {
            redirect_uri: "https://app.example/cb?x=1".into(),
            ..redirect
        };
        assert_eq!(
            with_query.location(),
            "https://app.example/cb?x=1&code=a+b&state=s%26t"
        );
    }
}
