//! OAuth states and grants in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use super::MemoryStore;
use crate::clock::to_millis;
use crate::secret::TokenHash;
use crate::store::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, StateStore, StoredAuthState, StoredGrant,
};
use crate::store::{Cas, StoreError};
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
    async fn put_state(&self, state: &StoredAuthState) -> Result<(), StoreError> {
        let mut t = self.oauth.lock();
        if t.states.contains_key(state.key.as_bytes()) {
            return Err(StoreError::backend(
                "memory",
                "put_state",
                "a state with this key exists",
            ));
        }
        t.states.insert(*state.key.as_bytes(), state.clone());
        Ok(())
    }

    async fn take_state(
        &self,
        key: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<StoredAuthState>, StoreError> {
        let s = self.oauth.lock().states.remove(key.as_bytes());
        Ok(s.filter(|s| to_millis(s.expires_at) > to_millis(now)))
    }

    async fn delete_expired_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let mut t = self.oauth.lock();
        let before = t.states.len();
        let now = to_millis(now);
        t.states.retain(|_, s| to_millis(s.expires_at) > now);
        Ok((before - t.states.len()) as u64)
    }
}

impl GrantStore for MemoryStore {
    async fn create_grant(&self, grant: &StoredGrant) -> Result<(), StoreError> {
        let mut t = self.oauth.lock();
        if t.grants.contains_key(&grant.id) {
            return Err(StoreError::backend(
                "memory",
                "create_grant",
                "a grant with this id exists",
            ));
        }
        t.insert_grant(grant.clone());
        Ok(())
    }

    async fn load_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self.oauth.lock().grants.get(id).cloned())
    }

    async fn update_grant(
        &self,
        expected_version: u64,
        grant: &StoredGrant,
    ) -> Result<Cas, StoreError> {
        let mut t = self.oauth.lock();
        match t.grants.get(&grant.id) {
            None => return Ok(Cas::Missing),
            Some(g) if g.version != expected_version => return Ok(Cas::Conflict),
            Some(_) => {}
        }
        t.remove_grant(&grant.id);
        t.insert_grant(grant.clone());
        Ok(Cas::Updated)
    }

    async fn delete_grant(&self, id: &GrantId) -> Result<bool, StoreError> {
        Ok(self.oauth.lock().remove_grant(id).is_some())
    }

    async fn list_grants_by_did(&self, did: &Did) -> Result<Vec<StoredGrant>, StoreError> {
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
    }

    async fn delete_grants_by_did(&self, did: &Did) -> Result<u64, StoreError> {
        let mut t = self.oauth.lock();
        let ids: Vec<GrantId> = t.by_did.get(did).into_iter().flatten().cloned().collect();
        for id in &ids {
            t.remove_grant(id);
        }
        Ok(ids.len() as u64)
    }

    async fn list_grants(
        &self,
        cursor: Option<&GrantCursor>,
        limit: usize,
    ) -> Result<GrantPage, StoreError> {
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
    }
}

/// Two reads: a session, then its grant (both in memory).
impl crate::store::oauth::SessionGrantStore for MemoryStore {}
