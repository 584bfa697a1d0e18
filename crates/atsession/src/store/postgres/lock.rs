//! The PostgreSQL lock: a lease table.
//!
//! Each held key is a row of `atsession_locks` (in the store's schema) with its owner token
//! and its expiry, taken by `INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <= now`, renewed
//! and released by `UPDATE`/`DELETE … WHERE owner = $2`. Times are the server's
//! (`clock_timestamp()`), so the clocks of the app's machines do not matter.
//!
//! A lease table rather than advisory locks: a session-level advisory lock lives as long as
//! one connection, which fights a connection pool (the lock must stay on the connection that
//! took it) and, when a process hangs with its connection open, never expires. A lease row
//! needs no particular connection, and frees itself when its lease runs out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use atsession::lock::Lock;
//! use atsession::store::postgres::PostgresLock;
//! use atsession::store::postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
//! let locks = PostgresLock::new(&store);
//! let guard = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_secs(10))
//!     .await?;
//! // … at most one process runs this at a time …
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::lock::{LeaseOwner, Lock, LockError, LockFuture, lease_millis};
use crate::store::postgres::{PostgresStore, err};

/// Leases in the `atsession_locks` table of a [`PostgresStore`]'s schema. Cheap to clone.
#[derive(Clone)]
pub struct PostgresLock {
    store: PostgresStore,
    sql: Arc<Sql>,
}

struct Sql {
    try_lock: String,
    renew: String,
    unlock: String,
}

impl std::fmt::Debug for PostgresLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLock")
            .field("store", &self.store)
            .finish()
    }
}

impl PostgresLock {
    /// Leases in `store`'s database and schema, over its pool.
    #[must_use]
    pub fn new(store: &PostgresStore) -> Self {
        let t = format!("\"{}\".atsession_locks", store.schema());
        Self {
            store: store.clone(),
            sql: Arc::new(Sql {
                try_lock: format!(
                    "INSERT INTO {t} AS l (key, owner, expires_at)
                     VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 millisecond')
                     ON CONFLICT (key) DO UPDATE
                        SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                        WHERE l.expires_at <= clock_timestamp()"
                ),
                renew: format!(
                    "UPDATE {t}
                     SET expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond'
                     WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp()"
                ),
                unlock: format!(
                    "DELETE FROM {t} WHERE key = $1 AND owner = $2
                     RETURNING expires_at > clock_timestamp()"
                ),
            }),
        }
    }
}

impl PostgresLock {
    /// Runs a statement that takes or extends a lease (`$1` key, `$2` owner, `$3` lease in
    /// milliseconds); `true` if it changed a row.
    async fn lease_statement(
        &self,
        operation: &'static str,
        sql: &str,
        key: &str,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<bool, LockError> {
        let client = self.store.client(operation).await?;
        let stmt = client.prepare_cached(sql).await.map_err(err(operation))?;
        let ms = lease_millis(lease) as f64;
        let n = client
            .execute(&stmt, &[&key, &owner.as_bytes().as_slice(), &ms])
            .await
            .map_err(err(operation))?;
        Ok(n == 1)
    }
}

impl Lock for PostgresLock {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        Box::pin(self.store.bounded(
            "lock",
            self.lease_statement("lock", &self.sql.try_lock, key, owner, lease),
        ))
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        Box::pin(self.store.bounded(
            "renew lock",
            self.lease_statement("renew lock", &self.sql.renew, key, owner, lease),
        ))
    }

    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        Box::pin(self.store.bounded("unlock", async move {
            let client = self.store.client("unlock").await?;
            let stmt = client
                .prepare_cached(&self.sql.unlock)
                .await
                .map_err(err("unlock"))?;
            let row = client
                .query_opt(&stmt, &[&key, &owner.as_bytes().as_slice()])
                .await
                .map_err(err("unlock"))?;
            match row {
                Some(row) => row
                    .try_get::<_, bool>(0)
                    .map_err(err("unlock"))
                    .map_err(Into::into),
                None => Ok(false),
            }
        }))
    }
}
