//! The session layer against a small fake authorization server and PDS on 127.0.0.1, for
//! the faults the real PDS cannot be made to show: a 500 during refresh, `invalid_grant`,
//! a token endpoint that hangs, a refresh answering for another `sub`, a revocation that
//! fails, and a store that cannot save. Also: single flight, the lock contract, and the
//! `401 invalid_token` retry.
//!
//! `cargo test -p atsession --features oauth --test oauth_session_fake`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atsession::clock::{Clock, ManualClock, truncate_ms};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::lock::{Lock, LockError, MemoryLock};
use atsession::oauth::DpopKey;
use atsession::oauth::{
    ClientAuth, ClientMetadata, DeleteCause, GetterConfig, Grant, GrantError, OAuthClient,
    OAuthClientConfig, Refresh, SessionEvent, SessionGetter, TokenSet,
};
use atsession::secret::SecretString;
use atsession::store::oauth::{GrantId, GrantStore};
use atsession::store::{Cas, MemoryStore, StoreError, StoreFuture};
use atsession::syntax::Did;
use tokio::net::TcpListener;

const DID: &str = "did:plc:alice0000000000000000000";

/// How the fake token endpoint answers a refresh.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// New tokens `access-<n>` / `refresh-<n>`, after `delay`.
    Ok,
    ServerError,
    InvalidGrant,
    Hang,
    OtherSub,
}

#[derive(Default)]
struct Log {
    token_calls: usize,
    revoked: Vec<String>,
    pds_calls: Vec<String>,
    /// (path, the `nonce` claim of the request's DPoP proof).
    proof_nonces: Vec<(String, Option<String>)>,
}

/// The `nonce` claim of a DPoP proof.
fn proof_nonce(proof: &str) -> Option<String> {
    use base64::Engine as _;
    let claims = proof.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    v.get("nonce")?.as_str().map(str::to_owned)
}

struct Fake {
    url: String,
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    revoke_fails: Mutex<bool>,
    /// The access token the PDS accepts.
    valid_access: Mutex<String>,
    log: Mutex<Log>,
    /// Send `DPoP-Nonce: as-nonce` from the token endpoint and `rs-nonce` from the PDS.
    send_nonces: Mutex<bool>,
}

impl Fake {
    async fn start() -> Arc<Fake> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let fake = Arc::new(Fake {
            url,
            mode: Mutex::new(Mode::Ok),
            delay: Mutex::new(Duration::ZERO),
            revoke_fails: Mutex::new(false),
            valid_access: Mutex::new("access-0".into()),
            log: Mutex::new(Log::default()),
            send_nonces: Mutex::new(false),
        });
        let f = Arc::clone(&fake);
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let f = Arc::clone(&f);
                tokio::spawn(async move { f.serve(sock).await });
            }
        });
        fake
    }

    fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn token_calls(&self) -> usize {
        self.log.lock().unwrap().token_calls
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let Some(req) = fake_http::read_request(&mut sock).await else {
            return;
        };
        let form = req.form();
        let path_only = req.path_only().to_owned();
        self.log.lock().unwrap().proof_nonces.push((
            path_only.clone(),
            req.headers.get("dpop").and_then(|p| proof_nonce(p)),
        ));
        let (status, mut extra, resp) = self.route(&req.path, &req.headers, &form).await;
        if *self.send_nonces.lock().unwrap() {
            if path_only == "/oauth/token" {
                extra.push_str("dpop-nonce: as-nonce\r\n");
            } else if path_only.starts_with("/xrpc/") {
                extra.push_str("dpop-nonce: rs-nonce\r\n");
            }
        }
        fake_http::answer_json(&mut sock, status, &extra, &resp).await;
    }

    async fn route(
        &self,
        path: &str,
        headers: &HashMap<String, String>,
        form: &HashMap<String, String>,
    ) -> (&'static str, String, String) {
        let iss = &self.url;
        match path {
            "/.well-known/oauth-authorization-server" => (
                "200 OK",
                String::new(),
                fake_http::as_metadata(iss).to_string(),
            ),
            "/oauth/token" => {
                let n = {
                    let mut log = self.log.lock().unwrap();
                    log.token_calls += 1;
                    log.token_calls
                };
                assert!(headers.contains_key("dpop"), "a DPoP proof is sent");
                let mode = *self.mode.lock().unwrap();
                let delay = *self.delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                match mode {
                    Mode::Ok | Mode::OtherSub => {
                        let sub = if mode == Mode::OtherSub {
                            "did:plc:mallory000000000000000"
                        } else {
                            DID
                        };
                        assert!(form.get("refresh_token").is_some());
                        *self.valid_access.lock().unwrap() = format!("access-{n}");
                        (
                            "200 OK",
                            String::new(),
                            serde_json::json!({
                                "access_token": format!("access-{n}"),
                                "refresh_token": format!("refresh-{n}"),
                                "token_type": "DPoP",
                                "scope": "atproto",
                                "expires_in": 3600,
                                "sub": sub,
                            })
                            .to_string(),
                        )
                    }
                    Mode::ServerError => (
                        "500 Internal Server Error",
                        String::new(),
                        "<html>oops</html>".into(),
                    ),
                    Mode::InvalidGrant => (
                        "400 Bad Request",
                        String::new(),
                        r#"{"error":"invalid_grant","error_description":"refresh token replayed"}"#
                            .into(),
                    ),
                    Mode::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        ("500 Internal Server Error", String::new(), String::new())
                    }
                }
            }
            "/oauth/revoke" => {
                self.log
                    .lock()
                    .unwrap()
                    .revoked
                    .push(form.get("token").cloned().unwrap_or_default());
                if *self.revoke_fails.lock().unwrap() {
                    ("503 Service Unavailable", String::new(), "{}".into())
                } else {
                    ("200 OK", String::new(), "{}".into())
                }
            }
            p if p.starts_with("/xrpc/") => {
                let auth = headers.get("authorization").cloned().unwrap_or_default();
                self.log.lock().unwrap().pds_calls.push(auth.clone());
                assert!(headers.contains_key("dpop"), "a DPoP proof is sent");
                let valid = format!("DPoP {}", self.valid_access.lock().unwrap());
                if auth == valid {
                    (
                        "200 OK",
                        String::new(),
                        serde_json::json!({"did": DID, "handle": "alice.test"}).to_string(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        "www-authenticate: DPoP error=\"invalid_token\", error_description=\"expired\"\r\n".into(),
                        r#"{"error":"InvalidToken","message":"expired"}"#.into(),
                    )
                }
            }
            _ => ("404 Not Found", String::new(), "{}".into()),
        }
    }
}

struct Setup<S> {
    fake: Arc<Fake>,
    getter: SessionGetter<S>,
    grant: GrantId,
    clock: Arc<ManualClock>,
}

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("test", [7; 32]).unwrap())
}

/// A grant whose access token expires in `expires_in`, stored in `store`.
async fn setup_with<S: atsession::store::oauth::StateStore + GrantStore + Clone>(
    store: S,
    config: GetterConfig,
    expires_in: Duration,
) -> Setup<S> {
    let fake = Fake::start().await;
    let clock = Arc::new(ManualClock::at_now());
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], "atproto").unwrap();
    let client = OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring())
            .dev_mode(true)
            .clock(clock.clone()),
        store.clone(),
    )
    .unwrap();
    let now = truncate_ms(clock.now());
    let data = Grant {
        grant_id: GrantId::generate(),
        token_set: TokenSet {
            iss: fake.url.clone(),
            sub: Did::new(DID).unwrap(),
            aud: format!("{}/", fake.url),
            scope: "atproto".into(),
            access_token: SecretString::new("access-0"),
            refresh_token: Some(SecretString::new("refresh-0")),
            expires_at: Some(now + expires_in),
        },
        dpop_key: DpopKey::generate(),
        auth: ClientAuth::None,
        created_at: now,
    };
    store
        .create_grant(&data.seal(&keyring(), now, 1).unwrap())
        .await
        .unwrap();
    Setup {
        fake,
        getter: SessionGetter::new(client, config),
        grant: data.grant_id,
        clock,
    }
}

fn quick() -> GetterConfig {
    GetterConfig {
        refresh_timeout: Duration::from_secs(3),
        recheck_delay: Duration::from_millis(50),
        lock_timeout: Duration::from_millis(300),
        ..GetterConfig::default()
    }
}

async fn setup_stale(config: GetterConfig) -> Setup<MemoryStore> {
    // Expires in 5 s: inside the 10 s margin, so stale.
    setup_with(MemoryStore::new(), config, Duration::from_secs(5)).await
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<SessionEvent>) -> Vec<SessionEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

#[tokio::test]
async fn fresh_grant_is_not_refreshed_and_stale_one_is() {
    let s = setup_with(MemoryStore::new(), quick(), Duration::from_secs(3600)).await;
    let mut rx = s.getter.subscribe();
    let d = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-0");
    assert_eq!(s.fake.token_calls(), 0);
    // 59 minutes 55 s later: within the margin, refreshed.
    s.clock.advance(Duration::from_secs(3595));
    let d = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-1");
    assert_eq!(
        d.token_set.refresh_token.as_ref().unwrap().expose(),
        "refresh-1"
    );
    assert_eq!(s.fake.token_calls(), 1);
    // Accept stale never refreshes; force always does.
    s.clock.advance(Duration::from_secs(7200));
    let d = s.getter.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-1");
    let d = s.getter.get(&s.grant, Refresh::Force).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-2");
    let events = drain(&mut rx);
    assert_eq!(events.len(), 2);
    match &events[1] {
        SessionEvent::Updated(info) => {
            assert_eq!(info.version, 3);
            assert_eq!(info.grant_id, s.grant);
            assert!(info.has_refresh_token);
            assert!(!format!("{info:?}").contains("access-2"));
        }
        e => panic!("unexpected {e:?}"),
    }
    let stored = s
        .getter
        .client()
        .store()
        .load_grant(&s.grant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_refresh() {
    let s = setup_stale(quick().refresh_timeout(Duration::from_secs(10))).await;
    *s.fake.delay.lock().unwrap() = Duration::from_millis(150);
    let mut rx = s.getter.subscribe();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let g = s.getter.clone();
        let id = s.grant.clone();
        tasks.push(tokio::spawn(
            async move { g.get(&id, Refresh::IfStale).await },
        ));
    }
    for t in tasks {
        let d = t.await.unwrap().unwrap();
        assert_eq!(d.token_set.access_token.expose(), "access-1");
    }
    assert_eq!(s.fake.token_calls(), 1, "one refresh for 100 callers");
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn server_error_keeps_the_grant() {
    let s = setup_stale(quick()).await;
    let mut rx = s.getter.subscribe();
    s.fake.set_mode(Mode::ServerError);
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    assert!(matches!(e, GrantError::Refresh(_)), "{e:?}");
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_some()
    );
    assert!(drain(&mut rx).is_empty());
    // It recovers once the server does.
    s.fake.set_mode(Mode::Ok);
    let d = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-2");
}

#[tokio::test]
async fn invalid_grant_deletes_the_grant() {
    let s = setup_stale(quick()).await;
    let mut rx = s.getter.subscribe();
    s.fake.set_mode(Mode::InvalidGrant);
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    match &e {
        GrantError::Deleted {
            grant_id, cause, ..
        } => {
            assert_eq!(grant_id, &s.grant);
            assert_eq!(
                cause,
                &DeleteCause::RefreshRefused {
                    error: "invalid_grant".into()
                }
            );
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_none()
    );
    let events = drain(&mut rx);
    assert_eq!(
        events,
        vec![SessionEvent::Deleted {
            grant_id: s.grant.clone(),
            did: Did::new(DID).unwrap(),
            cause: DeleteCause::RefreshRefused {
                error: "invalid_grant".into()
            },
        }]
    );
    // Gone for good.
    let e = s
        .getter
        .get(&s.grant, Refresh::AcceptStale)
        .await
        .unwrap_err();
    assert!(matches!(e, GrantError::NotFound(_)));
}

#[tokio::test]
async fn invalid_grant_after_a_refresh_elsewhere_uses_its_tokens() {
    // No lock: another process refreshed first; our refresh token is refused, and the
    // re-read finds their tokens.
    let s = setup_stale(GetterConfig {
        recheck_delay: Duration::from_millis(300),
        ..quick()
    })
    .await;
    s.fake.set_mode(Mode::InvalidGrant);
    let store = s.getter.client().store().clone();
    let grant = s.grant.clone();
    let clock = s.clock.clone();
    let other = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let g = store.load_grant(&grant).await.unwrap().unwrap();
        let mut d = Grant::open(&g, &keyring()).unwrap();
        d.token_set.access_token = SecretString::new("access-elsewhere");
        d.token_set.expires_at = Some(truncate_ms(clock.now()) + Duration::from_secs(3600));
        let next = d.seal(&keyring(), truncate_ms(clock.now()), 2).unwrap();
        assert_eq!(store.update_grant(1, &next).await.unwrap(), Cas::Updated);
    });
    let d = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap();
    other.await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-elsewhere");
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_hanging_token_endpoint_times_out_and_keeps_the_grant() {
    let s = setup_stale(quick().refresh_timeout(Duration::from_millis(800))).await;
    s.fake.set_mode(Mode::Hang);
    let start = std::time::Instant::now();
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    assert!(matches!(e, GrantError::Timeout(_)), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn another_sub_is_refused_the_grant_deleted_and_the_new_tokens_revoked() {
    let s = setup_stale(quick()).await;
    let mut rx = s.getter.subscribe();
    s.fake.set_mode(Mode::OtherSub);
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    assert!(
        matches!(
            &e,
            GrantError::Deleted {
                cause: DeleteCause::SubjectChanged,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.fake.log.lock().unwrap().revoked,
        vec!["access-1".to_owned()]
    );
    assert!(matches!(
        drain(&mut rx).as_slice(),
        [SessionEvent::Deleted {
            cause: DeleteCause::SubjectChanged,
            ..
        }]
    ));
}

#[tokio::test]
async fn a_refresh_never_runs_without_the_lock() {
    let locks = MemoryLock::new();
    let s = setup_stale(quick().lock(locks.clone())).await;
    let held = locks
        .acquire(
            &atsession::oauth::refresh_lock_key(&s.grant),
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    assert!(
        matches!(e, GrantError::Lock(LockError::Timeout { .. })),
        "{e:?}"
    );
    assert_eq!(s.fake.token_calls(), 0);
    held.release().await.unwrap();
    let d = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap();
    assert_eq!(d.token_set.access_token.expose(), "access-1");
    assert_eq!(s.fake.token_calls(), 1);
}

#[tokio::test]
async fn invalid_token_at_the_pds_refreshes_once_and_retries() {
    // Fresh by our clock, but the PDS no longer takes the token.
    let s = setup_with(MemoryStore::new(), quick(), Duration::from_secs(3600)).await;
    *s.fake.valid_access.lock().unwrap() = "something-else".into();
    let session = s.getter.session(s.grant.clone());
    let v: serde_json::Value = session
        .xrpc_query("com.atproto.server.getSession", &[])
        .await
        .unwrap();
    assert_eq!(v["did"], DID);
    assert_eq!(s.fake.token_calls(), 1);
    let calls = s.fake.log.lock().unwrap().pds_calls.clone();
    assert_eq!(
        calls,
        vec!["DPoP access-0".to_owned(), "DPoP access-1".to_owned()]
    );
    // An XRPC error is typed.
    *s.fake.valid_access.lock().unwrap() = "nothing".into();
    s.fake.set_mode(Mode::ServerError);
    let e = session
        .xrpc_query::<serde_json::Value>("com.atproto.server.getSession", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, GrantError::Refresh(_)), "{e:?}");
    let info = session.token_info(Refresh::AcceptStale).await.unwrap();
    assert_eq!(info.version, 2);
}

#[tokio::test]
async fn the_authorization_server_and_the_pds_keep_their_own_nonces() {
    // One origin is both, as the official PDS is; each side's nonce goes back to it only.
    let s = setup_stale(quick()).await;
    *s.fake.send_nonces.lock().unwrap() = true;
    let session = s.getter.session(s.grant.clone());
    for _ in 0..2 {
        let _: serde_json::Value = session
            .xrpc_query("com.atproto.server.getSession", &[])
            .await
            .unwrap();
    }
    s.getter.get(&s.grant, Refresh::Force).await.unwrap();
    let _: serde_json::Value = session
        .xrpc_query("com.atproto.server.getSession", &[])
        .await
        .unwrap();
    let log = s.fake.log.lock().unwrap().proof_nonces.clone();
    let token: Vec<_> = log.iter().filter(|(p, _)| p == "/oauth/token").collect();
    let pds: Vec<_> = log
        .iter()
        .filter(|(p, _)| p.starts_with("/xrpc/"))
        .collect();
    assert_eq!(token.len(), 2, "{log:?}");
    assert_eq!(token[1].1.as_deref(), Some("as-nonce"), "{log:?}");
    assert!(pds.len() >= 3, "{log:?}");
    assert!(
        pds.iter()
            .skip(1)
            .all(|(_, n)| n.as_deref() == Some("rs-nonce")),
        "every PDS call after the first carries the PDS's nonce: {log:?}"
    );
    assert!(
        token.iter().all(|(_, n)| n.as_deref() != Some("rs-nonce")),
        "the token endpoint never gets the PDS's nonce: {log:?}"
    );
}

#[tokio::test]
async fn sign_out_deletes_even_when_revoking_fails() {
    let s = setup_with(MemoryStore::new(), quick(), Duration::from_secs(3600)).await;
    let mut rx = s.getter.subscribe();
    *s.fake.revoke_fails.lock().unwrap() = true;
    let session = s.getter.session(s.grant.clone());
    let e = session.sign_out().await.unwrap_err();
    assert!(matches!(e, GrantError::OAuth(_)), "{e:?}");
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.fake.log.lock().unwrap().revoked,
        vec!["access-0".to_owned(), "refresh-0".to_owned()]
    );
    assert!(matches!(
        drain(&mut rx).as_slice(),
        [SessionEvent::Deleted {
            cause: DeleteCause::SignedOut,
            ..
        }]
    ));
    assert!(!session.sign_out().await.unwrap());
}

/// A store whose grant updates fail.
#[derive(Clone, Default)]
struct FailingUpdates(MemoryStore);

impl atsession::store::oauth::StateStore for FailingUpdates {
    fn put_state<'a>(
        &'a self,
        state: &'a atsession::store::oauth::StoredAuthState,
    ) -> StoreFuture<'a, ()> {
        self.0.put_state(state)
    }
    fn take_state<'a>(
        &'a self,
        key: &'a atsession::secret::TokenHash,
        now: time::OffsetDateTime,
    ) -> StoreFuture<'a, Option<atsession::store::oauth::StoredAuthState>> {
        self.0.take_state(key, now)
    }
    fn delete_expired_states<'a>(&'a self, now: time::OffsetDateTime) -> StoreFuture<'a, u64> {
        self.0.delete_expired_states(now)
    }
}

impl GrantStore for FailingUpdates {
    fn create_grant<'a>(
        &'a self,
        grant: &'a atsession::store::oauth::StoredGrant,
    ) -> StoreFuture<'a, ()> {
        self.0.create_grant(grant)
    }
    fn load_grant<'a>(
        &'a self,
        id: &'a GrantId,
    ) -> StoreFuture<'a, Option<atsession::store::oauth::StoredGrant>> {
        self.0.load_grant(id)
    }
    fn update_grant<'a>(
        &'a self,
        _expected_version: u64,
        _grant: &'a atsession::store::oauth::StoredGrant,
    ) -> StoreFuture<'a, Cas> {
        StoreFuture::ready(Err(StoreError::backend(
            "test",
            "update_grant",
            "disk full",
        )))
    }
    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        self.0.delete_grant(id)
    }
    fn list_grants_by_did<'a>(
        &'a self,
        did: &'a Did,
    ) -> StoreFuture<'a, Vec<atsession::store::oauth::StoredGrant>> {
        self.0.list_grants_by_did(did)
    }
    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        self.0.delete_grants_by_did(did)
    }
    fn list_grants<'a>(
        &'a self,
        cursor: Option<&'a atsession::store::oauth::GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, atsession::store::oauth::GrantPage> {
        self.0.list_grants(cursor, limit)
    }
}

#[tokio::test]
async fn tokens_that_cannot_be_saved_are_revoked() {
    let s = setup_with(FailingUpdates::default(), quick(), Duration::from_secs(5)).await;
    let mut rx = s.getter.subscribe();
    let e = s.getter.get(&s.grant, Refresh::IfStale).await.unwrap_err();
    assert!(matches!(e, GrantError::SaveFailed(_)), "{e:?}");
    assert_eq!(
        s.fake.log.lock().unwrap().revoked,
        vec!["access-1".to_owned(), "refresh-1".to_owned()]
    );
    assert!(
        s.getter
            .client()
            .store()
            .load_grant(&s.grant)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        drain(&mut rx).as_slice(),
        [SessionEvent::Deleted {
            cause: DeleteCause::SaveFailed,
            ..
        }]
    ));
}
