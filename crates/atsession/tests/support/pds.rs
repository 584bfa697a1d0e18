//! Test support: the official atproto PDS (with a local PLC directory) as a real peer.
//!
//! Include it at the root of a test file, exactly like this (the macros refer to
//! `crate::pds`):
//!
//! ```ignore
//! #[path = "support/pds.rs"]
//! mod pds;
//!
//! #[tokio::test]
//! async fn login() {
//!     let Some(peer) = pds::peer_or_skip!() else { return };
//!     let alice = peer.account("alice.test");
//!     // ... PAR with your client, then the user's step without a browser:
//!     let redirect = peer
//!         .sign_in_and_consent(&authorization_url, &alice.handle, &alice.password)
//!         .await
//!         .expect("sign-in and consent");
//!     // redirect = <redirect_uri>?state=...&iss=...&code=...
//! }
//! ```
//!
//! The peer is started outside the tests (`e2e/pds/up.sh` writes a JSON file whose path
//! goes in `ATSESSION_E2E_PDS`):
//!
//! ```text
//! bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json
//! ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --test <name>
//! bash e2e/pds/down.sh /tmp/pds.json
//! ```
//!
//! Without `ATSESSION_E2E_PDS` a test skips (prints how to run it), except under
//! `CI=true`, where it panics.
//!
//! Facts the tests can rely on: the issuer is `http://localhost:<port>` (DPoP `htu` and
//! client assertion `aud` must use it, not 127.0.0.1); handles resolve through
//! `com.atproto.identity.resolveHandle` on the PDS ([`Peer::handle_resolver_url`]); DID
//! documents come from the PLC directory at [`Peer::plc_url`].
//!
//! Confidential clients: the PDS only fetches client metadata from public https hosts.
//! [`Peer::register_client`] hands the harness the metadata document for an https
//! `client_id` (e.g. `https://client.example.com/client-metadata.json`); the provider
//! then uses that document, still running its own validation on it.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use reqwest::{StatusCode, Url, header};
use serde::Deserialize;
use serde_json::{Value, json};

/// The environment variable naming the JSON file written by `e2e/pds/up.sh`.
pub const ENV: &str = "ATSESSION_E2E_PDS";

/// How to start the peer, printed when a test skips.
pub const HOW_TO_RUN: &str = "bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json && \
     ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --test <name>; bash e2e/pds/down.sh /tmp/pds.json";

/// `let Some(peer) = pds::peer_or_skip!() else { return };`
///
/// Returns `Some(Peer)` when `ATSESSION_E2E_PDS` names a running peer; otherwise prints
/// a skip message naming the calling module and returns `None`. Panics under `CI=true`
/// when the peer is missing.
#[allow(unused_macros)]
macro_rules! peer_or_skip {
    () => {
        $crate::pds::Peer::from_env_for(module_path!())
    };
}
#[allow(unused_imports)]
pub(crate) use peer_or_skip;

/// [`peer_or_skip!`] for tests that change the peer's token lifetime: see
/// [`Peer::refresh_peer_for`].
#[allow(unused_macros)]
macro_rules! refresh_peer_or_skip {
    () => {
        $crate::pds::Peer::refresh_peer_for(module_path!())
    };
}
#[allow(unused_imports)]
pub(crate) use refresh_peer_or_skip;

/// The environment variable naming the peer of tests that change its token lifetime.
pub const REFRESH_ENV: &str = "ATSESSION_E2E_PDS_REFRESH";

/// An account created on the PDS at start-up.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    /// e.g. `alice.test`.
    pub handle: String,
    /// `did:plc:...`, registered in the local PLC directory.
    pub did: String,
    /// The account password (for the sign-in step).
    pub password: String,
    /// The account email.
    pub email: String,
}

/// The admin endpoint of the harness (loopback).
#[derive(Debug, Clone, Deserialize)]
pub struct Admin {
    /// e.g. `http://127.0.0.1:40629`.
    pub url: String,
    /// Bearer token for the admin endpoint.
    pub token: String,
}

/// The JSON file written by `e2e/pds/start.mjs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The PLC directory, e.g. `http://localhost:42289`.
    pub plc_url: String,
    /// The PDS, e.g. `http://localhost:40781`.
    pub pds_url: String,
    /// The OAuth issuer, `http://localhost:<pds port>`.
    pub issuer: String,
    /// alice.test, bob.test, carol.test.
    pub accounts: Vec<Account>,
    /// The harness's admin endpoint.
    pub admin: Admin,
    /// The access token lifetime the PDS was started with.
    pub token_max_age_ms: u64,
    /// The start script's process id.
    pub pid: u32,
}

/// What can go wrong while driving the peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The HTTP request itself failed.
    #[error("{step}: request failed")]
    Http {
        /// Which step.
        step: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The peer answered with an unexpected status.
    #[error("{step}: unexpected HTTP {status}: {body}")]
    Status {
        /// Which step.
        step: &'static str,
        /// The status received.
        status: StatusCode,
        /// The body received (never holds tokens: these are sign-in page answers).
        body: String,
    },
    /// The answer lacked something the step needs.
    #[error("{step}: {what}")]
    Unexpected {
        /// Which step.
        step: &'static str,
        /// What was missing or wrong.
        what: String,
    },
    /// A URL could not be parsed.
    #[error("{step}: bad URL")]
    Url {
        /// Which step.
        step: &'static str,
        /// The cause.
        #[source]
        source: UrlParseError,
    },
}

/// `url::ParseError`, reached through reqwest's re-export of `Url`.
pub type UrlParseError = <Url as std::str::FromStr>::Err;

/// A running peer, read from the JSON file named by `ATSESSION_E2E_PDS`.
#[derive(Debug, Clone)]
pub struct Peer {
    info: PeerInfo,
    http: reqwest::Client,
}

impl Peer {
    /// Reads the peer from `ATSESSION_E2E_PDS`. `None` (with a printed skip message)
    /// when it is not set or the file is missing; panics instead when `CI=true`.
    pub fn from_env() -> Option<Peer> {
        Self::from_env_for("this test")
    }

    /// [`Peer::from_env`], naming `test` (and the running test's thread) in the skip
    /// message.
    pub fn from_env_for(test: &str) -> Option<Peer> {
        Self::from_var_for(ENV, test)
    }

    /// The peer for tests that change its token lifetime (a setting global to the PDS), so
    /// that they never share a peer with tests that run later: `ATSESSION_E2E_PDS_REFRESH`,
    /// else (outside CI, when only one peer runs) `ATSESSION_E2E_PDS`.
    pub fn refresh_peer_for(test: &str) -> Option<Peer> {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if std::env::var_os(REFRESH_ENV).is_some_and(|p| !p.is_empty()) || in_ci {
            Self::from_var_for(REFRESH_ENV, test)
        } else {
            Self::from_var_for(ENV, test)
        }
    }

    fn from_var_for(env: &str, test: &str) -> Option<Peer> {
        let thread = std::thread::current();
        let test = match thread.name() {
            Some(name) if name != "main" => format!("{test}::{name}"),
            _ => test.to_owned(),
        };
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        let path = match std::env::var_os(env) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                assert!(
                    !in_ci,
                    "CI=true but {env} is not set: the e2e PDS peer must run in CI ({HOW_TO_RUN})"
                );
                skip_note(&format!(
                    "SKIPPED {test}: needs the local PDS peer. Run: {HOW_TO_RUN}"
                ));
                return None;
            }
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(err) => {
                assert!(
                    !in_ci,
                    "CI=true but {env}={} cannot be read ({err}): is the peer up? ({HOW_TO_RUN})",
                    path.display()
                );
                skip_note(&format!(
                    "SKIPPED {test}: {env}={} cannot be read ({err}). Run: {HOW_TO_RUN}",
                    path.display()
                ));
                return None;
            }
        };
        let info: PeerInfo = serde_json::from_str(&text).unwrap_or_else(|err| {
            panic!("{env}={}: not a peer description: {err}", path.display())
        });
        Some(Peer::new(info))
    }

    /// A peer from an already-read description.
    pub fn new(info: PeerInfo) -> Peer {
        Peer {
            info,
            http: http_client(),
        }
    }

    /// The description read from the JSON file.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The PDS URL, `http://localhost:<port>`.
    pub fn pds_url(&self) -> &str {
        &self.info.pds_url
    }

    /// The OAuth issuer (the PDS is its own authorization server).
    pub fn issuer(&self) -> &str {
        &self.info.issuer
    }

    /// The PLC directory URL.
    pub fn plc_url(&self) -> &str {
        &self.info.plc_url
    }

    /// The base URL of an XRPC handle resolver (`com.atproto.identity.resolveHandle`):
    /// the PDS itself.
    pub fn handle_resolver_url(&self) -> &str {
        &self.info.pds_url
    }

    /// Every account created at start-up.
    pub fn accounts(&self) -> &[Account] {
        &self.info.accounts
    }

    /// The account with this handle (`alice.test`, `bob.test`, `carol.test`).
    ///
    /// # Panics
    /// When there is no such account.
    pub fn account(&self, handle: &str) -> &Account {
        self.info
            .accounts
            .iter()
            .find(|a| a.handle == handle)
            .unwrap_or_else(|| panic!("the peer has no account {handle}"))
    }

    /// A plain HTTP client (no redirects followed, no proxy, 30 s timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The user's step without a browser: opens `authorization_url` (what the client's
    /// `authorize` returned), signs in as `handle` with `password`, consents, and
    /// returns the URL the browser would be sent to:
    /// `<redirect_uri>?state=...&iss=...&code=...` (or with `error=...` when the
    /// provider turns the request down).
    pub async fn sign_in_and_consent(
        &self,
        authorization_url: &str,
        handle: &str,
        password: &str,
    ) -> Result<String, PeerError> {
        let mut page = self.open_authorization_page(authorization_url).await?;
        let account = page.sign_in(handle, password).await?;
        let did = account
            .get("did")
            .and_then(Value::as_str)
            .ok_or_else(|| PeerError::Unexpected {
                step: "sign-in",
                what: "the answer has no account.did".into(),
            })?
            .to_owned();
        let url = page.api("consent", json!({ "did": did })).await?;
        page.follow_redirect(&url).await
    }

    /// Opens `authorization_url` and refuses: returns the redirect URL carrying
    /// `error=access_denied`. Signs in first (as a user would), then rejects.
    pub async fn sign_in_and_reject(
        &self,
        authorization_url: &str,
        handle: &str,
        password: &str,
    ) -> Result<String, PeerError> {
        let mut page = self.open_authorization_page(authorization_url).await?;
        page.sign_in(handle, password).await?;
        let url = page.api("reject", json!({})).await?;
        page.follow_redirect(&url).await
    }

    /// Opens `authorization_url` and refuses without signing in.
    pub async fn reject(&self, authorization_url: &str) -> Result<String, PeerError> {
        let mut page = self.open_authorization_page(authorization_url).await?;
        let url = page.api("reject", json!({})).await?;
        page.follow_redirect(&url).await
    }

    /// Opens the authorization page like a browser would (step 1), for tests that drive
    /// the remaining steps themselves.
    pub async fn open_authorization_page(
        &self,
        authorization_url: &str,
    ) -> Result<AuthorizationPage, PeerError> {
        let url = Url::parse(authorization_url).map_err(|source| PeerError::Url {
            step: "authorization page",
            source,
        })?;
        let mut page = AuthorizationPage {
            http: self.http.clone(),
            origin: url.origin().ascii_serialization(),
            referer: authorization_url.to_owned(),
            cookies: BTreeMap::new(),
        };
        let res = self
            .http
            .get(url)
            .header("sec-fetch-site", "none")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header(header::ACCEPT, "text/html")
            .send()
            .await
            .map_err(|source| PeerError::Http {
                step: "authorization page",
                source,
            })?;
        page.take_cookies(&res);
        let status = res.status();
        if status != StatusCode::OK {
            let body = res.text().await.unwrap_or_default();
            return Err(PeerError::Status {
                step: "authorization page",
                status,
                body,
            });
        }
        if !page.cookies.contains_key("csrf-token") {
            return Err(PeerError::Unexpected {
                step: "authorization page",
                what: "no csrf-token cookie was set".into(),
            });
        }
        Ok(page)
    }

    /// Registers a confidential client: when the PDS needs the metadata of `client_id`
    /// (an `https://` URL), it gets `metadata` (and validates it as usual).
    pub async fn register_client(
        &self,
        client_id: &str,
        metadata: &Value,
    ) -> Result<(), PeerError> {
        self.admin(
            reqwest::Method::POST,
            "/clients",
            json!({ "client_id": client_id, "metadata": metadata }),
        )
        .await
        .map(drop)
    }

    /// Registers a confidential client whose metadata the harness fetches from
    /// `metadata_url` (a loopback URL the test serves) each time the PDS needs it.
    pub async fn register_client_url(
        &self,
        client_id: &str,
        metadata_url: &str,
    ) -> Result<(), PeerError> {
        self.admin(
            reqwest::Method::POST,
            "/clients",
            json!({ "client_id": client_id, "metadata_url": metadata_url }),
        )
        .await
        .map(drop)
    }

    /// Forgets a registered client. Returns whether it was registered.
    pub async fn unregister_client(&self, client_id: &str) -> Result<bool, PeerError> {
        let v = self
            .admin(
                reqwest::Method::DELETE,
                "/clients",
                json!({ "client_id": client_id }),
            )
            .await?;
        Ok(v.get("removed").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Sets the lifetime of access tokens issued from now on; returns the previous one.
    /// Global to the PDS: prefer starting the peer with `ATSESSION_E2E_TOKEN_MAX_AGE_MS`,
    /// or use this only in a test binary that owns the peer.
    pub async fn set_token_max_age(&self, max_age: Duration) -> Result<Duration, PeerError> {
        let ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let v = self
            .admin(reqwest::Method::POST, "/token-max-age", json!({ "ms": ms }))
            .await?;
        let previous =
            v.get("previous")
                .and_then(Value::as_u64)
                .ok_or_else(|| PeerError::Unexpected {
                    step: "token-max-age",
                    what: format!("no previous value in {v}"),
                })?;
        Ok(Duration::from_millis(previous))
    }

    /// `com.atproto.identity.resolveHandle` on the PDS: the DID of `handle`.
    pub async fn resolve_handle(&self, handle: &str) -> Result<String, PeerError> {
        let step = "resolveHandle";
        let url = Url::parse_with_params(
            &format!(
                "{}/xrpc/com.atproto.identity.resolveHandle",
                self.info.pds_url
            ),
            [("handle", handle)],
        )
        .map_err(|source| PeerError::Url { step, source })?;
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| PeerError::Http { step, source })?;
        let v = json_ok(step, res).await?;
        v.get("did")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| PeerError::Unexpected {
                step,
                what: format!("no did in {v}"),
            })
    }

    /// GETs `url` and returns its JSON body (status 200 required).
    pub async fn get_json(&self, url: &str) -> Result<Value, PeerError> {
        let step = "GET json";
        let res = self
            .http
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| PeerError::Http { step, source })?;
        json_ok(step, res).await
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, PeerError> {
        let step = "harness admin";
        let res = self
            .http
            .request(method, format!("{}{path}", self.info.admin.url))
            .bearer_auth(&self.info.admin.token)
            .json(&body)
            .send()
            .await
            .map_err(|source| PeerError::Http { step, source })?;
        json_ok(step, res).await
    }
}

/// The authorization page as a browser holds it: its cookies, its URL (the referer of
/// the page's API calls) and the issuer's origin.
#[derive(Debug)]
pub struct AuthorizationPage {
    http: reqwest::Client,
    origin: String,
    referer: String,
    cookies: BTreeMap<String, String>,
}

impl AuthorizationPage {
    /// Step 2: `POST /@atproto/oauth-provider/~api/sign-in` (with "remember me").
    /// Returns the `account` object of the answer (`did`, `handle`, ...).
    pub async fn sign_in(&mut self, handle: &str, password: &str) -> Result<Value, PeerError> {
        let step = "sign-in";
        let v = self
            .api_json(
                step,
                "sign-in",
                json!({ "locale": "en", "username": handle, "password": password, "remember": true }),
            )
            .await?;
        v.get("account")
            .cloned()
            .ok_or_else(|| PeerError::Unexpected {
                step,
                what: format!("no account in the answer {v}"),
            })
    }

    /// Step 3: a page API call (`consent` or `reject`) whose answer is `{url}`; returns
    /// that URL made absolute.
    pub async fn api(&mut self, endpoint: &'static str, body: Value) -> Result<String, PeerError> {
        let v = self.api_json(endpoint, endpoint, body).await?;
        let url = v
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| PeerError::Unexpected {
                step: endpoint,
                what: format!("no url in the answer {v}"),
            })?;
        let base = Url::parse(&self.origin).map_err(|source| PeerError::Url {
            step: endpoint,
            source,
        })?;
        base.join(url)
            .map(String::from)
            .map_err(|source| PeerError::Url {
                step: endpoint,
                source,
            })
    }

    /// Step 4: GETs the `/oauth/authorize/redirect?...` URL and returns the `Location` of
    /// its 303 (the client's redirect URI with `state`, `iss` and `code` or `error`).
    pub async fn follow_redirect(&mut self, url: &str) -> Result<String, PeerError> {
        let step = "authorize redirect";
        let res = self
            .http
            .get(url)
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header(header::REFERER, &self.referer)
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .map_err(|source| PeerError::Http { step, source })?;
        self.take_cookies(&res);
        let status = res.status();
        if !status.is_redirection() {
            let body = res.text().await.unwrap_or_default();
            return Err(PeerError::Status { step, status, body });
        }
        res.headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| PeerError::Unexpected {
                step,
                what: format!("HTTP {status} without a Location"),
            })
    }

    /// The cookies the page holds (name → value).
    pub fn cookies(&self) -> &BTreeMap<String, String> {
        &self.cookies
    }

    async fn api_json(
        &mut self,
        step: &'static str,
        endpoint: &str,
        body: Value,
    ) -> Result<Value, PeerError> {
        let csrf = self.cookies.get("csrf-token").cloned().unwrap_or_default();
        let res = self
            .http
            .post(format!(
                "{}/@atproto/oauth-provider/~api/{endpoint}",
                self.origin
            ))
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "same-origin")
            .header("sec-fetch-dest", "empty")
            .header(header::ORIGIN, &self.origin)
            .header(header::REFERER, &self.referer)
            .header("x-csrf-token", csrf)
            .header(header::COOKIE, self.cookie_header())
            .json(&body)
            .send()
            .await
            .map_err(|source| PeerError::Http { step, source })?;
        self.take_cookies(&res);
        json_ok(step, res).await
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take_cookies(&mut self, res: &reqwest::Response) {
        for value in res.headers().get_all(header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let pair = value.split(';').next().unwrap_or_default();
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            let (name, val) = (name.trim(), val.trim());
            let expired = value.split(';').skip(1).any(|attr| {
                let attr = attr.trim().to_ascii_lowercase();
                attr == "max-age=0" || attr.starts_with("expires=thu, 01 jan 1970")
            });
            if expired || val.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), val.to_owned());
            }
        }
    }
}

/// The value of query parameter `name` in `url`, if any.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn json_ok(step: &'static str, res: reqwest::Response) -> Result<Value, PeerError> {
    let status = res.status();
    let body = res
        .text()
        .await
        .map_err(|source| PeerError::Http { step, source })?;
    if !status.is_success() {
        return Err(PeerError::Status { step, status, body });
    }
    serde_json::from_str(&body).map_err(|err| PeerError::Unexpected {
        step,
        what: format!("not JSON ({err}): {body}"),
    })
}

/// Writes straight to the process's stderr, past the test harness's output capture, so
/// a skip is visible in a plain `cargo test` run.
fn skip_note(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

fn http_client() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider; the peer is plain http, but a
    // Client still needs one installed. Err only means one is installed already.
    let _ = rustls_graviola::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building a reqwest client with no special options cannot fail")
}
