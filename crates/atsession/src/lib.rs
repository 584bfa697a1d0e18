//! # atsession
//!
//! Session management for AT Protocol (atproto, Bluesky) applications: the app's own login
//! sessions, kept on real storage, safe by default.
//!
//! ## Names
//!
//! One concept, one name:
//!
//! | concept | name | module |
//! |---|---|---|
//! | the app's own login session (server-side, in a store) | [`Session`](app::Session), kept as a [`StoredSession`](app::StoredSession), run by a [`SessionManager`](app::SessionManager) | [`app`] |
//! | a stateless session sealed into a cookie or token (Iron) | [`SealedSessions`](seal::SealedSessions) | [`seal`] |
//! | what the app holds as an OAuth client of the user's PDS: a *grant* | [`Grant`](oauth::Grant) (token set, DPoP key, client auth), named by a [`GrantId`](store::oauth::GrantId), stored sealed as a [`StoredGrant`](store::oauth::StoredGrant) in a [`GrantStore`](store::oauth::GrantStore) | [`oauth`], [`store::oauth`] |
//! | a pending login, between authorize and callback | [`StoredAuthState`](store::oauth::StoredAuthState) in a [`StateStore`](store::oauth::StateStore) | [`store::oauth`] |
//! | the handle to call the PDS with a grant, and the refresher behind it (the reference client's names) | [`OAuthSession`](oauth::OAuthSession), [`SessionGetter`](oauth::SessionGetter) | [`oauth`] |
//! | the flows of Bluesky login for any web framework, and their one error | [`AtprotoAuth`](auth::AtprotoAuth), [`AuthError`](auth::AuthError) | [`auth`] |
//! | a backend: its store, its lock and its schema, in one module | [`SqliteStore`](store::sqlite::SqliteStore) and [`SqliteLock`](store::sqlite::SqliteLock) in [`store::sqlite`], and so on; [`MemoryStore`](store::MemoryStore) and [`MemoryLock`](store::MemoryLock) | [`store`] |
//!
//! An app session links to its grant by [`GrantId`](store::oauth::GrantId)
//! ([`StoredSession::grant_id`](app::StoredSession::grant_id), read through the session),
//! so that logout can revoke the grant.
//!
//! One error type per module: [`app::SessionError`] (and [`app::SessionConfigError`] for a
//! configuration that cannot work), [`seal::SealedSessionError`] (wrapping the Iron format's
//! [`seal::SealError`]),
//! [`store::StoreError`], [`lock::LockError`], and with the feature `oauth`:
//! [`oauth::OAuthError`] (the client; [`oauth::ClientConfigError`] and
//! [`oauth::CallbackError`] inside it), [`oauth::GrantError`] (getting, refreshing and
//! using a grant) and [`auth::AuthError`] (the flows; [one table](auth::errors) turns each
//! error into its HTTP answer).
//!
//! ## App sessions in five lines
//!
//! A [`SessionManager`](app::SessionManager) over a [store] creates a session when a
//! user logs in, finds it again from each request's cookie or `Authorization: Bearer` header,
//! and ends it on logout. The client gets a 256-bit random token; the store keeps only its
//! SHA-256.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use atsession::app::SessionManager;
//! use atsession::store::sqlite::SqliteStore;
//!
//! let store = SqliteStore::open_in_memory().await?; // or SqliteStore::open("sessions.db")
//! let sessions = SessionManager::new(store);
//!
//! // Login: the DID and handle come from your atproto OAuth callback.
//! let new = sessions
//!     .create("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "alice.bsky.social", serde_json::json!({"lang": "en"}))
//!     .await?;
//! let set_cookie = sessions.set_cookie(&new); // `Set-Cookie: __Host-atsession=…; HttpOnly; Secure; …`
//!
//! // Each request: the browser sends the cookie back.
//! let request = http::Request::builder()
//!     .header("cookie", format!("__Host-atsession={}", new.token.expose()))
//!     .body(())?;
//! let found = sessions.load_from_request(&request).await?;
//! assert_eq!(found.session.did.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
//!
//! // Logout.
//! sessions.delete(&found.session.id).await?;
//! let clear = sessions.clear_cookie(); // `Set-Cookie: __Host-atsession=; Max-Age=0; …`
//! # let _ = (set_cookie, clear); Ok(()) }
//! ```
//!
//! ## Mobile clients: Bearer access tokens
//!
//! Turn on short-lived access tokens and a session gets two tokens: the long-lived session
//! token (kept by the app, used only to refresh) and a 15-minute access token sent as
//! `Authorization: Bearer`. Only hashes of both are stored.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use atsession::app::{SessionConfig, SessionManager};
//! use atsession::store::MemoryStore;
//!
//! let config = SessionConfig::default().access_tokens(SessionConfig::DEFAULT_ACCESS_TOKEN_TTL);
//! let sessions = SessionManager::with_config(MemoryStore::new(), config)?;
//! let new = sessions.create("did:plc:abc", "alice.test", ()).await?;
//! let access = new.access_token.expect("access tokens are on");
//! sessions.load_by_access_token(access.expose()).await?;
//!
//! // Fifteen minutes later the client refreshes with its session token:
//! let refreshed = sessions.refresh(new.token.expose()).await?;
//! assert!(sessions.load_by_access_token(access.expose()).await.is_err()); // the old one is dead
//! # let _ = refreshed; Ok(()) }
//! ```
//!
//! ## Updating session data without losing writes
//!
//! Every session carries a version. [`update`](app::SessionManager::update) writes only if
//! the session is still at the version you read; otherwise it returns
//! [`SessionError::Conflict`](app::SessionError::Conflict) and writes nothing. A session that
//! was deleted (logout on another tab) is never written back.
//!
//! ## Every device, every account
//!
//! Sessions are indexed by DID: [`list`](app::SessionManager::list) shows an account's
//! sessions, [`delete_all`](app::SessionManager::delete_all) signs it out everywhere, and
//! [`spawn_cleanup`](app::SessionManager::spawn_cleanup) deletes expired sessions in the
//! background.
//!
//! ## Stateless sessions: Iron seals
//!
//! When the app keeps no server-side store, [`seal::SealedSessions`] keeps typed data sealed
//! in the cookie (or a Bearer token) in the Iron `Fe26.2` format, byte-compatible with
//! `@hapi/iron`, `iron-webcrypto` and `iron-session`: a Node app and a Rust app with the same
//! password read each other's cookies.
//!
//! ```
//! use atsession::seal::SealedSessions;
//!
//! let sessions = SealedSessions::<String>::new("a secret of at least 32 characters!!")?;
//! let token = sessions.seal_bearer(&"did:plc:alice".to_owned())?;
//! assert!(token.starts_with("Fe26.2*"));
//! # Ok::<(), atsession::seal::SealedSessionError>(())
//! ```
//!
//! ## Logging users in: atproto OAuth
//!
//! With the feature `oauth`, [`oauth::OAuthClient`] is the app's OAuth client of the user's
//! PDS: it resolves the handle, discovers and validates the authorization server, sends a
//! pushed authorization request with PKCE and DPoP, checks the callback and stores the
//! grant — token set and DPoP key encrypted at rest ([`crypto`]) — per device in a
//! [`GrantStore`](store::oauth::GrantStore). The [`oauth`] module teaches the flow; its
//! result's DID and handle go to
//! [`SessionManager::create_with`](app::SessionManager::create_with) together with the
//! [`GrantId`](store::oauth::GrantId), so that logout can revoke the grant. The
//! [`SessionGetter`](oauth::SessionGetter) refreshes a grant once across processes (under the
//! store's lock) and hands out [`OAuthSession`](oauth::OAuthSession)s for DPoP-signed calls
//! to the user's PDS; what goes wrong there is an [`oauth::GrantError`].
//!
//! ## Stores, chosen at run time
//!
//! | backend | type | feature | URL for [`store::open`] |
//! |---|---|---|---|
//! | in-process memory | [`MemoryStore`](store::MemoryStore) | always | `memory:` |
//! | SQLite (embedded default) | [`SqliteStore`](store::sqlite::SqliteStore) | `sqlite` (default) | `sqlite://app.db`, or a bare path |
//! | PostgreSQL | `PostgresStore` (`store::postgres`) | `postgres` | `postgres://user@host/db` (TLS: `?sslmode=verify-full`, `&sslrootcert=ca.pem`) |
//! | Redis / Valkey | `RedisStore` (`store::redis`) | `redis` | `redis://host:6379`, `rediss://host` (TLS) |
//!
//! Every store keeps app sessions, pending OAuth states and OAuth grants, and has a lock of
//! its own for refreshes across processes (the [`lock::Lock`] trait), in the same module:
//! [`store::sqlite::SqliteLock`] beside [`SqliteStore`](store::sqlite::SqliteStore), and so on. [`store::open`] gives an
//! [`AnyStore`](store::AnyStore) for whichever URL the app is configured with, so that the
//! same code runs on every backend:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use atsession::app::SessionManager;
//!
//! let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "memory:".into());
//! let store = atsession::store::open(&url).await?;
//! let lock = store.lock(); // the same backend's lock, for the OAuth session getter
//! let sessions = SessionManager::new(store);
//! # let _ = (lock, sessions); Ok(()) }
//! ```
//!
//! The store traits are object-safe (`dyn SessionStore`, `Arc<dyn Store>`): a store written
//! elsewhere implements them (each method returns a [`StoreFuture`](store::StoreFuture)),
//! joins [`AnyStore`](store::AnyStore) with [`AnyStore::custom`](store::AnyStore::custom),
//! and passes the same conformance suites as every backend here, which are public (feature
//! `conformance`), with one macro call each. See [`store`].
//!
//! ## Bluesky login in any web framework
//!
//! With the feature `oauth`, [`auth`] puts the pieces above together into the flows every
//! web app needs, as plain async methods of [`AtprotoAuth`](auth::AtprotoAuth) over
//! [`http`] types: start a login (the authorization server's URL and a cookie that binds the
//! login to the browser, against login CSRF), complete it (the grant checked and stored, the
//! handle checked both ways, the app session and its cookie), the request's session and, on
//! demand, its grant's [`OAuthSession`](oauth::OAuthSession), sign out (one session, or an
//! account everywhere, always revoking at the server), and the cleanup of expired sessions
//! with their grants. Every failure is an [`AuthError`](auth::AuthError), and
//! [one table](auth::errors) gives each its status, a stable `error` name and a safe message.
//!
//! A framework needs only an adapter that routes requests to these methods and converts
//! their `http::Response<String>` answers; `examples/hyper_app.rs` is a whole app on plain
//! hyper, with no web framework:
//!
//! ```no_run
//! # async fn demo(auth: atsession::auth::AtprotoAuth, request: http::Request<()>) -> http::Response<String> {
//! let (query, headers) = (request.uri().query().unwrap_or(""), request.headers());
//! match request.uri().path() {
//!     "/oauth/login" => auth.login_route(query, headers).await,
//!     "/oauth/callback" => auth.callback_route(query, headers).await,
//!     "/oauth/logout" => auth.logout_route(headers).await,
//!     _ => match auth.request_session(headers).await {
//!         Ok(found) => http::Response::new(format!("hello {}", found.session.handle)),
//!         Err(e) => auth.error_response(&e), // 401 AuthenticationRequired, …
//!     },
//! }
//! # }
//! ```
//!
//! ## The axum adapter
//!
//! With the feature `axum`, [`axum`](mod@axum) wires the same flows into an axum app: login
//! routes to merge into the app's router (`/oauth/login`, `/oauth/callback`,
//! `/oauth/logout`, and a confidential client's metadata and keys), extractors that do not
//! name the store (`Session`, `Option<Session>`, `AtprotoSession` for DPoP-signed calls to
//! the user's PDS, `RequireScope`), and a layer that keeps the session cookie alive. The
//! example `examples/axum_app.rs` is a whole app.
//!
//! ## Errors and secrets
//!
//! Every failure is a typed error, one per module (see [Names](#names)); bad input never panics and never changes what is
//! stored. Tokens ([`secret::Token`]) print as `<redacted>`, are compared in constant time,
//! and are wiped from memory when dropped.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link to items of every feature; a build without some of them renders those links
// as plain text (docs.rs builds with all features).
#![cfg_attr(
    not(all(
        feature = "oauth",
        feature = "axum",
        feature = "postgres",
        feature = "redis"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

pub mod app;
#[cfg(feature = "oauth")]
pub mod auth;
#[cfg(feature = "axum")]
pub mod axum;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
mod error_chain;
pub mod lock;
#[cfg(feature = "oauth")]
pub mod oauth;
pub mod seal;
pub mod secret;
pub mod store;
pub mod syntax;

pub use error_chain::ErrorChain;
