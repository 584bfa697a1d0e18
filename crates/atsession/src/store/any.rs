//! [`AnyStore`]: one type for every backend, chosen at run time (from a URL, see
//! [`open`](super::open)).
//!
//! The store traits return `impl Future`, so they cannot be trait objects; `AnyStore` is an
//! enum over the backends compiled in, and implements [`SessionStore`], [`StateStore`] and
//! [`OAuthSessionStore`] by handing each call to its backend. Code that is generic over a
//! store ([`SessionManager`](crate::app::SessionManager), the OAuth client, the session
//! getter) takes it like any other store; code that must not be generic (the web layer, a
//! binary) names `AnyStore` and works on every backend.
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

use std::future::Future;

use time::OffsetDateTime;

use super::oauth::{GrantId, OAuthSessionStore, StateStore, StoredAuthState, StoredGrant};
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
            Self::Sqlite(s) => AnyLock::Sqlite(crate::lock::sqlite::SqliteLock::new(s)),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => AnyLock::Postgres(crate::lock::postgres::PostgresLock::new(s)),
            #[cfg(feature = "redis")]
            Self::Redis(s) => AnyLock::Redis(crate::lock::redis::RedisLock::new(s)),
        }
    }

    /// Opens a store from a URL: see [`open`](super::open).
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
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($s) => $call.await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $call.await,
            #[cfg(feature = "redis")]
            AnyStore::Redis($s) => $call.await,
        }
    };
}

impl SessionStore for AnyStore {
    fn create(
        &self,
        session: &StoredSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { each!(self, s => s.create(session)) }
    }
    fn load(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<StoredSession>, StoreError>> + Send {
        async move { each!(self, s => s.load(id)) }
    }
    fn load_by_token(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<StoredSession>, StoreError>> + Send {
        async move { each!(self, s => s.load_by_token(hash)) }
    }
    fn load_by_access_token(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<StoredSession>, StoreError>> + Send {
        async move { each!(self, s => s.load_by_access_token(hash)) }
    }
    fn update(
        &self,
        expected_version: u64,
        session: &StoredSession,
    ) -> impl Future<Output = Result<Cas, StoreError>> + Send {
        async move { each!(self, s => s.update(expected_version, session)) }
    }
    fn delete(&self, id: &SessionId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { each!(self, s => SessionStore::delete(s, id)) }
    }
    fn list_by_did(
        &self,
        did: &Did,
    ) -> impl Future<Output = Result<Vec<StoredSession>, StoreError>> + Send {
        async move { each!(self, s => s.list_by_did(did)) }
    }
    fn delete_by_did(&self, did: &Did) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { each!(self, s => s.delete_by_did(did)) }
    }
    fn delete_expired(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { each!(self, s => s.delete_expired(now)) }
    }
}

impl StateStore for AnyStore {
    fn put_state(
        &self,
        state: &StoredAuthState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { each!(self, s => s.put_state(state)) }
    }
    fn take_state(
        &self,
        key: &TokenHash,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<StoredAuthState>, StoreError>> + Send {
        async move { each!(self, s => s.take_state(key, now)) }
    }
    fn delete_expired_states(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { each!(self, s => s.delete_expired_states(now)) }
    }
}

impl OAuthSessionStore for AnyStore {
    fn create_grant(
        &self,
        grant: &StoredGrant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { each!(self, s => s.create_grant(grant)) }
    }
    fn load_grant(
        &self,
        id: &GrantId,
    ) -> impl Future<Output = Result<Option<StoredGrant>, StoreError>> + Send {
        async move { each!(self, s => s.load_grant(id)) }
    }
    fn update_grant(
        &self,
        expected_version: u64,
        grant: &StoredGrant,
    ) -> impl Future<Output = Result<Cas, StoreError>> + Send {
        async move { each!(self, s => s.update_grant(expected_version, grant)) }
    }
    fn delete_grant(&self, id: &GrantId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move { each!(self, s => s.delete_grant(id)) }
    }
    fn list_grants_by_did(
        &self,
        did: &Did,
    ) -> impl Future<Output = Result<Vec<StoredGrant>, StoreError>> + Send {
        async move { each!(self, s => s.list_grants_by_did(did)) }
    }
    fn delete_grants_by_did(
        &self,
        did: &Did,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { each!(self, s => s.delete_grants_by_did(did)) }
    }
}
