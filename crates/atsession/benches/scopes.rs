//! The cost of the scope model on what an app does per call: reading a granted scope of 40
//! scopes (as a permission set's expansion looks), and the pre-check of a write.
//!
//! `cargo bench -p atsession --features oauth --bench scopes`

use std::hint::black_box;

use atsession::oauth::scope::{RepoAction, ScopeSet, precheck_xrpc};
use criterion::{Criterion, criterion_group, criterion_main};

/// 41 scopes: `atproto`, 20 collections, 15 methods on the AppView, blobs, account email.
fn granted() -> String {
    let mut s = vec!["atproto".to_owned()];
    for i in 0..20 {
        s.push(format!(
            "repo:app.example.record{i}?action=create&action=delete"
        ));
    }
    for i in 0..15 {
        s.push(format!(
            "rpc:app.example.feed.get{i}?aud=did:web:api.example.com%23example_appview"
        ));
    }
    s.push("blob:image/*".into());
    s.push("blob?accept=video/mp4&accept=video/webm".into());
    s.push("account:email".into());
    s.push("identity:handle".into());
    s.push("include:app.example.authFull?aud=did:web:api.example.com%23example_appview".into());
    s.join(" ")
}

fn bench(c: &mut Criterion) {
    let text = granted();
    let set = ScopeSet::parse_granted(&text).expect("valid");
    assert_eq!(set.len(), 41);
    c.bench_function("parse_granted (41 scopes)", |b| {
        b.iter(|| ScopeSet::parse_granted(black_box(&text)))
    });
    c.bench_function("allows_repo (41 scopes)", |b| {
        b.iter(|| set.allows_repo(black_box("app.example.record19"), RepoAction::Create))
    });
    let input =
        serde_json::json!({"repo": "did:plc:x", "collection": "app.example.record7", "record": {}});
    c.bench_function("pre-check of createRecord (parse + check)", |b| {
        b.iter(|| {
            let granted = ScopeSet::parse_granted(black_box(&text)).expect("valid");
            precheck_xrpc(
                &granted,
                "com.atproto.repo.createRecord",
                Some(&input),
                None,
                None,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
