//! [`AtprotoAuth`]: what the routes, the extractors and the layer share: the app sessions,
//! the session getter (and its OAuth client) over an [`AnyStore`], and the [`WebConfig`].

use std::fmt;
use std::sync::Arc;

use super::WebConfig;
use crate::app::{Session, SessionConfig, SessionConfigError, SessionManager};
use crate::oauth::{
    GetterConfig, OAuthClient, OAuthClientConfig, OAuthError, OAuthSession, SessionGetter,
};
use crate::store::AnyStore;
use crate::syntax::Did;

/// The web layer's state. Put it in your router's state (or anything it can be taken from
/// with [`FromRef`](axum::extract::FromRef)). Cheap to clone.
///
/// Handlers never name the store: it is an [`AnyStore`], opened from a URL at run time
/// ([`store::open`](crate::store::open)), or a store of your own behind
/// [`AnyStore::custom`].
#[derive(Clone)]
pub struct AtprotoAuth {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: SessionManager<AnyStore>,
    getter: SessionGetter<AnyStore>,
    config: WebConfig,
}

impl fmt::Debug for AtprotoAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtprotoAuth")
            .field("store", &self.inner.sessions.store().backend())
            .field("client", self.inner.getter.client())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Why an [`AtprotoAuth`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The app-session configuration is inconsistent.
    #[error("invalid session configuration")]
    Sessions(#[from] SessionConfigError),
    /// The OAuth client configuration is inconsistent.
    #[error("invalid OAuth client configuration")]
    OAuth(#[from] OAuthError),
}

/// Why a sign-out failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignOutError {
    /// The app session could not be deleted.
    #[error("the app session could not be ended")]
    Session(#[from] crate::app::SessionError),
    /// The app session is gone, but its OAuth grant could not be signed out (revoking at the
    /// authorization server or deleting it failed).
    #[error("the OAuth grant could not be signed out")]
    Grant(#[from] crate::oauth::GrantError),
}

impl AtprotoAuth {
    /// The web layer over `sessions` and `getter` (whose client logs users in).
    #[must_use]
    pub fn new(
        sessions: SessionManager<AnyStore>,
        getter: SessionGetter<AnyStore>,
        config: WebConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions,
                getter,
                config,
            }),
        }
    }

    /// Builds everything on one store: app sessions with `sessions`, the OAuth client with
    /// `client`, and a session getter that refreshes under the store's own lock.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use atsession::app::SessionConfig;
    /// use atsession::axum::{AtprotoAuth, WebConfig};
    /// use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// let store = atsession::store::open("memory:").await?;
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("k1", [7; 32])?);
    /// let auth = AtprotoAuth::build(
    ///     store,
    ///     SessionConfig::default(),
    ///     OAuthClientConfig::new(metadata, keyring),
    ///     WebConfig::default(),
    /// )?;
    /// assert_eq!(auth.config().callback_path, "/oauth/callback");
    /// # Ok(()) }
    /// ```
    pub fn build(
        store: AnyStore,
        sessions: SessionConfig,
        client: OAuthClientConfig,
        config: WebConfig,
    ) -> Result<Self, BuildError> {
        let lock = store.lock();
        let sessions = SessionManager::with_config(store.clone(), sessions)?;
        let client = OAuthClient::new(client, store)?;
        let getter = SessionGetter::new(client, GetterConfig::default().lock(lock));
        Ok(Self::new(sessions, getter, config))
    }

    /// The app sessions.
    #[must_use]
    pub fn sessions(&self) -> &SessionManager<AnyStore> {
        &self.inner.sessions
    }

    /// The session getter (subscribe to its events here).
    #[must_use]
    pub fn getter(&self) -> &SessionGetter<AnyStore> {
        &self.inner.getter
    }

    /// The OAuth session of an app session's grant, `None` when it has none. It starts from
    /// the grant's record that the [`Session`](super::Session) extractor read with the app
    /// session where the store reads both in one query ([`LoadedGrant`](super::LoadedGrant),
    /// taken out of `extensions`), so that its first call does not read the grant again;
    /// without one, it reads the store as usual.
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
    ///         .oauth_session(&session, request.extensions_mut())
    ///         .ok_or(StatusCode::UNAUTHORIZED)?;
    ///     let info = oauth
    ///         .token_info(atsession::oauth::Refresh::IfStale)
    ///         .await
    ///         .map_err(|_| StatusCode::BAD_GATEWAY)?;
    ///     Ok(info.sub.to_string())
    /// }
    /// ```
    pub fn oauth_session(
        &self,
        session: &Session,
        extensions: &mut http::Extensions,
    ) -> Option<OAuthSession<AnyStore>> {
        let grant = session.grant_id.as_ref()?;
        match extensions.remove::<super::LoadedGrant>() {
            Some(super::LoadedGrant(record)) if &record.id == grant => {
                Some(self.getter().session_with(record))
            }
            _ => Some(self.getter().session(grant.clone())),
        }
    }

    /// The OAuth client.
    #[must_use]
    pub fn client(&self) -> &OAuthClient<AnyStore> {
        self.inner.getter.client()
    }

    /// The paths and pages.
    #[must_use]
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// Whether the client is confidential (publishes its metadata and keys).
    #[must_use]
    pub fn is_confidential(&self) -> bool {
        self.client().jwks().is_some()
    }

    /// Ends one app session and signs out its OAuth grant through the session getter (its
    /// tokens are revoked at the authorization server, then it is deleted, and
    /// [`SessionEvent::Deleted`](crate::oauth::SessionEvent::Deleted) fires). `Ok(false)` if
    /// the session was already gone.
    ///
    /// The app session is deleted first: if the grant then fails to sign out, the user is
    /// signed out here all the same, and the error says what is left.
    pub async fn sign_out(&self, session: &Session) -> Result<bool, SignOutError> {
        let existed = self.inner.sessions.delete(&session.id).await?;
        if let Some(grant) = &session.grant_id {
            self.inner.getter.sign_out(grant).await?;
        }
        Ok(existed)
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
    /// [`SessionManager::delete_expired`] when sessions belong to grants.
    pub async fn delete_expired(&self) -> Result<u64, SignOutError> {
        /// Sessions with grants handled per store read.
        const BATCH: usize = 100;
        use crate::store::SessionStore as _;
        let sessions = &self.inner.sessions;
        let now = sessions.now();
        let mut ended = 0;
        loop {
            let batch = sessions
                .store()
                .expired_with_grants(now, BATCH)
                .await
                .map_err(crate::app::SessionError::from)?;
            for (session, grant) in &batch {
                if let Err(e) = self.inner.getter.sign_out(grant).await {
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

    /// Signs an account out everywhere: every app session of `did` ends, and every OAuth
    /// grant of `did` is signed out through the session getter (so a `Deleted` event fires
    /// for each). Returns how many app sessions ended. Grants that fail to sign out are
    /// tried all the same; the first failure is returned at the end.
    pub async fn sign_out_everywhere(&self, did: &Did) -> Result<u64, SignOutError> {
        let ended = self.inner.sessions.delete_all(did).await?;
        let grants = self
            .client()
            .grants_of(did)
            .await
            .map_err(crate::oauth::GrantError::from)?;
        let mut first_error = None;
        for grant in grants {
            if let Err(e) = self.inner.getter.sign_out(&grant).await {
                tracing::warn!(error = %e, grant = %grant, "signing a grant out failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(ended),
        }
    }
}
