//! Validating a session by its cookie value, in memory: atsession's [`MemoryStore`] behind
//! its `SessionManager` (parse the token, SHA-256 it, one lookup, the expiry checks) against
//! tower-sessions 0.14's memory store (parse the id, one lookup, its expiry check), with
//! 1,000 and 100,000 sessions stored, in one run. Prints lookups per second and the ratio.
//!
//! `cargo bench -p atsession-compare --bench memory_lookup`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use atsession::app::SessionManager;
use atsession::store::MemoryStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::{MemoryStore as TowerMemoryStore, SessionStore as _};

/// Lookups are cycled over this many stored sessions' cookies.
const PROBES: usize = 1000;
/// Each measurement runs this long; the best of `ROUNDS` is kept.
const ROUND: Duration = Duration::from_millis(700);
const ROUNDS: usize = 5;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `one` (a lookup of the `i`-th probe) for `ROUND`, `ROUNDS` times; the best rate.
async fn rate<F, Fut>(mut one: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = 0f64;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed() < ROUND {
            for _ in 0..256 {
                one(n % PROBES).await;
                n += 1;
            }
        }
        best = best.max(n as f64 / start.elapsed().as_secs_f64());
    }
    best
}

async fn atsession_rate(n: usize) -> f64 {
    let m = SessionManager::new(MemoryStore::new());
    let mut cookies = Vec::new();
    for i in 0..n {
        let did = format!("did:plc:bench{:020}", i % 5000);
        let new = m
            .create(&did, "user.bench.test", serde_json::json!({"i": i}))
            .await
            .unwrap();
        if cookies.len() < PROBES {
            cookies.push(new.token.expose().to_owned());
        }
    }
    rate(|i| {
        let m = &m;
        let cookie = cookies[i].as_str();
        async move {
            black_box(m.load(black_box(cookie)).await.unwrap());
        }
    })
    .await
}

async fn tower_rate(n: usize) -> f64 {
    let store = TowerMemoryStore::default();
    let mut cookies = Vec::new();
    for i in 0..n {
        let mut record = Record {
            id: Id::default(),
            data: [("i".to_owned(), serde_json::json!(i))]
                .into_iter()
                .collect(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::days(7),
        };
        store.create(&mut record).await.unwrap();
        if cookies.len() < PROBES {
            cookies.push(record.id.to_string());
        }
    }
    rate(|i| {
        let store = &store;
        let cookie = cookies[i].as_str();
        async move {
            let id = Id::from_str(black_box(cookie)).unwrap();
            black_box(store.load(&id).await.unwrap().unwrap());
        }
    })
    .await
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once as a smoke test.
    let quick = std::env::args().any(|a| a == "--test") || std::env::var_os("QUICK").is_some();
    let rt = runtime();
    println!(
        "validate a session by its cookie, in memory (lookups/s, best of {ROUNDS} × {ROUND:?})"
    );
    println!(
        "{:>9}  {:>14}  {:>14}  {:>7}",
        "sessions", "atsession", "tower-sessions", "ratio"
    );
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 100_000] };
    for &n in sizes {
        // PROFILE=atsession or PROFILE=tower runs one side only (for a profiler).
        let only = std::env::var("PROFILE").ok();
        let ours = match only.as_deref() {
            Some("tower") => f64::NAN,
            _ => rt.block_on(atsession_rate(n)),
        };
        let theirs = match only.as_deref() {
            Some("atsession") => f64::NAN,
            _ => rt.block_on(tower_rate(n)),
        };
        println!(
            "{n:>9}  {:>12.2} M  {:>12.2} M  {:>6.2}×",
            ours / 1e6,
            theirs / 1e6,
            ours / theirs
        );
    }
}
