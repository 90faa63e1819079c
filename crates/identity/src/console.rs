//! The web console's sign-in. The console is an OAuth client like any
//! other: it sends a person to the authorization endpoint with PKCE and
//! redeems the code at the token service. Its app is built in (every tenant
//! has it, nothing to register): a public client whose only redirect URI is
//! the console's own page on the origin the request came to, and which
//! may use no grant but the authorization code. A signed-in person then
//! holds a session: a random secret in a cookie, kept (as its hash) among
//! the grants, so that every node knows it, sign-out, a new password or the
//! user's deletion ends it, and the sweeper forgets it once expired.

use crate::grants;
use crate::service::{OAuthError, TokenService};
use palisade_contract::{Permission, Timestamp};
use palisade_domain::identity::{AppRegistration, GrantKind, GrantsOf, OAuthGrant, User};
use palisade_domain::StoreError;

/// The console's client id, the same in every tenant.
pub const CONSOLE_CLIENT_ID: &str = "5a1f2d3c-7e6b-4c8a-9d0e-c0de5e55c0de";
/// Where the authorization endpoint sends the console its code.
pub const CONSOLE_REDIRECT_PATH: &str = "/console/signed-in";
/// How long a console session lasts from its sign-in (a working day).
pub const SESSION_LIFETIME_SECONDS: i64 = 8 * 3600;

/// The console's app in `tenant_id`: granted every permission in its
/// delegated form, so that the signed-in user's MDE roles and device groups
/// alone decide what they may do, as in MDE's portal.
pub fn console_app(tenant_id: &str) -> AppRegistration {
    AppRegistration {
        tenant_id: tenant_id.to_string(),
        client_id: CONSOLE_CLIENT_ID.to_string(),
        display_name: "Palisade console".into(),
        permissions: <Permission as strum::VariantArray>::VARIANTS.to_vec(),
        secret_hash: String::new(),
        allow_public_client: true,
        redirect_uris: Vec::new(),
        certificates: Vec::new(),
        created_at: Timestamp::from_ticks(0),
    }
}

/// The redirect URIs an authorization request to `app` may name, reached at `origin`.
pub fn redirect_uris(app: &AppRegistration, origin: &str) -> Vec<String> {
    if app.client_id == CONSOLE_CLIENT_ID {
        vec![format!("{origin}{CONSOLE_REDIRECT_PATH}")]
    } else {
        app.redirect_uris.clone()
    }
}

/// A signed-in person's console session.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub user: User,
    /// What ends it (sign-out).
    pub family: String,
    /// The token its forms carry: derived from the cookie's secret, which
    /// no script can read (HttpOnly), so a page of another site cannot know it.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// The session cookie's value: the tenant (sessions are kept per tenant) and the secret.
fn cookie_value(tenant_id: &str, secret: &str) -> String {
    format!("{tenant_id}.{secret}")
}

fn csrf_token_of(secret: &str) -> String {
    grants::key_of(&format!("console-csrf:{secret}"))
}

impl TokenService {
    /// A new session for `user`; the value of its cookie.
    pub async fn start_console_session(&self, user: &User) -> Result<String, StoreError> {
        let now = self.clock.now_in(&user.tenant_id);
        let secret = grants::new_secret();
        self.store
            .put_grant(&OAuthGrant {
                key: grants::key_of(&secret),
                tenant_id: user.tenant_id.clone(),
                kind: GrantKind::Session,
                client_id: CONSOLE_CLIENT_ID.into(),
                user_id: Some(user.id.clone()),
                family: grants::new_secret(),
                user_code: None,
                details: serde_json::json!({}),
                created_at: now,
                expires_at: now.plus_seconds(SESSION_LIFETIME_SECONDS),
                used_at: None,
                polled_at: None,
            })
            .await?;
        Ok(cookie_value(&user.tenant_id, &secret))
    }

    /// The session a cookie's value names, if it is current and its user still exists.
    pub async fn console_session(
        &self,
        cookie: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let Some((tenant_id, secret)) = cookie.split_once('.') else {
            return Ok(None);
        };
        let now = self.clock.now_in(tenant_id);
        let grant = self.store.grant(tenant_id, &grants::key_of(secret)).await?;
        let Some(grant) = grant.filter(|g| g.kind == GrantKind::Session && g.expires_at > now)
        else {
            return Ok(None);
        };
        let Some(user_id) = grant.user_id.as_deref() else {
            return Ok(None);
        };
        let Some(user) = self.store.user(tenant_id, user_id).await? else {
            return Ok(None);
        };
        Ok(Some(ConsoleSession {
            user,
            family: grant.family,
            csrf_token: csrf_token_of(secret),
            expires_at: grant.expires_at,
        }))
    }

    /// Ends a session (sign-out).
    pub async fn end_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        self.store
            .revoke_grants(&session.user.tenant_id, GrantsOf::Family(&session.family))
            .await?;
        Ok(())
    }
}

/// The console's app may only sign people in through its own page.
pub(crate) fn refuse_other_grants(app: &AppRegistration, grant: &str) -> Result<(), OAuthError> {
    if app.client_id == CONSOLE_CLIENT_ID && grant != "authorization_code" {
        return Err(OAuthError::new(
            400,
            "unauthorized_client",
            700016,
            "The Palisade console's application signs people in through the console only (authorization_code).",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_redirects_only_to_its_own_page_on_the_origin_asked_at() {
        let app = console_app("t");
        assert_eq!(
            redirect_uris(&app, "https://palisade.example:8443"),
            ["https://palisade.example:8443/console/signed-in"]
        );
        assert!(app.allow_public_client && app.secret_hash.is_empty());
    }

    #[test]
    fn a_sessions_csrf_token_is_its_own_and_tells_nothing_of_the_secret() {
        let (a, b) = (grants::new_secret(), grants::new_secret());
        assert_ne!(csrf_token_of(&a), csrf_token_of(&b));
        assert_eq!(csrf_token_of(&a), csrf_token_of(&a));
        assert!(!csrf_token_of(&a).contains(&a));
        assert!(refuse_other_grants(&console_app("t"), "password").is_err());
        assert!(refuse_other_grants(&console_app("t"), "authorization_code").is_ok());
    }
}
