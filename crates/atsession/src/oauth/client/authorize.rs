//! Starting a login: [`OAuthClient::authorize`] resolves what the user typed, sends a
//! pushed authorization request and keeps the pending state.

use url::Url;

use super::client_metadata::ClientAuth;
use super::error::OAuthError;
use super::oauth_client::OAuthClient;
use super::server::Agent;
use super::state::{AuthState, UpgradeTarget};
use crate::clock::truncate_ms;
use crate::oauth::discovery::identity::AtIdentifier;
use crate::oauth::discovery::metadata::AuthorizationServer;
use crate::oauth::wire::dpop::DpopKey;
use crate::oauth::wire::jose::b64url;
use crate::oauth::wire::pkce::Pkce;
use crate::secret::{TokenHash, random_bytes};
use crate::store::oauth::{GrantStore, StateStore};

/// The longest [`AuthorizeOptions::app_state`], in bytes: it is stored with every pending
/// login, and logins can be started by anyone.
pub const MAX_APP_STATE_LEN: usize = 2048;

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
    /// same value in [`CallbackParams::browser_binding`](crate::oauth::CallbackParams::browser_binding) before anything is exchanged or
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

impl<S: StateStore + GrantStore> OAuthClient<S> {
    /// Starts a login: resolves `input` (a handle, a DID, or a PDS or entryway URL) to its
    /// authorization server, sends a pushed authorization request (PKCE S256, a DPoP proof
    /// with a fresh key, client authentication), keeps the pending state, and returns the URL
    /// to send the user to.
    ///
    /// The scope asked for ([`AuthorizeOptions::scope`], by default the client metadata's)
    /// is checked first: a scope the client metadata does not declare is
    /// [`ClientConfigError::ScopeNotDeclared`](crate::oauth::ClientConfigError::ScopeNotDeclared), naming it, and nothing is sent.
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
                source: Box::new(source),
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
}
