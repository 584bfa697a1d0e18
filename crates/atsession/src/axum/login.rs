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
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::SessionCookieLayer;
use super::errors::AuthRejection;
use crate::auth::{AtprotoAuth, LoginRequest, local_path, wants_json};

impl AtprotoAuth {
    /// The login routes (see the [module docs](self)), for an app whose state gives an
    /// `AtprotoAuth` ([`FromRef`]). Merge them into the app's router.
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

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /oauth/login` (mounted by [`AtprotoAuth::router`]; public to mount at more paths).
pub async fn login(
    State(auth): State<AtprotoAuth>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let json = wants_json(&headers);
    let started = match LoginRequest::from_query(query.as_deref().unwrap_or_default()) {
        Ok(login) => auth.start_login(&login, &headers).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(started) => {
            let url = started.authorization_url.as_str();
            let mut response = if json {
                Json(serde_json::json!({ "authorization_url": url })).into_response()
            } else {
                Redirect::to(url).into_response()
            };
            response
                .headers_mut()
                .append(header::SET_COOKIE, started.binding_cookie);
            no_store(response)
        }
        Err(e) => auth.login_error_response(json, &e).map(Body::from),
    }
}

/// `GET /oauth/callback`. The browser binding cookie is left in place, whatever the
/// outcome, so that another login started in the same browser can still come back (it
/// expires on its own; see [`binding`](crate::auth::binding)).
pub async fn callback(
    State(auth): State<AtprotoAuth>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let json = wants_json(&headers);
    let done = match auth
        .complete_login(query.as_deref().unwrap_or_default(), &headers)
        .await
    {
        Ok(done) => done,
        Err(e) => return auth.login_error_response(json, &e).map(Body::from),
    };
    let mut response = if json {
        Json(serde_json::json!({
            "did": done.did,
            "handle": done.handle,
            "redirect_to": done.redirect_to,
        }))
        .into_response()
    } else {
        Redirect::to(&done.redirect_to).into_response()
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, done.set_cookie);
    no_store(response)
}

/// `POST /oauth/logout`: `303` to the after-logout page for browsers, `204` for clients that
/// ask for JSON; the session cookie is cleared either way.
pub async fn logout(State(auth): State<AtprotoAuth>, headers: HeaderMap) -> Response {
    match auth.logout(&headers).await {
        Ok(clear) => {
            let mut r = if wants_json(&headers) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                Redirect::to(&local_path(Some(&auth.config().after_logout), "/")).into_response()
            };
            r.headers_mut().append(header::SET_COOKIE, clear);
            no_store(r)
        }
        Err(e) => AuthRejection::new(&auth, e).into_response(),
    }
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
