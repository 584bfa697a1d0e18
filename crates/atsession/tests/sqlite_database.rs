//! The SQLite file is atsession's alone: marked, private, never taken over from another
//! application, and never written by a read-only open.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use atsession::app::SessionManager;
use atsession::store::sqlite::{APPLICATION_ID, SCHEMA_VERSION, SqliteStore};
use atsession::store::{DatabaseProblem, SessionStore, StoreError};
use atsession::syntax::Did;

const ALICE: &str = "did:plc:alice00000000000000000000";

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn pragma(path: &Path, name: &str) -> i64 {
    raw(path)
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

fn problem(e: StoreError, path: &Path) -> DatabaseProblem {
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    match e {
        StoreError::Database {
            backend: "sqlite",
            problem,
            ..
        } => problem,
        other => panic!("expected a database problem, got {other:?}"),
    }
}

/// Another application's database: its tables, its `user_version`.
fn foreign(path: &Path) -> Vec<u8> {
    let c = raw(path);
    c.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('keep me'); PRAGMA user_version = 7;")
        .unwrap();
    drop(c);
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_new_database_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(SqliteStore::open(&path).await.unwrap());
    assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));
    assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn another_applications_database_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let before = foreign(&path);
    for read_only in [false, true] {
        let e = if read_only {
            SqliteStore::open_read_only(&path).await.unwrap_err()
        } else {
            SqliteStore::open(&path).await.unwrap_err()
        };
        assert_eq!(problem(e, &path), DatabaseProblem::Foreign);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "read_only: {read_only}"
        );
        assert_eq!(pragma(&path, "user_version"), 7);
        assert_eq!(pragma(&path, "application_id"), 0);
        let journal: String = raw(&path)
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "delete");
    }
}

#[tokio::test]
async fn a_database_marked_by_another_application_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    raw(&path)
        .execute_batch("PRAGMA application_id = 1234")
        .unwrap();
    let e = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(problem(e, &path), DatabaseProblem::Foreign);
    assert_eq!(pragma(&path, "application_id"), 1234);
    assert_eq!(pragma(&path, "user_version"), 0);
}

#[tokio::test]
async fn a_database_from_before_the_mark_is_accepted_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    drop(m);
    raw(&path)
        .execute_batch("PRAGMA application_id = 0")
        .unwrap();
    let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
    assert_eq!(
        m.load(new.token.expose()).await.unwrap().did.as_str(),
        ALICE
    );
    assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));
}

#[tokio::test]
async fn a_read_only_open_of_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let e = SqliteStore::open_read_only(&path).await.unwrap_err();
    assert_eq!(problem(e, &path), DatabaseProblem::Missing);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_read_only_open_never_migrates() {
    let dir = tempfile::tempdir().unwrap();
    // An empty file: a writing open would migrate it.
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let e = SqliteStore::open_read_only(&path).await.unwrap_err();
    assert_eq!(
        problem(e, &path),
        DatabaseProblem::NotMigrated {
            found: 0,
            expected: SCHEMA_VERSION
        }
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // An older schema (as an older build left it) stays as it is.
    let path = dir.path().join("old.db");
    drop(SqliteStore::open(&path).await.unwrap());
    raw(&path)
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION - 1))
        .unwrap();
    let e = SqliteStore::open_read_only(&path).await.unwrap_err();
    assert!(matches!(
        problem(e, &path),
        DatabaseProblem::NotMigrated { .. }
    ));
    assert_eq!(pragma(&path, "user_version"), i64::from(SCHEMA_VERSION - 1));
}

#[tokio::test]
async fn a_read_only_store_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
    let new = m.create(ALICE, "alice.test", ()).await.unwrap();
    drop(m);
    let ro = SqliteStore::open_read_only(&path).await.unwrap();
    let listed = ro.list_by_did(&Did::new(ALICE).unwrap()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(ro.delete(&new.session.id).await.is_err());
    drop(ro);
    let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
    assert!(m.load(new.token.expose()).await.is_ok());
}

#[tokio::test]
async fn database_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
    m.create(ALICE, "alice.test", ()).await.unwrap();
    // While the store is open, the WAL and its index exist beside the file.
    for name in ["s.db", "s.db-wal", "s.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}
