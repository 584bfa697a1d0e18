//! The in-process store: for tests, development and single-process apps that accept losing
//! sessions on restart.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use time::OffsetDateTime;

use super::{Cas, SessionStore, StoreError, StoreFuture};
use crate::app::{SessionId, StoredSession};
use crate::clock::to_millis;
use crate::secret::TokenHash;
use crate::store::oauth::GrantId;
use crate::syntax::Did;

mod lock;
mod oauth;

pub use lock::MemoryLock;

/// Sessions in memory, indexed by id, token hash, access-token hash, DID and expiry.
///
/// Cheap to clone: clones share the same sessions.
///
/// ```
/// use atsession::store::MemoryStore;
/// let store = MemoryStore::new();
/// assert_eq!(store.len(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Tables>>,
    oauth: Arc<oauth::OAuthTables>,
}

/// Hashes a key that is already a SHA-256 output by taking its first eight bytes. Safe
/// against flooding: the keys inserted are hashes of server-generated random tokens.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a usize) and then its bytes; keep the bytes.
        let mut prefix = [0u8; 8];
        let n = bytes.len().min(8);
        prefix[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(prefix);
    }
}

type ByHash = HashMap<[u8; 32], Arc<StoredSession>, BuildHasherDefault<PrefixHasher>>;

#[derive(Debug, Default)]
struct Tables {
    by_id: HashMap<SessionId, Arc<StoredSession>>,
    by_token: ByHash,
    by_access: ByHash,
    by_did: HashMap<Did, HashSet<SessionId>>,
    by_expiry: BTreeSet<(i64, SessionId)>,
}

impl Tables {
    fn insert(&mut self, s: StoredSession) {
        let s = Arc::new(s);
        self.by_token
            .insert(*s.token_hash.as_bytes(), Arc::clone(&s));
        if let Some(a) = &s.access_token_hash {
            self.by_access.insert(*a.as_bytes(), Arc::clone(&s));
        }
        self.by_did
            .entry(s.did.clone())
            .or_default()
            .insert(s.id.clone());
        self.by_expiry
            .insert((to_millis(s.expires_at()), s.id.clone()));
        self.by_id.insert(s.id.clone(), s);
    }

    fn remove(&mut self, id: &SessionId) -> Option<Arc<StoredSession>> {
        let s = self.by_id.remove(id)?;
        self.by_token.remove(s.token_hash.as_bytes());
        if let Some(a) = &s.access_token_hash {
            self.by_access.remove(a.as_bytes());
        }
        if let Some(set) = self.by_did.get_mut(&s.did) {
            set.remove(id);
            if set.is_empty() {
                self.by_did.remove(&s.did);
            }
        }
        self.by_expiry
            .remove(&(to_millis(s.expires_at()), id.clone()));
        Some(s)
    }

    fn get_via(index: &ByHash, hash: &TokenHash) -> Option<Arc<StoredSession>> {
        index.get(hash.as_bytes()).cloned()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sessions are stored, expired ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no session is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half-written: every write
        // below completes its index updates without calling out.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn duplicate() -> StoreError {
    StoreError::backend(
        "memory",
        "create",
        "a session with this id or token hash already exists",
    )
}

impl SessionStore for MemoryStore {
    fn create<'a>(&'a self, session: &'a StoredSession) -> StoreFuture<'a, ()> {
        let mut t = self.write();
        let taken = t.by_id.contains_key(&session.id)
            || t.by_token.contains_key(session.token_hash.as_bytes())
            || session
                .access_token_hash
                .is_some_and(|a| t.by_access.contains_key(a.as_bytes()));
        StoreFuture::ready(if taken {
            Err(duplicate())
        } else {
            t.insert(session.clone());
            Ok(())
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready(Ok(self.read().by_id.get(id).cloned()))
    }

    fn load_by_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready({
            let t = self.read();
            Ok(Tables::get_via(&t.by_token, hash))
        })
    }

    fn load_by_access_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready({
            let t = self.read();
            Ok(Tables::get_via(&t.by_access, hash))
        })
    }

    fn update<'a>(
        &'a self,
        expected_version: u64,
        session: &'a StoredSession,
    ) -> StoreFuture<'a, Cas> {
        let mut t = self.write();
        StoreFuture::ready(Ok(match t.by_id.get(&session.id).map(|cur| cur.version) {
            None => Cas::Missing,
            Some(version) if version != expected_version => Cas::Conflict,
            Some(_) => {
                t.remove(&session.id);
                t.insert(session.clone());
                Cas::Updated
            }
        }))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Ok(self.write().remove(id).is_some()))
    }

    fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
        StoreFuture::ready({
            let t = self.read();
            let mut out: Vec<StoredSession> = t
                .by_did
                .get(did)
                .into_iter()
                .flatten()
                .filter_map(|id| t.by_id.get(id).map(|s| (**s).clone()))
                .collect();
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::ready({
            let mut t = self.write();
            let ids: Vec<SessionId> = t.by_did.get(did).into_iter().flatten().cloned().collect();
            for id in &ids {
                t.remove(id);
            }
            Ok(ids.len() as u64)
        })
    }

    fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::ready({
            let now = to_millis(now);
            let mut t = self.write();
            let ids: Vec<SessionId> = t
                .by_expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .map(|(_, id)| id.clone())
                .collect();
            for id in &ids {
                t.remove(id);
            }
            Ok(ids.len() as u64)
        })
    }

    fn expired_with_grants<'a>(
        &'a self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(SessionId, GrantId)>> {
        StoreFuture::ready({
            let now = to_millis(now);
            let t = self.read();
            Ok(t.by_expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .filter_map(|(_, id)| {
                    let g = t.by_id.get(id)?.grant_id.clone()?;
                    Some((id.clone(), g))
                })
                .take(limit)
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryStore;
    use crate::app::SessionManager;

    #[tokio::test]
    async fn a_lookup_hands_out_the_record_held_not_a_copy() {
        let m = SessionManager::new(MemoryStore::new());
        let new = m.create("did:plc:abc", "alice.test", ()).await.unwrap();
        let a = m.load(new.token.expose()).await.unwrap();
        let b = m.load(new.token.expose()).await.unwrap();
        assert!(Arc::ptr_eq(a.record(), b.record()));
        // An update stores a new record; the handles read before keep the old one.
        let updated = m.update(&a, serde_json::json!({"n": 1})).await.unwrap();
        let c = m.load(new.token.expose()).await.unwrap();
        assert!(!Arc::ptr_eq(a.record(), c.record()));
        assert_eq!((a.version, c.version, updated.version), (1, 2, 2));
    }
}
