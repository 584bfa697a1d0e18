//! [`AnyStore`]: one type for every backend, chosen at run time (from a URL, see
//! [`open`](fn@super::open)).
//!
//! The store traits return `impl Future`, so they cannot be trait objects; `AnyStore` is an
//! enum over the backends compiled in, and implements [`SessionStore`], [`StateStore`] and
//! [`GrantStore`] by handing each call to its backend. Code that is generic over a
//! store ([`SessionManager`](crate::app::SessionManager), the OAuth client, the session
//! getter) takes it like any other store; code that must not be generic (the web layer, a
//! binary) names `AnyStore` and works on every backend. A store written elsewhere joins
//! through [`AnyStore::custom`] (as an object of the object-safe
//! [`DynStore`](super::custom::DynStore)).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use atsession::app::SessionManager;
//! use atsession::store::AnyStore;
//!
//! let store = AnyStore::open("memory:").await?; // or sqlite://app.db, postgres://…, redis://…
//! assert_eq!(store.backend(), "memory");
//! let lock = store.lock(); // for the session getter's refreshes
//! let sessions = SessionManager::new(store.clone());
//! let new = sessions.create("did:plc:abc", "alice.test", ()).await?;
//! assert!(sessions.load(new.token.expose()).await.is_ok());
//! # Ok(()) }
//! ```

use std::sync::Arc;

use time::OffsetDateTime;

use super::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, SessionGrantStore, SessionWithGrant, StateStore,
    StoredAuthState, StoredGrant,
};
use super::{Cas, MemoryStore, SessionStore, StoreError};
use crate::app::{SessionId, StoredSession};
use crate::secret::TokenHash;
use crate::syntax::Did;

/// A store of any backend compiled in. Cheap to clone (every backend is).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// In-process memory.
    Memory(MemoryStore),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(super::sqlite::SqliteStore),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PostgresStore),
    /// Redis or Valkey.
    #[cfg(feature = "redis")]
    Redis(super::redis::RedisStore),
    /// A store written elsewhere (see [`AnyStore::custom`]).
    Custom(super::custom::CustomStore),
}

impl AnyStore {
    /// The backend's name: `memory`, `sqlite`, `postgres` or `redis`.
    ///
    /// ```
    /// use atsession::store::{AnyStore, MemoryStore};
    /// assert_eq!(AnyStore::from(MemoryStore::new()).backend(), "memory");
    /// ```
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
            Self::Custom(c) => c.name,
        }
    }

    /// The lock of the same backend, for the session getter's refreshes (see
    /// [`AnyLock`](crate::lock::AnyLock)). For the memory backend every call makes a new,
    /// separate lock: call it once.
    ///
    /// ```
    /// use atsession::store::{AnyStore, MemoryStore};
    /// let store = AnyStore::from(MemoryStore::new());
    /// assert!(matches!(store.lock(), atsession::lock::AnyLock::Memory(_)));
    /// ```
    #[must_use]
    pub fn lock(&self) -> crate::lock::AnyLock {
        use crate::lock::AnyLock;
        match self {
            Self::Memory(_) => AnyLock::Memory(crate::lock::MemoryLock::new()),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => AnyLock::Sqlite(crate::store::sqlite::SqliteLock::new(s)),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => AnyLock::Postgres(crate::store::postgres::PostgresLock::new(s)),
            #[cfg(feature = "redis")]
            Self::Redis(s) => AnyLock::Redis(crate::store::redis::RedisLock::new(s)),
            Self::Custom(c) => AnyLock::Custom(std::sync::Arc::clone(&c.lock)),
        }
    }

    /// A store written outside this crate (any type implementing [`SessionStore`],
    /// [`StateStore`] and [`GrantStore`]), with its lock, so that code that takes an
    /// `AnyStore` (the web layer) works on it too. `name` appears in messages.
    ///
    /// ```
    /// use atsession::lock::MemoryLock;
    /// use atsession::store::{AnyStore, MemoryStore};
    ///
    /// let store = AnyStore::custom("my-store", MemoryStore::new(), MemoryLock::new());
    /// assert_eq!(store.backend(), "my-store");
    /// ```
    #[must_use]
    pub fn custom<S>(name: &'static str, store: S, lock: impl crate::lock::Lock) -> Self
    where
        S: SessionStore + StateStore + GrantStore,
    {
        Self::Custom(super::custom::CustomStore {
            name,
            store: std::sync::Arc::new(store),
            lock: std::sync::Arc::new(lock),
        })
    }

    /// Opens a store from a URL: see [`open`](fn@super::open).
    pub async fn open(url: &str) -> Result<Self, super::OpenError> {
        super::open(url).await
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(s: MemoryStore) -> Self {
        Self::Memory(s)
    }
}

#[cfg(feature = "sqlite")]
impl From<super::sqlite::SqliteStore> for AnyStore {
    fn from(s: super::sqlite::SqliteStore) -> Self {
        Self::Sqlite(s)
    }
}

#[cfg(feature = "postgres")]
impl From<super::postgres::PostgresStore> for AnyStore {
    fn from(s: super::postgres::PostgresStore) -> Self {
        Self::Postgres(s)
    }
}

#[cfg(feature = "redis")]
impl From<super::redis::RedisStore> for AnyStore {
    fn from(s: super::redis::RedisStore) -> Self {
        Self::Redis(s)
    }
}

/// Runs `$call` on the backend inside `$self`, as `$s`.
///
/// The PostgreSQL and Redis calls are boxed. A future is as large as the largest future it
/// may await, and theirs (the client's query and connection-pool futures) are kilobytes:
/// unboxed, every future that awaits a store call through `AnyStore`, on any backend,
/// would carry that size, and be copied at that size each time it is moved (into a task,
/// into a box, from one middleware to the next). A PostgreSQL `load` made the session
/// handler's future 8 KB. One allocation per call is nothing beside a round trip over the
/// network; the SQLite and memory calls, which make none, stay inline.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($s) => $call.await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => Box::pin($call).await,
            #[cfg(feature = "redis")]
            AnyStore::Redis($s) => Box::pin($call).await,
            AnyStore::Custom($s) => $call.await,
        }
    };
}

impl SessionStore for AnyStore {
    async fn create(&self, session: &StoredSession) -> Result<(), StoreError> {
        each!(self, s => s.create(session))
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<StoredSession>>, StoreError> {
        each!(self, s => s.load(id))
    }
    async fn load_by_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        each!(self, s => s.load_by_token(hash))
    }
    async fn load_by_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<Arc<StoredSession>>, StoreError> {
        each!(self, s => s.load_by_access_token(hash))
    }
    async fn update(
        &self,
        expected_version: u64,
        session: &StoredSession,
    ) -> Result<Cas, StoreError> {
        each!(self, s => s.update(expected_version, session))
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        each!(self, s => SessionStore::delete(s, id))
    }
    async fn list_by_did(&self, did: &Did) -> Result<Vec<StoredSession>, StoreError> {
        each!(self, s => s.list_by_did(did))
    }
    async fn delete_by_did(&self, did: &Did) -> Result<u64, StoreError> {
        each!(self, s => s.delete_by_did(did))
    }
    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        each!(self, s => s.delete_expired(now))
    }
    async fn expired_with_grants(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<(SessionId, GrantId)>, StoreError> {
        each!(self, s => s.expired_with_grants(now, limit))
    }
}

impl StateStore for AnyStore {
    async fn put_state(&self, state: &StoredAuthState) -> Result<(), StoreError> {
        each!(self, s => s.put_state(state))
    }
    async fn take_state(
        &self,
        key: &TokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<StoredAuthState>, StoreError> {
        each!(self, s => s.take_state(key, now))
    }
    async fn delete_expired_states(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        each!(self, s => s.delete_expired_states(now))
    }
}

impl GrantStore for AnyStore {
    async fn create_grant(&self, grant: &StoredGrant) -> Result<(), StoreError> {
        each!(self, s => s.create_grant(grant))
    }
    async fn load_grant(&self, id: &GrantId) -> Result<Option<StoredGrant>, StoreError> {
        each!(self, s => s.load_grant(id))
    }
    async fn update_grant(
        &self,
        expected_version: u64,
        grant: &StoredGrant,
    ) -> Result<Cas, StoreError> {
        each!(self, s => s.update_grant(expected_version, grant))
    }
    async fn delete_grant(&self, id: &GrantId) -> Result<bool, StoreError> {
        each!(self, s => s.delete_grant(id))
    }
    async fn list_grants_by_did(&self, did: &Did) -> Result<Vec<StoredGrant>, StoreError> {
        each!(self, s => s.list_grants_by_did(did))
    }
    async fn delete_grants_by_did(&self, did: &Did) -> Result<u64, StoreError> {
        each!(self, s => s.delete_grants_by_did(did))
    }
    async fn list_grants(
        &self,
        cursor: Option<&GrantCursor>,
        limit: usize,
    ) -> Result<GrantPage, StoreError> {
        each!(self, s => s.list_grants(cursor, limit))
    }
}

impl SessionGrantStore for AnyStore {
    fn reads_together(&self) -> bool {
        match self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(s) => s.reads_together(),
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => s.reads_together(),
            _ => false,
        }
    }
    async fn load_by_token_with_grant(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<SessionWithGrant>, StoreError> {
        each!(self, s => s.load_by_token_with_grant(hash))
    }
    async fn load_by_access_token_with_grant(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<SessionWithGrant>, StoreError> {
        each!(self, s => s.load_by_access_token_with_grant(hash))
    }
}
