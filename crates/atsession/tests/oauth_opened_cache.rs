//! The getter's cache of opened sessions: reused while the stored bytes are unchanged,
//! bounded by `GetterConfig::opened_capacity`, and never serving a changed row.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../benches/support/grants.rs"]
mod grants;

use std::sync::Arc;

use atsession::oauth::{GetterConfig, Grant, Refresh};
use atsession::secret::SecretString;
use atsession::store::MemoryStore;
use atsession::store::oauth::GrantStore;

fn small(capacity: usize) -> GetterConfig {
    GetterConfig {
        opened_capacity: capacity,
        ..GetterConfig::default()
    }
}

#[tokio::test]
async fn opened_sessions_are_reused_bounded_and_always_match_the_row() {
    let store = MemoryStore::new();
    let (getter, ids) = grants::fresh_grants_with(store.clone(), 50, small(8)).await;

    // Every get answers for its own grant; a second get of the same unchanged row reuses the
    // opened session.
    let mut first = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let a = getter.get(id, Refresh::IfStale).await.unwrap();
        let b = getter.get(id, Refresh::IfStale).await.unwrap();
        assert_eq!(a.token_set.sub, grants::did(i));
        assert!(Arc::ptr_eq(&a, &b), "grant {i} was opened twice");
        first.push(a);
    }
    // 50 grants through a cache of 8: the first ones were evicted and are opened again
    // (a new Arc), still for the right account.
    let again = getter.get(&ids[0], Refresh::IfStale).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first[0], &again),
        "the cache kept all 50 grants"
    );
    assert_eq!(again.token_set.sub, grants::did(0));

    // A row changed behind the getter's back (another process refreshed) is opened anew.
    let id = &ids[49];
    let cached = getter.get(id, Refresh::IfStale).await.unwrap();
    let stored = store.load_grant(id).await.unwrap().unwrap();
    let mut changed: Grant = (*cached).clone();
    changed.token_set.access_token = SecretString::new("a newer access token");
    let now = atsession::clock::truncate_ms(time::OffsetDateTime::now_utc());
    let resealed = changed
        .seal(&grants::keyring(), now, stored.version + 1)
        .unwrap();
    store.update_grant(stored.version, &resealed).await.unwrap();
    let fresh = getter.get(id, Refresh::IfStale).await.unwrap();
    assert_eq!(
        fresh.token_set.access_token.expose(),
        "a newer access token"
    );
    assert!(!Arc::ptr_eq(&cached, &fresh));

    // A deleted row is gone for the getter too.
    store.delete_grant(id).await.unwrap();
    assert!(getter.get(id, Refresh::AcceptStale).await.is_err());
}

#[tokio::test]
async fn a_capacity_of_zero_still_works() {
    let (getter, ids) = grants::fresh_grants_with(MemoryStore::new(), 3, small(0)).await;
    for (i, id) in ids.iter().enumerate() {
        let d = getter.get(id, Refresh::IfStale).await.unwrap();
        assert_eq!(d.token_set.sub, grants::did(i));
    }
}
