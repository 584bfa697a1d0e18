//! The OAuth client's errors. Every variant is typed; none carries a token, a key or a
//! code verifier. Strings that come from a server are cut to 200 characters.

use super::token::TokenResponseError;
use crate::crypto::AtRestError;
use crate::oauth::discovery::identity::IdentityError;
use crate::oauth::discovery::metadata::MetadataError;
use crate::oauth::scope::ScopeError;
use crate::oauth::wire::dpop::DpopError;
use crate::oauth::wire::http::HttpError;
use crate::oauth::wire::jose::JoseError;
use crate::store::StoreError;
use crate::store::oauth::GrantId;
use crate::syntax::Did;

/// What went wrong in the OAuth client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The login input is not a handle, a DID or an `http(s)` URL.
    #[error("the login input is not a handle, a DID or a service URL")]
    InvalidInput,
    /// The app state given to `authorize` is longer than
    /// [`MAX_APP_STATE_LEN`](super::authorize::MAX_APP_STATE_LEN). Nothing was stored.
    #[error(
        "the app state is {len} bytes, more than the {} allowed",
        super::authorize::MAX_APP_STATE_LEN
    )]
    AppStateTooLong {
        /// Its length.
        len: usize,
    },
    /// The client's configuration is invalid.
    #[error("invalid OAuth client configuration")]
    Config(#[from] ClientConfigError),
    /// Identity resolution failed.
    #[error("identity resolution failed")]
    Identity(#[from] IdentityError),
    /// Server discovery or metadata validation failed.
    #[error("authorization server discovery failed")]
    Metadata(#[from] MetadataError),
    /// A request failed.
    #[error("HTTP request failed")]
    Http(#[from] HttpError),
    /// Signing failed, or a stored key is unusable.
    #[error("JOSE operation failed")]
    Jose(#[from] JoseError),
    /// The store failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// A stored state or grant does not decrypt (wrong key, another row's data, tampering).
    #[error("stored OAuth data does not decrypt")]
    AtRest(#[from] AtRestError),
    /// A stored state or grant decrypted but does not parse.
    #[error("stored OAuth data is corrupt: {0}")]
    Corrupt(&'static str),
    /// The authorization server answered an OAuth error.
    #[error("the {endpoint} endpoint answered HTTP {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        /// `par`, `token` or `revocation`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_grant`, …), or `unknown` when the body had none.
        error: String,
        /// The server's description, if any.
        description: Option<String>,
    },
    /// The token response was refused.
    #[error("the token response was refused")]
    TokenResponse(#[from] TokenResponseError),
    /// The authorization response (the callback) was refused.
    #[error("the authorization response was refused")]
    Callback(#[from] CallbackError),
    /// The account's PDS is not protected by the issuer that granted the tokens.
    #[error("{sub} is served by the authorization server `{found}`, not `{expected}`")]
    WrongAuthorizationServer {
        /// The account.
        sub: Did,
        /// The issuer that granted the tokens.
        expected: String,
        /// The issuer the account's PDS names.
        found: String,
    },
    /// A refresh answered for another account.
    #[error("the refreshed token set is for another account")]
    SubjectChanged,
    /// The grant was made with a client key that is no longer in the client's keyset, or
    /// with an auth method this client no longer has.
    #[error("the grant's client authentication can no longer be satisfied")]
    AuthMethodUnsatisfiable,
    /// The grant has no refresh token.
    #[error("the grant has no refresh token")]
    NoRefreshToken,
    /// The server has no revocation endpoint.
    #[error("the authorization server has no revocation endpoint")]
    NoRevocationEndpoint,
    /// No stored grant has this id (a scope upgrade for a grant that is gone).
    #[error("no OAuth grant {0}")]
    UnknownGrant(GrantId),
    /// The grant kept changing while a scope upgrade tried to store its new tokens; the
    /// new tokens were revoked.
    #[error("grant {0} kept changing during the scope upgrade; the new tokens were revoked")]
    UpgradeConflict(GrantId),
}

impl OAuthError {
    /// The OAuth error code when the server answered one (`invalid_grant`, …).
    #[must_use]
    pub fn server_error(&self) -> Option<&str> {
        match self {
            Self::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the authorization server refused the grant itself (`invalid_grant`): the
    /// tokens are dead and the session should be deleted.
    #[must_use]
    pub fn is_invalid_grant(&self) -> bool {
        self.server_error() == Some("invalid_grant")
    }
}

impl From<DpopError> for OAuthError {
    fn from(e: DpopError) -> Self {
        match e {
            DpopError::Http(h) => Self::Http(h),
            DpopError::Jose(j) => Self::Jose(j),
        }
    }
}

/// An invalid client configuration: its metadata ([`ClientMetadata`](super::client_metadata::ClientMetadata)),
/// its keys ([`Keyset`](super::keys::Keyset)), or what a login asks of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConfigError {
    /// No redirect URI.
    #[error("a client needs at least one redirect URI")]
    NoRedirectUri,
    /// A loopback redirect URI is not `http://127.0.0.1[:port]/…` or `http://[::1]…`.
    #[error("loopback redirect URIs must be http://127.0.0.1:<port>/… or http://[::1]:<port>/…")]
    LoopbackRedirect,
    /// A confidential client id is not an `https` URL.
    #[error("a confidential client id must be an https URL")]
    ClientId,
    /// A confidential client needs keys: inline `jwks` or a `jwks_uri`.
    #[error("a confidential client needs `jwks` or `jwks_uri`")]
    NoKeys,
    /// A redirect URI of the metadata is not a URL.
    #[error("a redirect URI is not a valid URL")]
    InvalidRedirectUri,
    /// The client's declared scope is not a valid scope string (see
    /// [`ScopeSet::parse`](crate::oauth::scope::ScopeSet::parse)).
    #[error("the client scope is invalid")]
    InvalidClientScope(#[source] ScopeError),
    /// The keyset has no key.
    #[error("the keyset is empty")]
    EmptyKeyset,
    /// A key of the keyset has no `kid`.
    #[error("every key of a client keyset needs a kid")]
    MissingKid,
    /// Two keys of the keyset share a `kid`.
    #[error("two keys share the kid `{0}`")]
    DuplicateKid(String),
    /// A key of the keyset is not a private P-256 key.
    #[error("a key of the keyset is unusable")]
    Key(#[from] JoseError),
    /// A `private_key_jwt` client has no keyset.
    #[error("a private_key_jwt client needs a keyset")]
    MissingKeyset,
    /// A redirect URI asked for is not among the client's.
    #[error("the redirect URI is not one of the client's")]
    RedirectUri,
    /// The client's declared scope, or the scope asked for, does not include `atproto`.
    #[error("the scope must include `atproto`")]
    Scope,
    /// The scope asked for is not a valid scope string.
    #[error("the scope asked for is invalid")]
    InvalidScope(#[source] ScopeError),
    /// The scope asked for names a scope the client metadata does not declare (the
    /// authorization server would refuse the request). Nothing was sent.
    #[error("the scope `{0}` is not declared in the client metadata's scope")]
    ScopeNotDeclared(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Http(#[source] HttpError),
    /// The identity resolver could not be built.
    #[error("cannot build the identity resolver")]
    Identity(#[source] IdentityError),
    /// A lifetime is zero or longer than [`MAX_DURATION`](crate::clock::MAX_DURATION).
    #[error("the {0} must be positive and at most ten years")]
    Duration(&'static str),
}

/// Why an authorization response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The response has no `state`.
    #[error("the authorization response has no state")]
    MissingState,
    /// A parameter appears twice.
    #[error("the authorization response repeats the parameter `{0}`")]
    DuplicateParameter(String),
    /// No pending authorization has this `state`: unknown, expired, or already used (a
    /// replay). Nothing was stored.
    #[error("unknown, expired or already used authorization state")]
    UnknownState,
    /// The user refused (`error=access_denied`).
    #[error("the user denied the authorization")]
    AccessDenied {
        /// The server's description.
        description: Option<String>,
        /// The app state given to `authorize`.
        app_state: Option<String>,
    },
    /// Another `error=` response.
    #[error("the authorization server answered `{error}`")]
    Authorization {
        /// The error code.
        error: String,
        /// The server's description.
        description: Option<String>,
        /// The app state given to `authorize`.
        app_state: Option<String>,
    },
    /// The response has no `iss` though the server promised it (RFC 9207).
    #[error("the authorization response has no iss")]
    MissingIss,
    /// The response's `iss` is not the issuer the authorization was sent to (RFC 9207): a
    /// mix-up attack or a misconfiguration.
    #[error("the authorization response comes from `{found}`, not `{expected}`")]
    IssuerMismatch {
        /// The issuer of the pending authorization.
        expected: String,
        /// The response's `iss`.
        found: String,
    },
    /// The response has neither `code` nor `error`.
    #[error("the authorization response has no code")]
    MissingCode,
    /// A scope upgrade came back for another account than the grant's: the grant was not
    /// touched and the new tokens were revoked.
    #[error(
        "the scope upgrade of {expected}'s grant came back signed in as {found}; the grant was not touched"
    )]
    UpgradeAccountMismatch {
        /// The grant's account.
        expected: Did,
        /// The account that signed in.
        found: Did,
    },
    /// The login was bound to a browser, and this request carries no binding (the login
    /// cookie is missing: another browser, or it expired). Nothing was stored.
    #[error("this login was started in another browser (its login cookie is missing)")]
    NoBrowserBinding,
    /// The login was bound to another browser (login CSRF). Nothing was stored.
    #[error("this login was started in another browser")]
    OtherBrowser,
}
