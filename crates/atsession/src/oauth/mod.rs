//! The atproto OAuth client (feature `oauth`): identity resolution, server discovery,
//! DPoP, PAR with PKCE, the callback checks, and revocation, per the
//! [atproto OAuth profile](https://atproto.com/specs/oauth).
//!
//! # The login flow
//!
//! 1. [`OAuthClient::authorize`] takes what the user typed — a handle, a DID, or a PDS or
//!    entryway URL — and resolves it: handle → DID ([`identity`]), DID → document → PDS,
//!    the PDS's protected-resource metadata → its authorization server, whose metadata is
//!    validated ([`metadata`]). It then sends a pushed authorization request with a PKCE
//!    S256 challenge ([`pkce`]), a DPoP proof made with a fresh key ([`dpop`]) and, for a
//!    confidential client, a `private_key_jwt` assertion; keeps the pending state (sealed,
//!    one-time, 10 minutes) in the store; and returns the URL to send the user to.
//! 2. The user signs in at their server and is redirected back with `state`, `iss` and
//!    `code` (or `error`).
//! 3. [`OAuthClient::callback`] takes the pending state (a replay fails), checks `iss`
//!    (RFC 9207), exchanges the code (PKCE verifier, DPoP, client authentication), checks
//!    the token response ([`token`]), checks that the account's PDS is protected by this
//!    same issuer, and stores the grant — token set, DPoP key, client auth — sealed under
//!    a fresh [`GrantId`](crate::store::oauth::GrantId), so each device has its own grant.
//! 4. [`OAuthClient::pds_request`] makes DPoP-signed calls to the user's PDS;
//!    [`OAuthClient::revoke`] logs out (revokes at the server, then deletes). Through the
//!    session layer, [`OAuthSession::send`] streams calls of any size both ways
//!    ([`PdsRequest`], [`PdsBody`], [`PdsResponse`]), only ever to the grant's own PDS
//!    origin ([`pds_path`], [`pds_headers`]).
//!
//! # Permission scopes
//!
//! [`scope`] models the atproto permission scopes (`repo:`, `rpc:`, `blob:`, `account:`,
//! `identity:`, `include:`, the `transition:` scopes) and answers what a grant permits.
//! [`OAuthClient::authorize`] refuses a scope the client metadata does not declare before
//! anything is sent; the granted scope is stored from every token response (login,
//! refresh, upgrade); a PDS's `403 ScopeMissingError` is
//! [`GrantError::ScopeMissing`]; and [`OAuthClient::authorize_upgrade`] adds permissions
//! to a grant in place ([`upgrade`]). [`permission_set`] checks a permission-set lexicon.
//!
//! Outside [development mode](http::HttpOptions::dev_mode) every fetch is `https`, to
//! public addresses only, time-limited, and never follows redirects. Discovery and
//! authorization-server documents are size-limited; PDS calls are not (unless the app sets
//! [`PdsOptions::max_body`]) and have an idle timeout instead of a whole-call one.
//!
//! ```no_run
//! use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
//! use atsession::oauth::{
//!     AuthorizeOptions, CallbackParams, ClientMetadata, OAuthClient, OAuthClientConfig,
//! };
//! use atsession::store::sqlite::SqliteStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A loopback (public) client; a web app would use ClientMetadata::confidential with a
//! // Keyset, and serve client.metadata() at its client_id URL.
//! let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
//! // Grants and pending states are encrypted at rest under a key the app holds.
//! let keyring = AtRestKeyring::new(AtRestKey::from_spec(&std::env::var("AT_REST_KEY")?)?);
//! let store = SqliteStore::open("app.db").await?;
//! let client = OAuthClient::new(OAuthClientConfig::new(metadata, keyring), store)?;
//!
//! // 1. Where to send the user.
//! let url = client
//!     .authorize("alice.bsky.social", AuthorizeOptions {
//!         app_state: Some("/after-login".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("log in at {url}");
//!
//! // 3. Back from the server: the redirect's query string.
//! let query = "state=…&iss=https%3A%2F%2Fbsky.social&code=…";
//! let login = client.callback(&CallbackParams::from_query(query)?).await?;
//! println!("logged in as {} (grant {})", login.grant.token_set.sub, login.grant.grant_id);
//!
//! // 4. An authenticated call, then logout.
//! let res = client
//!     .pds_request(&login.grant, atsession::oauth::reqwest::Method::GET,
//!                  "/xrpc/com.atproto.server.getSession", None)
//!     .await?;
//! assert!(res.status.is_success());
//! client.revoke(&login.grant.grant_id).await?;
//! # Ok(()) }
//! ```

mod client;
mod discovery;
pub mod scope;
mod session;
mod wire;

pub use client::{client_metadata, error, grant, key_rotation, token, upgrade};
pub use discovery::{identity, keys, metadata};

pub use session::{events, getter, oauth_session};
pub use wire::{dpop, http, jose, pds_headers, pds_path, pds_request, pds_response, pkce};

/// The HTTP client crate the OAuth client is built on (for [`OAuthClientConfig::http_client`]).
pub use reqwest;
/// The URL crate of this API's URLs.
pub use url::{self, Url};

pub use client::{
    AuthorizeOptions, Callback, CallbackParams, DEFAULT_STATE_TTL, MAX_APP_STATE_LEN, OAuthClient,
    OAuthClientConfig, Prompt,
};
pub use client_metadata::{ClientAuth, ClientMetadata};
pub use error::{CallbackError, ClientConfigError, OAuthError};
pub use events::{DeleteCause, SessionEvent, TokenSetInfo};
pub use getter::{GetterConfig, GrantError, Refresh, RetryReason, SessionGetter};
pub use grant::{Grant, refresh_lock_key};
pub use http::PdsOptions;
pub use oauth_session::OAuthSession;
pub use pds_request::{PdsBody, PdsRequest};
pub use pds_response::PdsResponse;
pub use scope::PermissionSet;
pub use scope::{Scope, ScopeError, ScopeMissing, ScopeSet};
pub use token::TokenSet;
pub use upgrade::ScopeUpgrade;
