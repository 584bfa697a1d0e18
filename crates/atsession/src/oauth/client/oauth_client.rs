//! The OAuth client: `authorize`, `callback`, `revoke`, and the calls the session layer
//! builds on (`refresh`, authenticated PDS requests).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::client_metadata::{ClientAuth, ClientMetadata, first_undeclared};
use super::error::{CallbackError, ClientConfigError, OAuthError};
use super::grant::Grant;
use super::server::Agent;
use super::state::{AuthState, UpgradeTarget};
use super::token::TokenSet;
use super::upgrade::ScopeUpgrade;
use crate::clock::{Clock, SystemClock, truncate_ms};
use crate::crypto::at_rest::AtRestKeyring;
use crate::oauth::discovery::identity::{AtIdentifier, IdentityConfig, IdentityResolver};
use crate::oauth::discovery::keys::{Jwks, Keyset};
use crate::oauth::discovery::metadata::{
    AuthMethodKind, AuthorizationServer, MetadataResolver, ServiceMetadata,
};
use crate::oauth::scope::ScopeSet;
use crate::oauth::wire::dpop::{self, DpopAlg, DpopKey, DpopNonces, PROBE_PATH};
use crate::oauth::wire::http::{
    Fetched, Http, HttpError, HttpOptions, PdsHttp, PdsOptions, build_client, build_pds_client,
};
use crate::oauth::wire::jose::b64url;
use crate::oauth::wire::pds_headers::first_refused;
use crate::oauth::wire::pds_path::pds_url;
use crate::oauth::wire::pds_request::{PdsBody, PdsRequest};
use crate::oauth::wire::pds_response::PdsResponse;
use crate::oauth::wire::pkce::Pkce;
use crate::secret::{TokenHash, random_bytes};
use crate::store::oauth::{GrantId, GrantStore, StateStore};
use crate::syntax::Did;

/// How long a pending authorization lives by default.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// The longest [`AuthorizeOptions::app_state`], in bytes: it is stored with every pending
/// login, and logins can be started by anyone.
pub const MAX_APP_STATE_LEN: usize = 2048;
/// How long server metadata is cached by default.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(60);

/// Everything an [`OAuthClient`] is made from.
pub struct OAuthClientConfig {
    /// The client's metadata (its `client_id`, redirect URIs, scope, auth method).
    pub metadata: ClientMetadata,
    /// The signing keys of a `private_key_jwt` client.
    pub keyset: Option<Keyset>,
    /// Where identities are resolved.
    pub identity: IdentityConfig,
    /// Request limits and development mode of discovery and authorization-server requests.
    pub http: HttpOptions,
    /// Limits of the calls to a grant's PDS: no body cap by default, a connect timeout and
    /// an idle timeout (see [`PdsOptions`]).
    pub pds: PdsOptions,
    /// Your own HTTP client, instead of the ones [`build_client`] and [`build_pds_client`]
    /// make; it is used for PDS calls too. It should not follow redirects nor have a
    /// whole-call timeout shorter than your largest PDS transfer; the URL policy, size
    /// limits and idle timeouts are applied either way, but only the built-in clients also
    /// refuse host names resolving to private addresses.
    pub http_client: Option<reqwest::Client>,
    /// The keys that seal states and grants at rest.
    pub keyring: AtRestKeyring,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// How long a pending authorization lives (10 minutes by default).
    pub state_ttl: Duration,
    /// How long server metadata is cached (1 minute by default).
    pub metadata_ttl: Duration,
    /// The algorithm of new grants' DPoP keys when the authorization server offers it
    /// (`ES256K` by default, as the reference client); otherwise the other one. Grants keep
    /// the key they were made with.
    pub dpop_alg: DpopAlg,
}

impl fmt::Debug for OAuthClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClientConfig")
            .field("client_id", &self.metadata.client_id)
            .field("http", &self.http)
            .field("pds", &self.pds)
            .finish_non_exhaustive()
    }
}

impl OAuthClientConfig {
    /// A configuration with defaults: the public PLC directory, standard handle resolution,
    /// production HTTP policy, system clock.
    #[must_use]
    pub fn new(metadata: ClientMetadata, keyring: AtRestKeyring) -> Self {
        Self {
            metadata,
            keyset: None,
            identity: IdentityConfig::default(),
            http: HttpOptions::default(),
            pds: PdsOptions::default(),
            http_client: None,
            keyring,
            clock: Arc::new(SystemClock),
            state_ttl: DEFAULT_STATE_TTL,
            metadata_ttl: DEFAULT_METADATA_TTL,
            dpop_alg: DpopAlg::Es256k,
        }
    }

    /// Sets the keyset (required for `private_key_jwt`).
    #[must_use]
    pub fn keyset(mut self, keyset: Keyset) -> Self {
        self.keyset = Some(keyset);
        self
    }

    /// Sets where identities are resolved.
    #[must_use]
    pub fn identity(mut self, identity: IdentityConfig) -> Self {
        self.identity = identity;
        self
    }

    /// Development mode: allows `http` and loopback addresses. Never in production.
    #[must_use]
    pub fn dev_mode(mut self, on: bool) -> Self {
        self.http.dev_mode = on;
        self
    }

    /// Sets the limits of PDS calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::http::PdsOptions;
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("2026-11", [7; 32])?);
    /// let config = OAuthClientConfig::new(metadata, keyring).pds_options(PdsOptions {
    ///     idle_timeout: Duration::from_secs(120),
    ///     max_body: Some(512 * 1024 * 1024),
    ///     ..PdsOptions::default()
    /// });
    /// assert_eq!(config.pds.idle_timeout, Duration::from_secs(120));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pds_options(mut self, pds: PdsOptions) -> Self {
        self.pds = pds;
        self
    }

    /// Uses your own HTTP client.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the algorithm new grants' DPoP keys use when the authorization server offers it
    /// (`ES256K` by default); a server that offers only the other gets the other.
    ///
    /// ```
    /// use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::dpop::DpopAlg;
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("2026-11", [7; 32])?);
    /// let config = OAuthClientConfig::new(metadata, keyring).dpop_alg(DpopAlg::Es256);
    /// assert_eq!(config.dpop_alg, DpopAlg::Es256);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn dpop_alg(mut self, alg: DpopAlg) -> Self {
        self.dpop_alg = alg;
        self
    }
}

/// What `authorize` may be told besides the login input.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeOptions {
    /// The scope to ask for; the client metadata's scope by default.
    pub scope: Option<String>,
    /// Opaque data handed back by `callback` (where to go after login, …). Stored sealed.
    pub app_state: Option<String>,
    /// The redirect URI; the client's first by default.
    pub redirect_uri: Option<String>,
    /// `prompt`: what the authorization server should show (sign in again, consent, …).
    pub prompt: Option<Prompt>,
    /// `login_hint`: the account the authorization server should preselect. By default the
    /// identifier as the user typed it, without a leading `@` (a handle or a DID, not the
    /// DID a handle resolves to; none for a PDS URL).
    pub login_hint: Option<String>,
    /// Binds the login to the browser that starts it (login CSRF): the SHA-256 of a random
    /// value that browser keeps (in a cookie). [`OAuthClient::callback`] then requires the
    /// same value in [`CallbackParams::browser_binding`] before anything is exchanged or
    /// stored. The web layer sets both.
    pub browser_binding: Option<TokenHash>,
}

/// The `prompt` parameter of an authorization request (OpenID Connect Core §3.1.2.1, as the
/// atproto authorization server reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prompt {
    /// `login`: ask for the password even if the browser is signed in.
    Login,
    /// `none`: show nothing; fail if the user would have to act.
    None,
    /// `consent`: ask for consent even if it was given before.
    Consent,
    /// `select_account`: let the user pick among the accounts signed in.
    SelectAccount,
    /// `create`: offer to create an account.
    Create,
}

impl Prompt {
    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::None => "none",
            Self::Consent => "consent",
            Self::SelectAccount => "select_account",
            Self::Create => "create",
        }
    }

    /// Parses a parameter value.
    ///
    /// ```
    /// use atsession::oauth::Prompt;
    /// assert_eq!(Prompt::parse("select_account"), Some(Prompt::SelectAccount));
    /// assert_eq!(Prompt::parse("always"), None);
    /// ```
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "login" => Self::Login,
            "none" => Self::None,
            "consent" => Self::Consent,
            "select_account" => Self::SelectAccount,
            "create" => Self::Create,
            _ => return None,
        })
    }
}

/// The query parameters of an authorization response. Its `Debug` output hides `code` and
/// `state`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CallbackParams {
    /// `state`.
    pub state: Option<String>,
    /// `iss` (RFC 9207).
    pub iss: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
    /// The browser's binding value (from its cookie, never from the query), for logins
    /// started with [`AuthorizeOptions::browser_binding`].
    #[serde(skip)]
    pub browser_binding: Option<crate::secret::SecretString>,
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("CallbackParams")
            .field("state", &hidden(&self.state))
            .field("iss", &self.iss)
            .field("code", &hidden(&self.code))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

impl CallbackParams {
    /// Parses a query string (with or without the leading `?`). A parameter that appears
    /// twice is refused.
    pub fn from_query(query: &str) -> Result<Self, CallbackError> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "state" => &mut p.state,
                "iss" => &mut p.iss,
                "code" => &mut p.code,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                _ => continue,
            };
            if seen.insert(k.to_string(), ()).is_some() {
                return Err(CallbackError::DuplicateParameter(k.into_owned()));
            }
            *slot = Some(v.into_owned());
        }
        Ok(p)
    }
}

/// A completed login.
#[derive(Debug)]
pub struct Callback {
    /// The new grant, stored (for a scope upgrade: the upgraded grant, same id).
    pub grant: Grant,
    /// The app state given to `authorize`.
    pub app_state: Option<String>,
    /// Set when this callback completed a scope upgrade
    /// ([`OAuthClient::authorize_upgrade`]) of an existing grant: the grant id is the one
    /// the app sessions already hold, so an app keeps its session instead of creating one.
    pub upgrade: Option<ScopeUpgrade>,
}

/// Refuses app state longer than [`MAX_APP_STATE_LEN`] before anything is sent or stored.
pub(crate) fn check_app_state(app_state: Option<&str>) -> Result<(), OAuthError> {
    match app_state.map(str::len) {
        Some(len) if len > MAX_APP_STATE_LEN => Err(OAuthError::AppStateTooLong { len }),
        _ => Ok(()),
    }
}

/// What an authorization request carries into its pending state.
pub(crate) struct PendingRequest {
    pub(crate) auth: ClientAuth,
    pub(crate) scope: String,
    pub(crate) redirect_uri: String,
    pub(crate) login_hint: Option<String>,
    pub(crate) prompt: Option<Prompt>,
    pub(crate) app_state: Option<String>,
    pub(crate) upgrade: Option<UpgradeTarget>,
    /// Hex SHA-256 of the browser binding, when the login is bound to a browser.
    pub(crate) binding: Option<String>,
}

/// The parts of a client that do not depend on the store.
pub(crate) struct Core {
    pub(crate) http: Http,
    pub(crate) pds: PdsHttp,
    /// Nonces of authorization servers (PAR, token, revocation), by origin.
    pub(crate) nonces: DpopNonces,
    /// Nonces of PDSes as resource servers, by origin: kept apart from the authorization
    /// servers' even when one origin is both, since each side rotates its own.
    pub(crate) pds_nonces: DpopNonces,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metadata: ClientMetadata,
    pub(crate) keyset: Option<Keyset>,
    pub(crate) identity: IdentityResolver,
    pub(crate) servers: MetadataResolver,
    pub(crate) keyring: AtRestKeyring,
    pub(crate) state_ttl: Duration,
    pub(crate) dpop_alg: DpopAlg,
}

/// The atproto OAuth client. Cheap to clone; clones share caches and the DPoP nonces.
///
/// `S` stores the pending authorization states and the grants (both sealed): a
/// [`MemoryStore`](crate::store::MemoryStore), a
/// [`SqliteStore`](crate::store::sqlite::SqliteStore), or your own.
pub struct OAuthClient<S> {
    core: Arc<Core>,
    store: S,
}

impl Core {
    /// The algorithm of a new grant's DPoP key at `server`: the configured one when offered,
    /// else the other (validated metadata offers at least one of the two).
    pub(crate) fn dpop_alg_for(&self, server: &AuthorizationServer) -> DpopAlg {
        let offered = &server.metadata.dpop_signing_alg_values_supported;
        if offered.iter().any(|a| a == self.dpop_alg.as_str()) {
            return self.dpop_alg;
        }
        DpopAlg::choose(offered).unwrap_or(DpopAlg::Es256)
    }
}

impl<S: Clone> Clone for OAuthClient<S> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
            store: self.store.clone(),
        }
    }
}

impl<S> fmt::Debug for OAuthClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.core.metadata.client_id)
            .finish_non_exhaustive()
    }
}

/// Whether `requested` may be used where `allowed` is registered: the same string, or for a
/// loopback redirect URI registered without a port, the same URI on any port (RFC 8252 §7.3).
#[must_use]
pub fn redirect_uri_allowed(allowed: &str, requested: &str) -> bool {
    if allowed == requested {
        return true;
    }
    let (Ok(a), Ok(r)) = (Url::parse(allowed), Url::parse(requested)) else {
        return false;
    };
    let loopback = matches!(a.host_str(), Some("127.0.0.1" | "[::1]"));
    loopback
        && a.scheme() == "http"
        && a.port().is_none()
        && r.scheme() == "http"
        && a.host_str() == r.host_str()
        && a.path() == r.path()
        && a.query() == r.query()
        && r.fragment().is_none()
        && r.username().is_empty()
        && r.password().is_none()
}

fn scope_has_atproto(scope: &str) -> bool {
    scope.split_ascii_whitespace().any(|s| s == "atproto")
}

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// A client. Fails on an inconsistent configuration (a `private_key_jwt` client without
    /// keys, a scope without `atproto`, …).
    pub fn new(config: OAuthClientConfig, store: S) -> Result<Self, OAuthError> {
        let m = &config.metadata;
        if !scope_has_atproto(&m.scope) {
            return Err(ClientConfigError::Scope.into());
        }
        if m.redirect_uris.is_empty() {
            return Err(ClientConfigError::Metadata(
                super::client_metadata::ClientMetadataError::NoRedirectUri,
            )
            .into());
        }
        if m.token_endpoint_auth_method == AuthMethodKind::PrivateKeyJwt && config.keyset.is_none()
        {
            return Err(ClientConfigError::MissingKeyset.into());
        }
        for (name, d) in [
            ("state lifetime", config.state_ttl),
            ("metadata cache lifetime", config.metadata_ttl),
        ] {
            if d.is_zero() || d > crate::clock::MAX_DURATION {
                return Err(ClientConfigError::Duration(name).into());
            }
        }
        let (client, pds_client) = match config.http_client {
            Some(c) => (c.clone(), c),
            None => (
                build_client(&config.http).map_err(ClientConfigError::Http)?,
                build_pds_client(&config.http, &config.pds).map_err(ClientConfigError::Http)?,
            ),
        };
        let pds = PdsHttp {
            client: pds_client,
            options: config.pds,
            dev_mode: config.http.dev_mode,
        };
        let http = Http {
            client,
            options: config.http,
        };
        let identity = IdentityResolver::new(http.clone(), config.identity)
            .map_err(ClientConfigError::Identity)?;
        let servers = MetadataResolver::new(http.clone(), config.metadata_ttl);
        Ok(Self {
            core: Arc::new(Core {
                http,
                pds,
                nonces: DpopNonces::new(),
                pds_nonces: DpopNonces::new(),
                clock: config.clock,
                metadata: config.metadata,
                keyset: config.keyset,
                identity,
                servers,
                keyring: config.keyring,
                state_ttl: config.state_ttl,
                dpop_alg: config.dpop_alg,
            }),
            store,
        })
    }

    /// The client's metadata (serve it as JSON at the `client_id` URL of a confidential
    /// client).
    #[must_use]
    pub fn metadata(&self) -> &ClientMetadata {
        &self.core.metadata
    }

    /// The public JWKS of a confidential client (serve it at its `jwks_uri`).
    #[must_use]
    pub fn jwks(&self) -> Option<Jwks> {
        self.core.keyset.as_ref().map(Keyset::public_jwks)
    }

    pub(crate) fn core(&self) -> &Core {
        &self.core
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The identity resolver (with its cache).
    #[must_use]
    pub fn identity(&self) -> &IdentityResolver {
        &self.core.identity
    }

    pub(crate) fn client_auth(&self) -> Result<ClientAuth, OAuthError> {
        match self.core.metadata.token_endpoint_auth_method {
            AuthMethodKind::None => Ok(ClientAuth::None),
            AuthMethodKind::PrivateKeyJwt => {
                let key = self
                    .core
                    .keyset
                    .as_ref()
                    .ok_or(ClientConfigError::MissingKeyset)?
                    .signing_key();
                Ok(ClientAuth::PrivateKeyJwt {
                    kid: key.kid().unwrap_or_default().to_owned(),
                })
            }
        }
    }

    /// The scope an authorization asks for: `asked`, or the client metadata's scope.
    /// Checked before anything is sent: a valid scope string, with `atproto`, every scope
    /// of it declared in the client metadata (the server refuses undeclared ones).
    pub(crate) fn asked_scope(&self, asked: Option<&str>) -> Result<String, OAuthError> {
        let scope = asked.map_or_else(|| self.core.metadata.scope.clone(), str::to_owned);
        ScopeSet::parse(&scope).map_err(ClientConfigError::InvalidScope)?;
        if !scope_has_atproto(&scope) {
            return Err(ClientConfigError::Scope.into());
        }
        if let Some(undeclared) = first_undeclared(&scope, &self.core.metadata.scope) {
            return Err(ClientConfigError::ScopeNotDeclared(undeclared.to_owned()).into());
        }
        Ok(scope)
    }

    /// The redirect URI: `asked` if it is one of the client's, else its first.
    pub(crate) fn redirect_uri(&self, asked: Option<String>) -> Result<String, OAuthError> {
        match asked {
            Some(r)
                if self
                    .core
                    .metadata
                    .redirect_uris
                    .iter()
                    .any(|allowed| redirect_uri_allowed(allowed, &r)) =>
            {
                Ok(r)
            }
            Some(_) => Err(ClientConfigError::RedirectUri.into()),
            None => Ok(self.core.metadata.redirect_uris[0].clone()),
        }
    }

    /// Starts a login: resolves `input` (a handle, a DID, or a PDS or entryway URL) to its
    /// authorization server, sends a pushed authorization request (PKCE S256, a DPoP proof
    /// with a fresh key, client authentication), keeps the pending state, and returns the URL
    /// to send the user to.
    ///
    /// The scope asked for ([`AuthorizeOptions::scope`], by default the client metadata's)
    /// is checked first: a scope the client metadata does not declare is
    /// [`ClientConfigError::ScopeNotDeclared`], naming it, and nothing is sent.
    pub async fn authorize(
        &self,
        input: &str,
        options: AuthorizeOptions,
    ) -> Result<Url, OAuthError> {
        check_app_state(options.app_state.as_deref())?;
        let scope = self.asked_scope(options.scope.as_deref())?;
        let redirect_uri = self.redirect_uri(options.redirect_uri)?;
        let auth = self.client_auth()?;
        let input = input.trim();
        let (server, login_hint) = if input.starts_with("https://") || input.starts_with("http://")
        {
            let url = crate::oauth::wire::http::parse_url(input, self.core.http.options.dev_mode)
                .map_err(|source| crate::oauth::wire::http::HttpError::Url {
                url: input.chars().take(200).collect(),
                source,
            })?;
            let server = self
                .core
                .servers
                .server_for_pds(&url, auth.kind(), false)
                .await?;
            (server, None)
        } else {
            let id = AtIdentifier::parse(input).ok_or(OAuthError::InvalidInput)?;
            let resolved = self.core.identity.resolve(&id).await?;
            let server = self
                .core
                .servers
                .server_for_pds(&resolved.pds, auth.kind(), false)
                .await?;
            // The identifier as the user typed it, less a leading `@` (which the
            // authorization server refuses in a login hint).
            let hint = match &id {
                AtIdentifier::Handle(h) => h.as_str().to_owned(),
                AtIdentifier::Did(d) => d.as_str().to_owned(),
            };
            (server, Some(hint))
        };
        let login_hint = options.login_hint.or(login_hint);
        self.send_authorization(
            &server,
            PendingRequest {
                auth,
                scope,
                redirect_uri,
                login_hint,
                prompt: options.prompt,
                app_state: options.app_state,
                upgrade: None,
                binding: options.browser_binding.map(|h| h.to_hex()),
            },
        )
        .await
    }

    /// Sends the pushed authorization request, keeps the pending state, and returns the URL
    /// to send the user to.
    pub(crate) async fn send_authorization(
        &self,
        server: &AuthorizationServer,
        request: PendingRequest,
    ) -> Result<Url, OAuthError> {
        let PendingRequest {
            auth,
            scope,
            redirect_uri,
            login_hint,
            prompt,
            app_state,
            upgrade,
            binding,
        } = request;
        if login_hint
            .as_deref()
            .is_some_and(|h| h.is_empty() || h.len() > 2048 || h.chars().any(char::is_control))
        {
            return Err(OAuthError::InvalidInput);
        }

        let pkce = Pkce::generate();
        let dpop_key = DpopKey::generate_for(self.core.dpop_alg_for(server));
        let state = b64url(random_bytes::<32>());
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("redirect_uri", &redirect_uri),
            ("scope", &scope),
            ("state", &state),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ];
        if let Some(h) = &login_hint {
            params.push(("login_hint", h));
        }
        if let Some(p) = prompt {
            params.push(("prompt", p.as_str()));
        }
        let agent = Agent {
            core: &self.core,
            server,
            auth: &auth,
            key: &dpop_key,
        };
        let request_uri = agent.par(&params).await?;

        let now = self.core.clock.now();
        let pending = AuthState {
            issuer: server.endpoints.issuer.clone(),
            dpop_key: dpop_key.to_private_jwk(),
            auth,
            verifier: pkce.verifier.expose().to_owned(),
            redirect_uri,
            app_state,
            upgrade,
            binding,
        };
        let stored = pending.seal(
            &self.core.keyring,
            TokenHash::of(state.as_bytes()),
            truncate_ms(crate::clock::add_saturating(now, self.core.state_ttl)),
        )?;
        self.store.put_state(&stored).await?;

        let mut url = server.endpoints.authorization.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.core.metadata.client_id)
            .append_pair("request_uri", &request_uri);
        Ok(url)
    }

    /// Completes a login from the authorization response's query parameters: takes the
    /// pending state (once: a replay is [`CallbackError::UnknownState`]), checks `iss`,
    /// maps `error=` responses to typed errors, exchanges the code, checks the token
    /// response, checks that `sub`'s PDS is protected by this same issuer, and stores the
    /// grant (sealed). If the grant cannot be stored, its tokens are revoked.
    pub async fn callback(&self, params: &CallbackParams) -> Result<Callback, OAuthError> {
        let state = params.state.as_deref().ok_or(CallbackError::MissingState)?;
        if state.is_empty() || state.len() > 1024 {
            return Err(CallbackError::UnknownState.into());
        }
        let now = self.core.clock.now();
        let stored = self
            .store
            .take_state(&TokenHash::of(state.as_bytes()), now)
            .await?
            .ok_or(CallbackError::UnknownState)?;
        let pending = AuthState::open(&stored, &self.core.keyring)?;
        pending.check_binding(params.browser_binding.as_ref())?;
        let app_state = pending.app_state.clone();

        // RFC 9207: the issuer is checked on error responses too.
        match params.iss.as_deref() {
            None => return Err(CallbackError::MissingIss.into()),
            Some(iss) if iss != pending.issuer => {
                return Err(CallbackError::IssuerMismatch {
                    expected: pending.issuer.clone(),
                    found: iss.chars().take(200).collect(),
                }
                .into());
            }
            Some(_) => {}
        }
        if let Some(error) = &params.error {
            let description = params
                .error_description
                .as_deref()
                .map(|d| d.chars().take(200).collect());
            return Err(if error == "access_denied" {
                CallbackError::AccessDenied {
                    description,
                    app_state,
                }
            } else {
                CallbackError::Authorization {
                    error: error.chars().take(100).collect(),
                    description,
                    app_state,
                }
            }
            .into());
        }
        let code = params.code.as_deref().ok_or(CallbackError::MissingCode)?;

        let dpop_key = DpopKey::from_jwk(&pending.dpop_key)?;
        let server = self
            .core
            .servers
            .server(&pending.issuer, pending.auth.kind(), false)
            .await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &pending.auth,
            key: &dpop_key,
        };
        let response = agent
            .exchange_code(code, &pending.verifier, &pending.redirect_uri)
            .await?;
        if let Some(target) = &pending.upgrade
            && response.sub != target.did
        {
            // Another account signed in: nobody may hold these tokens.
            let _ = agent.revoke(response.access_token.expose()).await;
            if let Some(r) = &response.refresh_token {
                let _ = agent.revoke(r.expose()).await;
            }
            return Err(CallbackError::UpgradeAccountMismatch {
                expected: target.did.clone(),
                found: response.sub,
            }
            .into());
        }

        let aud = match self.verify_issuer(&response.sub, &pending.issuer).await {
            Ok(pds) => pds,
            Err(e) => {
                let _ = agent.revoke(response.access_token.expose()).await;
                return Err(e);
            }
        };
        let token_set = TokenSet {
            iss: pending.issuer.clone(),
            sub: response.sub,
            aud: aud.to_string(),
            scope: response.scope,
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            expires_at: response.expires_at.map(truncate_ms),
        };
        if let Some(target) = &pending.upgrade {
            let (session, upgrade) = self
                .finish_upgrade(target, token_set, &dpop_key, &pending.auth, &agent)
                .await?;
            return Ok(Callback {
                grant: session,
                app_state,
                upgrade: Some(upgrade),
            });
        }
        let session = Grant {
            grant_id: GrantId::generate(),
            token_set,
            dpop_key: dpop_key.clone(),
            auth: pending.auth.clone(),
            created_at: truncate_ms(now),
        };
        let saved = match session.seal(&self.core.keyring, truncate_ms(now), 1) {
            Ok(grant) => self
                .store
                .create_grant(&grant)
                .await
                .map_err(OAuthError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            // Never leave a grant that no one holds.
            let _ = agent.revoke(session.token_set.access_token.expose()).await;
            return Err(e);
        }
        Ok(Callback {
            grant: session,
            app_state,
            upgrade: None,
        })
    }

    /// Checks that `sub`'s PDS (resolved afresh) is protected by `issuer`; returns the PDS.
    pub async fn verify_issuer(&self, sub: &Did, issuer: &str) -> Result<Url, OAuthError> {
        let doc = self.core.identity.resolve_did(sub, true).await?;
        let pds = doc.pds(sub, self.core.http.options.dev_mode)?;
        let found = match self.core.servers.issuer_of(&pds, false).await? {
            ServiceMetadata::Pds(i) | ServiceMetadata::Issuer(i) => i,
        };
        if found != issuer {
            return Err(OAuthError::WrongAuthorizationServer {
                sub: sub.clone(),
                expected: issuer.to_owned(),
                found: crate::oauth::discovery::metadata::truncate(&found),
            });
        }
        Ok(pds)
    }

    /// The stored grant with this id, opened.
    pub async fn grant(&self, grant: &GrantId) -> Result<Option<Grant>, OAuthError> {
        match self.store.load_grant(grant).await? {
            Some(g) => Ok(Some(Grant::open(&g, &self.core.keyring)?)),
            None => Ok(None),
        }
    }

    /// The grant ids of an account, oldest first.
    pub async fn grants_of(&self, did: &Did) -> Result<Vec<GrantId>, OAuthError> {
        Ok(self
            .store
            .list_grants_by_did(did)
            .await?
            .into_iter()
            .map(|g| g.id)
            .collect())
    }

    async fn agent_server(&self, session: &Grant) -> Result<AuthorizationServer, OAuthError> {
        Ok(self
            .core
            .servers
            .server(&session.token_set.iss, session.auth.kind(), false)
            .await?)
    }

    /// Sends a refresh for `session` and checks the answer (the account must not change).
    /// Stores nothing: the session layer decides what to do with the result.
    pub async fn refresh(&self, session: &Grant) -> Result<TokenSet, OAuthError> {
        let refresh = session
            .token_set
            .refresh_token
            .as_ref()
            .ok_or(OAuthError::NoRefreshToken)?;
        let server = self.agent_server(session).await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &session.auth,
            key: &session.dpop_key,
        };
        let r = agent.refresh(refresh.expose()).await?;
        if r.sub != session.token_set.sub {
            // Tokens for another account: nobody may hold them.
            let _ = agent.revoke(r.access_token.expose()).await;
            return Err(OAuthError::SubjectChanged);
        }
        Ok(TokenSet {
            iss: session.token_set.iss.clone(),
            sub: r.sub,
            aud: session.token_set.aud.clone(),
            scope: r.scope,
            access_token: r.access_token,
            // A server that does not rotate keeps the old refresh token valid.
            refresh_token: r
                .refresh_token
                .or_else(|| session.token_set.refresh_token.clone()),
            expires_at: r.expires_at.map(truncate_ms),
        })
    }

    /// Revokes `session`'s tokens at its authorization server (the access token, then the
    /// refresh token). Stores nothing.
    pub async fn revoke_tokens(&self, session: &Grant) -> Result<(), OAuthError> {
        let server = self.agent_server(session).await?;
        let agent = Agent {
            core: &self.core,
            server: &server,
            auth: &session.auth,
            key: &session.dpop_key,
        };
        let first = agent.revoke(session.token_set.access_token.expose()).await;
        let second = match &session.token_set.refresh_token {
            Some(r) => agent.revoke(r.expose()).await,
            None => Ok(()),
        };
        first.and(second)
    }

    /// Logs a grant out: revokes its tokens at the server, then deletes it, even when
    /// revoking failed (that error is returned after the delete). `Ok(false)` if there was
    /// no such grant.
    pub async fn revoke(&self, grant: &GrantId) -> Result<bool, OAuthError> {
        let Some(stored) = self.store.load_grant(grant).await? else {
            return Ok(false);
        };
        let revoked = match Grant::open(&stored, &self.core.keyring) {
            Ok(session) => self.revoke_tokens(&session).await,
            Err(e) => Err(e),
        };
        self.store.delete_grant(grant).await?;
        revoked.map(|()| true)
    }

    /// An authenticated request to the session's PDS: `Authorization: DPoP <token>`, a
    /// proof with `ath`, and the nonce retry. `path_and_query` is relative to the PDS URL
    /// (`/xrpc/com.atproto.server.getSession`). No refresh: that is the session layer's job.
    pub async fn pds_request(
        &self,
        session: &Grant,
        method: reqwest::Method,
        path_and_query: &str,
        json_body: Option<&serde_json::Value>,
    ) -> Result<Fetched, OAuthError> {
        let mut headers = reqwest::header::HeaderMap::new();
        let body = match json_body {
            Some(b) => {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/json"),
                );
                Some(
                    serde_json::to_vec(b)
                        .map_err(|_| OAuthError::Corrupt("cannot serialize the body"))?,
                )
            }
            None => None,
        };
        self.pds_send(session, method, path_and_query, &headers, body)
            .await
    }

    /// Like [`pds_request`](Self::pds_request), with any headers and a raw body, the whole
    /// answer read into memory (within [`PdsOptions::max_body`] when set). The path and
    /// the headers are checked as by [`pds_call`](Self::pds_call).
    pub async fn pds_send(
        &self,
        session: &Grant,
        method: reqwest::Method,
        path_and_query: &str,
        headers: &reqwest::header::HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Fetched, OAuthError> {
        let mut request = PdsRequest::new(method, path_and_query).body(body);
        *request.headers_mut() = headers.clone();
        let response = self.pds_call(session, request).await?;
        Ok(response.into_fetched().await?)
    }

    /// An authenticated call to the session's PDS, streamed both ways: the answer is
    /// returned as soon as its headers arrived, its body read as a stream.
    ///
    /// Before anything is sent, the path must be `/xrpc/<nsid>` with at most one query
    /// ([`pds_path`](crate::oauth::wire::pds_path)), and every header must be on the allow-list
    /// ([`PDS_REQUEST_HEADERS`](crate::oauth::wire::pds_headers::PDS_REQUEST_HEADERS)); otherwise
    /// [`HttpError::PdsPath`] or [`HttpError::Header`]. The URL is built on the grant's PDS
    /// and its origin checked, so the access token goes nowhere else. `Authorization` and
    /// `DPoP` are set here.
    ///
    /// A body in memory is sent again once if the PDS asks for a new DPoP nonce. A stream
    /// body is sent once: if no nonce is cached for the PDS, one is fetched first with a
    /// `GET` of `com.atproto.server.getSession`; if the PDS still asks for a nonce, that
    /// `401` answer is returned (the new nonce is cached, and
    /// [`OAuthSession::send`](crate::oauth::OAuthSession::send) turns it into
    /// [`GrantError::Retryable`](crate::oauth::GrantError::Retryable)). No refresh: that is
    /// the session layer's job.
    pub async fn pds_call(
        &self,
        session: &Grant,
        request: PdsRequest,
    ) -> Result<PdsResponse, OAuthError> {
        let (method, path_and_query, headers, body) = request.into_parts();
        self.pds_call_parts(session, &method, &path_and_query, &headers, body)
            .await
    }

    /// [`pds_call`](Self::pds_call) on borrowed parts, so that a caller that may send the
    /// same request again keeps them without a copy.
    pub(crate) async fn pds_call_parts(
        &self,
        session: &Grant,
        method: &reqwest::Method,
        path_and_query: &str,
        headers: &reqwest::header::HeaderMap,
        body: PdsBody,
    ) -> Result<PdsResponse, OAuthError> {
        let (pds, url) = Self::pds_urls(session, path_and_query)?;
        if let Some(name) = first_refused(headers) {
            return Err(HttpError::Header {
                name: name.as_str().to_owned(),
            }
            .into());
        }
        let call = dpop::ResourceCall {
            http: &self.core.pds,
            nonces: &self.core.pds_nonces,
            clock: self.core.clock.as_ref(),
            key: &session.dpop_key,
            access_token: session.token_set.access_token.expose(),
            method,
            url: &url,
            headers,
            // The body's own length wins; a caller's Content-Length is kept only for a
            // stream of unknown length.
            drop_content_length: body.len().is_some(),
            pds: &pds,
        };
        Ok(call.send(body).await?)
    }

    /// The grant's PDS and the URL of a call on it.
    fn pds_urls(session: &Grant, path_and_query: &str) -> Result<(Url, Url), OAuthError> {
        let base = Url::parse(&session.token_set.aud)
            .map_err(|_| OAuthError::Corrupt("the grant's PDS URL does not parse"))?;
        let url = pds_url(&base, path_and_query).map_err(HttpError::PdsPath)?;
        Ok((base, url))
    }

    /// Before a body that cannot be resent: when no DPoP nonce is cached for the grant's
    /// PDS, sends the probe (learning a nonce). Returns whether the probe's answer refused
    /// the access token (`invalid_token`), so that the caller can refresh before sending.
    pub(crate) async fn pds_prepare_stream(&self, session: &Grant) -> Result<bool, OAuthError> {
        let (pds, probe) = Self::pds_urls(session, PROBE_PATH)?;
        let headers = reqwest::header::HeaderMap::new();
        let call = dpop::ResourceCall {
            http: &self.core.pds,
            nonces: &self.core.pds_nonces,
            clock: self.core.clock.as_ref(),
            key: &session.dpop_key,
            access_token: session.token_set.access_token.expose(),
            method: &reqwest::Method::GET,
            url: &probe,
            headers: &headers,
            drop_content_length: false,
            pds: &pds,
        };
        Ok(call.learn_nonce().await?.is_some_and(|answer| {
            crate::oauth::wire::dpop::is_invalid_token_answer(answer.status(), answer.headers())
        }))
    }
}

/// The cheap authenticated call that learns a PDS's DPoP nonce.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_ports() {
        assert!(redirect_uri_allowed(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:4321/cb"
        ));
        assert!(redirect_uri_allowed(
            "https://a.example/cb",
            "https://a.example/cb"
        ));
        assert!(!redirect_uri_allowed(
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:2/cb"
        ));
        assert!(!redirect_uri_allowed(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:2/other"
        ));
        assert!(!redirect_uri_allowed(
            "https://a.example/cb",
            "https://a.example:8443/cb"
        ));
    }

    #[test]
    fn callback_params() {
        let p =
            CallbackParams::from_query("?state=abc&iss=https%3A%2F%2Fx.example&code=c1&other=1")
                .unwrap();
        assert_eq!(p.state.as_deref(), Some("abc"));
        assert_eq!(p.iss.as_deref(), Some("https://x.example"));
        assert_eq!(p.code.as_deref(), Some("c1"));
        assert_eq!(
            CallbackParams::from_query("state=a&iss=x&iss=y"),
            Err(CallbackError::DuplicateParameter("iss".into()))
        );
        let e = CallbackParams::from_query("error=access_denied&state=s").unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
    }
}
