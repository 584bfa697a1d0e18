//! What can go wrong with an app session.

use crate::secret::TokenError;
use crate::store::StoreError;
use crate::syntax::SyntaxError;

/// An app-session operation failed. No variant carries a token, and none prints one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The request carries neither the session cookie nor an `Authorization` header.
    #[error("the request carries no session credentials")]
    NoCredentials,
    /// A token is not well-formed (wrong length, not base64url, empty).
    #[error("malformed session token")]
    MalformedToken(#[source] TokenError),
    /// The `Authorization` header is present but not `Bearer <token>`.
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    MalformedAuthorization,
    /// A `Cookie` header is not visible ASCII.
    #[error("malformed Cookie header")]
    MalformedCookie,
    /// No session has this token (never issued, logged out, or deleted).
    #[error("unknown session")]
    NotFound,
    /// The session's idle or absolute lifetime is over.
    #[error("the session has expired")]
    Expired,
    /// The access token's lifetime is over; the client should refresh.
    #[error("the access token has expired")]
    AccessTokenExpired,
    /// Someone else updated the session first; reload it and try again.
    #[error("the session was updated concurrently")]
    Conflict,
    /// The DID does not follow the atproto syntax.
    #[error("invalid DID")]
    InvalidDid(#[source] SyntaxError),
    /// The handle does not follow the atproto syntax.
    #[error("invalid handle")]
    InvalidHandle(#[source] SyntaxError),
    /// The custom data cannot be represented as JSON.
    #[error("session data cannot be serialized")]
    Data(#[source] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// Whether the client should be treated as signed out (as opposed to a server fault):
    /// everything but [`Store`](Self::Store), [`Conflict`](Self::Conflict) and
    /// [`Data`](Self::Data). Map these to `401`.
    #[must_use]
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Conflict | Self::Data(_))
    }
}
