//! The OAuth store suite: the [`StateStore`] and [`GrantStore`] contract (one-time
//! takes, expiry, compare-and-swap grants, the DID index, sealed bytes as given).

use std::sync::LazyLock;

use crate::clock::{from_millis, to_millis};
use crate::secret::TokenHash;
use crate::store::Cas;
use crate::store::oauth::{GrantId, GrantStore, StateStore, StoredAuthState, StoredGrant};
use crate::syntax::Did;
use time::OffsetDateTime;

/// Test times are milliseconds after a base an hour ahead of the real clock, so that a
/// backend which also expires keys by its own clock (Redis) keeps every state for the whole
/// test; what the store is told as `now` decides everything else.
static BASE: LazyLock<i64> = LazyLock::new(|| to_millis(OffsetDateTime::now_utc()) + 3_600_000);

fn t(ms: i64) -> OffsetDateTime {
    from_millis(*BASE + ms)
}

fn grant(did: &str, created: i64) -> StoredGrant {
    StoredGrant {
        id: GrantId::generate(),
        did: Did::new(did).unwrap(),
        issuer: "https://pds.example".into(),
        sealed: vec![1, 2, 3, created as u8],
        created_at: t(created),
        updated_at: t(created),
        version: 1,
    }
}

fn state(key: &str, expires: i64) -> StoredAuthState {
    StoredAuthState {
        key: TokenHash::of(key.as_bytes()),
        sealed: key.as_bytes().to_vec(),
        expires_at: t(expires),
    }
}

/// Conformance check `states_are_taken_once` (OAuth stores); panics if the store breaks the contract.
pub async fn states_are_taken_once<S: StateStore>(s: &S) {
    s.put_state(&state("a", 10_000)).await.unwrap();
    assert!(
        s.put_state(&state("a", 10_000)).await.is_err(),
        "no overwrite"
    );
    let got = s
        .take_state(&TokenHash::of(b"a"), t(5_000))
        .await
        .unwrap()
        .expect("present");
    assert_eq!(got, state("a", 10_000));
    assert!(
        s.take_state(&TokenHash::of(b"a"), t(5_000))
            .await
            .unwrap()
            .is_none(),
        "a second take finds nothing"
    );
}

/// Conformance check `expired_states_are_not_returned` (OAuth stores); panics if the store breaks the contract.
pub async fn expired_states_are_not_returned<S: StateStore>(s: &S) {
    s.put_state(&state("old", 1_000)).await.unwrap();
    assert!(
        s.take_state(&TokenHash::of(b"old"), t(1_000))
            .await
            .unwrap()
            .is_none()
    );
    // ... and are gone afterwards even at an earlier clock.
    assert!(
        s.take_state(&TokenHash::of(b"old"), t(0))
            .await
            .unwrap()
            .is_none()
    );
    s.put_state(&state("x", 1_000)).await.unwrap();
    s.put_state(&state("y", 2_000)).await.unwrap();
    s.put_state(&state("z", 3_000)).await.unwrap();
    assert_eq!(s.delete_expired_states(t(2_000)).await.unwrap(), 2);
    assert!(
        s.take_state(&TokenHash::of(b"z"), t(2_500))
            .await
            .unwrap()
            .is_some()
    );
}

/// Conformance check `concurrent_takes_yield_one_winner` (OAuth stores); panics if the store breaks the contract.
pub async fn concurrent_takes_yield_one_winner<S: StateStore + Clone>(s: &S) {
    s.put_state(&state("race", 10_000)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.take_state(&TokenHash::of(b"race"), t(0))
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap());
    }
    assert_eq!(wins, 1);
}

/// Conformance check `grants_crud_and_cas` (OAuth stores); panics if the store breaks the contract.
pub async fn grants_crud_and_cas<S: GrantStore>(s: &S) {
    let g = grant("did:plc:alice", 1_000);
    s.create_grant(&g).await.unwrap();
    assert!(s.create_grant(&g).await.is_err(), "no overwrite");
    assert_eq!(s.load_grant(&g.id).await.unwrap(), Some(g.clone()));

    let mut g2 = g.clone();
    g2.sealed = vec![9, 9];
    g2.version = 2;
    g2.updated_at = t(2_000);
    assert_eq!(s.update_grant(1, &g2).await.unwrap(), Cas::Updated);
    assert_eq!(s.load_grant(&g.id).await.unwrap(), Some(g2.clone()));
    let mut stale = g.clone();
    stale.version = 2;
    assert_eq!(s.update_grant(1, &stale).await.unwrap(), Cas::Conflict);
    assert_eq!(s.load_grant(&g.id).await.unwrap(), Some(g2.clone()));

    assert!(s.delete_grant(&g.id).await.unwrap());
    assert!(!s.delete_grant(&g.id).await.unwrap());
    let mut g3 = g2.clone();
    g3.version = 3;
    assert_eq!(
        s.update_grant(2, &g3).await.unwrap(),
        Cas::Missing,
        "a deleted grant never comes back"
    );
    assert!(s.load_grant(&g.id).await.unwrap().is_none());
}

/// Conformance check `grants_by_did` (OAuth stores); panics if the store breaks the contract.
pub async fn grants_by_did<S: GrantStore>(s: &S) {
    let a2 = grant("did:plc:alice", 2_000);
    let a1 = grant("did:plc:alice", 1_000);
    let b = grant("did:plc:bob", 1_500);
    for g in [&a2, &a1, &b] {
        s.create_grant(g).await.unwrap();
    }
    let alice = Did::new("did:plc:alice").unwrap();
    let ids: Vec<GrantId> = s
        .list_grants_by_did(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, vec![a1.id.clone(), a2.id.clone()], "oldest first");
    assert_eq!(s.delete_grants_by_did(&alice).await.unwrap(), 2);
    assert!(s.list_grants_by_did(&alice).await.unwrap().is_empty());
    assert!(
        s.load_grant(&b.id).await.unwrap().is_some(),
        "other accounts untouched"
    );
}

/// Conformance check `concurrent_grant_updates_have_one_winner` (OAuth stores); panics if the store breaks the contract.
pub async fn concurrent_grant_updates_have_one_winner<S: GrantStore + Clone>(s: &S) {
    let g = grant("did:plc:alice", 1_000);
    s.create_grant(&g).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..16u8 {
        let s = s.clone();
        let mut next = g.clone();
        next.sealed = vec![n; 8];
        next.version = 2;
        tasks.push(tokio::spawn(async move {
            (n, s.update_grant(1, &next).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (n, Cas::Updated) => winners.push(n),
            (_, outcome) => assert_eq!(outcome, Cas::Conflict),
        }
    }
    assert_eq!(winners.len(), 1, "one compare-and-swap wins");
    let stored = s.load_grant(&g.id).await.unwrap().unwrap();
    assert_eq!(
        stored.sealed,
        vec![winners[0]; 8],
        "the winner's write is kept"
    );
    assert_eq!(stored.version, 2);
}

/// Conformance check `grant_updates_keep_the_did_index` (OAuth stores); panics if the store breaks the contract.
pub async fn grant_updates_keep_the_did_index<S: GrantStore>(s: &S) {
    let alice = Did::new("did:plc:alice").unwrap();
    let carol = Did::new("did:plc:carol").unwrap();
    let g = grant("did:plc:alice", 1_000);
    s.create_grant(&g).await.unwrap();
    let mut moved = g.clone();
    moved.did = carol.clone();
    moved.version = 2;
    assert_eq!(s.update_grant(1, &moved).await.unwrap(), Cas::Updated);
    assert!(s.list_grants_by_did(&alice).await.unwrap().is_empty());
    assert_eq!(
        s.list_grants_by_did(&carol).await.unwrap(),
        vec![moved.clone()]
    );
    assert_eq!(s.delete_grants_by_did(&alice).await.unwrap(), 0);
    assert!(s.load_grant(&g.id).await.unwrap().is_some());
    // Deleted by DID, a grant stays deleted: no update brings it back or re-indexes it.
    assert_eq!(s.delete_grants_by_did(&carol).await.unwrap(), 1);
    let mut again = moved.clone();
    again.version = 3;
    assert_eq!(s.update_grant(2, &again).await.unwrap(), Cas::Missing);
    assert!(s.load_grant(&g.id).await.unwrap().is_none());
    assert!(s.list_grants_by_did(&carol).await.unwrap().is_empty());
}

/// Conformance check `sealed_bytes_round_trip` (OAuth stores); panics if the store breaks the contract.
pub async fn sealed_bytes_round_trip<S: StateStore + GrantStore>(s: &S) {
    // Every byte value, including NUL and invalid UTF-8, and the empty value.
    let every: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    for (i, sealed) in [every.clone(), Vec::new()].into_iter().enumerate() {
        let mut st = state(&format!("bytes{i}"), 10_000);
        st.sealed = sealed.clone();
        s.put_state(&st).await.unwrap();
        let got = s.take_state(&st.key, t(0)).await.unwrap().unwrap();
        assert_eq!(got, st);

        let mut g = grant("did:plc:alice", 1_000 + i as i64);
        g.sealed = sealed.clone();
        s.create_grant(&g).await.unwrap();
        assert_eq!(s.load_grant(&g.id).await.unwrap().unwrap().sealed, sealed);
    }
    let listed = s
        .list_grants_by_did(&Did::new("did:plc:alice").unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].sealed, every);
    assert!(listed[1].sealed.is_empty());
}

/// Conformance check `abandoned_logins_are_deleted_after_expiry` (OAuth stores): 10,000
/// abandoned logins (states never taken, each as large as the biggest app state a login may
/// carry), then their expiry: the cleanup deletes every one of them and keeps the state of a
/// login still under way. Panics if the store breaks the contract.
pub async fn abandoned_logins_are_deleted_after_expiry<S: StateStore + Clone + 'static>(s: &S) {
    const FLOOD: usize = 10_000;
    let sealed = vec![7u8; 2048 + 200];
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let s = s.clone();
        let sealed = sealed.clone();
        tasks.push(tokio::spawn(async move {
            for i in (worker..FLOOD).step_by(16) {
                let st = StoredAuthState {
                    key: TokenHash::of(format!("flood-{i}").as_bytes()),
                    sealed: sealed.clone(),
                    expires_at: t(60_000),
                };
                s.put_state(&st).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    s.put_state(&state("live", 120_000)).await.unwrap();
    assert_eq!(s.delete_expired_states(t(59_999)).await.unwrap(), 0);
    assert_eq!(
        s.delete_expired_states(t(60_000)).await.unwrap(),
        FLOOD as u64
    );
    assert_eq!(s.delete_expired_states(t(60_000)).await.unwrap(), 0);
    for i in [0, 4_999, FLOOD - 1] {
        let key = TokenHash::of(format!("flood-{i}").as_bytes());
        assert!(s.take_state(&key, t(0)).await.unwrap().is_none(), "{i}");
    }
    assert!(
        s.take_state(&TokenHash::of(b"live"), t(60_000))
            .await
            .unwrap()
            .is_some()
    );
}

/// Conformance check `every_grant_is_listed_page_by_page` (OAuth stores): listing every
/// grant a page at a time finds each of them, and ends. Panics if the store breaks the
/// contract.
pub async fn every_grant_is_listed_page_by_page<S: GrantStore>(s: &S) {
    let mut made = std::collections::BTreeSet::new();
    for i in 0..25 {
        let did = if i % 2 == 0 {
            "did:plc:alice"
        } else {
            "did:plc:bob"
        };
        let g = grant(did, i);
        made.insert(g.id.clone());
        s.create_grant(&g).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = None;
    // A page may hold none of these grants: Redis's SCAN walks the whole keyspace, a few
    // hash buckets a call, and on a shared server the table can be large. The bound only
    // tells a listing that never ends from a long one.
    for _ in 0..100_000 {
        let page = s.list_grants(cursor.as_ref(), 7).await.unwrap();
        assert!(page.grants.len() <= 25);
        seen.extend(page.grants.into_iter().map(|g| g.id));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the listing ends");
    assert_eq!(seen, made);
}
