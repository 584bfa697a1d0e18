//! The session getter: reads a grant, and refreshes its tokens when they are about to
//! expire — at most once at a time per grant, in this process and (with a [`Lock`]) across
//! every process that shares the store.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::events::{DeleteCause, SessionEvent, TokenSetInfo};
use super::oauth_session::OAuthSession;
use crate::clock::truncate_ms;
use crate::lock::{Lock, LockError};
use crate::oauth::client::OAuthClient;
use crate::oauth::client::error::OAuthError;
use crate::oauth::client::grant::{Grant, refresh_lock_key};
use crate::store::Cas;
use crate::store::oauth::{GrantId, GrantStore, StateStore, StoredGrant};

/// What a call does with a stale token set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refresh {
    /// Refresh it first (the default).
    #[default]
    IfStale,
    /// Refresh even if it is fresh (unless another refresh finished while this call waited).
    Force,
    /// Return it as stored, stale or not.
    AcceptStale,
}

/// How a [`SessionGetter`] behaves.
#[derive(Clone)]
pub struct GetterConfig {
    /// The cross-process lock taken around every refresh; `None` for a single process.
    pub lock: Option<Arc<dyn Lock>>,
    /// How long to wait for the lock (default 40 s: longer than one refresh elsewhere).
    pub lock_timeout: Duration,
    /// The cap on one refresh, request and save (default 30 s).
    pub refresh_timeout: Duration,
    /// A token set is stale this long before it expires… (default 10 s)
    pub stale_margin: Duration,
    /// …plus a random part of this (default 30 s).
    pub stale_jitter: Duration,
    /// Without a lock: the pause before re-reading the store after `invalid_grant`
    /// (default 1 s).
    pub recheck_delay: Duration,
    /// How many events a slow subscriber may lag behind (default 1024).
    pub events_capacity: usize,
    /// How many opened (decrypted) sessions are kept for reuse (default 4,096; at least 1).
    pub opened_capacity: usize,
    /// Whether [`OAuthSession::xrpc_procedure`] checks the stored scope before sending and
    /// refuses a call it plainly does not permit with [`GrantError::ScopeMissing`] (default `false`). See
    /// [`OAuthSession::check_scope`].
    pub scope_check: bool,
}

impl Default for GetterConfig {
    fn default() -> Self {
        Self {
            lock: None,
            lock_timeout: Duration::from_secs(40),
            refresh_timeout: Duration::from_secs(30),
            stale_margin: Duration::from_secs(10),
            stale_jitter: Duration::from_secs(30),
            recheck_delay: Duration::from_secs(1),
            events_capacity: 1024,
            opened_capacity: 4096,
            scope_check: false,
        }
    }
}

impl fmt::Debug for GetterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetterConfig")
            .field("lock", &self.lock.is_some())
            .field("lock_timeout", &self.lock_timeout)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("stale_margin", &self.stale_margin)
            .field("stale_jitter", &self.stale_jitter)
            .field("recheck_delay", &self.recheck_delay)
            .field("events_capacity", &self.events_capacity)
            .field("opened_capacity", &self.opened_capacity)
            .field("scope_check", &self.scope_check)
            .finish_non_exhaustive()
    }
}

impl GetterConfig {
    /// Takes `lock` around every refresh.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), atsession::store::StoreError> {
    /// use atsession::store::sqlite::SqliteLock;
    /// use atsession::oauth::GetterConfig;
    /// use atsession::store::sqlite::SqliteStore;
    ///
    /// // Every process that opens this file refreshes a grant only under its lease.
    /// let store = SqliteStore::open_in_memory().await?;
    /// let config = GetterConfig::default().lock(SqliteLock::new(&store));
    /// assert!(config.lock.is_some());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn lock(mut self, lock: impl Lock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// Makes [`OAuthSession::xrpc_procedure`] check the stored scope before sending.
    ///
    /// ```
    /// use atsession::oauth::GetterConfig;
    ///
    /// assert!(GetterConfig::default().scope_check(true).scope_check);
    /// ```
    #[must_use]
    pub fn scope_check(mut self, on: bool) -> Self {
        self.scope_check = on;
        self
    }

    /// Sets the cap on one refresh.
    ///
    /// ```
    /// use std::time::Duration;
    /// use atsession::oauth::GetterConfig;
    ///
    /// let config = GetterConfig::default().refresh_timeout(Duration::from_secs(10));
    /// assert_eq!(config.refresh_timeout, Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }
}

/// What went wrong getting, refreshing or using a grant (through the [`SessionGetter`] or an
/// [`OAuthSession`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// No such grant (never was, signed out, or deleted after a refused refresh).
    #[error("no OAuth grant {0}")]
    NotFound(GrantId),
    /// The refresh was refused for good; the grant was deleted.
    #[error("the refresh was refused; grant {grant_id} was deleted")]
    Deleted {
        /// The grant.
        grant_id: GrantId,
        /// Why.
        cause: DeleteCause,
        /// The refusal.
        #[source]
        source: Box<OAuthError>,
    },
    /// The refresh failed (network, 5xx, …); the grant is kept and a later call retries.
    #[error("the refresh failed; the grant is kept")]
    Refresh(#[source] OAuthError),
    /// The refresh did not finish within the timeout; the grant is kept.
    #[error("the refresh did not finish within {0:?}; the grant is kept")]
    Timeout(Duration),
    /// The cross-process lock was not acquired.
    #[error("cannot take the refresh lock")]
    Lock(#[source] LockError),
    /// The refreshed tokens could not be stored: they were revoked and the grant deleted.
    #[error("the refreshed tokens could not be stored; they were revoked")]
    SaveFailed(#[source] OAuthError),
    /// Reading the grant, or an OAuth request, failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// An XRPC call answered an error.
    #[error("the XRPC call answered HTTP {status}: {error}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Xrpc {
        /// The HTTP status.
        status: u16,
        /// The XRPC error name (`unknown` if the body had none).
        error: String,
        /// The message, if any (cut to 200 characters).
        message: Option<String>,
    },
    /// The grant lacks a scope the call needs: the PDS answered `403 ScopeMissingError`
    /// (`message` is its message), or, with [`GetterConfig::scope_check`], the stored scope
    /// plainly does not permit the call and nothing was sent (`message` is `None`).
    /// `scope` is the missing scope as the PDS names it (empty if it named none).
    #[error("the grant lacks the scope `{scope}` ({})", if .message.is_some() { "refused by the PDS" } else { "refused before sending" })]
    ScopeMissing {
        /// The missing scope, e.g. `repo:app.bsky.feed.post?action=create`.
        scope: String,
        /// The PDS's message.
        message: Option<String>,
    },
    /// An XRPC answer is not the JSON expected.
    #[error("the XRPC answer is not the JSON expected")]
    InvalidResponse(#[source] serde_json::Error),
    /// An invalid NSID or request.
    #[error("invalid XRPC request: {0}")]
    InvalidRequest(&'static str),
    /// The refresh task ended abnormally.
    #[error("the refresh task ended abnormally")]
    Task,
    /// The PDS refused a call whose body was a stream, which cannot be sent again; nothing
    /// was resent. What the retry needs is in place (the new DPoP nonce is cached, or the
    /// tokens were refreshed) and the grant is kept: make the call again with a fresh body.
    #[error("the PDS refused the streamed call ({0}); it was not resent and can be retried")]
    Retryable(RetryReason),
}

/// Why a call with a streamed body must be made again ([`GrantError::Retryable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The PDS asked for a new DPoP nonce (`use_dpop_nonce`); it is now cached.
    UseDpopNonce,
    /// The PDS refused the access token (`invalid_token`); the tokens were refreshed.
    InvalidToken,
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InvalidToken => "invalid_token",
        })
    }
}

impl GrantError {
    /// Whether making the same call again (with a fresh body) may succeed:
    /// [`GrantError::Retryable`].
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

type Flights = Mutex<HashMap<GrantId, Weak<tokio::sync::Mutex<()>>>>;

/// An opened session, with the sealed bytes it was opened from.
struct Opened {
    sealed: Vec<u8>,
    data: Arc<Grant>,
}

struct Inner<S> {
    client: OAuthClient<S>,
    config: GetterConfig,
    flights: Flights,
    /// Opened sessions by grant (a concurrent cache with S3-FIFO eviction).
    opened: quick_cache::sync::Cache<GrantId, Arc<Opened>>,
    events: broadcast::Sender<SessionEvent>,
}

/// The session getter: reads a grant, and refreshes its tokens when they are about to
/// expire — at most once at a time per grant, in this process and (with a [`Lock`]) across
/// every process that shares the store.
///
/// # When a grant is refreshed
///
/// A token set is *stale* when `expires_at < now + 10 s + random(0..30 s)` (the margin and
/// the jitter are [configurable](GetterConfig)); the jitter spreads the refreshes of many
/// processes over time. [`Refresh`] chooses what a call does with a stale token set.
///
/// # One refresh per grant
///
/// - In the process: callers that want to refresh the same grant queue on one per-grant
///   async mutex. The first refreshes; each of the others, once it gets the mutex, re-reads
///   the store, sees a newer version than the one it started from and uses it (one store
///   read each, no second refresh).
/// - Across processes: when a [`Lock`] is configured, the refresh runs only under the lease
///   `atsession:oauth-refresh:<grant id>`, taken within [`GetterConfig::lock_timeout`] (or
///   [`GrantError::Lock`]), and the store is re-read under it. A refresh never runs
///   without the lease when a lock is configured.
/// - Without a lock, a refresh refused with `invalid_grant` may mean that another process
///   used the refresh token first: the getter waits [`GetterConfig::recheck_delay`] and
///   re-reads the store. If the grant's version changed, that process's tokens are used;
///   otherwise the grant is gone.
///
/// # The common path
///
/// A fresh grant costs one store read. The getter keeps the sessions it opened (up to
/// [`GetterConfig::opened_capacity`], 4,096 by default, about 3 KiB each; the least useful
/// are evicted first) with the sealed bytes they came from; when the row read is
/// byte-for-byte the one opened before, the opened copy is used, otherwise the row is
/// decrypted and checked again. Opening costs about a hundred times a read (the DPoP key's
/// public half is recomputed from its private scalar), so size the capacity to the number
/// of grants in use at once.
///
/// # What happens to the grant
///
/// Every check and fetch (the grant's decryption, the authorization server's metadata, the
/// client key) happens before the refresh is sent; after the answer the getter only
/// validates and saves. The refresh and its save run on a task of their own, so a caller
/// that goes away does not cancel them, and the whole refresh is capped by
/// [`GetterConfig::refresh_timeout`] (30 s).
///
/// | outcome | grant | event | error |
/// |---|---|---|---|
/// | new tokens, saved (compare-and-swap on the version) | updated | [`SessionEvent::Updated`] | — |
/// | refused: `invalid_grant` at the token endpoint | deleted | [`SessionEvent::Deleted`] | [`GrantError::Deleted`] |
/// | the answer names another `sub` (new tokens revoked) | deleted | `Deleted` ([`DeleteCause::SubjectChanged`]) | `Deleted` |
/// | auth method or client key no longer available; no refresh token | deleted | `Deleted` | `Deleted` |
/// | network error, 5xx, any other error | kept | — | [`GrantError::Refresh`] |
/// | no answer within the timeout | kept | — | [`GrantError::Timeout`] |
/// | new tokens that cannot be stored | new tokens revoked, grant deleted | `Deleted` ([`DeleteCause::SaveFailed`]) | [`GrantError::SaveFailed`] |
/// | grant deleted meanwhile (sign-out) | new tokens revoked | — | [`GrantError::NotFound`] |
/// | grant updated meanwhile (a refresh elsewhere, no lock) | theirs kept | — | — (theirs returned) |
/// | refused, but the grant was replaced meanwhile (a scope upgrade) | the new one kept | — | — (the new one returned) |
///
/// Nothing a server sends can make the getter panic.
///
/// # Example
///
/// ```no_run
/// use atsession::crypto::{AtRestKey, AtRestKeyring};
/// use atsession::store::sqlite::SqliteLock;
/// use atsession::oauth::{
///     ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, Refresh, SessionEvent,
///     SessionGetter,
/// };
/// use atsession::store::oauth::GrantId;
/// use atsession::store::sqlite::SqliteStore;
///
/// # async fn demo(grant_id: GrantId) -> Result<(), Box<dyn std::error::Error>> {
/// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
/// let keyring = AtRestKeyring::new(AtRestKey::from_spec(&std::env::var("AT_REST_KEY")?)?);
/// let store = SqliteStore::open("app.db").await?;
/// let client = OAuthClient::new(OAuthClientConfig::new(metadata, keyring), store.clone())?;
///
/// // One refresh per grant across every process sharing app.db.
/// let getter = SessionGetter::new(client, GetterConfig::default().lock(SqliteLock::new(&store)));
///
/// // Mirror or audit refreshes and deletions.
/// let mut events = getter.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         if let SessionEvent::Deleted { grant_id, cause, .. } = event {
///             println!("grant {grant_id} deleted: {cause:?}");
///         }
///     }
/// });
///
/// // The grant id comes from `OAuthClient::callback` (kept in the app session).
/// let session = getter.session(grant_id);
/// let info = session.token_info(Refresh::IfStale).await?;
/// println!("{} until {:?}", info.sub, info.expires_at);
///
/// // An XRPC query; the tokens are refreshed first if stale, and once more if the PDS
/// // says `invalid_token`.
/// let me: serde_json::Value = session
///     .xrpc_query("com.atproto.server.getSession", &[])
///     .await?;
/// println!("{}", me["handle"]);
///
/// // A procedure.
/// let _: serde_json::Value = session
///     .xrpc_procedure(
///         "com.atproto.repo.createRecord",
///         &serde_json::json!({
///             "repo": info.sub,
///             "collection": "app.bsky.feed.post",
///             "record": {"text": "hi", "createdAt": "2026-01-01T00:00:00Z"},
///         }),
///     )
///     .await?;
///
/// // Log out: revoked at the server, then deleted here.
/// session.sign_out().await?;
/// # Ok(()) }
/// ```
///
/// Cheap to clone; clones share the single-flight map and the event channel.
pub struct SessionGetter<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for SessionGetter<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for SessionGetter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionGetter")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What can be told about a session's token set, without its secrets.
///
/// ```
/// # include!("../../../doc/getter_setup.rs");
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use atsession::oauth::Refresh;
/// use atsession::oauth::token_info;
///
/// let (getter, grant_id) = demo_getter().await;
/// let data = getter.get(&grant_id, Refresh::AcceptStale).await.unwrap();
/// let info = token_info(&data, 1);
/// assert!(info.has_refresh_token);
/// assert!(!format!("{info:?}").contains("refresh-token"));
/// # }
/// ```
#[must_use]
pub fn token_info(grant: &Grant, version: u64) -> TokenSetInfo {
    let t = &grant.token_set;
    TokenSetInfo {
        grant_id: grant.grant_id.clone(),
        sub: t.sub.clone(),
        iss: t.iss.clone(),
        aud: t.aud.clone(),
        scope: t.scope.clone(),
        expires_at: t.expires_at,
        has_refresh_token: t.refresh_token.is_some(),
        version,
        previous_scope: None,
    }
}

/// The deletion cause of a refusal, or `None` when the grant must be kept.
fn refusal(e: &OAuthError) -> Option<DeleteCause> {
    match e {
        OAuthError::Server {
            endpoint: "token",
            status: 400 | 401,
            error,
            ..
        } if error == "invalid_grant" => Some(DeleteCause::RefreshRefused {
            error: error.clone(),
        }),
        OAuthError::SubjectChanged => Some(DeleteCause::SubjectChanged),
        OAuthError::AuthMethodUnsatisfiable => Some(DeleteCause::AuthMethodUnsatisfiable),
        OAuthError::NoRefreshToken => Some(DeleteCause::NoRefreshToken),
        _ => None,
    }
}

impl<S> SessionGetter<S>
where
    S: StateStore + GrantStore + Clone,
{
    /// A getter over `client` (and its store).
    ///
    /// ```
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::{
    ///     ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, SessionGetter,
    /// };
    /// use atsession::store::MemoryStore;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("2026-11", [7; 32])?);
    /// let client = OAuthClient::new(OAuthClientConfig::new(metadata, keyring), MemoryStore::new())?;
    /// let getter = SessionGetter::new(client, GetterConfig::default());
    /// assert!(getter.config().lock.is_none());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn new(client: OAuthClient<S>, config: GetterConfig) -> Self {
        let (events, _) = broadcast::channel(config.events_capacity.max(1));
        let opened = quick_cache::sync::Cache::new(config.opened_capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                client,
                config,
                flights: Mutex::new(HashMap::new()),
                opened,
                events,
            }),
        }
    }

    /// The OAuth client (for logins: [`OAuthClient::authorize`] and
    /// [`OAuthClient::callback`]).
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::store::oauth::GrantStore;
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let stored = getter.client().store().load_grant(&grant_id).await.unwrap().unwrap();
    /// assert_eq!(stored.version, 1);
    /// # }
    /// ```
    #[must_use]
    pub fn client(&self) -> &OAuthClient<S> {
        &self.inner.client
    }

    /// The configuration.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (getter, _) = demo_getter().await;
    /// assert_eq!(getter.config().stale_margin, std::time::Duration::from_secs(10));
    /// # }
    /// ```
    #[must_use]
    pub fn config(&self) -> &GetterConfig {
        &self.inner.config
    }

    /// Subscribes to the [`SessionEvent`]s sent from now on.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::{DeleteCause, SessionEvent};
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let mut events = getter.subscribe();
    /// // The revocation fails (the demo server is unreachable); the grant is deleted anyway.
    /// let _ = getter.sign_out(&grant_id).await;
    /// match events.recv().await.unwrap() {
    ///     SessionEvent::Deleted { grant_id: id, cause, .. } => {
    ///         assert_eq!(id, grant_id);
    ///         assert_eq!(cause, DeleteCause::SignedOut);
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// The handle an app uses for one grant.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (getter, grant_id) = demo_getter().await;
    /// let session = getter.session(grant_id.clone());
    /// assert_eq!(session.grant_id(), &grant_id);
    /// # }
    /// ```
    #[must_use]
    pub fn session(&self, grant_id: GrantId) -> OAuthSession<S> {
        OAuthSession::new(self.clone(), grant_id, None)
    }

    /// [`session`](Self::session) for a grant whose record was just read, e.g. with its app
    /// session by
    /// [`SessionManager::load_with_grant_from_headers`](crate::app::SessionManager::load_with_grant_from_headers):
    /// the session's first read of the grant (by [`OAuthSession::send`] or
    /// [`OAuthSession::token_info`], say) uses `record` instead of reading the store again;
    /// later ones read the store as usual. For a record read moments ago, on the same
    /// request: an older one would only make that first call use older tokens.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::{GrantError, Refresh};
    /// use atsession::store::oauth::GrantStore;
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let store = getter.client().store();
    /// let record = store.load_grant(&grant_id).await.unwrap().unwrap();
    /// let session = getter.session_with(record);
    /// assert_eq!(session.grant_id(), &grant_id);
    /// // Signed out elsewhere just after the record was read: the first read uses the
    /// // record, every later one the store.
    /// store.delete_grant(&grant_id).await.unwrap();
    /// let info = session.token_info(Refresh::AcceptStale).await.unwrap();
    /// assert_eq!(info.sub.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    /// assert!(matches!(
    ///     session.clone().token_info(Refresh::AcceptStale).await,
    ///     Err(GrantError::NotFound(_))
    /// ));
    /// # }
    /// ```
    #[must_use]
    pub fn session_with(&self, record: StoredGrant) -> OAuthSession<S> {
        OAuthSession::new(self.clone(), record.id.clone(), Some(record))
    }

    /// The grant's session, refreshed first as `refresh` says. Shared: the same stored
    /// grant gives the same `Arc` until it changes.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::Refresh;
    /// let (getter, grant_id) = demo_getter().await;
    /// let data = getter.get(&grant_id, Refresh::IfStale).await.unwrap();
    /// assert_eq!(data.token_set.sub.as_str(), "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
    /// # }
    /// ```
    pub async fn get(
        &self,
        grant_id: &GrantId,
        refresh: Refresh,
    ) -> Result<Arc<Grant>, GrantError> {
        self.get_versioned(grant_id, refresh, None)
            .await
            .map(|(d, _)| d)
    }

    /// Whether a token set is stale at `now` (margin plus a fresh random jitter).
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use atsession::oauth::Refresh;
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// let data = getter.get(&grant_id, Refresh::AcceptStale).await.unwrap();
    /// let expires = data.token_set.expires_at.unwrap();
    /// // Fresh well before the margin and jitter (10 s + up to 30 s), stale within the margin.
    /// assert!(!getter.is_stale(&data, expires - Duration::from_secs(60)));
    /// assert!(getter.is_stale(&data, expires - Duration::from_secs(5)));
    /// # }
    /// ```
    #[must_use]
    pub fn is_stale(&self, grant: &Grant, now: OffsetDateTime) -> bool {
        let Some(exp) = grant.token_set.expires_at else {
            return false;
        };
        let c = &self.inner.config;
        let soonest = crate::clock::add_saturating(now, c.stale_margin);
        if exp < soonest {
            return true;
        }
        if exp >= crate::clock::add_saturating(soonest, c.stale_jitter) {
            return false;
        }
        let r = u32::from_le_bytes(crate::secret::random_bytes::<4>());
        let jitter = c.stale_jitter.mul_f64(f64::from(r) / f64::from(u32::MAX));
        exp < crate::clock::add_saturating(soonest, jitter)
    }

    async fn load(&self, grant_id: &GrantId) -> Result<(StoredGrant, Arc<Grant>), GrantError> {
        self.load_or(grant_id, None).await
    }

    /// The grant, from `preloaded` (read moments ago) when given, else from the store.
    async fn load_or(
        &self,
        grant_id: &GrantId,
        preloaded: Option<StoredGrant>,
    ) -> Result<(StoredGrant, Arc<Grant>), GrantError> {
        let client = &self.inner.client;
        let found = match preloaded {
            Some(stored) => Some(stored),
            None => client
                .store()
                .load_grant(grant_id)
                .await
                .map_err(OAuthError::from)?,
        };
        let Some(stored) = found else {
            self.inner.opened.remove(grant_id);
            return Err(GrantError::NotFound(grant_id.clone()));
        };
        // The same sealed bytes open to the same session: reuse it (rebuilding the DPoP
        // key from its private scalar costs an elliptic-curve multiplication).
        if let Some(opened) = self.inner.opened.get(grant_id)
            && opened.sealed == stored.sealed
        {
            return Ok((stored, Arc::clone(&opened.data)));
        }
        let data = Arc::new(Grant::open(&stored, &client.core().keyring)?);
        self.inner.opened.insert(
            grant_id.clone(),
            Arc::new(Opened {
                sealed: stored.sealed.clone(),
                data: Arc::clone(&data),
            }),
        );
        Ok((stored, data))
    }

    /// The session and its stored version. With `Refresh::Force`, `seen` is the version the
    /// caller found wanting (e.g. refused by the PDS); a newer one stored meanwhile is used
    /// instead of refreshing again.
    pub(crate) async fn get_versioned(
        &self,
        grant_id: &GrantId,
        refresh: Refresh,
        seen: Option<u64>,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        self.get_versioned_from(grant_id, refresh, seen, None).await
    }

    /// [`get_versioned`](Self::get_versioned) starting from `preloaded`, the grant's record
    /// read moments ago, when given.
    pub(crate) async fn get_versioned_from(
        &self,
        grant_id: &GrantId,
        refresh: Refresh,
        seen: Option<u64>,
        preloaded: Option<StoredGrant>,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        let (stored, data) = self.load_or(grant_id, preloaded).await?;
        let now = self.inner.client.core().clock.now();
        let wanted = match refresh {
            Refresh::AcceptStale => false,
            Refresh::IfStale => self.is_stale(&data, now),
            Refresh::Force => true,
        };
        tracing::debug!(grant = %grant_id, version = stored.version, refresh = wanted, "grant loaded");
        if !wanted {
            return Ok((data, stored.version));
        }
        let seen = seen.unwrap_or(stored.version);
        let this = self.clone();
        let id = grant_id.clone();
        let flight = self.flight(grant_id).lock_owned().await;
        // The rest runs on its own task: a caller that goes away does not cancel a refresh.
        tokio::spawn(async move {
            let r = this.refresh_under_lock(&id, refresh, seen).await;
            drop(flight);
            r
        })
        .await
        .map_err(|_| GrantError::Task)?
    }

    fn flight(&self, grant_id: &GrantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = map.get(grant_id).and_then(Weak::upgrade) {
            return m;
        }
        if map.len() >= 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let m = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(grant_id.clone(), Arc::downgrade(&m));
        m
    }

    async fn refresh_under_lock(
        &self,
        grant_id: &GrantId,
        refresh: Refresh,
        seen: u64,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        let c = &self.inner.config;
        let lease = match &c.lock {
            Some(lock) => Some(
                lock.acquire(
                    &refresh_lock_key(grant_id),
                    c.refresh_timeout.saturating_add(Duration::from_secs(15)),
                    c.lock_timeout,
                )
                .await
                .map_err(GrantError::Lock)?,
            ),
            None => None,
        };
        let r = self.refresh_locked(grant_id, refresh, seen).await;
        if let Some(lease) = lease
            && let Err(e) = lease.release().await
        {
            tracing::warn!(error = %e, grant = %grant_id, "the refresh lease was lost");
        }
        r
    }

    async fn refresh_locked(
        &self,
        grant_id: &GrantId,
        refresh: Refresh,
        seen: u64,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        let c = &self.inner.config;
        let client = &self.inner.client;
        // Another task or process may have refreshed while this one waited.
        let (stored, data) = self.load(grant_id).await?;
        let now = client.core().clock.now();
        let expired = data.token_set.expires_at.is_some_and(|e| e <= now);
        if stored.version != seen && !expired {
            return Ok((data, stored.version));
        }
        if refresh == Refresh::IfStale && !self.is_stale(&data, now) {
            return Ok((data, stored.version));
        }
        let timeout = c.refresh_timeout;
        match tokio::time::timeout(timeout, self.refresh_and_save(stored, data)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(grant = %grant_id, ?timeout, "refresh timed out; grant kept");
                Err(GrantError::Timeout(timeout))
            }
        }
    }

    async fn refresh_and_save(
        &self,
        stored: StoredGrant,
        data: Arc<Grant>,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        let client = &self.inner.client;
        let token_set = match client.refresh(&data).await {
            Ok(t) => t,
            Err(e) => return self.refused_or_kept(&stored, &data, e).await,
        };
        let new = Arc::new(Grant {
            token_set,
            ..(*data).clone()
        });
        let version = stored.version + 1;
        let now = truncate_ms(client.core().clock.now());
        let saved = match new.seal(&client.core().keyring, now, version) {
            Ok(g) => client
                .store()
                .update_grant(stored.version, &g)
                .await
                .map_err(OAuthError::from),
            Err(e) => Err(e),
        };
        match saved {
            Ok(Cas::Updated) => {
                let mut info = token_info(&new, version);
                if new.token_set.scope != data.token_set.scope {
                    info.previous_scope = Some(data.token_set.scope.clone());
                }
                self.emit(SessionEvent::Updated(info));
                tracing::debug!(grant = %new.grant_id, version, "grant refreshed");
                Ok((new, version))
            }
            Ok(Cas::Conflict) => {
                // Someone else stored a newer token set (a refresh elsewhere, without a
                // lock). Theirs is kept: revoking ours would end the grant for them too.
                tracing::warn!(grant = %data.grant_id, "grant updated during refresh; using the stored one");
                let (s, d) = self.load(&data.grant_id).await?;
                Ok((d, s.version))
            }
            Ok(Cas::Missing) => {
                // Signed out meanwhile: nobody may hold the new tokens.
                let _ = client.revoke_tokens(&new).await;
                Err(GrantError::NotFound(data.grant_id.clone()))
            }
            Err(e) => {
                // The old refresh token is spent; the new tokens cannot be kept.
                let _ = client.revoke_tokens(&new).await;
                let _ = client.store().delete_grant(&data.grant_id).await;
                self.emit(SessionEvent::Deleted {
                    grant_id: data.grant_id.clone(),
                    did: data.token_set.sub.clone(),
                    cause: DeleteCause::SaveFailed,
                });
                Err(GrantError::SaveFailed(e))
            }
        }
    }

    async fn refused_or_kept(
        &self,
        stored: &StoredGrant,
        grant: &Grant,
        e: OAuthError,
    ) -> Result<(Arc<Grant>, u64), GrantError> {
        let Some(cause) = refusal(&e) else {
            tracing::warn!(grant = %grant.grant_id, error = %e, "refresh failed; grant kept");
            return Err(GrantError::Refresh(e));
        };
        if self.inner.config.lock.is_none() && e.is_invalid_grant() {
            // Another process may have used the refresh token first.
            tokio::time::sleep(self.inner.config.recheck_delay).await;
            match self.load(&grant.grant_id).await {
                Ok((s, d)) if s.version != stored.version => return Ok((d, s.version)),
                Err(GrantError::NotFound(_)) => {
                    return Err(GrantError::Deleted {
                        grant_id: grant.grant_id.clone(),
                        cause,
                        source: Box::new(e),
                    });
                }
                _ => {}
            }
        }
        // A scope upgrade may have replaced (and revoked) the refused tokens meanwhile.
        if self.inner.config.lock.is_some()
            && let Ok((s, d)) = self.load(&grant.grant_id).await
            && s.version != stored.version
        {
            return Ok((d, s.version));
        }
        let client = &self.inner.client;
        if let Err(de) = client.store().delete_grant(&grant.grant_id).await {
            tracing::warn!(grant = %grant.grant_id, error = %de, "cannot delete a refused grant");
            return Err(GrantError::OAuth(de.into()));
        }
        tracing::info!(grant = %grant.grant_id, ?cause, "refresh refused; grant deleted");
        self.emit(SessionEvent::Deleted {
            grant_id: grant.grant_id.clone(),
            did: grant.token_set.sub.clone(),
            cause: cause.clone(),
        });
        Err(GrantError::Deleted {
            grant_id: grant.grant_id.clone(),
            cause,
            source: Box::new(e),
        })
    }

    /// Signs a grant out: revokes its tokens at the authorization server, then deletes it
    /// even when revoking failed (that error is returned after the delete), and sends
    /// [`SessionEvent::Deleted`] with [`DeleteCause::SignedOut`]. `Ok(false)` if there was
    /// no such grant.
    ///
    /// ```
    /// # include!("../../../doc/getter_setup.rs");
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::oauth::{Refresh, GrantError};
    ///
    /// let (getter, grant_id) = demo_getter().await;
    /// // The demo server cannot be reached, so revoking fails: that error is returned, but
    /// // only after the grant is deleted.
    /// assert!(getter.sign_out(&grant_id).await.is_err());
    /// assert!(matches!(
    ///     getter.get(&grant_id, Refresh::IfStale).await,
    ///     Err(GrantError::NotFound(_))
    /// ));
    /// assert!(!getter.sign_out(&grant_id).await.unwrap());
    /// # }
    /// ```
    pub async fn sign_out(&self, grant_id: &GrantId) -> Result<bool, GrantError> {
        let client = &self.inner.client;
        let Some(stored) = client
            .store()
            .load_grant(grant_id)
            .await
            .map_err(OAuthError::from)?
        else {
            return Ok(false);
        };
        let revoked = match Grant::open(&stored, &client.core().keyring) {
            Ok(data) => client.revoke_tokens(&data).await,
            Err(e) => Err(e),
        };
        let existed = client
            .store()
            .delete_grant(grant_id)
            .await
            .map_err(OAuthError::from)?;
        if existed {
            self.emit(SessionEvent::Deleted {
                grant_id: grant_id.clone(),
                did: stored.did.clone(),
                cause: DeleteCause::SignedOut,
            });
        }
        revoked?;
        Ok(existed)
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        // No subscriber is fine.
        let _ = self.inner.events.send(event);
    }
}
