//! A server that freezes or dies in the middle of a call: every store and lock call on
//! PostgreSQL and Redis returns within its time bound, with a typed error, and the store
//! works again once the server is back.
//!
//! The real servers sit behind a loopback proxy (`support::fault_proxy`) that the test
//! freezes (forwards nothing, as a server stopped with SIGSTOP) or kills (drops every
//! connection, refuses new ones), while calls are in flight. The shared servers themselves
//! are never stopped.
#![cfg(any(feature = "postgres", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atsession::app::{SessionId, StoredSession};
use atsession::lock::{LeaseOwner, Lock, LockError};
use atsession::secret::TokenHash;
use atsession::store::oauth::{GrantId, GrantStore, StateStore, StoredAuthState, StoredGrant};
use atsession::store::{SessionStore, StoreError};
use atsession::syntax::Did;
use support::fault_proxy::{FaultProxy, Flow};
use time::OffsetDateTime;

/// The bound the stores are given here.
const BOUND: Duration = Duration::from_millis(400);
/// What a bounded call may take beyond its bound (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(1500);
const ALICE: &str = "did:plc:alice00000000000000000000";

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Timeout,
    Failed,
}

fn store_outcome<T>(r: Result<T, StoreError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(StoreError::Timeout { .. }) => Outcome::Timeout,
        Err(_) => Outcome::Failed,
    }
}

fn lock_outcome<T>(r: Result<T, LockError>) -> Outcome {
    match r {
        Err(LockError::Store(e)) => store_outcome::<()>(Err(e)),
        Err(_) => Outcome::Failed,
        Ok(_) => Outcome::Ok,
    }
}

fn now() -> OffsetDateTime {
    atsession::clock::truncate_ms(OffsetDateTime::now_utc())
}

fn session(n: u64) -> StoredSession {
    let now = now();
    StoredSession {
        id: SessionId::generate(),
        token_hash: TokenHash::of(format!("hung-{n}").as_bytes()),
        access_token_hash: None,
        access_expires_at: None,
        did: Did::new(ALICE).unwrap(),
        handle: "alice.test".parse().unwrap(),
        data: serde_json::json!({}).into(),
        grant_id: None,
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + Duration::from_secs(3600),
        absolute_expires_at: now + Duration::from_secs(7200),
        version: 1,
    }
}

fn grant() -> StoredGrant {
    StoredGrant {
        id: GrantId::generate(),
        did: Did::new(ALICE).unwrap(),
        issuer: "https://pds.example".into(),
        sealed: vec![1, 2, 3],
        created_at: now(),
        updated_at: now(),
        version: 1,
    }
}

type Call = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// One call of each kind: the session, grant and state stores, and the lock.
fn calls<S, L>(store: S, lock: L) -> Vec<(&'static str, Call)>
where
    S: SessionStore + StateStore + GrantStore + Clone,
    L: Lock + Clone,
{
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let next = || N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut v: Vec<(&'static str, Call)> = Vec::new();
    let s = store.clone();
    v.push((
        "session load",
        Box::new(move || {
            let s = s.clone();
            Box::pin(async move { store_outcome(s.load_by_token(&TokenHash::of(b"x")).await) })
        }),
    ));
    let s = store.clone();
    v.push((
        "session create",
        Box::new(move || {
            let s = s.clone();
            let record = session(next());
            Box::pin(async move { store_outcome(s.create(&record).await) })
        }),
    ));
    let s = store.clone();
    v.push((
        "grant load",
        Box::new(move || {
            let s = s.clone();
            Box::pin(async move { store_outcome(s.load_grant(&GrantId::generate()).await) })
        }),
    ));
    let s = store.clone();
    v.push((
        "grant update",
        Box::new(move || {
            let s = s.clone();
            Box::pin(async move { store_outcome(s.update_grant(1, &grant()).await) })
        }),
    ));
    let s = store.clone();
    v.push((
        "state put",
        Box::new(move || {
            let s = s.clone();
            let state = StoredAuthState {
                key: TokenHash::of(format!("hung-state-{}", next()).as_bytes()),
                sealed: vec![9; 32],
                expires_at: now() + Duration::from_secs(600),
            };
            Box::pin(async move { store_outcome(s.put_state(&state).await) })
        }),
    ));
    let s = store.clone();
    v.push((
        "state take",
        Box::new(move || {
            let s = s.clone();
            Box::pin(async move { store_outcome(s.take_state(&TokenHash::of(b"y"), now()).await) })
        }),
    ));
    let l = lock.clone();
    v.push((
        "lock",
        Box::new(move || {
            let l = l.clone();
            Box::pin(async move {
                let key = format!("hung-{}", next());
                lock_outcome(
                    l.try_lock(&key, &LeaseOwner::generate(), Duration::from_secs(5))
                        .await,
                )
            })
        }),
    ));
    let l = lock;
    v.push((
        "unlock",
        Box::new(move || {
            let l = l.clone();
            Box::pin(
                async move { lock_outcome(l.unlock("hung-none", &LeaseOwner::generate()).await) },
            )
        }),
    ));
    v
}

async fn timed(call: &Call) -> (Outcome, Duration) {
    let start = Instant::now();
    let outcome = call().await;
    (outcome, start.elapsed())
}

/// Waits (bounded) until every call succeeds again.
async fn recovers(calls: &[(&'static str, Call)]) {
    for (name, call) in calls {
        let start = Instant::now();
        loop {
            if call().await == Outcome::Ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{name} never recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The server freezes: every call, sent into the freeze, times out within its bound; then
/// the server comes back and every call works again.
async fn frozen_mid_call(proxy: &FaultProxy, calls: &[(&'static str, Call)]) {
    recovers(calls).await;
    proxy.set(Flow::Frozen);
    for (name, call) in calls {
        let (outcome, took) = timed(call).await;
        assert_eq!(outcome, Outcome::Timeout, "{name}");
        assert!(
            took >= BOUND - Duration::from_millis(50),
            "{name}: {took:?}"
        );
        assert!(took < BOUND + SLACK, "{name} took {took:?}");
    }
    proxy.set(Flow::Open);
    recovers(calls).await;
}

/// The server dies while every call is in flight: each returns an error within its bound,
/// and so does every call after (nothing listens any more).
async fn killed_mid_call(proxy: &FaultProxy, calls: Vec<(&'static str, Call)>) {
    recovers(&calls).await;
    proxy.set(Flow::Frozen);
    let calls = Arc::new(calls);
    let mut in_flight = Vec::new();
    for i in 0..calls.len() {
        let calls = Arc::clone(&calls);
        in_flight.push(tokio::spawn(async move { timed(&calls[i].1).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.kill();
    for (i, task) in in_flight.into_iter().enumerate() {
        let (outcome, took) = task.await.unwrap();
        let name = calls[i].0;
        assert_ne!(outcome, Outcome::Ok, "{name}");
        assert!(took < BOUND + SLACK, "{name} took {took:?}");
    }
    for (name, call) in calls.iter() {
        let (outcome, took) = timed(call).await;
        assert_ne!(outcome, Outcome::Ok, "{name} after the kill");
        assert!(took < BOUND + SLACK, "{name} after the kill took {took:?}");
    }
}

/// A write whose answer is lost in a freeze times out, and was applied all the same: what
/// the docs warn about.
async fn a_timed_out_write_may_have_been_applied<S: SessionStore>(proxy: &FaultProxy, store: &S) {
    let record = session(u64::MAX);
    proxy.set(Flow::AnswersHeld);
    let r = store.create(&record).await;
    assert!(matches!(r, Err(StoreError::Timeout { .. })), "{r:?}");
    proxy.set(Flow::Open);
    let start = Instant::now();
    loop {
        match store.load(&record.id).await {
            Ok(found) => {
                assert_eq!(found.map(|s| s.id.clone()), Some(record.id.clone()));
                break;
            }
            Err(_) => {
                assert!(start.elapsed() < Duration::from_secs(15));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `host:port` of a `scheme://[user@]host:port/…` URL, and the URL with it replaced.
fn through(url: &str, proxy: std::net::SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = match rest.split_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    (host.to_owned(), format!("{scheme}://{user}{proxy}/{path}"))
}

#[cfg(feature = "postgres")]
mod postgres {
    use atsession::store::postgres::PostgresLock;
    use atsession::store::postgres::PostgresStore;

    use super::*;

    async fn proxied() -> Option<(FaultProxy, PostgresStore)> {
        let direct = support::fresh_postgres().await?;
        let (upstream, _) = through(&support::postgres_url(), "127.0.0.1:1".parse().unwrap());
        let proxy = FaultProxy::start(&upstream).await;
        let (_, url) = through(&support::postgres_url(), proxy.addr);
        let store = PostgresStore::connect_with_schema(&url, direct.schema())
            .await
            .unwrap()
            .with_operation_timeout(BOUND);
        Some((proxy, store))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frozen_mid_call() {
        let Some((proxy, store)) = proxied().await else {
            return;
        };
        let lock = PostgresLock::new(&store);
        super::frozen_mid_call(&proxy, &calls(store.clone(), lock)).await;
        super::a_timed_out_write_may_have_been_applied(&proxy, &store).await;
        support::drop_schema(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_mid_call() {
        let Some((proxy, store)) = proxied().await else {
            return;
        };
        let lock = PostgresLock::new(&store);
        super::killed_mid_call(&proxy, calls(store.clone(), lock)).await;
    }
}

#[cfg(feature = "redis")]
mod redis {
    use atsession::store::redis::RedisLock;
    use atsession::store::redis::RedisStore;

    use super::*;

    async fn proxied() -> Option<(FaultProxy, RedisStore)> {
        let direct = support::fresh_redis().await?;
        let (upstream, _) = through(&support::redis_url(), "127.0.0.1:1".parse().unwrap());
        let proxy = FaultProxy::start(&upstream).await;
        let (_, url) = through(&support::redis_url(), proxy.addr);
        let store = RedisStore::connect_with_prefix(&url, direct.prefix())
            .await
            .unwrap()
            .with_operation_timeout(BOUND);
        Some((proxy, store))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frozen_mid_call() {
        let Some((proxy, store)) = proxied().await else {
            return;
        };
        let lock = RedisLock::new(&store);
        super::frozen_mid_call(&proxy, &calls(store.clone(), lock)).await;
        super::a_timed_out_write_may_have_been_applied(&proxy, &store).await;
        support::drop_prefix(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn killed_mid_call() {
        let Some((proxy, store)) = proxied().await else {
            return;
        };
        let lock = RedisLock::new(&store);
        super::killed_mid_call(&proxy, calls(store.clone(), lock)).await;
    }
}
