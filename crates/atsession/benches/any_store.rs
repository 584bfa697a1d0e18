//! The cost of choosing the store at run time: a session lookup through
//! `SessionManager<SqliteStore>` and through `SessionManager<AnyStore>` over the same SQLite
//! database (1,000 sessions), and on memory.
//!
//! `cargo bench -p atsession --bench any_store`
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use atsession::app::SessionManager;
use atsession::store::sqlite::SqliteStore;
use atsession::store::{AnyStore, MemoryStore, SessionStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn fill<S: SessionStore>(m: &SessionManager<S>) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..1000 {
        let did = format!("did:plc:bench{i:020}");
        let new = m.create(&did, "user.bench.test", ()).await.unwrap();
        tokens.push(new.token.expose().to_owned());
    }
    tokens
}

fn case<S: SessionStore>(c: &mut Criterion, name: &str, rt: &Runtime, m: &SessionManager<S>) {
    let tokens = rt.block_on(fill(m));
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function(name, |b| {
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
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::open(dir.path().join("bench.db")))
        .unwrap();
    case(c, "sqlite", &rt, &SessionManager::new(sqlite.clone()));
    case(
        c,
        "sqlite-as-any",
        &rt,
        &SessionManager::new(AnyStore::from(sqlite)),
    );
    let memory = MemoryStore::new();
    case(c, "memory", &rt, &SessionManager::new(memory.clone()));
    case(
        c,
        "memory-as-any",
        &rt,
        &SessionManager::new(AnyStore::from(memory)),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = lookups
}
criterion_main!(benches);
