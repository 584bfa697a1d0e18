//! The PostgreSQL schema, as an ordered list of migrations. The table `atsession_schema`
//! records how many are applied; opening a store applies the rest in one transaction, under
//! a transaction-scoped advisory lock so that concurrent starts do not race.
//!
//! `{schema}` in a migration is replaced by the (validated, quoted) schema name.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};

use super::{BACKEND, err};
use crate::store::{DatabaseProblem, StoreError};

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
    // 3: OAuth client: pending authorization states and grants (sealed at rest).
    "CREATE TABLE {schema}.atsession_oauth_states (
        key        bytea       PRIMARY KEY,
        sealed     bytea       NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX atsession_oauth_states_by_expiry
        ON {schema}.atsession_oauth_states (expires_at);
    CREATE TABLE {schema}.atsession_oauth_grants (
        id         text        PRIMARY KEY,
        did        text        NOT NULL,
        issuer     text        NOT NULL,
        sealed     bytea       NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        version    bigint      NOT NULL
    );
    CREATE INDEX atsession_oauth_grants_by_did
        ON {schema}.atsession_oauth_grants (did, created_at);",
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

/// Checks, without writing, that `schema` holds atsession's tables at this build's schema
/// version: the table `atsession_schema` records the number of migrations applied, and
/// *current* means exactly [`SCHEMA_VERSION`]. A schema that does not exist, or holds no
/// `atsession_` table, is [`DatabaseProblem::Missing`]; `atsession_` tables without the
/// version table, or a version table of another shape, are [`DatabaseProblem::Foreign`];
/// an older version is [`DatabaseProblem::NotMigrated`], a newer one
/// [`DatabaseProblem::Newer`].
pub(super) async fn check_current(pool: &Pool, schema: &str) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(err("connect"))?;
    let row = client
        .query_one(
            "SELECT current_database(),
                    EXISTS (SELECT 1 FROM pg_tables
                            WHERE schemaname = $1 AND tablename = 'atsession_schema'),
                    EXISTS (SELECT 1 FROM pg_tables
                            WHERE schemaname = $1 AND tablename LIKE 'atsession\\_%')",
            &[&schema],
        )
        .await
        .map_err(err("open"))?;
    let database: String = row.try_get(0).map_err(err("open"))?;
    let has_version_table: bool = row.try_get(1).map_err(err("open"))?;
    let has_ours: bool = row.try_get(2).map_err(err("open"))?;
    let problem = |problem| StoreError::Database {
        backend: BACKEND,
        database: format!("{database} (schema {schema})"),
        problem,
    };
    if !has_version_table {
        return Err(problem(if has_ours {
            DatabaseProblem::Foreign
        } else {
            DatabaseProblem::Missing
        }));
    }
    let found = match client
        .query_opt(
            &format!("SELECT version FROM \"{schema}\".atsession_schema"),
            &[],
        )
        .await
    {
        Ok(None) => 0,
        Ok(Some(row)) => match row.try_get::<_, i32>(0).map(u32::try_from) {
            Ok(Ok(v)) => v,
            _ => return Err(problem(DatabaseProblem::Foreign)),
        },
        Err(e) if e.as_db_error().is_some() => return Err(problem(DatabaseProblem::Foreign)),
        Err(e) => return Err(err("open")(e)),
    };
    let expected = SCHEMA_VERSION;
    match found.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(problem(DatabaseProblem::NotMigrated { found, expected })),
        std::cmp::Ordering::Greater => Err(problem(DatabaseProblem::Newer { found, expected })),
    }
}
