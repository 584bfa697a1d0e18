//! The web layer's extractors and cookie layer without an authorization server: sessions
//! made directly on a memory store, requests over real HTTP/1.1 to an axum server.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::time::Duration;

use atsession::app::{CookieConfig, SessionConfig};
use atsession::axum::{AtprotoAuth, AtprotoSession, Session, WebConfig};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::{ClientMetadata, OAuthClientConfig};
use axum::Router;
use axum::routing::get;

async fn whoami(session: Option<Session>) -> String {
    session.map_or_else(|| "nobody".to_owned(), |s| s.handle.to_string())
}

async fn required(session: Session) -> String {
    session.did.to_string()
}

async fn user(user: AtprotoSession) -> String {
    user.info.scope
}

async fn app(touch: Duration) -> (String, AtprotoAuth) {
    let metadata =
        ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto").unwrap();
    let keyring = AtRestKeyring::new(AtRestKey::new("k1", [9; 32]).unwrap());
    let sessions = SessionConfig::default()
        .cookie(CookieConfig::insecure_for_development())
        .touch_interval(touch);
    let auth = AtprotoAuth::build(
        atsession::store::open("memory:").await.unwrap(),
        sessions,
        OAuthClientConfig::new(metadata, keyring),
        WebConfig::default(),
    )
    .unwrap();
    let router = Router::new()
        .route("/whoami", get(whoami))
        .route("/required", get(required))
        .route("/user", get(user))
        .merge(auth.router())
        .layer(auth.layer())
        .with_state(auth.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, auth)
}

/// One request on a blocking thread; returns (status, head, body).
async fn request(addr: &str, method: &str, path: &str, headers: &str) -> (u16, String, String) {
    let (addr, method, path, headers) = (
        addr.to_owned(),
        method.to_owned(),
        path.to_owned(),
        headers.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{headers}\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        (head[9..12].parse().unwrap(), head.to_owned(), body.to_owned())
    })
    .await
    .unwrap()
}

fn set_cookies(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn extractors_and_the_slid_cookie() {
    let (addr, auth) = app(Duration::ZERO).await;
    let new = auth
        .sessions()
        .create("did:plc:layer0000000000000000000", "layer.test", ())
        .await
        .unwrap();
    let cookie = format!("Cookie: atsession={}\r\n", new.token.expose());

    // Signed out: Option<Session> is None, Session is a 401 with a JSON reason.
    let (status, _, body) = request(&addr, "GET", "/whoami", "").await;
    assert_eq!((status, body.as_str()), (200, "nobody"));
    let (status, _, body) = request(&addr, "GET", "/required", "").await;
    assert_eq!(status, 401);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "AuthenticationRequired");
    // A malformed cookie is signed out too, not a server error.
    let (status, _, _) = request(&addr, "GET", "/required", "Cookie: atsession=junk\r\n").await;
    assert_eq!(status, 401);

    // Signed in: the idle window slides on every request here, and the layer sends the
    // refreshed cookie without any code in the handler.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, head, body) = request(&addr, "GET", "/whoami", &cookie).await;
    assert_eq!((status, body.as_str()), (200, "layer.test"));
    let cookies = set_cookies(&head);
    assert_eq!(cookies.len(), 1, "{head}");
    assert!(cookies[0].starts_with(&format!("atsession={}", new.token.expose())));
    assert!(cookies[0].contains("HttpOnly"));

    // An app session without a grant has no OAuth session: 401, and nothing is sent.
    let (status, _, body) = request(&addr, "GET", "/user", &cookie).await;
    assert_eq!(status, 401, "{body}");

    // Logout (API client): 204, the cookie cleared, the session gone.
    let json_cookie = format!("{cookie}Accept: application/json\r\n");
    let (status, head, _) = request(&addr, "POST", "/oauth/logout", &json_cookie).await;
    assert_eq!(status, 204);
    assert!(
        set_cookies(&head).iter().any(|c| c.contains("Max-Age=0")),
        "{head}"
    );
    let (status, _, _) = request(&addr, "GET", "/required", &cookie).await;
    assert_eq!(status, 401);
    // Logging out again is fine: already signed out.
    let (status, _, _) = request(&addr, "POST", "/oauth/logout", &cookie).await;
    assert_eq!(status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cookie_is_sent_when_nothing_slid() {
    let (addr, auth) = app(Duration::from_secs(3600)).await;
    let new = auth
        .sessions()
        .create("did:plc:layer0000000000000000000", "layer.test", ())
        .await
        .unwrap();
    let cookie = format!("Cookie: atsession={}\r\n", new.token.expose());
    let (status, head, _) = request(&addr, "GET", "/whoami", &cookie).await;
    assert_eq!(status, 200);
    assert!(set_cookies(&head).is_empty(), "{head}");
    // A public client publishes no metadata or keys.
    let (status, _, _) = request(&addr, "GET", "/oauth/jwks.json", "").await;
    assert_eq!(status, 404);
}
