//! Identifiers in MDE's formats.

use rand::Rng;

/// Lower-case hexadecimal, as MDE writes machine ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A machine id: 40 lower-case hexadecimal characters, as MDE's.
pub fn new_machine_id() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    hex(&bytes)
}

/// A machine-action id: a lower-case GUID.
pub fn new_action_id() -> String {
    new_guid()
}

/// A lower-case GUID (machine actions, control-plane rules).
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn is_machine_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a key cannot name anything stored: no stored id or name holds a
/// NUL (request bodies may not carry one, and PostgreSQL cannot store one).
pub fn names_nothing(key: &str) -> bool {
    key.contains('\0')
}
