//! What a DPoP proof costs: the ES256 signature of every PDS call.
//!
//! ```sh
//! cargo bench -p atsession --bench dpop
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use atsession::oauth::dpop::DpopKey;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let key = DpopKey::generate();
    let ath = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
    let mut group = c.benchmark_group("dpop_proof");
    group.throughput(Throughput::Elements(1));
    group.bench_function("es256_with_ath_and_nonce", |b| {
        b.iter(|| {
            key.proof(
                "GET",
                "https://pds.example.com/xrpc/com.atproto.server.getSession",
                Some("a-nonce-from-the-server-0123456789"),
                Some(ath),
                1_764_000_000,
            )
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
