//! The Redis/Valkey store: for apps whose instances share one Redis or Valkey server.
//!
//! A [`RedisStore`] talks through redis-rs's [`ConnectionManager`]: one multiplexed
//! connection, reconnected in the background when it drops. Every key starts with a
//! configurable prefix (`atsession:` unless told otherwise). App sessions use:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}s:{id}` | hash | the record (times in Unix milliseconds) |
//! | `{prefix}t:{token_hash_hex}` | string | the id of the session with this token hash |
//! | `{prefix}a:{access_hash_hex}` | string | the id of the session with this access-token hash |
//! | `{prefix}d:{did}` | set | the ids of the account's sessions |
//! | `{prefix}x` | sorted set | `{id}{did}` scored by expiry, for cleanup |
//! | `{prefix}schema` | string | the layout's version, [`SCHEMA_VERSION`]; never expires |
//!
//! **The mark.** Opening a store ([`RedisStore::connect`]) writes `{prefix}schema` if it is
//! missing, and refuses a prefix marked with a newer version. [`RedisStore::connect_read_only`]
//! writes nothing and needs the mark at exactly [`SCHEMA_VERSION`]: without it the prefix
//! holds no store ([`DatabaseProblem::Missing`]), or one written before the mark existed
//! ([`DatabaseProblem::NotMigrated`] with `found: 0`, told apart by its cleanup sorted sets).
//! A store made by [`RedisStore::from_connection`] writes no mark until one of the
//! `connect` functions opens its prefix.
//!
//! [`DatabaseProblem::Missing`]: super::DatabaseProblem::Missing
//! [`DatabaseProblem::NotMigrated`]: super::DatabaseProblem::NotMigrated
//!
//! Each session key and its two token index keys expire (`PEXPIREAT`) at the session's
//! expiry, so Redis drops an expired session by itself, even if no cleanup ever runs. The DID
//! set expires at the latest expiry of its members. Creation, update and deletion are Lua
//! scripts, so a session and its index entries change together; an update is
//! compare-and-swap on the version inside the script and never inserts; deleting every
//! session of an account is one script, one round trip.
//!
//! **Expiry and the indexes.** Because Redis expires session keys on its own, the DID set and
//! the cleanup sorted set may still name a session whose key is gone. Listing skips (and
//! prunes) such ids; deleting by DID and [`delete_expired`] remove them and count only the
//! sessions that still existed. [`delete_expired`] walks the sorted set in batches of 1000 and
//! is what keeps that set small: run it periodically
//! ([`SessionManager::spawn_cleanup`](crate::app::SessionManager::spawn_cleanup)).
//! Unlike the other backends, a record whose expiry has passed *by the Redis server's clock*
//! is gone, not returned expired.
//!
//! **OAuth.** The store also keeps the OAuth client's pending states ([`StateStore`]) and
//! grants ([`GrantStore`]), sealed bytes only:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}os:{state_hash_hex}` | hash | a pending state, expiring (`PEXPIREAT`) at its expiry |
//! | `{prefix}ox` | sorted set | state hashes scored by expiry, for cleanup |
//! | `{prefix}og:{grant_id}` | hash | a grant: id, DID, issuer, sealed bytes, times, version |
//! | `{prefix}od:{did}` | set | the ids of the account's grants |
//!
//! Taking a state is one script (read, delete, check the expiry), so it is taken once.
//! Grant writes are scripts that change the grant and its DID set together; an update is
//! compare-and-swap on the version and never inserts; deleting every grant of an account is
//! one round trip. **Grants have no expiry of their own**: a grant lives until it is deleted
//! (at logout, or when its refresh token is refused), never dropped by Redis.
//!
//! **Redis Cluster.** The scripts compute key names from the prefix, so all of a store's keys
//! must live in one slot: give the prefix a hash tag, e.g. `{atsession}:`.
//!
//! Errors name the store (`redis`) and never carry the connection URL or its password.
//!
//! ```no_run
//! # async fn demo() -> Result<(), atsession::store::StoreError> {
//! use atsession::app::SessionManager;
//! use atsession::store::redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://cache.internal:6379").await?;
//! // or with its own key prefix:
//! let store = RedisStore::connect_with_prefix("redis://cache.internal:6379/1", "myapp:sess:").await?;
//! let manager = SessionManager::new(store);
//! # Ok(()) }
//! ```
//!
//! [`delete_expired`]: crate::store::SessionStore::delete_expired
//! [`StateStore`]: crate::store::oauth::StateStore
//! [`GrantStore`]: crate::store::oauth::GrantStore

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{DatabaseProblem, StoreError};

pub mod lock;
mod oauth;
mod sessions;

pub use lock::RedisLock;
pub use redis::aio::ConnectionManager as RedisConnection;
pub use sessions::GRANT_SESSION_GRACE;

pub(crate) const BACKEND: &str = "redis";

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "atsession:";

/// The version of the key layout, recorded in `{prefix}schema` (see the module's docs).
pub const SCHEMA_VERSION: u32 = 1;

/// ARGV: the mark's key, this build's version. Writes the mark if missing; returns it, or
/// `''` if the key holds something other than a string.
const MARK: &str = r"
local t = redis.call('TYPE', ARGV[1]).ok
if t == 'none' then
  redis.call('SET', ARGV[1], ARGV[2])
  return ARGV[2]
end
if t ~= 'string' then return '' end
return redis.call('GET', ARGV[1])
";

/// How long connecting, and each command, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions (app sessions, OAuth states and grants) in Redis or Valkey. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    /// The bound on one call.
    timeout: Duration,
    /// Opened read-only: every write fails, and nothing is pruned.
    read_only: bool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection's address: it may hold a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

pub(crate) fn err(operation: &'static str) -> impl FnOnce(redis::RedisError) -> StoreError {
    move |e| {
        if e.is_timeout() {
            StoreError::Timeout {
                backend: BACKEND,
                operation,
            }
        } else {
            StoreError::backend(BACKEND, operation, e)
        }
    }
}

/// A connection manager for `url`, with bounded connect and response times and a short
/// retry schedule, so that a server that is down gives an error rather than a hang.
pub(crate) async fn connection_for(url: &str) -> Result<ConnectionManager, StoreError> {
    // The parser's own message is dropped: it could quote part of the URL.
    let malformed = |_| StoreError::backend(BACKEND, "connect", "the Redis URL is malformed");
    let (url, root_cert) = crate::store::open::take_query_param(url, "sslrootcert");
    let client = match root_cert {
        Some(path) if url.starts_with("rediss://") => {
            let pem = std::fs::read(&path).map_err(|e| {
                StoreError::backend(
                    BACKEND,
                    "connect",
                    crate::store::open::CaFileError(Box::new(e)),
                )
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url.as_str(), certs).map_err(malformed)?
        }
        _ => redis::Client::open(url.as_str()).map_err(malformed)?,
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(err("connect"))
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://…` for
    /// TLS) with the key prefix `atsession:`.
    ///
    /// With `rediss://` the server's certificate (chain and host name) is verified against
    /// the platform's roots, or against the PEM file named by `?sslrootcert=<path>`. TLS uses
    /// the process's default rustls provider, or *ring* when none is installed.
    ///
    /// Fails if the server cannot be reached: the error names the store and carries the
    /// driver's error, never the URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, DEFAULT_PREFIX).await
    }

    /// Like [`connect`](Self::connect), with every key starting with `prefix`.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let store = Self::from_connection(connection_for(url).await?, prefix);
        let found: String = store
            .bounded("connect", async {
                redis::Script::new(MARK)
                    .arg(store.mark_key())
                    .arg(SCHEMA_VERSION)
                    .invoke_async(&mut store.conn.clone())
                    .await
                    .map_err(err("mark"))
            })
            .await?;
        store.check_mark(Some(&found), false)?;
        Ok(store)
    }

    /// Opens an existing, current store under the prefix `atsession:` without writing: see
    /// [`connect_read_only_with_prefix`](Self::connect_read_only_with_prefix).
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        Self::connect_read_only_with_prefix(url, DEFAULT_PREFIX).await
    }

    /// Opens an existing store under `prefix` without writing to it: nothing is marked,
    /// listing prunes nothing, and every write through the store fails. *Current* means the
    /// mark `{prefix}schema` holds exactly [`SCHEMA_VERSION`]; without it the prefix is
    /// [`DatabaseProblem::Missing`] (or [`DatabaseProblem::NotMigrated`] if it holds a store
    /// from before the mark: open it once with [`connect`](Self::connect)); a mark that is
    /// not a version number is [`DatabaseProblem::Foreign`], a higher version
    /// [`DatabaseProblem::Newer`].
    ///
    /// Locks made from this store ([`RedisLock::new`]) still write their leases.
    pub async fn connect_read_only_with_prefix(
        url: &str,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        let mut store = Self::from_connection(connection_for(url).await?, prefix);
        store.read_only = true;
        let p = store.prefix.to_string();
        let (kind, cleanup_sets): (String, u64) = store
            .bounded("connect", async {
                redis::pipe()
                    .cmd("TYPE")
                    .arg(store.mark_key())
                    .cmd("EXISTS")
                    .arg(format!("{p}x"))
                    .arg(format!("{p}ox"))
                    .query_async(&mut store.conn.clone())
                    .await
                    .map_err(err("connect"))
            })
            .await?;
        let mark: Option<String> = if kind == "string" {
            store
                .bounded("connect", async {
                    redis::cmd("GET")
                        .arg(store.mark_key())
                        .query_async(&mut store.conn.clone())
                        .await
                        .map_err(err("connect"))
                })
                .await?
        } else {
            None
        };
        match kind.as_str() {
            "none" if cleanup_sets > 0 => Err(store.problem(DatabaseProblem::NotMigrated {
                found: 0,
                expected: SCHEMA_VERSION,
            })),
            "none" => Err(store.problem(DatabaseProblem::Missing)),
            "string" => {
                store.check_mark(mark.as_deref(), true)?;
                Ok(store)
            }
            _ => Err(store.problem(DatabaseProblem::Foreign)),
        }
    }

    fn mark_key(&self) -> String {
        format!("{}schema", self.prefix)
    }

    fn problem(&self, problem: DatabaseProblem) -> StoreError {
        StoreError::Database {
            backend: BACKEND,
            database: format!("under the prefix `{}`", self.prefix),
            problem,
        }
    }

    /// Checks the mark's value: a version this build can use (exactly this build's, when
    /// `exact`; no newer one otherwise).
    fn check_mark(&self, mark: Option<&str>, exact: bool) -> Result<(), StoreError> {
        let Some(found) = mark.and_then(|m| m.parse::<u32>().ok()) else {
            return Err(self.problem(DatabaseProblem::Foreign));
        };
        let expected = SCHEMA_VERSION;
        if found > expected {
            Err(self.problem(DatabaseProblem::Newer { found, expected }))
        } else if exact && found < expected {
            Err(self.problem(DatabaseProblem::NotMigrated { found, expected }))
        } else {
            Ok(())
        }
    }

    /// A store on a connection manager you made, with every key starting with `prefix`.
    #[must_use]
    pub fn from_connection(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            timeout: super::DEFAULT_OPERATION_TIMEOUT,
            read_only: false,
        }
    }

    /// Bounds every call of this store (and of a [`RedisLock`] made from it) to `timeout`
    /// (default [`DEFAULT_OPERATION_TIMEOUT`](super::DEFAULT_OPERATION_TIMEOUT)). A call
    /// that takes longer fails with [`StoreError::Timeout`]; a write that timed out may
    /// still have been applied. Taken between 1 ms and
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION). The connection made by
    /// [`connect`](Self::connect) also has a response timeout of 5 s of its own.
    ///
    /// [`RedisLock`]: crate::store::redis::RedisLock
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(Duration::from_millis(1), crate::clock::MAX_DURATION);
        self
    }

    /// The bound on one call.
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one call within the store's time bound.
    pub(crate) async fn bounded<T, E: From<StoreError>>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        super::bounded(BACKEND, operation, self.timeout, call).await
    }

    /// [`bounded`](Self::bounded) for a write: refused at once by a read-only store.
    pub(crate) async fn bounded_write<T, E: From<StoreError>>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if self.read_only {
            return Err(StoreError::backend(BACKEND, operation, ReadOnly).into());
        }
        self.bounded(operation, call).await
    }

    /// Whether the store was opened read-only.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection manager (cheap to clone).
    #[must_use]
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// A write through a store opened read-only.
#[derive(Debug, thiserror::Error)]
#[error("the store was opened read-only")]
struct ReadOnly;
