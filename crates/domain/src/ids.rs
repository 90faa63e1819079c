//! Identifiers in MDE's formats, made from random bytes: the thread's
//! generator, or (`palisade serve --id-seed N`) one generator seeded with N
//! for the process, so that the same calls in the same order get the same
//! ids (actions, machines, rules, request ids) from one run to the next.
//! Secrets never come from here.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::{Mutex, OnceLock};

static SEEDED: OnceLock<Mutex<StdRng>> = OnceLock::new();

/// Makes every id of this process come from a generator seeded with
/// `seed`; false if ids were seeded already.
pub fn seed_ids(seed: u64) -> bool {
    SEEDED.set(Mutex::new(StdRng::seed_from_u64(seed))).is_ok()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    match SEEDED.get().and_then(|seeded| seeded.lock().ok()) {
        Some(mut seeded) => seeded.random(),
        None => rand::rng().random(),
    }
}

/// Lower-case hexadecimal, as MDE writes machine ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A machine id: 40 lower-case hexadecimal characters, as MDE's.
pub fn new_machine_id() -> String {
    hex(&random_bytes::<20>())
}

/// A machine-action id: a lower-case GUID.
pub fn new_action_id() -> String {
    new_guid()
}

/// A lower-case GUID (machine actions, control-plane rules).
pub fn new_guid() -> String {
    uuid::Builder::from_random_bytes(random_bytes::<16>())
        .into_uuid()
        .to_string()
}

/// .NET's ticks at the Unix epoch: MDE's alert ids count from year 1.
const DOTNET_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// An alert id as MDE's: `da`, the creation time in .NET ticks, `_`, a number.
pub fn new_alert_id(created: palisade_contract::Timestamp) -> String {
    let number = i32::from_le_bytes(random_bytes::<4>());
    format!("da{}_{number}", created.ticks() + DOTNET_EPOCH_TICKS)
}

/// A request id: opaque, in the shape MDE gives its errors' `target` (`|b1838e63-40a6640ddd2719ac.`).
pub fn new_request_id() -> String {
    let bytes = random_bytes::<12>();
    let (high, low) = bytes.split_at(4);
    format!(
        "|{:08x}-{:016x}.",
        u32::from_le_bytes(high.try_into().expect("4 bytes")),
        u64::from_le_bytes(low.try_into().expect("8 bytes"))
    )
}

pub fn is_machine_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a key cannot name anything stored: no stored id or name holds a
/// NUL (request bodies may not carry one, and PostgreSQL cannot store one).
pub fn names_nothing(key: &str) -> bool {
    key.contains('\0')
}
