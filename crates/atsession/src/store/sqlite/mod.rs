//! The SQLite store: the embedded default.
//!
//! One file holds everything; the schema is created and migrated when the store opens, and
//! its version is recorded in SQLite's `user_version`. The database runs in WAL mode so that
//! readers never wait for the writer.
//!
//! The file is atsession's alone: it is marked with [`APPLICATION_ID`], and a file without
//! the mark that holds another application's tables is refused ([`DatabaseProblem::Foreign`])
//! and left untouched. A new file is created readable by its owner only (`0600`, whatever
//! the umask); SQLite gives its `-wal` and `-shm` files the same permissions.
//! [`SqliteStore::open_read_only`] opens an existing, current database without writing to
//! it, for tools that only look.
//!
//! New databases use `auto_vacuum = INCREMENTAL`: the periodic cleanups of expired sessions
//! and login states give the pages they free back to the file system, so the file shrinks
//! after a burst (of abandoned logins, for example) instead of staying at its peak size.
//!
//! Reads run on a small pool of reader connections, on the calling task's thread: an indexed
//! point read takes a few microseconds, less than handing it to another thread would.
//! Writes go through one writer connection on tokio's blocking pool, since a write may wait
//! for another process's lock (up to the busy timeout).
//! Between reads, the store keeps one read transaction open (for at most half a second, and
//! not across its own writes), so that each read takes and gives back the WAL's read lock
//! within the process instead of with two system calls; where another process writes to
//! the file, it stops doing so for a minute at a time. Every read still sees the latest
//! commit.
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

use super::{DatabaseProblem, StoreError};

pub mod lock;
mod migrations;
mod oauth;
mod pin;
mod sessions;

pub use lock::SqliteLock;
pub use migrations::{APPLICATION_ID, SCHEMA_VERSION};

/// How a store opens its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create the file if missing and migrate the schema.
    Create,
    /// The file must exist, be atsession's and current; nothing is written.
    ReadOnly,
}

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
    /// The read transaction kept open between reads (see [`pin`]), in a store that writes
    /// to a file.
    pin: Option<Arc<pin::Pin>>,
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
    /// Opens (creating if needed, mode `0600`) the database file at `path` and migrates its
    /// schema. Refuses another application's database ([`DatabaseProblem::Foreign`]).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(Some(path), Mode::Create))
            .await
            .map_err(|e| StoreError::backend(BACKEND, "open", e))?
    }

    /// Opens an existing database without writing to it: no file is created, no schema
    /// migrated, and every write through the store fails. A missing file, another
    /// application's, or one at an older schema is a [`StoreError::Database`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use atsession::store::sqlite::SqliteStore;
    /// use atsession::store::{DatabaseProblem, StoreError};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("sessions.db");
    /// let missing = SqliteStore::open_read_only(&path).await;
    /// assert!(matches!(
    ///     missing,
    ///     Err(StoreError::Database { problem: DatabaseProblem::Missing, .. })
    /// ));
    /// assert!(!path.exists()); // nothing created
    /// drop(SqliteStore::open(&path).await?);
    /// let store = SqliteStore::open_read_only(&path).await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(Some(path), Mode::ReadOnly))
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
        tokio::task::spawn_blocking(|| Self::open_blocking(None, Mode::Create))
            .await
            .map_err(|e| StoreError::backend(BACKEND, "open", e))?
    }

    fn open_blocking(path: Option<PathBuf>, mode: Mode) -> Result<Self, StoreError> {
        let database = path
            .as_deref()
            .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
        let mut writer = match (&path, mode) {
            (None, _) => Connection::open_in_memory().map_err(err("open"))?,
            (Some(p), Mode::Create) => {
                create_private(p).map_err(|e| StoreError::backend(BACKEND, "create", e))?;
                Connection::open(p).map_err(err("open"))?
            }
            (Some(p), Mode::ReadOnly) => {
                if !p.is_file() {
                    return Err(StoreError::Database {
                        backend: BACKEND,
                        database,
                        problem: DatabaseProblem::Missing,
                    });
                }
                Connection::open_with_flags(
                    p,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err("open"))?
            }
        };
        match mode {
            Mode::Create => {
                // Check the mark before anything (WAL mode included) is written.
                writer
                    .busy_timeout(BUSY_TIMEOUT)
                    .map_err(err("configure"))?;
                // Takes effect only in a database that has no table yet (a new one): the
                // pages freed by cleanups then go back to the file system (see `reclaim`).
                writer
                    .execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
                    .map_err(err("configure"))?;
                migrations::migrate(&mut writer, &database)?;
                configure(&writer, true)?;
            }
            Mode::ReadOnly => {
                configure(&writer, false)?;
                migrations::check_current(&writer, &database)?;
            }
        }
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
        // A store that only reads (a tool's) is short-lived and writes nothing to release
        // a pin for: it has none.
        let pin = match (&path, mode) {
            (Some(p), Mode::Create) => {
                let c = Connection::open_with_flags(
                    p,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err("open"))?;
                configure(&c, false)?;
                let pin = Arc::new(pin::Pin::new(c));
                // Without its renewing thread a pin could be held for good: then none.
                pin::start_renewing(&pin).then_some(pin)
            }
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                pin,
            }),
        })
    }

    /// The database file, or `None` for an in-memory database.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs a read on a reader connection, on this thread: the first one free, starting
    /// from this thread's own (see [`home_reader`]), so that reads one after another on a
    /// thread find the same connection with its page and statement caches warm in that
    /// core's cache, rather than taking turns with other threads on one connection's
    /// memory; when all are busy, it waits for one in turn.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let readers = &self.inner.readers;
        if readers.is_empty() {
            return f(&lock(&self.inner.writer));
        }
        if let Some(pin) = &self.inner.pin {
            pin.before_read();
        }
        let home = home_reader() % readers.len();
        for i in 0..readers.len() {
            if let Ok(conn) = readers[(home + i) % readers.len()].try_lock() {
                return f(&conn);
            }
        }
        let next = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        f(&lock(&readers[next % readers.len()]))
    }

    /// Runs a write on the writer connection, on tokio's blocking pool, with the pin let
    /// go (so that the checkpoint after the commit, and a restart of the WAL, find no
    /// reader of this process's holding them back).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _unpinned = inner.pin.as_deref().map(pin::Pin::for_write);
            f(&mut lock(&inner.writer))
        })
        .await
        .map_err(|e| StoreError::backend(BACKEND, operation, e))?
    }
}

/// This thread's first choice of reader connection (taken modulo the store's readers): a
/// number given to each thread on its first read, in turn, so that the runtime's worker
/// threads start from different connections.
fn home_reader() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HOME.with(|h| *h)
}

/// Gives the pages that a cleanup freed back to the file system, so that a burst of rows
/// (abandoned logins, say) does not leave the file at its peak size. A no-op in a database
/// created without `auto_vacuum` (before atsession set it).
pub(crate) fn reclaim(conn: &Connection) -> Result<(), StoreError> {
    // The pragma frees one page per step: run it to the end.
    let mut stmt = conn
        .prepare_cached("PRAGMA incremental_vacuum")
        .map_err(err("reclaim"))?;
    let mut rows = stmt.query([]).map_err(err("reclaim"))?;
    while rows.next().map_err(err("reclaim"))?.is_some() {}
    Ok(())
}

/// Creates `path` with mode `0600` if it does not exist, so that SQLite (which keeps an
/// existing file's mode, and gives `-wal` and `-shm` the main file's) never makes a
/// world-readable database.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
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
    // The query planner stability guarantee: a statement keeps the plan it was prepared
    // with whatever is bound to it. Without it, SQLite may mark a cached statement to be
    // prepared again whenever a new value is bound (it did, on most executions, for the
    // session-and-grant join), which costs more than the lookup. Every statement here is
    // a lookup by key or a bounded scan, whose plan no bound value improves.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(err("configure"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of the connection a read on this thread is given.
    fn reader_used(store: &SqliteStore) -> usize {
        store.read(|c| Ok(std::ptr::from_ref(c) as usize)).unwrap()
    }

    #[tokio::test]
    async fn a_thread_reads_on_its_own_connection_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
        let readers = &store.inner.readers;
        assert!(readers.len() >= 2);
        let address = |i: usize| std::ptr::from_ref(&*lock(&readers[i])) as usize;

        // Each thread has a number of its own, kept for its life.
        let here = home_reader();
        assert_eq!(home_reader(), here);
        let there = std::thread::spawn(home_reader).join().unwrap();
        assert_ne!(there, here);

        // Reads on this thread, one after another, are all on its home connection.
        let home = address(here % readers.len());
        for _ in 0..5 {
            assert_eq!(reader_used(&store), home);
        }
        // While that one is busy, a read takes another one that is free.
        let busy = lock(&readers[here % readers.len()]);
        let other = reader_used(&store);
        assert_ne!(other, home);
        drop(busy);
        assert_eq!(reader_used(&store), home);

        // Another thread starts from its own home connection.
        let (store2, n) = (store.clone(), readers.len());
        let (used, theirs) = std::thread::spawn(move || (reader_used(&store2), home_reader()))
            .join()
            .unwrap();
        assert_eq!(used, address(theirs % n));
    }
}
