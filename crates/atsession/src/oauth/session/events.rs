//! What the session layer tells the app: a grant's tokens were refreshed, or a grant was
//! deleted. Sent through a [`tokio::sync::broadcast`] channel (see
//! [`SessionGetter::subscribe`](super::getter::SessionGetter::subscribe)), so an app can
//! mirror or audit them. No event carries a token.

use time::OffsetDateTime;

use crate::store::oauth::GrantId;
use crate::syntax::Did;

/// An event of the session layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A refresh or a scope upgrade stored a new token set.
    Updated(TokenSetInfo),
    /// A grant was deleted.
    Deleted {
        /// The grant.
        grant_id: GrantId,
        /// Its account.
        did: Did,
        /// Why.
        cause: DeleteCause,
    },
}

/// What can be told about a token set without its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSetInfo {
    /// The grant.
    pub grant_id: GrantId,
    /// The account.
    pub sub: Did,
    /// The issuer.
    pub iss: String,
    /// The PDS the tokens are for.
    pub aud: String,
    /// The granted scope.
    pub scope: String,
    /// When the access token expires, if the server said.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether a refresh token is held.
    pub has_refresh_token: bool,
    /// The stored grant's version (bumped by every refresh).
    pub version: u64,
    /// In an [`Updated`](SessionEvent::Updated) event: the granted scope before this
    /// update, when the scope changed (a scope upgrade, or a server that recomputed the
    /// scope on refresh). `None` otherwise.
    pub previous_scope: Option<String>,
}

/// Why a grant was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteCause {
    /// The authorization server refused the refresh (`invalid_grant`: expired, revoked or
    /// already used refresh token). The OAuth error code is kept.
    RefreshRefused {
        /// The OAuth error code.
        error: String,
    },
    /// The refresh answered for another account; the new tokens were revoked.
    SubjectChanged,
    /// The grant's client authentication (auth method or key id) can no longer be used.
    AuthMethodUnsatisfiable,
    /// The access token is stale and there is no refresh token.
    NoRefreshToken,
    /// The refreshed token set could not be stored; the new tokens were revoked.
    SaveFailed,
    /// The user signed out (the tokens were revoked first, or that was tried).
    SignedOut,
}
