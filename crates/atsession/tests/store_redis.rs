//! The conformance suite on Redis (a fresh key prefix per test), and what only Redis has:
//! key expiry, the index entries Redis expires on its own, the key layout.
//!
//! Needs a server: `ATSESSION_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). Skipped if
//! it is down, failed if `CI=true`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

mod conformance;
mod support;

use std::time::Duration;

use atsession::app::{SessionId, StoredSession};
use atsession::secret::TokenHash;
use atsession::store::SessionStore;
use atsession::syntax::Did;
use serde_json::json;
use time::OffsetDateTime;

mod suite {
    crate::conformance::session_store_suite!({
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
        data: json!({"n": n}),
        grant_id: Some("grant".into()),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + expires_in,
        absolute_expires_at: now + expires_in + Duration::from_secs(1),
        version: 1,
    }
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
    let s = record(Duration::from_secs(3600), 1);
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
    let short = record(Duration::from_millis(300), 2);
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
    let short = record(Duration::from_millis(200), 3);
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
    let short = record(Duration::from_millis(200), 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_did_is_one_round_trip() {
    let Some(store) = support::fresh_redis().await else {
        return;
    };
    for n in 0..100u8 {
        store
            .create(&record(Duration::from_secs(3600), n))
            .await
            .unwrap();
    }
    let before = command_count(&store).await;
    assert_eq!(
        store
            .delete_by_did(&Did::new(ALICE).unwrap())
            .await
            .unwrap(),
        100
    );
    let after = command_count(&store).await;
    // One EVALSHA (plus the INFO that measured it); the server is shared with other tests, so
    // count only the script calls' growth loosely against the 100 sessions.
    assert!(after.0 - before.0 <= 3, "{before:?} {after:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", store.prefix()))
        .query_async(&mut store.connection())
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

/// (calls of EVALSHA, ...) from INFO commandstats — server-wide.
async fn command_count(store: &atsession::store::redis::RedisStore) -> (u64,) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let calls = info
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (calls,)
}
