//! A request's app session and, on demand, its grant: [`AtprotoAuth::request_session`] and
//! [`AtprotoAuth::user`].

use http::{HeaderMap, HeaderValue};

use super::{AtprotoAuth, AuthError};
use crate::app::{CredentialSource, Session};
use crate::oauth::{GrantError, OAuthSession, Refresh, TokenSetInfo};
use crate::store::AnyStore;
use crate::store::oauth::{SessionGrantStore as _, StoredGrant};

/// The app session a request carries (cookie, or `Authorization: Bearer`).
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestSession {
    /// The session record.
    pub session: Session,
    /// Where the credential came from.
    pub source: CredentialSource,
    /// A `Set-Cookie` to put on the response when the session's idle window slid on a
    /// cookie request, so that the browser's cookie lives as long as the session.
    pub set_cookie: Option<HeaderValue>,
    /// The session's grant record, when the store read it with the session in one query
    /// (SQLite, PostgreSQL): give it to [`user`](AtprotoAuth::user) or
    /// [`oauth_session`](AtprotoAuth::oauth_session) so that the first PDS call does not
    /// read it again.
    pub grant: Option<StoredGrant>,
}

impl AtprotoAuth {
    /// The app session of a request with these `headers`, and its grant's record where the
    /// store reads both in one query. Fails with an error that
    /// [is "signed out"](AuthError::is_signed_out) when there is no valid session.
    pub async fn request_session(&self, headers: &HeaderMap) -> Result<RequestSession, AuthError> {
        let sessions = self.sessions();
        let (loaded, grant) = if sessions.store().reads_together() {
            sessions.load_with_grant_from_headers(headers).await?
        } else {
            (sessions.load_from_headers(headers).await?, None)
        };
        Ok(RequestSession {
            session: loaded.session,
            source: loaded.source,
            set_cookie: loaded.set_cookie,
            grant,
        })
    }

    /// The OAuth session of an app session's grant (`None` when it has none), starting from
    /// `preloaded`, the grant's record read with the session, when it is that grant's.
    #[must_use]
    pub fn oauth_session(
        &self,
        session: &Session,
        preloaded: Option<StoredGrant>,
    ) -> Option<OAuthSession<AnyStore>> {
        let grant = session.grant_id.as_ref()?;
        match preloaded {
            Some(record) if &record.id == grant => Some(self.getter().session_with(record)),
            _ => Some(self.getter().session(grant.clone())),
        }
    }

    /// The signed-in user's grant: the [`OAuthSession`] for DPoP-signed calls to their PDS
    /// and the grant's facts (account, scope, expiry), refreshed first as `refresh` says.
    ///
    /// A session without a grant fails with [`AuthError::NoGrant`]. When the grant is gone
    /// (signed out elsewhere, its refresh refused), the app session is ended too, and the
    /// error [ends the session](AuthError::ends_session) (its answer clears the cookie).
    pub async fn user(
        &self,
        session: &Session,
        preloaded: Option<StoredGrant>,
        refresh: Refresh,
    ) -> Result<(OAuthSession<AnyStore>, TokenSetInfo), AuthError> {
        let oauth = self
            .oauth_session(session, preloaded)
            .ok_or(AuthError::NoGrant)?;
        match oauth.token_info(refresh).await {
            Ok(info) => Ok((oauth, info)),
            Err(e) => Err(self.grant_failed(session, e).await),
        }
    }

    /// What a failed use of `session`'s grant means: when the grant is gone (signed out
    /// elsewhere, its refresh refused), nobody can use the app session any more, and it is
    /// ended before this returns (so that the next request is refused on every instance).
    /// Call it with the error of any call made with the session's [`OAuthSession`].
    pub async fn grant_failed(&self, session: &Session, e: GrantError) -> AuthError {
        if matches!(e, GrantError::NotFound(_) | GrantError::Deleted { .. }) {
            tracing::info!(error = %crate::ErrorChain(&e), session = %session.id, "the session's grant is gone; ending the session");
            if let Err(d) = self.sessions().delete(&session.id).await {
                tracing::warn!(error = %d, "ending a session whose grant is gone failed");
            }
        }
        AuthError::Grant(e)
    }
}
