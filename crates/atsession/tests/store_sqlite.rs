//! The conformance suite on SQLite (a fresh file per test, and an in-memory database), and
//! what only SQLite has: migrations, the schema version, corrupt rows.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

mod conformance;

use atsession::store::sqlite::SqliteStore;

/// A store on a fresh file that lives as long as the store (the directory is leaked into the
/// OS temp dir and removed at process exit by nobody: tests are short-lived, the files small).
async fn fresh_file_store() -> SqliteStore {
    let dir = tempfile::tempdir().unwrap().keep();
    SqliteStore::open(dir.join("sessions.db")).await.unwrap()
}

mod file {
    crate::conformance::session_store_suite!(crate::fresh_file_store());
}

mod in_memory {
    crate::conformance::session_store_suite!(async {
        atsession::store::sqlite::SqliteStore::open_in_memory()
            .await
            .unwrap()
    });
}
