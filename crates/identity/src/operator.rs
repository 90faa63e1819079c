//! The control plane's operator token (`control-plane.md`): made at first
//! start, kept sealed with the key-encryption key (so that every start can
//! print it again) and hashed (what a call is checked by), rotated by the CLI.
//! The same on every node of a database: they share the key.

use crate::sealing::KeySealer;
use palisade_contract::Timestamp;
use palisade_domain::control::OperatorCredential;
use palisade_domain::devices::secrets;
use palisade_domain::{Store, StoreError};

/// How an operator token begins: it is told apart from an MDE access token
/// (a JWT) at a glance.
pub const PREFIX: &str = "palisade_operator_";

/// What the sealed token is bound to.
const SEALED_FOR: &[u8] = b"palisade operator token";

#[derive(Debug, thiserror::Error)]
pub enum OperatorTokenError {
    #[error(
        "the operator token in the database was sealed with another key than {0}: \
         start with the key it was sealed with, or make a new token (`palisade emulator rotate-operator-token`)"
    )]
    WrongKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The operator token: the one kept, else a new one (kept from now on; of
/// nodes starting together on a new database, the first to store one).
pub async fn ensure(
    store: &dyn Store,
    sealer: &KeySealer,
    now: Timestamp,
) -> Result<String, OperatorTokenError> {
    if store.operator_credential().await?.is_none() {
        let (_, credential) = new_token(sealer, now);
        store.put_operator_credential(&credential, false).await?;
    }
    let kept = store
        .operator_credential()
        .await?
        .ok_or_else(|| StoreError::Internal("the operator token was not kept".into()))?;
    sealer
        .open_text(SEALED_FOR, &kept.token_sealed)
        .ok_or_else(|| OperatorTokenError::WrongKey(sealer.source_name().to_string()))
}

/// A new operator token, in place of any before it (which stops working).
pub async fn rotate(
    store: &dyn Store,
    sealer: &KeySealer,
    now: Timestamp,
) -> Result<String, OperatorTokenError> {
    let (token, credential) = new_token(sealer, now);
    store.put_operator_credential(&credential, true).await?;
    Ok(token)
}

fn new_token(sealer: &KeySealer, now: Timestamp) -> (String, OperatorCredential) {
    let token = format!("{PREFIX}{}", secrets::new_secret());
    let credential = OperatorCredential {
        token_sealed: sealer.seal_text(SEALED_FOR, &token),
        token_hash: secrets::hash(&token),
        created_at: now,
    };
    (token, credential)
}

/// Whether `presented` is the operator token (read from the store each
/// time: a rotation on any node holds at once everywhere).
pub async fn is_operator_token(store: &dyn Store, presented: &str) -> Result<bool, StoreError> {
    if !presented.starts_with(PREFIX) {
        return Ok(false);
    }
    Ok(store
        .operator_credential()
        .await?
        .is_some_and(|kept| kept.token_hash == secrets::hash(presented)))
}
