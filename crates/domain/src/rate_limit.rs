//! Per-API rate limits as MDE applies them: 100 calls a minute and 1,500 an
//! hour (decisions: Rate limits), per operation, per app or user, per tenant.
//!
//! Written here rather than with `governor`: GCRA admits by a smoothed rate,
//! not by a count over a sliding window, and cannot refuse on either of two
//! windows without having spent a cell of the other. A log of admission times
//! per key is exact: a burst of 200 parallel calls admits exactly 100.

use crate::access::Operation;
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Calls allowed per sliding minute and per sliding hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_minute: 100,
            per_hour: 1500,
        }
    }
}

/// What one count is kept for: the operation, in a tenant, by an app or user
/// (or by an onboarding token, for enrollments).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub tenant_id: String,
    /// The app's client id or the user's id; for enrollments, the onboarding token's id.
    pub principal_id: String,
    pub scope: RateScope,
}

/// Which calls a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateScope {
    /// Calls of one API operation.
    Api(Operation),
    /// Devices enrolling with one onboarding token: holding a token must not
    /// let anyone fill the tenant with machines at the speed of the network.
    Enrollment,
    /// Alerts one device raises: a detection loop on a device (or a stolen
    /// credential) must not flood its tenant's alerts.
    DeviceAlerts,
}

impl RateScope {
    fn own_limits(&self) -> Option<RateLimits> {
        match self {
            RateScope::Api(operation) => operation.own_rate_limits(),
            RateScope::Enrollment | RateScope::DeviceAlerts => None,
        }
    }
}

impl RateScope {
    /// The name the count is kept under.
    pub fn name(self) -> &'static str {
        match self {
            RateScope::Api(operation) => operation.name(),
            RateScope::Enrollment => "Enroll",
            RateScope::DeviceAlerts => "DeviceAlerts",
        }
    }
}

/// Which window refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Hour,
}

/// A refused call: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub window: Window,
    pub limit: u32,
    /// Whole seconds until a call would be admitted, at least 1.
    pub retry_after_seconds: u64,
}

const MINUTE_TICKS: i64 = 60 * 10_000_000;
const HOUR_TICKS: i64 = 3600 * 10_000_000;

/// Admits one call at `now` into `log` (the key's admission times in ticks,
/// oldest first), or says which window is full and for how long. Drops the
/// times that left the hour. Every store keeps its logs with this rule.
pub fn admit(log: &mut VecDeque<i64>, now: i64, limits: RateLimits) -> Result<(), Throttled> {
    while log.front().is_some_and(|&t| t <= now - HOUR_TICKS) {
        log.pop_front();
    }
    let RateLimits {
        per_minute,
        per_hour,
    } = limits;
    // A clock stepping back must not unsort the log.
    let now = log.back().map_or(now, |&last| now.max(last));
    let in_last_minute = log.len() - log.partition_point(|&t| t <= now - MINUTE_TICKS);
    // Each full window admits again once its oldest call leaves it; when
    // both are full, the later of the two is when a call gets through.
    let minute = (in_last_minute >= per_minute as usize).then(|| {
        let oldest = log[log.len() - per_minute as usize];
        (Window::Minute, per_minute, oldest + MINUTE_TICKS - now)
    });
    let hour = (log.len() >= per_hour as usize).then(|| {
        let oldest = log[log.len() - per_hour as usize];
        (Window::Hour, per_hour, oldest + HOUR_TICKS - now)
    });
    let refusal = match (minute, hour) {
        (Some(m), Some(h)) => Some(if h.2 > m.2 { h } else { m }),
        (m, h) => m.or(h),
    };
    match refusal {
        Some((window, limit, wait_ticks)) => Err(Throttled {
            window,
            limit,
            retry_after_seconds: (wait_ticks.max(1) as u64).div_ceil(10_000_000),
        }),
        None => {
            log.push_back(now);
            Ok(())
        }
    }
}

/// A log whose last call is at or before this time (at `now`) holds nothing
/// [`admit`] would count, and can be forgotten.
pub fn idle_since(now: i64) -> i64 {
    now - HOUR_TICKS
}

/// Keys are spread over shards so that unrelated callers do not queue on one lock.
const SHARDS: usize = 32;

type Shard = HashMap<RateKey, VecDeque<i64>>;

/// Call logs in this process's memory: right for a store that one node uses.
pub struct CallLogs {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for CallLogs {
    fn default() -> Self {
        CallLogs {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl CallLogs {
    pub fn admit(&self, key: &RateKey, limits: RateLimits, now: i64) -> Result<(), Throttled> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        admit(shard.entry(key.clone()).or_default(), now, limits)
    }

    /// Drops the logs of the tenant's callers.
    pub fn forget_tenant(&self, tenant_id: &str) {
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.retain(|key, _| key.tenant_id != tenant_id);
        }
    }

    /// Drops the logs of keys with no call in the last hour.
    pub fn forget_idle(&self, now: i64) {
        for shard in self.shards.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.retain(|_, log| log.back().is_some_and(|&t| t > idle_since(now)));
        }
    }
}

/// Admits calls against the limits, counting them in the store (so that
/// every node of a deployment counts the same calls).
#[derive(Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits, clock: Arc<dyn Clock>, store: Arc<dyn Store>) -> Self {
        RateLimiter {
            limits,
            clock,
            store,
        }
    }

    /// Admits (and counts) one call, or says which window is full and for how long.
    pub async fn admit(&self, key: &RateKey) -> Result<Result<(), Throttled>, StoreError> {
        let now = self.clock.now_in(&key.tenant_id);
        // An operation MDE limits more tightly keeps its own limit under a
        // looser configured one.
        let limits = match key.scope.own_limits() {
            Some(own) => RateLimits {
                per_minute: own.per_minute.min(self.limits.per_minute),
                per_hour: own.per_hour.min(self.limits.per_hour),
            },
            None => self.limits,
        };
        self.store.admit_call(key, limits, now).await
    }

    /// Drops the logs of keys with no call in the last hour.
    pub async fn forget_idle(&self) -> Result<(), StoreError> {
        self.store.forget_idle_calls(self.clock.now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;

    fn key(principal: &str) -> RateKey {
        RateKey {
            tenant_id: "t".into(),
            principal_id: principal.into(),
            scope: RateScope::Api(Operation::Isolate),
        }
    }

    /// The in-memory logs, at a clock the test moves.
    struct Limiter {
        logs: CallLogs,
        clock: Arc<OffsetClock>,
    }

    impl Limiter {
        fn admit(&self, key: &RateKey) -> Result<(), Throttled> {
            let limits = RateLimits {
                per_minute: 3,
                per_hour: 5,
            };
            self.logs.admit(key, limits, self.clock.now().ticks())
        }
    }

    #[test]
    fn minute_then_hour_windows_slide() {
        let clock = Arc::new(OffsetClock::default());
        let limiter = Limiter {
            logs: CallLogs::default(),
            clock: clock.clone(),
        };
        for _ in 0..3 {
            limiter.admit(&key("a")).unwrap();
        }
        let refused = limiter.admit(&key("a")).unwrap_err();
        assert_eq!(refused.window, Window::Minute);
        assert_eq!(refused.retry_after_seconds, 60);
        limiter
            .admit(&key("b"))
            .expect("another caller has its own count");
        clock.advance(61);
        limiter.admit(&key("a")).unwrap();
        limiter.admit(&key("a")).unwrap();
        let refused = limiter.admit(&key("a")).unwrap_err();
        assert_eq!(refused.window, Window::Hour);
        assert_eq!(refused.retry_after_seconds, 3600 - 61);
        clock.advance(3600 - 61);
        limiter
            .admit(&key("a"))
            .expect("the first calls left the hour");
    }
}
