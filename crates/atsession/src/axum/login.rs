//! The login routes: [`AtprotoAuth::router`].
//!
//! | route | does |
//! |---|---|
//! | `GET /oauth/login?identifier=…&redirect_to=/path[&prompt=…][&login_hint=…]` | binds the login to this browser (cookie), sends it to the user's authorization server |
//! | `GET /oauth/callback` | checks the binding and the response, stores the grant, checks the handle, creates the app session, sets the cookie, sends the browser to `redirect_to` |
//! | `POST /oauth/logout` | ends the request's session and signs its grant out (revoked at the server); clears the cookie |
//! | `GET /oauth/client-metadata.json`, `GET /oauth/jwks.json` | a confidential client's published documents (only for one) |
//!
//! Paths, the default post-login page and the error page come from the [`WebConfig`]. A
//! client that sends `Accept: application/json` gets JSON instead of redirects: the login
//! answers `{"authorization_url": …}`, the logout `204`, errors
//! `{"error": <code>, "message": …}` (see [`LoginErrorCode`]).
//!
//! [`WebConfig`]: super::WebConfig

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::errors::{AuthRejection, LoginError, LoginErrorCode, wants_json};
use super::{AtprotoAuth, SessionCookieLayer, SignOutError, binding, local_path};
use crate::app::{CreateOptions, SessionError};
use crate::oauth::{AuthorizeOptions, CallbackParams, OAuthClient, OAuthError, Prompt};
use crate::store::AnyStore;
use crate::syntax::{Did, Handle};

/// The handle recorded when the DID document names none that resolves back to the DID
/// (the atproto convention).
pub const INVALID_HANDLE: &str = "handle.invalid";

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

    fn secure(&self) -> bool {
        self.sessions().config().cookie.secure
    }

    fn fail(&self, json: bool, e: &LoginError) -> Response {
        // Configured paths go through the same guard: a Location is always valid.
        let error_path = self
            .config()
            .error_path
            .as_deref()
            .map(|p| local_path(Some(p), "/"));
        e.respond(json, error_path.as_deref(), self.config().error_details)
    }
}

/// The query of the login route.
#[derive(Debug, Deserialize)]
struct LoginQuery {
    identifier: Option<String>,
    /// An alias of `identifier`.
    handle: Option<String>,
    redirect_to: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /oauth/login` (mounted by [`AtprotoAuth::router`]; public to mount at more paths).
pub async fn login(State(auth): State<AtprotoAuth>, headers: HeaderMap, uri: Uri) -> Response {
    let json = wants_json(&headers);
    let q = match Query::<LoginQuery>::try_from_uri(&uri) {
        Ok(Query(q)) => q,
        Err(e) => {
            let e = LoginError::new(LoginErrorCode::BadRequest, e.body_text());
            return auth.fail(json, &e);
        }
    };
    let Some(identifier) = q
        .identifier
        .or(q.handle)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
    else {
        let e = LoginError::new(
            LoginErrorCode::MissingIdentifier,
            "missing `identifier` (a handle, DID or PDS URL)",
        );
        return auth.fail(json, &e);
    };
    let prompt = match q.prompt.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match Prompt::parse(p) {
            Some(p) => Some(p),
            None => {
                let e = LoginError::new(
                    LoginErrorCode::BadRequest,
                    "unknown `prompt` (login, none, consent, select_account or create)",
                );
                return auth.fail(json, &e);
            }
        },
    };
    let config = auth.config();
    let (value, hash) = binding::current_or_generate(&headers, auth.secure());
    let options = AuthorizeOptions {
        app_state: Some(local_path(
            q.redirect_to.as_deref(),
            &local_path(Some(&config.after_login), "/"),
        )),
        redirect_uri: config.redirect_uri.clone(),
        prompt,
        login_hint: q.login_hint.filter(|h| !h.trim().is_empty()),
        browser_binding: Some(hash),
        ..AuthorizeOptions::default()
    };
    match auth.client().authorize(&identifier, options).await {
        Ok(url) => {
            let cookie = binding::set_cookie(&value, auth.secure(), config.login_ttl);
            let mut response = if json {
                Json(serde_json::json!({ "authorization_url": url.as_str() })).into_response()
            } else {
                Redirect::to(url.as_str()).into_response()
            };
            response.headers_mut().append(header::SET_COOKIE, cookie);
            no_store(response)
        }
        Err(e) => {
            tracing::info!(error = %super::errors::describe(&e), "login could not start");
            auth.fail(json, &LoginError::from_oauth(&e))
        }
    }
}

/// `GET /oauth/callback`. The browser binding cookie is left in place, whatever the
/// outcome, so that another login started in the same browser can still come back (it
/// expires on its own; see [`binding`]).
pub async fn callback(
    State(auth): State<AtprotoAuth>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let json = wants_json(&headers);
    let bound = binding::from_headers(&headers, auth.secure());
    let mut params = match CallbackParams::from_query(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return auth.fail(json, &LoginError::from_oauth(&OAuthError::from(e))),
    };
    params.browser_binding = bound;
    let done = match auth.client().callback(&params).await {
        Ok(done) => done,
        Err(e) => {
            tracing::info!(error = %super::errors::describe(&e), "login callback refused");
            return auth.fail(json, &LoginError::from_oauth(&e));
        }
    };
    let grant = done.grant.grant_id.clone();
    let did = done.grant.token_set.sub.clone();
    let handle = verified_handle(auth.client(), &did).await;
    let created = auth
        .sessions()
        .create_with(
            &did,
            &handle,
            serde_json::json!({}),
            CreateOptions::new().grant_id(grant.clone()),
        )
        .await;
    let new = match created {
        Ok(new) => new,
        Err(e) => {
            // Nobody would hold the grant: sign it out (revoked at the server, deleted here).
            tracing::error!(error = %e, "could not create the app session; signing the grant out");
            if let Err(r) = auth.getter().sign_out(&grant).await {
                tracing::warn!(error = %r, "signing the orphaned grant out failed");
            }
            let e = LoginError::new(LoginErrorCode::Internal, "could not create the session");
            return auth.fail(json, &e);
        }
    };
    tracing::info!(did = %did, session = %new.session.id, "logged in");
    let to = local_path(
        done.app_state.as_deref(),
        &local_path(Some(&auth.config().after_login), "/"),
    );
    let mut response = if json {
        Json(serde_json::json!({
            "did": did,
            "handle": handle,
            "redirect_to": to,
        }))
        .into_response()
    } else {
        Redirect::to(&to).into_response()
    };
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, auth.sessions().set_cookie(&new));
    no_store(response)
}

/// The handle the DID document names, if it resolves back to the DID; else
/// [`INVALID_HANDLE`].
pub async fn verified_handle(client: &OAuthClient<AnyStore>, did: &Did) -> Handle {
    let identity = client.identity();
    let claimed = match identity.resolve_did(did, false).await {
        Ok(doc) => doc.handle(),
        Err(_) => None,
    };
    if let Some(h) = claimed
        && identity.resolve_handle(&h).await.ok().as_ref() == Some(did)
    {
        return h;
    }
    Handle::new(INVALID_HANDLE).unwrap_or_else(|_| unreachable!("a valid handle"))
}

/// `POST /oauth/logout`: `303` to the after-logout page for browsers, `204` for clients that
/// ask for JSON; the session cookie is cleared either way.
pub async fn logout(State(auth): State<AtprotoAuth>, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let signed_out = || {
        let mut r = if json {
            StatusCode::NO_CONTENT.into_response()
        } else {
            Redirect::to(&local_path(Some(&auth.config().after_logout), "/")).into_response()
        };
        r.headers_mut()
            .append(header::SET_COOKIE, auth.sessions().clear_cookie());
        no_store(r)
    };
    match auth.sessions().load_from_headers(&headers).await {
        Ok(found) => match auth.sign_out(&found.session).await {
            Ok(_) => signed_out(),
            Err(SignOutError::Grant(e)) => {
                // The app session is over; the grant's failure is the server's business.
                tracing::warn!(error = %super::errors::describe(&e), "signing the grant out at logout failed");
                signed_out()
            }
            Err(SignOutError::Session(e)) => AuthRejection::Session(e).into_response(),
        },
        // Expired: the record may still be there, kept for the cleanup to sign its grant
        // out. Its owner is leaving: do it now.
        Err(SessionError::Expired) => {
            end_expired(&auth, &headers).await;
            signed_out()
        }
        // Already signed out: still clear the cookie.
        Err(e) if e.is_unauthenticated() => signed_out(),
        Err(e) => AuthRejection::Session(e).into_response(),
    }
}

/// Signs out the grant of the expired session the request names and deletes the session,
/// at logout; failures are logged and left to the cleanup.
async fn end_expired(auth: &AtprotoAuth, headers: &HeaderMap) {
    let record = match auth.sessions().record_from_headers(headers).await {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "finding an expired session at logout failed");
            return;
        }
    };
    if let Some(grant) = &record.grant_id
        && let Err(e) = auth.getter().sign_out(grant).await
    {
        tracing::warn!(error = %super::errors::describe(&e), "signing an expired session's grant out at logout failed");
    }
    if let Err(e) = auth.sessions().delete(&record.id).await {
        tracing::warn!(error = %e, "deleting an expired session at logout failed");
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
