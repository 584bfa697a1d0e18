//! `atsession serve --db <URL>` on other stores than SQLite: a fresh PostgreSQL database
//! (on the server named by `ATSESSION_TEST_POSTGRES_URL`, default the local one; skipped if
//! it is down, failed if `CI=true`), `memory:`, and store URLs that cannot work: a clear
//! error naming the store, never the password.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use atsession::app::SessionManager;
use atsession::store::postgres::deadpool_postgres::tokio_postgres;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db: &str, key_file: &std::path::Path) -> Server {
    let mut child = bin::atsession()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dev",
            "--db",
            db,
            "--key-file",
        ])
        .arg(key_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    Server { child, addr }
}

/// One request; returns (status, body).
fn request(addr: &str, method: &str, path: &str, cookie: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\nX-Csrf: 1\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_owned())
}

/// Creates a session in the store at `db`, asks the gateway for it, logs out.
async fn session_round_trip(db: &str, addr: &str) {
    let sessions = SessionManager::new(atsession::store::open(db).await.unwrap());
    let new = sessions
        .create("did:plc:stores0000000000000000000", "stores.test", ())
        .await
        .unwrap();
    let cookie = format!("atsession={}", new.token.expose());
    assert_eq!(request(addr, "GET", "/healthz", "").0, 200);
    let (status, body) = request(addr, "GET", "/session", &cookie);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("did:plc:stores0000000000000000000"), "{body}");
    assert_eq!(request(addr, "POST", "/oauth/logout", &cookie).0, 303);
    assert_eq!(request(addr, "GET", "/session", &cookie).0, 401);
    assert!(sessions.load(new.token.expose()).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_a_postgres_url() {
    let admin_url = std::env::var("ATSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = match tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "PostgreSQL is not reachable: {e}");
            eprintln!(
                "skipped: PostgreSQL is not reachable ({e}); start it or set ATSESSION_TEST_POSTGRES_URL"
            );
            return;
        }
    };
    let r: [u8; 6] = atsession::secret::random_bytes();
    let name = format!(
        "atsession_gw_{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    let db = format!("{base}/{name}");
    let dir = tempfile::tempdir().unwrap();
    {
        let gw = start(&db, &dir.path().join("key"));
        session_round_trip(&db, &gw.addr).await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

#[test]
fn serve_on_memory() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start("memory:", &dir.path().join("key"));
    assert_eq!(request(&gw.addr, "GET", "/healthz", "").0, 200);
    assert_eq!(request(&gw.addr, "GET", "/session", "").0, 401);
}

#[test]
fn bad_store_urls_fail_clearly_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (url, says) in [
        (
            "mysql://root:hunter2@db/app".to_owned(),
            "unknown store URL scheme",
        ),
        (
            "postgres://app:hunter2@127.0.0.1:99999/app".to_owned(),
            "bad port",
        ),
        (
            format!("postgres://app:hunter2@127.0.0.1:{closed}/app"),
            "could not be reached",
        ),
        (
            format!("redis://default:hunter2@127.0.0.1:{closed}/0"),
            "could not be reached",
        ),
    ] {
        let out = bin::atsession()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                &url,
                "--key-file",
            ])
            .arg(dir.path().join("key"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
        assert!(out.stdout.is_empty(), "{url}: did not start");
    }
}

#[test]
fn admin_commands_take_store_urls() {
    let out = bin::atsession()
        .args([
            "sessions",
            "list",
            "--did",
            "did:plc:nobody",
            "--db",
            "memory:",
        ])
        .output()
        .unwrap();
    // A read-only command on an in-memory store: there is nothing to read, and it says so.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory:"), "{stderr}");
    // A SQLite URL to an existing database is read.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("admin.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        drop(
            atsession::store::sqlite::SqliteStore::open(&db)
                .await
                .unwrap(),
        );
    });
    let out = bin::atsession()
        .args(["sessions", "list", "--did", "did:plc:nobody", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no live sessions"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bin::atsession()
        .args(["sessions", "cleanup", "--db"])
        .arg(format!("rediss://default:hunter2@127.0.0.1:{closed}/0"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the redis store at 127.0.0.1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
