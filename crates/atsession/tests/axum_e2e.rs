//! The web layer against the official PDS: the `axum_app` example end to end (login →
//! profile page read from the PDS → logout → the PDS refuses the tokens; a callback replayed
//! in a second cookie jar creates nothing), then the layer's own promises: login CSRF,
//! JSON answers, required scopes, the slid cookie, and `Deleted` events for every sign-out.
//!
//! Needs the peer: see `support/pds.rs` (`ATSESSION_E2E_PDS`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;
#[allow(unused_imports)]
mod support;

#[path = "support/example_app.rs"]
mod example_app;
use example_app::{GrantProbe, Jar, callback_of, location, log_out};

#[path = "../examples/axum_app.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use atsession::app::{CookieConfig, SessionConfig, SessionManager};
use atsession::axum::{
    AtprotoAuth, AtprotoSession, RequireScope, RequiredScope, Session, WebConfig,
};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::{ClientMetadata, DeleteCause, OAuthClient, OAuthClientConfig, SessionEvent};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use axum::Router;
use axum::routing::get;
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};

fn identity(peer: &pds::Peer) -> IdentityConfig {
    IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(60),
    }
}

/// Serves `app` on a loopback port; returns its base URL.
async fn serve(listener: tokio::net::TcpListener, app: Router) -> String {
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn example_app_login_profile_logout() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let did = Did::new(alice.did.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("app.db").display());
    let key = AtRestKey::generate("k1").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = example::app(&db, port, key.clone(), identity(&peer), true)
        .await
        .unwrap();
    let base = serve(listener, app).await;
    let http = peer.http();
    let store = SqliteStore::connect(&db).await.unwrap();

    // Signed out: the home page offers the login form.
    let mut browser = Jar::default();
    let r = browser.get(http, &format!("{base}/")).await;
    assert!(r.text().await.unwrap().contains("Log in"));

    // Login: to the PDS and back.
    let r = browser
        .get(
            http,
            &format!("{base}/oauth/login?identifier=alice.test&redirect_to=/profile"),
        )
        .await;
    assert_eq!(r.status(), 303);
    let redirect = peer
        .sign_in_and_consent(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let callback = format!("{base}{}", callback_of(&redirect));
    let r = browser.get(http, &callback).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(location(&r), "/profile");
    assert!(browser.0.contains_key("atsession"), "session cookie set");
    assert!(
        browser.0.contains_key("atsession-login"),
        "the binding cookie stays for other logins of this browser (it expires on its own)"
    );

    // The same callback replayed in another browser creates nothing.
    let mut other = Jar::default();
    let r = other.get(http, &callback).await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/?error="), "{}", location(&r));
    assert!(!other.0.contains_key("atsession"));
    assert_eq!(store.list_grants_by_did(&did).await.unwrap().len(), 1);

    // The profile page, read from the PDS with the user's tokens.
    let r = browser.get(http, &format!("{base}/profile")).await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("alice.test") && page.contains(&alice.did),
        "{page}"
    );
    let home = browser
        .get(http, &format!("{base}/"))
        .await
        .text()
        .await
        .unwrap();
    assert!(home.contains("Signed in as alice.test"), "{home}");

    // Logout: the grant is revoked at the PDS and deleted, the session ends.
    let probe = GrantProbe::of(&store, &did, key, identity(&peer)).await;
    log_out(&mut browser, http, &base, &store, &did, &probe).await;
}

struct Generic;
impl RequiredScope for Generic {
    const SCOPE: &'static str = "transition:generic";
}
struct Email;
impl RequiredScope for Email {
    const SCOPE: &'static str = "transition:email";
}

async fn whoami(session: Option<Session>) -> String {
    session.map_or_else(|| "nobody".to_owned(), |s| s.did.to_string())
}

async fn generic(RequireScope(user, _): RequireScope<Generic>) -> String {
    user.info.sub.to_string()
}

async fn email(RequireScope(user, _): RequireScope<Email>) -> String {
    user.info.sub.to_string()
}

async fn user(user: AtprotoSession) -> String {
    user.info.scope
}

/// An app on the web layer, with the routes above, on a memory store.
async fn layer_app(peer: &pds::Peer) -> (String, AtprotoAuth) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let metadata = ClientMetadata::loopback(
        &["http://127.0.0.1/oauth/callback"],
        "atproto transition:generic",
    )
    .unwrap();
    let keyring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    let config = SessionConfig::default()
        .cookie(CookieConfig::insecure_for_development())
        .touch_interval(Duration::ZERO);
    let auth = AtprotoAuth::build(
        atsession::store::open("memory:").await.unwrap(),
        config,
        OAuthClientConfig::new(metadata, keyring)
            .dev_mode(true)
            .identity(identity(peer)),
        WebConfig::default().redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback")),
    )
    .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/generic", get(generic))
        .route("/email", get(email))
        .route("/user", get(user))
        .merge(auth.router())
        .layer(auth.layer())
        .with_state(auth.clone());
    (serve(listener, app).await, auth)
}

/// The next `Deleted` event (refreshes may come first: `Updated`).
async fn next_deleted(events: &mut tokio::sync::broadcast::Receiver<SessionEvent>) -> SessionEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(event, SessionEvent::Deleted { .. }) {
            return event;
        }
    }
}

/// Logs `jar` in as `handle`; returns the callback URL it followed.
async fn log_in(peer: &pds::Peer, base: &str, jar: &mut Jar, handle: &str) -> String {
    let account = peer.account(handle).clone();
    let r = jar
        .get(
            peer.http(),
            &format!("{base}/oauth/login?identifier={handle}"),
        )
        .await;
    assert_eq!(r.status(), 303);
    let redirect = peer
        .sign_in_and_consent(&location(&r), &account.handle, &account.password)
        .await
        .unwrap();
    let callback = format!("{base}{}", callback_of(&redirect));
    let r = jar.get(peer.http(), &callback).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    callback
}

#[tokio::test(flavor = "multi_thread")]
async fn two_logins_started_in_one_browser_both_come_back() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let (base, auth) = layer_app(&peer).await;
    let http = peer.http();
    let mut browser = Jar::default();
    // Two tabs: alice's login, then bob's, before either came back.
    let mut started = Vec::new();
    for handle in ["alice.test", "bob.test"] {
        let r = browser
            .get(http, &format!("{base}/oauth/login?identifier={handle}"))
            .await;
        assert_eq!(r.status(), 303);
        started.push((handle, location(&r), browser.0["atsession-login"].clone()));
    }
    assert_eq!(
        started[0].2, started[1].2,
        "the second login kept the binding"
    );
    let mut callbacks = Vec::new();
    for (handle, url, _) in &started {
        let account = peer.account(handle).clone();
        let redirect = peer
            .sign_in_and_consent(url, &account.handle, &account.password)
            .await
            .unwrap();
        callbacks.push(format!("{base}{}", callback_of(&redirect)));
    }
    // Each tab comes back signed in as its own account, the first one too.
    for ((handle, ..), callback) in started.iter().zip(&callbacks) {
        let r = browser.get(http, callback).await;
        assert_eq!(r.status(), 303, "{handle}: {:?}", r.text().await);
        let did = peer.account(handle).did.clone();
        let who = browser.get(http, &format!("{base}/whoami")).await;
        assert_eq!(who.text().await.unwrap(), did, "{handle}");
        let grants = auth
            .client()
            .store()
            .list_grants_by_did(&Did::new(did).unwrap())
            .await
            .unwrap();
        assert_eq!(grants.len(), 1, "{handle}");
    }
    // Each state is still good for one callback only.
    let r = browser.get(http, &callbacks[0]).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_csrf_json_scopes_cookie_and_sign_out_events() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let did = Did::new(alice.did.clone()).unwrap();
    let (base, auth) = layer_app(&peer).await;
    let http = peer.http();
    let mut events = auth.getter().subscribe();
    let grants = || async {
        auth.client()
            .store()
            .list_grants_by_did(&did)
            .await
            .unwrap()
            .len()
    };

    // Login CSRF: the attacker starts a login, and hands the callback to a victim.
    let mut attacker = Jar::default();
    let r = attacker
        .get(http, &format!("{base}/oauth/login?identifier=alice.test"))
        .await;
    let redirect = peer
        .sign_in_and_consent(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let callback = format!("{base}{}", callback_of(&redirect));
    let mut victim = Jar::default();
    victim.0.insert("atsession-login".into(), "A".repeat(43)); // someone else's binding
    let r = victim.get(http, &callback).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("started in another browser")
    );
    assert!(!victim.0.contains_key("atsession"));
    // Spent: not even the attacker's own browser can finish it now.
    let r = attacker.get(http, &callback).await;
    assert_eq!(r.status(), 400);
    assert!(!attacker.0.contains_key("atsession"));
    assert_eq!(grants().await, 0, "nothing stored");

    // Without any binding cookie (JSON client): a typed error, nothing stored.
    let r = http
        .get(format!("{base}/oauth/login?identifier=alice.test"))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let url: serde_json::Value = r.json().await.unwrap();
    let redirect = peer
        .sign_in_and_consent(
            url["authorization_url"].as_str().unwrap(),
            &alice.handle,
            &alice.password,
        )
        .await
        .unwrap();
    let r = http
        .get(format!("{base}{}", callback_of(&redirect)))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "other_browser");
    assert_eq!(grants().await, 0);

    // Junk: typed errors, nothing stored.
    for junk in [
        "",
        "?state=x&code=y&iss=z",
        "?state=a&state=b",
        "?error=x",
        "?%ff",
    ] {
        let r = http
            .get(format!("{base}/oauth/callback{junk}"))
            .header(ACCEPT, "application/json")
            .header(COOKIE, format!("atsession-login={}", "B".repeat(43)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{junk}");
        assert!(
            r.headers()
                .get_all(SET_COOKIE)
                .iter()
                .all(|v| !v.to_str().unwrap().starts_with("atsession="))
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{junk}");
    }
    for bad in ["", "identifier=", "identifier=alice.test&prompt=always"] {
        let r = http
            .get(format!("{base}/oauth/login?{bad}"))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get(SET_COOKIE).is_none(), "{bad}");
    }
    assert_eq!(grants().await, 0);

    // A real login; extractors and scopes.
    let mut browser = Jar::default();
    assert_eq!(
        browser
            .get(http, &format!("{base}/whoami"))
            .await
            .text()
            .await
            .unwrap(),
        "nobody"
    );
    log_in(&peer, &base, &mut browser, "alice.test").await;
    let r = browser.get(http, &format!("{base}/whoami")).await;
    assert_eq!(r.text().await.unwrap(), alice.did);
    let r = browser.get(http, &format!("{base}/generic")).await;
    assert_eq!(r.status(), 200);
    let r = browser.get(http, &format!("{base}/email")).await;
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "ScopeMissingError");
    assert_eq!(body["scope"], "transition:email");
    let r = browser.get(http, &format!("{base}/user")).await;
    assert!(r.text().await.unwrap().contains("transition:generic"));

    // The layer puts the slid cookie on responses (the idle window slides on every request
    // here), without any code in the handler.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = browser.get(http, &format!("{base}/whoami")).await;
    let slid: Vec<_> = r.headers().get_all(SET_COOKIE).iter().collect();
    assert_eq!(slid.len(), 1, "{slid:?}");
    assert!(slid[0].to_str().unwrap().starts_with("atsession="));

    // Logout goes through the session getter: a Deleted event fires.
    let r = browser.post(http, &format!("{base}/oauth/logout")).await;
    assert_eq!(r.status(), 303);
    let event = next_deleted(&mut events).await;
    assert!(
        matches!(&event, SessionEvent::Deleted { did: d, cause: DeleteCause::SignedOut, .. } if *d == did),
        "{event:?}"
    );
    assert_eq!(grants().await, 0);
    assert_eq!(
        browser
            .get(http, &format!("{base}/whoami"))
            .await
            .text()
            .await
            .unwrap(),
        "nobody"
    );

    // Sign out everywhere: two devices, two grants, two events.
    let mut laptop = Jar::default();
    let mut phone = Jar::default();
    log_in(&peer, &base, &mut laptop, "alice.test").await;
    log_in(&peer, &base, &mut phone, "alice.test").await;
    assert_eq!(grants().await, 2);
    assert_eq!(auth.sign_out_everywhere(&did).await.unwrap(), 2);
    for _ in 0..2 {
        let event = next_deleted(&mut events).await;
        assert!(matches!(
            event,
            SessionEvent::Deleted {
                cause: DeleteCause::SignedOut,
                ..
            }
        ));
    }
    assert_eq!(grants().await, 0);
    for jar in [&mut laptop, &mut phone] {
        let r = jar.get(http, &format!("{base}/user")).await;
        assert_eq!(r.status(), 401);
    }
}

/// A store whose app sessions cannot be created (everything else works): what a callback
/// meets when the session store fails after the grant was stored.
#[derive(Clone, Default)]
struct NoNewSessions(atsession::store::MemoryStore);

mod no_new_sessions {
    use std::sync::Arc;

    use atsession::app::{SessionId, StoredSession};
    use atsession::secret::TokenHash;
    use atsession::store::oauth::{
        GrantId, GrantStore, SessionGrantStore, StateStore, StoredAuthState, StoredGrant,
    };
    use atsession::store::{Cas, SessionStore, StoreError, StoreFuture};
    use atsession::syntax::Did;
    use time::OffsetDateTime;

    use super::NoNewSessions;

    impl SessionStore for NoNewSessions {
        fn create<'a>(&'a self, _: &'a StoredSession) -> StoreFuture<'a, ()> {
            StoreFuture::ready(Err(StoreError::backend(
                "test",
                "create",
                "the disk is full",
            )))
        }
        fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
            self.0.load(id)
        }
        fn load_by_token<'a>(
            &'a self,
            h: &'a TokenHash,
        ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
            self.0.load_by_token(h)
        }
        fn load_by_access_token<'a>(
            &'a self,
            h: &'a TokenHash,
        ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
            self.0.load_by_access_token(h)
        }
        fn update<'a>(&'a self, v: u64, s: &'a StoredSession) -> StoreFuture<'a, Cas> {
            self.0.update(v, s)
        }
        fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
            SessionStore::delete(&self.0, id)
        }
        fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
            self.0.list_by_did(did)
        }
        fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
            self.0.delete_by_did(did)
        }
        fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
            self.0.delete_expired(now)
        }
        fn expired_with_grants<'a>(
            &'a self,
            now: OffsetDateTime,
            limit: usize,
        ) -> StoreFuture<'a, Vec<(SessionId, GrantId)>> {
            self.0.expired_with_grants(now, limit)
        }
    }

    impl StateStore for NoNewSessions {
        fn put_state<'a>(&'a self, s: &'a StoredAuthState) -> StoreFuture<'a, ()> {
            self.0.put_state(s)
        }
        fn take_state<'a>(
            &'a self,
            k: &'a TokenHash,
            now: OffsetDateTime,
        ) -> StoreFuture<'a, Option<StoredAuthState>> {
            self.0.take_state(k, now)
        }
        fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
            self.0.delete_expired_states(now)
        }
    }

    impl GrantStore for NoNewSessions {
        fn create_grant<'a>(&'a self, g: &'a StoredGrant) -> StoreFuture<'a, ()> {
            self.0.create_grant(g)
        }
        fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
            self.0.load_grant(id)
        }
        fn update_grant<'a>(&'a self, v: u64, g: &'a StoredGrant) -> StoreFuture<'a, Cas> {
            self.0.update_grant(v, g)
        }
        fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
            self.0.delete_grant(id)
        }
        fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
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

    /// Two reads: a session, then its grant (the provided methods).
    impl SessionGrantStore for NoNewSessions {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_nobody_would_hold_is_signed_out() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let did = Did::new(alice.did.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inner = NoNewSessions::default();
    let store = atsession::store::AnyStore::custom(
        "no-new-sessions",
        inner.clone(),
        atsession::lock::MemoryLock::new(),
    );
    let metadata =
        ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto").unwrap();
    let auth = AtprotoAuth::build(
        store,
        SessionConfig::default().cookie(CookieConfig::insecure_for_development()),
        OAuthClientConfig::new(
            metadata,
            AtRestKeyring::new(AtRestKey::generate("k").unwrap()),
        )
        .dev_mode(true)
        .identity(identity(&peer)),
        WebConfig::default().redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback")),
    )
    .unwrap();
    let mut events = auth.getter().subscribe();
    let base = serve(
        listener,
        Router::new()
            .merge(auth.router())
            .layer(auth.layer())
            .with_state(auth.clone()),
    )
    .await;
    let mut browser = Jar::default();
    let r = browser
        .get(
            peer.http(),
            &format!("{base}/oauth/login?identifier=alice.test"),
        )
        .await;
    let redirect = peer
        .sign_in_and_consent(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let r = browser
        .get(peer.http(), &format!("{base}{}", callback_of(&redirect)))
        .await;
    assert_eq!(r.status(), 500);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("could not create the session")
    );
    assert!(!browser.0.contains_key("atsession"));
    // The grant was stored, then signed out through the getter: revoked and deleted.
    let event = next_deleted(&mut events).await;
    assert!(
        matches!(&event, SessionEvent::Deleted { did: d, cause: DeleteCause::SignedOut, .. } if *d == did),
        "{event:?}"
    );
    assert!(inner.0.list_grants_by_did(&did).await.unwrap().is_empty());
}

/// When an app session expires, the layer's cleanup signs its grant out (revoked at the PDS,
/// deleted, a `Deleted { SignedOut }` event) before it deletes the session: no grant
/// outlives its session. A session without a grant, and a live one, are left as they are.
#[tokio::test(flavor = "multi_thread")]
async fn the_cleanup_signs_out_the_grants_of_expired_sessions() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store = atsession::store::open("memory:").await.unwrap();
    let clock = std::sync::Arc::new(atsession::clock::ManualClock::at_now());
    let sessions = SessionManager::with_config(
        store.clone(),
        SessionConfig::default().cookie(CookieConfig::insecure_for_development()),
    )
    .unwrap()
    .with_clock(clock.clone());
    let metadata =
        ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto").unwrap();
    let client = OAuthClient::new(
        OAuthClientConfig::new(
            metadata,
            AtRestKeyring::new(AtRestKey::generate("k").unwrap()),
        )
        .dev_mode(true)
        .identity(identity(&peer)),
        store.clone(),
    )
    .unwrap();
    let getter = atsession::oauth::SessionGetter::new(
        client,
        atsession::oauth::GetterConfig::default().lock(store.lock()),
    );
    let auth = AtprotoAuth::new(
        sessions,
        getter,
        WebConfig::default().redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback")),
    );
    let mut events = auth.getter().subscribe();
    let base = serve(
        listener,
        Router::new()
            .route("/whoami", get(whoami))
            .merge(auth.router())
            .layer(auth.layer())
            .with_state(auth.clone()),
    )
    .await;
    let alice = Did::new(peer.account("alice.test").did.clone()).unwrap();
    let mut browser = Jar::default();
    log_in(&peer, &base, &mut browser, "alice.test").await;
    let grants = auth.client().grants_of(&alice).await.unwrap();
    assert_eq!(grants.len(), 1);
    let bob = Did::new(peer.account("bob.test").did.clone()).unwrap();
    let mut bobs_browser = Jar::default();
    log_in(&peer, &base, &mut bobs_browser, "bob.test").await;
    let bobs_grants = auth.client().grants_of(&bob).await.unwrap();
    assert_eq!(bobs_grants.len(), 1);
    let data = auth.client().grant(&grants[0]).await.unwrap().unwrap();
    let get_session = "/xrpc/com.atproto.server.getSession";
    let before = auth
        .client()
        .pds_request(&data, Method::GET, get_session, None)
        .await
        .unwrap();
    assert_eq!(before.status, StatusCode::OK);
    let bare = auth
        .sessions()
        .create("did:plc:nograntnograntnogrant00", "nogrant.test", ())
        .await
        .unwrap();

    // Nothing has expired: nothing is deleted.
    assert_eq!(auth.delete_expired().await.unwrap(), 0);
    assert_eq!(auth.client().grants_of(&alice).await.unwrap(), grants);

    // Past the idle timeout (the getter keeps real time, so the grant itself is fresh).
    // The expired session is refused when it is used, but kept for the cleanup, which
    // signs its grant out with it.
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    let r = browser.get(peer.http(), &format!("{base}/whoami")).await;
    assert_eq!(r.text().await.unwrap(), "nobody");
    assert_eq!(auth.client().grants_of(&alice).await.unwrap(), grants);
    // Logging out with an expired session's cookie signs its grant out at once, without
    // waiting for the cleanup, and ends the record.
    let r = bobs_browser
        .post(peer.http(), &format!("{base}/oauth/logout"))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(auth.client().grants_of(&bob).await.unwrap().is_empty());
    match next_deleted(&mut events).await {
        SessionEvent::Deleted { grant_id, .. } => assert_eq!(grant_id, bobs_grants[0]),
        other => panic!("{other:?}"),
    }
    let young = auth
        .sessions()
        .create("did:plc:youngyoungyoungyoung000", "young.test", ())
        .await
        .unwrap();
    assert_eq!(auth.delete_expired().await.unwrap(), 2);
    assert!(auth.client().grants_of(&alice).await.unwrap().is_empty());
    match next_deleted(&mut events).await {
        SessionEvent::Deleted {
            grant_id, cause, ..
        } => {
            assert_eq!(grant_id, grants[0]);
            assert!(matches!(cause, DeleteCause::SignedOut), "{cause:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(auth.sessions().load(bare.token.expose()).await.is_err());
    assert!(auth.sessions().load(young.token.expose()).await.is_ok());
    // The browser's cookie no longer signs in, and the PDS refuses the grant's tokens:
    // revoked, not just forgotten.
    let r = browser.get(peer.http(), &format!("{base}/whoami")).await;
    assert_eq!(r.text().await.unwrap(), "nobody");
    let after = auth
        .client()
        .pds_request(&data, Method::GET, get_session, None)
        .await
        .unwrap();
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(auth.delete_expired().await.unwrap(), 0);
}
