//! The conformance suite on SQLite (a fresh file per test, and an in-memory database), and
//! what only SQLite has: migrations, the schema version, corrupt rows.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

use atsession::store::sqlite::SqliteStore;

/// A store on a fresh file that lives as long as the store (the directory is leaked into the
/// OS temp dir and removed at process exit by nobody: tests are short-lived, the files small).
async fn fresh_file_store() -> SqliteStore {
    let dir = tempfile::tempdir().unwrap().keep();
    SqliteStore::open(dir.join("sessions.db")).await.unwrap()
}

mod file {
    atsession::session_store_suite!(crate::fresh_file_store());
}

mod in_memory {
    atsession::session_store_suite!(async {
        atsession::store::sqlite::SqliteStore::open_in_memory()
            .await
            .unwrap()
    });
}

mod sqlite_only {
    use atsession::app::{SessionError, SessionManager};
    use atsession::store::sqlite::{SCHEMA_VERSION, SqliteStore};
    use atsession::store::{SessionStore, StoreError};
    use atsession::syntax::Did;

    const ALICE: &str = "did:plc:alice00000000000000000000";

    fn raw(path: &std::path::Path) -> rusqlite::Connection {
        rusqlite::Connection::open(path).unwrap()
    }

    #[tokio::test]
    async fn schema_version_is_recorded_and_reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
        let new = m
            .create(ALICE, "alice.test", serde_json::json!({"k": "v"}))
            .await
            .unwrap();
        drop(m);
        let v: u32 = raw(&path)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let mode: String = raw(&path)
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let url = format!("sqlite://{}", path.display());
        let m = SessionManager::new(SqliteStore::connect(&url).await.unwrap());
        assert_eq!(m.load(new.token.expose()).await.unwrap().data["k"], "v");
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        SqliteStore::open(&path).await.unwrap();
        raw(&path)
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = SqliteStore::open(&path).await.unwrap_err();
        assert!(e.to_string().contains("sqlite"), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
        assert!(matches!(
            e,
            StoreError::Database {
                problem: atsession::store::DatabaseProblem::Newer { .. },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn corrupt_rows_are_typed_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let m = SessionManager::new(SqliteStore::open(&path).await.unwrap());
        let corruptions = [
            "UPDATE app_sessions SET did = 'not a did'",
            "UPDATE app_sessions SET handle = 'nohandle'",
            "UPDATE app_sessions SET data = '{not json'",
            "UPDATE app_sessions SET token_hash = x'00'",
            "UPDATE app_sessions SET access_token_hash = NULL, access_expires_at = 5",
            "UPDATE app_sessions SET version = -1",
            "UPDATE app_sessions SET id = 'short'",
            "UPDATE app_sessions SET grant_id = 'not a grant id'",
        ];
        for sql in corruptions {
            let new = m.create(ALICE, "alice.test", ()).await.unwrap();
            let conn = raw(&path);
            // Keep the token hash findable when the statement corrupts another column.
            conn.execute_batch(&format!("{sql} WHERE id = '{}'", new.session.id))
                .unwrap();
            let r = m.load(new.token.expose()).await;
            let by_did = m.store().list_by_did(&Did::new(ALICE).unwrap()).await;
            match r {
                Err(SessionError::Store(StoreError::Corrupt {
                    backend: "sqlite", ..
                })) => {}
                // A corrupted token hash makes the row unfindable by token: also not a panic.
                Err(SessionError::NotFound) if sql.contains("token_hash") => {}
                other => panic!("{sql}: {other:?}"),
            }
            if sql.contains("did =") {
                // The row no longer matches the DID it was listed under.
                assert!(by_did.unwrap().is_empty());
            } else {
                assert!(matches!(by_did, Err(StoreError::Corrupt { .. })), "{sql}");
            }
            conn.execute("DELETE FROM app_sessions", []).unwrap();
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_an_error() {
        assert!(SqliteStore::connect("sqlite://").await.is_err());
        let e = SqliteStore::open("/nonexistent-dir/x/y.db")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("sqlite"), "{e}");
    }
}
