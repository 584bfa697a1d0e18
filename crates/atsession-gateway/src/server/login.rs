//! The gateway's atproto OAuth login: `/oauth/login`, `/oauth/callback`, and the client's
//! published documents.
//!
//! - `GET /oauth/login?identifier=<handle, DID or PDS URL>&redirect_to=/path`: sends the
//!   browser to the user's authorization server.
//! - `GET /oauth/callback`: the authorization server's redirect. Stores the grant, creates
//!   the app session tied to it, sets the cookie and sends the browser to `redirect_to`
//!   (a path on this site; `/` by default).
//! - `GET /oauth/client-metadata.json` and `GET /oauth/jwks.json`: what a confidential
//!   client publishes (served only by a confidential gateway).

use std::sync::Arc;

use atsession::app::{CreateOptions, SessionManager};
use atsession::oauth::{AuthorizeOptions, CallbackParams, OAuthClient, OAuthError};
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::{Did, Handle};
use axum::Json;
use axum::extract::{Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// The handle recorded when the DID document names none that resolves back to the DID
/// (the atproto convention).
const INVALID_HANDLE: &str = "handle.invalid";

/// What the login routes need.
#[derive(Clone)]
pub struct Login {
    /// The OAuth client.
    pub client: Arc<OAuthClient<SqliteStore>>,
    /// The redirect URI sent with every authorization request.
    pub redirect_uri: String,
    /// Whether this gateway is a confidential client (publishes metadata and keys).
    pub confidential: bool,
}

/// The query of `/oauth/login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    identifier: Option<String>,
    /// An alias of `identifier`.
    handle: Option<String>,
    redirect_to: Option<String>,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// An error and its causes, `outer: inner: …` (the library's errors carry no secrets).
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A path on this site, or `/`: never another origin (no open redirect).
fn local_path(to: Option<&str>) -> String {
    match to {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.bytes().any(|b| b.is_ascii_control()) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `GET /oauth/login`.
pub async fn login(State(state): State<super::Gateway>, Query(q): Query<LoginQuery>) -> Response {
    let Some(identifier) = q.identifier.or(q.handle).filter(|s| !s.trim().is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing `identifier` (a handle, DID or PDS URL)",
        );
    };
    let options = AuthorizeOptions {
        app_state: Some(local_path(q.redirect_to.as_deref())),
        redirect_uri: Some(state.login.redirect_uri.clone()),
        ..AuthorizeOptions::default()
    };
    match state
        .login
        .client
        .authorize(identifier.trim(), options)
        .await
    {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(e) => {
            tracing::info!(error = %e, "login could not start");
            error(status_of(&e), describe(&e))
        }
    }
}

/// `GET /oauth/callback`.
pub async fn callback(State(state): State<super::Gateway>, RawQuery(query): RawQuery) -> Response {
    let params = match CallbackParams::from_query(query.as_deref().unwrap_or_default()) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, describe(&e)),
    };
    let done = match state.login.client.callback(&params).await {
        Ok(done) => done,
        Err(e) => {
            tracing::info!(error = %e, "login callback refused");
            return error(status_of(&e), describe(&e));
        }
    };
    let grant = done.session.grant_id.clone();
    let did = done.session.token_set.sub.clone();
    let handle = verified_handle(&state.login.client, &did).await;
    let created = state
        .sessions
        .create_with(
            &did,
            &handle,
            serde_json::json!({}),
            CreateOptions::new().grant_id(grant.as_str()),
        )
        .await;
    match created {
        Ok(new) => {
            tracing::info!(did = %did, session = %new.session.id, "logged in");
            let to = local_path(done.app_state.as_deref());
            (
                [(header::SET_COOKIE, state.sessions.set_cookie(&new))],
                Redirect::to(&to),
            )
                .into_response()
        }
        Err(e) => {
            // Nobody would hold the grant: end it at the server and here.
            tracing::error!(error = %e, "could not create the app session; revoking the grant");
            if let Err(r) = state.login.client.revoke(&grant).await {
                tracing::warn!(error = %r, "revoking the orphaned grant failed");
            }
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not create the session",
            )
        }
    }
}

/// The handle the DID document names, if it resolves back to the DID; else
/// `handle.invalid`.
async fn verified_handle(client: &OAuthClient<SqliteStore>, did: &Did) -> Handle {
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

/// Revokes the grant behind an app session (logout); failures are logged, not returned:
/// the local session ends either way.
pub async fn revoke_grant(login: &Login, grant: Option<&str>) {
    let Some(grant) = grant.and_then(atsession::store::oauth::GrantId::parse) else {
        return;
    };
    if let Err(e) = login.client.revoke(&grant).await {
        tracing::warn!(error = %e, "revoking the grant at logout failed");
    }
}

fn status_of(e: &OAuthError) -> StatusCode {
    match e {
        OAuthError::Store(_) | OAuthError::AtRest(_) | OAuthError::Config(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        OAuthError::Http(_) | OAuthError::Server { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `GET /oauth/client-metadata.json` (confidential gateways only).
pub async fn client_metadata(State(state): State<super::Gateway>) -> Response {
    if !state.login.confidential {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(state.login.client.metadata()).into_response()
}

/// `GET /oauth/jwks.json` (confidential gateways only).
pub async fn jwks(State(state): State<super::Gateway>) -> Response {
    match (state.login.confidential, state.login.client.jwks()) {
        (true, Some(jwks)) => Json(jwks).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Lets handlers that only need the sessions take them from the gateway's state.
impl axum::extract::FromRef<super::Gateway> for SessionManager<SqliteStore> {
    fn from_ref(g: &super::Gateway) -> Self {
        g.sessions.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn redirects_stay_on_this_site() {
        assert_eq!(local_path(Some("/app?x=1")), "/app?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "evil",
            "",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
