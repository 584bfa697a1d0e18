//! The SQLite schema, as an ordered list of migrations. The database's `user_version` is the
//! number of migrations applied; opening a store applies the rest in one transaction.
//!
//! Every database atsession creates or migrates is marked with [`APPLICATION_ID`] in its
//! header. A database without the mark that holds tables other than atsession's belongs to
//! another application: it is refused, and nothing in it is changed.

use rusqlite::{Connection, TransactionBehavior};

use super::{BACKEND, err};
use crate::store::{DatabaseProblem, StoreError};

/// The mark in the header of every atsession SQLite database (`PRAGMA application_id`):
/// `0x61747373`, the ASCII bytes `atss`.
pub const APPLICATION_ID: i32 = 0x6174_7373;

/// The tables the migrations create. A database from before the mark holds only these.
const OUR_TABLES: &[&str] = &[
    "app_sessions",
    "oauth_states",
    "oauth_grants",
    "atsession_locks",
];

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

fn problem(database: &str, problem: DatabaseProblem) -> StoreError {
    StoreError::Database {
        backend: BACKEND,
        database: database.to_owned(),
        problem,
    }
}

/// The mark and the schema version, after checking that the database is ours (or empty).
fn inspect(conn: &Connection, database: &str) -> Result<(i32, u32), StoreError> {
    let id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(err("migrate"))?;
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("migrate"))?;
    if id == APPLICATION_ID {
        return Ok((id, version));
    }
    if id != 0 {
        return Err(problem(database, DatabaseProblem::Foreign));
    }
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
        .map_err(err("migrate"))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(err("migrate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err("migrate"))?;
    let others = names.iter().any(|n| !OUR_TABLES.contains(&n.as_str()));
    // An empty file with a schema version set is another application's too.
    if others || (names.is_empty() && version != 0) {
        return Err(problem(database, DatabaseProblem::Foreign));
    }
    Ok((id, version))
}

/// Checks, without writing, that the database is ours and at this build's schema.
pub(super) fn check_current(conn: &Connection, database: &str) -> Result<(), StoreError> {
    let (_, found) = inspect(conn, database)?;
    let expected = SCHEMA_VERSION;
    match found.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(problem(
            database,
            DatabaseProblem::NotMigrated { found, expected },
        )),
        std::cmp::Ordering::Greater => Err(problem(
            database,
            DatabaseProblem::Newer { found, expected },
        )),
    }
}

pub(super) fn migrate(conn: &mut Connection, database: &str) -> Result<(), StoreError> {
    // IMMEDIATE: two processes opening a fresh file at once migrate one after the other.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("migrate"))?;
    let (id, current) = inspect(&tx, database)?;
    if current > SCHEMA_VERSION {
        return Err(problem(
            database,
            DatabaseProblem::Newer {
                found: current,
                expected: SCHEMA_VERSION,
            },
        ));
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql).map_err(err("migrate"))?;
    }
    if current < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err("migrate"))?;
    }
    if id != APPLICATION_ID {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err("migrate"))?;
    }
    tx.commit().map_err(err("migrate"))
}
