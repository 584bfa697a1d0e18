//! Extractors that do not name the store: [`Session`] (and `Option<Session>`),
//! [`AtprotoSession`] (the signed-in user's OAuth session, for DPoP-signed PDS calls) and
//! [`RequireScope`]. Each takes the [`AtprotoAuth`] from the router's state.
//!
//! A request's session is loaded once, whichever extractors a handler takes. When the
//! session's idle window slid, the refreshed cookie goes to the
//! [`SessionCookieLayer`](super::SessionCookieLayer), which puts it on the response.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;

use super::errors::AuthRejection;
use super::layer::CookieSlot;
use crate::app::CredentialSource;
use crate::auth::{AtprotoAuth, AuthError, scope_covers};
use crate::oauth::{OAuthSession, Refresh, TokenSetInfo};
use crate::store::AnyStore;
use crate::store::oauth::StoredGrant;

/// The app session of the request (cookie, or `Authorization: Bearer`). Dereferences to
/// the [`app::Session`](crate::app::Session) record.
///
/// Rejects with `401` when there is none; take `Option<Session>` for pages that work signed
/// in or out.
///
/// ```
/// use atsession::axum::{AtprotoAuth, Session};
/// use axum::{Router, routing::get};
///
/// async fn home(session: Option<Session>) -> String {
///     match session {
///         Some(s) => format!("signed in as {}", s.handle),
///         None => "signed out".to_owned(),
///     }
/// }
///
/// fn app(auth: AtprotoAuth) -> Router {
///     Router::new()
///         .route("/", get(home))
///         .merge(auth.router())
///         .layer(auth.layer())
///         .with_state(auth)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    /// The session record.
    pub session: crate::app::Session,
    /// Where the credential came from.
    pub source: CredentialSource,
}

impl Deref for Session {
    type Target = crate::app::Session;
    fn deref(&self) -> &Self::Target {
        &self.session
    }
}

/// The app session's OAuth grant record, read together with the session when the store
/// does that in one query (SQLite, PostgreSQL), and left in the request's extensions for the
/// handler's first PDS call:
/// [`AtprotoAuth::request_oauth_session`] takes it, so that
/// the call does not read the grant again.
#[derive(Debug, Clone)]
pub struct LoadedGrant(pub StoredGrant);

/// Loads (once per request) the request's session, and its grant with it where the store
/// reads both in one query.
async fn load(parts: &mut Parts, auth: &AtprotoAuth) -> Result<Session, AuthRejection> {
    if let Some(found) = parts.extensions.get::<Session>() {
        return Ok(found.clone());
    }
    let found = auth
        .request_session(&parts.headers)
        .await
        .map_err(|e| AuthRejection::new(auth, e))?;
    if let (Some(cookie), Some(slot)) = (found.set_cookie, parts.extensions.get::<CookieSlot>()) {
        slot.put(cookie);
    }
    let session = Session {
        session: found.session,
        source: found.source,
    };
    parts.extensions.insert(session.clone());
    if let Some(grant) = found.grant {
        parts.extensions.insert(LoadedGrant(grant));
    }
    Ok(session)
}

impl<S> FromRequestParts<S> for Session
where
    AtprotoAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        load(parts, &AtprotoAuth::from_ref(state)).await
    }
}

impl<S> OptionalFromRequestParts<S> for Session
where
    AtprotoAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match load(parts, &AtprotoAuth::from_ref(state)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.error().is_signed_out() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The signed-in user: the app session and its OAuth session (the handle for DPoP-signed
/// calls to the user's PDS), with the grant's facts (account, scope), refreshed first if
/// stale.
///
/// Rejects with `401` when there is no session, or its grant is gone (then the app session
/// is ended too).
///
/// ```
/// use atsession::axum::AtprotoSession;
/// use axum::Json;
///
/// async fn me(user: AtprotoSession) -> Result<Json<serde_json::Value>, String> {
///     let me: serde_json::Value = user
///         .oauth
///         .xrpc_query("com.atproto.server.getSession", &[])
///         .await
///         .map_err(|e| e.to_string())?;
///     Ok(Json(me))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct AtprotoSession {
    /// The app session.
    pub session: Session,
    /// The OAuth session of its grant.
    pub oauth: OAuthSession<AnyStore>,
    /// The grant's facts when the request came in.
    pub info: TokenSetInfo,
}

impl AtprotoSession {
    /// `Ok` if the grant includes `scope` (see [`scope_covers`]); else
    /// [`AuthError::MissingScope`], which answers `403 ScopeMissingError`.
    pub fn require_scope(&self, scope: &'static str) -> Result<(), AuthRejection> {
        if scope_covers(&self.info.scope, scope) {
            Ok(())
        } else {
            Err(AuthError::MissingScope(scope.into()).into())
        }
    }
}

async fn load_user(parts: &mut Parts, auth: &AtprotoAuth) -> Result<AtprotoSession, AuthRejection> {
    if let Some(found) = parts.extensions.get::<AtprotoSession>() {
        return Ok(found.clone());
    }
    let session = load(parts, auth).await?;
    let preloaded = take_loaded_grant(&mut parts.extensions);
    let (oauth, info) = auth
        .user(&session, preloaded, Refresh::IfStale)
        .await
        .map_err(|e| AuthRejection::new(auth, e))?;
    let user = AtprotoSession {
        session,
        oauth,
        info,
    };
    parts.extensions.insert(user.clone());
    Ok(user)
}

/// The grant record the [`Session`] extractor read with the session, taken out of the
/// request's extensions.
fn take_loaded_grant(extensions: &mut http::Extensions) -> Option<StoredGrant> {
    extensions.remove::<LoadedGrant>().map(|LoadedGrant(g)| g)
}

impl AtprotoAuth {
    /// The OAuth session of an axum request's app session (`None` when it has none),
    /// starting from the grant's record that the [`Session`] extractor read with the
    /// session where the store reads both in one query ([`LoadedGrant`], taken out of
    /// `extensions`), so that its first call does not read the grant again.
    ///
    /// ```
    /// use atsession::axum::{AtprotoAuth, Session};
    /// use axum::extract::{Request, State};
    /// use axum::http::StatusCode;
    ///
    /// // A handler that calls the user's PDS with its request's session.
    /// async fn whoami(
    ///     State(auth): State<AtprotoAuth>,
    ///     session: Session,
    ///     mut request: Request,
    /// ) -> Result<String, StatusCode> {
    ///     let oauth = auth
    ///         .request_oauth_session(&session, request.extensions_mut())
    ///         .ok_or(StatusCode::UNAUTHORIZED)?;
    ///     let info = oauth
    ///         .token_info(atsession::oauth::Refresh::IfStale)
    ///         .await
    ///         .map_err(|_| StatusCode::BAD_GATEWAY)?;
    ///     Ok(info.sub.to_string())
    /// }
    /// ```
    pub fn request_oauth_session(
        &self,
        session: &Session,
        extensions: &mut http::Extensions,
    ) -> Option<OAuthSession<AnyStore>> {
        self.oauth_session(session, take_loaded_grant(extensions))
    }
}

impl<S> FromRequestParts<S> for AtprotoSession
where
    AtprotoAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        load_user(parts, &AtprotoAuth::from_ref(state)).await
    }
}

/// A scope a route requires, for [`RequireScope`].
///
/// ```
/// use atsession::axum::RequiredScope;
/// struct Generic;
/// impl RequiredScope for Generic {
///     const SCOPE: &'static str = "transition:generic";
/// }
/// ```
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope token the grant must include.
    const SCOPE: &'static str;
}

/// [`AtprotoSession`], if its grant includes `R::SCOPE`; else `403
/// {"error": "ScopeMissingError", "scope": …}`.
///
/// ```
/// use atsession::axum::{RequireScope, RequiredScope};
///
/// struct Generic;
/// impl RequiredScope for Generic {
///     const SCOPE: &'static str = "transition:generic";
/// }
///
/// async fn post(RequireScope(user, _): RequireScope<Generic>) -> String {
///     format!("{} may write", user.info.sub)
/// }
/// ```
#[derive(Debug)]
pub struct RequireScope<R>(pub AtprotoSession, pub PhantomData<fn() -> R>);

impl<S, R> FromRequestParts<S> for RequireScope<R>
where
    AtprotoAuth: FromRef<S>,
    S: Send + Sync,
    R: RequiredScope,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = load_user(parts, &AtprotoAuth::from_ref(state)).await?;
        user.require_scope(R::SCOPE)?;
        Ok(Self(user, PhantomData))
    }
}
