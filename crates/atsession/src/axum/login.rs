//! The login routes: [`AtprotoAuth::router`], each a thin handler over a flow of
//! [`auth`](crate::auth).
//!
//! | route | does |
//! |---|---|
//! | `GET /oauth/login?identifier=…&redirect_to=/path[&prompt=…][&login_hint=…]` | [`start_login`](AtprotoAuth::start_login): binds the login to this browser (cookie), sends it to the user's authorization server |
//! | `GET /oauth/callback` | [`complete_login`](AtprotoAuth::complete_login): checks the binding and the response, stores the grant, checks the handle, creates the app session, sets the cookie, sends the browser to `redirect_to` |
//! | `POST /oauth/logout` | [`logout`](AtprotoAuth::logout): ends the request's session and signs its grant out (revoked at the server); clears the cookie |
//! | `GET /oauth/client-metadata.json`, `GET /oauth/jwks.json` | a confidential client's published documents (only for one) |
//!
//! Paths, the default post-login page and the error page come from the [`WebConfig`]. A
//! client that sends `Accept: application/json` gets JSON instead of redirects: the login
//! answers `{"authorization_url": …}`, the callback `{"did", "handle", "redirect_to"}`, the
//! logout `204`, errors `{"error": <code>, "message": …}` (see
//! [`LoginErrorCode`](crate::auth::LoginErrorCode)).
//!
//! [`WebConfig`]: crate::auth::WebConfig

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::SessionCookieLayer;
use crate::auth::AtprotoAuth;

impl AtprotoAuth {
    /// The login routes (`GET /oauth/login`, `GET /oauth/callback`, `POST /oauth/logout`,
    /// and a confidential client's metadata and keys, at the [`WebConfig`]'s paths), for an
    /// app whose state gives an `AtprotoAuth` ([`FromRef`]). Merge them into the app's
    /// router.
    ///
    /// [`WebConfig`]: crate::auth::WebConfig
    ///
    /// ```
    /// use atsession::axum::AtprotoAuth;
    /// use axum::Router;
    /// use axum::extract::FromRef;
    ///
    /// #[derive(Clone)]
    /// struct App {
    ///     auth: AtprotoAuth,
    ///     greeting: String,
    /// }
    ///
    /// impl FromRef<App> for AtprotoAuth {
    ///     fn from_ref(app: &App) -> Self {
    ///         app.auth.clone()
    ///     }
    /// }
    ///
    /// fn routes(app: App) -> Router {
    ///     let auth = app.auth.clone();
    ///     Router::new().merge(auth.router()).layer(auth.layer()).with_state(app)
    /// }
    /// ```
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        AtprotoAuth: FromRef<S>,
    {
        let c = self.config();
        let mut router = Router::new()
            .route(&c.login_path, get(login))
            .route(&c.callback_path, get(callback))
            .route(&c.logout_path, post(logout));
        if self.is_confidential() {
            router = router
                .route(&c.client_metadata_path, get(client_metadata))
                .route(&c.jwks_path, get(jwks));
        }
        router
    }

    /// The layer that puts slid session cookies on responses (see
    /// [`SessionCookieLayer`]). Wrap the whole router in it.
    #[must_use]
    pub fn layer(&self) -> SessionCookieLayer {
        SessionCookieLayer::new(&self.sessions().config().cookie.name)
    }
}

/// `GET /oauth/login` (mounted by [`AtprotoAuth::router`]; public to mount at more paths):
/// [`AtprotoAuth::login_route`].
pub async fn login(
    State(auth): State<AtprotoAuth>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    auth.login_route(&query, &headers).await.map(Body::from)
}

/// `GET /oauth/callback`: [`AtprotoAuth::callback_route`]. The browser binding cookie is
/// left in place, whatever the outcome, so that another login started in the same browser
/// can still come back (it expires on its own).
pub async fn callback(
    State(auth): State<AtprotoAuth>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    auth.callback_route(&query, &headers).await.map(Body::from)
}

/// `POST /oauth/logout`: [`AtprotoAuth::logout_route`]: `303` to the after-logout page for
/// browsers, `204` for clients that ask for JSON; the session cookie is cleared either way.
pub async fn logout(State(auth): State<AtprotoAuth>, headers: HeaderMap) -> Response {
    auth.logout_route(&headers).await.map(Body::from)
}

/// `GET /oauth/client-metadata.json` (confidential clients only).
pub async fn client_metadata(State(auth): State<AtprotoAuth>) -> Response {
    Json(auth.client().metadata()).into_response()
}

/// `GET /oauth/jwks.json` (confidential clients only).
pub async fn jwks(State(auth): State<AtprotoAuth>) -> Response {
    match auth.client().jwks() {
        Some(jwks) => Json(jwks).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
