//! The app-session suite: the [`SessionStore`] contract, checked through a
//! [`SessionManager`] on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{
    CreateOptions, CredentialSource, SessionConfig, SessionError, SessionId, SessionManager,
    StoredSession,
};
use crate::clock::{Clock, ManualClock};
use crate::secret::{Token, TokenHash};
use crate::store::{Cas, SessionStore};
use crate::syntax::Did;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use time::OffsetDateTime;

const ALICE: &str = "did:plc:alice00000000000000000000";
const BOB: &str = "did:plc:bob0000000000000000000000";

fn did(s: &str) -> Did {
    Did::new(s).unwrap()
}

/// A manager over `store` on a clock that stands still until moved.
fn manager<S: SessionStore>(
    store: S,
    config: SessionConfig,
) -> (SessionManager<S>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_now());
    let m = SessionManager::with_config(store, config)
        .unwrap()
        .with_clock(clock.clone() as Arc<dyn Clock>);
    (m, clock)
}

fn with_access() -> SessionConfig {
    SessionConfig::default().access_tokens(Duration::from_secs(15 * 60))
}

/// How many sessions the store holds, expired or not (deletes them all: call last).
pub async fn drain_count<S: SessionStore>(store: &S) -> u64 {
    let far = OffsetDateTime::now_utc() + Duration::from_secs(1000 * 24 * 3600);
    store.delete_expired(far).await.unwrap()
}

/// Conformance check `create_and_lookup` (sessions); panics if the store breaks the contract.
pub async fn create_and_lookup<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let new = m
        .create(ALICE, "alice.test", json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(new.session.version, 1);
    assert_eq!(new.session.did.as_str(), ALICE);
    let by_token = m.load(new.token.expose()).await.unwrap();
    assert_eq!(by_token, new.session);
    let access = new.access_token.as_ref().unwrap();
    let by_access = m.load_by_access_token(access.expose()).await.unwrap();
    assert_eq!(by_access, new.session);
    assert_eq!(by_access.data["n"], 1);
    // The access token is not a session token, and the reverse.
    assert!(matches!(
        m.load(access.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        m.load_by_access_token(new.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    let loaded = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert_eq!(loaded.id, new.session.id);
    assert!(
        m.store()
            .load(&SessionId::generate())
            .await
            .unwrap()
            .is_none()
    );
}

/// Conformance check `fresh_tokens_per_login` (sessions); panics if the store breaks the contract.
pub async fn fresh_tokens_per_login<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let a = m.create(ALICE, "alice.test", ()).await.unwrap();
    let b = m.create(ALICE, "alice.test", ()).await.unwrap();
    assert_ne!(a.token, b.token);
    assert_ne!(a.access_token, b.access_token);
    assert_ne!(a.session.id, b.session.id);
    assert_eq!(m.load(a.token.expose()).await.unwrap().id, a.session.id);
    assert_eq!(m.load(b.token.expose()).await.unwrap().id, b.session.id);
}

/// Conformance check `only_hashes_are_stored` (sessions); panics if the store breaks the contract.
pub async fn only_hashes_are_stored<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert_eq!(rec.token_hash, new.token.hash());
    assert_eq!(
        rec.access_token_hash,
        new.access_token.as_ref().map(Token::hash)
    );
    let raw = new.token.expose();
    let raw_access = new.access_token.as_ref().unwrap().expose();
    for shown in [
        format!("{rec:?}"),
        format!("{:?}", new),
        format!("{:?}", new.session),
    ] {
        assert!(
            !shown.contains(raw) && !shown.contains(raw_access),
            "{shown}"
        );
    }
}

/// Conformance check `bad_tokens_change_nothing` (sessions); panics if the store breaks the contract.
pub async fn bad_tokens_change_nothing<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let junk = "x".repeat(1 << 20);
    for bad in [
        "",
        "short",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        junk.as_str(),
    ] {
        assert!(
            matches!(m.load(bad).await, Err(SessionError::MalformedToken(_))),
            "{}",
            bad.len()
        );
        assert!(matches!(
            m.load_by_access_token(bad).await,
            Err(SessionError::MalformedToken(_))
        ));
        assert!(matches!(
            m.refresh(bad).await,
            Err(SessionError::MalformedToken(_))
        ));
        assert!(matches!(
            m.delete_by_token(bad).await,
            Err(SessionError::MalformedToken(_))
        ));
    }
    let truncated = &new.token.expose()[..42];
    assert!(matches!(
        m.load(truncated).await,
        Err(SessionError::MalformedToken(_))
    ));
    let unknown = Token::generate();
    assert!(matches!(
        m.load(unknown.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        m.refresh(unknown.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(!m.delete_by_token(unknown.expose()).await.unwrap());
    let after = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert_eq!(after.version, 1);
    assert_eq!(drain_count(m.store()).await, 1);
}

/// Conformance check `bad_identifiers_change_nothing` (sessions); panics if the store breaks the contract.
pub async fn bad_identifiers_change_nothing<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, SessionConfig::default());
    for (d, h) in [
        ("alice", "alice.test"),
        ("did:PLC:x", "alice.test"),
        (ALICE, "alice"),
        (ALICE, "-a.test"),
        ("", ""),
    ] {
        let r = m.create(d, h, ()).await;
        assert!(
            matches!(
                r,
                Err(SessionError::InvalidDid(_) | SessionError::InvalidHandle(_))
            ),
            "{d} {h}: {r:?}"
        );
    }
    assert_eq!(drain_count(m.store()).await, 0);
}

/// Conformance check `update_and_conflict` (sessions); panics if the store breaks the contract.
pub async fn update_and_conflict<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, SessionConfig::default());
    let new = m
        .create(ALICE, "alice.test", json!({"v": 0}))
        .await
        .unwrap();
    let s1 = m.update(&new.session, json!({"v": 1})).await.unwrap();
    assert_eq!(s1.version, 2);
    assert_eq!(s1.data["v"], 1);
    // The stale copy loses.
    assert!(matches!(
        m.update(&new.session, json!({"v": 99})).await,
        Err(SessionError::Conflict)
    ));
    let now = m.load(new.token.expose()).await.unwrap();
    assert_eq!(now.data["v"], 1);
    assert_eq!(now.version, 2);
    // Direct CAS on the store.
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    let mut next = (*rec).clone();
    next.version = 3;
    assert_eq!(m.store().update(1, &next).await.unwrap(), Cas::Conflict);
    assert_eq!(m.store().update(2, &next).await.unwrap(), Cas::Updated);
    assert_eq!(m.store().update(2, &next).await.unwrap(), Cas::Conflict);
}

/// Conformance check `idle_expiry` (sessions); panics if the store breaks the contract.
pub async fn idle_expiry<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, SessionConfig::default());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    clock.advance(Duration::from_secs(7 * 24 * 3600 - 1));
    m.load(new.token.expose()).await.unwrap();
    // That use slid the window: another almost-7 days is fine.
    clock.advance(Duration::from_secs(7 * 24 * 3600 - 1));
    m.load(new.token.expose()).await.unwrap();
    clock.advance(Duration::from_secs(7 * 24 * 3600));
    assert!(matches!(
        m.load(new.token.expose()).await,
        Err(SessionError::Expired)
    ));
    // Found expired, it is gone for good.
    assert!(matches!(
        m.load(new.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(m.store().load(&new.session.id).await.unwrap().is_none());
}

/// Conformance check `absolute_expiry` (sessions); panics if the store breaks the contract.
pub async fn absolute_expiry<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, SessionConfig::default());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    for _ in 0..29 {
        clock.advance(Duration::from_secs(24 * 3600));
        m.load(new.token.expose()).await.unwrap();
    }
    // Used every day, but 30 days is the end.
    let s = m.load(new.token.expose()).await.unwrap();
    assert_eq!(s.idle_expires_at, s.absolute_expires_at);
    clock.advance(Duration::from_secs(24 * 3600));
    assert!(matches!(
        m.load(new.token.expose()).await,
        Err(SessionError::Expired)
    ));
}

/// Conformance check `sliding_touch_interval` (sessions); panics if the store breaks the contract.
pub async fn sliding_touch_interval<S: SessionStore + Clone>(store: S) {
    let config = SessionConfig::default().touch_interval(Duration::from_secs(60));
    let (m, clock) = manager(store, config);
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&format!("__Host-atsession={}", new.token.expose())).unwrap(),
    );
    clock.advance(Duration::from_secs(30));
    let l = m.load_from_headers(&headers).await.unwrap();
    assert!(l.set_cookie.is_none(), "no write within the touch interval");
    assert_eq!(l.session.last_seen_at, new.session.last_seen_at);
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert_eq!(rec.last_seen_at, new.session.last_seen_at);
    clock.advance(Duration::from_secs(31));
    let l = m.load_from_headers(&headers).await.unwrap();
    assert!(
        l.set_cookie.is_some(),
        "the slid window is sent back as a cookie"
    );
    assert_eq!(l.session.last_seen_at, clock.now());
    assert_eq!(
        l.session.idle_expires_at,
        clock.now() + Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(l.session.version, 1, "a touch does not change the version");
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert_eq!(rec.last_seen_at, clock.now());
    // A touch must not make the app's next update conflict.
    m.update(&new.session, json!({"ok": true})).await.unwrap();
}

/// Conformance check `refresh_rotates_access_token` (sessions); panics if the store breaks the contract.
pub async fn refresh_rotates_access_token<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, with_access());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let old = new.access_token.clone().unwrap();
    clock.advance(Duration::from_secs(120));
    let r = m.refresh(new.token.expose()).await.unwrap();
    let fresh = r.access_token.unwrap();
    assert_ne!(fresh, old);
    assert_eq!(r.session.version, 2);
    assert_eq!(r.session.last_seen_at, clock.now());
    assert!(matches!(
        m.load_by_access_token(old.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert_eq!(
        m.load_by_access_token(fresh.expose()).await.unwrap().id,
        new.session.id
    );
    // The session token is kept.
    assert_eq!(m.load(new.token.expose()).await.unwrap().id, new.session.id);
}

/// Conformance check `access_token_expiry` (sessions); panics if the store breaks the contract.
pub async fn access_token_expiry<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, with_access());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let access = new.access_token.clone().unwrap();
    clock.advance(Duration::from_secs(15 * 60));
    assert!(matches!(
        m.load_by_access_token(access.expose()).await,
        Err(SessionError::AccessTokenExpired)
    ));
    // The session itself is fine; a refresh gives a working token.
    let r = m.refresh(new.token.expose()).await.unwrap();
    m.load_by_access_token(r.access_token.unwrap().expose())
        .await
        .unwrap();
}

/// Conformance check `delete_logs_out` (sessions); panics if the store breaks the contract.
pub async fn delete_logs_out<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let a = m.create(ALICE, "alice.test", ()).await.unwrap();
    let b = m.create(ALICE, "alice.test", ()).await.unwrap();
    assert!(m.delete_by_token(a.token.expose()).await.unwrap());
    assert!(matches!(
        m.load(a.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        m.load_by_access_token(a.access_token.as_ref().unwrap().expose())
            .await,
        Err(SessionError::NotFound)
    ));
    assert!(!m.delete(&a.session.id).await.unwrap());
    assert!(m.delete(&b.session.id).await.unwrap());
    assert!(matches!(
        m.load(b.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(m.clear_cookie().to_str().unwrap().contains("Max-Age=0"));
}

/// Conformance check `delete_all_for_did` (sessions); panics if the store breaks the contract.
pub async fn delete_all_for_did<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, SessionConfig::default());
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(m.create(ALICE, "alice.test", ()).await.unwrap());
    }
    let bob = m.create(BOB, "bob.test", ()).await.unwrap();
    assert_eq!(m.delete_all(&did(ALICE)).await.unwrap(), 3);
    for a in &alice {
        assert!(matches!(
            m.load(a.token.expose()).await,
            Err(SessionError::NotFound)
        ));
    }
    assert!(m.list(&did(ALICE)).await.unwrap().is_empty());
    assert_eq!(m.load(bob.token.expose()).await.unwrap().did.as_str(), BOB);
    assert_eq!(m.delete_all(&did(ALICE)).await.unwrap(), 0);
}

/// Conformance check `list_by_did` (sessions); panics if the store breaks the contract.
pub async fn list_by_did<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, SessionConfig::default());
    let first = m.create(ALICE, "alice.test", json!(1)).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let second = m.create(ALICE, "alice.test", json!(2)).await.unwrap();
    m.create(BOB, "bob.test", ()).await.unwrap();
    let list = m.list(&did(ALICE)).await.unwrap();
    assert_eq!(
        list.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&first.session.id, &second.session.id]
    );
    // Expired sessions are not listed by the manager.
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert!(m.list(&did(ALICE)).await.unwrap().is_empty());
    assert_eq!(m.store().list_by_did(&did(ALICE)).await.unwrap().len(), 2);
}

/// Conformance check `cleanup_deletes_only_expired` (sessions); panics if the store breaks the contract.
pub async fn cleanup_deletes_only_expired<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, SessionConfig::default());
    let old = m.create(ALICE, "alice.test", ()).await.unwrap();
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    let young = m.create(BOB, "bob.test", ()).await.unwrap();
    assert_eq!(m.delete_expired().await.unwrap(), 0);
    clock.advance(Duration::from_secs(4 * 24 * 3600));
    assert_eq!(m.delete_expired().await.unwrap(), 1);
    assert!(m.store().load(&old.session.id).await.unwrap().is_none());
    assert!(m.store().load(&young.session.id).await.unwrap().is_some());
    assert_eq!(m.delete_expired().await.unwrap(), 0);
}

/// Conformance check `expired_sessions_name_their_grants` (sessions); panics if the store
/// breaks the contract.
pub async fn expired_sessions_name_their_grants<S: SessionStore + Clone>(store: S) {
    use crate::store::oauth::GrantId;
    let (m, clock) = manager(store, SessionConfig::default());
    let with = |g: &GrantId| CreateOptions::new().grant_id(g.clone());
    let (g1, g2, g3) = (
        GrantId::generate(),
        GrantId::generate(),
        GrantId::generate(),
    );
    let old = m
        .create_with(ALICE, "alice.test", (), with(&g1))
        .await
        .unwrap();
    let old2 = m.create_with(BOB, "bob.test", (), with(&g2)).await.unwrap();
    let bare = m.create(ALICE, "alice.test", ()).await.unwrap(); // no grant
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    let young = m
        .create_with(ALICE, "alice.test", (), with(&g3))
        .await
        .unwrap();
    let now = clock.now();
    assert!(
        m.store()
            .expired_with_grants(now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(Duration::from_secs(4 * 24 * 3600));
    let now = clock.now();
    let mut found = m.store().expired_with_grants(now, 10).await.unwrap();
    found.sort();
    let mut expected = vec![(old.session.id.clone(), g1), (old2.session.id.clone(), g2)];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(
        m.store().expired_with_grants(now, 1).await.unwrap().len(),
        1
    );
    // It only reads.
    assert!(m.store().load(&old.session.id).await.unwrap().is_some());
    // Found expired, a session is refused; without a grant it is deleted then, with one it
    // is kept for the cleanup that signs the grant out.
    for new in [&old, &bare] {
        assert!(matches!(
            m.load(new.token.expose()).await,
            Err(SessionError::Expired)
        ));
    }
    assert!(m.store().load(&old.session.id).await.unwrap().is_some());
    assert!(m.store().load(&bare.session.id).await.unwrap().is_none());
    assert_eq!(m.delete_expired().await.unwrap(), 2);
    assert!(
        m.store()
            .expired_with_grants(now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(m.store().load(&young.session.id).await.unwrap().is_some());
}

/// Conformance check `cleanup_in_batches` (sessions); panics if the store breaks the contract.
pub async fn cleanup_in_batches<S: SessionStore + Clone>(store: S) {
    let (m, clock) = manager(store, SessionConfig::default());
    let n = 1100;
    for i in 0..n {
        m.create(ALICE, "alice.test", json!(i)).await.unwrap();
    }
    let keep = m.create(BOB, "bob.test", ()).await.unwrap();
    m.store()
        .update(1, &{
            let mut r = (*m.store().load(&keep.session.id).await.unwrap().unwrap()).clone();
            r.idle_expires_at = r.absolute_expires_at;
            r
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    assert_eq!(m.delete_expired().await.unwrap(), n);
    assert_eq!(drain_count(m.store()).await, 1);
}

/// Conformance check `duplicate_create_fails` (sessions); panics if the store breaks the contract.
pub async fn duplicate_create_fails<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, SessionConfig::default());
    let new = m.create(ALICE, "alice.test", json!("first")).await.unwrap();
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    let mut dup = (*rec).clone();
    dup.data = json!("second").into();
    assert!(m.store().create(&dup).await.is_err(), "same id");
    let mut dup_token = (*rec).clone();
    dup_token.id = SessionId::generate();
    assert!(
        m.store().create(&dup_token).await.is_err(),
        "same token hash"
    );
    assert_eq!(
        m.store().load(&rec.id).await.unwrap().unwrap().data,
        json!("first").into()
    );
}

/// Conformance check `cas_never_inserts` (sessions); panics if the store breaks the contract.
pub async fn cas_never_inserts<S: SessionStore + Clone>(store: S) {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let ghost = StoredSession {
        id: SessionId::generate(),
        token_hash: TokenHash::of(b"ghost"),
        access_token_hash: None,
        access_expires_at: None,
        did: did(ALICE),
        handle: "alice.test".parse().unwrap(),
        data: json!(null).into(),
        grant_id: None,
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + Duration::from_secs(3600),
        absolute_expires_at: now + Duration::from_secs(7200),
        version: 2,
    };
    assert_eq!(store.update(1, &ghost).await.unwrap(), Cas::Missing);
    assert!(store.load(&ghost.id).await.unwrap().is_none());
    assert!(
        store
            .load_by_token(&ghost.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_by_did(&ghost.did).await.unwrap().is_empty());
}

/// Conformance check `concurrent_updates_lose_nothing` (sessions); panics if the store breaks the contract.
pub async fn concurrent_updates_lose_nothing<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, SessionConfig::default());
    let new = m
        .create(ALICE, "alice.test", json!({"count": 0}))
        .await
        .unwrap();
    let token = new.token.expose().to_owned();
    let (tasks, per_task) = (8u32, 10u32);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let m = m.clone();
        let token = token.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..per_task {
                loop {
                    let s = m.load(&token).await.unwrap();
                    let n = s.data["count"].as_u64().unwrap();
                    match m.update(&s, json!({"count": n + 1})).await {
                        Ok(_) => break,
                        Err(SessionError::Conflict) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let s = m.load(&token).await.unwrap();
    assert_eq!(s.data["count"], tasks * per_task);
    assert_eq!(s.version, 1 + u64::from(tasks * per_task));
}

/// Conformance check `no_resurrection_after_delete` (sessions); panics if the store breaks the contract.
pub async fn no_resurrection_after_delete<S: SessionStore + Clone>(store: S) {
    let config = SessionConfig::default().touch_interval(Duration::from_secs(1));
    let (m, clock) = manager(store, config);
    let new = m
        .create(ALICE, "alice.test", json!({"a": 1}))
        .await
        .unwrap();
    let held = m.load(new.token.expose()).await.unwrap();
    let rec = m.store().load(&new.session.id).await.unwrap().unwrap();
    assert!(m.delete(&new.session.id).await.unwrap());
    // An update from a copy read before the delete.
    assert!(matches!(
        m.update(&held, json!({"a": 2})).await,
        Err(SessionError::NotFound)
    ));
    // A touch that had read the record before the delete.
    let mut touched = (*rec).clone();
    touched.last_seen_at += Duration::from_secs(5);
    assert_eq!(
        m.store().update(rec.version, &touched).await.unwrap(),
        Cas::Missing
    );
    // A refresh and a load after the delete.
    clock.advance(Duration::from_secs(5));
    assert!(matches!(
        m.refresh(new.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(matches!(
        m.load(new.token.expose()).await,
        Err(SessionError::NotFound)
    ));
    assert!(m.store().load(&new.session.id).await.unwrap().is_none());
    assert_eq!(drain_count(m.store()).await, 0);
}

/// Conformance check `no_resurrection_under_races` (sessions); panics if the store breaks the contract.
pub async fn no_resurrection_under_races<S: SessionStore + Clone>(store: S) {
    let config = SessionConfig::default()
        .touch_interval(Duration::ZERO)
        .access_tokens(Duration::from_secs(60));
    let (m, clock) = manager(store, config);
    for round in 0..20 {
        let new = m
            .create(ALICE, "alice.test", json!({"round": round}))
            .await
            .unwrap();
        let token = new.token.expose().to_owned();
        clock.advance(Duration::from_millis(1));
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let m = m.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        let r = match i {
                            0 => m.load(&token).await.map(drop),
                            1 => match m.load(&token).await {
                                Ok(s) => m.update(&s, json!({"w": 1})).await.map(drop),
                                Err(e) => Err(e),
                            },
                            _ => m.refresh(&token).await.map(drop),
                        };
                        match r {
                            Ok(()) | Err(SessionError::NotFound | SessionError::Conflict) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let deleter = {
            let m = m.clone();
            let id = new.session.id.clone();
            tokio::spawn(async move { m.delete(&id).await.unwrap() })
        };
        for w in writers {
            w.await.unwrap();
        }
        assert!(deleter.await.unwrap());
        assert!(
            m.store().load(&new.session.id).await.unwrap().is_none(),
            "round {round}"
        );
        assert!(matches!(m.load(&token).await, Err(SessionError::NotFound)));
    }
    assert_eq!(drain_count(m.store()).await, 0);
}

/// Conformance check `headers_cookie_and_bearer` (sessions); panics if the store breaks the contract.
pub async fn headers_cookie_and_bearer<S: SessionStore + Clone>(store: S) {
    let (m, _) = manager(store, with_access());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!(
            "x=1; __Host-atsession={}; y=2",
            new.token.expose()
        ))
        .unwrap(),
    );
    let l = m.load_from_headers(&h).await.unwrap();
    assert_eq!(l.source, CredentialSource::Cookie);
    assert_eq!(l.session.id, new.session.id);
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!(
            "Bearer {}",
            new.access_token.as_ref().unwrap().expose()
        ))
        .unwrap(),
    );
    let l = m.load_from_headers(&h).await.unwrap();
    assert_eq!(l.source, CredentialSource::Bearer);
    assert_eq!(l.session.id, new.session.id);
    // With access tokens on, a session token is not accepted as Bearer.
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", new.token.expose())).unwrap(),
    );
    assert!(matches!(
        m.load_from_headers(&h).await,
        Err(SessionError::NotFound)
    ));
    let request = http::Request::builder()
        .header(COOKIE, "__Host-atsession=garbage")
        .body(())
        .unwrap();
    assert!(matches!(
        m.load_from_request(&request).await,
        Err(SessionError::MalformedToken(_))
    ));
    assert!(matches!(
        m.load_from_headers(&HeaderMap::new()).await,
        Err(SessionError::NoCredentials)
    ));
}

/// Conformance check `sessions_load_with_their_grants` (stores of sessions and grants,
/// [`SessionGrantStore`](crate::store::oauth::SessionGrantStore)); panics if the store
/// breaks the contract.
pub async fn sessions_load_with_their_grants<S>(store: S)
where
    S: crate::store::oauth::SessionGrantStore + Clone,
{
    use crate::store::oauth::{GrantId, StoredGrant};
    let (m, _) = manager(store.clone(), with_access());
    let at = m.now();
    let mut grant = StoredGrant {
        id: GrantId::generate(),
        did: did(ALICE),
        issuer: "https://pds.example".into(),
        sealed: vec![7, 8, 9],
        created_at: at,
        updated_at: at,
        version: 1,
    };
    store.create_grant(&grant).await.unwrap();
    let with = |g: &GrantId| CreateOptions::new().grant_id(g.clone());
    let signed_in = m
        .create_with(ALICE, "alice.test", (), with(&grant.id))
        .await
        .unwrap();
    let bare = m.create(ALICE, "alice.test", ()).await.unwrap();
    let orphan = m
        .create_with(ALICE, "alice.test", (), with(&GrantId::generate()))
        .await
        .unwrap();

    let by_token = |t: &Token| {
        let (store, hash) = (store.clone(), t.hash());
        async move { store.load_by_token_with_grant(&hash).await.unwrap() }
    };
    let (s, g) = by_token(&signed_in.token).await.expect("the session");
    assert_eq!(s.id, signed_in.session.id);
    assert_eq!(g.as_ref(), Some(&grant), "its grant, as stored");
    let access = signed_in.access_token.as_ref().unwrap().hash();
    let (s, g) = store
        .load_by_access_token_with_grant(&access)
        .await
        .unwrap()
        .expect("the session, by its access token");
    assert_eq!(s.id, signed_in.session.id);
    assert_eq!(g.as_ref(), Some(&grant));
    let (s, g) = by_token(&bare.token)
        .await
        .expect("a session without a grant");
    assert_eq!((s.id.clone(), g), (bare.session.id.clone(), None));
    let (s, g) = by_token(&orphan.token)
        .await
        .expect("a session whose grant is gone");
    assert_eq!((s.id.clone(), g), (orphan.session.id.clone(), None));
    assert!(
        by_token(&Token::generate()).await.is_none(),
        "no such session"
    );
    assert!(
        store
            .load_by_access_token_with_grant(&signed_in.token.hash())
            .await
            .unwrap()
            .is_none(),
        "a session token is not an access token"
    );

    // Through the manager: the cookie and the Bearer access token find both.
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("__Host-atsession={}", signed_in.token.expose())).unwrap(),
    );
    let (l, g) = m.load_with_grant_from_headers(&h).await.unwrap();
    assert_eq!(l.source, CredentialSource::Cookie);
    assert_eq!(l.session.id, signed_in.session.id);
    assert_eq!(g.as_ref(), Some(&grant));
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!(
            "Bearer {}",
            signed_in.access_token.as_ref().unwrap().expose()
        ))
        .unwrap(),
    );
    let (l, g) = m.load_with_grant_from_headers(&h).await.unwrap();
    assert_eq!(l.source, CredentialSource::Bearer);
    assert_eq!(g.as_ref(), Some(&grant));
    assert!(matches!(
        m.load_with_grant_from_headers(&HeaderMap::new()).await,
        Err(SessionError::NoCredentials)
    ));

    // A newer grant is what is read; a deleted one is gone.
    let before = grant.version;
    grant.version += 1;
    grant.sealed = vec![10, 11];
    assert_eq!(
        store.update_grant(before, &grant).await.unwrap(),
        Cas::Updated
    );
    let (_, g) = by_token(&signed_in.token).await.unwrap();
    assert_eq!(g.as_ref(), Some(&grant), "the updated grant");
    assert!(store.delete_grant(&grant.id).await.unwrap());
    let (s, g) = by_token(&signed_in.token).await.unwrap();
    assert_eq!((s.id.clone(), g), (signed_in.session.id.clone(), None));
}
