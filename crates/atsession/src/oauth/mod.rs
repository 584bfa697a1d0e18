//! The atproto OAuth client (feature `oauth`): identity resolution, server discovery,
//! DPoP, PAR with PKCE, the callback checks, and revocation, per the
//! [atproto OAuth profile](https://atproto.com/specs/oauth).
//!
//! # The login flow
//!
//! 1. [`OAuthClient::authorize`] takes what the user typed — a handle, a DID, or a PDS or
//!    entryway URL — and resolves it: handle → DID ([`IdentityResolver`]), DID → document → PDS,
//!    the PDS's protected-resource metadata → its authorization server, whose metadata is
//!    validated. It then sends a pushed authorization request with a PKCE
//!    S256 challenge, a DPoP proof made with a fresh key ([`DpopKey`]) and, for a
//!    confidential client, a `private_key_jwt` assertion; keeps the pending state (sealed,
//!    one-time, 10 minutes) in the store; and returns the URL to send the user to.
//! 2. The user signs in at their server and is redirected back with `state`, `iss` and
//!    `code` (or `error`).
//! 3. [`OAuthClient::callback`] takes the pending state (a replay fails), checks `iss`
//!    (RFC 9207), exchanges the code (PKCE verifier, DPoP, client authentication), checks
//!    the token response ([`TokenSet`]), checks that the account's PDS is protected by this
//!    same issuer, and stores the grant — token set, DPoP key, client auth — sealed under
//!    a fresh [`GrantId`](crate::store::oauth::GrantId), so each device has its own grant.
//! 4. [`OAuthClient::pds_request`] makes DPoP-signed calls to the user's PDS;
//!    [`OAuthClient::revoke`] logs out (revokes at the server, then deletes). Through the
//!    session layer, [`OAuthSession::send`] streams calls of any size both ways
//!    ([`PdsRequest`], [`PdsBody`], [`PdsResponse`]), only ever to the grant's own PDS
//!    origin ([`check_path`], [`PDS_REQUEST_HEADERS`]).
//!
//! # Permission scopes
//!
//! [`scope`] models the atproto permission scopes (`repo:`, `rpc:`, `blob:`, `account:`,
//! `identity:`, `include:`, the `transition:` scopes) and answers what a grant permits.
//! [`OAuthClient::authorize`] refuses a scope the client metadata does not declare before
//! anything is sent; the granted scope is stored from every token response (login,
//! refresh, upgrade); a PDS's `403 ScopeMissingError` is
//! [`GrantError::ScopeMissing`]; and [`OAuthClient::authorize_upgrade`] adds permissions
//! to a grant in place ([`ScopeUpgrade`]). [`PermissionSet`] checks a permission-set lexicon.
//!
//! Outside [development mode](HttpOptions::dev_mode) every fetch is `https`, to
//! public addresses only, time-limited, and never follows redirects. Discovery and
//! authorization-server documents are size-limited; PDS calls are not (unless the app sets
//! [`PdsOptions::max_body`]) and have an idle timeout instead of a whole-call one.
//!
//! ```no_run
//! use atsession::crypto::{AtRestKey, AtRestKeyring};
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

/// The HTTP client crate the OAuth client is built on (for [`OAuthClientConfig::http_client`]).
pub use reqwest;
/// The URL crate of this API's URLs.
pub use url::{self, Url};

// The client: configuration, login, grants, and its errors.
pub use client::client_metadata::{ClientAuth, ClientMetadata, first_undeclared};
pub use client::error::{CallbackError, ClientConfigError, OAuthError};
pub use client::grant::{Grant, refresh_lock_key};
pub use client::key_rotation;
pub use client::keys::{Jwks, Keyset};
pub use client::token::{TokenResponseError, TokenSet};
pub use client::upgrade::{ScopeUpgrade, upgrade_scope};
pub use client::{
    AuthorizeOptions, Callback, CallbackParams, DEFAULT_METADATA_TTL, DEFAULT_STATE_TTL,
    MAX_APP_STATE_LEN, OAuthClient, OAuthClientConfig, Prompt,
};
// The session layer: the getter, the session handle, events.
pub use session::events::{DeleteCause, SessionEvent, TokenSetInfo};
pub use session::getter::{
    GetterConfig, GrantError, Refresh, RetryReason, SessionGetter, token_info,
};
pub use session::oauth_session::OAuthSession;
// Discovery: identities, server metadata.
pub use discovery::identity::{
    AtIdentifier, DEFAULT_PLC_URL, DidDocument, DidService, HandleResolver, IdentityConfig,
    IdentityError, IdentityResolver, MAX_CACHE_TTL, ResolvedIdentity,
};
pub use discovery::metadata::{AuthMethodKind, MetadataError};
// The wire: HTTP limits, DPoP, JOSE keys, and the PDS call.
pub use wire::dpop::{DpopAlg, DpopKey, ath, htu};
pub use wire::http::{
    DEFAULT_MAX_BODY, DEFAULT_PDS_CONNECT_TIMEOUT, DEFAULT_PDS_IDLE_TIMEOUT, DEFAULT_TIMEOUT,
    Fetched, HttpError, HttpOptions, PdsOptions, build_client, build_pds_client, check_url,
};
pub use wire::jose::{EcKey, JoseError, Jwk, Secp256k1Key};
pub use wire::pds_headers::{PDS_REQUEST_HEADERS, forwardable_headers, is_forwardable};
pub use wire::pds_path::{check_path, pds_url};
pub use wire::pds_request::{BodyStream, BoxError, PdsBody, PdsRequest};
pub use wire::pds_response::PdsResponse;
// The permission scopes an app meets most (the rest is in [`scope`]).
pub use scope::{PermissionSet, Scope, ScopeError, ScopeMissing, ScopeSet};
