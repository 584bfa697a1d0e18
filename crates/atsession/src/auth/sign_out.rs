//! Ending sessions: logout, sign-out of one session or of an account everywhere, and the
//! cleanup of expired sessions with their grants.

use http::{HeaderMap, HeaderValue};

use super::{AtprotoAuth, AuthError};
use crate::ErrorChain;
use crate::app::{Session, SessionError};
use crate::oauth::GrantError;
use crate::syntax::Did;

impl AtprotoAuth {
    /// Logs out the request whose `headers` are: signs its session's grant out (revoked at
    /// the authorization server, deleted, a `Deleted` event), ends the session, and returns
    /// the `Set-Cookie` that clears the session cookie.
    ///
    /// A request with no valid session is logged out all the same (the cookie is cleared);
    /// an expired session's record is found and ended with its grant now rather than left
    /// to the cleanup. Once the session is ended, a grant that fails to sign out is logged,
    /// not returned: the user is signed out here. Only a store failure is an error.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<HeaderValue, AuthError> {
        match self.sessions().load_from_headers(headers).await {
            Ok(found) => match self.sign_out(&found.session).await {
                Ok(_) => {}
                Err(AuthError::Grant(e)) => {
                    // The app session is over; the grant's failure is the server's business.
                    tracing::warn!(error = %ErrorChain(&e), "signing the grant out at logout failed");
                }
                Err(e) => return Err(e),
            },
            // Expired: the record may still be there, kept for the cleanup to sign its
            // grant out. Its owner is leaving: do it now.
            Err(SessionError::Expired) => self.end_expired(headers).await,
            // Already signed out: still clear the cookie.
            Err(e) if e.is_unauthenticated() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.clear_cookie())
    }

    /// Signs out the grant of the expired session the request names and deletes the
    /// session; failures are logged and left to the cleanup.
    async fn end_expired(&self, headers: &HeaderMap) {
        let record = match self.sessions().record_from_headers(headers).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "finding an expired session at logout failed");
                return;
            }
        };
        if let Some(grant) = &record.grant_id
            && let Err(e) = self.getter().sign_out(grant).await
        {
            tracing::warn!(error = %ErrorChain(&e), "signing an expired session's grant out at logout failed");
        }
        if let Err(e) = self.sessions().delete(&record.id).await {
            tracing::warn!(error = %e, "deleting an expired session at logout failed");
        }
    }

    /// Ends one app session and signs out its OAuth grant through the session getter (its
    /// tokens are revoked at the authorization server, then it is deleted, and
    /// [`SessionEvent::Deleted`](crate::oauth::SessionEvent::Deleted) fires). `Ok(false)` if
    /// the session was already gone.
    ///
    /// The app session is deleted first: if the grant then fails to sign out, the user is
    /// signed out here all the same, and the error ([`AuthError::Grant`]) says what is left.
    pub async fn sign_out(&self, session: &Session) -> Result<bool, AuthError> {
        let existed = self.sessions().delete(&session.id).await?;
        if let Some(grant) = &session.grant_id {
            self.getter().sign_out(grant).await?;
        }
        Ok(existed)
    }

    /// Signs an account out everywhere: every app session of `did` ends, and every OAuth
    /// grant of `did` is signed out through the session getter (so a `Deleted` event fires
    /// for each). Returns how many app sessions ended. Grants that fail to sign out are
    /// tried all the same; the first failure is returned at the end.
    pub async fn sign_out_everywhere(&self, did: &Did) -> Result<u64, AuthError> {
        let ended = self.sessions().delete_all(did).await?;
        let grants = self
            .client()
            .grants_of(did)
            .await
            .map_err(GrantError::from)?;
        let mut first_error = None;
        for grant in grants {
            if let Err(e) = self.getter().sign_out(&grant).await {
                tracing::warn!(error = %e, grant = %grant, "signing a grant out failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(ended),
        }
    }

    /// Deletes the app sessions that have expired and signs out the OAuth grant of each
    /// first (revoked at the authorization server, deleted, a `Deleted` event), so that no
    /// grant outlives its session: an expired session's grant would otherwise stay in the
    /// store, and its refresh token valid at the server, though nobody can use it any more.
    /// Returns how many sessions were deleted. A grant that fails to sign out is logged
    /// (when revoking failed, the grant is deleted all the same) and its session is deleted
    /// anyway, so that one unreachable server cannot stall the cleanup.
    ///
    /// This is what [`spawn_cleanup`](Self::spawn_cleanup) runs; call it instead of
    /// [`SessionManager::delete_expired`](crate::app::SessionManager::delete_expired) when
    /// sessions belong to grants.
    pub async fn delete_expired(&self) -> Result<u64, AuthError> {
        /// Sessions with grants handled per store read.
        const BATCH: usize = 100;
        use crate::store::SessionStore as _;
        let sessions = self.sessions();
        let now = sessions.now();
        let mut ended = 0;
        loop {
            let batch = sessions
                .store()
                .expired_with_grants(now, BATCH)
                .await
                .map_err(SessionError::from)?;
            for (session, grant) in &batch {
                if let Err(e) = self.getter().sign_out(grant).await {
                    tracing::warn!(error = %e, grant = %grant, "signing out an expired session's grant failed");
                }
                if sessions.delete(session).await? {
                    ended += 1;
                }
            }
            if batch.len() < BATCH {
                break;
            }
        }
        Ok(ended + sessions.delete_expired().await?)
    }

    /// Runs [`delete_expired`](Self::delete_expired) every `period` (taken between 1 ms and
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION)) until the returned handle is dropped.
    /// Expired login states are the client's: see
    /// [`OAuthClient::spawn_cleanup`](crate::oauth::OAuthClient::spawn_cleanup).
    #[must_use = "the cleanup task stops when the handle is dropped"]
    pub fn spawn_cleanup(&self, period: std::time::Duration) -> crate::app::CleanupTask {
        let auth = self.clone();
        crate::app::CleanupTask::spawn(period, "sessions", move || {
            let auth = auth.clone();
            async move { auth.delete_expired().await.map_err(|e| e.to_string()) }
        })
    }
}
