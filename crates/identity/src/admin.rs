//! Administration of a tenant's identities: app registrations, users and
//! signing keys. The CLI and the demo call these; each change is audited.

use crate::secrets::{hash_secret, new_secret};
use crate::service::TokenService;
use palisade_contract::seed::SeedApp;
use palisade_contract::Permission;
use palisade_domain::devices::secrets as device_secrets;
use palisade_domain::devices::OnboardingToken;
use palisade_domain::identity::{AppRegistration, AuditEntry, GrantsOf, SigningKey, User};
use palisade_domain::seed::SeededUser;
use palisade_domain::store::DeviceGroup;
use palisade_domain::{Clock, DeviceGroupAccess, Role, Store, StoreError};
use std::sync::Arc;

/// Who administers: recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Administrator {
    /// `cli` or `demo`.
    pub kind: &'static str,
    /// The operating-system user running the command.
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("tenant {0} does not exist")]
    NoTenant(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by: Administrator,
}

/// A secret or password, shown once: only its hash is kept.
pub type ShownOnce = String;

/// How users and certificates may sign in through an app, beside its secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignInSettings {
    /// Entra's "Allow public client flows".
    pub allow_public_client: bool,
    /// Where authorization codes may be sent: `https://` URLs, or
    /// `http://localhost` (any port, as native apps listen: RFC 8252 §7.3).
    pub redirect_uris: Vec<String>,
    /// PEM certificates whose keys sign client assertions.
    pub certificates: Vec<String>,
}

impl SignInSettings {
    /// Refuses what the token service could never use: a redirect URI that
    /// is not absolute, has a fragment, or is plain HTTP off the loopback; a
    /// certificate that does not parse or has no RSA key.
    pub fn check(&self) -> Result<(), AdminError> {
        for uri in &self.redirect_uris {
            crate::grants::check_redirect_uri(uri)
                .map_err(|why| AdminError::Invalid(format!("redirect URI {uri}: {why}")))?;
        }
        for (n, pem) in self.certificates.iter().enumerate() {
            crate::certificates::ClientCertificate::parse(pem)
                .map_err(|why| AdminError::Invalid(format!("certificate {}: {why}", n + 1)))?;
        }
        Ok(())
    }
}

impl Admin {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, by: Administrator) -> Self {
        Admin { store, clock, by }
    }

    async fn require_tenant(&self, tenant_id: &str) -> Result<(), AdminError> {
        match self.store.tenant(tenant_id).await? {
            Some(_) => Ok(()),
            None => Err(AdminError::NoTenant(tenant_id.to_string())),
        }
    }

    async fn audit(
        &self,
        tenant_id: &str,
        operation: &str,
        target: &str,
    ) -> Result<(), AdminError> {
        self.store
            .append_audit(
                &AuditEntry {
                    id: 0,
                    tenant_id: tenant_id.to_string(),
                    time: self.clock.now(),
                    actor_type: self.by.kind.to_string(),
                    actor_id: self.by.name.clone(),
                    actor_name: self.by.name.clone(),
                    operation: operation.to_string(),
                    target: Some(target.to_string()),
                    result: 200,
                    request_id: String::new(),
                },
                &[],
            )
            .await?;
        Ok(())
    }

    /// Registers a confidential app with `permissions` (or, with `client_id`
    /// of an existing app, gives it a new secret and these permissions).
    /// Returns the app and its secret.
    pub async fn put_app(
        &self,
        tenant_id: &str,
        client_id: Option<&str>,
        display_name: &str,
        permissions: &[Permission],
    ) -> Result<(AppRegistration, ShownOnce), AdminError> {
        let settings = SignInSettings::default();
        self.put_app_with(tenant_id, client_id, display_name, permissions, &settings)
            .await
    }

    /// `put_app` with how users and certificates sign in through the app.
    /// Replacing an app's settings ends the sign-ins made through it.
    pub async fn put_app_with(
        &self,
        tenant_id: &str,
        client_id: Option<&str>,
        display_name: &str,
        permissions: &[Permission],
        settings: &SignInSettings,
    ) -> Result<(AppRegistration, ShownOnce), AdminError> {
        self.require_tenant(tenant_id).await?;
        if display_name.trim().is_empty() {
            return Err(AdminError::Invalid("an app needs a name".into()));
        }
        settings.check()?;
        let client_id = match client_id {
            Some(id) => uuid::Uuid::parse_str(id)
                .map_err(|_| AdminError::Invalid(format!("client id {id} is not a GUID")))?
                .to_string(),
            None => palisade_domain::ids::new_guid(),
        };
        let existing = self.store.app(tenant_id, &client_id).await?;
        let secret = new_secret();
        let mut unique = permissions.to_vec();
        unique.sort_by_key(|p| p.as_str());
        unique.dedup();
        let app = AppRegistration {
            tenant_id: tenant_id.to_string(),
            client_id,
            display_name: display_name.trim().to_string(),
            permissions: unique,
            secret_hash: hash_secret(&secret),
            allow_public_client: settings.allow_public_client,
            redirect_uris: settings.redirect_uris.clone(),
            certificates: settings.certificates.clone(),
            created_at: existing.as_ref().map_or(self.clock.now(), |e| e.created_at),
        };
        self.store.put_app(&app).await?;
        if existing.is_some() {
            self.store
                .revoke_grants(tenant_id, GrantsOf::App(&app.client_id))
                .await?;
        }
        self.audit(tenant_id, "apps put", &app.client_id).await?;
        Ok((app, secret))
    }

    pub async fn delete_app(&self, tenant_id: &str, client_id: &str) -> Result<(), AdminError> {
        self.require_tenant(tenant_id).await?;
        if !self.store.delete_app(tenant_id, client_id).await? {
            return Err(AdminError::Invalid(format!(
                "no app {client_id} in tenant {tenant_id}"
            )));
        }
        self.store
            .revoke_grants(tenant_id, GrantsOf::App(client_id))
            .await?;
        self.audit(tenant_id, "apps delete", client_id).await
    }

    /// Creates the user `username`, or updates the one of that name: roles,
    /// device groups, and a new password (the one given, else a random one).
    pub async fn put_user(
        &self,
        tenant_id: &str,
        username: &str,
        roles: &[Role],
        device_groups: DeviceGroupAccess,
        password: Option<&str>,
    ) -> Result<(User, ShownOnce), AdminError> {
        self.require_tenant(tenant_id).await?;
        let username = username.trim();
        if username.is_empty() || username.contains(char::is_whitespace) {
            return Err(AdminError::Invalid(format!(
                "'{username}' is not a user name; use a UPN such as alice@contoso.example"
            )));
        }
        if roles.is_empty() {
            return Err(AdminError::Invalid("a user needs at least one role".into()));
        }
        if let DeviceGroupAccess::Only(ids) = &device_groups {
            let known: Vec<i64> = self
                .store
                .device_groups(tenant_id)
                .await?
                .iter()
                .map(|g| g.id)
                .collect();
            if let Some(unknown) = ids.iter().find(|id| **id != 0 && !known.contains(id)) {
                return Err(AdminError::Invalid(format!(
                    "device group {unknown} does not exist in tenant {tenant_id}"
                )));
            }
        }
        let password = match password {
            Some(p) if p.chars().count() < 12 => {
                return Err(AdminError::Invalid(
                    "a password needs at least 12 characters".into(),
                ))
            }
            Some(p) => p.to_string(),
            None => new_secret(),
        };
        let existing = self.store.user_by_name(tenant_id, username).await?;
        let mut unique = roles.to_vec();
        unique.sort();
        unique.dedup();
        let user = User {
            tenant_id: tenant_id.to_string(),
            id: existing
                .as_ref()
                .map_or_else(palisade_domain::ids::new_guid, |u| u.id.clone()),
            username: username.to_string(),
            roles: unique,
            device_groups,
            password_hash: hash_secret(&password),
            created_at: existing.map_or(self.clock.now(), |u| u.created_at),
        };
        self.store.put_user(&user).await?;
        // A new password (or new roles) ends the user's sign-ins.
        self.store
            .revoke_grants(tenant_id, GrantsOf::User(&user.id))
            .await?;
        self.audit(tenant_id, "users put", &user.username).await?;
        Ok((user, password))
    }

    pub async fn delete_user(&self, tenant_id: &str, username: &str) -> Result<(), AdminError> {
        self.require_tenant(tenant_id).await?;
        let user = self
            .store
            .user_by_name(tenant_id, username)
            .await?
            .ok_or_else(|| {
                AdminError::Invalid(format!("no user {username} in tenant {tenant_id}"))
            })?;
        self.store.delete_user(tenant_id, &user.id).await?;
        self.store
            .revoke_grants(tenant_id, GrantsOf::User(&user.id))
            .await?;
        self.audit(tenant_id, "users delete", username).await
    }

    /// Creates or replaces a device group; machines move to their groups at once.
    pub async fn put_device_group(
        &self,
        tenant_id: &str,
        group: &DeviceGroup,
    ) -> Result<(), AdminError> {
        self.require_tenant(tenant_id).await?;
        if group.id < 1 || group.name.trim().is_empty() {
            return Err(AdminError::Invalid(
                "a device group needs an id of 1 or more and a name".into(),
            ));
        }
        self.store.put_device_group(tenant_id, group).await?;
        self.audit(tenant_id, "groups put", &group.id.to_string())
            .await
    }

    /// A new signing key for the tenant, made by `tokens` (which holds the
    /// key-encryption key); tokens signed with the old one stay valid until they expire.
    pub async fn rotate_key(
        &self,
        tokens: &TokenService,
        tenant_id: &str,
    ) -> Result<SigningKey, AdminError> {
        self.require_tenant(tenant_id).await?;
        let key = tokens.rotate_key(tenant_id).await?;
        self.audit(tenant_id, "keys rotate", &key.kid).await?;
        Ok(key)
    }

    /// A new onboarding token for the tenant's devices (or, with the `id` of
    /// an existing one, a new secret for it). Returns the token and its text.
    pub async fn put_onboarding_token(
        &self,
        tenant_id: &str,
        id: Option<&str>,
        description: &str,
    ) -> Result<(OnboardingToken, ShownOnce), AdminError> {
        self.require_tenant(tenant_id).await?;
        let id = match id {
            Some(id)
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
            {
                return Err(AdminError::Invalid(format!(
                    "'{id}' is not a token id; use letters, digits and '-'"
                )))
            }
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        let (text, secret_hash) =
            device_secrets::issue(palisade_device::ONBOARDING_TOKEN_PREFIX, tenant_id, &id);
        let token = OnboardingToken {
            tenant_id: tenant_id.to_string(),
            id,
            description: description.trim().to_string(),
            secret_hash,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.store.put_onboarding_token(&token).await?;
        self.audit(tenant_id, "onboarding put", &token.id).await?;
        Ok((token, text))
    }

    /// Stops new enrollments with the token; devices enrolled with it stay enrolled.
    pub async fn revoke_onboarding_token(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<(), AdminError> {
        self.require_tenant(tenant_id).await?;
        if !self
            .store
            .revoke_onboarding_token(tenant_id, id, self.clock.now())
            .await?
        {
            return Err(AdminError::Invalid(format!(
                "no unrevoked onboarding token {id} in tenant {tenant_id}"
            )));
        }
        self.audit(tenant_id, "onboarding revoke", id).await
    }

    /// Creates or updates the apps and users of a tenant document
    /// (`palisade_domain::seed`): a secret or password given replaces the
    /// one kept; none given keeps it, or, for a new one, makes one nobody
    /// is shown (set one with `put_app` or `put_user`).
    pub async fn seed_identities(
        &self,
        tenant_id: &str,
        apps: &[SeedApp],
        users: &[SeededUser],
    ) -> Result<(), AdminError> {
        self.require_tenant(tenant_id).await?;
        for app in apps {
            let client_id = app.client_id.to_ascii_lowercase();
            let existing = self.store.app(tenant_id, &client_id).await?;
            let secret_hash = match (&app.client_secret, &existing) {
                (Some(secret), _) => hash_secret(secret),
                (None, Some(existing)) => existing.secret_hash.clone(),
                (None, None) => hash_secret(&new_secret()),
            };
            let mut permissions = app.permissions.clone();
            permissions.sort_by_key(|p| p.as_str());
            permissions.dedup();
            let settings = SignInSettings {
                allow_public_client: app.allow_public_client,
                redirect_uris: app.redirect_uris.clone(),
                certificates: app.certificates.clone(),
            };
            settings.check()?;
            let registration = AppRegistration {
                tenant_id: tenant_id.to_string(),
                client_id,
                display_name: app.name.trim().to_string(),
                permissions,
                secret_hash,
                allow_public_client: settings.allow_public_client,
                redirect_uris: settings.redirect_uris,
                certificates: settings.certificates,
                created_at: existing.map_or(self.clock.now(), |e| e.created_at),
            };
            self.store.put_app(&registration).await?;
            self.audit(tenant_id, "apps seed", &registration.client_id)
                .await?;
        }
        for user in users {
            let existing = self.store.user_by_name(tenant_id, &user.username).await?;
            let password_hash = match (&user.password, &existing) {
                (Some(password), _) => hash_secret(password),
                (None, Some(existing)) => existing.password_hash.clone(),
                (None, None) => hash_secret(&new_secret()),
            };
            let mut roles = user.roles.clone();
            roles.sort();
            roles.dedup();
            let seeded = User {
                tenant_id: tenant_id.to_string(),
                id: existing
                    .as_ref()
                    .map_or_else(palisade_domain::ids::new_guid, |u| u.id.clone()),
                username: user.username.clone(),
                roles,
                device_groups: user.access.clone(),
                password_hash,
                created_at: existing.as_ref().map_or(self.clock.now(), |u| u.created_at),
            };
            self.store.put_user(&seeded).await?;
            if user.password.is_some() && existing.is_some() {
                self.store
                    .revoke_grants(tenant_id, GrantsOf::User(&seeded.id))
                    .await?;
            }
            self.audit(tenant_id, "users seed", &seeded.username)
                .await?;
        }
        Ok(())
    }
}
