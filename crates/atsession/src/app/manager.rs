//! [`SessionManager`]: create, look up, update, refresh and end app sessions.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use time::OffsetDateTime;

use super::config::{SessionConfig, SessionConfigError};
use super::cookie::{self, CredentialSource};
use super::error::SessionError;
use super::record::{Session, SessionId, StoredSession};
use crate::clock::{Clock, SystemClock, add_saturating, truncate_ms};
use crate::secret::{Token, TokenHash};
use crate::store::oauth::{GrantId, SessionGrantStore, StoredGrant};
use crate::store::{Cas, SessionStore};
use crate::syntax::{Did, Handle};

/// A session just created, with its tokens. The only time the raw tokens exist server-side:
/// hand them to the client ([`SessionManager::set_cookie`], a response body) and drop them.
#[derive(Debug)]
pub struct NewSession {
    /// The session.
    pub session: Session,
    /// The long-lived session token (the cookie's value).
    pub token: Token,
    /// The short-lived access token, when access tokens are on.
    pub access_token: Option<Token>,
}

/// A session found from a request.
#[derive(Debug)]
pub struct LoadedSession {
    /// The session.
    pub session: Session,
    /// Where the credential came from.
    pub source: CredentialSource,
    /// A `Set-Cookie` to send back when the session's idle window slid on this request, so the
    /// browser's cookie lives as long as the session; `None` otherwise.
    pub set_cookie: Option<HeaderValue>,
}

/// The result of [`SessionManager::refresh`].
#[derive(Debug)]
pub struct Refreshed {
    /// The session, its idle window slid.
    pub session: Session,
    /// The new access token, when access tokens are on. The previous one stops working.
    pub access_token: Option<Token>,
}

/// Options for [`SessionManager::create_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CreateOptions {
    /// The OAuth grant the session belongs to.
    pub grant_id: Option<GrantId>,
}

impl CreateOptions {
    /// No grant.
    #[must_use]
    pub fn new() -> Self {
        Self { grant_id: None }
    }

    /// Ties the session to an OAuth grant.
    #[must_use]
    pub fn grant_id(mut self, grant_id: GrantId) -> Self {
        self.grant_id = Some(grant_id);
        self
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// App sessions over a [`SessionStore`].
///
/// Cheap to clone (the store and configuration are shared).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use atsession::app::SessionManager;
/// use atsession::store::MemoryStore;
///
/// let manager = SessionManager::new(MemoryStore::new());
/// let new = manager
///     .create("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "alice.test", serde_json::json!({"theme": "dark"}))
///     .await?;
/// let cookie = manager.set_cookie(&new); // send this as Set-Cookie
/// assert!(cookie.to_str()?.contains("HttpOnly"));
///
/// let session = manager.load(new.token.expose()).await?;
/// assert_eq!(session.handle.as_str(), "alice.test");
/// assert_eq!(session.data["theme"], "dark");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SessionManager<S> {
    store: S,
    config: Arc<SessionConfig>,
    clock: Arc<dyn Clock>,
}

impl<S: Clone> Clone for SessionManager<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: Arc::clone(&self.config),
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<S: SessionStore> SessionManager<S> {
    /// A manager with the default configuration.
    #[must_use]
    pub fn new(store: S) -> Self {
        Self {
            store,
            config: Arc::new(SessionConfig::default()),
            clock: Arc::new(SystemClock),
        }
    }

    /// A manager with `config`, checked first.
    ///
    /// ```
    /// use atsession::app::{CookieConfig, SessionConfig, SessionManager};
    /// use atsession::store::MemoryStore;
    ///
    /// let bad = SessionConfig::default().cookie(CookieConfig::default().domain("example.com"));
    /// assert!(SessionManager::with_config(MemoryStore::new(), bad).is_err()); // __Host- forbids Domain
    /// ```
    pub fn with_config(store: S, config: SessionConfig) -> Result<Self, SessionConfigError> {
        config.validate()?;
        Ok(Self {
            store,
            config: Arc::new(config),
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the clock (for tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        truncate_ms(self.clock.now())
    }

    /// Starts a session for an account, with fresh tokens. `did` and `handle` are validated
    /// against the atproto syntax; `data` is any JSON-serializable value.
    pub async fn create(
        &self,
        did: impl AsRef<str>,
        handle: impl AsRef<str>,
        data: impl Serialize,
    ) -> Result<NewSession, SessionError> {
        self.create_with(did, handle, data, CreateOptions::new())
            .await
    }

    /// [`create`](Self::create) with options, such as the OAuth grant the session belongs to.
    pub async fn create_with(
        &self,
        did: impl AsRef<str>,
        handle: impl AsRef<str>,
        data: impl Serialize,
        options: CreateOptions,
    ) -> Result<NewSession, SessionError> {
        let did = Did::new(did.as_ref()).map_err(SessionError::InvalidDid)?;
        let handle = Handle::new(handle.as_ref()).map_err(SessionError::InvalidHandle)?;
        let data = serde_json::to_value(data).map_err(SessionError::Data)?;
        let now = self.now();
        let absolute = add_saturating(now, self.config.absolute_timeout);
        let token = Token::generate();
        let access_token = self.config.access_token_ttl.map(|_| Token::generate());
        let record = StoredSession {
            id: SessionId::generate(),
            token_hash: token.hash(),
            access_token_hash: access_token.as_ref().map(Token::hash),
            access_expires_at: self.access_expiry(now, absolute),
            did,
            handle,
            data: Arc::new(data),
            grant_id: options.grant_id,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: add_saturating(now, self.config.idle_timeout).min(absolute),
            absolute_expires_at: absolute,
            version: 1,
        };
        self.store.create(&record).await?;
        tracing::debug!(session = %record.id, did = %record.did, "session created");
        Ok(NewSession {
            session: record.into(),
            token,
            access_token,
        })
    }

    fn access_expiry(
        &self,
        now: OffsetDateTime,
        absolute: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        self.config
            .access_token_ttl
            .map(|ttl| add_saturating(now, ttl).min(absolute))
    }

    /// The session a session token belongs to. Slides the idle window (at most once per
    /// touch interval).
    pub async fn load(&self, session_token: &str) -> Result<Session, SessionError> {
        // The hot path, written out: the stored record is shared, not copied, into the
        // session returned.
        let hash = Token::hash_of(session_token).map_err(SessionError::MalformedToken)?;
        let now = self.now();
        let record = self
            .store
            .load_by_token(&hash)
            .await?
            .ok_or(SessionError::NotFound)?;
        match self.check(&record, now, false)? {
            Found::Fresh => Ok(record.into()),
            Found::Stale => Ok(Box::pin(self.touch(record, now)).await?.0),
            Found::Expired => {
                Box::pin(self.forget_expired(&record)).await;
                Err(SessionError::Expired)
            }
        }
    }

    /// The session an access token belongs to, if the access token is still current.
    pub async fn load_by_access_token(&self, access_token: &str) -> Result<Session, SessionError> {
        let hash = Token::hash_of(access_token).map_err(SessionError::MalformedToken)?;
        Ok(self.load_by_access(&hash).await?.0)
    }

    /// The session of an HTTP request: `Authorization: Bearer <token>` if present (an access
    /// token when access tokens are on, the session token otherwise), else the session cookie.
    pub async fn load_from_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<LoadedSession, SessionError> {
        let cred = cookie::credential(headers, &self.config.cookie.name)?;
        let (session, touched) = match cred.source {
            CredentialSource::Bearer if self.config.access_token_ttl.is_some() => {
                self.load_by_access(&cred.token.hash()).await?
            }
            _ => self.load_by_session_token(&cred.token.hash()).await?,
        };
        Ok(self.loaded(cred, session, touched))
    }

    /// [`load_from_headers`](Self::load_from_headers), and the session's OAuth grant record
    /// read with it (`None` when the session has no grant or it is gone): one query on a
    /// store that joins them (SQLite, PostgreSQL; see
    /// [`SessionGrantStore`]). For a request that
    /// calls the user's PDS next: give the grant to
    /// [`SessionGetter::session_with`](crate::oauth::SessionGetter::session_with) so that
    /// the call does not read it again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::app::SessionManager;
    /// use atsession::store::MemoryStore;
    /// use http::{HeaderMap, HeaderValue, header};
    ///
    /// let sessions = SessionManager::new(MemoryStore::new());
    /// let new = sessions.create("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "alice.test", serde_json::json!({})).await.unwrap();
    /// let mut headers = HeaderMap::new();
    /// let bearer = format!("Bearer {}", new.token.expose());
    /// headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    /// let (loaded, grant) = sessions.load_with_grant_from_headers(&headers).await.unwrap();
    /// assert_eq!(loaded.session.handle.as_str(), "alice.test");
    /// assert!(grant.is_none()); // a session made without OAuth has no grant
    /// # }
    /// ```
    pub async fn load_with_grant_from_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<(LoadedSession, Option<StoredGrant>), SessionError>
    where
        S: SessionGrantStore,
    {
        let cred = cookie::credential(headers, &self.config.cookie.name)?;
        let now = self.now();
        let hash = cred.token.hash();
        let access =
            cred.source == CredentialSource::Bearer && self.config.access_token_ttl.is_some();
        let found = if access {
            self.store.load_by_access_token_with_grant(&hash).await?
        } else {
            self.store.load_by_token_with_grant(&hash).await?
        };
        let (found, grant) = found.map_or((None, None), |(s, g)| (Some(s), g));
        let (session, touched) = self.finish(found, now, access).await?;
        Ok((self.loaded(cred, session, touched), grant))
    }

    /// What a request's credential found: the session, and a `Set-Cookie` when its idle
    /// window slid and it came in a cookie.
    fn loaded(&self, cred: cookie::Credential, session: Session, touched: bool) -> LoadedSession {
        let set_cookie = (touched && cred.source == CredentialSource::Cookie).then(|| {
            cookie::set_cookie(
                &self.config.cookie,
                &cred.token,
                self.now(),
                session.expires_at(),
            )
        });
        LoadedSession {
            session,
            source: cred.source,
            set_cookie,
        }
    }

    /// The stored record the request's credential names, expired or not, neither checked,
    /// touched nor deleted: for ending what an expired session left behind (its grant) when
    /// its owner logs out. Never a signed-in session.
    #[cfg(feature = "oauth")]
    pub(crate) async fn record_from_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<StoredSession>>, SessionError> {
        let cred = cookie::credential(headers, &self.config.cookie.name)?;
        Ok(match cred.source {
            CredentialSource::Bearer if self.config.access_token_ttl.is_some() => {
                self.store.load_by_access_token(&cred.token.hash()).await?
            }
            _ => self.store.load_by_token(&cred.token.hash()).await?,
        })
    }

    /// [`load_from_headers`](Self::load_from_headers) on a request.
    pub async fn load_from_request<B>(
        &self,
        request: &http::Request<B>,
    ) -> Result<LoadedSession, SessionError> {
        self.load_from_headers(request.headers()).await
    }

    /// One clock read, one store lookup; a write only when the touch interval has passed.
    /// The common case (live, touched recently) is checked without awaiting anything more;
    /// the rare ones (a write, deleting an expired record) are boxed, so that every lookup's
    /// future stays small.
    async fn load_by_session_token(
        &self,
        hash: &TokenHash,
    ) -> Result<(Session, bool), SessionError> {
        let now = self.now();
        let found = self.store.load_by_token(hash).await?;
        self.finish(found, now, false).await
    }

    async fn load_by_access(&self, hash: &TokenHash) -> Result<(Session, bool), SessionError> {
        let now = self.now();
        let found = self.store.load_by_access_token(hash).await?;
        self.finish(found, now, true).await
    }

    /// A record found at `now` as the app sees it: slid when due, deleted when expired.
    /// The rare paths (a write, a delete) are boxed, so that a lookup's future stays small.
    async fn finish(
        &self,
        found: Option<Arc<StoredSession>>,
        now: OffsetDateTime,
        access: bool,
    ) -> Result<(Session, bool), SessionError> {
        let record = found.ok_or(SessionError::NotFound)?;
        match self.check(&record, now, access)? {
            Found::Fresh => Ok((record.into(), false)),
            Found::Stale => Box::pin(self.touch(record, now)).await,
            Found::Expired => {
                Box::pin(self.forget_expired(&record)).await;
                Err(SessionError::Expired)
            }
        }
    }

    /// What a record found at `now` means: live and touched recently, live and due a
    /// touch, or expired. With `access`, the access token must be current too.
    fn check(
        &self,
        record: &StoredSession,
        now: OffsetDateTime,
        access: bool,
    ) -> Result<Found, SessionError> {
        if record.is_expired(now) {
            return Ok(Found::Expired);
        }
        if access && record.access_expires_at.is_none_or(|at| at <= now) {
            return Err(SessionError::AccessTokenExpired);
        }
        if now - record.last_seen_at < self.config.touch_interval {
            return Ok(Found::Fresh);
        }
        Ok(Found::Stale)
    }

    /// Slides the idle window of a live record. Returns whether it wrote.
    async fn touch(
        &self,
        record: Arc<StoredSession>,
        now: OffsetDateTime,
    ) -> Result<(Session, bool), SessionError> {
        // A touch keeps the version: it changes nothing the app wrote, so it must not make
        // the app's next compare-and-swap update fail. It is still conditional on the
        // version, so it can neither resurrect a deleted row nor undo a newer write.
        let mut touched = (*record).clone();
        self.slide(&mut touched, now);
        match self.store.update(record.version, &touched).await? {
            Cas::Updated => Ok((touched.into(), true)),
            // Someone wrote since we read; what we read is still a valid view.
            Cas::Conflict => Ok((record.into(), false)),
            Cas::Missing => Err(SessionError::NotFound),
        }
    }

    fn slide(&self, record: &mut StoredSession, now: OffsetDateTime) {
        record.last_seen_at = now;
        record.idle_expires_at =
            add_saturating(now, self.config.idle_timeout).min(record.absolute_expires_at);
    }

    /// A record that was found and has not expired, at `now`; an expired one is deleted
    /// ([`SessionError::Expired`]), a missing one is [`SessionError::NotFound`].
    async fn live(
        &self,
        found: Option<Arc<StoredSession>>,
        now: OffsetDateTime,
    ) -> Result<Arc<StoredSession>, SessionError> {
        let record = found.ok_or(SessionError::NotFound)?;
        if record.is_expired(now) {
            self.forget_expired(&record).await;
            return Err(SessionError::Expired);
        }
        Ok(record)
    }

    /// Best effort: an expired record is deleted when found, so it cannot be found again;
    /// it is refused as expired whenever it is found until then. A record that belongs to an
    /// OAuth grant is left for the cleanup, which signs the grant out with it
    /// (`AtprotoAuth::delete_expired`): deleted here, it would leave the grant behind.
    async fn forget_expired(&self, record: &StoredSession) {
        if record.grant_id.is_some() {
            return;
        }
        if let Err(e) = self.store.delete(&record.id).await {
            tracing::warn!(session = %record.id, error = %e, "could not delete an expired session");
        }
    }

    /// Replaces the custom data, if the session is still at `session.version`; otherwise
    /// [`SessionError::Conflict`], and nothing is written.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use atsession::app::{SessionManager, SessionError};
    /// # use atsession::store::MemoryStore;
    /// # let manager = SessionManager::new(MemoryStore::new());
    /// # let new = manager.create("did:plc:abc", "alice.test", ()).await?;
    /// let session = manager.load(new.token.expose()).await?;
    /// let updated = manager.update(&session, serde_json::json!({"step": 2})).await?;
    /// assert_eq!(updated.version, session.version + 1);
    /// // A second update from the same stale copy loses the race, loudly.
    /// let stale = manager.update(&session, serde_json::json!({"step": 3})).await;
    /// assert!(matches!(stale, Err(SessionError::Conflict)));
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        session: &Session,
        data: impl Serialize,
    ) -> Result<Session, SessionError> {
        let data = serde_json::to_value(data).map_err(SessionError::Data)?;
        let now = self.now();
        let current = self.live(self.store.load(&session.id).await?, now).await?;
        if current.version != session.version {
            return Err(SessionError::Conflict);
        }
        let mut next = (*current).clone();
        next.data = Arc::new(data);
        next.version += 1;
        self.slide(&mut next, now);
        self.write(current.version, next).await
    }

    async fn write(&self, expected: u64, next: StoredSession) -> Result<Session, SessionError> {
        match self.store.update(expected, &next).await? {
            Cas::Updated => Ok(next.into()),
            Cas::Conflict => Err(SessionError::Conflict),
            Cas::Missing => Err(SessionError::NotFound),
        }
    }

    /// Issues a new access token (the old one stops working), keeps the session token, and
    /// slides the idle window. Without access tokens, only slides the window.
    pub async fn refresh(&self, session_token: &str) -> Result<Refreshed, SessionError> {
        let token = Token::parse(session_token).map_err(SessionError::MalformedToken)?;
        let now = self.now();
        let current = self
            .live(self.store.load_by_token(&token.hash()).await?, now)
            .await?;
        let access_token = self.config.access_token_ttl.map(|_| Token::generate());
        let mut next = (*current).clone();
        next.access_token_hash = access_token.as_ref().map(Token::hash);
        next.access_expires_at = self.access_expiry(now, current.absolute_expires_at);
        next.version += 1;
        self.slide(&mut next, now);
        let session = self.write(current.version, next).await?;
        Ok(Refreshed {
            session,
            access_token,
        })
    }

    /// Ends one session (logout). `true` if it existed.
    pub async fn delete(&self, id: &SessionId) -> Result<bool, SessionError> {
        let deleted = self.store.delete(id).await?;
        tracing::debug!(session = %id, deleted, "session deleted");
        Ok(deleted)
    }

    /// Ends the session a session token belongs to (logout). `true` if it existed.
    pub async fn delete_by_token(&self, session_token: &str) -> Result<bool, SessionError> {
        let token = Token::parse(session_token).map_err(SessionError::MalformedToken)?;
        match self.store.load_by_token(&token.hash()).await? {
            Some(record) => self.delete(&record.id).await,
            None => Ok(false),
        }
    }

    /// The sessions of an account that have not expired, oldest first.
    pub async fn list(&self, did: &Did) -> Result<Vec<Session>, SessionError> {
        let now = self.now();
        Ok(self
            .store
            .list_by_did(did)
            .await?
            .into_iter()
            .filter(|s| !s.is_expired(now))
            .map(Session::from)
            .collect())
    }

    /// Ends every session of an account (on every device); returns how many there were.
    pub async fn delete_all(&self, did: &Did) -> Result<u64, SessionError> {
        let n = self.store.delete_by_did(did).await?;
        tracing::debug!(did = %did, count = n, "all sessions of an account deleted");
        Ok(n)
    }

    /// Deletes every expired session; returns how many. Their OAuth grants are left: when
    /// sessions belong to grants, the web layer's
    /// `AtprotoAuth::delete_expired` (feature `axum`) signs those out first.
    pub async fn delete_expired(&self) -> Result<u64, SessionError> {
        Ok(self.store.delete_expired(self.now()).await?)
    }

    /// `Set-Cookie` for a new session.
    #[must_use]
    pub fn set_cookie(&self, new: &NewSession) -> HeaderValue {
        cookie::set_cookie(
            &self.config.cookie,
            &new.token,
            self.now(),
            new.session.expires_at(),
        )
    }

    /// `Set-Cookie` that clears the session cookie (send it on logout).
    #[must_use]
    pub fn clear_cookie(&self) -> HeaderValue {
        cookie::clear_cookie(&self.config.cookie)
    }
}

/// What a record found by a lookup means.
enum Found {
    /// Live, and used recently: returned as it is.
    Fresh,
    /// Live, and due a touch (its idle window slides).
    Stale,
    /// Expired: deleted, and refused.
    Expired,
}

impl<S: SessionStore + Clone> SessionManager<S> {
    /// Runs [`delete_expired`](Self::delete_expired) every `period` on the current tokio
    /// runtime until the returned handle is dropped. `period` is taken between 1 ms and
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION).
    #[must_use = "the cleanup task stops when the handle is dropped"]
    pub fn spawn_cleanup(&self, period: Duration) -> CleanupTask {
        let manager = self.clone();
        CleanupTask::spawn(period, "sessions", move || {
            let manager = manager.clone();
            async move { manager.delete_expired().await.map_err(|e| e.to_string()) }
        })
    }
}

/// The background cleanup started by [`SessionManager::spawn_cleanup`]; stops when dropped.
#[derive(Debug)]
pub struct CleanupTask(tokio::task::JoinHandle<()>);

impl CleanupTask {
    /// Runs `job` every `period` (taken between 1 ms and
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION)), logging what it deleted or why it
    /// failed, until dropped.
    pub(crate) fn spawn<F, Fut>(period: Duration, what: &'static str, job: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<u64, String>> + Send,
    {
        let period = period.clamp(Duration::from_millis(1), crate::clock::MAX_DURATION);
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match job().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(count = n, what, "expired records deleted"),
                    Err(e) => tracing::warn!(error = %e, what, "cleanup failed"),
                }
            }
        });
        Self(handle)
    }
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn times_near_the_end_of_the_calendar_saturate_instead_of_panicking() {
        let end = time::PrimitiveDateTime::MAX.assume_utc() - time::Duration::days(1);
        let config = SessionConfig::default()
            .absolute_timeout(crate::clock::MAX_DURATION)
            .idle_timeout(crate::clock::MAX_DURATION)
            .access_tokens(crate::clock::MAX_DURATION);
        let manager = SessionManager::with_config(MemoryStore::new(), config)
            .unwrap()
            .with_clock(Arc::new(ManualClock::new(end)));
        let new = manager
            .create("did:plc:abc", "alice.test", ())
            .await
            .unwrap();
        assert!(new.session.absolute_expires_at > end);
        assert!(new.session.idle_expires_at <= new.session.absolute_expires_at);
        manager.refresh(new.token.expose()).await.unwrap();
    }
}
