//! `atsession sessions …` against a real SQLite file, through the built binary.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::path::Path;
use std::process::Output;

use atsession::app::SessionManager;
use atsession::store::sqlite::SqliteStore;

const ALICE: &str = "did:plc:alice00000000000000000000";
const BOB: &str = "did:plc:bob0000000000000000000000";

fn atsession(db: &Path, args: &[&str]) -> Output {
    bin::atsession()
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_revoke_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("atsession.db");
    let m = SessionManager::new(SqliteStore::open(&db).await.unwrap());
    let a1 = m.create(ALICE, "alice.test", ()).await.unwrap();
    let a2 = m.create(ALICE, "alice.test", ()).await.unwrap();
    let b = m.create(BOB, "bob.test", ()).await.unwrap();

    let table = stdout(&atsession(&db, &["sessions", "list", "--did", ALICE]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(a1.session.id.as_str()) && table.contains(a2.session.id.as_str()));
    assert!(!table.contains(b.session.id.as_str()));
    assert!(
        !table.contains(a1.token.expose()),
        "no token in the listing"
    );

    let json: serde_json::Value = serde_json::from_str(&stdout(&atsession(
        &db,
        &["sessions", "list", "--did", ALICE, "--json"],
    )))
    .unwrap();
    let mut ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // Created in the same millisecond, they are listed by id: compare as sets.
    ids.sort_unstable();
    let mut expected = [a1.session.id.as_str(), a2.session.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(json[0]["handle"], "alice.test");
    // ATSESSION_JSON=1 is --json.
    let by_env = bin::atsession()
        .args(["sessions", "list", "--did", ALICE, "--db"])
        .arg(&db)
        .env("ATSESSION_JSON", "1")
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&by_env)).unwrap(),
        json
    );

    let out = stdout(&atsession(
        &db,
        &[
            "sessions",
            "revoke",
            "--id",
            a1.session.id.as_str(),
            "--json",
        ],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["revoked"],
        1
    );
    let out = stdout(&atsession(&db, &["sessions", "revoke", "--did", ALICE]));
    assert_eq!(out.trim(), "revoked 1 sessions of the account");
    assert!(m.load(a2.token.expose()).await.is_err());
    assert_eq!(m.load(b.token.expose()).await.unwrap().did.as_str(), BOB);

    let out = stdout(&atsession(&db, &["sessions", "cleanup", "--json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["deleted"],
        0
    );
    let out = stdout(&atsession(&db, &["sessions", "revoke", "--all-expired"]));
    assert_eq!(out.trim(), "revoked 0 expired sessions");
    let empty = stdout(&atsession(&db, &["sessions", "list", "--did", ALICE]));
    assert_eq!(empty.trim(), "no live sessions");
}

/// More expired sessions with grants than one batch: all are deleted, each grant handled
/// once; without the at-rest key the grants are named as left, not silently dropped.
#[tokio::test]
async fn cleanup_ends_expired_sessions_with_grants_in_batches() {
    use atsession::app::CreateOptions;
    use atsession::clock::ManualClock;
    use atsession::store::oauth::GrantId;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("atsession.db");
    let month_ago = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let m = SessionManager::new(SqliteStore::open(&db).await.unwrap())
        .with_clock(std::sync::Arc::new(ManualClock::new(month_ago)));
    let create = |n: usize, grants: bool| {
        let m = m.clone();
        async move {
            for _ in 0..n {
                let options = if grants {
                    CreateOptions::new().grant_id(GrantId::generate())
                } else {
                    CreateOptions::new()
                };
                m.create_with(ALICE, "alice.test", (), options)
                    .await
                    .unwrap();
            }
        }
    };
    create(250, true).await;
    create(3, false).await;
    let live = SessionManager::new(SqliteStore::open(&db).await.unwrap())
        .create(BOB, "bob.test", ())
        .await
        .unwrap();

    let out = atsession(&db, &["sessions", "cleanup", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap(),
        serde_json::json!({"deleted": 253, "grants_signed_out": 0})
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no at-rest key: the sessions' 250 OAuth grants are left"),
        "{stderr}"
    );
    assert_eq!(
        stdout(&atsession(&db, &["sessions", "cleanup", "--json"])).trim(),
        r#"{"deleted":0,"grants_signed_out":0}"#
    );
    let listed = stdout(&atsession(&db, &["sessions", "list", "--did", BOB]));
    assert!(listed.contains(live.session.id.as_str()), "{listed}");

    // With the key beside the store, the grants (gone already here) are looked up and
    // the sessions deleted all the same.
    let key = dir.path().join("atsession.db.key");
    std::fs::write(
        &key,
        atsession::crypto::AtRestKey::generate("k1")
            .unwrap()
            .to_spec(),
    )
    .unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    create(120, true).await;
    let out = atsession(&db, &["sessions", "revoke", "--all-expired", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap(),
        serde_json::json!({"revoked": 120, "grants_signed_out": 0})
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mistakes_exit_non_zero_with_a_clear_message_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let o = atsession(&missing, &["sessions", "list", "--did", ALICE]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no database at"));
    assert!(
        !missing.exists(),
        "an admin command must not create a database"
    );

    let o = atsession(&missing, &["sessions", "list", "--did", "alice"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid DID"));

    let o = atsession(
        &missing,
        &["sessions", "revoke", "--id", "-starts-with-a-hyphen"],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a session id"));

    // Neither --did, --id nor --all-expired: clap's usage error.
    let o = atsession(&missing, &["sessions", "revoke"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn admin_commands_leave_another_applications_database_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep'); PRAGMA user_version = 3;")
        .unwrap();
    drop(c);
    let before = std::fs::read(&db).unwrap();
    for args in [
        &["sessions", "list", "--did", ALICE][..],
        &["sessions", "cleanup"][..],
    ] {
        let out = atsession(&db, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("not an atsession database"), "{stderr}");
        assert!(stderr.contains("app.db"), "{stderr}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "{args:?} changed it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_never_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("atsession.db");
    drop(SqliteStore::open(&db).await.unwrap());
    let old = atsession::store::sqlite::SCHEMA_VERSION - 1;
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", old).unwrap();
    drop(c);
    let out = atsession(&db, &["sessions", "list", "--did", ALICE]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("schema is at version"), "{stderr}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let v: u32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, old);
}

fn atsession_url(db: &str, args: &[&str]) -> Output {
    bin::atsession()
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .unwrap()
}

/// The tables of a database outside PostgreSQL's own schemas.
async fn user_tables(
    client: &atsession::store::postgres::deadpool_postgres::tokio_postgres::Client,
) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_on_an_empty_postgres_database_fails_and_leaves_it_empty() {
    use atsession::store::postgres::deadpool_postgres::tokio_postgres::{NoTls, connect};
    let admin_url = std::env::var("ATSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = match connect(&admin_url, NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "PostgreSQL is not reachable: {e}"
            );
            eprintln!("skipped: PostgreSQL is not reachable ({e})");
            return;
        }
    };
    let r: [u8; 6] = atsession::secret::random_bytes();
    let name = format!(
        "atsession_gw_list_{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let (client, conn) = connect(&db, NoTls).await.unwrap();
    tokio::spawn(conn);

    let out = atsession_url(&db, &["sessions", "list", "--did", ALICE]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no such database"), "{stderr}");
    assert_eq!(user_tables(&client).await, 0, "the list created tables");

    // Once a command that writes has opened it, list reads it.
    let manager = SessionManager::new(
        atsession::store::postgres::PostgresStore::connect(&db)
            .await
            .unwrap(),
    );
    manager.create(ALICE, "alice.test", ()).await.unwrap();
    let listed = stdout(&atsession_url(&db, &["sessions", "list", "--did", ALICE]));
    assert!(listed.contains("alice.test"), "{listed}");

    drop(manager);
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
