//! Shared helpers for tests against the real PostgreSQL and Redis servers.
//!
//! Each test gets its own PostgreSQL schema or Redis key prefix, named
//! `atsession_test_{unix seconds}_{random}`, so parallel runs never collide. Leftovers older
//! than an hour (from earlier runs) are removed the first time a process connects.
//!
//! If a server cannot be reached, a test is skipped with a message saying how to start it —
//! unless `CI=true`, where it fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(any(feature = "postgres", feature = "redis"))]
pub mod fault_proxy;

#[cfg(feature = "postgres")]
use atsession::store::postgres::PostgresStore;
#[cfg(feature = "redis")]
use atsession::store::redis::RedisStore;
#[cfg(any(feature = "postgres", feature = "redis"))]
use tokio::sync::OnceCell;

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";

pub fn postgres_url() -> String {
    std::env::var("ATSESSION_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.to_owned())
}

pub fn redis_url() -> String {
    std::env::var("ATSESSION_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_DEFAULT.to_owned())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A name no other test run uses: `atsession_test_{secs}_{random hex}`.
pub fn unique_name() -> String {
    let r: [u8; 6] = atsession::secret::random_bytes();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("atsession_test_{}_{hex}", unix_secs())
}

/// Whether a `atsession_test_{secs}_…` name is more than an hour old.
fn is_stale(name: &str) -> bool {
    name.strip_prefix("atsession_test_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|secs| secs + 3600 < unix_secs())
}

/// Skips (returns `None` after printing how to start the server) or, in CI, panics.
pub fn unreachable(what: &str, url_var: &str, start: &str, e: &dyn std::error::Error) {
    let mut msg = format!("{what} is not reachable ({e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg.push(')');
    if in_ci() {
        panic!("{msg}; CI=true, so this is a failure. Set {url_var} or start it: {start}");
    }
    eprintln!("SKIPPED: {msg}. Set {url_var} or start it: {start}");
}

pub const PG_START: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
pub const REDIS_START: &str =
    "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no";

/// A store in a fresh schema of the test server, or `None` (skip) if it is down.
#[cfg(feature = "postgres")]
pub async fn fresh_postgres() -> Option<PostgresStore> {
    let schema = unique_name();
    match PostgresStore::connect_with_schema(&postgres_url(), &schema).await {
        Ok(store) => {
            static SWEPT: OnceCell<()> = OnceCell::const_new();
            SWEPT.get_or_init(|| sweep_postgres(&store)).await;
            Some(store)
        }
        Err(e) => {
            unreachable("PostgreSQL", "ATSESSION_TEST_POSTGRES_URL", PG_START, &e);
            None
        }
    }
}

/// Drops test schemas left over by runs more than an hour old.
#[cfg(feature = "postgres")]
async fn sweep_postgres(store: &PostgresStore) {
    let client = store.pool().get().await.unwrap();
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'atsession\\_test\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        if is_stale(&name) {
            // Another process may be dropping it too.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// A store with a fresh key prefix on the test server, or `None` (skip) if it is down.
#[cfg(feature = "redis")]
pub async fn fresh_redis() -> Option<RedisStore> {
    let prefix = format!("{}:", unique_name());
    match RedisStore::connect_with_prefix(&redis_url(), &prefix).await {
        Ok(store) => {
            static SWEPT: OnceCell<()> = OnceCell::const_new();
            SWEPT.get_or_init(|| sweep_redis(&store)).await;
            Some(store)
        }
        Err(e) => {
            unreachable("Redis", "ATSESSION_TEST_REDIS_URL", REDIS_START, &e);
            None
        }
    }
}

/// Deletes test keys left over by runs more than an hour old.
#[cfg(feature = "redis")]
async fn sweep_redis(store: &RedisStore) {
    let mut conn = store.connection();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("atsession_test_*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let stale: Vec<&String> = keys.iter().filter(|k| is_stale(k)).collect();
        if !stale.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(stale)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix` (at the end of a test that wants to tidy up).
#[cfg(feature = "redis")]
pub async fn drop_prefix(store: &RedisStore) {
    let mut conn = store.connection();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", store.prefix()))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Drops the store's schema (at the end of a test that wants to tidy up).
#[cfg(feature = "postgres")]
pub async fn drop_schema(store: &PostgresStore) {
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            store.schema()
        ))
        .await
        .unwrap();
}
