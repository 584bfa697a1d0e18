//! The `hyper_app` example (the framework-neutral flows on plain hyper, no axum) against the
//! official PDS: login → profile page read from the PDS → logout → the PDS refuses the
//! tokens; a callback replayed in a second cookie jar creates nothing; errors are answered
//! through the one table.
//!
//! Needs the peer: see `support/pds.rs` (`ATSESSION_E2E_PDS`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;
#[allow(unused_imports)]
mod support;

#[path = "support/example_app.rs"]
mod example_app;

#[path = "../examples/hyper_app.rs"]
#[allow(dead_code)]
mod example;

use std::time::Duration;

use atsession::crypto::AtRestKey;
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use example_app::{GrantProbe, Jar, callback_of, location, log_out};
use reqwest::Url;

fn identity(peer: &pds::Peer) -> IdentityConfig {
    IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hyper_app_login_profile_logout() {
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
    let auth = example::app(&db, port, key.clone(), identity(&peer), true)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    tokio::spawn(example::serve(listener, auth));
    let http = peer.http();
    let store = SqliteStore::connect(&db).await.unwrap();

    // Signed out: the home page offers the login form; the profile answers through the table.
    let mut browser = Jar::default();
    let r = browser.get(http, &format!("{base}/")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Log in"));
    let r = browser.get(http, &format!("{base}/profile")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "AuthenticationRequired", "{body}");

    // A login without an account goes to the error page with its code.
    let r = browser.get(http, &format!("{base}/oauth/login")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/?error=missing_identifier");

    // Login: to the PDS and back.
    let r = browser
        .get(
            http,
            &format!("{base}/oauth/login?identifier=alice.test&redirect_to=/profile"),
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(
        browser.0.contains_key("atsession-login"),
        "bound to this browser"
    );
    let redirect = peer
        .sign_in_and_consent(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let callback = format!("{base}{}", callback_of(&redirect));
    let r = browser.get(http, &callback).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(location(&r), "/profile");
    assert!(browser.0.contains_key("atsession"), "session cookie set");

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
        page.contains("<h1>alice.test</h1>") && page.contains(&alice.did),
        "{page}"
    );
    assert!(page.contains("transition:generic"), "{page}");
    let home = browser.get(http, &format!("{base}/")).await;
    let home = home.text().await.unwrap();
    assert!(home.contains("Signed in as alice.test"), "{home}");

    // Logout: the grant is revoked at the PDS and deleted, the session ends.
    let probe = GrantProbe::of(&store, &did, key, identity(&peer)).await;
    log_out(&mut browser, http, &base, &store, &did, &probe).await;
}
