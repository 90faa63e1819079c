//! The records behind tokens and the audit log: app registrations, users,
//! signing keys and audit entries. Secrets and passwords are kept only as
//! argon2 hashes (the identity crate makes and checks them).

use crate::access::Role;
use crate::caller::DeviceGroupAccess;
use palisade_contract::{Permission, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// An app registration: a client that gets tokens with its secret or a
/// certificate (client credentials) or signs users in (password, device
/// code, authorization code; refresh tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRegistration {
    pub tenant_id: String,
    /// A GUID, as Entra ID application ids are.
    pub client_id: String,
    pub display_name: String,
    /// Granted (admin-consented) permissions; application tokens carry them in
    /// `roles`, delegated tokens in their delegated form in `scp`.
    pub permissions: Vec<Permission>,
    /// argon2 PHC string of the client secret.
    pub secret_hash: String,
    /// Entra's "Allow public client flows": users may sign in through it
    /// (password, device code, authorization code with PKCE, refresh) with
    /// no secret or certificate, as native and command-line apps do.
    pub allow_public_client: bool,
    /// Where the authorization endpoint may send its codes.
    pub redirect_uris: Vec<String>,
    /// PEM X.509 certificates whose keys may sign its client assertions.
    pub certificates: Vec<String>,
    pub created_at: Timestamp,
}

/// What an [`OAuthGrant`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// An authorization code: redeemed once, within minutes.
    Code,
    /// A device code, approved by a user at the verification page.
    Device,
    /// A refresh token: rotated on each use.
    Refresh,
    /// A web console session: its cookie, until it ends or is signed out.
    Session,
}

impl From<GrantKind> for &'static str {
    fn from(kind: GrantKind) -> &'static str {
        match kind {
            GrantKind::Code => "code",
            GrantKind::Device => "device",
            GrantKind::Refresh => "refresh",
            GrantKind::Session => "session",
        }
    }
}

impl std::str::FromStr for GrantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "code" => GrantKind::Code,
            "device" => GrantKind::Device,
            "refresh" => GrantKind::Refresh,
            "session" => GrantKind::Session,
            other => return Err(format!("unknown grant kind {other}")),
        })
    }
}

/// Something the token service handed out and takes back once: an
/// authorization code, a device code, a refresh token.
/// Only a hash of the secret is kept (`key`); codes and tokens of one
/// sign-in share a `family`, revoked together when one is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthGrant {
    /// SHA-256 (hex) of the code or token.
    pub key: String,
    pub tenant_id: String,
    pub kind: GrantKind,
    pub client_id: String,
    /// The user signed in; a device code's until approved: none.
    pub user_id: Option<String>,
    pub family: String,
    /// A device code's code for people (`ABCD-EFGH`), unique while kept.
    pub user_code: Option<String>,
    /// What the grant carries (scopes asked, redirect URI, PKCE challenge,
    /// nonce...), as the token service reads it.
    pub details: serde_json::Value,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was redeemed (a code, a refresh token, a device code's tokens).
    pub used_at: Option<Timestamp>,
    /// A device code's last poll.
    pub polled_at: Option<Timestamp>,
}

/// Whose grants to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantsOf<'a> {
    /// One sign-in's: its code, refresh tokens (a replay revokes them all).
    Family(&'a str),
    /// A user's (deleted, or a new password).
    User(&'a str),
    /// An app's (deleted).
    App(&'a str),
}

/// What redeeming a grant found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// Unused until now: it is marked used.
    Fresh(OAuthGrant),
    /// Used before: a replay.
    Replayed(OAuthGrant),
    /// No such grant (never made, or revoked).
    Missing,
}

/// A user who signs in with a password and acts with MDE roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub tenant_id: String,
    /// A GUID: the token's `oid`.
    pub id: String,
    /// The UPN (`alice@contoso.example`), unique in its tenant, matched case-insensitively.
    pub username: String,
    pub roles: Vec<Role>,
    pub device_groups: DeviceGroupAccess,
    /// argon2 PHC string of the password.
    pub password_hash: String,
    pub created_at: Timestamp,
}

impl User {
    /// Global administrators see every device, whatever their groups (contract §7.1).
    pub fn effective_device_groups(&self) -> DeviceGroupAccess {
        if self.roles.contains(&Role::GlobalAdministrator) {
            DeviceGroupAccess::All
        } else {
            self.device_groups.clone()
        }
    }
}

/// An RSA key a tenant's tokens are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub tenant_id: String,
    pub kid: String,
    /// The private key (PKCS#8 PEM). The store keeps it sealed (the identity
    /// crate's `sealing`: `sealed:v1:...`, or plaintext PEM in rows of
    /// databases made before, until the next start seals them); the token
    /// service opens it to sign.
    pub private_key: String,
    /// Base64url modulus and exponent, as the JWKS publishes them.
    pub modulus: String,
    pub exponent: String,
    pub created_at: Timestamp,
    /// When a newer key took over. Tokens signed before stay valid until they
    /// expire, so a retired key is still published and trusted for a while.
    pub retired_at: Option<Timestamp>,
}

/// Who did something, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Assigned by the store: the tenant's own sequence, from 1, without gaps.
    pub id: i64,
    pub tenant_id: String,
    #[schema(value_type = String)]
    pub time: Timestamp,
    /// `app`, `user` or `cli`.
    pub actor_type: String,
    /// The app's client id, the user's id, or the operating-system user of the CLI.
    pub actor_id: String,
    /// The app's display name or the user's UPN.
    pub actor_name: String,
    /// What was done: an API operation (`Isolate`) or a CLI command (`apps create`).
    pub operation: String,
    /// What it was done to: a machine id, an action id, an app...
    pub target: Option<String>,
    /// The HTTP status answered (CLI: 200 or 400).
    pub result: u16,
    /// The request id (`request-id` header, error `target`); empty for the CLI.
    pub request_id: String,
}

/// The audit entry of a request that changes machines or actions, written
/// in the change's own transaction (so that no change commits without its
/// entry): the request's actor, operation, target and id, completed by the
/// change (its time, its answer, the machines it is about). A request whose
/// change did not commit (refused, failed) is audited after its answer.
#[derive(Debug)]
pub struct RequestAudit {
    template: AuditEntry,
    written: AtomicBool,
}

impl RequestAudit {
    pub fn new(template: AuditEntry) -> RequestAudit {
        RequestAudit {
            template,
            written: AtomicBool::new(false),
        }
    }

    /// The entry of a change at `time`; `target` names what it was done to
    /// where the request's path does not (bulk tags: the machine ids).
    pub fn entry(&self, time: Timestamp, target: impl FnOnce() -> String) -> AuditEntry {
        AuditEntry {
            time,
            target: self.template.target.clone().or_else(|| Some(target())),
            ..self.template.clone()
        }
    }

    /// The change committed with its entry.
    pub fn mark_written(&self) {
        self.written.store(true, Ordering::Release);
    }

    pub fn is_written(&self) -> bool {
        self.written.load(Ordering::Acquire)
    }
}

/// The HTTP status of a change's answer: 201 with the action it created
/// (MDE's machine actions), else 200 (tags, a cancellation).
pub fn change_result(created_action: bool) -> u16 {
    if created_action {
        201
    } else {
        200
    }
}
