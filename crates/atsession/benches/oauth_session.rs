//! The session getter's common path: a fresh grant (one store read, one decrypt, no
//! refresh), on the memory and SQLite stores, with 1,000 grants stored; and the store read
//! alone, for comparison.
//!
//! `cargo bench -p atsession --features oauth --bench oauth_session`
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use atsession::clock::truncate_ms;
use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
use atsession::oauth::dpop::DpopKey;
use atsession::oauth::{
    ClientAuth, ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, OAuthSessionData,
    Refresh, SessionGetter, TokenSet,
};
use atsession::secret::SecretString;
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantId, OAuthSessionStore, StateStore};
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("bench", [9; 32]).unwrap())
}

async fn setup<S: StateStore + OAuthSessionStore + Clone>(
    store: S,
) -> (SessionGetter<S>, Vec<GrantId>) {
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], "atproto").unwrap();
    let client =
        OAuthClient::new(OAuthClientConfig::new(metadata, keyring()), store.clone()).unwrap();
    let now = truncate_ms(time::OffsetDateTime::now_utc());
    let mut ids = Vec::new();
    for i in 0..1000 {
        let data = OAuthSessionData {
            grant_id: GrantId::generate(),
            token_set: TokenSet {
                iss: "https://pds.example".into(),
                sub: Did::new(format!("did:plc:bench{i:020}")).unwrap(),
                aud: "https://pds.example/".into(),
                scope: "atproto transition:generic".into(),
                access_token: SecretString::new("a".repeat(700)),
                refresh_token: Some(SecretString::new("r".repeat(300))),
                expires_at: Some(now + Duration::from_secs(3600)),
            },
            dpop_key: DpopKey::generate(),
            auth: ClientAuth::None,
            created_at: now,
        };
        store
            .create_grant(&data.seal(&keyring(), now, 1).unwrap())
            .await
            .unwrap();
        ids.push(data.grant_id);
    }
    (SessionGetter::new(client, GetterConfig::default()), ids)
}

fn bench_store<S: StateStore + OAuthSessionStore + Clone>(c: &mut Criterion, name: &str, store: S) {
    let rt = runtime();
    let (getter, ids) = rt.block_on(setup(store));
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
