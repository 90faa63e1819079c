//! Smart lockout, as Entra ID's: wrong secrets for one account (an app's
//! client secret, a user's password) are counted per place they come from.
//! After [`THRESHOLD`] from one place the account is locked for that place for
//! a minute, and for twice as long at each lockout that follows, up to
//! [`LONGEST_LOCK_SECONDS`]; client ids and user names are no secret, so an
//! attacker elsewhere must not lock the account's own caller out. Wrong
//! secrets from every place where the account has not signed in before add up
//! as well: after [`UNFAMILIAR_THRESHOLD`] of them, every such place is locked
//! (Entra's familiar and unfamiliar locations), so that many addresses do not
//! make many guesses; places that have signed in keep signing in.
//!
//! An attempt is counted when it starts, before its secret is checked, so
//! that attempts sent side by side cannot pass the threshold together. A lock
//! ends by itself; a right secret, or an hour without a failure, forgets the
//! place's history. While locked, attempts are refused without being checked
//! or counted, so an attacker cannot keep a caller locked for longer than the
//! lock they earned.
//!
//! Counts are kept in this process's memory, per node (as Entra ID keeps them
//! per datacenter): with N nodes an attacker gets at most N times the
//! threshold before every node locks. Nothing of it needs to survive a restart.

use palisade_domain::Clock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Wrong secrets in a row from one place that lock an account there (Entra ID's default).
pub const THRESHOLD: u32 = 10;
/// Wrong secrets from unfamiliar places, all together, that lock the account
/// for every unfamiliar place.
pub const UNFAMILIAR_THRESHOLD: u32 = 10 * THRESHOLD;
/// The first lock; each further one lasts twice as long as the one before.
pub const FIRST_LOCK_SECONDS: i64 = 60;
/// The longest lock.
pub const LONGEST_LOCK_SECONDS: i64 = 15 * 60;
/// Failures further apart than this do not add up.
const FAILURE_WINDOW_SECONDS: i64 = 10 * 60;
/// A place this long without a failure starts afresh (its next lock is a minute again).
const FORGET_AFTER_SECONDS: i64 = 3600;
/// How long a place where the account signed in stays familiar.
const FAMILIAR_SECONDS: i64 = 30 * 24 * 3600;
/// Histories kept at most: attempts on made-up user names, from made-up
/// places, cost memory too.
const MAX_HISTORIES: usize = 100_000;

const TICKS_PER_SECOND: i64 = 10_000_000;

/// What is locked: an app (its client secret) or a user (their password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    App,
    User,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    tenant_id: String,
    kind: AccountKind,
    /// Client ids and user names match case-insensitively.
    name: String,
}

impl Account {
    pub fn new(tenant_id: &str, kind: AccountKind, name: &str) -> Self {
        Account {
            tenant_id: tenant_id.to_string(),
            kind,
            name: name.to_lowercase(),
        }
    }
}

/// Where attempts come from: an IPv4 address, or an IPv6 /64 (one host's
/// share of addresses: counting single IPv6 addresses would give each host
/// billions of fresh counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place(IpAddr);

impl From<IpAddr> for Place {
    fn from(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Place(IpAddr::V6(prefix.into()))
            }
            v4 => Place(v4),
        }
    }
}

/// A refused attempt: the account is locked for this long yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after_seconds: u64,
}

/// One history per account and place, and one per account for its unfamiliar places.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    account: Account,
    /// `None`: every place the account is not familiar with, together.
    place: Option<Place>,
}

#[derive(Debug, Default)]
struct History {
    /// Failures since the last lock or success.
    failures: u32,
    /// Attempts whose secret is being checked.
    in_flight: u32,
    last_failure: i64,
    /// Locks so far: each lasts twice as long as the one before.
    locks: u32,
    locked_until: i64,
    /// Until when the account signed in from here counts as familiar.
    familiar_until: i64,
}

impl History {
    fn is_forgotten(&self, now: i64) -> bool {
        self.in_flight == 0
            && self.locked_until <= now
            && self.familiar_until <= now
            && self.last_failure + FORGET_AFTER_SECONDS * TICKS_PER_SECOND <= now
    }

    /// Refuses an attempt while locked, or while the attempts being checked
    /// could reach `threshold` (then for a second: they end soon).
    fn admit(&self, now: i64, threshold: u32) -> Result<(), Locked> {
        if self.locked_until > now {
            return Err(Locked {
                retry_after_seconds: ((self.locked_until - now) as u64)
                    .div_ceil(TICKS_PER_SECOND as u64),
            });
        }
        let failures = if self.is_stale(now) { 0 } else { self.failures };
        if failures + self.in_flight >= threshold {
            return Err(Locked {
                retry_after_seconds: 1,
            });
        }
        Ok(())
    }

    fn is_stale(&self, now: i64) -> bool {
        self.last_failure + FAILURE_WINDOW_SECONDS * TICKS_PER_SECOND <= now
    }

    /// Counts a wrong secret; the one that reaches `threshold` locks.
    fn fail(&mut self, now: i64, threshold: u32) {
        if self.is_stale(now) {
            self.failures = 0;
        }
        if self.last_failure + FORGET_AFTER_SECONDS * TICKS_PER_SECOND <= now {
            self.locks = 0;
        }
        self.failures += 1;
        self.last_failure = now;
        if self.failures >= threshold {
            let seconds = FIRST_LOCK_SECONDS
                .saturating_mul(1 << self.locks.min(20))
                .min(LONGEST_LOCK_SECONDS);
            self.locks += 1;
            self.failures = 0;
            self.locked_until = now + seconds * TICKS_PER_SECOND;
        }
    }
}

#[derive(Clone)]
pub struct Lockout {
    clock: Arc<dyn Clock>,
    histories: Arc<Mutex<HashMap<Key, History>>>,
}

/// An attempt at an account's secret, counted until it is settled: dropped
/// without [`Attempt::succeeded`] (a wrong secret, or a request that went
/// away while its secret was checked), it counts as a failure.
pub struct Attempt {
    lockout: Lockout,
    key: Key,
    /// Whether the unfamiliar places' history counts this attempt too.
    unfamiliar: bool,
    succeeded: bool,
}

impl Attempt {
    /// A right secret: the place's failures are forgotten, and the place is familiar.
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.lockout.settle(self);
    }
}

impl Lockout {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Lockout {
            clock,
            histories: Arc::default(),
        }
    }

    fn histories(&self) -> std::sync::MutexGuard<'_, HashMap<Key, History>> {
        self.histories
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts an attempt at `account`'s secret from `place`, or refuses it.
    pub fn begin(&self, account: &Account, place: impl Into<Place>) -> Result<Attempt, Locked> {
        let now = self.clock.now().ticks();
        let key = Key {
            account: account.clone(),
            place: Some(place.into()),
        };
        let unfamiliar_key = Key {
            account: account.clone(),
            place: None,
        };
        let mut histories = self.histories();
        let unfamiliar = match histories.get(&key) {
            Some(history) => {
                history.admit(now, THRESHOLD)?;
                history.familiar_until <= now
            }
            None => true,
        };
        if unfamiliar {
            if let Some(history) = histories.get(&unfamiliar_key) {
                history.admit(now, UNFAMILIAR_THRESHOLD)?;
            }
        }
        let mut count = |key: &Key| {
            if let Some(history) = entry(&mut histories, key, now) {
                if history.is_forgotten(now) {
                    *history = History::default();
                }
                history.in_flight += 1;
            }
        };
        count(&key);
        if unfamiliar {
            count(&unfamiliar_key);
        }
        Ok(Attempt {
            lockout: self.clone(),
            key,
            unfamiliar,
            succeeded: false,
        })
    }

    fn settle(&self, attempt: &Attempt) {
        let now = self.clock.now().ticks();
        let mut histories = self.histories();
        if let Some(history) = histories.get_mut(&attempt.key) {
            history.in_flight = history.in_flight.saturating_sub(1);
            if attempt.succeeded {
                history.failures = 0;
                history.locks = 0;
                history.familiar_until = now + FAMILIAR_SECONDS * TICKS_PER_SECOND;
            } else {
                history.fail(now, THRESHOLD);
            }
        }
        if attempt.unfamiliar {
            let key = Key {
                account: attempt.key.account.clone(),
                place: None,
            };
            // A success from a new place says nothing of the failures from
            // the others: they keep counting.
            if let Some(history) = histories.get_mut(&key) {
                history.in_flight = history.in_flight.saturating_sub(1);
                if !attempt.succeeded {
                    history.fail(now, UNFAMILIAR_THRESHOLD);
                }
            }
        }
    }
}

/// The history of `key`, made when needed; `None` when every history kept is
/// locked, familiar or in use (the attempt then goes uncounted rather than
/// forgetting one of them).
fn entry<'a>(
    histories: &'a mut HashMap<Key, History>,
    key: &Key,
    now: i64,
) -> Option<&'a mut History> {
    if !histories.contains_key(key) && histories.len() >= MAX_HISTORIES {
        histories.retain(|_, history| !history.is_forgotten(now));
        if histories.len() >= MAX_HISTORIES {
            // Make room by the history idle longest that holds nothing back.
            let idlest = histories
                .iter()
                .filter(|(_, h)| {
                    h.in_flight == 0 && h.locked_until <= now && h.familiar_until <= now
                })
                .min_by_key(|(_, h)| h.last_failure)
                .map(|(k, _)| k.clone())?;
            histories.remove(&idlest);
        }
    }
    Some(histories.entry(key.clone()).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_domain::OffsetClock;

    const HERE: [u8; 4] = [192, 0, 2, 1];
    const ELSEWHERE: [u8; 4] = [198, 51, 100, 7];

    fn place(octets: [u8; 4]) -> Place {
        IpAddr::from(octets).into()
    }

    fn fail(lockout: &Lockout, account: &Account, from: [u8; 4], times: u32) {
        for _ in 0..times {
            drop(lockout.begin(account, place(from)).expect("not locked"));
        }
    }

    /// How long an attempt is refused for; an attempt admitted counts as a failure.
    fn retry_after(lockout: &Lockout, account: &Account, from: [u8; 4]) -> Option<u64> {
        lockout
            .begin(account, place(from))
            .err()
            .map(|locked| locked.retry_after_seconds)
    }

    #[test]
    fn locks_grow_and_end_by_themselves() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let alice = Account::new("t", AccountKind::User, "Alice@Contoso.example");
        let bob = Account::new("t", AccountKind::User, "bob@contoso.example");
        fail(&lockout, &alice, HERE, THRESHOLD - 1);
        let alice_lower = Account::new("t", AccountKind::User, "alice@contoso.example");
        fail(&lockout, &alice_lower, HERE, 1);
        assert_eq!(retry_after(&lockout, &alice, HERE), Some(60));
        assert_eq!(retry_after(&lockout, &bob, HERE), None, "per account");
        clock.advance(60);
        fail(&lockout, &alice, HERE, THRESHOLD);
        assert_eq!(
            retry_after(&lockout, &alice, HERE),
            Some(120),
            "the second lock is longer"
        );
        clock.advance(120);
        lockout.begin(&alice, place(HERE)).unwrap().succeeded();
        fail(&lockout, &alice, HERE, THRESHOLD);
        assert_eq!(
            retry_after(&lockout, &alice, HERE),
            Some(60),
            "a success starts afresh"
        );
    }

    #[test]
    fn a_lock_holds_only_where_the_failures_came_from() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let app = Account::new("t", AccountKind::App, "app");
        fail(&lockout, &app, ELSEWHERE, THRESHOLD);
        assert_eq!(retry_after(&lockout, &app, ELSEWHERE), Some(60));
        assert_eq!(retry_after(&lockout, &app, HERE), None);
    }

    #[test]
    fn attempts_side_by_side_cannot_pass_the_threshold_together() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let app = Account::new("t", AccountKind::App, "app");
        let started: Vec<Attempt> = (0..THRESHOLD)
            .map(|_| lockout.begin(&app, place(HERE)).expect("admitted"))
            .collect();
        assert_eq!(
            retry_after(&lockout, &app, HERE),
            Some(1),
            "the attempts being checked could lock the account"
        );
        drop(started);
        assert_eq!(retry_after(&lockout, &app, HERE), Some(60));
    }

    #[test]
    fn many_unfamiliar_places_add_up_but_familiar_ones_keep_signing_in() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let app = Account::new("t", AccountKind::App, "app");
        lockout.begin(&app, place(HERE)).unwrap().succeeded();
        let places = UNFAMILIAR_THRESHOLD / (THRESHOLD - 1) + 1;
        let mut failures = 0;
        'attack: for n in 0..places {
            let from = [203, 0, 113, n as u8];
            for _ in 0..THRESHOLD - 1 {
                match lockout.begin(&app, place(from)) {
                    Ok(attempt) => drop(attempt),
                    Err(_) => break 'attack,
                }
                failures += 1;
            }
        }
        assert_eq!(failures, UNFAMILIAR_THRESHOLD, "every place counted");
        assert_eq!(
            retry_after(&lockout, &app, [203, 0, 113, 250]),
            Some(60),
            "a new place is locked"
        );
        assert_eq!(
            retry_after(&lockout, &app, HERE),
            None,
            "a familiar place is not"
        );
        // Failures from a familiar place count only there (the attempt above was one).
        fail(&lockout, &app, HERE, THRESHOLD - 1);
        assert_eq!(retry_after(&lockout, &app, HERE), Some(60));
    }

    #[test]
    fn an_ipv6_host_is_one_place() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Place::from(a), Place::from(b));
        assert_ne!(Place::from(a), Place::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Place::from(mapped), place(HERE));
    }

    #[test]
    fn failures_far_apart_do_not_add_up() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let app = Account::new("t", AccountKind::App, "app");
        for _ in 0..THRESHOLD * 3 {
            fail(&lockout, &app, HERE, 1);
            clock.advance(FAILURE_WINDOW_SECONDS);
        }
        assert_eq!(retry_after(&lockout, &app, HERE), None);
    }
}
