//! Two gateway processes on one store (a fresh PostgreSQL database; a Redis database of its
//! own): a session made on one works on the other; a stale grant used through both at once
//! is refreshed exactly once; a logout on one is refused at once on the other.
//!
//! Uses the PDS peer for short token lifetimes (`ATSESSION_E2E_PDS_REFRESH`, else
//! `ATSESSION_E2E_PDS`):
//! `bash e2e/pds/up.sh /tmp/pds-refresh.json && ATSESSION_E2E_PDS_REFRESH=/tmp/pds-refresh.json
//!  cargo test -p atsession-gateway --test serve_many`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use atsession::store::oauth::GrantStore;
use atsession::store::postgres::deadpool_postgres::tokio_postgres;
use atsession::syntax::Did;
use gateway::{Gateway, client, login};
use serde_json::Value;

/// Issued tokens live 45 s: a token with less than 10 s left is always stale (the getter's
/// margin), a new one never (10 s margin + at most 30 s jitter < 45 s). So the burst below
/// needs exactly one refresh, however its calls interleave.
const TOKEN_LIFE: Duration = Duration::from_secs(45);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn refreshed(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(r#"atsession_oauth_token_sets_total{outcome="refreshed"} "#))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

async fn two_gateways_share(peer: &pds::Peer, db: &str, handle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("at-rest.key");
    let args = ["--db", db, "--key-file", key.to_str().unwrap()];
    let a = Gateway::start(Some(peer), args).await;
    let b = Gateway::start(Some(peer), args).await;
    let http = client();
    peer.set_token_max_age(TOKEN_LIFE).await.unwrap();

    // Made on A, used on B.
    let cookie = login(&http, peer, &a.base, handle).await;
    let account = peer.account(handle).clone();
    let r = http
        .get(b.url("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["did"], account.did.as_str());
    let r = http
        .get(b.url("/xrpc/com.atproto.server.getSession"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Wait until the access token has less than 10 s left: stale for both gateways.
    let expires = time::OffsetDateTime::parse(
        s["token_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc() - time::Duration::seconds(8);
    if left.is_positive() {
        tokio::time::sleep(left.unsigned_abs()).await;
    }
    let store = atsession::store::open(db).await.unwrap();
    let did = Did::new(account.did.clone()).unwrap();
    let grants = store.list_grants_by_did(&did).await.unwrap();
    assert_eq!(grants.len(), 1);
    let before = store
        .load_grant(&grants[0].id)
        .await
        .unwrap()
        .unwrap()
        .version;

    // Twenty calls at once, half through each gateway: one refresh.
    let calls = (0..20).map(|i| {
        let url = if i % 2 == 0 {
            a.url("/xrpc/com.atproto.server.getSession")
        } else {
            b.url("/xrpc/com.atproto.server.getSession")
        };
        let req = http.get(url).header("cookie", &cookie);
        async move { req.send().await.unwrap().status() }
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    let after = store
        .load_grant(&grants[0].id)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(after, before + 1, "exactly one refresh stored");
    let text = |g: &Gateway| {
        let req = http.get(g.url("/metrics"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(
        refreshed(&text(&a).await) + refreshed(&text(&b).await),
        1,
        "one refresh across both gateways"
    );

    // Logout on A: refused at once on B.
    let r = http
        .post(a.url("/logout"))
        .header("cookie", &cookie)
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .get(b.url("/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(b.url("/xrpc/com.atproto.server.getSession"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_on_one_postgres_database() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let admin_url = std::env::var("ATSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = match tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            assert!(!in_ci(), "PostgreSQL is not reachable: {e}");
            eprintln!(
                "skipped: PostgreSQL is not reachable ({e}); start it or set ATSESSION_TEST_POSTGRES_URL"
            );
            return;
        }
    };
    let r: [u8; 6] = atsession::secret::random_bytes();
    let name = format!(
        "atsession_gw_many_{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    two_gateways_share(&peer, &db, "alice.test").await;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// One inline Redis command on database `db`; the first line of the answer.
fn redis_command(addr: &str, db: u8, command: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("SELECT {db}\r\n{command}\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut ok = String::new();
    r.read_line(&mut ok)?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_on_one_redis_database() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    let addr = "127.0.0.1:6379";
    // A database number nobody else uses (the project's other tests use database 0 with
    // key prefixes): the first empty one from 11.
    let mut chosen = None;
    for db in 11..16u8 {
        match redis_command(addr, db, "DBSIZE") {
            Ok(n) if n == ":0" => {
                chosen = Some(db);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                assert!(!in_ci(), "Redis is not reachable: {e}");
                eprintln!("skipped: Redis is not reachable at {addr} ({e})");
                return;
            }
        }
    }
    let db = chosen.expect("an empty Redis database among 11..15");
    two_gateways_share(&peer, &format!("redis://{addr}/{db}"), "bob.test").await;
    assert_eq!(redis_command(addr, db, "FLUSHDB").unwrap(), "+OK");
}
