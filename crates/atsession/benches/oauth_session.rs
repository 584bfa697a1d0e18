//! The session getter's common path: a fresh grant (one store read; no refresh, and no
//! decryption while the stored bytes are the ones opened before), on the memory and SQLite
//! stores, with 1,000 grants stored and read in turn; and the store read alone, for
//! comparison.
//!
//! `cargo bench -p atsession --features oauth --bench oauth_session`
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/grants.rs"]
mod grants;

use std::time::Instant;

use atsession::oauth::{Refresh, SessionGetter};
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantStore, StateStore};
use atsession::store::sqlite::SqliteStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_store<S: StateStore + GrantStore + Clone>(c: &mut Criterion, name: &str, store: S) {
    let rt = runtime();
    let (getter, ids): (SessionGetter<S>, _) = rt.block_on(grants::fresh_grants(store));
    let mut group = c.benchmark_group("oauth_session_get_fresh");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let id = &ids[(i % 1000) as usize];
                    let d = getter.get(id, Refresh::IfStale).await.unwrap();
                    std::hint::black_box(d);
                }
                start.elapsed()
            })
        });
    });
    // For comparison: the store read alone.
    group.bench_function(format!("{name}_load_grant_only"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let store = getter.client().store();
                let start = Instant::now();
                for i in 0..iters {
                    let id = &ids[(i % 1000) as usize];
                    std::hint::black_box(store.load_grant(id).await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_store(c, "memory", MemoryStore::new());
    let dir = std::env::temp_dir().join(format!("atsession-bench-oauth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = runtime();
    let sqlite = rt
        .block_on(SqliteStore::open(dir.join("bench.db")))
        .unwrap();
    bench_store(c, "sqlite", sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
