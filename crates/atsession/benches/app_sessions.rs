//! App sessions: validate-by-token on the memory and SQLite stores with 1,000 and 100,000
//! sessions stored, create, and refresh.
//!
//! `cargo bench -p atsession --bench app_sessions`
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use atsession::app::{SessionConfig, SessionManager};
use atsession::store::sqlite::SqliteStore;
use atsession::store::{MemoryStore, SessionStore};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config() -> SessionConfig {
    SessionConfig::default().access_tokens(Duration::from_secs(15 * 60))
}

/// Fills a store with `n` sessions; returns the session tokens of the first 1,000 of them.
async fn fill<S: SessionStore>(m: &SessionManager<S>, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let did = format!("did:plc:bench{:020}", i % 5000);
        let new = m
            .create(&did, "user.bench.test", serde_json::json!({"i": i}))
            .await
            .unwrap();
        if tokens.len() < 1000 {
            tokens.push(new.token.expose().to_owned());
        }
    }
    tokens
}

fn lookup_case<S: SessionStore>(
    c: &mut Criterion,
    name: &str,
    rt: &Runtime,
    m: &SessionManager<S>,
    n: usize,
) {
    let tokens = rt.block_on(fill(m, n));
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % tokens.len();
            let t = &tokens[i];
            async move { m.load(t).await.unwrap() }
        });
    });
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let rt = runtime();
    for n in [1_000, 100_000] {
        let m = SessionManager::with_config(MemoryStore::new(), config()).unwrap();
        lookup_case(c, "memory", &rt, &m, n);
        let dir = tempfile::tempdir().unwrap();
        let store = rt
            .block_on(SqliteStore::open(dir.path().join("bench.db")))
            .unwrap();
        let m = SessionManager::with_config(store, config()).unwrap();
        lookup_case(c, "sqlite", &rt, &m, n);
    }
}

fn writes(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements(1));
    let memory = SessionManager::with_config(MemoryStore::new(), config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SessionManager::with_config(
        rt.block_on(SqliteStore::open(dir.path().join("bench.db")))
            .unwrap(),
        config(),
    )
    .unwrap();
    group.bench_function("create/memory", |b| {
        b.to_async(&rt)
            .iter(|| memory.create("did:plc:benchcreate", "user.bench.test", ()))
    });
    group.bench_function("create/sqlite", |b| {
        b.to_async(&rt)
            .iter(|| sqlite.create("did:plc:benchcreate", "user.bench.test", ()))
    });
    let mt = rt
        .block_on(memory.create("did:plc:benchrefresh", "user.bench.test", ()))
        .unwrap();
    let st = rt
        .block_on(sqlite.create("did:plc:benchrefresh", "user.bench.test", ()))
        .unwrap();
    group.bench_function("refresh/memory", |b| {
        b.to_async(&rt)
            .iter(|| async { memory.refresh(mt.token.expose()).await.unwrap() })
    });
    group.bench_function("refresh/sqlite", |b| {
        b.to_async(&rt)
            .iter(|| async { sqlite.refresh(st.token.expose()).await.unwrap() })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = lookups, writes
}
criterion_main!(benches);
