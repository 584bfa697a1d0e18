//! The conformance suite on Redis (a fresh key prefix per test), and what only Redis has:
//! key expiry, the index entries Redis expires on its own, the key layout.
//!
//! Needs a server: `ATSESSION_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). Skipped if
//! it is down, failed if `CI=true`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atsession::app::{SessionId, StoredSession};
use atsession::secret::TokenHash;
use atsession::store::SessionStore;
use atsession::syntax::Did;
use serde_json::json;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod suite {
    atsession::session_store_suite!({
        let Some(store) = crate::support::fresh_redis().await else {
            return;
        };
        std::future::ready(store)
    });
}

const ALICE: &str = "did:plc:alice00000000000000000000";

fn record(expires_in: Duration, n: u8) -> StoredSession {
    let now = atsession::clock::truncate_ms(OffsetDateTime::now_utc());
    StoredSession {
        id: SessionId::generate(),
        token_hash: TokenHash::of(&[n, 1]),
        access_token_hash: Some(TokenHash::of(&[n, 2])),
        access_expires_at: Some(now + Duration::from_secs(60)),
        did: Did::new(ALICE).unwrap(),
        handle: "alice.test".parse().unwrap(),
        data: json!({"n": n}).into(),
        grant_id: Some(atsession::store::oauth::GrantId::generate()),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + expires_in,
        absolute_expires_at: now + expires_in + Duration::from_secs(1),
        version: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grant_id_is_a_corrupt_record() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let s = record(Duration::from_secs(3600), 7);
    store.create(&s).await.unwrap();
    let () = redis::cmd("HSET")
        .arg(format!("{}s:{}", store.prefix(), s.id))
        .arg("g")
        .arg("not a grant id")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert!(matches!(
        store.load(&s.id).await,
        Err(atsession::store::StoreError::Corrupt {
            backend: "redis",
            ..
        })
    ));
}

async fn pexpiretime(store: &atsession::store::redis::RedisStore, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(format!("{}{key}", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_expires_with_the_session() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let mut s = record(Duration::from_secs(3600), 1);
    s.grant_id = None;
    store.create(&s).await.unwrap();
    let at = atsession::clock::to_millis(s.expires_at());
    assert_eq!(pexpiretime(&store, &format!("s:{}", s.id)).await, at);
    assert_eq!(
        pexpiretime(&store, &format!("t:{}", s.token_hash.to_hex())).await,
        at
    );
    assert_eq!(
        pexpiretime(
            &store,
            &format!("a:{}", s.access_token_hash.unwrap().to_hex())
        )
        .await,
        at
    );
    assert_eq!(pexpiretime(&store, &format!("d:{ALICE}")).await, at);
    // An update that slides the expiry moves every key's expiry with it.
    let mut next = s.clone();
    next.version = 2;
    next.idle_expires_at += Duration::from_secs(600);
    next.absolute_expires_at += Duration::from_secs(600);
    next.access_token_hash = Some(TokenHash::of(b"new access"));
    assert_eq!(
        store.update(1, &next).await.unwrap(),
        atsession::store::Cas::Updated
    );
    let at2 = atsession::clock::to_millis(next.expires_at());
    assert_eq!(pexpiretime(&store, &format!("s:{}", s.id)).await, at2);
    assert_eq!(
        pexpiretime(&store, &format!("t:{}", s.token_hash.to_hex())).await,
        at2
    );
    assert_eq!(
        pexpiretime(
            &store,
            &format!("a:{}", next.access_token_hash.unwrap().to_hex())
        )
        .await,
        at2
    );
    // The old access index key is gone (-2: no such key).
    assert_eq!(
        pexpiretime(
            &store,
            &format!("a:{}", s.access_token_hash.unwrap().to_hex())
        )
        .await,
        -2
    );
    assert_eq!(pexpiretime(&store, &format!("d:{ALICE}")).await, at2);
    assert!(store.delete(&s.id).await.unwrap());
    for key in [
        format!("s:{}", s.id),
        format!("t:{}", s.token_hash.to_hex()),
        format!("a:{}", next.access_token_hash.unwrap().to_hex()),
        format!("d:{ALICE}"),
    ] {
        assert_eq!(pexpiretime(&store, &key).await, -2, "{key}");
    }
    support::drop_prefix(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_redis_expired_are_skipped_and_pruned() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let live = record(Duration::from_secs(3600), 1);
    // Without a grant: Redis drops it at its expiry (one with a grant is kept for the
    // cleanup, see a_session_with_a_grant_is_kept_for_the_cleanup).
    let mut short = record(Duration::from_millis(300), 2);
    short.grant_id = None;
    store.create(&live).await.unwrap();
    store.create(&short).await.unwrap();
    assert_eq!(store.list_by_did(&live.did).await.unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Redis dropped the short session's keys by itself; its id is still in the DID set and
    // the cleanup set.
    assert!(store.load(&short.id).await.unwrap().is_none());
    assert!(
        store
            .load_by_token(&short.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}d:{ALICE}", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert_eq!(members.len(), 2);
    // Listing skips it, and prunes it.
    let list = store.list_by_did(&live.did).await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), [&live.id]);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}d:{ALICE}", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert_eq!(members, [live.id.to_string()]);
    // Another expired one: delete-by-DID counts only what still existed.
    let mut short = record(Duration::from_millis(200), 3);
    short.grant_id = None;
    store.create(&short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.delete_by_did(&live.did).await.unwrap(), 1);
    let zcard: u64 = redis::cmd("ZCARD")
        .arg(format!("{}x", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert_eq!(zcard, 0, "the cleanup set lost the DID's members");
    support::drop_prefix(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_prunes_what_redis_expired() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let mut short = record(Duration::from_millis(200), 1);
    short.grant_id = None;
    let live = record(Duration::from_secs(3600), 2);
    store.create(&short).await.unwrap();
    store.create(&live).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Gone already, so not counted; but its index entries go.
    assert_eq!(
        store
            .delete_expired(OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
    let zcard: u64 = redis::cmd("ZCARD")
        .arg(format!("{}x", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert_eq!(zcard, 1);
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}d:{ALICE}", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert_eq!(members, [live.id.to_string()]);
    support::drop_prefix(&store).await;
}

/// The record of a session with a grant outlives the session by the grace, so that the
/// cleanup still finds it (and signs the grant out) after Redis's own expiry; its token
/// index entries do not, and it is refused as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_grant_is_kept_for_the_cleanup() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let s = record(Duration::from_millis(200), 3);
    store.create(&s).await.unwrap();
    let at = atsession::clock::to_millis(s.expires_at());
    let grace = i64::try_from(atsession::store::redis::GRANT_SESSION_GRACE.as_millis()).unwrap();
    assert_eq!(
        pexpiretime(&store, &format!("s:{}", s.id)).await,
        at + grace
    );
    assert_eq!(
        pexpiretime(&store, &format!("t:{}", s.token_hash.to_hex())).await,
        at
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(store.load_by_token(&s.token_hash).await.unwrap().is_none());
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store.expired_with_grants(now, 10).await.unwrap(),
        [(s.id.clone(), s.grant_id.clone().unwrap())]
    );
    assert_eq!(store.delete_expired(now).await.unwrap(), 1);
    assert!(store.load(&s.id).await.unwrap().is_none());
    assert!(store.expired_with_grants(now, 10).await.unwrap().is_empty());
    support::drop_prefix(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_did_is_one_round_trip() {
    let Some(probe) = support::fresh_redis().await else {
        return;
    };
    // Talk to Redis through a proxy that counts the commands the store sends.
    let (proxy_url, commands) = counting_proxy(&support::redis_url()).await;
    let store =
        atsession::store::redis::RedisStore::connect_with_prefix(&proxy_url, probe.prefix())
            .await
            .unwrap();
    for n in 0..100u8 {
        store
            .create(&record(Duration::from_secs(3600), n))
            .await
            .unwrap();
    }
    assert!(commands.load(Ordering::SeqCst) >= 100, "the proxy counts");
    let (deleted, sent) = one_script_call(&commands, |did| store.delete_by_did(did)).await;
    assert_eq!(deleted, 100);
    assert_eq!(sent, 1, "delete_by_did sent {sent} commands");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", probe.prefix()))
        .query_async(&mut probe.connection())
        .await
        .unwrap();
    // Only the store's mark is left.
    assert_eq!(keys, [format!("{}schema", probe.prefix())]);
}

/// Runs `delete` for an account with nothing stored (so that the server has the script: one
/// that does not answers NOSCRIPT, and the client loads it and asks again), then for
/// `ALICE`; returns what the second deleted and how many commands it sent.
async fn one_script_call<'a, F, Fut>(commands: &AtomicU64, delete: F) -> (u64, u64)
where
    F: Fn(&'a Did) -> Fut,
    Fut: Future<Output = Result<u64, atsession::store::StoreError>>,
{
    static NOBODY: std::sync::LazyLock<Did> =
        std::sync::LazyLock::new(|| Did::new("did:plc:nobodyhere").unwrap());
    static ALICE_DID: std::sync::LazyLock<Did> =
        std::sync::LazyLock::new(|| Did::new(ALICE).unwrap());
    assert_eq!(delete(&NOBODY).await.unwrap(), 0);
    let before = commands.load(Ordering::SeqCst);
    let deleted = delete(&ALICE_DID).await.unwrap();
    (deleted, commands.load(Ordering::SeqCst) - before)
}

/// A TCP proxy to the Redis at `upstream` that counts the RESP commands clients send.
async fn counting_proxy(upstream: &str) -> (String, Arc<AtomicU64>) {
    let addr = upstream
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(&addr).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let n = match cr.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(used) = resp_command_len(&buf) {
                        buf.drain(..used);
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if sw.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("redis://127.0.0.1:{port}"), count)
}

/// The length of the first complete RESP command (`*N` then N bulk strings) in `buf`.
fn resp_command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    if buf.first() != Some(&b'*') {
        return None;
    }
    let (args, mut at) = line(buf, 0)?;
    for _ in 0..args {
        if buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, body) = line(buf, at)?;
        at = body + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_states_expire_and_grants_do_not() {
    use atsession::clock::{to_millis, truncate_ms};
    use atsession::store::oauth::{GrantId, GrantStore, StateStore, StoredAuthState, StoredGrant};
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    let now = truncate_ms(OffsetDateTime::now_utc());
    let st = StoredAuthState {
        key: TokenHash::of(b"state"),
        sealed: vec![1],
        expires_at: now + Duration::from_secs(600),
    };
    store.put_state(&st).await.unwrap();
    let at = to_millis(st.expires_at);
    assert_eq!(
        pexpiretime(&store, &format!("os:{}", st.key.to_hex())).await,
        at
    );
    assert_eq!(pexpiretime(&store, "ox").await, at);
    // A state whose expiry passed by the server's clock is gone, whatever `now` says.
    let short = StoredAuthState {
        key: TokenHash::of(b"short"),
        sealed: vec![2],
        expires_at: now + Duration::from_millis(200),
    };
    store.put_state(&short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.take_state(&short.key, now).await.unwrap().is_none());
    assert_eq!(store.take_state(&st.key, now).await.unwrap(), Some(st));

    // Grants never expire by themselves, nor does their DID set.
    let (proxy_url, commands) = counting_proxy(&support::redis_url()).await;
    let counted =
        atsession::store::redis::RedisStore::connect_with_prefix(&proxy_url, store.prefix())
            .await
            .unwrap();
    let mut ids = Vec::new();
    for n in 0..50u8 {
        let g = StoredGrant {
            id: GrantId::generate(),
            did: Did::new(ALICE).unwrap(),
            issuer: "https://pds.example".into(),
            sealed: vec![n],
            created_at: now,
            updated_at: now,
            version: 1,
        };
        counted.create_grant(&g).await.unwrap();
        ids.push(g.id);
    }
    assert_eq!(pexpiretime(&store, &format!("og:{}", ids[0])).await, -1);
    assert_eq!(pexpiretime(&store, &format!("od:{ALICE}")).await, -1);
    // Deleting every grant of the account is one script call, and leaves no key behind.
    assert!(commands.load(Ordering::SeqCst) >= 50, "the proxy counts");
    let (deleted, sent) = one_script_call(&commands, |did| counted.delete_grants_by_did(did)).await;
    assert_eq!(deleted, 50);
    assert_eq!(sent, 1, "delete_grants_by_did sent {sent} commands");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}o[gd]:*", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    support::drop_prefix(&store).await;
}

/// Every key under `prefix`, by SCAN.
async fn keys_under(
    conn: &mut atsession::store::redis::RedisConnection,
    prefix: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            out.sort();
            return out;
        }
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_needs_the_mark_and_writes_nothing() {
    use atsession::store::DatabaseProblem;
    use atsession::store::redis::{RedisStore, SCHEMA_VERSION};
    let Some(admin) = support::fresh_redis().await else {
        return;
    };
    let url = support::redis_url();
    let prefix = format!("{}:", support::unique_name());
    let mut conn = admin.connection();
    let problem = |r: Result<RedisStore, atsession::store::StoreError>| match r {
        Err(atsession::store::StoreError::Database { problem, .. }) => problem,
        other => panic!("expected a database problem, got {other:?}"),
    };
    let open = || RedisStore::connect_read_only_with_prefix(&url, &prefix);
    let mark = format!("{prefix}schema");

    // Nothing under the prefix: missing, and nothing written.
    assert_eq!(problem(open().await), DatabaseProblem::Missing);
    assert!(keys_under(&mut conn, &prefix).await.is_empty());

    // Opened as usual: marked; the read-only open lists and refuses writes.
    let store = RedisStore::connect_with_prefix(&url, &prefix)
        .await
        .unwrap();
    assert_eq!(
        keys_under(&mut conn, &prefix).await,
        std::slice::from_ref(&mark)
    );
    let s = record(Duration::from_secs(3600), 9);
    store.create(&s).await.unwrap();
    let before = keys_under(&mut conn, &prefix).await;
    let read_only = open().await.unwrap();
    assert!(read_only.is_read_only());
    let listed = read_only.list_by_did(&s.did).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, s.id);
    assert!(read_only.delete(&s.id).await.is_err());
    assert!(read_only.delete_by_did(&s.did).await.is_err());
    assert!(store.load(&s.id).await.unwrap().is_some());
    assert_eq!(keys_under(&mut conn, &prefix).await, before);

    // A store from before the mark: not migrated, and still unmarked; a usual open marks it.
    let () = redis::cmd("DEL")
        .arg(&mark)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        problem(open().await),
        DatabaseProblem::NotMigrated {
            found: 0,
            expected: SCHEMA_VERSION
        }
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(&mark)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
    drop(
        RedisStore::connect_with_prefix(&url, &prefix)
            .await
            .unwrap(),
    );
    let v: String = redis::cmd("GET")
        .arg(&mark)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION.to_string());

    // A newer layout is refused by both opens; a mark that is no version is not ours.
    let newer = SCHEMA_VERSION + 1;
    let () = redis::cmd("SET")
        .arg(&mark)
        .arg(newer)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        problem(open().await),
        DatabaseProblem::Newer {
            found: newer,
            expected: SCHEMA_VERSION
        }
    );
    assert!(matches!(
        problem(RedisStore::connect_with_prefix(&url, &prefix).await),
        DatabaseProblem::Newer { .. }
    ));
    let () = redis::cmd("SET")
        .arg(&mark)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(problem(open().await), DatabaseProblem::Foreign);
    let () = redis::cmd("DEL")
        .arg(&mark)
        .query_async(&mut conn)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&mark)
        .arg("a")
        .arg("b")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(problem(open().await), DatabaseProblem::Foreign);

    let keys = keys_under(&mut conn, &prefix).await;
    let () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}
