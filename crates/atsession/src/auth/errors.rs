//! The one table from error to HTTP answer.
//!
//! Every flow of [`auth`](super) fails with an [`AuthError`]; [`AuthError::answer`] turns it
//! into the status, the stable machine-readable `error` name (the XRPC convention) and a
//! message safe to send, and [`ErrorAnswer::to_response`] into a response any framework can
//! send. The axum adapter, the gateway's routes and its `/xrpc/` proxy all answer through it.
//!
//! | error | status | `error` |
//! |---|---|---|
//! | no session (no credentials, unknown, expired, malformed) | `401` | `AuthenticationRequired` |
//! | the access token has expired (the client should refresh) | `401` | `ExpiredToken` |
//! | the session has no grant, or its grant is gone (the session is ended and its cookie cleared) | `401` | `AuthenticationRequired` |
//! | the grant lacks a scope | `403` | `ScopeMissingError` (with `scope`) |
//! | a method the server does not forward | `403` | `MethodNotAllowed` |
//! | a cookie request that may change something without `x-csrf: 1`, or from an origin that may not call | `403` | `CsrfHeaderMissing`, `OriginNotAllowed` |
//! | too many requests from one client | `429` | `RateLimited` (with `Retry-After`) |
//! | a malformed request (path, query, header, body) | `400` | `InvalidRequest` |
//! | the session was updated concurrently | `409` | `SessionConflict` |
//! | a streamed call the PDS refused before reading it, or the refresh lock is busy | `503` | `RetryRequest` (with `Retry-After`) |
//! | the store failed or did not answer in time | `503` | `StoreUnavailable` |
//! | refreshing the grant failed, the PDS could not be reached or answered nonsense | `502` | `UpstreamFailure` |
//! | refreshing the grant timed out | `504` | `UpstreamTimeout` |
//! | the PDS answered an XRPC error | its status (`4xx`) | its `error` |
//! | anything else (a corrupt record, a broken configuration) | `500` | `InternalServerError` |
//!
//! Logins are answered for people as well as programs: a [`LoginError`] carries a short
//! [`LoginErrorCode`] (`other_browser`, …) that error pages receive as `?error=<code>`, and
//! its status comes from [`LoginErrorCode::status`].

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::ErrorChain;
use crate::app::SessionError;
use crate::oauth::{CallbackError, GrantError, OAuthError};
use crate::store::StoreError;

/// Why a request could not be served: the error of every flow in [`auth`](super).
///
/// Turn it into an HTTP answer with [`answer`](Self::answer) (or
/// [`AtprotoAuth::error_response`](super::AtprotoAuth::error_response)); the adapters do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Finding, creating or changing the app session failed (no valid session, a conflict,
    /// the store).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Getting, refreshing or using the session's OAuth grant failed. A grant that is gone
    /// ([`GrantError::NotFound`], [`GrantError::Deleted`]) has ended its app session by the
    /// time this is returned.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The app session has no OAuth grant (it was created without one).
    #[error("the session has no OAuth grant; sign in again")]
    NoGrant,
    /// The grant does not include a scope the route requires.
    #[error("the grant lacks the scope `{0}`")]
    MissingScope(Cow<'static, str>),
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// The server does not forward this XRPC method.
    #[error("this server does not forward this method")]
    MethodNotAllowed,
    /// A request authenticated by the session cookie that may change something came without
    /// the header `x-csrf: 1` (the backend-for-frontend rule against cross-site requests).
    #[error("a request authenticated by the session cookie must send the header `x-csrf: 1`")]
    CsrfHeaderMissing,
    /// A request authenticated by the session cookie came from an origin that may not call.
    #[error("this origin may not call this server")]
    OriginNotAllowed,
    /// Too many requests from one client; it may try again after `retry_after` seconds.
    #[error("too many requests from this address; retry in {retry_after} s")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u32,
    },
}

impl AuthError {
    /// Whether the client is simply not signed in (no session, or one that has ended):
    /// pages that work signed in or out treat this as "signed out".
    #[must_use]
    pub fn is_signed_out(&self) -> bool {
        matches!(self, Self::Session(e) if e.is_unauthenticated())
    }

    /// Whether the request's app session was ended because its grant is gone: the answer
    /// should clear the session cookie.
    #[must_use]
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            Self::Grant(GrantError::NotFound(_) | GrantError::Deleted { .. })
        )
    }

    /// The HTTP answer: the row of the [table](self) for this error. With `details`, the
    /// message is the error and its causes ([`ErrorChain`]), which may name internal URLs or
    /// the store (for development); without, a sentence that names nothing internal.
    #[must_use]
    pub fn answer(&self, details: bool) -> ErrorAnswer {
        use ErrorName as N;
        use StatusCode as S;
        let safe = |s: &'static str| Cow::Borrowed(s);
        let mut a = match self {
            Self::Session(e) => session_row(e),
            Self::Grant(e) => grant_row(e),
            Self::NoGrant => ErrorAnswer::new(
                S::UNAUTHORIZED,
                N::AuthenticationRequired,
                safe("the session has no OAuth grant; sign in again"),
            ),
            Self::MissingScope(scope) => {
                let mut a = ErrorAnswer::new(
                    S::FORBIDDEN,
                    N::ScopeMissingError,
                    Cow::Owned(format!("Missing required scope \"{scope}\"")),
                );
                a.scope = Some(scope.to_string());
                a
            }
            Self::InvalidRequest(m) => {
                ErrorAnswer::new(S::BAD_REQUEST, N::InvalidRequest, m.clone())
            }
            Self::MethodNotAllowed => ErrorAnswer::new(
                S::FORBIDDEN,
                N::MethodNotAllowed,
                safe("this server does not forward this method"),
            ),
            Self::CsrfHeaderMissing => ErrorAnswer::new(
                S::FORBIDDEN,
                N::CsrfHeaderMissing,
                Cow::Owned(self.to_string()),
            ),
            Self::OriginNotAllowed => ErrorAnswer::new(
                S::FORBIDDEN,
                N::OriginNotAllowed,
                Cow::Owned(self.to_string()),
            ),
            Self::RateLimited { retry_after } => {
                let mut a = ErrorAnswer::new(
                    S::TOO_MANY_REQUESTS,
                    N::RateLimited,
                    Cow::Owned(self.to_string()),
                );
                a.retry_after = Some(*retry_after);
                a
            }
        };
        if details && a.status.is_server_error() {
            a.message = Cow::Owned(ErrorChain(self).to_string());
        }
        a
    }
}

fn session_row(e: &SessionError) -> ErrorAnswer {
    use ErrorName as N;
    use StatusCode as S;
    match e {
        SessionError::AccessTokenExpired => {
            ErrorAnswer::new(S::UNAUTHORIZED, N::ExpiredToken, Cow::Owned(e.to_string()))
        }
        // The sentences name no token and nothing internal.
        e if e.is_unauthenticated() => ErrorAnswer::new(
            S::UNAUTHORIZED,
            N::AuthenticationRequired,
            Cow::Owned(e.to_string()),
        ),
        SessionError::Conflict => ErrorAnswer::new(
            S::CONFLICT,
            N::SessionConflict,
            Cow::Borrowed("the session was updated concurrently; try again"),
        ),
        SessionError::Store(s) => store_row(s),
        _ => internal(),
    }
}

fn store_row(e: &StoreError) -> ErrorAnswer {
    match e {
        StoreError::Backend { .. } | StoreError::Timeout { .. } => ErrorAnswer::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorName::StoreUnavailable,
            Cow::Borrowed("the session store is unavailable; try again"),
        ),
        _ => internal(),
    }
}

fn internal() -> ErrorAnswer {
    ErrorAnswer::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorName::InternalServerError,
        Cow::Borrowed("internal error"),
    )
}

fn grant_row(e: &GrantError) -> ErrorAnswer {
    use ErrorName as N;
    use StatusCode as S;
    let safe = |s: &'static str| Cow::Borrowed(s);
    match e {
        GrantError::NotFound(_) | GrantError::Deleted { .. } => ErrorAnswer::new(
            S::UNAUTHORIZED,
            N::AuthenticationRequired,
            safe(
                "the session's grant is gone (signed out or refused by the server); sign in again",
            ),
        ),
        GrantError::ScopeMissing { scope, message } => {
            let message = message.clone().map_or_else(
                || Cow::Owned(format!("Missing required scope \"{scope}\"")),
                Cow::Owned,
            );
            let mut a = ErrorAnswer::new(S::FORBIDDEN, N::ScopeMissingError, message);
            a.scope = Some(scope.clone());
            a
        }
        GrantError::Retryable(_) => {
            let mut a = ErrorAnswer::new(
                S::SERVICE_UNAVAILABLE,
                N::RetryRequest,
                safe(
                    "the PDS refused the streamed call before reading it (new DPoP nonce or refreshed token); nothing was resent: send it again",
                ),
            );
            a.retry_after = Some(0);
            a
        }
        GrantError::Lock(_) => {
            let mut a = ErrorAnswer::new(
                S::SERVICE_UNAVAILABLE,
                N::RetryRequest,
                safe("the session is being refreshed elsewhere; try again"),
            );
            a.retry_after = Some(1);
            a
        }
        GrantError::Refresh(_) | GrantError::SaveFailed(_) => ErrorAnswer::new(
            S::BAD_GATEWAY,
            N::UpstreamFailure,
            safe("refreshing the session's tokens failed; try again"),
        ),
        GrantError::Timeout(_) => ErrorAnswer::new(
            S::GATEWAY_TIMEOUT,
            N::UpstreamTimeout,
            safe("refreshing the session's tokens timed out; try again"),
        ),
        GrantError::InvalidRequest(_) => {
            ErrorAnswer::new(S::BAD_REQUEST, N::InvalidRequest, Cow::Owned(e.to_string()))
        }
        GrantError::Xrpc {
            status,
            error,
            message,
        } => match S::from_u16(*status) {
            Ok(status) if status.is_client_error() => ErrorAnswer {
                status,
                error: Cow::Owned(error.clone()),
                message: Cow::Owned(message.clone().unwrap_or_default()),
                scope: None,
                retry_after: None,
            },
            _ => ErrorAnswer::new(
                S::BAD_GATEWAY,
                N::UpstreamFailure,
                safe("the PDS failed; try again"),
            ),
        },
        GrantError::InvalidResponse(_) => ErrorAnswer::new(
            S::BAD_GATEWAY,
            N::UpstreamFailure,
            safe("the PDS answered something other than what was expected"),
        ),
        GrantError::OAuth(o) => oauth_row(o),
        _ => internal(),
    }
}

fn oauth_row(e: &OAuthError) -> ErrorAnswer {
    use crate::oauth::HttpError;
    match e {
        OAuthError::Http(HttpError::PdsPath(_) | HttpError::Header { .. }) => ErrorAnswer::new(
            StatusCode::BAD_REQUEST,
            ErrorName::InvalidRequest,
            Cow::Owned(e.to_string()),
        ),
        OAuthError::Http(_) => ErrorAnswer::new(
            StatusCode::BAD_GATEWAY,
            ErrorName::UpstreamFailure,
            Cow::Borrowed("the PDS could not be reached"),
        ),
        OAuthError::Store(s) => store_row(s),
        _ => internal(),
    }
}

/// The stable `error` names of [`ErrorAnswer`]s (the XRPC convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorName {
    /// `401`: not signed in, or the session's grant is gone.
    AuthenticationRequired,
    /// `401`: the Bearer access token has expired; refresh it with the session token.
    ExpiredToken,
    /// `403`: the grant lacks a scope.
    ScopeMissingError,
    /// `403`: the server does not forward this method.
    MethodNotAllowed,
    /// `403`: a cookie request that may change something lacks `x-csrf: 1`.
    CsrfHeaderMissing,
    /// `403`: a cookie request from an origin that may not call.
    OriginNotAllowed,
    /// `429`: too many requests; retry after `Retry-After`.
    RateLimited,
    /// `400`: the request is malformed.
    InvalidRequest,
    /// `409`: the session was updated concurrently.
    SessionConflict,
    /// `503`: send the request again (after `Retry-After`).
    RetryRequest,
    /// `503`: the session store failed or did not answer in time.
    StoreUnavailable,
    /// `502`: the PDS or the authorization server failed.
    UpstreamFailure,
    /// `504`: the authorization server did not answer in time.
    UpstreamTimeout,
    /// `500`: this server failed.
    InternalServerError,
}

impl ErrorName {
    /// The name as sent.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticationRequired => "AuthenticationRequired",
            Self::ExpiredToken => "ExpiredToken",
            Self::ScopeMissingError => "ScopeMissingError",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::CsrfHeaderMissing => "CsrfHeaderMissing",
            Self::OriginNotAllowed => "OriginNotAllowed",
            Self::RateLimited => "RateLimited",
            Self::InvalidRequest => "InvalidRequest",
            Self::SessionConflict => "SessionConflict",
            Self::RetryRequest => "RetryRequest",
            Self::StoreUnavailable => "StoreUnavailable",
            Self::UpstreamFailure => "UpstreamFailure",
            Self::UpstreamTimeout => "UpstreamTimeout",
            Self::InternalServerError => "InternalServerError",
        }
    }
}

/// An error as an HTTP answer: a row of the [table](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorAnswer {
    /// The status.
    pub status: StatusCode,
    /// The stable machine-readable name, sent as `error`.
    pub error: Cow<'static, str>,
    /// A message safe to send (no secret; nothing internal unless details were asked for).
    pub message: Cow<'static, str>,
    /// The missing scope, sent as `scope` with `ScopeMissingError`.
    pub scope: Option<String>,
    /// Seconds to wait before sending again, sent as `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ErrorAnswer {
    fn new(status: StatusCode, name: ErrorName, message: Cow<'static, str>) -> Self {
        Self {
            status,
            error: Cow::Borrowed(name.as_str()),
            message,
            scope: None,
            retry_after: None,
        }
    }

    /// The JSON body: `{"error": …, "message": …}`, and `"scope"` when one is missing.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.error, "message": self.message });
        if let Some(scope) = &self.scope {
            body["scope"] = serde_json::Value::String(scope.clone());
        }
        body
    }

    /// The answer as a response: the status, the JSON [`body`](Self::body),
    /// `Cache-Control: no-store`, `Retry-After` when set, and `clear_cookie` (the session
    /// cookie's removal, for errors that [end the session](AuthError::ends_session)).
    #[must_use]
    pub fn to_response(&self, clear_cookie: Option<HeaderValue>) -> Response<String> {
        let mut r = Response::new(self.body().to_string());
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cookie) = clear_cookie {
            h.append(header::SET_COOKIE, cookie);
        }
        r
    }
}

/// Logs a failure that is the server's or an upstream's (a `5xx` answer) with its causes;
/// a client's own mistakes are not logged.
pub(crate) fn log(e: &AuthError, answer: &ErrorAnswer) {
    if answer.status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %ErrorChain(e), "a request failed");
    } else if answer.status.is_server_error() {
        tracing::warn!(error = %ErrorChain(e), "a request failed");
    }
}

/// The short code of a failed login, sent to the error page as `?error=<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginErrorCode {
    /// `/oauth/login` without an identifier.
    MissingIdentifier,
    /// The identifier is not a handle, DID or service URL, or a parameter is malformed.
    BadRequest,
    /// The handle, DID or server could not be resolved or discovered.
    NotFound,
    /// The callback was followed in another browser than the one that started the login.
    OtherBrowser,
    /// The callback's state is unknown, expired or was already used (a replay).
    UnknownState,
    /// The user refused.
    AccessDenied,
    /// The authorization server refused, or its answer failed a check.
    Refused,
    /// The authorization server could not be reached.
    ServerUnreachable,
    /// This server failed (its store, its configuration).
    Internal,
}

impl LoginErrorCode {
    /// The code as sent: `missing_identifier`, `bad_request`, `not_found`,
    /// `other_browser`, `unknown_state`, `access_denied`, `refused`,
    /// `server_unreachable`, `internal`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingIdentifier => "missing_identifier",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::OtherBrowser => "other_browser",
            Self::UnknownState => "unknown_state",
            Self::AccessDenied => "access_denied",
            Self::Refused => "refused",
            Self::ServerUnreachable => "server_unreachable",
            Self::Internal => "internal",
        }
    }

    /// A sentence for the user, for an error page.
    ///
    /// ```
    /// use atsession::auth::LoginErrorCode;
    /// assert_eq!(
    ///     LoginErrorCode::OtherBrowser.describe(),
    ///     "This login was started in another browser. Start it again here."
    /// );
    /// ```
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::MissingIdentifier => "Enter your handle (like alice.bsky.social) to log in.",
            Self::BadRequest => "That is not a handle, a DID or a server address.",
            Self::NotFound => "That account or its server could not be found.",
            Self::OtherBrowser => "This login was started in another browser. Start it again here.",
            Self::UnknownState => "This login link has expired or was already used. Log in again.",
            Self::AccessDenied => "The login was cancelled.",
            Self::Refused => "The account's server refused the login.",
            Self::ServerUnreachable => "The account's server could not be reached. Try again.",
            Self::Internal => "Something went wrong on our side. Try again.",
        }
    }

    /// The HTTP status of the answer (when it is not a redirect to the error page).
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingIdentifier | Self::BadRequest | Self::NotFound | Self::UnknownState => {
                StatusCode::BAD_REQUEST
            }
            Self::OtherBrowser | Self::AccessDenied | Self::Refused => StatusCode::FORBIDDEN,
            Self::ServerUnreachable => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for LoginErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed login step: its code and what went wrong, in words.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct LoginError {
    /// The short code.
    pub code: LoginErrorCode,
    /// The error and its causes (`outer: inner: …`); never a secret.
    pub message: String,
}

impl LoginError {
    /// A login error of `code`.
    pub fn new(code: LoginErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The login error for an OAuth client error.
    #[must_use]
    pub fn from_oauth(e: &OAuthError) -> Self {
        use LoginErrorCode as C;
        let code = match e {
            OAuthError::Callback(c) => match c {
                CallbackError::NoBrowserBinding | CallbackError::OtherBrowser => C::OtherBrowser,
                CallbackError::UnknownState => C::UnknownState,
                CallbackError::AccessDenied { .. } => C::AccessDenied,
                CallbackError::Authorization { .. } => C::Refused,
                _ => C::BadRequest,
            },
            OAuthError::InvalidInput => C::BadRequest,
            OAuthError::Identity(_) | OAuthError::Metadata(_) => C::NotFound,
            OAuthError::Http(_) => C::ServerUnreachable,
            OAuthError::Store(_)
            | OAuthError::AtRest(_)
            | OAuthError::Config(_)
            | OAuthError::Corrupt(_) => C::Internal,
            _ => C::Refused,
        };
        Self::new(code, ErrorChain(e).to_string())
    }

    /// The answer: JSON `{"error": <code>, "message": …}` for clients that ask for it, else
    /// a redirect (`303`) to `error_path?error=<code>`, or a plain-text page when there is no
    /// error path. Without `details`, the message is the code's sentence for the user, not
    /// the error's causes. Always `Cache-Control: no-store`.
    #[must_use]
    pub fn to_response(
        &self,
        wants_json: bool,
        error_path: Option<&str>,
        details: bool,
    ) -> Response<String> {
        let message = if details {
            self.message.as_str()
        } else {
            self.code.describe()
        };
        let mut r = if wants_json {
            let body = serde_json::json!({ "error": self.code.as_str(), "message": message });
            let mut r = Response::new(body.to_string());
            *r.status_mut() = self.code.status();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        } else if let Some(path) = error_path {
            let sep = if path.contains('?') { '&' } else { '?' };
            redirect(&format!("{path}{sep}error={}", self.code))
        } else {
            let text = if details {
                format!("{}\n\n({}: {})\n", self.code.describe(), self.code, message)
            } else {
                format!("{}\n\n({})\n", self.code.describe(), self.code)
            };
            let mut r = Response::new(text);
            *r.status_mut() = self.code.status();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        };
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// A `303 See Other` to `location` (a local path, see [`local_path`](super::local_path)).
pub(crate) fn redirect(location: &str) -> Response<String> {
    let mut r = Response::new(String::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Whether the client asked for JSON (`Accept: application/json`, and not HTML first).
///
/// ```
/// use atsession::auth::wants_json;
/// let mut h = http::HeaderMap::new();
/// h.insert("accept", "application/json".parse().unwrap());
/// assert!(wants_json(&h));
/// ```
#[must_use]
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_errors_map_to_codes() {
        let code = |e: CallbackError| LoginError::from_oauth(&OAuthError::Callback(e)).code;
        assert_eq!(
            code(CallbackError::OtherBrowser),
            LoginErrorCode::OtherBrowser
        );
        assert_eq!(
            code(CallbackError::NoBrowserBinding),
            LoginErrorCode::OtherBrowser
        );
        assert_eq!(
            code(CallbackError::UnknownState),
            LoginErrorCode::UnknownState
        );
        assert_eq!(
            code(CallbackError::MissingState),
            LoginErrorCode::BadRequest
        );
        assert_eq!(
            code(CallbackError::AccessDenied {
                description: None,
                app_state: None
            }),
            LoginErrorCode::AccessDenied
        );
        let e = LoginError::from_oauth(&OAuthError::InvalidInput);
        assert_eq!(e.code, LoginErrorCode::BadRequest);
        assert_eq!(e.code.status(), StatusCode::BAD_REQUEST);
        assert_eq!(LoginErrorCode::OtherBrowser.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn browsers_get_redirects_and_api_clients_json() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,application/json;q=0.9"),
        );
        assert!(!wants_json(&h));

        let e = LoginError::new(LoginErrorCode::UnknownState, "spent");
        let r = e.to_response(false, Some("/oops?from=login"), true);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "/oops?from=login&error=unknown_state"
        );
        let r = e.to_response(true, Some("/oops"), false);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(
            body["message"],
            LoginErrorCode::UnknownState.describe(),
            "no causes without details"
        );
        let r = e.to_response(false, None, true);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }

    /// Every variant of the errors the flows give, through the table: its status and name.
    /// The matches are exhaustive (inside the crate `#[non_exhaustive]` does not apply), so
    /// a new variant does not compile until it has a row here.
    #[test]
    fn every_error_has_one_row() {
        use std::time::Duration;

        use crate::oauth::HttpError;
        use crate::oauth::{DeleteCause, RetryReason};
        use crate::store::oauth::GrantId;

        fn session_variants(e: &SessionError) {
            match e {
                SessionError::NoCredentials
                | SessionError::MalformedToken(_)
                | SessionError::MalformedAuthorization
                | SessionError::MalformedCookie
                | SessionError::NotFound
                | SessionError::Expired
                | SessionError::AccessTokenExpired
                | SessionError::Conflict
                | SessionError::InvalidDid(_)
                | SessionError::InvalidHandle(_)
                | SessionError::Data(_)
                | SessionError::Store(_) => {}
            }
        }
        fn grant_variants(e: &GrantError) {
            match e {
                GrantError::NotFound(_)
                | GrantError::Deleted { .. }
                | GrantError::Refresh(_)
                | GrantError::Timeout(_)
                | GrantError::Lock(_)
                | GrantError::SaveFailed(_)
                | GrantError::OAuth(_)
                | GrantError::Xrpc { .. }
                | GrantError::ScopeMissing { .. }
                | GrantError::InvalidResponse(_)
                | GrantError::InvalidRequest(_)
                | GrantError::Task
                | GrantError::Retryable(_) => {}
            }
        }
        fn auth_variants(e: &AuthError) {
            match e {
                AuthError::Session(e) => session_variants(e),
                AuthError::Grant(e) => grant_variants(e),
                AuthError::NoGrant
                | AuthError::MissingScope(_)
                | AuthError::InvalidRequest(_)
                | AuthError::MethodNotAllowed
                | AuthError::CsrfHeaderMissing
                | AuthError::OriginNotAllowed
                | AuthError::RateLimited { .. } => {}
            }
        }

        let store = || StoreError::Timeout {
            backend: "sqlite",
            operation: "load",
        };
        let corrupt = || StoreError::corrupt("sqlite", "a column is missing");
        let down = || HttpError::Idle {
            url: "https://pds.example/xrpc/x".into(),
            timeout: Duration::from_secs(1),
        };
        let json_error = || serde_json::from_str::<u8>("x").unwrap_err();
        let grant = GrantId::generate;
        let syntax = || crate::syntax::Did::new("not a did").unwrap_err();
        let token = || crate::secret::Token::parse("short").unwrap_err();
        use ErrorName as N;
        use StatusCode as S;
        let rows: Vec<(AuthError, S, &str)> = vec![
            (
                SessionError::NoCredentials.into(),
                S::UNAUTHORIZED,
                N::AuthenticationRequired.as_str(),
            ),
            (
                SessionError::MalformedToken(token()).into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::MalformedAuthorization.into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::MalformedCookie.into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::NotFound.into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::Expired.into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::AccessTokenExpired.into(),
                S::UNAUTHORIZED,
                "ExpiredToken",
            ),
            (
                SessionError::Conflict.into(),
                S::CONFLICT,
                "SessionConflict",
            ),
            (
                SessionError::InvalidDid(syntax()).into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::InvalidHandle(syntax()).into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                SessionError::Data(json_error()).into(),
                S::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ),
            (
                SessionError::Store(store()).into(),
                S::SERVICE_UNAVAILABLE,
                "StoreUnavailable",
            ),
            (
                SessionError::Store(corrupt()).into(),
                S::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ),
            (
                GrantError::NotFound(grant()).into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                GrantError::Deleted {
                    grant_id: grant(),
                    cause: DeleteCause::SignedOut,
                    source: Box::new(OAuthError::NoRefreshToken),
                }
                .into(),
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                GrantError::Refresh(OAuthError::Http(down())).into(),
                S::BAD_GATEWAY,
                "UpstreamFailure",
            ),
            (
                GrantError::Timeout(Duration::from_secs(5)).into(),
                S::GATEWAY_TIMEOUT,
                "UpstreamTimeout",
            ),
            (
                GrantError::Lock(crate::lock::LockError::Invalid("key")).into(),
                S::SERVICE_UNAVAILABLE,
                "RetryRequest",
            ),
            (
                GrantError::SaveFailed(OAuthError::Store(store())).into(),
                S::BAD_GATEWAY,
                "UpstreamFailure",
            ),
            (
                GrantError::OAuth(OAuthError::Http(down())).into(),
                S::BAD_GATEWAY,
                "UpstreamFailure",
            ),
            (
                GrantError::OAuth(OAuthError::Http(HttpError::Header {
                    name: "cookie".into(),
                }))
                .into(),
                S::BAD_REQUEST,
                "InvalidRequest",
            ),
            (
                GrantError::OAuth(OAuthError::Store(store())).into(),
                S::SERVICE_UNAVAILABLE,
                "StoreUnavailable",
            ),
            (
                GrantError::OAuth(OAuthError::Corrupt("grant")).into(),
                S::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ),
            (
                GrantError::Xrpc {
                    status: 400,
                    error: "InvalidSwap".into(),
                    message: None,
                }
                .into(),
                S::BAD_REQUEST,
                "InvalidSwap",
            ),
            (
                GrantError::Xrpc {
                    status: 500,
                    error: "InternalServerError".into(),
                    message: None,
                }
                .into(),
                S::BAD_GATEWAY,
                "UpstreamFailure",
            ),
            (
                GrantError::ScopeMissing {
                    scope: "repo:x.y.z".into(),
                    message: None,
                }
                .into(),
                S::FORBIDDEN,
                "ScopeMissingError",
            ),
            (
                GrantError::InvalidResponse(json_error()).into(),
                S::BAD_GATEWAY,
                "UpstreamFailure",
            ),
            (
                GrantError::InvalidRequest("not an NSID").into(),
                S::BAD_REQUEST,
                "InvalidRequest",
            ),
            (
                GrantError::Task.into(),
                S::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ),
            (
                GrantError::Retryable(RetryReason::UseDpopNonce).into(),
                S::SERVICE_UNAVAILABLE,
                "RetryRequest",
            ),
            (
                AuthError::NoGrant,
                S::UNAUTHORIZED,
                "AuthenticationRequired",
            ),
            (
                AuthError::MissingScope("transition:email".into()),
                S::FORBIDDEN,
                "ScopeMissingError",
            ),
            (
                AuthError::InvalidRequest("bad".into()),
                S::BAD_REQUEST,
                "InvalidRequest",
            ),
            (
                AuthError::MethodNotAllowed,
                S::FORBIDDEN,
                "MethodNotAllowed",
            ),
        ];
        for (e, status, name) in &rows {
            auth_variants(e);
            let a = e.answer(false);
            assert_eq!((a.status, a.error.as_ref()), (*status, *name), "{e:?}");
            // The safe message names nothing internal; with details, server errors do.
            assert!(!a.message.contains("sqlite"), "{e:?}: {}", a.message);
            assert!(!a.message.contains("pds.example"), "{e:?}: {}", a.message);
            let r = a.to_response(None);
            assert_eq!(r.status(), *status);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
            assert_eq!(body["error"], *name);
            assert_eq!(
                e.ends_session(),
                matches!(
                    e,
                    AuthError::Grant(GrantError::NotFound(_) | GrantError::Deleted { .. })
                )
            );
            if e.is_signed_out() {
                assert_eq!(*status, S::UNAUTHORIZED);
            }
        }
        // Details: the causes of server errors, for development.
        let e = AuthError::from(SessionError::Store(store()));
        assert!(e.answer(true).message.contains("sqlite"));
        // The missing scope is named; Retry-After is sent where the client should retry.
        let a = AuthError::MissingScope("transition:email".into()).answer(false);
        assert_eq!(a.body()["scope"], "transition:email");
        let a =
            AuthError::from(GrantError::Lock(crate::lock::LockError::Invalid("k"))).answer(false);
        assert_eq!(a.to_response(None).headers()[header::RETRY_AFTER], "1");
        let a = AuthError::RateLimited { retry_after: 7 }.answer(false);
        assert_eq!(a.to_response(None).headers()[header::RETRY_AFTER], "7");
    }
}
