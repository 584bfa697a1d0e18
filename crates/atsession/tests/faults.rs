//! Faults: a server down at start, and a server gone in the middle of the work.
//!
//! - Down at start: the error names the store and never holds the password of the URL.
//! - Gone mid-operation: every call fails with a typed error (no panic, no hang), and the
//!   store works again once the server is back, without being rebuilt.
//!
//! The mid-operation tests start their own `redis-server` and their own PostgreSQL cluster
//! (`initdb` into a temporary directory, run as the `postgres` user when the test runs as
//! root) on free ports, stop them and start them again. They are skipped if the binaries are
//! missing, and fail instead if `CI=true`. Each takes a few seconds.
#![cfg(any(feature = "postgres", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
#[cfg(feature = "postgres")]
use std::path::PathBuf;
use std::process::Command;
#[cfg(feature = "redis")]
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use atsession::app::SessionManager;
use atsession::lock::{Lock, LockError};
use atsession::store::{SessionStore, StoreError};

const PASSWORD: &str = "s3cr3t";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything a user could see of an error: Display, Debug, and the whole source chain.
fn everything(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{e} / {e:?}");
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(&format!(" / {s} / {s:?}"));
        src = s.source();
    }
    out
}

fn missing(what: &str) {
    assert!(
        !support::in_ci(),
        "{what} is needed for the fault tests and CI=true"
    );
    eprintln!("SKIPPED: {what} not found; install it to run the fault tests");
}

fn assert_backend_error(e: &StoreError, backend: &str) {
    match e {
        StoreError::Backend { backend: b, .. } => assert_eq!(*b, backend),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains(backend), "{e}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_down_at_start_names_the_store_not_the_password() {
    use atsession::store::postgres::PostgresStore;
    let port = free_port();
    for url in [
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/x"),
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/x?sslmode=disable"),
        format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD}"),
        // Malformed: the parser's message must not leak it either.
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:notaport/x"),
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/x?bogus_option={PASSWORD}"),
    ] {
        let start = Instant::now();
        let e = PostgresStore::connect(&url).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(15));
        assert_backend_error(&e, "postgres");
        let shown = everything(&e);
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_down_at_start_names_the_store_not_the_password() {
    use atsession::store::redis::RedisLock;
    use atsession::store::redis::RedisStore;
    let port = free_port();
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:{port}"),
        format!("redis://default:{PASSWORD}@127.0.0.1:{port}/2"),
        format!("redis://default:{PASSWORD}@127.0.0.1:notaport"),
        format!("rediss://default:{PASSWORD}@127.0.0.1:{port}"),
    ] {
        let start = Instant::now();
        let e = RedisStore::connect(&url).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(15));
        assert_backend_error(&e, "redis");
        let shown = everything(&e);
        assert!(!shown.contains(PASSWORD), "{shown}");
        let e = RedisLock::connect(&url, "x:").await.unwrap_err();
        assert!(!everything(&e).contains(PASSWORD));
    }
}

/// Retries `f` until it succeeds or 30 s pass.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what} did not recover: {e:?}"),
        }
    }
}

/// Runs the same outage scenario on any store + lock: works, fails typed while down,
/// recovers when back.
async fn outage<S, L>(
    store: S,
    lock: L,
    backend: &str,
    stop: impl FnOnce(),
    restart: impl FnOnce(),
    persistent: bool,
) where
    S: SessionStore + Clone,
    L: Lock + Clone,
{
    let m = SessionManager::new(store.clone());
    let before = m
        .create("did:plc:alice00000000000000000000", "alice.test", ())
        .await
        .unwrap();
    m.load(before.token.expose()).await.unwrap();

    stop();
    // Every operation fails with a typed error naming the store, in bounded time.
    let start = Instant::now();
    let e = store.load(&before.session.id).await.unwrap_err();
    assert_backend_error(&e, backend);
    let e = store
        .create(&{
            let mut s = store_record(&before);
            s.id = atsession::app::SessionId::generate();
            s.token_hash = atsession::secret::TokenHash::of(b"other");
            s
        })
        .await
        .unwrap_err();
    assert_backend_error(&e, backend);
    assert!(store.list_by_did(&before.session.did).await.is_err());
    assert!(
        store
            .delete_expired(time::OffsetDateTime::now_utc())
            .await
            .is_err()
    );
    match lock
        .acquire("k", Duration::from_secs(5), Duration::from_secs(2))
        .await
    {
        Err(LockError::Store(e)) => assert_backend_error(&e, backend),
        Err(LockError::Timeout { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    eprintln!(
        "{backend}: while down, 5 operations failed typed in {:?}",
        start.elapsed()
    );

    restart();
    let back = Instant::now();
    // The same store object recovers (new connections are made behind it).
    let found = eventually("load after restart", || store.load(&before.session.id)).await;
    assert_eq!(found.is_some(), persistent);
    let after = m
        .create("did:plc:alice00000000000000000000", "alice.test", ())
        .await
        .unwrap();
    m.load(after.token.expose()).await.unwrap();
    let g = lock
        .acquire("k", Duration::from_secs(5), Duration::from_secs(10))
        .await
        .unwrap();
    g.release().await.unwrap();
    eprintln!(
        "{backend}: recovered {:?} after the restart",
        back.elapsed()
    );
}

fn store_record(n: &atsession::app::NewSession) -> atsession::app::StoredSession {
    let s = &n.session;
    atsession::app::StoredSession {
        id: s.id.clone(),
        token_hash: n.token.hash(),
        access_token_hash: None,
        access_expires_at: None,
        did: s.did.clone(),
        handle: s.handle.clone(),
        data: s.data.clone(),
        grant_id: None,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        idle_expires_at: s.idle_expires_at,
        absolute_expires_at: s.absolute_expires_at,
        version: 1,
    }
}

// ---------------------------------------------------------------- Redis

#[cfg(feature = "redis")]
fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_mid_operation_then_back() {
    use atsession::store::redis::RedisLock;
    use atsession::store::redis::RedisStore;
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        return missing("redis-server");
    }
    let port = free_port();
    let server = std::sync::Arc::new(std::sync::Mutex::new(Some(start_redis(port))));
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisStore::connect_with_prefix(&url, "fault:")
        .await
        .unwrap();
    let lock = RedisLock::new(&store);
    let (s1, s2) = (server.clone(), server.clone());
    outage(
        store,
        lock,
        "redis",
        move || {
            let mut c = s1.lock().unwrap().take().unwrap();
            c.kill().unwrap();
            c.wait().unwrap();
        },
        move || {
            *s2.lock().unwrap() = Some(start_redis(port));
        },
        false, // --save "": the restarted server is empty
    )
    .await;
    let mut c = server.lock().unwrap().take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
}

// ---------------------------------------------------------------- PostgreSQL

#[cfg(feature = "postgres")]
struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

#[cfg(feature = "postgres")]
impl PgCluster {
    fn find_bin() -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        found.sort();
        found.pop()
    }

    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init() -> Option<Self> {
        let bin = Self::find_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = nix_is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown to postgres failed");
        }
        let cluster = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let out = cluster
            .cmd("initdb")
            .args(["--no-sync", "-A", "trust", "-U", "postgres", "-D"])
            .arg(cluster.data())
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {out:?}");
        Some(cluster)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .cmd("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    fn stop(&self) {
        let out = self
            .cmd("pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .output();
    }
}

#[cfg(feature = "postgres")]
fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_mid_operation_then_back() {
    use atsession::store::postgres::PostgresLock;
    use atsession::store::postgres::PostgresStore;
    let Some(cluster) = PgCluster::init() else {
        return missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)");
    };
    cluster.start();
    let store = PostgresStore::connect(&cluster.url()).await.unwrap();
    let lock = PostgresLock::new(&store);
    let cluster = std::sync::Arc::new(cluster);
    let (c1, c2) = (cluster.clone(), cluster.clone());
    outage(
        store,
        lock,
        "postgres",
        move || c1.stop(),
        move || c2.start(),
        true,
    )
    .await;
}
