//! A fixed number of fresh-grant reads, for profilers and instruction counters, where
//! criterion's own work would get in the way (the figures themselves come from
//! `benches/oauth_session.rs`).
//!
//! ```text
//! cargo build --release -p atsession --features oauth,sqlite --example get_fresh_loop
//! target/release/examples/get_fresh_loop <memory|sqlite> <reads> [load]
//! valgrind --tool=callgrind target/release/examples/get_fresh_loop sqlite 10000
//! ```
//!
//! With `load`, it times the store read alone instead of `SessionGetter::get`. 1,000
//! grants are stored and read in turn; each is opened once first, and that pass is timed
//! on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/grants.rs"]
mod grants;

use std::time::Instant;

use atsession::oauth::Refresh;
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantStore, StateStore};
use atsession::store::sqlite::SqliteStore;

async fn run<S: StateStore + GrantStore + Clone>(store: S, reads: u64, load_only: bool) {
    let (getter, ids) = grants::fresh_grants(store.clone()).await;
    // The first get of each grant opens it (decrypts, imports the DPoP key).
    let start = Instant::now();
    for id in &ids {
        getter.get(id, Refresh::IfStale).await.unwrap();
    }
    let opening = start.elapsed() / u32::try_from(ids.len()).unwrap();
    println!("first get of each grant (opening it): {opening:?} each");
    let start = Instant::now();
    for i in 0..reads {
        let id = &ids[(i % 1000) as usize];
        if load_only {
            std::hint::black_box(store.load_grant(id).await.unwrap());
        } else {
            std::hint::black_box(getter.get(id, Refresh::IfStale).await.unwrap());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_second = reads as f64 / secs;
    println!("{reads} reads in {secs:.3} s: {per_second:.0}/s");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: get_fresh_loop <memory|sqlite> <reads> [load]";
    let backend = args.next().expect(usage);
    let reads: u64 = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let load_only = args.next().as_deref() == Some("load");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match backend.as_str() {
            "memory" => run(MemoryStore::new(), reads, load_only).await,
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(dir.path().join("loop.db")).await.unwrap();
                run(store, reads, load_only).await;
            }
            _ => panic!("{usage}"),
        }
    });
}
