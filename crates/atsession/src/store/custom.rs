//! Stores written outside this crate, behind [`AnyStore::custom`](super::AnyStore::custom):
//! the store traits return `impl Future` and so cannot be trait objects; [`DynStore`] is
//! their object-safe twin (boxed futures), implemented for every type that implements all
//! three, and [`CustomStore`] turns it back into a store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use time::OffsetDateTime;

use super::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, StateStore, StoredAuthState, StoredGrant,
};
use super::{Cas, SessionStore, StoreError};
use crate::app::{SessionId, StoredSession};
use crate::secret::TokenHash;
use crate::syntax::Did;

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store traits ([`SessionStore`], [`StateStore`], [`GrantStore`]) as one
/// object-safe trait. Implemented for every type that implements the three; you never
/// implement it yourself. The methods are named `dyn_*` so that they never shadow the
/// traits' own.
#[allow(missing_docs)]
pub trait DynStore: Send + Sync + 'static {
    fn dyn_create<'a>(&'a self, s: &'a StoredSession) -> StoreFuture<'a, ()>;
    fn dyn_load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>>;
    fn dyn_load_by_token<'a>(
        &'a self,
        h: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>>;
    fn dyn_load_by_access_token<'a>(
        &'a self,
        h: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>>;
    fn dyn_update<'a>(&'a self, v: u64, s: &'a StoredSession) -> StoreFuture<'a, Cas>;
    fn dyn_delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool>;
    fn dyn_list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>>;
    fn dyn_delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64>;
    fn dyn_delete_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64>;
    fn dyn_expired_with_grants(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(SessionId, GrantId)>>;
    fn dyn_put_state<'a>(&'a self, s: &'a StoredAuthState) -> StoreFuture<'a, ()>;
    fn dyn_take_state<'a>(
        &'a self,
        key: &'a TokenHash,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, Option<StoredAuthState>>;
    fn dyn_delete_expired_states(&self, now: OffsetDateTime) -> StoreFuture<'_, u64>;
    fn dyn_create_grant<'a>(&'a self, g: &'a StoredGrant) -> StoreFuture<'a, ()>;
    fn dyn_load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>>;
    fn dyn_update_grant<'a>(&'a self, v: u64, g: &'a StoredGrant) -> StoreFuture<'a, Cas>;
    fn dyn_delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool>;
    fn dyn_list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>>;
    fn dyn_delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64>;
    fn dyn_list_grants<'a>(
        &'a self,
        cursor: Option<&'a GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, GrantPage>;
}

impl<T: SessionStore + StateStore + GrantStore> DynStore for T {
    fn dyn_create<'a>(&'a self, s: &'a StoredSession) -> StoreFuture<'a, ()> {
        Box::pin(SessionStore::create(self, s))
    }
    fn dyn_load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        Box::pin(SessionStore::load(self, id))
    }
    fn dyn_load_by_token<'a>(
        &'a self,
        h: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        Box::pin(SessionStore::load_by_token(self, h))
    }
    fn dyn_load_by_access_token<'a>(
        &'a self,
        h: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        Box::pin(SessionStore::load_by_access_token(self, h))
    }
    fn dyn_update<'a>(&'a self, v: u64, s: &'a StoredSession) -> StoreFuture<'a, Cas> {
        Box::pin(SessionStore::update(self, v, s))
    }
    fn dyn_delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        Box::pin(SessionStore::delete(self, id))
    }
    fn dyn_list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
        Box::pin(SessionStore::list_by_did(self, did))
    }
    fn dyn_delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        Box::pin(SessionStore::delete_by_did(self, did))
    }
    fn dyn_delete_expired(&self, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(SessionStore::delete_expired(self, now))
    }
    fn dyn_expired_with_grants(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<(SessionId, GrantId)>> {
        Box::pin(SessionStore::expired_with_grants(self, now, limit))
    }
    fn dyn_put_state<'a>(&'a self, s: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        Box::pin(StateStore::put_state(self, s))
    }
    fn dyn_take_state<'a>(
        &'a self,
        key: &'a TokenHash,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, Option<StoredAuthState>> {
        Box::pin(StateStore::take_state(self, key, now))
    }
    fn dyn_delete_expired_states(&self, now: OffsetDateTime) -> StoreFuture<'_, u64> {
        Box::pin(StateStore::delete_expired_states(self, now))
    }
    fn dyn_create_grant<'a>(&'a self, g: &'a StoredGrant) -> StoreFuture<'a, ()> {
        Box::pin(GrantStore::create_grant(self, g))
    }
    fn dyn_load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        Box::pin(GrantStore::load_grant(self, id))
    }
    fn dyn_update_grant<'a>(&'a self, v: u64, g: &'a StoredGrant) -> StoreFuture<'a, Cas> {
        Box::pin(GrantStore::update_grant(self, v, g))
    }
    fn dyn_delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        Box::pin(GrantStore::delete_grant(self, id))
    }
    fn dyn_list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        Box::pin(GrantStore::list_grants_by_did(self, did))
    }
    fn dyn_delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        Box::pin(GrantStore::delete_grants_by_did(self, did))
    }
    fn dyn_list_grants<'a>(
        &'a self,
        cursor: Option<&'a GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, GrantPage> {
        Box::pin(GrantStore::list_grants(self, cursor, limit))
    }
}

/// A store written elsewhere, as one type: a [`DynStore`] object, its lock, and a name for
/// messages. Cheap to clone.
#[derive(Clone)]
pub struct CustomStore {
    pub(crate) name: &'static str,
    pub(crate) store: Arc<dyn DynStore>,
    pub(crate) lock: Arc<dyn crate::lock::Lock>,
}

impl fmt::Debug for CustomStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SessionStore for CustomStore {
    async fn create(&self, session: &StoredSession) -> Result<(), StoreError> {
        self.store.dyn_create(session).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.store.dyn_load(id).await
    }
    async fn load_by_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.store.dyn_load_by_token(hash).await
    }
    async fn load_by_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        self.store.dyn_load_by_access_token(hash).await
    }
    async fn update(&self, expected: u64, session: &StoredSession) -> Result<Cas, StoreError> {
        self.store.dyn_update(expected, session).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.store.dyn_delete(id).await
    }
    async fn list_by_did(&self, did: &Did) -> Result<Vec<StoredSession>, StoreError> {
        self.store.dyn_list_by_did(did).await
    }
    async fn delete_by_did(&self, did: &Did) -> Result<u64, StoreError> {
        self.store.dyn_delete_by_did(did).await
    }
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.store.dyn_delete_expired(now).await
    }
    async fn expired_with_grants(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<(SessionId, GrantId)>, StoreError> {
        self.store.dyn_expired_with_grants(now, limit).await
    }
}

impl StateStore for CustomStore {
    async fn put_state(&self, state: &StoredAuthState) -> Result<(), StoreError> {
        self.store.dyn_put_state(state).await
    }
    async fn take_state(
        &self,
        key: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<StoredAuthState>, StoreError> {
        self.store.dyn_take_state(key, now).await
    }
    async fn delete_expired_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.store.dyn_delete_expired_states(now).await
    }
}

impl GrantStore for CustomStore {
    async fn create_grant(&self, grant: &StoredGrant) -> Result<(), StoreError> {
        self.store.dyn_create_grant(grant).await
    }
    async fn load_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        self.store.dyn_load_grant(id).await
    }
    async fn update_grant(&self, expected: u64, grant: &StoredGrant) -> Result<Cas, StoreError> {
        self.store.dyn_update_grant(expected, grant).await
    }
    async fn delete_grant(&self, id: &GrantId) -> Result<bool, StoreError> {
        self.store.dyn_delete_grant(id).await
    }
    async fn list_grants_by_did(&self, did: &Did) -> Result<Vec<StoredGrant>, StoreError> {
        self.store.dyn_list_grants_by_did(did).await
    }
    async fn delete_grants_by_did(&self, did: &Did) -> Result<u64, StoreError> {
        self.store.dyn_delete_grants_by_did(did).await
    }
    async fn list_grants(
        &self,
        cursor: Option<&GrantCursor>,
        limit: usize,
    ) -> Result<GrantPage, StoreError> {
        self.store.dyn_list_grants(cursor, limit).await
    }
}

/// Two reads through the custom store: a session, then its grant.
impl crate::store::oauth::SessionGrantStore for CustomStore {}
