//! The OAuth storage contract (`StateStore`, `GrantStore`, in
//! `atsession::conformance::oauth`; `SessionGrantStore`, in
//! `atsession::conformance::sessions`), run against every backend.
//!
//! PostgreSQL and Redis run it in a fresh schema or key prefix per test, on the servers named
//! by `ATSESSION_TEST_POSTGRES_URL` and `ATSESSION_TEST_REDIS_URL` (defaults: the local
//! servers); a test is skipped if its server is down, and fails if `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[cfg(any(feature = "postgres", feature = "redis"))]
mod support;

mod memory {
    atsession::oauth_store_suite!(async { atsession::store::MemoryStore::new() });
    atsession::session_grant_store_suite!(async { atsession::store::MemoryStore::new() });
}

#[cfg(feature = "sqlite")]
mod sqlite {
    atsession::oauth_store_suite!(async {
        let dir = tempfile::tempdir().unwrap().keep();
        atsession::store::sqlite::SqliteStore::open(dir.join("oauth.db"))
            .await
            .unwrap()
    });
    atsession::session_grant_store_suite!(async {
        let dir = tempfile::tempdir().unwrap().keep();
        atsession::store::sqlite::SqliteStore::open(dir.join("oauth.db"))
            .await
            .unwrap()
    });
}

#[cfg(feature = "postgres")]
mod postgres {
    atsession::oauth_store_suite!({
        let Some(store) = crate::support::fresh_postgres().await else {
            return;
        };
        std::future::ready(store)
    });
    atsession::session_grant_store_suite!({
        let Some(store) = crate::support::fresh_postgres().await else {
            return;
        };
        std::future::ready(store)
    });
}

#[cfg(feature = "redis")]
mod redis {
    atsession::oauth_store_suite!({
        let Some(store) = crate::support::fresh_redis().await else {
            return;
        };
        std::future::ready(store)
    });
    atsession::session_grant_store_suite!({
        let Some(store) = crate::support::fresh_redis().await else {
            return;
        };
        std::future::ready(store)
    });
}
