//! [`WebConfig`]: the paths and pages of the login routes.

use std::time::Duration;

/// Where the login routes live and where they send the browser. The pages it sends the
/// browser to are paths on this site; anything else is replaced by `/` (see
/// [`local_path`](super::local_path)).
///
/// ```
/// use atsession::auth::WebConfig;
///
/// let config = WebConfig::default()
///     .redirect_uri("https://app.example/oauth/callback")
///     .after_login("/home")
///     .error_path("/login-failed");
/// assert_eq!(config.login_path, "/oauth/login");
/// assert_eq!(config.after_login, "/home");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// `GET`: starts a login (default `/oauth/login`).
    pub login_path: String,
    /// `GET`: the authorization server's redirect (default `/oauth/callback`).
    pub callback_path: String,
    /// `POST`: ends the request's session (default `/oauth/logout`).
    pub logout_path: String,
    /// `GET`: a confidential client's metadata (default `/oauth/client-metadata.json`).
    pub client_metadata_path: String,
    /// `GET`: a confidential client's public keys (default `/oauth/jwks.json`).
    pub jwks_path: String,
    /// The redirect URI sent with every authorization request; the client metadata's first
    /// by default. Its path should be [`callback_path`](Self::callback_path).
    pub redirect_uri: Option<String>,
    /// Where a browser goes after login when the login named no `redirect_to` (default `/`).
    pub after_login: String,
    /// Where a browser goes after logout (default `/`).
    pub after_logout: String,
    /// Where a browser goes when a login fails, with `?error=<code>` (see
    /// [`LoginErrorCode`](super::LoginErrorCode)). `None` (the default): a short plain-text
    /// page with the status and the reason.
    pub error_path: Option<String>,
    /// How long a started login may take before its browser binding cookie expires
    /// (default 10 minutes, the OAuth client's state lifetime).
    pub login_ttl: Duration,
    /// Whether failed logins answer the error and its causes in words (which may name a
    /// resolver, a server's URL or the store), or only the short code and a sentence for
    /// the user ([`LoginErrorCode::describe`](super::LoginErrorCode::describe)). Default
    /// `true`; turn it off in production (the causes are logged either way).
    pub error_details: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            login_path: "/oauth/login".into(),
            callback_path: "/oauth/callback".into(),
            logout_path: "/oauth/logout".into(),
            client_metadata_path: "/oauth/client-metadata.json".into(),
            jwks_path: "/oauth/jwks.json".into(),
            redirect_uri: None,
            after_login: "/".into(),
            after_logout: "/".into(),
            error_path: None,
            login_ttl: crate::oauth::DEFAULT_STATE_TTL,
            error_details: true,
        }
    }
}

impl WebConfig {
    /// Sets the redirect URI sent with authorization requests.
    #[must_use]
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// Sets where a browser goes after login by default.
    #[must_use]
    pub fn after_login(mut self, path: impl Into<String>) -> Self {
        self.after_login = path.into();
        self
    }

    /// Sets where a browser goes after logout.
    #[must_use]
    pub fn after_logout(mut self, path: impl Into<String>) -> Self {
        self.after_logout = path.into();
        self
    }

    /// Sends browsers whose login failed to `path?error=<code>`.
    #[must_use]
    pub fn error_path(mut self, path: impl Into<String>) -> Self {
        self.error_path = Some(path.into());
        self
    }

    /// Sets the login and callback paths.
    #[must_use]
    pub fn login_paths(mut self, login: impl Into<String>, callback: impl Into<String>) -> Self {
        self.login_path = login.into();
        self.callback_path = callback.into();
        self
    }

    /// Whether failed logins answer their causes in words (see
    /// [`error_details`](Self::error_details)); `false` for production.
    ///
    /// ```
    /// use atsession::auth::WebConfig;
    /// assert!(WebConfig::default().error_details);
    /// assert!(!WebConfig::default().error_details(false).error_details);
    /// ```
    #[must_use]
    pub fn error_details(mut self, on: bool) -> Self {
        self.error_details = on;
        self
    }

    /// Sets the logout path.
    #[must_use]
    pub fn logout_path(mut self, path: impl Into<String>) -> Self {
        self.logout_path = path.into();
        self
    }
}
