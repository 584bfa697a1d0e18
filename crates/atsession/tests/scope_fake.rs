//! Scopes against a small fake authorization server and PDS on 127.0.0.1, for what the
//! real PDS cannot be made to show: a refresh that narrows the granted scope (the stored
//! scope follows the token response). Also: the PDS's `ScopeMissingError` becomes a typed
//! error, the opt-in pre-check refuses without a request, and an undeclared scope is
//! refused before anything is sent.
//!
//! `cargo test -p atsession --features oauth --test scope_fake`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atsession::clock::{Clock, ManualClock, truncate_ms};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::ClientConfigError;
use atsession::oauth::DpopKey;
use atsession::oauth::{
    AuthorizeOptions, ClientAuth, ClientMetadata, GetterConfig, Grant, GrantError, OAuthClient,
    OAuthClientConfig, OAuthError, Refresh, SessionEvent, SessionGetter, TokenSet,
};
use atsession::secret::SecretString;
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantId, GrantStore, StateStore};
use atsession::syntax::Did;
use serde_json::json;
use tokio::net::TcpListener;

const DID: &str = "did:plc:alice0000000000000000000";
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
        let (status, resp) = self.route(&req.path, &req.body);
        fake_http::answer_json(&mut sock, status, "", &resp).await;
    }

    fn route(&self, path: &str, body: &[u8]) -> (&'static str, String) {
        let iss = &self.url;
        match path {
            "/.well-known/oauth-authorization-server" => {
                ("200 OK", fake_http::as_metadata(iss).to_string())
            }
            "/oauth/token" => {
                let n = {
                    let mut c = self.token_calls.lock().unwrap();
                    *c += 1;
                    *c
                };
                (
                    "200 OK",
                    json!({
                        "access_token": format!("access-{n}"),
                        "refresh_token": format!("refresh-{n}"),
                        "token_type": "DPoP",
                        "scope": *self.refresh_scope.lock().unwrap(),
                        "expires_in": 3600,
                        "sub": DID,
                    })
                    .to_string(),
                )
            }
            "/oauth/revoke" => ("200 OK", "{}".into()),
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

    fn pds_calls(&self) -> usize {
        self.pds_calls.lock().unwrap().len()
    }
}

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("test", [9; 32]).unwrap())
}

struct Setup {
    fake: Arc<Fake>,
    store: MemoryStore,
    client: OAuthClient<MemoryStore>,
    grant: GrantId,
}

/// A grant with the scope `WIDE` whose access token expires in `expires_in`.
async fn setup(expires_in: Duration) -> Setup {
    let fake = Fake::start().await;
    let clock = Arc::new(ManualClock::at_now());
    let store = MemoryStore::new();
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], WIDE).unwrap();
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
            scope: WIDE.into(),
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
        store,
        client,
        grant: data.grant_id,
    }
}

#[tokio::test]
async fn a_refresh_that_narrows_the_scope_is_what_gets_stored() {
    let s = setup(Duration::from_secs(3600)).await;
    let getter = SessionGetter::new(s.client.clone(), GetterConfig::default());
    let mut rx = getter.subscribe();
    let before = getter.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(before.token_set.scope, WIDE);

    let after = getter.get(&s.grant, Refresh::Force).await.unwrap();
    assert_eq!(*s.fake.token_calls.lock().unwrap(), 1);
    assert_eq!(
        after.token_set.scope, NARROW,
        "the scope of the token response"
    );
    // Stored, not only returned: a fresh getter over the same store reads the narrow scope.
    let fresh = SessionGetter::new(s.client.clone(), GetterConfig::default());
    let reread = fresh.get(&s.grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(reread.token_set.scope, NARROW);
    assert_eq!(
        s.store.load_grant(&s.grant).await.unwrap().unwrap().version,
        2
    );
    // The event says the scope changed, and from what.
    match rx.try_recv().unwrap() {
        SessionEvent::Updated(info) => {
            assert_eq!(info.scope, NARROW);
            assert_eq!(info.previous_scope.as_deref(), Some(WIDE));
            assert_eq!(info.version, 2);
        }
        other => panic!("unexpected {other:?}"),
    }

    // A second refresh that keeps the scope reports no change.
    let _ = getter.get(&s.grant, Refresh::Force).await.unwrap();
    match rx.try_recv().unwrap() {
        SessionEvent::Updated(info) => assert_eq!(info.previous_scope, None),
        other => panic!("unexpected {other:?}"),
    }

    // The server widens it again: the stored scope follows once more.
    *s.fake.refresh_scope.lock().unwrap() = WIDE.into();
    let again = getter.get(&s.grant, Refresh::Force).await.unwrap();
    assert_eq!(again.token_set.scope, WIDE);
    assert_eq!(
        fresh
            .get(&s.grant, Refresh::AcceptStale)
            .await
            .unwrap()
            .token_set
            .scope,
        WIDE
    );
}

#[tokio::test]
async fn scope_missing_from_the_pds_is_typed_and_the_pre_check_sends_nothing() {
    let s = setup(Duration::from_secs(3600)).await;
    *s.fake.refresh_scope.lock().unwrap() = NARROW.into();
    let getter = SessionGetter::new(s.client.clone(), GetterConfig::default());
    let session = getter.session(s.grant.clone());
    // Narrow the grant (a refresh), so that posts are outside it.
    getter.get(&s.grant, Refresh::Force).await.unwrap();
    let post = json!({"repo": DID, "collection": "app.bsky.feed.post", "record": {"text": "hi"}});

    // Without the pre-check: sent, and the PDS's 403 becomes a typed error.
    let e = session
        .xrpc_procedure::<_, serde_json::Value>("com.atproto.repo.createRecord", &post)
        .await
        .unwrap_err();
    match &e {
        GrantError::ScopeMissing { scope, message } => {
            assert_eq!(scope, "repo:app.bsky.feed.post?action=create");
            assert!(
                message
                    .as_deref()
                    .unwrap()
                    .starts_with("Missing required scope")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "the grant lacks the scope `repo:app.bsky.feed.post?action=create` (refused by the PDS)"
    );
    assert_eq!(s.fake.pds_calls(), 1);

    // With it: refused here, nothing sent.
    let checked = SessionGetter::new(s.client.clone(), GetterConfig::default().scope_check(true));
    let session = checked.session(s.grant.clone());
    let e = session
        .xrpc_procedure::<_, serde_json::Value>("com.atproto.repo.createRecord", &post)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GrantError::ScopeMissing { scope, message: None } if scope == "repo:app.bsky.feed.post?action=create"),
        "{e:?}"
    );
    assert_eq!(s.fake.pds_calls(), 1, "the pre-check sends nothing");
    // What the grant permits still goes through.
    let note = json!({"repo": DID, "collection": "com.example.note", "record": {"text": "hi"}});
    session
        .xrpc_procedure::<_, serde_json::Value>("com.atproto.repo.createRecord", &note)
        .await
        .unwrap();
    assert_eq!(s.fake.pds_calls(), 2);
    // applyWrites is judged by every write.
    let writes = json!({"repo": DID, "writes": [
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "com.example.note", "value": {}},
        {"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.feed.post", "rkey": "x"}
    ]});
    let e = session
        .xrpc_procedure::<_, serde_json::Value>("com.atproto.repo.applyWrites", &writes)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GrantError::ScopeMissing { scope, .. } if scope == "repo:app.bsky.feed.post?action=delete"),
        "{e:?}"
    );
    assert_eq!(s.fake.pds_calls(), 2);
}

#[tokio::test]
async fn an_undeclared_scope_is_refused_before_anything_is_sent() {
    let s = setup(Duration::from_secs(3600)).await;
    let requests = *s.fake.requests.lock().unwrap();
    let e = s
        .client
        .authorize(
            &s.fake.url,
            AuthorizeOptions {
                scope: Some("atproto repo:com.example.note repo:app.bsky.feed.like".into()),
                ..AuthorizeOptions::default()
            },
        )
        .await
        .unwrap_err();
    match e {
        OAuthError::Config(ClientConfigError::ScopeNotDeclared(s)) => {
            assert_eq!(s, "repo:app.bsky.feed.like");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(
            s.client
                .authorize(
                    &s.fake.url,
                    AuthorizeOptions {
                        scope: Some("atproto repo:app.bsky.*".into()),
                        ..AuthorizeOptions::default()
                    },
                )
                .await,
            Err(OAuthError::Config(ClientConfigError::InvalidScope(_)))
        ),
        "an invalid scope is refused too"
    );
    assert_eq!(
        *s.fake.requests.lock().unwrap(),
        requests,
        "nothing was sent"
    );
    assert_eq!(
        s.store
            .delete_expired_states(time::OffsetDateTime::now_utc() + Duration::from_secs(86_400))
            .await
            .unwrap(),
        0,
        "no pending state was stored"
    );
    // An upgrade asking for an undeclared scope is refused the same way.
    let e = s
        .client
        .authorize_upgrade(
            &s.grant,
            "repo:app.bsky.feed.like",
            AuthorizeOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OAuthError::Config(ClientConfigError::ScopeNotDeclared(x)) if x == "repo:app.bsky.feed.like"),
        "{e:?}"
    );
    assert_eq!(*s.fake.requests.lock().unwrap(), requests);
    // A declared one goes out (the fake has no PAR endpoint, so it fails there: after
    // sending).
    let _ = s
        .client
        .authorize(&s.fake.url, AuthorizeOptions::default())
        .await;
    assert!(*s.fake.requests.lock().unwrap() > requests);
}
