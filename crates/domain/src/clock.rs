//! Time as the rules see it; injectable so tests can move it without sleeping.

use palisade_contract::Timestamp;

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock moved by an adjustable offset: tests use it to let days
/// pass without waiting for them.
#[derive(Default)]
pub struct OffsetClock {
    offset_seconds: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp::now().plus_seconds(
            self.offset_seconds
                .load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}
