//! The SQLite schema, as an ordered list of migrations. The database's `user_version` is the
//! number of migrations applied; opening a store applies the rest in one transaction.

use rusqlite::{Connection, TransactionBehavior};

use super::{BACKEND, err};
use crate::store::StoreError;

/// The migrations, oldest first. Append only: never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: app sessions.
    "CREATE TABLE app_sessions (
        id                  TEXT    PRIMARY KEY NOT NULL,
        token_hash          BLOB    NOT NULL UNIQUE,
        access_token_hash   BLOB    UNIQUE,
        access_expires_at   INTEGER,
        did                 TEXT    NOT NULL,
        handle              TEXT    NOT NULL,
        data                TEXT    NOT NULL,
        grant_id            TEXT,
        created_at          INTEGER NOT NULL,
        last_seen_at        INTEGER NOT NULL,
        idle_expires_at     INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        version             INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX app_sessions_by_did ON app_sessions (did, created_at);
    CREATE INDEX app_sessions_by_expiry ON app_sessions (expires_at);",
    // 2: OAuth client: pending authorization states and grants (sealed at rest).
    "CREATE TABLE oauth_states (
        key        BLOB    PRIMARY KEY NOT NULL,
        sealed     BLOB    NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX oauth_states_by_expiry ON oauth_states (expires_at);
    CREATE TABLE oauth_grants (
        id         TEXT    PRIMARY KEY NOT NULL,
        did        TEXT    NOT NULL,
        issuer     TEXT    NOT NULL,
        sealed     BLOB    NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX oauth_grants_by_did ON oauth_grants (did, created_at);",
    // 3: lock leases.
    "CREATE TABLE atsession_locks (
        key        TEXT    PRIMARY KEY NOT NULL,
        owner      BLOB    NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;",
];

/// The schema version this build writes: the number of migrations it knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE: two processes opening a fresh file at once migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("migrate"))?;
    let current: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("migrate"))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::backend(
            BACKEND,
            "migrate",
            format!(
                "the database has schema version {current}, newer than this build's {SCHEMA_VERSION}"
            ),
        ));
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql).map_err(err("migrate"))?;
    }
    if current < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err("migrate"))?;
    }
    tx.commit().map_err(err("migrate"))
}
