//! The flows of Bluesky (atproto OAuth) login, for any web framework (feature `oauth`).
//!
//! Everything an app does between "Log in with Bluesky" and a signed-in request, as plain
//! async methods of [`AtprotoAuth`] over [`http`] types (`HeaderMap`, a query string) and the
//! library's own types. A web framework's adapter only routes requests to them and turns
//! their results into its responses; [`axum`](crate::axum) is one (feature `axum`), and
//! `examples/hyper_app.rs` is a whole app on plain hyper.
//!
//! | flow | method | gives |
//! |---|---|---|
//! | start a login | [`start_login`](AtprotoAuth::start_login) | the authorization server's URL and the browser-binding cookie |
//! | complete it | [`complete_login`](AtprotoAuth::complete_login) | the app session, its `Set-Cookie`, and where to send the browser |
//! | the request's session | [`request_session`](AtprotoAuth::request_session) | the app session (cookie or Bearer), a slid cookie, its grant's record |
//! | …and its grant, on demand | [`user`](AtprotoAuth::user) | the [`OAuthSession`](crate::oauth::OAuthSession) for DPoP-signed PDS calls, refreshed if stale |
//! | sign out | [`logout`](AtprotoAuth::logout), [`sign_out`](AtprotoAuth::sign_out) | the grant revoked at its server, the session ended, the cookie cleared |
//! | sign out everywhere | [`sign_out_everywhere`](AtprotoAuth::sign_out_everywhere) | every session and grant of an account ended |
//! | clean up | [`delete_expired`](AtprotoAuth::delete_expired), [`spawn_cleanup`](AtprotoAuth::spawn_cleanup) | expired sessions deleted, their grants signed out first |
//!
//! Every failure is an [`AuthError`], and [one table](errors) turns each into its HTTP
//! status, a stable `error` name (`AuthenticationRequired`, `ScopeMissingError`, …) and a
//! message safe to send. When a session's grant is gone (signed out elsewhere, its refresh
//! refused), the flows end the app session, and the answer clears its cookie.
//!
//! **Login CSRF.** Each login is bound to the browser that started it: a short-lived
//! `HttpOnly`, `SameSite=Lax` cookie ([`SECURE_BINDING_COOKIE`], or [`PLAIN_BINDING_COOKIE`]
//! on plain-HTTP development sites) holds a random value whose SHA-256 is sealed in the OAuth
//! state, and the callback compares the two in constant time before anything is exchanged or
//! stored. A callback URL followed in another browser creates nothing and answers
//! [`LoginErrorCode::OtherBrowser`]. Logins started in several tabs of one browser can each
//! come back: a login keeps the browser's binding, and the cookie expires on its own.
//!
//! **One way to sign out.** Every sign-out goes through the
//! [`SessionGetter`], so its [`Deleted`](crate::oauth::SessionEvent::Deleted) event fires.
//!
//! ```no_run
//! use atsession::app::SessionConfig;
//! use atsession::auth::{AtprotoAuth, LoginRequest, WebConfig};
//! use atsession::crypto::{AtRestKey, AtRestKeyring};
//! use atsession::oauth::{ClientMetadata, OAuthClientConfig, Refresh};
//! use http::HeaderMap;
//!
//! # async fn demo(headers: HeaderMap) -> Result<(), Box<dyn std::error::Error>> {
//! let store = atsession::store::open("sqlite://app.db").await?;
//! let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto")?;
//! let keyring = AtRestKeyring::new(AtRestKey::from_spec(&std::env::var("AT_REST_KEY")?)?);
//! let auth = AtprotoAuth::build(
//!     store,
//!     SessionConfig::default(),
//!     OAuthClientConfig::new(metadata, keyring),
//!     WebConfig::default().redirect_uri("http://127.0.0.1:8080/oauth/callback"),
//! )?;
//!
//! // GET /oauth/login?identifier=alice.bsky.social
//! let login = LoginRequest::from_query("identifier=alice.bsky.social")?;
//! let started = auth.start_login(&login, &headers).await?;
//! // answer 303 to started.authorization_url, with Set-Cookie: started.binding_cookie
//!
//! // GET /oauth/callback?state=…&iss=…&code=… (in the same browser)
//! let done = auth.complete_login("state=…&iss=…&code=…", &headers).await?;
//! // answer 303 to done.redirect_to, with Set-Cookie: done.set_cookie
//!
//! // Any later request: its session, and its grant for calls to the user's PDS.
//! let found = auth.request_session(&headers).await?;
//! let (oauth, info) = auth.user(&found.session, found.grant, Refresh::IfStale).await?;
//! let me: serde_json::Value = oauth.xrpc_query("com.atproto.server.getSession", &[]).await?;
//! println!("{} ({})", me["handle"], info.scope);
//!
//! // POST /oauth/logout
//! let clear_cookie = auth.logout(&headers).await?;
//! # let _ = (started, done, clear_cookie); Ok(()) }
//! ```

mod binding;
mod config;
pub mod errors;
mod login;
mod redirect;
mod request;
mod routes;
mod scope;
mod sign_out;

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Response};

use crate::app::{SessionConfig, SessionConfigError, SessionManager};
use crate::oauth::{GetterConfig, OAuthClient, OAuthClientConfig, OAuthError, SessionGetter};
use crate::store::AnyStore;

pub use binding::{PLAIN_COOKIE as PLAIN_BINDING_COOKIE, SECURE_COOKIE as SECURE_BINDING_COOKIE};
pub use config::WebConfig;
pub use errors::{AuthError, ErrorAnswer, ErrorName, LoginError, LoginErrorCode, wants_json};
pub use login::{INVALID_HANDLE, LoggedIn, LoginRequest, LoginStarted};
pub use redirect::local_path;
pub use request::RequestSession;
pub use scope::scope_covers;

/// The flows over one store: the app sessions, the session getter (and its OAuth client),
/// and the [`WebConfig`]. Cheap to clone; share one per app.
///
/// It never names the store's type: the store is an [`AnyStore`], opened from a URL at run
/// time ([`store::open`](crate::store::open)), or a store of your own behind
/// [`AnyStore::custom`].
#[derive(Clone)]
pub struct AtprotoAuth {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: SessionManager<AnyStore>,
    getter: SessionGetter<AnyStore>,
    config: WebConfig,
}

impl fmt::Debug for AtprotoAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtprotoAuth")
            .field("store", &self.inner.sessions.store().backend())
            .field("client", self.inner.getter.client())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Why an [`AtprotoAuth`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The app-session configuration is inconsistent.
    #[error("invalid session configuration")]
    Sessions(#[from] SessionConfigError),
    /// The OAuth client configuration is inconsistent.
    #[error("invalid OAuth client configuration")]
    OAuth(#[from] OAuthError),
}

impl AtprotoAuth {
    /// The flows over `sessions` and `getter` (whose client logs users in).
    #[must_use]
    pub fn new(
        sessions: SessionManager<AnyStore>,
        getter: SessionGetter<AnyStore>,
        config: WebConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions,
                getter,
                config,
            }),
        }
    }

    /// Builds everything on one store: app sessions with `sessions`, the OAuth client with
    /// `client`, and a session getter that refreshes under the store's own lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use atsession::app::SessionConfig;
    /// use atsession::auth::{AtprotoAuth, WebConfig};
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// let store = atsession::store::open("memory:").await?;
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("k1", [7; 32])?);
    /// let auth = AtprotoAuth::build(
    ///     store,
    ///     SessionConfig::default(),
    ///     OAuthClientConfig::new(metadata, keyring),
    ///     WebConfig::default(),
    /// )?;
    /// assert_eq!(auth.config().callback_path, "/oauth/callback");
    /// # Ok(()) }
    /// ```
    pub fn build(
        store: AnyStore,
        sessions: SessionConfig,
        client: OAuthClientConfig,
        config: WebConfig,
    ) -> Result<Self, BuildError> {
        let lock = store.lock();
        let sessions = SessionManager::with_config(store.clone(), sessions)?;
        let client = OAuthClient::new(client, store)?;
        let getter = SessionGetter::new(client, GetterConfig::default().lock(lock));
        Ok(Self::new(sessions, getter, config))
    }

    /// The app sessions.
    #[must_use]
    pub fn sessions(&self) -> &SessionManager<AnyStore> {
        &self.inner.sessions
    }

    /// The session getter (subscribe to its events here).
    #[must_use]
    pub fn getter(&self) -> &SessionGetter<AnyStore> {
        &self.inner.getter
    }

    /// The OAuth client.
    #[must_use]
    pub fn client(&self) -> &OAuthClient<AnyStore> {
        self.inner.getter.client()
    }

    /// The paths and pages.
    #[must_use]
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// Whether the client is confidential (publishes its metadata and keys).
    #[must_use]
    pub fn is_confidential(&self) -> bool {
        self.client().jwks().is_some()
    }

    /// Whether cookies are `Secure` (the app is served over HTTPS).
    pub(crate) fn secure(&self) -> bool {
        self.sessions().config().cookie.secure
    }

    /// The answer to `e`, through the [one table](errors): its status, `error` name and safe
    /// message as JSON, `Cache-Control: no-store`, and the session cookie cleared when the
    /// error [ended the session](AuthError::ends_session). Messages carry the causes when
    /// [`WebConfig::error_details`] is on. Server and upstream failures are logged with
    /// their causes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use atsession::app::SessionConfig;
    /// # use atsession::auth::{AtprotoAuth, WebConfig};
    /// # use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// # use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    /// # let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto")?;
    /// # let keyring = AtRestKeyring::new(AtRestKey::new("k1", [7; 32])?);
    /// # let auth = AtprotoAuth::build(atsession::store::open("memory:").await?, SessionConfig::default(),
    /// #     OAuthClientConfig::new(metadata, keyring), WebConfig::default())?;
    /// let e = auth.request_session(&http::HeaderMap::new()).await.unwrap_err();
    /// let r = auth.error_response(&e);
    /// assert_eq!(r.status(), 401);
    /// assert!(r.body().contains(r#""error":"AuthenticationRequired""#));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn error_response(&self, e: &AuthError) -> Response<String> {
        let answer = e.answer(self.config().error_details);
        errors::log(e, &answer);
        let clear = e.ends_session().then(|| self.sessions().clear_cookie());
        answer.to_response(clear)
    }

    /// The answer to a failed login: JSON for clients that [ask for it](wants_json), else a
    /// redirect to the configured [error path](WebConfig::error_path) with `?error=<code>`
    /// (or a plain-text page).
    #[must_use]
    pub fn login_error_response(&self, wants_json: bool, e: &LoginError) -> Response<String> {
        // Configured paths go through the same guard: a Location is always valid.
        let error_path = self
            .config()
            .error_path
            .as_deref()
            .map(|p| local_path(Some(p), "/"));
        e.to_response(
            wants_json,
            error_path.as_deref(),
            self.config().error_details,
        )
    }

    /// The `Set-Cookie` that removes the session cookie.
    #[must_use]
    pub fn clear_cookie(&self) -> HeaderValue {
        self.sessions().clear_cookie()
    }
}
