//! A small time-bounded cache for identity lookups and metadata documents.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Entries live `ttl`; past `capacity` entries, expired ones are dropped, then everything.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut m = self.lock();
        match m.get(k) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                m.remove(k);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, k: K, v: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut m = self.lock();
        if m.len() >= self.capacity {
            let ttl = self.ttl;
            m.retain(|_, (at, _)| at.elapsed() < ttl);
            if m.len() >= self.capacity {
                m.clear();
            }
        }
        m.insert(k, (Instant::now(), v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_bounds() {
        let c = TtlCache::new(Duration::from_millis(30), 2);
        c.insert(1, "a");
        assert_eq!(c.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&1), None);
        c.insert(1, "a");
        c.insert(2, "b");
        c.insert(3, "c");
        assert!(c.lock().len() <= 2);
        assert_eq!(c.get(&3), Some("c"));
        let off = TtlCache::new(Duration::ZERO, 2);
        off.insert(1, 1);
        assert_eq!(off.get(&1), None);
    }
}
