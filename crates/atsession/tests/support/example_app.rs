//! What the end-to-end tests of the example apps share: a browser's cookie jar, the
//! redirects it follows, and the checks of a logout (the app's records gone, the PDS
//! refusing the revoked tokens).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use atsession::app::SessionManager;
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::IdentityConfig;
use atsession::oauth::{ClientMetadata, Grant, OAuthClient, OAuthClientConfig};
use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

/// A browser's cookies.
#[derive(Default)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn absorb(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join("; ")
    }

    pub async fn get(&mut self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let r = http
            .get(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        r
    }

    pub async fn post(&mut self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let r = http
            .post(url)
            .header(COOKIE, self.header())
            .send()
            .await
            .unwrap();
        self.absorb(&r);
        r
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// The path and query of the callback URL the PDS redirected to.
pub fn callback_of(redirect: &str) -> &str {
    &redirect[redirect.find("/oauth/callback").unwrap()..]
}

/// The one grant of an account, read with a client of its own, to ask the PDS about its
/// tokens after the app has signed it out.
pub struct GrantProbe {
    reader: OAuthClient<SqliteStore>,
    grant: Grant,
}

impl GrantProbe {
    /// The grant of `did`'s one app session in `store` (sealed with `key`).
    pub async fn of(
        store: &SqliteStore,
        did: &Did,
        key: AtRestKey,
        identity: IdentityConfig,
    ) -> Self {
        let sessions = SessionManager::new(store.clone()).list(did).await.unwrap();
        assert_eq!(sessions.len(), 1);
        let grant = sessions[0].grant_id.clone().unwrap();
        let metadata =
            ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto").unwrap();
        let reader = OAuthClient::new(
            OAuthClientConfig::new(metadata, AtRestKeyring::new(key))
                .dev_mode(true)
                .identity(identity),
            store.clone(),
        )
        .unwrap();
        let grant = reader.grant(&grant).await.unwrap().unwrap();
        Self { reader, grant }
    }

    /// What the PDS answers `getSession` with the grant's tokens.
    pub async fn pds_status(&self) -> StatusCode {
        let get_session = "/xrpc/com.atproto.server.getSession";
        let r = self
            .reader
            .pds_request(&self.grant, Method::GET, get_session, None);
        r.await.unwrap().status
    }
}

/// Logs the browser out of the app at `base` (`POST /oauth/logout`) and checks that it was:
/// sent home with the session cookie cleared, the account's grants and sessions gone from
/// `store`, `/profile` refused, and the grant's tokens refused by the PDS.
pub async fn log_out(
    browser: &mut Jar,
    http: &reqwest::Client,
    base: &str,
    store: &SqliteStore,
    did: &Did,
    probe: &GrantProbe,
) {
    assert_eq!(probe.pds_status().await, StatusCode::OK);
    let r = browser.post(http, &format!("{base}/oauth/logout")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/");
    assert!(
        !browser.0.contains_key("atsession"),
        "session cookie cleared"
    );
    assert!(store.list_grants_by_did(did).await.unwrap().is_empty());
    let left = SessionManager::new(store.clone()).list(did).await.unwrap();
    assert!(left.is_empty());
    let r = browser.get(http, &format!("{base}/profile")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        probe.pds_status().await,
        StatusCode::UNAUTHORIZED,
        "the PDS refuses the revoked tokens"
    );
}
