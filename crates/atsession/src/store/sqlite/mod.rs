//! The SQLite store: the embedded default.
//!
//! One file holds everything; the schema is created and migrated when the store opens, and
//! its version is recorded in SQLite's `user_version`. The database runs in WAL mode so that
//! readers never wait for the writer.
//!
//! Reads run on a small pool of reader connections, on the calling task's thread: an indexed
//! point read takes a few microseconds, less than handing it to another thread would.
//! Writes go through one writer connection on tokio's blocking pool, since a write may wait
//! for another process's lock (up to the busy timeout).
//!
//! ```
//! # async fn demo() -> Result<(), atsession::store::StoreError> {
//! use atsession::store::sqlite::SqliteStore;
//! let store = SqliteStore::open("sessions.db").await?;        // a file
//! let store = SqliteStore::connect("sqlite://sessions.db").await?; // or a URL
//! let store = SqliteStore::open_in_memory().await?;           // or nothing at all
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

pub mod lock;
mod migrations;
mod oauth;
mod sessions;

pub use lock::SqliteLock;
pub use migrations::SCHEMA_VERSION;

const BACKEND: &str = "sqlite";

/// How long a write waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Sessions in a SQLite database. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    writer: Mutex<Connection>,
    /// Empty for an in-memory database, whose only connection is the writer.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish()
    }
}

pub(crate) fn err(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(BACKEND, operation, e)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A connection is left consistent by every statement (SQLite's own guarantee), so a
    // panic elsewhere while the guard was held does not poison it for us.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates its schema.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(Some(path)))
            .await
            .map_err(|e| StoreError::backend(BACKEND, "open", e))?
    }

    /// Opens a database by URL: `sqlite://relative/path.db`, `sqlite:///absolute/path.db`,
    /// `sqlite::memory:`, or a bare path.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let rest = rest.split('?').next().unwrap_or_default();
        if rest == ":memory:" {
            return Self::open_in_memory().await;
        }
        if rest.is_empty() {
            return Err(StoreError::backend(
                BACKEND,
                "open",
                "the SQLite URL names no file",
            ));
        }
        Self::open(rest).await
    }

    /// A private in-memory database, gone when the last clone of the store is dropped.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(|| Self::open_blocking(None))
            .await
            .map_err(|e| StoreError::backend(BACKEND, "open", e))?
    }

    fn open_blocking(path: Option<PathBuf>) -> Result<Self, StoreError> {
        let mut writer = match &path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .map_err(err("open"))?;
        configure(&writer, true)?;
        migrations::migrate(&mut writer)?;
        let readers = match &path {
            None => Vec::new(),
            Some(p) => {
                let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
                (0..n)
                    .map(|_| {
                        let c = Connection::open_with_flags(
                            p,
                            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )
                        .map_err(err("open"))?;
                        configure(&c, false)?;
                        Ok(Mutex::new(c))
                    })
                    .collect::<Result<_, StoreError>>()?
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// The database file, or `None` for an in-memory database.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs a read on a reader connection, on this thread.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return f(&lock(&self.inner.writer));
        }
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            if let Ok(conn) = readers[(start + i) % readers.len()].try_lock() {
                return f(&conn);
            }
        }
        f(&lock(&readers[start % readers.len()]))
    }

    /// Runs a write on the writer connection, on tokio's blocking pool.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer)))
            .await
            .map_err(|e| StoreError::backend(BACKEND, operation, e))?
    }
}

fn configure(conn: &Connection, writer: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err("configure"))?;
    if writer {
        // journal_mode answers with a row; synchronous=NORMAL is durable in WAL mode except
        // for the last transactions before a power loss.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(err("configure"))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(err("configure"))?;
    }
    if !writer {
        // A reader keeps up to 8 MiB of pages (SQLite's default is 2 MiB), so that a working
        // set of a few thousand grants or sessions is served without reading the file again.
        // The cache grows only as pages are touched.
        conn.execute_batch("PRAGMA cache_size = -8192;")
            .map_err(err("configure"))?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}
