//! The SQLite lock: a lease row in the `atsession_locks` table of a [`SqliteStore`]'s
//! database.
//!
//! Processes that open the same database file share the leases. Lease times are wall-clock
//! milliseconds of the process that writes them, so this holds across processes of one
//! machine (one clock), which is where a SQLite file is shared anyway.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use atsession::lock::Lock;
//! use atsession::store::sqlite::SqliteLock;
//! use atsession::store::sqlite::SqliteStore;
//!
//! let store = SqliteStore::open_in_memory().await?;
//! let locks = SqliteLock::new(&store);
//! let guard = locks
//!     .acquire("refresh:grant-42", Duration::from_secs(30), Duration::from_secs(1))
//!     .await?;
//! assert!(locks.try_acquire("refresh:grant-42", Duration::from_secs(30)).await?.is_none());
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use crate::clock::to_millis;
use crate::lock::{LeaseOwner, Lock, LockFuture, lease_millis};
use crate::store::sqlite::{SqliteStore, err};

/// Leases in a [`SqliteStore`]'s database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteLock {
    store: SqliteStore,
}

impl SqliteLock {
    /// Leases in `store`'s database.
    #[must_use]
    pub fn new(store: &SqliteStore) -> Self {
        Self {
            store: store.clone(),
        }
    }
}

fn now_ms() -> i64 {
    to_millis(OffsetDateTime::now_utc())
}

fn until(lease: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(lease_millis(lease)).unwrap_or(i64::MAX))
}

impl Lock for SqliteLock {
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        let (key, owner) = (key.to_owned(), *owner.as_bytes());
        Box::pin(async move {
            let n = self
                .store
                .write("lock", move |conn| {
                    let now = now_ms();
                    conn.prepare_cached(
                        "INSERT INTO atsession_locks (key, owner, expires_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE
                            SET owner = excluded.owner, expires_at = excluded.expires_at
                            WHERE atsession_locks.expires_at <= ?4",
                    )
                    .and_then(|mut s| s.execute(params![key, owner, until(lease), now]))
                    .map_err(err("lock"))
                })
                .await?;
            Ok(n == 1)
        })
    }

    fn renew<'a>(
        &'a self,
        key: &'a str,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> LockFuture<'a, bool> {
        let (key, owner) = (key.to_owned(), *owner.as_bytes());
        Box::pin(async move {
            let n = self
                .store
                .write("renew lock", move |conn| {
                    conn.prepare_cached(
                        "UPDATE atsession_locks SET expires_at = ?3
                         WHERE key = ?1 AND owner = ?2 AND expires_at > ?4",
                    )
                    .and_then(|mut s| s.execute(params![key, owner, until(lease), now_ms()]))
                    .map_err(err("renew lock"))
                })
                .await?;
            Ok(n == 1)
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, owner: &'a LeaseOwner) -> LockFuture<'a, bool> {
        let (key, owner) = (key.to_owned(), *owner.as_bytes());
        Box::pin(async move {
            let held = self
                .store
                .write("unlock", move |conn| {
                    conn.prepare_cached(
                        "DELETE FROM atsession_locks WHERE key = ?1 AND owner = ?2
                         RETURNING expires_at > ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![key, owner, now_ms()], |r| r.get::<_, bool>(0))
                            .optional()
                    })
                    .map_err(err("unlock"))
                })
                .await?;
            Ok(held.unwrap_or(false))
        })
    }
}
