//! [`AnyLock`]: the lock of whichever backend a store was opened on at run time.

use std::time::Duration;

use super::{LeaseOwner, Lock, LockFuture, MemoryLock};

/// A lock of any backend compiled in; [`AnyStore::lock`](crate::store::AnyStore::lock)
/// gives the one that matches a store. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), atsession::lock::LockError> {
/// use std::time::Duration;
/// use atsession::lock::{AnyLock, Lock, MemoryLock};
///
/// let lock = AnyLock::Memory(MemoryLock::new());
/// let guard = lock.acquire("refresh:g", Duration::from_secs(5), Duration::from_secs(1)).await?;
/// assert!(lock.try_acquire("refresh:g", Duration::from_secs(5)).await?.is_none());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyLock {
    /// In-process.
    Memory(MemoryLock),
    /// SQLite lease rows.
    #[cfg(feature = "sqlite")]
    Sqlite(crate::store::sqlite::SqliteLock),
    /// PostgreSQL lease table.
    #[cfg(feature = "postgres")]
    Postgres(crate::store::postgres::PostgresLock),
    /// Redis `SET NX PX`.
    #[cfg(feature = "redis")]
    Redis(crate::store::redis::RedisLock),
    /// A lock written elsewhere.
    Custom(std::sync::Arc<dyn Lock>),
}

impl std::fmt::Debug for AnyLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(l) => l.fmt(f),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(l) => l.fmt(f),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.fmt(f),
            #[cfg(feature = "redis")]
            Self::Redis(l) => l.fmt(f),
            Self::Custom(_) => f.write_str("AnyLock::Custom"),
        }
    }
}

impl AnyLock {
    fn inner(&self) -> &dyn Lock {
        match self {
            Self::Memory(l) => l,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(l) => l,
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l,
            #[cfg(feature = "redis")]
            Self::Redis(l) => l,
            Self::Custom(l) => &**l,
        }
    }
}

impl Lock for AnyLock {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        self.inner().try_lock(key, owner, lease)
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        self.inner().renew(key, owner, lease)
    }
    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        self.inner().unlock(key, owner)
    }
}
