//! The OAuth storage contract (`StateStore`, `OAuthSessionStore`), run against every
//! backend by one macro.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use atsession::clock::from_millis;
use atsession::secret::TokenHash;
use atsession::store::Cas;
use atsession::store::oauth::{
    GrantId, OAuthSessionStore, StateStore, StoredAuthState, StoredGrant,
};
use atsession::syntax::Did;
use time::OffsetDateTime;

fn t(ms: i64) -> OffsetDateTime {
    from_millis(ms)
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

pub async fn grants_crud_and_cas<S: OAuthSessionStore>(s: &S) {
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

pub async fn grants_by_did<S: OAuthSessionStore>(s: &S) {
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

macro_rules! oauth_store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn states_are_taken_once() {
                let (_guard, store) = $make;
                super::states_are_taken_once(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn expired_states_are_not_returned() {
                let (_guard, store) = $make;
                super::expired_states_are_not_returned(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_takes_yield_one_winner() {
                let (_guard, store) = $make;
                super::concurrent_takes_yield_one_winner(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn grants_crud_and_cas() {
                let (_guard, store) = $make;
                super::grants_crud_and_cas(&store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn grants_by_did() {
                let (_guard, store) = $make;
                super::grants_by_did(&store).await;
            }
        }
    };
}

oauth_store_suite!(memory, ((), atsession::store::MemoryStore::new()));

#[cfg(feature = "sqlite")]
oauth_store_suite!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    let store = atsession::store::sqlite::SqliteStore::open(dir.path().join("oauth.db"))
        .await
        .unwrap();
    (dir, store)
});
