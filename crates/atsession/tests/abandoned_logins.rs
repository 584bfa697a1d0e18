//! Abandoned logins do not grow the database for good: their states expire, the client's
//! periodic cleanup deletes them, and the SQLite file gives the pages back.
#![cfg(all(feature = "oauth", feature = "sqlite"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use atsession::clock::{Clock as _, ManualClock};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::MAX_APP_STATE_LEN;
use atsession::oauth::{
    AuthorizeOptions, ClientMetadata, OAuthClient, OAuthClientConfig, OAuthError,
};
use atsession::secret::TokenHash;
use atsession::store::oauth::{StateStore, StoredAuthState};
use atsession::store::sqlite::SqliteStore;

fn pages(path: &std::path::Path) -> (i64, i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    let count = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let free = c
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    (count, free)
}

fn client(store: SqliteStore, clock: Arc<ManualClock>) -> OAuthClient<SqliteStore> {
    let metadata =
        ClientMetadata::loopback(&["http://127.0.0.1/callback"], "atproto transition:generic")
            .unwrap();
    let keyring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring).clock(clock),
        store,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_abandoned_logins_leave_the_file_at_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let clock = Arc::new(ManualClock::at_now());
    let client = client(store.clone(), Arc::clone(&clock));
    let (before, _) = pages(&path);

    // What 10,000 unauthenticated `/oauth/login` requests leave: one sealed state each, at
    // the largest app state a login may carry, expiring with the default 10 minutes.
    let expires = clock.now() + time::Duration::minutes(10);
    let sealed = vec![0x5a; MAX_APP_STATE_LEN + 300];
    for i in 0..10_000 {
        store
            .put_state(&StoredAuthState {
                key: TokenHash::of(format!("abandoned-{i}").as_bytes()),
                sealed: sealed.clone(),
                expires_at: expires,
            })
            .await
            .unwrap();
    }
    let (flooded, _) = pages(&path);
    assert!(flooded > before + 5_000, "{before} -> {flooded} pages");

    // Not yet expired: the cleanup keeps them.
    assert_eq!(client.delete_expired_states().await.unwrap(), 0);

    // Expired: the periodic cleanup alone brings the file back.
    clock.advance(Duration::from_secs(601));
    let cleanup = client.spawn_cleanup(Duration::from_millis(20));
    let mut after = pages(&path);
    for _ in 0..500 {
        if after.0 <= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = pages(&path);
    }
    drop(cleanup);
    assert!(
        after.0 <= before + 2,
        "{before} -> {flooded} -> {after:?} pages"
    );
    assert_eq!(after.1, 0, "no free pages left in the file");
}

#[tokio::test]
async fn an_oversized_app_state_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let client = client(store, Arc::new(ManualClock::at_now()));
    let options = AuthorizeOptions {
        app_state: Some("r".repeat(MAX_APP_STATE_LEN + 1)),
        ..AuthorizeOptions::default()
    };
    let e = client.authorize("alice.test", options).await.unwrap_err();
    assert!(
        matches!(e, OAuthError::AppStateTooLong { len } if len == MAX_APP_STATE_LEN + 1),
        "{e:?}"
    );
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM oauth_states", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn state_and_metadata_lifetimes_are_bounded_at_configuration() {
    use atsession::oauth::ClientConfigError;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("gw.db")).await.unwrap();
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1/callback"], "atproto").unwrap();
    let keyring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    for (state, meta, bad) in [
        (Duration::ZERO, Duration::from_secs(60), "state lifetime"),
        (
            Duration::from_secs(9_999_999_999_999),
            Duration::from_secs(60),
            "state lifetime",
        ),
        (
            Duration::from_secs(600),
            Duration::MAX,
            "metadata cache lifetime",
        ),
    ] {
        let mut config = OAuthClientConfig::new(metadata.clone(), keyring.clone());
        config.state_ttl = state;
        config.metadata_ttl = meta;
        match OAuthClient::new(config, store.clone()) {
            Err(OAuthError::Config(ClientConfigError::Duration(name))) => assert_eq!(name, bad),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("{state:?} / {meta:?} accepted"),
        }
    }
}
