//! Smart lockout, as Entra ID's: after [`THRESHOLD`] wrong secrets for one
//! account (an app's client secret, a user's password) the account is locked
//! for a minute, and for twice as long at each lockout that follows, up to
//! [`LONGEST_LOCK_SECONDS`]. A lock ends by itself; a right secret, or an hour
//! without a failure, forgets the account's history. While locked, attempts
//! are refused without being checked or counted, so an attacker cannot keep a
//! caller locked for longer than the lock they earned.
//!
//! Counts are kept in this process's memory, per node (as Entra ID keeps them
//! per datacenter): with N nodes an attacker gets at most N times the
//! threshold before every node locks. Nothing of it needs to survive a restart.

use palisade_domain::Clock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Wrong secrets in a row that lock an account (Entra ID's default).
pub const THRESHOLD: u32 = 10;
/// The first lock; each further one lasts twice as long as the one before.
pub const FIRST_LOCK_SECONDS: i64 = 60;
/// The longest lock.
pub const LONGEST_LOCK_SECONDS: i64 = 15 * 60;
/// Failures further apart than this do not add up.
const FAILURE_WINDOW_SECONDS: i64 = 10 * 60;
/// An account this long without a failure starts afresh (its next lock is a minute again).
const FORGET_AFTER_SECONDS: i64 = 3600;
/// Accounts tracked at most: attempts on made-up user names cost memory too.
const MAX_ACCOUNTS: usize = 100_000;

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

/// A refused attempt: the account is locked for this long yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub retry_after_seconds: u64,
}

#[derive(Debug, Default)]
struct History {
    /// Failures since the last lock or success.
    failures: u32,
    last_failure: i64,
    /// Locks so far: each lasts twice as long as the one before.
    locks: u32,
    locked_until: i64,
}

impl History {
    fn is_forgotten(&self, now: i64) -> bool {
        self.locked_until <= now
            && self.last_failure + FORGET_AFTER_SECONDS * TICKS_PER_SECOND <= now
    }
}

#[derive(Clone)]
pub struct Lockout {
    clock: Arc<dyn Clock>,
    accounts: Arc<Mutex<HashMap<Account, History>>>,
}

impl Lockout {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Lockout {
            clock,
            accounts: Arc::default(),
        }
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, HashMap<Account, History>> {
        self.accounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `account` may try a secret now.
    pub fn check(&self, account: &Account) -> Result<(), Locked> {
        let now = self.clock.now().ticks();
        match self.accounts().get(account) {
            Some(history) if history.locked_until > now => Err(Locked {
                retry_after_seconds: ((history.locked_until - now) as u64)
                    .div_ceil(TICKS_PER_SECOND as u64),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a wrong secret; the one that reaches the threshold locks the account.
    pub fn failed(&self, account: &Account) {
        let now = self.clock.now().ticks();
        let mut accounts = self.accounts();
        if !accounts.contains_key(account) && accounts.len() >= MAX_ACCOUNTS {
            accounts.retain(|_, history| !history.is_forgotten(now));
            if accounts.len() >= MAX_ACCOUNTS {
                // Make room by the account idle longest that is not locked.
                let idlest = accounts
                    .iter()
                    .filter(|(_, h)| h.locked_until <= now)
                    .min_by_key(|(_, h)| h.last_failure)
                    .map(|(a, _)| a.clone());
                match idlest {
                    Some(idlest) => {
                        accounts.remove(&idlest);
                    }
                    None => return,
                }
            }
        }
        let history = accounts.entry(account.clone()).or_default();
        if history.is_forgotten(now) {
            *history = History::default();
        }
        if history.last_failure + FAILURE_WINDOW_SECONDS * TICKS_PER_SECOND <= now {
            history.failures = 0;
        }
        history.failures += 1;
        history.last_failure = now;
        if history.failures >= THRESHOLD {
            let seconds = FIRST_LOCK_SECONDS
                .saturating_mul(1 << history.locks.min(20))
                .min(LONGEST_LOCK_SECONDS);
            history.locks += 1;
            history.failures = 0;
            history.locked_until = now + seconds * TICKS_PER_SECOND;
        }
    }

    /// A right secret: the account's failures are forgotten.
    pub fn succeeded(&self, account: &Account) {
        self.accounts().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_domain::OffsetClock;

    #[test]
    fn locks_grow_and_end_by_themselves() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let alice = Account::new("t", AccountKind::User, "Alice@Contoso.example");
        let bob = Account::new("t", AccountKind::User, "bob@contoso.example");
        for _ in 0..THRESHOLD - 1 {
            lockout.failed(&alice);
        }
        assert_eq!(lockout.check(&alice), Ok(()));
        lockout.failed(&Account::new(
            "t",
            AccountKind::User,
            "alice@contoso.example",
        ));
        assert_eq!(
            lockout.check(&alice),
            Err(Locked {
                retry_after_seconds: 60
            })
        );
        assert_eq!(lockout.check(&bob), Ok(()), "per account");
        clock.advance(60);
        assert_eq!(lockout.check(&alice), Ok(()));
        for _ in 0..THRESHOLD {
            lockout.failed(&alice);
        }
        assert_eq!(
            lockout.check(&alice),
            Err(Locked {
                retry_after_seconds: 120
            }),
            "the second lock is longer"
        );
        clock.advance(120);
        lockout.succeeded(&alice);
        for _ in 0..THRESHOLD {
            lockout.failed(&alice);
        }
        assert_eq!(
            lockout.check(&alice),
            Err(Locked {
                retry_after_seconds: 60
            }),
            "a success starts afresh"
        );
    }

    #[test]
    fn failures_far_apart_do_not_add_up() {
        let clock = Arc::new(OffsetClock::default());
        let lockout = Lockout::new(clock.clone());
        let app = Account::new("t", AccountKind::App, "app");
        for _ in 0..THRESHOLD * 3 {
            lockout.failed(&app);
            clock.advance(FAILURE_WINDOW_SECONDS);
        }
        assert_eq!(lockout.check(&app), Ok(()));
    }
}
