//! Time as the rules see it: the system clock (injectable so tests can move
//! it without sleeping), and each tenant's own reading of it, which the
//! emulator control plane may freeze, run on or advance (`control-plane.md`).

use palisade_contract::control::{signed_duration, ClockMode, ClockReading};
use palisade_contract::{MdeError, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub trait Clock: Send + Sync {
    /// The server's time.
    fn now(&self) -> Timestamp;

    /// The time in `tenant_id`: what every rule of that tenant reads
    /// (retention, time-outs, token times, rate-limit windows, outcome
    /// delays, the times written on what changes).
    fn now_in(&self, tenant_id: &str) -> Timestamp {
        let _ = tenant_id;
        self.now()
    }
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

/// The latest a tenant's clock may read.
const LATEST: &str = "9999-12-31T23:59:59Z";

/// A tenant's clock as the control plane set it: stopped at a reading, or
/// running at an offset (in 100-ns ticks) from the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantClock {
    pub frozen_at: Option<Timestamp>,
    pub offset_ticks: i64,
}

impl TenantClock {
    pub fn reading(&self, server_now: Timestamp) -> Timestamp {
        self.frozen_at.unwrap_or_else(|| {
            Timestamp::from_ticks(server_now.ticks().saturating_add(self.offset_ticks))
        })
    }

    /// Reads as the server's clock (every tenant's clock until it is set).
    pub fn is_server_time(&self) -> bool {
        *self == TenantClock::default()
    }

    /// The clock after `change`, or why not: time never goes backwards for
    /// a tenant.
    pub fn changed(
        self,
        change: &palisade_contract::control::ClockChange,
        server_now: Timestamp,
    ) -> Result<TenantClock, MdeError> {
        let reading = self.reading(server_now);
        let mut clock = match (change.mode, change.now) {
            (None, _) => self,
            (Some(ClockMode::Frozen), None) => TenantClock {
                frozen_at: Some(reading),
                ..self
            },
            (Some(ClockMode::Frozen), Some(at)) if at < reading => {
                return Err(MdeError::invalid_input(format!(
                    "Invalid input now: {at} is before the tenant's clock ({reading}); time never goes backwards for a tenant"
                )))
            }
            (Some(ClockMode::Frozen), Some(at)) => TenantClock {
                frozen_at: Some(at),
                ..self
            },
            (Some(ClockMode::Running), _) => TenantClock {
                frozen_at: None,
                offset_ticks: reading.ticks() - server_now.ticks(),
            },
        };
        if let Some(advance) = change.advance {
            let ticks = i64::try_from(advance.0.as_nanos() / 100).unwrap_or(i64::MAX);
            match &mut clock.frozen_at {
                Some(at) => *at = Timestamp::from_ticks(at.ticks().saturating_add(ticks)),
                None => clock.offset_ticks = clock.offset_ticks.saturating_add(ticks),
            }
        }
        // Far enough for any test; beyond it, times no longer read back.
        let latest = Timestamp::parse(LATEST).expect("a time");
        if clock.reading(server_now) > latest {
            let field = if change.advance.is_some() {
                "advance"
            } else {
                "now"
            };
            return Err(MdeError::invalid_input(format!(
                "Invalid input {field}: the clock would read past {LATEST}"
            )));
        }
        Ok(clock)
    }

    pub fn wire(&self, server_now: Timestamp) -> ClockReading {
        let now = self.reading(server_now);
        ClockReading {
            mode: match self.frozen_at {
                Some(_) => ClockMode::Frozen,
                None => ClockMode::Running,
            },
            now,
            offset: signed_duration(now.ticks() - server_now.ticks()),
        }
    }
}

/// The tenants a sweep covers at one reading of time: those on the server's
/// clock (all but the tenants whose clock was set), or one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    OnServerTime { except: Vec<String> },
    Tenant(String),
}

/// The server's clock read as each tenant sees it. The tenants' settings are
/// kept here (a read is a map lookup: every request reads the time) and
/// loaded from the store whenever [`TenantClocks::load`] is called, so that
/// what another node sets is seen here too.
pub struct TenantClocks {
    server: Arc<dyn Clock>,
    // Only tenants whose clock was set are in it.
    set: RwLock<HashMap<String, TenantClock>>,
}

impl TenantClocks {
    pub fn new(server: Arc<dyn Clock>) -> TenantClocks {
        TenantClocks {
            server,
            set: RwLock::default(),
        }
    }

    pub fn of(&self, tenant_id: &str) -> TenantClock {
        self.set
            .read()
            .ok()
            .and_then(|set| set.get(tenant_id).copied())
            .unwrap_or_default()
    }

    pub fn put(&self, tenant_id: &str, clock: TenantClock) {
        if let Ok(mut set) = self.set.write() {
            match clock.is_server_time() {
                true => set.remove(tenant_id),
                false => set.insert(tenant_id.to_string(), clock),
            };
        }
    }

    /// Replaces every setting with those the store holds.
    pub fn load(&self, stored: Vec<(String, TenantClock)>) {
        let fresh = stored
            .into_iter()
            .filter(|(_, clock)| !clock.is_server_time())
            .collect();
        if let Ok(mut set) = self.set.write() {
            *set = fresh;
        }
    }

    /// Every tenant at its reading of time: those on the server's clock
    /// first, then each tenant whose clock was set.
    pub fn scopes(&self) -> Vec<(TenantScope, Timestamp)> {
        let now = self.server.now();
        let set: Vec<(String, TenantClock)> = self.set.read().map_or_else(
            |_| Vec::new(),
            |set| set.iter().map(|(t, c)| (t.clone(), *c)).collect(),
        );
        let except = set.iter().map(|(tenant, _)| tenant.clone()).collect();
        let mut scopes = vec![(TenantScope::OnServerTime { except }, now)];
        scopes.extend(
            set.into_iter()
                .map(|(tenant, clock)| (TenantScope::Tenant(tenant), clock.reading(now))),
        );
        scopes
    }
}

impl Clock for TenantClocks {
    fn now(&self) -> Timestamp {
        self.server.now()
    }

    fn now_in(&self, tenant_id: &str) -> Timestamp {
        let now = self.server.now();
        match self.set.read() {
            Ok(set) if !set.is_empty() => {
                set.get(tenant_id).map_or(now, |clock| clock.reading(now))
            }
            _ => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_contract::control::ClockChange;
    use serde_json::json;

    fn change(body: serde_json::Value) -> ClockChange {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_clock_freezes_runs_on_from_its_reading_and_advances_but_never_goes_back() {
        let t0 = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let later = |s| t0.plus_seconds(s);
        let frozen = TenantClock::default()
            .changed(&change(json!({"mode": "frozen"})), t0)
            .unwrap();
        assert_eq!(frozen.reading(later(60)), t0);
        let advanced = frozen
            .changed(&change(json!({"advance": "PT72H"})), later(60))
            .unwrap();
        assert_eq!(advanced.reading(later(120)), later(72 * 3600));
        let running = advanced
            .changed(&change(json!({"mode": "running"})), later(120))
            .unwrap();
        assert_eq!(running.reading(later(130)), later(72 * 3600 + 10));
        assert_eq!(running.wire(later(130)).offset, "P2DT23H58M");
        let back = running
            .changed(
                &change(json!({"mode": "frozen", "now": "2026-01-01T00:00:00Z"})),
                later(130),
            )
            .unwrap_err();
        assert!(
            back.message.contains("never goes backwards"),
            "{}",
            back.message
        );
        let far = running
            .changed(&change(json!({"advance": "P3000000D"})), later(130))
            .unwrap_err();
        assert!(far.message.contains("advance"), "{}", far.message);
        let thawed = frozen
            .changed(&change(json!({"mode": "running"})), later(60))
            .unwrap();
        assert_eq!(thawed.wire(later(60)).offset, "-PT1M");
    }
}
