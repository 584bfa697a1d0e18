//! A read transaction the store keeps open between reads, so that a read does not take and
//! give back the WAL's read lock with a system call each time.
//!
//! In WAL mode every read transaction holds a shared lock on one of the WAL's read-mark
//! slots. SQLite takes that lock from the operating system (`fcntl`, under a mutex shared
//! by the file's connections) only when no other connection of the process holds it, and
//! gives it back when the last one lets go. Point reads one after another, as a server
//! makes them, each begin and end alone: two `fcntl` calls per read, and the two tokio
//! workers meeting on that mutex, which puts one of them to sleep. That was most of what a
//! `GET /session` cost beyond an empty route.
//!
//! The pin is one more read-only connection with a read transaction open: while it holds a
//! slot, the reads that use the same slot take and give back their lock inside the process.
//! It changes what no read sees: each read's transaction starts from the latest commit, as
//! before (the pin's older snapshot only keeps a checkpoint from copying pages past it).
//! What a pinned snapshot can hold back is other connections' WAL maintenance: a checkpoint
//! cannot copy the frames written after it, and the WAL cannot start over from its
//! beginning while any reader holds a slot. So:
//!
//! - This process's own writes let the pin go before they begin, and no pin is taken until
//!   they end: the checkpoint that follows a commit, and the restart of the WAL, happen as
//!   they would without one.
//! - A timer thread lets go of a pin every [`HOLD`] (the next read takes another, from the latest
//!   commit), so none is held for more than twice that, nor kept when no read comes.
//! - When the timer finds that another connection (another process, say the command line)
//!   wrote while the pin was held, the store takes no pin for [`REST`]: where others write,
//!   they get the WAL as they would without this process's pin.
//!
//! A read pays one atomic load for all this; only the read that finds no pin locks it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often a pin is renewed: one is held for at most twice this.
pub(super) const HOLD: Duration = Duration::from_millis(250);

/// How long no pin is taken after another connection's write was seen.
pub(super) const REST: Duration = Duration::from_secs(60);

/// No transaction is open: the next read begins one.
const FREE: u8 = 0;
/// A transaction is open.
const HELD: u8 = 1;
/// None is open and none is to be begun until the rest ends.
const RESTING: u8 = 2;

/// The pin of one store. A read looks at `state` alone (one load, no lock, no clock) unless
/// it is to begin a transaction; the timer renews it.
pub(super) struct Pin {
    state: AtomicU8,
    txn: Mutex<Txn>,
}

/// The pin's connection and its transaction.
pub(super) struct Txn {
    conn: Connection,
    /// When the open transaction began; `None` when there is none.
    since: Option<Instant>,
    /// `PRAGMA data_version` in the last transaction: it changes when another connection
    /// has committed.
    version: Option<i64>,
    /// No pin is taken before this instant.
    rest_until: Option<Instant>,
}

impl Pin {
    /// A pin on `conn`, a read-only connection to the store's file, holding nothing yet.
    pub(super) fn new(conn: Connection) -> Self {
        Self {
            state: AtomicU8::new(FREE),
            txn: Mutex::new(Txn {
                conn,
                since: None,
                version: None,
                rest_until: None,
            }),
        }
    }

    /// Called before a read: begins a transaction if none is open and the store is not
    /// resting. A pin busy elsewhere (another read beginning it, a write, the timer) is
    /// left alone: the read then locks as it would without one.
    pub(super) fn before_read(&self) {
        if self.state.load(Ordering::Relaxed) == FREE
            && let Ok(mut txn) = self.txn.try_lock()
            && txn.since.is_none()
            && txn.rest_until.is_none()
            && txn.begin()
        {
            self.state.store(HELD, Ordering::Relaxed);
        }
    }

    /// Locks the pin for this process's own write: lets go of its transaction; no pin is
    /// taken until the guard is dropped.
    pub(super) fn for_write(&self) -> MutexGuard<'_, Txn> {
        let mut txn = self.lock();
        txn.release();
        if txn.rest_until.is_none() {
            self.state.store(FREE, Ordering::Relaxed);
        }
        txn
    }

    /// Lets go of a transaction held for [`HOLD`] (the next read begins another), noting
    /// whether another connection wrote meanwhile; ends a rest that is over.
    fn tick(&self, now: Instant) {
        // Busy: in use by a read or a write, looked at next time.
        let Ok(mut txn) = self.txn.try_lock() else {
            return;
        };
        if txn.rest_until.is_some_and(|until| now >= until) {
            txn.rest_until = None;
            self.state.store(FREE, Ordering::Relaxed);
        }
        if txn
            .since
            .is_some_and(|since| now.saturating_duration_since(since) >= HOLD)
        {
            let held = txn.version;
            txn.release();
            // The version now, in a transaction of its own: it has moved only if another
            // connection committed while the pin was held (this process's writes let the
            // pin go first, and the next pin starts from their commit).
            if txn.begin() {
                txn.release();
                if txn.version != held {
                    txn.rest_until = Some(now + REST);
                    self.state.store(RESTING, Ordering::Relaxed);
                    return;
                }
            }
            self.state.store(FREE, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Txn> {
        self.txn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a transaction is open.
    #[cfg(test)]
    pub(super) fn held(&self) -> bool {
        self.lock().since.is_some()
    }
}

impl Txn {
    /// Begins a read transaction; `false` (and none open) when SQLite refuses.
    fn begin(&mut self) -> bool {
        // `BEGIN` alone takes no lock: the first statement that reads does, and the
        // transaction keeps it until `COMMIT`.
        let begun = self.conn.execute_batch("BEGIN").and_then(|()| {
            self.conn
                .query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0))
        });
        match begun {
            Ok(version) => {
                self.version = Some(version);
                self.since = Some(Instant::now());
                true
            }
            Err(_) => {
                // A pin is only ever an optimization: without one, reads lock as usual.
                let _ = self.conn.execute_batch("ROLLBACK");
                false
            }
        }
    }

    /// Ends the open transaction, if any.
    fn release(&mut self) {
        if self.since.take().is_some() && self.conn.execute_batch("COMMIT").is_err() {
            // A read-only transaction has nothing to lose: make sure it is gone.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Starts the thread that renews `pin` every [`HOLD`] ([`Pin::tick`]) until the store is
/// dropped: a thread of its own, so that no pin outlives the async runtime that opened the
/// store (a task would end with it, and leave a pin held for good). `false` when no thread
/// can be started: then the store must not pin.
pub(super) fn start_renewing(pin: &Arc<Pin>) -> bool {
    let pin = Arc::downgrade(pin);
    std::thread::Builder::new()
        .name("atsession-sqlite-pin".to_owned())
        .spawn(move || renew(&pin))
        .is_ok()
}

fn renew(pin: &Weak<Pin>) {
    loop {
        std::thread::sleep(HOLD);
        let Some(pin) = pin.upgrade() else { return };
        pin.tick(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::OpenFlags;

    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn pin(store: &SqliteStore) -> &Pin {
        store.inner.pin.as_ref().expect("a file store has a pin")
    }

    fn held(store: &SqliteStore) -> bool {
        pin(store).held()
    }

    async fn write(store: &SqliteStore, sql: &'static str) {
        store
            .write("test", move |c| {
                c.execute_batch(sql)
                    .map_err(crate::store::sqlite::err("test"))
            })
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn count(store: &SqliteStore) -> i64 {
        store
            .read(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .map_err(crate::store::sqlite::err("test"))
            })
            .unwrap()
    }

    /// Another process's connection to the same file.
    fn other(store: &SqliteStore) -> Connection {
        let c =
            Connection::open_with_flags(store.path().unwrap(), OpenFlags::SQLITE_OPEN_READ_WRITE)
                .unwrap();
        c.busy_timeout(Duration::ZERO).unwrap();
        c
    }

    /// `(busy, frames in the WAL, frames copied back)` of a checkpoint that restarts the
    /// WAL, attempted from `conn` without waiting.
    fn truncate(conn: &Connection) -> (i64, i64, i64) {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("pin.db")).await.unwrap();
        write(&store, "CREATE TABLE t (x INTEGER)").await;
        (dir, store)
    }

    #[tokio::test]
    async fn a_read_pins_and_still_sees_every_commit_at_once() {
        let (_dir, store) = store().await;
        assert!(!held(&store), "a write leaves no pin");
        assert_eq!(count(&store), 0);
        assert!(held(&store), "a read takes the pin");
        // The pin really holds a snapshot: the WAL cannot start over while it is held.
        let other = other(&store);
        assert_eq!(truncate(&other).0, 1, "a pinned WAL is busy");
        // Another connection's commits are seen by the very next read.
        other.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        assert_eq!(count(&store), 1);
        other.execute_batch("DELETE FROM t").unwrap();
        assert_eq!(count(&store), 0);
        // And this store's own.
        write(&store, "INSERT INTO t VALUES (2), (3)").await;
        assert_eq!(count(&store), 2);
    }

    #[tokio::test]
    async fn a_write_of_this_store_lets_the_pin_go_first() {
        let (_dir, store) = store().await;
        count(&store);
        assert!(held(&store));
        let store2 = store.clone();
        let busy = store
            .write("test", move |c| {
                // Inside the write the pin is locked (so a read takes none) and let go.
                let busy = pin(&store2).txn.try_lock().is_err();
                assert_eq!(count(&store2), 0, "a read during the write still reads");
                c.execute_batch("INSERT INTO t VALUES (1)")
                    .map_err(crate::store::sqlite::err("test"))?;
                Ok(busy)
            })
            .await
            .unwrap();
        assert!(busy, "the write holds the pin's lock");
        assert!(!held(&store), "no pin until the next read");
        // With no pin, the write's WAL can be copied back and restarted by anyone.
        assert_eq!(truncate(&other(&store)).0, 0);
        assert_eq!(count(&store), 1);
        assert!(held(&store));
    }

    #[tokio::test]
    async fn another_connections_write_makes_the_store_stop_pinning() {
        let (_dir, store) = store().await;
        count(&store);
        let pin = pin(&store);
        let since = pin.lock().since.unwrap();
        let other = other(&store);
        other.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        // The timer lets the pin go after HOLD and sees that the data moved under it:
        // no pin is taken for REST.
        pin.tick(since + HOLD);
        assert!(!held(&store), "let go");
        assert_eq!(count(&store), 1);
        assert!(!held(&store), "resting: a read takes no pin");
        assert_eq!(
            truncate(&other),
            (0, 0, 0),
            "the other writer's WAL restarts"
        );
        pin.tick(since + HOLD + REST / 2);
        count(&store);
        assert!(!held(&store), "still resting");
        // After the rest, pinning resumes.
        pin.tick(since + HOLD + REST);
        count(&store);
        assert!(held(&store));
    }

    #[tokio::test]
    async fn a_pin_no_read_renews_is_let_go() {
        let (_dir, store) = store().await;
        // Frames in the WAL, so that the pin holds a WAL slot.
        count(&store);
        assert!(held(&store));
        tokio::time::sleep(3 * HOLD).await;
        assert!(!held(&store), "an idle pin is let go by the timer");
        assert_eq!(truncate(&other(&store)).0, 0);
    }

    #[test]
    fn a_pin_is_let_go_after_the_runtime_that_opened_the_store_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(SqliteStore::open(dir.path().join("pin.db")))
            .unwrap();
        let other = other(&store);
        other.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        assert_eq!(count(&store), 0);
        assert!(held(&store));
        std::thread::sleep(3 * HOLD);
        assert!(!held(&store), "let go with no runtime running");
        assert_eq!(truncate(&other).0, 0);
    }

    #[tokio::test]
    async fn with_no_other_writer_the_next_read_pins_again() {
        let (_dir, store) = store().await;
        count(&store);
        let pin = pin(&store);
        let first = pin.lock().since.unwrap();
        pin.tick(first + HOLD / 2);
        assert_eq!(pin.lock().since, Some(first), "kept before HOLD");
        // This store's own write is not another writer's.
        write(&store, "INSERT INTO t VALUES (1)").await;
        count(&store);
        let second = pin.lock().since.unwrap();
        pin.tick(second + HOLD);
        assert!(!held(&store), "let go after HOLD");
        count(&store);
        assert!(held(&store), "and taken again by the next read");
    }
}
