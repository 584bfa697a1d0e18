//! Locks that hold across tasks, and across processes that share a store.
//!
//! A [`Lock`] hands out *leases*: a key is held by one owner until the owner releases it or
//! the lease runs out, whichever comes first. A lease that runs out frees the key even if its
//! holder crashed, hung or lost its connection, so a dead process never blocks the others for
//! longer than one lease. The holder of a long job [`renew`](LockGuard::renew)s its lease
//! before it runs out.
//!
//! The contract:
//! - [`acquire`](Lock::acquire) either returns a [`LockGuard`] within its `timeout`, or fails
//!   with [`LockError::Timeout`] (or with the store's error). It never waits longer.
//! - At most one owner holds a key at any instant, as long as every holder finishes (or
//!   renews) within its lease.
//! - Only the owner can renew or release: each lease carries a random [`LeaseOwner`] token,
//!   and the backends check it atomically (a compare-and-delete, a Lua script, a conditional
//!   `UPDATE`/`DELETE`).
//! - Dropping a [`LockGuard`] releases the key: the release runs on a task spawned on the
//!   current tokio runtime (dropping outside a runtime leaves the lease to run out). Call
//!   [`LockGuard::release`] to release now and learn whether the lease was still held.
//!
//! Backends (each lock lives beside its store, in the backend's folder of [`store`](crate::store);
//! [`MemoryLock`] is re-exported here):
//!
//! | backend | type | feature | across processes |
//! |---|---|---|---|
//! | in-process (tokio) | [`MemoryLock`] | always | no |
//! | PostgreSQL lease table | [`PostgresLock`](crate::store::postgres::PostgresLock) | `postgres` | yes |
//! | Redis `SET NX PX` | [`RedisLock`](crate::store::redis::RedisLock) | `redis` | yes |
//! | SQLite lease row | [`SqliteLock`](crate::store::sqlite::SqliteLock) | `sqlite` | yes, on one machine |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), atsession::lock::LockError> {
//! use std::time::Duration;
//! use atsession::lock::{Lock, LockError, MemoryLock};
//!
//! let locks = MemoryLock::new();
//! let guard = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_secs(5))
//!     .await?;
//! // Held: a second acquire waits, then times out.
//! let again = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_millis(50))
//!     .await;
//! assert!(matches!(again, Err(LockError::Timeout { .. })));
//! guard.release().await?;
//! // Free again.
//! let guard = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_secs(5))
//!     .await?;
//! # drop(guard); Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::store::StoreError;

mod any;

pub use crate::store::MemoryLock;
pub use any::AnyLock;

/// The future a [`Lock`] backend method returns.
pub type LockFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LockError>> + Send + 'a>>;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The key stayed held by someone else for the whole wait.
    #[error("the lock was not acquired within {waited:?}")]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// The lease is no longer held by this owner: it ran out (and another owner may hold the
    /// key now), or it was never held.
    #[error("the lease is no longer held")]
    Lost,
    /// The key or the lease is unusable (an empty or over-long key, a zero lease).
    #[error("invalid lock request: {0}")]
    Invalid(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The random token that identifies one lease's owner. Only its owner can renew or release a
/// lease. Not a long-lived secret, but never printed whole.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner([u8; 16]);

impl LeaseOwner {
    /// A fresh random owner token.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::secret::random_bytes())
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hex, for stores that keep strings.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseOwner({}…)", &self.to_hex()[..6])
    }
}

/// A lease-based lock backend.
///
/// Backends implement the three primitives; callers use [`acquire`](Lock::acquire) and
/// [`try_acquire`](Lock::try_acquire), which hand back a [`LockGuard`]. The primitives are
/// public so that a holder can be identified across processes, and for tests.
pub trait Lock: Send + Sync + 'static {
    /// Takes `key` for `owner` for `lease` if it is free (never taken, released, or its lease
    /// ran out); `true` if taken. Never waits for the key.
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool>;

    /// Extends `owner`'s lease on `key` to `lease` from now; `false` (and nothing changed) if
    /// `owner` does not hold an unexpired lease on `key`.
    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool>;

    /// Releases `owner`'s lease on `key`; `true` if it held an unexpired lease. A caller that
    /// is not the owner changes nothing and gets `false`.
    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool>;

    /// Takes `key` for `lease`, waiting at most `timeout` for it to be free (polling with a
    /// backoff of 5 ms doubling up to 100 ms, with jitter).
    ///
    /// Fails with [`LockError::Timeout`] if the key stayed held, and with the store's error
    /// if the store fails. Never takes longer than `timeout` (an attempt still in flight at
    /// the deadline is abandoned, and a lease it may have taken is released).
    fn acquire(
        &self,
        key: &str,
        lease: Duration,
        timeout: Duration,
    ) -> impl Future<Output = Result<LockGuard, LockError>> + Send
    where
        Self: Sized + Clone,
    {
        acquire(Arc::new(self.clone()), key.to_owned(), lease, timeout)
    }

    /// Takes `key` for `lease` if it is free now; `None` if it is held.
    fn try_acquire(
        &self,
        key: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<LockGuard>, LockError>> + Send
    where
        Self: Sized + Clone,
    {
        let lock: Arc<dyn Lock> = Arc::new(self.clone());
        let key = key.to_owned();
        async move {
            check(&key, lease)?;
            let owner = LeaseOwner::generate();
            Ok(lock
                .try_lock(&key, &owner, lease)
                .await?
                .then(|| LockGuard::new(Arc::clone(&lock), key.clone(), owner)))
        }
    }
}

impl<L: Lock + ?Sized> Lock for Arc<L> {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        (**self).try_lock(key, owner, lease)
    }
    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        (**self).renew(key, owner, lease)
    }
    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        (**self).unlock(key, owner)
    }
}

fn check(key: &str, lease: Duration) -> Result<(), LockError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LockError::Invalid("a key is 1 to 512 bytes"));
    }
    if lease < Duration::from_millis(1) {
        return Err(LockError::Invalid("a lease is at least 1 ms"));
    }
    if lease > crate::clock::MAX_DURATION {
        return Err(LockError::Invalid("a lease is at most ten years"));
    }
    Ok(())
}

/// Milliseconds in `lease`, at least 1, saturating.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) fn lease_millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}

async fn acquire(
    lock: Arc<dyn Lock>,
    key: String,
    lease: Duration,
    timeout: Duration,
) -> Result<LockGuard, LockError> {
    check(&key, lease)?;
    let start = tokio::time::Instant::now();
    let deadline = crate::clock::instant_after(start, timeout);
    let owner = LeaseOwner::generate();
    let mut backoff = Duration::from_millis(5);
    loop {
        match tokio::time::timeout_at(deadline, lock.try_lock(&key, &owner, lease)).await {
            Ok(Ok(true)) => return Ok(LockGuard::new(lock, key, owner)),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_elapsed) => {
                // The attempt may have taken the lease just before the deadline.
                spawn_unlock(lock, key, owner);
                return Err(LockError::Timeout {
                    waited: start.elapsed(),
                });
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(LockError::Timeout {
                waited: start.elapsed(),
            });
        }
        let jitter =
            u64::from(crate::secret::random_bytes::<1>()[0]) * backoff.as_micros() as u64 / 512;
        let pause = (backoff + Duration::from_micros(jitter)).min(deadline - now);
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

fn spawn_unlock(lock: Arc<dyn Lock>, key: String, owner: LeaseOwner) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = lock.unlock(&key, &owner).await {
                tracing::warn!(error = %e, "releasing a lock failed; its lease will run out");
            }
        });
    }
}

/// A held lease. Releases the key when dropped (see the [module docs](self)).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    lock: Arc<dyn Lock>,
    key: String,
    owner: LeaseOwner,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    fn new(lock: Arc<dyn Lock>, key: String, owner: LeaseOwner) -> Self {
        Self {
            lock,
            key,
            owner,
            released: false,
        }
    }

    /// The key held.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This lease's owner token.
    #[must_use]
    pub fn owner(&self) -> &LeaseOwner {
        &self.owner
    }

    /// Extends the lease to `lease` from now. [`LockError::Lost`] if it had already run out.
    pub async fn renew(&mut self, lease: Duration) -> Result<(), LockError> {
        check(&self.key, lease)?;
        if self.lock.renew(&self.key, &self.owner, lease).await? {
            Ok(())
        } else {
            Err(LockError::Lost)
        }
    }

    /// Releases the key now. [`LockError::Lost`] if the lease had already run out (so the
    /// work done under it may have overlapped another holder's).
    pub async fn release(mut self) -> Result<(), LockError> {
        self.released = true;
        if self.lock.unlock(&self.key, &self.owner).await? {
            Ok(())
        } else {
            Err(LockError::Lost)
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            spawn_unlock(
                Arc::clone(&self.lock),
                std::mem::take(&mut self.key),
                self.owner.clone(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn huge_leases_and_timeouts_neither_panic_nor_hang() {
        let locks = MemoryLock::new();
        let too_long = locks
            .acquire("k", Duration::MAX, Duration::from_secs(1))
            .await;
        assert!(
            matches!(too_long, Err(LockError::Invalid(_))),
            "{too_long:?}"
        );
        // A timeout beyond what the clock can count is a (very long) wait, not a panic.
        let guard = locks
            .acquire("k", Duration::from_secs(1), Duration::MAX)
            .await
            .unwrap();
        guard.release().await.unwrap();
        // The primitive directly, past the bound: saturates.
        let owner = LeaseOwner::generate();
        assert!(locks.try_lock("k", &owner, Duration::MAX).await.unwrap());
        assert!(locks.renew("k", &owner, Duration::MAX).await.unwrap());
    }
}
