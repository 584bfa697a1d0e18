//! The session layer against the official atproto PDS, with access tokens of a few seconds:
//! 200 concurrent calls on one expired grant make exactly one refresh and keep the
//! refresh-token chain intact; four OS processes sharing one SQLite file (with the SQLite,
//! PostgreSQL or Redis lock) make exactly one refresh between them; sign-out makes the PDS
//! refuse both tokens.
//!
//! Run with the peer up (`bash e2e/oauth-session-e2e.sh` does all of it):
//! `bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json &&
//!  ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --all-features --test oauth_session_e2e`.
//! The tests shorten the peer's access-token lifetime themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;
#[allow(unused_imports)]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::lock::Lock;
use atsession::oauth::{
    AuthorizeOptions, CallbackParams, ClientMetadata, GetterConfig, Grant, OAuthClient,
    OAuthClientConfig, Refresh, SessionEvent, SessionGetter,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantId, GrantStore, StateStore};
use atsession::store::sqlite::SqliteStore;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1:8080/callback";
/// The access-token lifetime these tests run with.
const TOKEN_LIFE: Duration = Duration::from_secs(12);
const GET_SESSION: &str = "com.atproto.server.getSession";

fn client<S: StateStore + GrantStore>(
    plc_url: &str,
    resolver: &str,
    keyring: AtRestKeyring,
    store: S,
) -> OAuthClient<S> {
    let metadata = ClientMetadata::loopback(&[REDIRECT], "atproto transition:generic").unwrap();
    let identity = IdentityConfig {
        plc_url: Url::parse(plc_url).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(resolver).unwrap()),
        cache_ttl: Duration::from_secs(60),
    };
    let config = OAuthClientConfig::new(metadata, keyring)
        .dev_mode(true)
        .identity(identity);
    OAuthClient::new(config, store).unwrap()
}

/// Short tokens: stale one second before they expire, no jitter.
fn getter_config() -> GetterConfig {
    GetterConfig {
        stale_margin: Duration::from_secs(1),
        stale_jitter: Duration::ZERO,
        ..GetterConfig::default()
    }
}

async fn login<S: StateStore + GrantStore>(peer: &pds::Peer, client: &OAuthClient<S>) -> Grant {
    peer.set_token_max_age(TOKEN_LIFE).await.unwrap();
    let alice = peer.account("alice.test").clone();
    let url = client
        .authorize("alice.test", AuthorizeOptions::default())
        .await
        .expect("authorize");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let query = Url::parse(&redirect).unwrap().query().unwrap().to_owned();
    let done = client
        .callback(&CallbackParams::from_query(&query).unwrap())
        .await
        .expect("callback");
    let life = done.grant.token_set.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    assert!(
        life < time::Duration::seconds(30),
        "the peer issued long tokens ({life}); set_token_max_age did not apply"
    );
    done.grant
}

/// Sleeps until the session's access token has expired.
async fn until_expired(session: &Grant) {
    let exp = session.token_set.expires_at.unwrap();
    let left = exp - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(300);
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
}

fn count_updates(rx: &mut tokio::sync::broadcast::Receiver<SessionEvent>) -> (usize, usize) {
    let (mut updated, mut deleted) = (0, 0);
    while let Ok(e) = rx.try_recv() {
        match e {
            SessionEvent::Updated(_) => updated += 1,
            SessionEvent::Deleted { .. } => deleted += 1,
            _ => {}
        }
    }
    (updated, deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_make_one_refresh() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let store = MemoryStore::new();
    let keyring = AtRestKeyring::new(AtRestKey::generate("k").unwrap());
    let client = client(
        peer.plc_url(),
        peer.handle_resolver_url(),
        keyring,
        store.clone(),
    );
    let first = login(&peer, &client).await;
    let alice_did = peer.account("alice.test").did.clone();
    let getter = SessionGetter::new(client.clone(), getter_config());
    let mut rx = getter.subscribe();
    until_expired(&first).await;
    // Until the PDS itself refuses the expired token (it allows some clock skew).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let f = client
            .pds_request(&first, Method::GET, &format!("/xrpc/{GET_SESSION}"), None)
            .await
            .unwrap();
        if f.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the PDS never refused the token"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let session = getter.session(first.grant_id.clone());
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.xrpc_query::<Value>(GET_SESSION, &[]).await })
        })
        .collect();
    for t in tasks {
        let v = t.await.unwrap().expect("every call succeeds");
        assert_eq!(v["did"], alice_did.as_str());
    }
    let elapsed = started.elapsed();
    let (updated, deleted) = count_updates(&mut rx);
    assert_eq!(updated, 1, "exactly one refresh for 200 concurrent calls");
    assert_eq!(deleted, 0);
    eprintln!("200 concurrent getSession calls on an expired grant: 1 refresh, {elapsed:?}");

    // The chain is intact: the stored (newest) refresh token works…
    let stored = store.load_grant(&first.grant_id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    let current = getter
        .get(&first.grant_id, Refresh::AcceptStale)
        .await
        .unwrap();
    let (r0, r1) = (
        first.token_set.refresh_token.clone().unwrap(),
        current.token_set.refresh_token.clone().unwrap(),
    );
    assert_ne!(
        r0.expose(),
        r1.expose(),
        "the refresh rotated the refresh token"
    );
    let next = client
        .refresh(&current)
        .await
        .expect("the newest refresh token works");
    assert_ne!(next.refresh_token.unwrap().expose(), r1.expose());
    // …and the older ones are refused.
    let e = client.refresh(&first).await.unwrap_err();
    assert!(e.is_invalid_grant(), "{e:?}");
    let e = client.refresh(&current).await.unwrap_err();
    assert!(e.is_invalid_grant(), "{e:?}");
}

#[tokio::test]
async fn sign_out_makes_the_pds_refuse_both_tokens() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let store = MemoryStore::new();
    let keyring = AtRestKeyring::new(AtRestKey::generate("k").unwrap());
    let client = client(
        peer.plc_url(),
        peer.handle_resolver_url(),
        keyring,
        store.clone(),
    );
    let data = login(&peer, &client).await;
    let getter = SessionGetter::new(client.clone(), getter_config());
    let mut rx = getter.subscribe();
    let session = getter.session(data.grant_id.clone());
    let v: Value = session.xrpc_query(GET_SESSION, &[]).await.unwrap();
    assert_eq!(v["handle"], "alice.test");

    assert!(session.sign_out().await.expect("sign-out"));
    assert!(store.load_grant(&data.grant_id).await.unwrap().is_none());
    assert!(matches!(
        rx.try_recv(),
        Ok(SessionEvent::Deleted {
            cause: atsession::oauth::DeleteCause::SignedOut,
            ..
        })
    ));
    let f = client
        .pds_request(&data, Method::GET, &format!("/xrpc/{GET_SESSION}"), None)
        .await
        .unwrap();
    assert_eq!(
        f.status,
        StatusCode::UNAUTHORIZED,
        "the access token is refused"
    );
    let e = client.refresh(&data).await.unwrap_err();
    assert!(e.is_invalid_grant(), "the refresh token is refused: {e:?}");
    let e = session
        .xrpc_query::<Value>(GET_SESSION, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(e, atsession::oauth::GrantError::NotFound(_)),
        "{e:?}"
    );
}

// ---- Several OS processes ----

const PROCESSES: usize = 4;
const CALLS_PER_PROCESS: usize = 25;

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The child's entry point (run by the test below; returns at once on its own).
#[test]
#[ignore = "run as a child process by the multi-process tests"]
fn session_child() {
    let Ok(db) = std::env::var("SESSION_CHILD_DB") else {
        return;
    };
    let key = std::env::var("SESSION_CHILD_KEY").unwrap();
    let grant = GrantId::parse(&std::env::var("SESSION_CHILD_GRANT").unwrap()).unwrap();
    let lock_kind = std::env::var("SESSION_CHILD_LOCK").unwrap();
    let lock_target = std::env::var("SESSION_CHILD_LOCK_TARGET").unwrap_or_default();
    let start_at: u64 = std::env::var("SESSION_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let plc = std::env::var("SESSION_CHILD_PLC").unwrap();
    let resolver = std::env::var("SESSION_CHILD_RESOLVER").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store_kind = std::env::var("SESSION_CHILD_STORE").unwrap_or_else(|_| "sqlite".into());
    let store_target = std::env::var("SESSION_CHILD_STORE_TARGET").unwrap_or_default();
    rt.block_on(async move {
        let sqlite = SqliteStore::open(&db).await.unwrap();
        let lock: Arc<dyn Lock> = make_lock(&lock_kind, &lock_target, &sqlite).await;
        let keyring = AtRestKeyring::new(AtRestKey::from_spec(&key).unwrap());
        let child = Child {
            keyring,
            grant,
            lock,
            start_at,
            plc,
            resolver,
        };
        let _ = &store_target;
        let (ok, updated, deleted) = match store_kind.as_str() {
            "sqlite" => child.calls(sqlite).await,
            #[cfg(feature = "postgres")]
            "postgres" => {
                let (url, schema) = store_target.split_once('|').unwrap();
                let pg =
                    atsession::store::postgres::PostgresStore::connect_with_schema(url, schema)
                        .await
                        .unwrap();
                child.calls(pg).await
            }
            #[cfg(feature = "redis")]
            "redis" => {
                let (url, prefix) = store_target.split_once('|').unwrap();
                let redis = atsession::store::redis::RedisStore::connect_with_prefix(url, prefix)
                    .await
                    .unwrap();
                child.calls(redis).await
            }
            other => panic!("unknown store {other}"),
        };
        println!("SESSION-CHILD ok={ok} updated={updated} deleted={deleted}");
    });
}

/// What one child process does: all its calls at once, at the agreed instant.
struct Child {
    keyring: AtRestKeyring,
    grant: GrantId,
    lock: Arc<dyn Lock>,
    start_at: u64,
    plc: String,
    resolver: String,
}

impl Child {
    async fn calls<S: StateStore + GrantStore + Clone>(self, store: S) -> (usize, usize, usize) {
        let client = client(&self.plc, &self.resolver, self.keyring, store);
        let config = GetterConfig {
            lock: Some(self.lock),
            ..getter_config()
        };
        let getter = SessionGetter::new(client, config);
        let mut rx = getter.subscribe();
        let session = getter.session(self.grant);
        let wait = self.start_at.saturating_sub(unix_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let tasks: Vec<_> = (0..CALLS_PER_PROCESS)
            .map(|_| {
                let s = session.clone();
                tokio::spawn(async move { s.xrpc_query::<Value>(GET_SESSION, &[]).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(v) if v["handle"] == "alice.test" => ok += 1,
                Ok(v) => eprintln!("child: unexpected answer {v}"),
                Err(e) => eprintln!("child: call failed: {e:?}"),
            }
        }
        let (updated, deleted) = count_updates(&mut rx);
        (ok, updated, deleted)
    }
}

async fn make_lock(kind: &str, target: &str, store: &SqliteStore) -> Arc<dyn Lock> {
    // `target` names the PostgreSQL schema or Redis prefix (unused without those features).
    let _ = target;
    match kind {
        "sqlite" => Arc::new(atsession::store::sqlite::SqliteLock::new(store)),
        #[cfg(feature = "postgres")]
        "postgres" => {
            let (url, schema) = target.split_once('|').unwrap();
            let pg = atsession::store::postgres::PostgresStore::connect_with_schema(url, schema)
                .await
                .unwrap();
            Arc::new(atsession::store::postgres::PostgresLock::new(&pg))
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let (url, prefix) = target.split_once('|').unwrap();
            Arc::new(
                atsession::store::redis::RedisLock::connect(url, prefix)
                    .await
                    .unwrap(),
            )
        }
        other => panic!("unknown lock {other}"),
    }
}

/// Four processes share one SQLite file and `lock_kind`'s lock; all call at once on an
/// expired grant. Exactly one refresh between them; every call succeeds.
async fn processes_share_one_refresh(peer: &pds::Peer, lock_kind: &str, lock_target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let store = SqliteStore::open(&db).await.unwrap();
    processes_share_one_store(peer, store, &db, ("sqlite", ""), (lock_kind, lock_target)).await;
}

/// The same with the grants in `store` (named to the children by `store_env`: kind and
/// target), the lock named by `lock_env`; `db` is a SQLite file for the SQLite lock.
async fn processes_share_one_store<S: StateStore + GrantStore + Clone>(
    peer: &pds::Peer,
    store: S,
    db: &std::path::Path,
    (store_kind, store_target): (&str, &str),
    (lock_kind, lock_target): (&str, &str),
) {
    let key = AtRestKey::generate("k").unwrap();
    let spec = key.to_spec();
    let client = client(
        peer.plc_url(),
        peer.handle_resolver_url(),
        AtRestKeyring::new(key),
        store.clone(),
    );
    let data = login(peer, &client).await;
    until_expired(&data).await;
    let start_at = unix_ms() + 2500;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "session_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SESSION_CHILD_DB", db)
                .env("SESSION_CHILD_STORE", store_kind)
                .env("SESSION_CHILD_STORE_TARGET", store_target)
                .env("SESSION_CHILD_KEY", spec.as_str())
                .env("SESSION_CHILD_GRANT", data.grant_id.as_str())
                .env("SESSION_CHILD_LOCK", lock_kind)
                .env("SESSION_CHILD_LOCK_TARGET", lock_target)
                .env("SESSION_CHILD_START", start_at.to_string())
                .env("SESSION_CHILD_PLC", peer.plc_url())
                .env("SESSION_CHILD_RESOLVER", peer.handle_resolver_url())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut ok, mut updated, mut deleted) = (0, 0, 0);
    for c in children {
        let out = tokio::task::spawn_blocking(move || c.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "a child failed");
        let text = String::from_utf8_lossy(&out.stdout);
        // libtest prints the test's name on the same line, before the child's output.
        let line = text
            .split("SESSION-CHILD ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_else(|| panic!("no result line in: {text}"));
        for part in line.split(' ') {
            let (k, v) = part.split_once('=').unwrap();
            let v: usize = v.parse().unwrap();
            match k {
                "ok" => ok += v,
                "updated" => updated += v,
                "deleted" => deleted += v,
                _ => {}
            }
        }
    }
    assert_eq!(ok, PROCESSES * CALLS_PER_PROCESS, "every call succeeds");
    assert_eq!(
        updated, 1,
        "exactly one refresh across {PROCESSES} processes"
    );
    assert_eq!(deleted, 0);
    let stored = store.load_grant(&data.grant_id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2, "one refresh stored");
    eprintln!(
        "{PROCESSES} processes x {CALLS_PER_PROCESS} calls on a shared {store_kind} store with the {lock_kind} lock: 1 refresh"
    );
}

#[tokio::test]
async fn processes_sqlite_file_and_sqlite_lock() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    processes_share_one_refresh(&peer, "sqlite", "").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn processes_sqlite_file_and_postgres_lock() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let Some(pg) = support::fresh_postgres().await else {
        return;
    };
    let target = format!("{}|{}", support::postgres_url(), pg.schema());
    processes_share_one_refresh(&peer, "postgres", &target).await;
    support::drop_schema(&pg).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn processes_sqlite_file_and_redis_lock() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let Some(redis) = support::fresh_redis().await else {
        return;
    };
    let target = format!("{}|{}", support::redis_url(), redis.prefix());
    processes_share_one_refresh(&peer, "redis", &target).await;
    support::drop_prefix(&redis).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn processes_share_one_postgres_store_and_lock() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let Some(pg) = support::fresh_postgres().await else {
        return;
    };
    let target = format!("{}|{}", support::postgres_url(), pg.schema());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("unused.db");
    processes_share_one_store(
        &peer,
        pg.clone(),
        &db,
        ("postgres", &target),
        ("postgres", &target),
    )
    .await;
    support::drop_schema(&pg).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn processes_share_one_redis_store_and_lock() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let Some(redis) = support::fresh_redis().await else {
        return;
    };
    let target = format!("{}|{}", support::redis_url(), redis.prefix());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("unused.db");
    processes_share_one_store(
        &peer,
        redis.clone(),
        &db,
        ("redis", &target),
        ("redis", &target),
    )
    .await;
    support::drop_prefix(&redis).await;
}
