//! Locks across OS processes: several copies of this test binary contend for one key on each
//! shared backend (PostgreSQL, Redis, a SQLite file). Each holder appends `enter {pid}` and
//! `exit {pid}` lines to one shared file opened with `O_APPEND`; the file must show strict
//! alternation (at most one holder at any instant). Then a holder is killed with SIGKILL
//! while holding the key, and another process must get the key once the dead holder's lease
//! runs out.
//!
//! The child processes run the `contender` test of this same binary, driven by environment
//! variables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atsession::lock::{Lock, LockError};

const KEY: &str = "contended";
const PROCESSES: usize = 4;
const ROUNDS: usize = 12;
/// The lease of the holder that gets killed.
const KILLED_LEASE: Duration = Duration::from_millis(1500);

fn append(log: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    // One write(2) per line: O_APPEND makes each land whole, in order.
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The child's entry point (not a test on its own: it returns at once without the
/// environment the parent sets).
#[test]
#[ignore = "run as a child process by the tests below"]
fn contender() {
    let Ok(backend) = std::env::var("CONTENDER_BACKEND") else {
        return;
    };
    let target = std::env::var("CONTENDER_TARGET").unwrap();
    // The schema (PostgreSQL) or key prefix (Redis); unused for SQLite.
    let name = std::env::var("CONTENDER_NAME").unwrap();
    let _ = &name;
    let mode = std::env::var("CONTENDER_MODE").unwrap();
    let log = std::path::PathBuf::from(std::env::var("CONTENDER_LOG").unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let lock: std::sync::Arc<dyn Lock> = match backend.as_str() {
            #[cfg(feature = "postgres")]
            "postgres" => {
                let store =
                    atsession::store::postgres::PostgresStore::connect_with_schema(&target, &name)
                        .await
                        .unwrap();
                std::sync::Arc::new(atsession::store::postgres::PostgresLock::new(&store))
            }
            #[cfg(feature = "redis")]
            "redis" => std::sync::Arc::new(
                atsession::store::redis::RedisLock::connect(&target, &name)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "sqlite")]
            "sqlite" => {
                let store = atsession::store::sqlite::SqliteStore::open(&target)
                    .await
                    .unwrap();
                std::sync::Arc::new(atsession::store::sqlite::SqliteLock::new(&store))
            }
            other => panic!("backend {other} not built"),
        };
        let pid = std::process::id();
        match mode.as_str() {
            "cycle" => {
                for _ in 0..ROUNDS {
                    let g = lock
                        .acquire(KEY, Duration::from_secs(10), Duration::from_secs(60))
                        .await
                        .unwrap();
                    append(&log, &format!("enter {pid}"));
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    append(&log, &format!("exit {pid}"));
                    g.release().await.unwrap();
                }
            }
            "hold" => {
                let g = lock
                    .acquire(KEY, KILLED_LEASE, Duration::from_secs(10))
                    .await
                    .unwrap();
                append(&log, &format!("holding {pid}"));
                tokio::time::sleep(Duration::from_secs(600)).await;
                drop(g);
            }
            "once" => {
                let start = Instant::now();
                match lock
                    .acquire(KEY, Duration::from_secs(10), Duration::from_secs(20))
                    .await
                {
                    Ok(g) => {
                        append(
                            &log,
                            &format!("acquired {pid} {}", start.elapsed().as_millis()),
                        );
                        g.release().await.unwrap();
                    }
                    Err(LockError::Timeout { .. }) => append(&log, &format!("timeout {pid}")),
                    Err(e) => panic!("{e}"),
                }
            }
            other => panic!("mode {other}"),
        }
    });
}

fn spawn(backend: &str, target: &str, name: &str, mode: &str, log: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "contender",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CONTENDER_BACKEND", backend)
        .env("CONTENDER_TARGET", target)
        .env("CONTENDER_NAME", name)
        .env("CONTENDER_MODE", mode)
        .env("CONTENDER_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The whole scenario on one backend.
fn contend(backend: &str, target: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("holders.log");
    let started = Instant::now();
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn(backend, target, name, "cycle", &log))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a contender failed");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), PROCESSES * ROUNDS * 2, "{text}");
    let mut pids = std::collections::HashSet::new();
    for pair in lines.chunks(2) {
        let enter = pair[0].strip_prefix("enter ").expect(pair[0]);
        let exit = pair[1].strip_prefix("exit ").expect(pair[1]);
        assert_eq!(enter, exit, "two holders at once:\n{text}");
        pids.insert(enter);
    }
    assert_eq!(pids.len(), PROCESSES);
    eprintln!(
        "{backend}: {PROCESSES} processes x {ROUNDS} rounds, strictly alternating, in {:?}",
        started.elapsed()
    );

    // A holder killed with SIGKILL: its lease runs out and another process gets the key.
    std::fs::remove_file(&log).unwrap();
    let mut holder = spawn(backend, target, name, "hold", &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.starts_with("holding")) {
        assert!(Instant::now() < deadline, "the holder never got the key");
        std::thread::sleep(Duration::from_millis(10));
    }
    holder.kill().unwrap(); // SIGKILL: no destructor, no release
    holder.wait().unwrap();
    let killed = Instant::now();
    let mut next = spawn(backend, target, name, "once", &log);
    assert!(next.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("acquired "), "{text}");
    let waited_ms: u64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    // It had to wait for the dead lease (the child's own start-up counts against the lease,
    // so allow some of it to have passed already).
    assert!(waited_ms > 100, "took the key too soon: {waited_ms} ms");
    assert!(killed.elapsed() < KILLED_LEASE + Duration::from_secs(15));
    eprintln!(
        "{backend}: the killed holder's lease ran out; the next process waited {waited_ms} ms"
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_file_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // Create and migrate the file once, before the children race to open it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(atsession::store::sqlite::SqliteStore::open(&path))
        .unwrap();
    contend("sqlite", path.to_str().unwrap(), "");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_across_processes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(store) = rt.block_on(support::fresh_postgres()) else {
        return;
    };
    contend("postgres", &support::postgres_url(), store.schema());
    rt.block_on(support::drop_schema(&store));
}

#[cfg(feature = "redis")]
#[test]
fn redis_across_processes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(store) = rt.block_on(support::fresh_redis()) else {
        return;
    };
    contend("redis", &support::redis_url(), store.prefix());
    rt.block_on(support::drop_prefix(&store));
}
