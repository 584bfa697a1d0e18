//! Store backends compared: lookup by token and create, with 1 and with 16 concurrent
//! tasks, and delete-all-for-DID over 100 sessions.
//!
//! ```text
//! cargo bench -p atsession --bench backends --all-features -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! PostgreSQL and Redis are the test servers (`ATSESSION_TEST_POSTGRES_URL`,
//! `ATSESSION_TEST_REDIS_URL`, defaults on 127.0.0.1); a backend whose server is down is
//! skipped. Each run uses its own schema and key prefix and removes them at the end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atsession::app::{SessionId, StoredSession};
use atsession::clock::truncate_ms;
use atsession::secret::{TokenHash, random_bytes};
use atsession::store::MemoryStore;
use atsession::store::SessionStore;
use atsession::store::oauth::GrantId;
use atsession::store::postgres::PostgresStore;
use atsession::store::redis::RedisStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::{Did, Handle};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use tokio::runtime::Runtime;

const CONCURRENCY: [usize; 2] = [1, 16];

fn record(did: &Did) -> StoredSession {
    let now = truncate_ms(OffsetDateTime::now_utc());
    StoredSession {
        id: SessionId::generate(),
        token_hash: TokenHash::of(&random_bytes::<32>()),
        access_token_hash: Some(TokenHash::of(&random_bytes::<32>())),
        access_expires_at: Some(now + Duration::from_secs(900)),
        did: did.clone(),
        handle: Handle::new("alice.test").unwrap(),
        data: serde_json::json!({"theme": "dark", "n": 1}).into(),
        grant_id: Some(GrantId::generate()),
        created_at: now,
        last_seen_at: now,
        idle_expires_at: now + Duration::from_secs(7 * 24 * 3600),
        absolute_expires_at: now + Duration::from_secs(30 * 24 * 3600),
        version: 1,
    }
}

fn random_did() -> Did {
    let r: [u8; 12] = random_bytes();
    let s: String = r
        .iter()
        .map(|b| char::from(b'a' + (b % 26)))
        .chain("abcdefghijkl".chars())
        .collect();
    Did::new(format!("did:plc:{s}")).unwrap()
}

type Cleanup = Box<dyn FnOnce(&Runtime)>;

fn bench_store<S: SessionStore + Clone>(c: &mut Criterion, rt: &Runtime, name: &str, store: S) {
    let dids: Arc<Vec<Did>> = Arc::new((0..64).map(|_| random_did()).collect());
    // 1000 sessions to look up.
    let hashes: Arc<Vec<TokenHash>> = Arc::new(rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..1000 {
            let r = record(&dids[i % dids.len()]);
            store.create(&r).await.unwrap();
            out.push(r.token_hash);
        }
        out
    }));

    let mut g = c.benchmark_group(format!("lookup/{name}"));
    for tasks in CONCURRENCY {
        g.throughput(Throughput::Elements(tasks as u64));
        g.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            let mut i = 0usize;
            b.to_async(rt).iter(|| {
                i = i.wrapping_add(tasks);
                let store = store.clone();
                let hashes = Arc::clone(&hashes);
                let base = i;
                async move {
                    fan_out(tasks, move |t| {
                        let store = store.clone();
                        let h = hashes[(base + t) % hashes.len()];
                        Box::pin(async move {
                            assert!(store.load_by_token(&h).await.unwrap().is_some());
                        })
                    })
                    .await;
                }
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("create/{name}"));
    for tasks in CONCURRENCY {
        g.throughput(Throughput::Elements(tasks as u64));
        g.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.to_async(rt).iter(|| {
                let store = store.clone();
                let dids = Arc::clone(&dids);
                async move {
                    fan_out(tasks, move |t| {
                        let store = store.clone();
                        let r = record(&dids[t % dids.len()]);
                        Box::pin(async move { store.create(&r).await.unwrap() })
                    })
                    .await;
                }
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("delete_by_did/{name}"));
    g.sample_size(10);
    g.bench_function("100_sessions", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let did = random_did();
                    for _ in 0..100 {
                        store.create(&record(&did)).await.unwrap();
                    }
                    let start = Instant::now();
                    assert_eq!(store.delete_by_did(&did).await.unwrap(), 100);
                    total += start.elapsed();
                }
                total
            }
        });
    });
    g.finish();
}

/// Runs `tasks` futures concurrently on the runtime and waits for all.
async fn fan_out(tasks: usize, make: impl Fn(usize) -> Pin<Box<dyn Future<Output = ()> + Send>>) {
    if tasks == 1 {
        return make(0).await;
    }
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(make(t))).collect();
    for h in handles {
        h.await.unwrap();
    }
}

fn backends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cleanups: Vec<Cleanup> = Vec::new();

    bench_store(c, &rt, "memory", MemoryStore::new());

    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::open(dir.path().join("bench.db")))
        .unwrap();
    bench_store(c, &rt, "sqlite", sqlite);

    let suffix: String = random_bytes::<4>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pg_url = std::env::var("ATSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("atsession_bench_{suffix}");
    match rt.block_on(PostgresStore::connect_with_schema(&pg_url, &schema)) {
        Ok(pg) => {
            bench_store(c, &rt, "postgres", pg.clone());
            cleanups.push(Box::new(move |rt| {
                rt.block_on(async {
                    let client = pg.pool().get().await.unwrap();
                    client
                        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", pg.schema()))
                        .await
                        .unwrap();
                });
            }));
        }
        Err(e) => eprintln!("skipping postgres: {e}"),
    }

    let redis_url = std::env::var("ATSESSION_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    match rt.block_on(RedisStore::connect_with_prefix(
        &redis_url,
        &format!("atsession_bench_{suffix}:"),
    )) {
        Ok(redis_store) => {
            bench_store(c, &rt, "redis", redis_store.clone());
            cleanups.push(Box::new(move |rt| {
                rt.block_on(async {
                    let mut conn = redis_store.connection();
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{}*", redis_store.prefix()))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    for chunk in keys.chunks(1000) {
                        let _: () = redis::cmd("DEL")
                            .arg(chunk)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                    }
                });
            }));
        }
        Err(e) => eprintln!("skipping redis: {e}"),
    }

    for cleanup in cleanups {
        cleanup(&rt);
    }
}

criterion_group!(benches, backends);
criterion_main!(benches);
