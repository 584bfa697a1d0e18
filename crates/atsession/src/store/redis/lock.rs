//! The Redis lock: `SET key owner NX PX lease`, renewed and released by Lua scripts that
//! check the owner token first.
//!
//! Lease times are the Redis server's, so the clocks of the app's machines do not matter.
//! This is the single-instance algorithm: with a replica that takes over after a failover, a
//! lease written just before the failover can be lost (Redis replication is asynchronous).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use atsession::lock::Lock;
//! use atsession::store::redis::RedisLock;
//! use atsession::store::redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://cache.internal:6379").await?;
//! let locks = RedisLock::new(&store); // keys `{prefix}l:{key}`
//! let mut guard = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_secs(10))
//!     .await?;
//! guard.renew(Duration::from_secs(30)).await?; // a long job keeps its lease
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::lock::{LeaseOwner, Lock, LockFuture, lease_millis};
use crate::store::StoreError;
use crate::store::redis::{RedisStore, err};

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
         end \
         return 0",
    )
});

static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('DEL', KEYS[1]) \
         end \
         return 0",
    )
});

/// Leases as Redis keys `{prefix}l:{key}`. Cheap to clone.
#[derive(Clone)]
pub struct RedisLock {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLock")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLock {
    /// Leases on `store`'s connection, under its key prefix.
    #[must_use]
    pub fn new(store: &RedisStore) -> Self {
        Self::from_connection(store.connection(), store.prefix())
            .with_operation_timeout(store.operation_timeout())
    }

    /// Leases on a connection you made, with keys `{prefix}l:{key}`.
    #[must_use]
    pub fn from_connection(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            timeout: crate::store::DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Bounds every lock call to `timeout` (default
    /// [`DEFAULT_OPERATION_TIMEOUT`](crate::store::DEFAULT_OPERATION_TIMEOUT); [`new`](Self::new)
    /// takes the store's): a call that takes longer fails with
    /// [`StoreError::Timeout`], and a lease it may have taken runs out on its own.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(1), crate::clock::MAX_DURATION);
        self
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, crate::lock::LockError>>,
    ) -> Result<T, crate::lock::LockError> {
        crate::store::bounded(crate::store::redis::BACKEND, operation, self.timeout, call).await
    }

    /// Connects to `url`; keys are `{prefix}l:{key}`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::from_connection(
            crate::store::redis::connection_for(url).await?,
            prefix,
        ))
    }

    fn key(&self, key: &str) -> String {
        format!("{}l:{key}", self.prefix)
    }
}

impl Lock for RedisLock {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        Box::pin(self.bounded("lock", async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(self.key(key))
                .arg(owner.to_hex())
                .arg("NX")
                .arg("PX")
                .arg(lease_millis(lease))
                .query_async(&mut self.conn.clone())
                .await
                .map_err(err("lock"))?;
            Ok(set.is_some())
        }))
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        Box::pin(self.bounded("renew lock", async move {
            let n: i64 = RENEW
                .key(self.key(key))
                .arg(owner.to_hex())
                .arg(lease_millis(lease))
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err("renew lock"))?;
            Ok(n == 1)
        }))
    }

    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        Box::pin(self.bounded("unlock", async move {
            let n: i64 = UNLOCK
                .key(self.key(key))
                .arg(owner.to_hex())
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err("unlock"))?;
            Ok(n == 1)
        }))
    }
}
