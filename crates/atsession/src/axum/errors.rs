//! What the login routes and the extractors answer when something goes wrong.
//!
//! Browsers get a redirect to the configured error path with `?error=<code>` (or a short
//! plain-text page when none is configured); clients that send `Accept: application/json`
//! get `{"error": "<code>", "message": "…"}`. Messages come from the library's errors, which
//! carry no secrets.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::oauth::{CallbackError, OAuthError};

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
    /// use atsession::axum::LoginErrorCode;
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
#[derive(Debug)]
pub struct LoginError {
    /// The short code.
    pub code: LoginErrorCode,
    /// The error and its causes (`outer: inner: …`); never a secret.
    pub message: String,
}

impl LoginError {
    pub(crate) fn new(code: LoginErrorCode, message: impl Into<String>) -> Self {
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
        Self::new(code, describe(e))
    }

    /// The answer: JSON for clients that ask for it, else a redirect to `error_path` (or a
    /// plain-text page). Without `details`, the message is the code's sentence for the user,
    /// not the error's causes.
    pub(crate) fn respond(
        &self,
        wants_json: bool,
        error_path: Option<&str>,
        details: bool,
    ) -> Response {
        let message = if details {
            self.message.as_str()
        } else {
            self.code.describe()
        };
        let mut response = if wants_json {
            (
                self.code.status(),
                Json(serde_json::json!({ "error": self.code.as_str(), "message": message })),
            )
                .into_response()
        } else if let Some(path) = error_path {
            let sep = if path.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{path}{sep}error={}", self.code)).into_response()
        } else {
            (
                self.code.status(),
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                if details {
                    format!("{}\n\n({}: {})\n", self.code.describe(), self.code, message)
                } else {
                    format!("{}\n\n({})\n", self.code.describe(), self.code)
                },
            )
                .into_response()
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// Whether the client asked for JSON (`Accept: application/json`, and not HTML first).
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") && !v.contains("text/html"))
}

/// An error and its causes, `outer: inner: …` (the library's errors carry no secrets).
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Why an extractor refused a request.
///
/// Answers `401 {"error": "signed_out", …}` when there is no valid session (or its grant is
/// gone), `403 {"error": "insufficient_scope", "scope": …}` when the grant lacks a required
/// scope, and `500`/`502` when the store or the authorization server failed (the cause is
/// logged, not sent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No valid app session (no cookie or token, unknown, expired).
    #[error("not signed in")]
    SignedOut(#[source] crate::app::SessionError),
    /// The app session has no OAuth grant, or the grant is gone (signed out elsewhere, its
    /// refresh refused).
    #[error("the session has no usable OAuth grant")]
    NoGrant,
    /// The grant does not include the scope the route requires.
    #[error("the grant lacks the scope `{0}`")]
    MissingScope(&'static str),
    /// The app session store failed, or the session was updated concurrently.
    #[error("the session could not be read")]
    Session(#[source] crate::app::SessionError),
    /// The grant could not be read or refreshed (store, network); it is kept.
    #[error("the OAuth grant could not be read or refreshed")]
    Grant(#[source] crate::oauth::GrantError),
    /// The route has no [`AtprotoAuth`](super::AtprotoAuth) layer: a programming error.
    #[error("the request has no AtprotoAuth state")]
    Misconfigured,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::SignedOut(_) | Self::NoGrant => (StatusCode::UNAUTHORIZED, "signed_out"),
            Self::MissingScope(scope) => {
                return (
                    StatusCode::FORBIDDEN,
                    Json(serde_json::json!({
                        "error": "insufficient_scope",
                        "scope": scope,
                        "message": self.to_string(),
                    })),
                )
                    .into_response();
            }
            Self::Session(crate::app::SessionError::Conflict) => (StatusCode::CONFLICT, "conflict"),
            Self::Grant(
                crate::oauth::GrantError::Refresh(_) | crate::oauth::GrantError::Timeout(_),
            ) => {
                tracing::warn!(error = %describe(&self), "refreshing a grant failed");
                (StatusCode::BAD_GATEWAY, "refresh_failed")
            }
            _ => {
                tracing::error!(error = %describe(&self), "session lookup failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let message = match &self {
            Self::SignedOut(e) => e.to_string(),
            _ if status.is_server_error() => "internal error".to_owned(),
            e => e.to_string(),
        };
        (
            status,
            Json(serde_json::json!({ "error": code, "message": message })),
        )
            .into_response()
    }
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

    #[tokio::test]
    async fn browsers_get_redirects_and_api_clients_json() {
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
        let r = e.respond(false, Some("/oops?from=login"), true);
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[header::LOCATION],
            "/oops?from=login&error=unknown_state"
        );
        let r = e.respond(true, Some("/oops"), false);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let body = r.into_body();
        let body = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["message"],
            LoginErrorCode::UnknownState.describe(),
            "no causes without details"
        );
        let r = e.respond(false, None, true);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
    }
}
