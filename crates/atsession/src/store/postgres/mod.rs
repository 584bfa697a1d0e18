//! The PostgreSQL store: for apps whose instances share one database.
//!
//! A [`PostgresStore`] holds a [deadpool] connection pool over [tokio-postgres]. Opening it
//! creates the schema it was given (if missing) and migrates it: the applied version is
//! recorded in the table `atsession_schema`, and the migrations run in one transaction under
//! `pg_advisory_xact_lock`, so that instances starting at once migrate one after the other.
//! The SQL lives beside this file, in `migrations.rs`.
//!
//! Tables (in the configured schema, `public` unless told otherwise):
//! - `atsession_app_sessions`: app sessions, with unique indexes on the token hash and the
//!   access-token hash, and indexes on `(did, created_at)` and on `expires_at`;
//! - `atsession_locks`: the leases of [`PostgresLock`];
//! - `atsession_oauth_states`: pending OAuth authorizations ([`StateStore`]), keyed by the
//!   SHA-256 of the `state` parameter, with an index on `expires_at`;
//! - `atsession_oauth_grants`: OAuth grants ([`GrantStore`]), keyed by grant id, with
//!   an index on `(did, created_at)`. Both hold the OAuth client's sealed bytes only.
//!
//! [`StateStore`]: crate::store::oauth::StateStore
//! [`GrantStore`]: crate::store::oauth::GrantStore
//!
//! Updates (of app sessions and of OAuth grants) are compare-and-swap
//! (`UPDATE … WHERE id = $1 AND version = $n`), never upserts; taking an OAuth state is one
//! `DELETE … RETURNING`, so it is taken once; cleanup deletes at most 1000 rows per statement. Statements are prepared once per pooled
//! connection and cached (deadpool's statement cache).
//!
//! **TLS**: with `sslmode=require` (or `verify-ca`, `verify-full`) in the URL, connections
//! use TLS (rustls) and the server's certificate is verified against the platform's roots or
//! the PEM file named by `sslrootcert=<path>`, host name included, whatever the mode says.
//! Otherwise connections are plain: use them on loopback, a private network or a Unix socket.
//!
//! Errors name the store (`postgres`) and never carry the connection URL or its password.
//!
//! ```no_run
//! # async fn demo() -> Result<(), atsession::store::StoreError> {
//! use atsession::app::SessionManager;
//! use atsession::store::postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
//! // or with the tables in their own schema:
//! let store = PostgresStore::connect_with_schema("postgres://app@db.internal/app", "sessions").await?;
//! let manager = SessionManager::new(store);
//! # Ok(()) }
//! ```
//!
//! [deadpool]: deadpool_postgres
//! [tokio-postgres]: tokio_postgres

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::StoreError;

pub mod lock;
mod migrations;
mod oauth;
mod sessions;
mod tls;

pub use deadpool_postgres;
pub use lock::PostgresLock;
pub use migrations::SCHEMA_VERSION;

pub(crate) const BACKEND: &str = "postgres";

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions (app sessions, OAuth states and grants) in a PostgreSQL database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// The bound on one call (pool wait, statements, answer).
    timeout: Duration,
}

struct Inner {
    pool: Pool,
    schema: String,
    sessions: sessions::Sql,
    oauth: oauth::Sql,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the pool's configuration: it holds the password.
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("pool_size", &self.inner.pool.status().max_size)
            .finish()
    }
}

pub(crate) fn err<E>(operation: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError::backend(BACKEND, operation, e)
}

/// The error when a URL does not parse. The parser's own message is dropped: it could quote
/// part of the URL.
/// The outcome of a compare-and-swap update from its row `(updated count, row existed)`.
pub(crate) fn cas_from_row(
    row: &tokio_postgres::Row,
    operation: &'static str,
) -> Result<super::Cas, StoreError> {
    let updated: i64 = row.try_get(0).map_err(err(operation))?;
    let existed: bool = row.try_get(1).map_err(err(operation))?;
    Ok(match (updated, existed) {
        (1, _) => super::Cas::Updated,
        (_, true) => super::Cas::Conflict,
        (_, false) => super::Cas::Missing,
    })
}

fn bad_url() -> StoreError {
    StoreError::backend(BACKEND, "connect", "the PostgreSQL URL is malformed")
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?options`, or the
    /// `key=value` form) and opens the store in the `public` schema.
    ///
    /// Fails if the server cannot be reached: the error names the store and carries the
    /// driver's error, never the URL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, "public").await
    }

    /// Like [`connect`](Self::connect), with the tables in `schema` (created if missing).
    /// A schema name is 1 to 63 characters of `a-z`, `0-9` and `_`, not starting with a digit.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::from_pool_with_schema(pool_for(url)?, schema).await
    }

    /// Opens an existing, current store in the `public` schema without writing to it: no
    /// schema or table is created, nothing is migrated, and the connections are read-only
    /// (`default_transaction_read_only`), so every write through the store fails. A schema
    /// without atsession's tables, or one at another schema version, is a
    /// [`StoreError::Database`]; see [`connect_read_only_with_schema`](Self::connect_read_only_with_schema).
    pub async fn connect_read_only(url: &str) -> Result<Self, StoreError> {
        Self::connect_read_only_with_schema(url, "public").await
    }

    /// Like [`connect_read_only`](Self::connect_read_only), with the tables in `schema`.
    ///
    /// *Current* means that the table `atsession_schema` records exactly
    /// [`SCHEMA_VERSION`] migrations. A schema that does not exist or holds no `atsession_`
    /// table is [`DatabaseProblem::Missing`]; `atsession_` tables without that record are
    /// [`DatabaseProblem::Foreign`]; an older version is [`DatabaseProblem::NotMigrated`]
    /// (open it once with [`connect`](Self::connect) to migrate it), a newer one
    /// [`DatabaseProblem::Newer`].
    ///
    /// [`DatabaseProblem::Missing`]: super::DatabaseProblem::Missing
    /// [`DatabaseProblem::Foreign`]: super::DatabaseProblem::Foreign
    /// [`DatabaseProblem::NotMigrated`]: super::DatabaseProblem::NotMigrated
    /// [`DatabaseProblem::Newer`]: super::DatabaseProblem::Newer
    pub async fn connect_read_only_with_schema(
        url: &str,
        schema: &str,
    ) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let pool = pool_with(url, true)?;
        migrations::check_current(&pool, schema).await?;
        Ok(Self::on_pool(pool, schema))
    }

    /// Opens the store on a pool you built (for TLS, or to share it with your app), in the
    /// `public` schema.
    pub async fn from_pool(pool: Pool) -> Result<Self, StoreError> {
        Self::from_pool_with_schema(pool, "public").await
    }

    /// Opens the store on a pool you built, in `schema` (created if missing).
    pub async fn from_pool_with_schema(pool: Pool, schema: &str) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        migrations::migrate(&pool, schema).await?;
        Ok(Self::on_pool(pool, schema))
    }

    fn on_pool(pool: Pool, schema: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: sessions::Sql::new(schema),
                oauth: oauth::Sql::new(schema),
                schema: schema.to_owned(),
                pool,
            }),
            timeout: super::DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Bounds every call of this store (and of a [`PostgresLock`] made from it) to `timeout`
    /// (default [`DEFAULT_OPERATION_TIMEOUT`](super::DEFAULT_OPERATION_TIMEOUT)): waiting
    /// for a pooled connection, the statements and their answers. A call that takes longer
    /// fails with [`StoreError::Timeout`]; a write that timed out may still have been
    /// applied. Taken between 1 ms and [`MAX_DURATION`](crate::clock::MAX_DURATION).
    ///
    /// [`PostgresLock`]: crate::store::postgres::PostgresLock
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

    /// The connection pool.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The schema holding the tables.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// A pooled connection.
    /// Runs a cleanup statement (`$1` the time, `$2` the batch size) until it deletes fewer
    /// than a batch; returns how many rows it deleted in all. Batches keep each statement short.
    pub(crate) async fn delete_in_batches(
        &self,
        operation: &'static str,
        sql: &str,
        now: time::OffsetDateTime,
    ) -> Result<u64, StoreError> {
        /// Rows deleted at most per statement.
        const CLEANUP_BATCH: i64 = 1000;
        let client = self.client(operation).await?;
        let stmt = client.prepare_cached(sql).await.map_err(err(operation))?;
        let mut total = 0;
        loop {
            let n = client
                .execute(&stmt, &[&now, &CLEANUP_BATCH])
                .await
                .map_err(err(operation))?;
            total += n;
            if n < CLEANUP_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }

    pub(crate) async fn client(&self, operation: &'static str) -> Result<Object, StoreError> {
        self.inner.pool.get().await.map_err(err(operation))
    }
}

/// A pool for `url` (with TLS if the URL asks for it), with bounded connect and wait times.
fn pool_for(url: &str) -> Result<Pool, StoreError> {
    pool_with(url, false)
}

/// [`pool_for`]; with `read_only`, every connection's transactions are read-only.
fn pool_with(url: &str, read_only: bool) -> Result<Pool, StoreError> {
    let prepared = tls::prepare(url)?;
    let mut config = tokio_postgres::Config::from_str(&prepared.url).map_err(|_| bad_url())?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("atsession");
    }
    if config.get_options().is_none() {
        // The server's own bound on a statement, beside the client's operation timeout:
        // a statement stuck behind a lock ends there too.
        config.options(format!(
            "-c statement_timeout={}",
            super::DEFAULT_OPERATION_TIMEOUT.as_millis()
        ));
    }
    if read_only {
        // The server refuses every write on these connections.
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options} -c default_transaction_read_only=on"));
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match prepared.tls {
        Some(tls) => Manager::from_config(
            config,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            manager_config,
        ),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    let size = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
    Pool::builder(manager)
        .max_size(size.clamp(4, 32))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(err("connect"))
}

/// Accepts only plain lowercase identifiers, so that a schema name never needs escaping.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.as_bytes()[0].is_ascii_digit()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::backend(
            BACKEND,
            "connect",
            "a schema name is 1 to 63 characters of a-z, 0-9 and _, not starting with a digit",
        ))
    }
}
