//! Seal and unseal of a ~500-byte Iron seal, on one core.
//!
//! `cargo bench -p atsession --bench seal`. Set `ATSESSION_BENCH_SEAL` to a seal made elsewhere
//! (by Node, see `e2e/iron/bench.sh`) with the password below to unseal that one instead.

use std::hint::black_box;

use atsession::seal::{Iron, Passwords};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The password of the benchmark seals (also in e2e/iron/bench.sh).
const PW: &str = "some_not_random_password_that_is_at_least_32_characters";

/// What an app keeps in a sealed session: 220 bytes of JSON, a 505-byte seal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    did: String,
    handle: String,
    grant: String,
    created_at: u64,
    scope: String,
    roles: Vec<String>,
    theme: String,
}

fn data() -> Session {
    Session {
        did: "did:plc:ewvi7nxzyoun6zhxrhs64oiz".into(),
        handle: "alice.bsky.social".into(),
        grant: "0f6b3c1e-9a4d-4f7e-8b2a-5c6d7e8f9a0b".into(),
        created_at: 1_795_425_259_886,
        scope: "atproto transition:generic".into(),
        roles: vec!["user".into(), "beta".into()],
        theme: "dark".into(),
    }
}

fn bench(c: &mut Criterion) {
    let iron = Iron::new(Passwords::single(PW).expect("a valid password"));
    let own = iron.seal(&data()).expect("seals");
    let sealed = std::env::var("ATSESSION_BENCH_SEAL")
        .map(|s| s.trim().trim_end_matches("~2").to_owned())
        .unwrap_or(own);
    let json = iron
        .unseal_bytes(&sealed)
        .expect("the benchmark seal opens")
        .data;
    let _: Session = serde_json::from_slice(&json).expect("the benchmark seal holds a Session");
    eprintln!(
        "seal of {} bytes ({} bytes of JSON)",
        sealed.len(),
        json.len()
    );

    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_500B", |b| {
        let value = data();
        b.iter(|| iron.seal(black_box(&value)).expect("seals"));
    });
    g.bench_function("unseal_500B", |b| {
        b.iter(|| iron.unseal::<Session>(black_box(&sealed)).expect("opens"));
    });
    g.bench_function("unseal_500B_json_value", |b| {
        b.iter(|| {
            iron.unseal::<serde_json::Value>(black_box(&sealed))
                .expect("opens")
        });
    });
    g.bench_function("unseal_500B_bytes", |b| {
        b.iter(|| iron.unseal_bytes(black_box(&sealed)).expect("opens"));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
