//! What a DPoP proof costs, the signature of every PDS call: ES256K (secp256k1, what new
//! grants use when the server offers it) beside ES256 (P-256), in one run.
//!
//! ```sh
//! cargo bench -p atsession --features oauth --bench dpop
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use atsession::oauth::{DpopAlg, DpopKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let ath = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
    let mut group = c.benchmark_group("dpop_proof");
    group.throughput(Throughput::Elements(1));
    for (name, alg) in [
        ("es256k_with_ath_and_nonce", DpopAlg::Es256k),
        ("es256_with_ath_and_nonce", DpopAlg::Es256),
    ] {
        let key = DpopKey::generate_for(alg);
        group.bench_function(name, |b| {
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
    }
    group.finish();
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
