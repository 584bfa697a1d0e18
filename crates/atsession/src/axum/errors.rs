//! The extractors' rejection: an [`AuthError`] answered through the
//! [one table](crate::auth::errors).

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::auth::{AtprotoAuth, AuthError};

/// Why an extractor refused a request: an [`AuthError`], answered through the
/// [one table](crate::auth::errors) (`401 AuthenticationRequired` when there is no valid
/// session or its grant is gone, `403 ScopeMissingError` when the grant lacks a required
/// scope, `5xx` when the store or a server failed, with the cause logged, not sent).
#[derive(Debug)]
pub struct AuthRejection {
    // Boxed: rejections are rare, and a large `Err` would be copied on every extraction.
    error: Box<AuthError>,
    clear_cookie: Option<HeaderValue>,
    details: bool,
}

impl AuthRejection {
    /// The rejection for `error`, answered as `auth` answers errors (with the causes when
    /// its [`error_details`](crate::auth::WebConfig::error_details) is on, and the session
    /// cookie cleared when the error ended the session).
    #[must_use]
    pub fn new(auth: &AtprotoAuth, error: AuthError) -> Self {
        Self {
            clear_cookie: error.ends_session().then(|| auth.clear_cookie()),
            details: auth.config().error_details,
            error: Box::new(error),
        }
    }

    /// The error.
    #[must_use]
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// The error, taken out.
    #[must_use]
    pub fn into_error(self) -> AuthError {
        *self.error
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl From<AuthError> for AuthRejection {
    /// A rejection answered without causes, and without clearing a cookie.
    fn from(error: AuthError) -> Self {
        Self {
            error: Box::new(error),
            clear_cookie: None,
            details: false,
        }
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let answer = self.error.answer(self.details);
        crate::auth::errors::log(&self.error, &answer);
        answer.to_response(self.clear_cookie).map(Body::from)
    }
}
