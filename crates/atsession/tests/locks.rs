//! The lock contract (`atsession::conformance::locks`), on every backend: mutual exclusion, lease expiry, renewal, owner checks,
//! bounded waits, release on drop.
//!
//! PostgreSQL and Redis tests need the servers (see `support`): skipped if down, failed if
//! `CI=true`.
#![allow(clippy::unwrap_used)]

mod support;

mod memory {
    atsession::lock_suite!(async { atsession::lock::MemoryLock::new() });
}

#[cfg(feature = "sqlite")]
mod sqlite {
    atsession::lock_suite!(async {
        let dir = tempfile::tempdir().unwrap().keep();
        let store = atsession::store::sqlite::SqliteStore::open(dir.join("locks.db"))
            .await
            .unwrap();
        atsession::store::sqlite::SqliteLock::new(&store)
    });
}

#[cfg(feature = "postgres")]
mod postgres {
    atsession::lock_suite!({
        let Some(store) = crate::support::fresh_postgres().await else {
            return;
        };
        std::future::ready(atsession::store::postgres::PostgresLock::new(&store))
    });
}

#[cfg(feature = "redis")]
mod redis {
    atsession::lock_suite!({
        let Some(store) = crate::support::fresh_redis().await else {
            return;
        };
        std::future::ready(atsession::store::redis::RedisLock::new(&store))
    });
}
