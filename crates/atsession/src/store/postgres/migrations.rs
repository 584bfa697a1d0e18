//! The PostgreSQL schema, as an ordered list of migrations. The table `atsession_schema`
//! records how many are applied; opening a store applies the rest in one transaction, under
//! a transaction-scoped advisory lock so that concurrent starts do not race.
//!
//! `{schema}` in a migration is replaced by the (validated, quoted) schema name.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use super::{BACKEND, err};
use crate::store::StoreError;

/// The migrations, oldest first. Append only: never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: app sessions.
    "CREATE TABLE {schema}.atsession_app_sessions (
        id                  text        PRIMARY KEY,
        token_hash          bytea       NOT NULL UNIQUE,
        access_token_hash   bytea       UNIQUE,
        access_expires_at   timestamptz,
        did                 text        NOT NULL,
        handle              text        NOT NULL,
        data                text        NOT NULL,
        grant_id            text,
        created_at          timestamptz NOT NULL,
        last_seen_at        timestamptz NOT NULL,
        idle_expires_at     timestamptz NOT NULL,
        absolute_expires_at timestamptz NOT NULL,
        expires_at          timestamptz NOT NULL,
        version             bigint      NOT NULL,
        CHECK ((access_token_hash IS NULL) = (access_expires_at IS NULL))
    );
    CREATE INDEX atsession_app_sessions_by_did
        ON {schema}.atsession_app_sessions (did, created_at);
    CREATE INDEX atsession_app_sessions_by_expiry
        ON {schema}.atsession_app_sessions (expires_at);",
    // 2: lock leases.
    "CREATE TABLE {schema}.atsession_locks (
        key        text        PRIMARY KEY,
        owner      bytea       NOT NULL,
        expires_at timestamptz NOT NULL
    );",
];

/// The schema version this build writes: the number of migrations it knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory-lock key for migrating `schema`: stable across processes and builds.
fn lock_key(schema: &str) -> i64 {
    let digest = Sha256::digest(format!("atsession migrate {schema}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

pub(super) async fn migrate(pool: &Pool, schema: &str) -> Result<(), StoreError> {
    let q = format!("\"{schema}\"");
    let mut client = pool.get().await.map_err(err("connect"))?;
    let tx = client.transaction().await.map_err(err("migrate"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .await
        .map_err(err("migrate"))?;
    // CREATE SCHEMA IF NOT EXISTS would need the CREATE privilege even when the schema is
    // there (as `public` always is), so look first.
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(err("migrate"))?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {q}"))
            .await
            .map_err(err("migrate"))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {q}.atsession_schema (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version   integer NOT NULL
        )"
    ))
    .await
    .map_err(err("migrate"))?;
    let current: i32 = tx
        .query_opt(&format!("SELECT version FROM {q}.atsession_schema"), &[])
        .await
        .map_err(err("migrate"))?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(err("migrate"))?
        .unwrap_or(0);
    let current = u32::try_from(current)
        .map_err(|_| StoreError::corrupt(BACKEND, "negative schema version"))?;
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
        tx.batch_execute(&sql.replace("{schema}", &q))
            .await
            .map_err(err("migrate"))?;
    }
    if current < SCHEMA_VERSION {
        let version = SCHEMA_VERSION as i32;
        tx.execute(
            &format!(
                "INSERT INTO {q}.atsession_schema (version) VALUES ($1)
                 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
            ),
            &[&version],
        )
        .await
        .map_err(err("migrate"))?;
    }
    tx.commit().await.map_err(err("migrate"))
}
