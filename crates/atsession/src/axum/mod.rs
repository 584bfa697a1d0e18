//! The axum adapter (feature `axum`): Bluesky (atproto OAuth) login for any axum app, on any
//! store chosen at run time.
//!
//! The flows are the framework-neutral ones of [`auth`](crate::auth); this module only wires
//! them into axum: routes, extractors, the cookie layer and the rejection.
//!
//! - [`AtprotoAuth`] is the state the layer shares: the app sessions, the session getter and
//!   its OAuth client, all over an [`AnyStore`](crate::store::AnyStore) opened from a URL,
//!   and the [`WebConfig`] (paths, pages).
//! - [`AtprotoAuth::router`] gives the login routes to merge into the app's router:
//!   `GET /oauth/login`, `GET /oauth/callback`, `POST /oauth/logout`, and for confidential
//!   clients the client metadata and JWKS (each a thin handler over the route of
//!   [`auth`](crate::auth), such as [`AtprotoAuth::login_route`]).
//! - Extractors that do not name the store: [`Session`] (and `Option<Session>`),
//!   [`AtprotoSession`] (the user's [`OAuthSession`](crate::oauth::OAuthSession) for
//!   DPoP-signed PDS calls), [`RequireScope`].
//! - [`AtprotoAuth::layer`] puts the refreshed session cookie on responses, so handlers need
//!   no code for it.
//!
//! **Login CSRF.** Each login is bound to the browser that started it
//! (see [`auth`](crate::auth)): a
//! callback URL followed in another browser creates nothing and answers
//! [`LoginErrorCode::OtherBrowser`] ("this login was started in another browser").
//!
//! **One way to sign out.** The logout route, [`AtprotoAuth::sign_out`] and
//! [`AtprotoAuth::sign_out_everywhere`] sign grants out through the
//! [`SessionGetter`](crate::oauth::SessionGetter), so its
//! [`Deleted`](crate::oauth::SessionEvent::Deleted) event fires for every sign-out.
//!
//! ```no_run
//! use atsession::app::SessionConfig;
//! use atsession::axum::{AtprotoAuth, AtprotoSession, Session, WebConfig};
//! use atsession::crypto::{AtRestKey, AtRestKeyring};
//! use atsession::oauth::{ClientMetadata, OAuthClientConfig};
//! use axum::{Router, routing::get};
//!
//! async fn home(session: Option<Session>) -> String {
//!     match session {
//!         Some(s) => format!("hello {}", s.handle),
//!         None => "<a href=/oauth/login?identifier=alice.bsky.social>log in</a>".into(),
//!     }
//! }
//!
//! async fn me(user: AtprotoSession) -> String {
//!     let me: serde_json::Value = user
//!         .oauth
//!         .xrpc_query("com.atproto.server.getSession", &[])
//!         .await
//!         .unwrap_or_default();
//!     me.to_string()
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = atsession::store::open(&std::env::var("DATABASE_URL")?).await?; // any backend
//! let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto")?;
//! let keyring = AtRestKeyring::new(AtRestKey::from_spec(&std::env::var("AT_REST_KEY")?)?);
//! let auth = AtprotoAuth::build(
//!     store,
//!     SessionConfig::default(),
//!     OAuthClientConfig::new(metadata, keyring),
//!     WebConfig::default().redirect_uri("http://127.0.0.1:8080/oauth/callback"),
//! )?;
//! let app = Router::new()
//!     .route("/", get(home))
//!     .route("/me", get(me))
//!     .merge(auth.router())
//!     .layer(auth.layer())
//!     .with_state(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod current;
mod errors;
mod extract;
mod layer;
mod login;

pub use crate::auth::{AtprotoAuth, LoginErrorCode, WebConfig};
pub use current::CurrentSession;
pub use errors::AuthRejection;
pub use extract::{AtprotoSession, LoadedGrant, RequireScope, RequiredScope, Session};
pub use layer::{SessionCookieLayer, SessionCookieService};
