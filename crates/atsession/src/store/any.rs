//! [`AnyStore`]: one type for every backend, chosen at run time (from a URL, see
//! [`open`](fn@super::open)).
//!
//! `AnyStore` is an enum over the backends compiled in, and a variant for a store written
//! elsewhere (an `Arc<dyn Store>`, see [`AnyStore::custom`]). It implements every store
//! trait by handing each call to its backend as a `&dyn` [`Store`]: the backend's own
//! [`StoreFuture`](super::StoreFuture) is returned as it is, never boxed again, so a memory
//! or SQLite read allocates nothing and a PostgreSQL or Redis call allocates once (its
//! future is kilobytes; boxed, a future that awaits a store call stays small on every
//! backend). Those forwarding impls are generated with the traits (see `forward.rs`):
//! `AnyStore` has no code per method. Code that is generic over a store
//! ([`SessionManager`](crate::app::SessionManager), the OAuth client, the session getter)
//! takes it like any other store; code that must not be generic (the web layer, a binary)
//! names `AnyStore` and works on every backend.
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

use std::fmt;
use std::sync::Arc;

use super::{MemoryStore, Store};
use crate::lock::Lock;

/// A store of any backend compiled in, or one written elsewhere. Cheap to clone (every
/// backend is).
#[derive(Clone)]
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
    /// A store written elsewhere, with its lock (see [`AnyStore::custom`]).
    #[non_exhaustive]
    Custom {
        /// The name [`backend`](AnyStore::backend) gives.
        name: &'static str,
        /// The store.
        store: Arc<dyn Store>,
        /// Its lock.
        lock: Arc<dyn Lock>,
    },
}

impl fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(s) => f.debug_tuple("Memory").field(s).finish(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => f.debug_tuple("Sqlite").field(s).finish(),
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => f.debug_tuple("Postgres").field(s).finish(),
            #[cfg(feature = "redis")]
            Self::Redis(s) => f.debug_tuple("Redis").field(s).finish(),
            Self::Custom { name, .. } => f
                .debug_struct("Custom")
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
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
            Self::Custom { name, .. } => name,
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
            Self::Custom { lock, .. } => AnyLock::Custom(Arc::clone(lock)),
        }
    }

    /// A store written outside this crate (any type implementing the store traits, see
    /// [`Store`]), with its lock, so that code that takes an `AnyStore` (the web layer)
    /// works on it too. `name` appears in messages.
    ///
    /// ```
    /// use atsession::lock::MemoryLock;
    /// use atsession::store::{AnyStore, MemoryStore};
    ///
    /// let store = AnyStore::custom("my-store", MemoryStore::new(), MemoryLock::new());
    /// assert_eq!(store.backend(), "my-store");
    /// ```
    #[must_use]
    pub fn custom(name: &'static str, store: impl Store, lock: impl Lock) -> Self {
        Self::Custom {
            name,
            store: Arc::new(store),
            lock: Arc::new(lock),
        }
    }

    /// The backend, as the one object every store call goes to (what the store traits'
    /// impls for `AnyStore` call).
    #[inline]
    pub(super) fn inner(&self) -> &dyn Store {
        match self {
            Self::Memory(s) => s,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s,
            Self::Custom { store, .. } => &**store,
        }
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
