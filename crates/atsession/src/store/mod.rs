//! Storage: the traits every backend implements, and the backends.
//!
//! A store keeps [`StoredSession`] records and nothing else about them: no raw token ever
//! reaches it, only [`TokenHash`]es. The OAuth client's pending states and grants go through
//! the traits in [`oauth`] ([`StateStore`], [`GrantStore`]), as sealed bytes only, and
//! [`SessionGrantStore`] reads a session with its grant. Every backend implements all four
//! traits ([`Store`] names them together):
//!
//! | backend | type | feature | shared by processes | lock |
//! |---|---|---|---|---|
//! | in-process memory | [`MemoryStore`] | always | no | [`MemoryLock`] |
//! | SQLite (embedded default) | [`SqliteStore`](sqlite::SqliteStore) | `sqlite` (default) | on one machine | [`SqliteLock`](crate::store::sqlite::SqliteLock) |
//! | PostgreSQL | [`PostgresStore`](postgres::PostgresStore) | `postgres` | yes | [`PostgresLock`](crate::store::postgres::PostgresLock) |
//! | Redis / Valkey | [`RedisStore`](redis::RedisStore) | `redis` | yes | [`RedisLock`](crate::store::redis::RedisLock) |
//!
//! **Chosen at run time.** [`open`](fn@open) opens the backend a URL names (`memory:`,
//! `sqlite://…` or a bare path, `postgres://…`, `redis://…`, `rediss://…`, with TLS for
//! PostgreSQL and Redis) as an [`AnyStore`], which implements every trait by handing each
//! call to its backend (a `&dyn Store`); [`AnyStore::lock`] is the lock of the same backend,
//! and [`AnyStore::custom`] takes a store written elsewhere. Bad URLs,
//! unreachable servers and untrusted certificates are typed [`OpenError`]s that name the
//! store but never a password.
//!
//! Each backend keeps its store, its lock (`lock.rs`) and its schema in one folder: SQLite
//! and PostgreSQL as an append-only list of migrations whose applied count is recorded in the
//! database, Redis as a key layout (see the `redis` module). A backend for a new kind of
//! record adds a migration (or a key type) and a file beside `sessions.rs`, as `oauth.rs`
//! does for the OAuth traits.
//!
//! # The contract
//!
//! Every backend passes one conformance suite for app sessions and one for the OAuth traits
//! (its contract is in [`oauth`]); both are public, with the lock suite, behind the feature
//! `conformance` (`atsession::conformance`), so that a store written elsewhere can run them.
//! In short:
//! - [`create`](SessionStore::create) inserts; it never overwrites.
//! - [`update`](SessionStore::update) is compare-and-swap on the version: it writes only if the
//!   stored version is the expected one, and never re-creates a row that is gone. A session
//!   deleted while an update is in flight stays deleted.
//! - Lookups return records as stored, expired or not; the [`SessionManager`] decides what an
//!   expired record means.
//! - [`delete_expired`](SessionStore::delete_expired) removes every record whose idle or
//!   absolute expiry is at or before `now`.
//! - Every call to PostgreSQL or Redis (and every lock call on them) is bounded in time
//!   ([`DEFAULT_OPERATION_TIMEOUT`], configurable per store) and fails with
//!   [`StoreError::Timeout`] when the server does not answer: a frozen server does not hang
//!   the app. **A write that timed out may still have been applied**: the server may have
//!   executed it and only the answer was lost. Read again before assuming either outcome.
//! - One exception, by design: Redis also expires keys on its own (`PEXPIREAT` at the
//!   session's or OAuth state's expiry, by the Redis server's clock), so there an expired
//!   record may be gone before anyone deletes it. OAuth grants never expire on their own.
//!
//! # Writing a store
//!
//! The traits are object-safe: each method takes references that live as long as the call
//! (`'a`) and returns a [`StoreFuture`]. Answer with [`StoreFuture::ready`] when the work is
//! done by the time the method returns (nothing is allocated), and with
//! [`StoreFuture::new`]`(async move { … })` when it has to wait (the future is boxed once).
//! Implement [`SessionStore`], [`StateStore`] and [`GrantStore`], and
//! [`SessionGrantStore`] (empty, unless the backend can read a session and its grant in one
//! query); the store is then a [`Store`], works wherever a store is taken (a
//! [`SessionManager`], the OAuth client, `Arc<YourStore>`, `Box<dyn Store>`), and joins
//! [`AnyStore`] with [`AnyStore::custom`]. This one keeps its records in a [`MemoryStore`]
//! and counts lookups by token:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use atsession::app::{SessionId, SessionManager, StoredSession};
//! use atsession::lock::MemoryLock;
//! use atsession::secret::TokenHash;
//! use atsession::store::oauth::{
//!     GrantCursor, GrantId, GrantPage, GrantStore, SessionGrantStore, StateStore,
//!     StoredAuthState, StoredGrant,
//! };
//! use atsession::store::{AnyStore, Cas, MemoryStore, SessionStore, StoreFuture};
//! use atsession::syntax::Did;
//! use time::OffsetDateTime;
//!
//! #[derive(Default)]
//! struct Counted {
//!     records: MemoryStore,
//!     lookups: AtomicU64,
//! }
//!
//! impl SessionStore for Counted {
//!     fn load_by_token<'a>(
//!         &'a self,
//!         hash: &'a TokenHash,
//!     ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
//!         self.lookups.fetch_add(1, Ordering::Relaxed);
//!         self.records.load_by_token(hash)
//!     }
//!     fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
//!         // A call that waits: an async block, boxed once.
//!         StoreFuture::new(async move {
//!             let deleted = self.records.delete_expired(now).await?;
//!             tokio::task::yield_now().await;
//!             Ok(deleted)
//!         })
//!     }
//!     fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
//!         SessionStore::delete(&self.records, id)
//!     }
//!     // The rest as the records have them.
//!     fn create<'a>(&'a self, s: &'a StoredSession) -> StoreFuture<'a, ()> {
//!         self.records.create(s)
//!     }
//!     fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
//!         self.records.load(id)
//!     }
//!     fn load_by_access_token<'a>(
//!         &'a self,
//!         hash: &'a TokenHash,
//!     ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
//!         self.records.load_by_access_token(hash)
//!     }
//!     fn update<'a>(&'a self, expected: u64, s: &'a StoredSession) -> StoreFuture<'a, Cas> {
//!         self.records.update(expected, s)
//!     }
//!     fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
//!         self.records.list_by_did(did)
//!     }
//!     fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
//!         self.records.delete_by_did(did)
//!     }
//!     fn expired_with_grants<'a>(
//!         &'a self,
//!         now: OffsetDateTime,
//!         limit: usize,
//!     ) -> StoreFuture<'a, Vec<(SessionId, GrantId)>> {
//!         self.records.expired_with_grants(now, limit)
//!     }
//! }
//!
//! impl StateStore for Counted {
//!     fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
//!         self.records.put_state(state)
//!     }
//!     fn take_state<'a>(
//!         &'a self,
//!         key: &'a TokenHash,
//!         now: OffsetDateTime,
//!     ) -> StoreFuture<'a, Option<StoredAuthState>> {
//!         self.records.take_state(key, now)
//!     }
//!     fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
//!         self.records.delete_expired_states(now)
//!     }
//! }
//!
//! impl GrantStore for Counted {
//!     fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
//!         self.records.create_grant(grant)
//!     }
//!     fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
//!         self.records.load_grant(id)
//!     }
//!     fn update_grant<'a>(&'a self, expected: u64, grant: &'a StoredGrant) -> StoreFuture<'a, Cas> {
//!         self.records.update_grant(expected, grant)
//!     }
//!     fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
//!         self.records.delete_grant(id)
//!     }
//!     fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
//!         self.records.list_grants_by_did(did)
//!     }
//!     fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
//!         self.records.delete_grants_by_did(did)
//!     }
//!     fn list_grants<'a>(
//!         &'a self,
//!         cursor: Option<&'a GrantCursor>,
//!         limit: usize,
//!     ) -> StoreFuture<'a, GrantPage> {
//!         self.records.list_grants(cursor, limit)
//!     }
//! }
//!
//! /// Two reads: the session, then its grant (the provided methods).
//! impl SessionGrantStore for Counted {}
//!
//! let store = Arc::new(Counted::default());
//! let sessions = SessionManager::new(Arc::clone(&store));
//! let new = sessions.create("did:plc:abc", "alice.test", ()).await?;
//! sessions.load(new.token.expose()).await?;
//! assert_eq!(store.lookups.load(Ordering::Relaxed), 1);
//!
//! // Behind `AnyStore`, for code that must not be generic (the web layer).
//! let any = AnyStore::custom("counted", Counted::default(), MemoryLock::new());
//! assert_eq!(any.backend(), "counted");
//! # Ok(()) }
//! ```
//!
//! Then prove it keeps the contract: in a test file of your crate, with `atsession` as a
//! dev-dependency with the feature `conformance`, one macro call per suite (the suites
//! are in `atsession::conformance`):
//!
//! ```ignore
//! atsession::session_store_suite!(async { Counted::default() });
//! mod oauth {
//!     atsession::oauth_store_suite!(async { crate::Counted::default() });
//!     atsession::session_grant_store_suite!(async { crate::Counted::default() });
//! }
//! ```
//!
//! # Adding a method to the traits
//!
//! A new method is written in three places: in its trait (the traits are declared inside
//! `store_trait!`, which forwards every method for `Arc<T>`, `Box<T>` and [`AnyStore`], so
//! nothing else names it), in each backend (`memory`, `sqlite`, `postgres`, `redis`), and as
//! a check in the conformance suite (a function in `conformance/`, its name added to the
//! suite's macro). A provided method (one with a body in the trait) needs no backend code
//! unless a backend does it better.
//!
//! [`SessionManager`]: crate::app::SessionManager

use std::error::Error as StdError;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::app::{SessionId, StoredSession};
use crate::secret::TokenHash;
use crate::syntax::Did;
use oauth::{GrantStore, SessionGrantStore, StateStore};

#[macro_use]
mod forward;

mod any;
mod future;
mod memory;
pub mod oauth;
mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use any::AnyStore;
pub use future::StoreFuture;
pub use memory::{MemoryLock, MemoryStore};
pub use open::{OpenError, open, open_read_only};

/// How long one call to a networked store (PostgreSQL, Redis), or one lock call on it, may
/// take by default before it fails with [`StoreError::Timeout`]: 5 seconds. Each store has a
/// `with_operation_timeout` to change it.
pub const DEFAULT_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one store call, failing with [`StoreError::Timeout`] if it takes longer than `limit`.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) async fn bounded<T, E: From<StoreError>>(
    backend: &'static str,
    operation: &'static str,
    limit: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(StoreError::Timeout { backend, operation }.into()),
    }
}

/// A boxed error from a backend's driver.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A storage failure. Names the backend; never carries a password, token or connection
/// string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (connection lost, I/O, constraint, …).
    #[error("the {backend} store failed: {operation}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A call did not finish within the store's time bound. A write that timed out may
    /// still have been applied: the server may have received and executed it before the
    /// answer was lost. Read again before assuming either outcome.
    #[error("the {backend} store did not answer in time: {operation}")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// What was being done.
        operation: &'static str,
    },
    /// The database cannot be used as it is: missing, another application's, or at a schema
    /// this build does not (or a read-only open would have to) migrate. Nothing was written.
    #[error("the {backend} database {database} cannot be used: {problem}")]
    Database {
        /// Which backend.
        backend: &'static str,
        /// The database (a file path for SQLite).
        database: String,
        /// What is wrong.
        problem: DatabaseProblem,
    },
    /// A stored record could not be read back: a column is missing or malformed.
    #[error("the {backend} store holds a corrupt record: {detail}")]
    Corrupt {
        /// Which backend.
        backend: &'static str,
        /// What is wrong (never the record's content).
        detail: &'static str,
        /// The parse error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// A backend failure.
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            operation,
            source: source.into(),
        }
    }

    /// A corrupt record.
    #[must_use]
    pub fn corrupt(backend: &'static str, detail: &'static str) -> Self {
        Self::Corrupt {
            backend,
            detail,
            source: None,
        }
    }
}

/// Why a database cannot be used; see [`StoreError::Database`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseProblem {
    /// There is no database (a read-only open creates none).
    #[error("no such database (it is created by a command that writes, such as `serve`)")]
    Missing,
    /// The database holds other tables and is not marked as atsession's: it belongs to
    /// another application, and is left as it is.
    #[error("not an atsession database (it holds other tables and no atsession mark)")]
    Foreign,
    /// The schema is older than this build's, and the open was read-only, so it was not
    /// migrated.
    #[error(
        "the schema is at version {found}, this build needs {expected}; open it once with a command that writes (such as `serve`) to migrate it"
    )]
    NotMigrated {
        /// The database's schema version.
        found: u32,
        /// This build's.
        expected: u32,
    },
    /// The schema is newer than this build knows.
    #[error("the schema is at version {found}, newer than this build's {expected}")]
    Newer {
        /// The database's schema version.
        found: u32,
        /// This build's.
        expected: u32,
    },
}

/// The outcome of a compare-and-swap [`update`](SessionStore::update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// The record was at the expected version and is now written.
    Updated,
    /// The record exists at another version: someone else wrote first. Nothing was written.
    Conflict,
    /// The record does not exist (deleted, or never was). Nothing was written.
    Missing,
}

store_trait! {
    /// Storage for app sessions.
    ///
    /// Object-safe: every method returns a [`StoreFuture`], so `dyn SessionStore` works, and
    /// the trait is implemented for `Arc<S>`, `Box<S>` (`S: ?Sized`) and [`AnyStore`] too.
    /// A backend answers with [`StoreFuture::ready`] when the work is done by the time the
    /// method returns, and with [`StoreFuture::new`]`(async move { … })` when it waits.
    ///
    /// Lookups return the record shared (`Arc<StoredSession>`): a store that keeps records
    /// in memory hands out the one it holds, without copying it, and the
    /// [`Session`](crate::app::Session) the app gets shares it; a store that reads a row
    /// wraps what it read (`Ok(row.map(Arc::new))`).
    pub trait SessionStore: Send + Sync {
        /// Inserts a new session. Fails if a session with the same id or token hash exists.
        fn create<'a>(&'a self, session: &'a StoredSession) -> StoreFuture<'a, ()>;

        /// The session with this id.
        fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>>;

        /// The session whose session token hashes to `hash`.
        fn load_by_token<'a>(
            &'a self,
            hash: &'a TokenHash,
        ) -> StoreFuture<'a, Option<Arc<StoredSession>>>;

        /// The session whose current access token hashes to `hash`.
        fn load_by_access_token<'a>(
            &'a self,
            hash: &'a TokenHash,
        ) -> StoreFuture<'a, Option<Arc<StoredSession>>>;

        /// Writes `session` if the stored record is at `expected_version`; never inserts.
        /// `session.version` is the new version.
        fn update<'a>(
            &'a self,
            expected_version: u64,
            session: &'a StoredSession,
        ) -> StoreFuture<'a, Cas>;

        /// Deletes one session; `true` if it existed.
        fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool>;

        /// Every session of an account, expired ones included, oldest first.
        fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>>;

        /// Deletes every session of an account; returns how many.
        fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64>;

        /// Deletes every session that has expired at `now`; returns how many.
        fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64>;

        /// Up to `limit` sessions that have expired at `now` and belong to an OAuth grant,
        /// as (session id, grant id): what the web layer's cleanup signs out before it
        /// deletes the sessions, so that no grant outlives its session. Reads only.
        fn expired_with_grants<'a>(
            &'a self,
            now: OffsetDateTime,
            limit: usize,
        ) -> StoreFuture<'a, Vec<(SessionId, oauth::GrantId)>>;
    }
}

/// Every store trait at once ([`SessionStore`], [`StateStore`], [`GrantStore`],
/// [`SessionGrantStore`]): what [`AnyStore`] holds a store written elsewhere as
/// (`Arc<dyn Store>`), and hands each call to as `&dyn Store`. Implemented for every type
/// that implements the four; never implemented by hand.
pub trait Store: SessionStore + StateStore + GrantStore + SessionGrantStore {}

impl<T: ?Sized + SessionStore + StateStore + GrantStore + SessionGrantStore> Store for T {}
