//! Wakes the long polls of devices that have a new action waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

type Key = (String, String);

/// One `Notify` per waiting device, held weakly: it lives while a poll waits on it.
#[derive(Default)]
pub struct Wakeups {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    by_device: HashMap<Key, Weak<Notify>>,
    /// Dead entries are swept when the map reaches this size.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1_024;

impl Wakeups {
    /// The signal a poll of this device waits on; keep it while waiting.
    pub fn subscribe(&self, tenant_id: &str, machine_id: &str) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant_id.to_string(), machine_id.to_string());
        if let Some(notify) = waiting.by_device.get(&key).and_then(Weak::upgrade) {
            return notify;
        }
        if waiting.by_device.len() >= waiting.sweep_at {
            waiting.by_device.retain(|_, w| w.strong_count() > 0);
            waiting.sweep_at = (waiting.by_device.len() * 2).max(MIN_SWEEP);
        }
        let notify = Arc::new(Notify::new());
        waiting.by_device.insert(key, Arc::downgrade(&notify));
        notify
    }

    /// Wakes every poll now waiting for this device.
    pub fn wake(&self, tenant_id: &str, machine_id: &str) {
        let notify = {
            let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting
                .by_device
                .get(&(tenant_id.to_string(), machine_id.to_string()))
                .and_then(Weak::upgrade)
        };
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every poll now waiting: after news may have been missed (a lost
    /// connection to the other nodes), each looks for itself.
    pub fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = {
            let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting
                .by_device
                .values()
                .filter_map(Weak::upgrade)
                .collect()
        };
        for notify in all {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_reaches_only_the_device_it_names() {
        let wakeups = Arc::new(Wakeups::default());
        let a = wakeups.subscribe("t", "a");
        let b = wakeups.subscribe("t", "b");
        let woken_a = a.notified();
        let woken_b = b.notified();
        tokio::pin!(woken_a, woken_b);
        woken_a.as_mut().enable();
        woken_b.as_mut().enable();
        wakeups.wake("t", "a");
        tokio::time::timeout(Duration::from_secs(1), woken_a)
            .await
            .expect("a is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), woken_b)
                .await
                .is_err(),
            "b is not"
        );
    }

    #[test]
    fn entries_of_finished_polls_are_swept() {
        let wakeups = Wakeups::default();
        for n in 0..5_000 {
            drop(wakeups.subscribe("t", &n.to_string()));
        }
        assert!(wakeups.waiting.lock().unwrap().by_device.len() <= 2 * MIN_SWEEP);
    }
}
