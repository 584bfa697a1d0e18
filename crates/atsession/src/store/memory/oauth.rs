//! OAuth states and grants in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use super::{MemoryStore, Tables};
use crate::app::StoredSession;
use crate::clock::to_millis;
use crate::secret::TokenHash;
use crate::store::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, SessionGrantStore, SessionWithGrant, StateStore,
    StoredAuthState, StoredGrant,
};
use crate::store::{Cas, StoreError, StoreFuture};
use crate::syntax::Did;

#[derive(Debug, Default)]
pub(super) struct OAuthTables {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<[u8; 32], StoredAuthState>,
    grants: BTreeMap<GrantId, StoredGrant>,
    by_did: HashMap<Did, HashSet<GrantId>>,
}

impl OAuthTables {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every write completes without calling out: a poisoned lock holds consistent tables.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn remove_grant(&mut self, id: &GrantId) -> Option<StoredGrant> {
        let g = self.grants.remove(id)?;
        if let Some(set) = self.by_did.get_mut(&g.did) {
            set.remove(id);
            if set.is_empty() {
                self.by_did.remove(&g.did);
            }
        }
        Some(g)
    }

    fn insert_grant(&mut self, g: StoredGrant) {
        self.by_did
            .entry(g.did.clone())
            .or_default()
            .insert(g.id.clone());
        self.grants.insert(g.id.clone(), g);
    }
}

impl StateStore for MemoryStore {
    fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        let mut t = self.oauth.lock();
        StoreFuture::ready(if t.states.contains_key(state.key.as_bytes()) {
            Err(StoreError::backend(
                "memory",
                "put_state",
                "a state with this key exists",
            ))
        } else {
            t.states.insert(*state.key.as_bytes(), state.clone());
            Ok(())
        })
    }

    fn take_state<'a>(
        &'a self,
        key: &'a TokenHash,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, Option<StoredAuthState>> {
        StoreFuture::ready({
            let s = self.oauth.lock().states.remove(key.as_bytes());
            Ok(s.filter(|s| to_millis(s.expires_at) > to_millis(now)))
        })
    }

    fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::ready({
            let mut t = self.oauth.lock();
            let before = t.states.len();
            let now = to_millis(now);
            t.states.retain(|_, s| to_millis(s.expires_at) > now);
            Ok((before - t.states.len()) as u64)
        })
    }
}

impl GrantStore for MemoryStore {
    fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
        let mut t = self.oauth.lock();
        StoreFuture::ready(if t.grants.contains_key(&grant.id) {
            Err(StoreError::backend(
                "memory",
                "create_grant",
                "a grant with this id exists",
            ))
        } else {
            t.insert_grant(grant.clone());
            Ok(())
        })
    }

    fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        StoreFuture::ready(Ok(self.oauth.lock().grants.get(id).cloned()))
    }

    fn update_grant<'a>(
        &'a self,
        expected_version: u64,
        grant: &'a StoredGrant,
    ) -> StoreFuture<'a, Cas> {
        let mut t = self.oauth.lock();
        StoreFuture::ready(Ok(match t.grants.get(&grant.id).map(|g| g.version) {
            None => Cas::Missing,
            Some(version) if version != expected_version => Cas::Conflict,
            Some(_) => {
                t.remove_grant(&grant.id);
                t.insert_grant(grant.clone());
                Cas::Updated
            }
        }))
    }

    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        StoreFuture::ready(Ok(self.oauth.lock().remove_grant(id).is_some()))
    }

    fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        StoreFuture::ready({
            let t = self.oauth.lock();
            let mut out: Vec<StoredGrant> = t
                .by_did
                .get(did)
                .into_iter()
                .flatten()
                .filter_map(|id| t.grants.get(id).cloned())
                .collect();
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::ready({
            let mut t = self.oauth.lock();
            let ids: Vec<GrantId> = t.by_did.get(did).into_iter().flatten().cloned().collect();
            for id in &ids {
                t.remove_grant(id);
            }
            Ok(ids.len() as u64)
        })
    }

    fn list_grants<'a>(
        &'a self,
        cursor: Option<&'a GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, GrantPage> {
        StoreFuture::ready({
            use std::ops::Bound;
            let t = self.oauth.lock();
            let after = cursor.map(|c| c.as_str().to_owned());
            let start = match &after {
                Some(a) => Bound::Excluded(a.as_str()),
                None => Bound::Unbounded,
            };
            let grants: Vec<StoredGrant> = t
                .grants
                .iter()
                .filter(|(id, _)| match start {
                    Bound::Excluded(a) => id.as_str() > a,
                    _ => true,
                })
                .take(limit.max(1))
                .map(|(_, g)| g.clone())
                .collect();
            let next = (grants.len() == limit.max(1))
                .then(|| grants.last().map(|g| GrantCursor::new(g.id.as_str())))
                .flatten();
            Ok(GrantPage { grants, next })
        })
    }
}

/// Two reads: a session, then its grant (both in memory, so the answer is ready at once).
impl SessionGrantStore for MemoryStore {
    fn load_by_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        let found = Tables::get_via(&self.read().by_token, hash);
        StoreFuture::ready(Ok(self.grant_now(found)))
    }

    fn load_by_access_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        let found = Tables::get_via(&self.read().by_access, hash);
        StoreFuture::ready(Ok(self.grant_now(found)))
    }
}

impl MemoryStore {
    /// `found` with its grant, if it names one that exists.
    fn grant_now(&self, found: Option<Arc<StoredSession>>) -> Option<SessionWithGrant> {
        let session = found?;
        let grant =
            (session.grant_id.as_ref()).and_then(|id| self.oauth.lock().grants.get(id).cloned());
        Some((session, grant))
    }
}
