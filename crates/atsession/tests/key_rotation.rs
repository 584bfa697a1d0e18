//! At-rest key rotation over stored grants: the check that a keyring opens every grant, and
//! re-sealing, interrupted and resumed, beside a refresh holding a grant's lock.
#![cfg(all(feature = "oauth", feature = "sqlite"))]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::lock::{Lock, MemoryLock};
use atsession::oauth::key_rotation::{
    KeyRotationError, ResealOptions, check_keyring, doc_grant, key_usage, reseal_grants,
};
use atsession::oauth::refresh_lock_key;
use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;

fn key(id: &str) -> AtRestKey {
    AtRestKey::generate(id).unwrap()
}

async fn store_with_grants(ring: &AtRestKeyring, n: usize) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("g.db")).await.unwrap();
    for _ in 0..n {
        doc_grant(&store, ring).await.unwrap();
    }
    (dir, store)
}

#[tokio::test]
async fn a_keyring_without_a_grants_key_is_refused_by_name() {
    let k1 = AtRestKeyring::new(key("k1"));
    let (_dir, store) = store_with_grants(&k1, 3).await;
    check_keyring(&store, &k1).await.unwrap();
    let other = AtRestKeyring::new(key("k2"));
    match check_keyring(&store, &other).await {
        Err(e @ KeyRotationError::MissingKeys { .. }) => {
            assert!(e.to_string().contains("k1"), "{e}");
            let KeyRotationError::MissingKeys { missing, grants } = e else {
                unreachable!()
            };
            assert_eq!((missing, grants), (vec!["k1".to_owned()], 3));
        }
        other => panic!("{other:?}"),
    }
    // A keyring holding k1 as an old key is enough.
    check_keyring(&store, &other.clone().with_old_key(k1.current().clone()))
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_stops_resumes_and_the_old_key_becomes_unneeded() {
    let k1 = key("k1");
    let (_dir, store) = store_with_grants(&AtRestKeyring::new(k1.clone()), 30).await;
    let k2 = key("k2");
    let rotated = AtRestKeyring::new(k2.clone()).with_old_key(k1.clone());

    let first = reseal_grants(&store, &rotated, ResealOptions::default().limit(10))
        .await
        .unwrap();
    assert_eq!((first.resealed, first.stopped), (10, true));
    let usage = key_usage(&store).await.unwrap();
    assert_eq!(
        (usage.grants_under("k1"), usage.grants_under("k2")),
        (20, 10)
    );

    let rest = reseal_grants(&store, &rotated, ResealOptions::default())
        .await
        .unwrap();
    assert_eq!((rest.resealed, rest.current, rest.stopped), (20, 10, false));
    let usage = key_usage(&store).await.unwrap();
    assert_eq!((usage.grants_under("k1"), usage.total()), (0, 30));

    // k1 is no longer needed: a keyring of k2 alone opens every grant (re-sealing them once
    // more, under k3, opens each with k2).
    let next = AtRestKeyring::new(key("k3")).with_old_key(k2);
    check_keyring(&store, &next).await.unwrap();
    let again = reseal_grants(&store, &next, ResealOptions::default())
        .await
        .unwrap();
    assert_eq!(again.resealed, 30);
    // Versions moved on with every re-seal: compare-and-swap writes, never blind ones.
    let page = store.list_grants(None, 100).await.unwrap();
    assert!(
        page.grants.iter().all(|g| g.version == 3),
        "{:?}",
        page.grants
    );
}

#[tokio::test]
async fn a_grant_being_refreshed_is_resealed_after_its_refresh() {
    let k1 = key("k1");
    let (_dir, store) = store_with_grants(&AtRestKeyring::new(k1.clone()), 1).await;
    let grant = store.list_grants(None, 10).await.unwrap().grants.remove(0);
    let locks = MemoryLock::new();
    // A refresh elsewhere holds the grant's lock…
    let held = locks
        .acquire(
            &refresh_lock_key(&grant.id),
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let rotated = AtRestKeyring::new(key("k2")).with_old_key(k1);
    let job = {
        let store = store.clone();
        let locks = locks.clone();
        tokio::spawn(async move {
            reseal_grants(&store, &rotated, ResealOptions::default().lock(locks)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!job.is_finished(), "the re-seal waits for the refresh");
    // …and saves its new token set (a new version) before releasing it.
    let mut refreshed = grant.clone();
    refreshed.version = 2;
    store.update_grant(1, &refreshed).await.unwrap();
    held.release().await.unwrap();
    let done = job.await.unwrap().unwrap();
    assert_eq!(done.resealed, 1);
    let after = store.load_grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(after.version, 3, "re-sealed on top of the refresh's write");
    assert_eq!(AtRestKeyring::key_id_of(&after.sealed), Some("k2"));
}
