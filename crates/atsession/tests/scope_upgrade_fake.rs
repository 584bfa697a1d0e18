//! Scope upgrade in place against a fake authorization server, PLC directory and PDS on
//! 127.0.0.1, for what the real PDS cannot be made to show: which tokens are revoked when
//! an upgrade comes back for another account (the new ones, and the grant is untouched),
//! when the grant was signed out meanwhile (the new ones, and nothing comes back), and
//! when it succeeds (the old ones).
//!
//! `cargo test -p atsession --features oauth --test scope_upgrade_fake`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atsession::clock::truncate_ms;
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::DpopKey;
use atsession::oauth::{
    AuthorizeOptions, CallbackError, CallbackParams, ClientAuth, ClientMetadata, GetterConfig,
    Grant, OAuthClient, OAuthClientConfig, OAuthError, Refresh, SessionEvent, SessionGetter,
    TokenSet,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::secret::SecretString;
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantId, GrantStore, StateStore, StoredAuthState, StoredGrant};
use atsession::store::{Cas, StoreFuture};
use atsession::syntax::Did;
use serde_json::json;
use tokio::net::TcpListener;

const DID: &str = "did:plc:alice0000000000000000000";
const MALLORY: &str = "did:plc:mallory000000000000000";
const WIDE: &str = "atproto repo:app.bsky.feed.post repo:com.example.note";
const NARROW: &str = "atproto repo:com.example.note";

struct Fake {
    url: String,
    /// The scope the token endpoint grants on refresh.
    refresh_scope: Mutex<String>,
    token_calls: Mutex<usize>,
    /// Every request path the PDS side received.
    pds_calls: Mutex<Vec<String>>,
    /// Every request at all.
    requests: Mutex<usize>,
    /// The `sub` of the authorization-code exchange.
    code_sub: Mutex<String>,
    /// The `state` of the last pushed authorization request.
    par_state: Mutex<Option<String>>,
    /// Every token revoked.
    revoked: Mutex<Vec<String>>,
    /// How long a refresh takes to answer.
    refresh_delay: Mutex<Duration>,
}

impl Fake {
    async fn start() -> Arc<Fake> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let fake = Arc::new(Fake {
            url,
            refresh_scope: Mutex::new(NARROW.into()),
            token_calls: Mutex::new(0),
            pds_calls: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
            code_sub: Mutex::new(DID.into()),
            par_state: Mutex::new(None),
            revoked: Mutex::new(Vec::new()),
            refresh_delay: Mutex::new(Duration::ZERO),
        });
        let f = Arc::clone(&fake);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let f = Arc::clone(&f);
                tokio::spawn(async move { f.serve(sock).await });
            }
        });
        fake
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) {
        let Some(req) = fake_http::read_request(&mut sock).await else {
            return;
        };
        *self.requests.lock().unwrap() += 1;
        if req.path == "/oauth/token" && req.body.windows(13).any(|w| w == b"refresh_token") {
            let delay = *self.refresh_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
        }
        let (status, resp) = self.route(&req.path, &req.body);
        fake_http::answer_json(&mut sock, status, "", &resp).await;
    }

    fn route(&self, path: &str, body: &[u8]) -> (&'static str, String) {
        let iss = &self.url;
        let form: HashMap<String, String> = atsession::oauth::url::form_urlencoded::parse(body)
            .into_owned()
            .collect();
        match path {
            "/.well-known/oauth-protected-resource" => (
                "200 OK",
                json!({"resource": iss, "authorization_servers": [iss]}).to_string(),
            ),
            "/oauth/par" => {
                *self.par_state.lock().unwrap() = form.get("state").cloned();
                (
                    "201 Created",
                    json!({"request_uri": "urn:ietf:params:oauth:request_uri:x", "expires_in": 60})
                        .to_string(),
                )
            }
            p if p.starts_with("/did:plc:") => {
                let did = &p[1..];
                (
                    "200 OK",
                    json!({
                        "id": did,
                        "alsoKnownAs": ["at://alice.test"],
                        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": iss}]
                    })
                    .to_string(),
                )
            }
            "/.well-known/oauth-authorization-server" => {
                ("200 OK", fake_http::as_metadata(iss).to_string())
            }
            "/oauth/token"
                if form
                    .get("refresh_token")
                    .is_some_and(|r| self.revoked.lock().unwrap().contains(r)) =>
            {
                (
                    "400 Bad Request",
                    json!({"error": "invalid_grant", "error_description": "revoked"}).to_string(),
                )
            }
            "/oauth/token" => {
                let n = {
                    let mut c = self.token_calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                let code = form.get("grant_type").map(String::as_str) == Some("authorization_code");
                let sub = if code {
                    self.code_sub.lock().unwrap().clone()
                } else {
                    DID.to_owned()
                };
                (
                    "200 OK",
                    json!({
                        "access_token": format!("access-{n}"),
                        "refresh_token": format!("refresh-{n}"),
                        "token_type": "DPoP",
                        "scope": *self.refresh_scope.lock().unwrap(),
                        "expires_in": 3600,
                        "sub": sub,
                    })
                    .to_string(),
                )
            }
            "/oauth/revoke" => {
                self.revoked
                    .lock()
                    .unwrap()
                    .push(form.get("token").cloned().unwrap_or_default());
                ("200 OK", "{}".into())
            }
            p if p.starts_with("/xrpc/") => {
                self.pds_calls.lock().unwrap().push(p.to_owned());
                let input: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                // As the official PDS answers a write outside the grant.
                if p == "/xrpc/com.atproto.repo.createRecord"
                    && input["collection"] == "app.bsky.feed.post"
                {
                    (
                        "403 Forbidden",
                        json!({
                            "error": "ScopeMissingError",
                            "message": "Missing required scope \"repo:app.bsky.feed.post?action=create\""
                        })
                        .to_string(),
                    )
                } else {
                    (
                        "200 OK",
                        json!({"uri": "at://x/y/z", "cid": "c"}).to_string(),
                    )
                }
            }
            _ => ("404 Not Found", "{}".into()),
        }
    }
}

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("test", [5; 32]).unwrap())
}

struct Setup<S = MemoryStore> {
    fake: Arc<Fake>,
    store: S,
    getter: SessionGetter<S>,
    grant: GrantId,
    old_key: String,
}

/// A grant of `DID` with the scope `NARROW` and the tokens `access-0` / `refresh-0`; the
/// token endpoint grants `WIDE`.
async fn setup() -> Setup {
    setup_with(MemoryStore::new()).await
}

async fn setup_with<S: StateStore + GrantStore + Clone>(store: S) -> Setup<S> {
    let fake = Fake::start().await;
    *fake.refresh_scope.lock().unwrap() = WIDE.into();
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], WIDE).unwrap();
    let identity = IdentityConfig {
        plc_url: atsession::oauth::Url::parse(&fake.url).unwrap(),
        handle_resolver: HandleResolver::Xrpc(atsession::oauth::Url::parse(&fake.url).unwrap()),
        cache_ttl: Duration::ZERO,
    };
    let client = OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring())
            .dev_mode(true)
            .identity(identity),
        store.clone(),
    )
    .unwrap();
    let now = truncate_ms(time::OffsetDateTime::now_utc());
    let key = DpopKey::generate();
    let data = Grant {
        grant_id: GrantId::generate(),
        token_set: TokenSet {
            iss: fake.url.clone(),
            sub: Did::new(DID).unwrap(),
            aud: format!("{}/", fake.url),
            scope: NARROW.into(),
            access_token: SecretString::new("access-0"),
            refresh_token: Some(SecretString::new("refresh-0")),
            expires_at: Some(now + Duration::from_secs(3600)),
        },
        dpop_key: key.clone(),
        auth: ClientAuth::None,
        created_at: now,
    };
    store
        .create_grant(&data.seal(&keyring(), now, 1).unwrap())
        .await
        .unwrap();
    Setup {
        fake,
        store,
        getter: SessionGetter::new(client, GetterConfig::default()),
        grant: data.grant_id,
        old_key: key.thumbprint(),
    }
}

/// Starts the upgrade and returns the callback the server would send back.
async fn upgrade<S: StateStore + GrantStore + Clone>(s: &Setup<S>) -> CallbackParams {
    let url = s
        .getter
        .client()
        .authorize_upgrade(
            &s.grant,
            "repo:app.bsky.feed.post",
            AuthorizeOptions::default(),
        )
        .await
        .expect("authorize_upgrade");
    assert!(url.as_str().contains("request_uri="));
    let state = s
        .fake
        .par_state
        .lock()
        .unwrap()
        .clone()
        .expect("PAR was sent");
    CallbackParams {
        state: Some(state),
        iss: Some(s.fake.url.clone()),
        code: Some("code-1".into()),
        ..CallbackParams::default()
    }
}

fn revoked<S>(s: &Setup<S>) -> Vec<String> {
    s.fake.revoked.lock().unwrap().clone()
}

#[tokio::test]
async fn a_successful_upgrade_revokes_the_old_tokens_and_keeps_the_grant_id() {
    let s = setup().await;
    let mut rx = s.getter.subscribe();
    // The opened-session cache holds the old row.
    let old = s.getter.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    let params = upgrade(&s).await;
    let done = s.getter.callback(&params).await.expect("upgrade");
    assert_eq!(done.grant.grant_id, s.grant);
    assert_eq!(done.grant.token_set.scope, WIDE);
    let up = done.upgrade.unwrap();
    assert_eq!(up.previous_scope, NARROW);
    assert_eq!(up.version, 2);
    assert_eq!(
        revoked(&s),
        ["access-0", "refresh-0"],
        "the old tokens, and only them"
    );
    // The getter sees the new row, not its cached old one.
    let now = s.getter.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(now.token_set.scope, WIDE);
    assert_eq!(now.token_set.access_token.expose(), "access-1");
    assert_ne!(
        now.dpop_key.thumbprint(),
        s.old_key,
        "the new tokens' DPoP key"
    );
    assert_eq!(old.dpop_key.thumbprint(), s.old_key);
    assert_eq!(now.created_at, old.created_at);
    match rx.try_recv().unwrap() {
        SessionEvent::Updated(info) => {
            assert_eq!(info.previous_scope.as_deref(), Some(NARROW));
            assert_eq!(info.version, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The state is one-time.
    assert!(matches!(
        s.getter.callback(&params).await,
        Err(OAuthError::Callback(CallbackError::UnknownState))
    ));
}

#[tokio::test]
async fn an_upgrade_for_another_account_revokes_the_new_tokens_and_touches_nothing() {
    let s = setup().await;
    let mut rx = s.getter.subscribe();
    let before = s.store.load_grant(&s.grant).await.unwrap().unwrap();
    *s.fake.code_sub.lock().unwrap() = MALLORY.into();
    let params = upgrade(&s).await;
    let e = s.getter.callback(&params).await.unwrap_err();
    assert!(
        matches!(&e, OAuthError::Callback(CallbackError::UpgradeAccountMismatch { expected, found })
            if expected.as_str() == DID && found.as_str() == MALLORY),
        "{e:?}"
    );
    assert_eq!(
        revoked(&s),
        ["access-1", "refresh-1"],
        "the new tokens, not the grant's"
    );
    assert_eq!(s.store.load_grant(&s.grant).await.unwrap().unwrap(), before);
    assert!(
        s.store
            .list_grants_by_did(&Did::new(MALLORY).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(rx.try_recv().is_err(), "no event");
}

#[tokio::test]
async fn an_upgrade_of_a_grant_signed_out_meanwhile_brings_nothing_back() {
    let s = setup().await;
    let params = upgrade(&s).await;
    assert!(s.store.delete_grant(&s.grant).await.unwrap());
    let e = s.getter.callback(&params).await.unwrap_err();
    assert!(
        matches!(&e, OAuthError::UnknownGrant(g) if *g == s.grant),
        "{e:?}"
    );
    assert_eq!(revoked(&s), ["access-1", "refresh-1"]);
    assert!(s.store.load_grant(&s.grant).await.unwrap().is_none());
    assert!(
        s.store
            .list_grants_by_did(&Did::new(DID).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_upgrade_after_a_refresh_uses_the_newest_row() {
    let s = setup().await;
    let params = upgrade(&s).await;
    // A refresh stores version 2 (tokens access-1/refresh-1) between the two steps.
    let refreshed = s.getter.get(&s.grant, Refresh::Force).await.unwrap();
    assert_eq!(refreshed.token_set.access_token.expose(), "access-1");
    let done = s.getter.callback(&params).await.expect("upgrade");
    assert_eq!(done.upgrade.unwrap().version, 3);
    // The refreshed tokens are the ones revoked: they were the grant's when it was replaced.
    assert_eq!(revoked(&s), ["access-1", "refresh-1"]);
    assert_eq!(
        s.getter
            .get(&s.grant, Refresh::AcceptStale)
            .await
            .unwrap()
            .token_set
            .access_token
            .expose(),
        "access-2"
    );
}

/// A store in which another writer updates a grant just before the first update of it
/// lands (as a refresh in another process would), so that update meets a conflict.
#[derive(Clone, Default)]
struct RacyStore {
    inner: MemoryStore,
    raced: Arc<Mutex<usize>>,
}

impl StateStore for RacyStore {
    fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        self.inner.put_state(state)
    }
    fn take_state<'a>(
        &'a self,
        key: &'a atsession::secret::TokenHash,
        now: time::OffsetDateTime,
    ) -> StoreFuture<'a, Option<StoredAuthState>> {
        self.inner.take_state(key, now)
    }
    fn delete_expired_states<'a>(&'a self, now: time::OffsetDateTime) -> StoreFuture<'a, u64> {
        self.inner.delete_expired_states(now)
    }
}

impl GrantStore for RacyStore {
    fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
        self.inner.create_grant(grant)
    }
    fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        self.inner.load_grant(id)
    }
    fn update_grant<'a>(&'a self, expected: u64, grant: &'a StoredGrant) -> StoreFuture<'a, Cas> {
        StoreFuture::new(async move {
            let first = {
                let mut n = self.raced.lock().unwrap();
                *n += 1;
                *n == 1
            };
            if first && let Some(mut current) = self.inner.load_grant(&grant.id).await? {
                let v = current.version;
                current.version += 1;
                assert_eq!(self.inner.update_grant(v, &current).await?, Cas::Updated);
            }
            self.inner.update_grant(expected, grant).await
        })
    }
    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        self.inner.delete_grant(id)
    }
    fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        self.inner.list_grants_by_did(did)
    }
    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        self.inner.delete_grants_by_did(did)
    }
    fn list_grants<'a>(
        &'a self,
        cursor: Option<&'a atsession::store::oauth::GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, atsession::store::oauth::GrantPage> {
        self.inner.list_grants(cursor, limit)
    }
}

#[tokio::test]
async fn an_upgrade_that_meets_a_concurrent_update_retries_its_compare_and_swap() {
    let store = RacyStore::default();
    let s = setup_with(store.clone()).await;
    let params = upgrade(&s).await;
    let done = s.getter.callback(&params).await.expect("upgrade");
    // The first swap met the other writer's version 2; the retry stored version 3.
    assert_eq!(*store.raced.lock().unwrap(), 2);
    assert_eq!(done.upgrade.unwrap().version, 3);
    let stored = store.load_grant(&s.grant).await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    let now = s.getter.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(now.token_set.access_token.expose(), "access-1");
    assert_eq!(now.token_set.scope, WIDE);
    assert_eq!(revoked(&s), ["access-0", "refresh-0"]);
}

#[tokio::test]
async fn a_refresh_refused_because_an_upgrade_revoked_its_token_keeps_the_upgraded_grant() {
    // With a lock (no re-check delay), as in a multi-process deployment.
    let store = MemoryStore::new();
    let mut s = setup_with(store.clone()).await;
    s.getter = SessionGetter::new(
        s.getter.client().clone(),
        GetterConfig::default().lock(atsession::lock::MemoryLock::new()),
    );
    let params = upgrade(&s).await;
    *s.fake.refresh_delay.lock().unwrap() = Duration::from_millis(1500);
    // A refresh with refresh-0 is in flight…
    let getter = s.getter.clone();
    let grant = s.grant.clone();
    let refresh = tokio::spawn(async move { getter.get(&grant, Refresh::Force).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …when the upgrade stores version 2 and revokes refresh-0.
    let done = s.getter.callback(&params).await.expect("upgrade");
    assert_eq!(done.upgrade.unwrap().version, 2);
    assert!(revoked(&s).contains(&"refresh-0".to_owned()));
    // The refresh is refused (invalid_grant), and the getter returns the upgraded grant
    // instead of deleting it.
    let got = refresh.await.unwrap().expect("the upgraded grant");
    assert_eq!(got.token_set.scope, WIDE);
    assert_eq!(got.token_set.access_token.expose(), "access-1");
    assert_eq!(
        store.load_grant(&s.grant).await.unwrap().unwrap().version,
        2
    );
}
