//! [`CurrentSession`]: the app session of a request, for apps that keep a typed
//! [`SessionManager`] in their state instead of an [`AtprotoAuth`](super::AtprotoAuth).
//!
//! Put a [`SessionManager`] in your router's state (or anything it can be taken from with
//! [`FromRef`]) and take [`CurrentSession`] in a handler. A request without a valid session
//! is rejected with `401` and a JSON body `{"error": "AuthenticationRequired", "message": …}`;
//! a store failure with `503` (the cause is logged, not sent): an [`AuthRejection`], answered
//! through the [one table](crate::auth::errors).
//!
//! ```
//! use atsession::app::SessionManager;
//! use atsession::axum::CurrentSession;
//! use atsession::store::MemoryStore;
//! use axum::{Json, Router, routing::get};
//!
//! async fn me(CurrentSession(found, ..): CurrentSession<MemoryStore>) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "did": found.session.did }))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .with_state(SessionManager::new(MemoryStore::new()));
//! ```
//!
//! When the idle window slid on a cookie request, put
//! [`LoadedSession::set_cookie`](crate::app::LoadedSession::set_cookie) on the response so the
//! browser's cookie lives as long as the session (see [`CurrentSession::refreshed_cookie`]).

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

use super::AuthRejection;
use crate::app::{LoadedSession, SessionManager};
use crate::auth::AuthError;
use crate::store::SessionStore;

/// The app session of the request, found by the [`SessionManager`] in the router's state.
///
/// The second field only names the store type.
#[derive(Debug)]
pub struct CurrentSession<S>(pub LoadedSession, pub PhantomData<fn() -> S>);

impl<S> CurrentSession<S> {
    /// A `Set-Cookie` header to add to the response, when the session's idle window slid.
    pub fn refreshed_cookie(&self) -> Option<(axum::http::HeaderName, axum::http::HeaderValue)> {
        self.0
            .set_cookie
            .clone()
            .map(|v| (axum::http::header::SET_COOKIE, v))
    }
}

impl<S, St> FromRequestParts<St> for CurrentSession<S>
where
    S: SessionStore + Clone,
    SessionManager<S>: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let manager = SessionManager::<S>::from_ref(state);
        let loaded = manager
            .load_from_headers(&parts.headers)
            .await
            .map_err(|e| AuthRejection::from(AuthError::Session(e)))?;
        Ok(Self(loaded, PhantomData))
    }
}
