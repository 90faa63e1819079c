//! The records behind tokens and the audit log: app registrations, users,
//! signing keys and audit entries. Secrets and passwords are kept only as
//! argon2 hashes (the identity crate makes and checks them).

use crate::access::Role;
use crate::caller::DeviceGroupAccess;
use palisade_contract::{Permission, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// An app registration: a client that gets tokens with its secret
/// (client credentials) or signs users in (password grant).
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
    pub created_at: Timestamp,
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
