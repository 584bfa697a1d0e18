//! The in-process lock: leases in a map, for tasks of one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::lock::{LeaseOwner, Lock, LockFuture};

/// Leases held in this process's memory. Cheap to clone: clones share the leases.
///
/// Uses tokio's clock, so tests with a paused runtime can run leases out instantly.
#[derive(Debug, Clone, Default)]
pub struct MemoryLock {
    leases: Arc<Mutex<HashMap<String, (LeaseOwner, Instant)>>>,
}

impl MemoryLock {
    /// No key held.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, (LeaseOwner, Instant)>> {
        // Every critical section below is a single map operation: a panic cannot leave the
        // map half-written.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lock for MemoryLock {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        let now = Instant::now();
        let mut leases = self.leases();
        let free = leases.get(key).is_none_or(|(_, until)| *until <= now);
        if free {
            leases.insert(key.to_owned(), (owner.clone(), later(now, lease)));
        }
        Box::pin(std::future::ready(Ok(free)))
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        let now = Instant::now();
        let mut leases = self.leases();
        let held = match leases.get_mut(key) {
            Some((o, until)) if o == owner && *until > now => {
                *until = later(now, lease);
                true
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(held)))
    }

    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        let now = Instant::now();
        let mut leases = self.leases();
        let held = match leases.get(key) {
            Some((o, until)) if o == owner => {
                let held = *until > now;
                leases.remove(key);
                held
            }
            _ => false,
        };
        Box::pin(std::future::ready(Ok(held)))
    }
}

/// `now + lease`, saturating (a lease longer than the clock can count never runs out).
fn later(now: Instant, lease: Duration) -> Instant {
    now.checked_add(lease)
        .or_else(|| now.checked_add(crate::clock::MAX_DURATION))
        .unwrap_or(now)
}
