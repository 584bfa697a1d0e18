//! The conformance suite on PostgreSQL (a fresh schema per test), and what only PostgreSQL
//! has: the recorded schema version, concurrent migration, corrupt rows.
//!
//! Needs a server: `ATSESSION_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Skipped if it is down, failed if `CI=true`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

mod support;

use atsession::app::SessionManager;
use atsession::store::postgres::{PostgresStore, SCHEMA_VERSION};
use atsession::store::{SessionStore, StoreError};

mod suite {
    atsession::session_store_suite!({
        let Some(store) = crate::support::fresh_postgres().await else {
            return;
        };
        std::future::ready(store)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_is_recorded_and_migration_is_idempotent() {
    let Some(store) = support::fresh_postgres().await else {
        return;
    };
    let client = store.pool().get().await.unwrap();
    let v: i32 = client
        .query_one(
            &format!(
                "SELECT version FROM \"{}\".atsession_schema",
                store.schema()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v as u32, SCHEMA_VERSION);
    // Indexes on the token hash, the DID and the expiry.
    let indexes: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'atsession_app_sessions'",
            &[&store.schema()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for col in [
        "(token_hash)",
        "(access_token_hash)",
        "(did, created_at)",
        "(expires_at)",
    ] {
        assert!(
            indexes.iter().any(|i| i.contains(col)),
            "{col}: {indexes:?}"
        );
    }
    drop(client);
    // Opening again (many at once) migrates nothing and fails nothing.
    let url = support::postgres_url();
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            let schema = store.schema().to_owned();
            tokio::spawn(async move { PostgresStore::connect_with_schema(&url, &schema).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    support::drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_do_not_race() {
    // Several stores open one fresh schema at the same instant: the advisory lock makes one
    // migrate and the others see the result.
    let Some(probe) = support::fresh_postgres().await else {
        return;
    };
    let schema = support::unique_name();
    let url = support::postgres_url();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            let schema = schema.clone();
            tokio::spawn(async move { PostgresStore::connect_with_schema(&url, &schema).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    let m = SessionManager::new(stores.pop().unwrap());
    let new = m
        .create("did:plc:alice00000000000000000000", "alice.test", ())
        .await
        .unwrap();
    assert_eq!(
        SessionManager::new(stores.pop().unwrap())
            .load(new.token.expose())
            .await
            .unwrap()
            .id,
        new.session.id
    );
    support::drop_schema(m.store()).await;
    support::drop_schema(&probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let Some(store) = support::fresh_postgres().await else {
        return;
    };
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "UPDATE \"{}\".atsession_schema SET version = 999",
            store.schema()
        ))
        .await
        .unwrap();
    let err = PostgresStore::connect_with_schema(&support::postgres_url(), store.schema())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres"), "{err}");
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("999")
    );
    support::drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_typed_errors() {
    let Some(store) = support::fresh_postgres().await else {
        return;
    };
    let m = SessionManager::new(store.clone());
    for set in ["data = 'not json'", "grant_id = 'not a grant id'"] {
        let new = m
            .create("did:plc:alice00000000000000000000", "alice.test", ())
            .await
            .unwrap();
        let client = store.pool().get().await.unwrap();
        client
            .batch_execute(&format!(
                "UPDATE \"{}\".atsession_app_sessions SET {set} WHERE id = '{}'",
                store.schema(),
                new.session.id
            ))
            .await
            .unwrap();
        assert!(
            matches!(
                store.load(&new.session.id).await,
                Err(StoreError::Corrupt {
                    backend: "postgres",
                    ..
                })
            ),
            "{set}"
        );
    }
    support::drop_schema(&store).await;
}

#[tokio::test]
async fn bad_schema_names_are_refused() {
    for bad in ["", "Caps", "1abc", "a-b", "a\"b", &"x".repeat(64)] {
        let err = PostgresStore::connect_with_schema("postgres://postgres@127.0.0.1:1/x", bad)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("postgres"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tables_are_indexed_by_did_and_expiry() {
    let Some(store) = support::fresh_postgres().await else {
        return;
    };
    let client = store.pool().get().await.unwrap();
    let indexes: Vec<(String, String)> = client
        .query(
            "SELECT tablename::text, indexdef FROM pg_indexes WHERE schemaname = $1",
            &[&store.schema()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (table, col) in [
        ("atsession_oauth_states", "(key)"),
        ("atsession_oauth_states", "(expires_at)"),
        ("atsession_oauth_grants", "(id)"),
        ("atsession_oauth_grants", "(did, created_at)"),
    ] {
        assert!(
            indexes.iter().any(|(t, i)| t == table && i.contains(col)),
            "{table} {col}: {indexes:?}"
        );
    }
    drop(client);
    support::drop_schema(&store).await;
}

/// The number of tables in `schema`, and whether it exists.
async fn catalog(
    client: &atsession::store::postgres::deadpool_postgres::Client,
    schema: &str,
) -> (bool, i64) {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    (SELECT count(*) FROM pg_tables WHERE schemaname = $1)",
            &[&schema],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_needs_a_current_schema_and_writes_nothing() {
    use atsession::store::DatabaseProblem;
    let Some(admin) = support::fresh_postgres().await else {
        return;
    };
    let url = support::postgres_url();
    let schema = support::unique_name();
    let client = admin.pool().get().await.unwrap();
    let problem = |r: Result<PostgresStore, StoreError>| match r {
        Err(StoreError::Database { problem, .. }) => problem,
        other => panic!("expected a database problem, got {other:?}"),
    };

    // No schema: missing, and none is created.
    let open = || PostgresStore::connect_read_only_with_schema(&url, &schema);
    assert_eq!(problem(open().await), DatabaseProblem::Missing);
    assert_eq!(catalog(&client, &schema).await, (false, 0));
    // An empty schema: missing too, and left empty.
    client
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .unwrap();
    assert_eq!(problem(open().await), DatabaseProblem::Missing);
    assert_eq!(catalog(&client, &schema).await, (true, 0));

    // Once opened as usual: it opens, lists, and refuses writes.
    let manager = SessionManager::new(
        PostgresStore::connect_with_schema(&url, &schema)
            .await
            .unwrap(),
    );
    let did = "did:plc:alice00000000000000000000";
    let new = manager.create(did, "alice.test", ()).await.unwrap();
    let tables = catalog(&client, &schema).await;
    let read_only = open().await.unwrap();
    let listed = SessionManager::new(read_only.clone())
        .list(&did.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, new.session.id);
    assert!(read_only.delete(&new.session.id).await.is_err());
    assert!(
        manager
            .store()
            .load(&new.session.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(catalog(&client, &schema).await, tables);

    // Another version: refused and left as it is.
    let set = |v: i32| {
        let client = &client;
        let schema = &schema;
        async move {
            client
                .execute(
                    &format!("UPDATE \"{schema}\".atsession_schema SET version = $1"),
                    &[&v],
                )
                .await
                .unwrap();
        }
    };
    let current = SCHEMA_VERSION as i32;
    set(current - 1).await;
    assert_eq!(
        problem(open().await),
        DatabaseProblem::NotMigrated {
            found: SCHEMA_VERSION - 1,
            expected: SCHEMA_VERSION
        }
    );
    let v: i32 = client
        .query_one(
            &format!("SELECT version FROM \"{schema}\".atsession_schema"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, current - 1);
    set(current + 1).await;
    assert_eq!(
        problem(open().await),
        DatabaseProblem::Newer {
            found: SCHEMA_VERSION + 1,
            expected: SCHEMA_VERSION
        }
    );
    // atsession's table names without the version record: not ours.
    client
        .batch_execute(&format!("DROP TABLE \"{schema}\".atsession_schema"))
        .await
        .unwrap();
    assert_eq!(problem(open().await), DatabaseProblem::Foreign);

    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
