//! Times one whole login with atsession's OAuth client against the local PDS, the same
//! way `e2e/refclient/login.mjs` times @atproto/oauth-client-node: authorize (handle →
//! DID → PDS → metadata → PAR) → the user's four HTTP calls → callback (token exchange,
//! `sub` check, sealed store). Prints one JSON line.
//!
//! ```text
//! ATSESSION_E2E_PDS=/tmp/pds.json cargo run --release -p atsession --features oauth \
//!     --example login_timing -- [runs=20] [--confidential]
//! ```
//!
//! "cold": a new client per login (no cached identity or metadata, no DPoP nonce);
//! "warm": one client for every login (its caches filled by a first, untimed login).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/pds.rs"]
mod pds;

use std::time::{Duration, Instant};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::EcKey;
use atsession::oauth::Keyset;
use atsession::oauth::{
    AuthorizeOptions, CallbackParams, ClientMetadata, OAuthClient, OAuthClientConfig,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use reqwest::Url;

struct Phases {
    total: Vec<f64>,
    authorize: Vec<f64>,
    user_step: Vec<f64>,
    callback: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn make_client(
    peer: &pds::Peer,
    confidential: Option<&(String, Keyset)>,
) -> OAuthClient<MemoryStore> {
    let metadata = match confidential {
        None => ClientMetadata::loopback(
            &["http://127.0.0.1:8080/callback"],
            "atproto transition:generic",
        )
        .unwrap(),
        Some((id, keyset)) => ClientMetadata::confidential(
            id,
            &["https://client.example.com/callback"],
            "atproto transition:generic",
            Some(keyset.public_jwks()),
            None,
        )
        .unwrap(),
    };
    let mut config = OAuthClientConfig::new(
        metadata,
        AtRestKeyring::new(AtRestKey::generate("timing").unwrap()),
    )
    .dev_mode(true)
    .identity(IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(300),
    });
    if let Some((_, keyset)) = confidential {
        config = config.keyset(keyset.clone());
    }
    OAuthClient::new(config, MemoryStore::new()).unwrap()
}

async fn login(client: &OAuthClient<MemoryStore>, peer: &pds::Peer, p: &mut Phases) {
    let alice = peer.account("alice.test");
    let t0 = Instant::now();
    let url = client
        .authorize(&alice.handle, AuthorizeOptions::default())
        .await
        .expect("authorize");
    let t1 = Instant::now();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let t2 = Instant::now();
    let query = Url::parse(&redirect)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned();
    let done = client
        .callback(&CallbackParams::from_query(&query).unwrap())
        .await
        .expect("callback");
    let t3 = Instant::now();
    assert_eq!(done.grant.token_set.sub.as_str(), alice.did);
    p.total.push(ms(t3 - t0));
    p.authorize.push(ms(t1 - t0));
    p.user_step.push(ms(t2 - t1));
    p.callback.push(ms(t3 - t2));
}

fn phases_json(p: &Phases) -> serde_json::Value {
    serde_json::json!({
        "authorize": round(median(&p.authorize)),
        "user_step": round(median(&p.user_step)),
        "callback": round(median(&p.callback)),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    let confidential = args.iter().any(|a| a == "--confidential");
    let conf = if confidential {
        let id = format!(
            "https://client.example.com/{}/client-metadata.json",
            atsession::store::oauth::GrantId::generate()
        );
        let keyset = Keyset::new(vec![EcKey::generate().with_kid("timing")]).unwrap();
        let probe = make_client(&peer, Some(&(id.clone(), keyset.clone())));
        peer.register_client(&id, &serde_json::to_value(probe.metadata()).unwrap())
            .await
            .expect("register the confidential client");
        Some((id, keyset))
    } else {
        None
    };

    let new = || Phases {
        total: vec![],
        authorize: vec![],
        user_step: vec![],
        callback: vec![],
    };
    let mut cold = new();
    for _ in 0..runs {
        let client = make_client(&peer, conf.as_ref());
        login(&client, &peer, &mut cold).await;
    }
    let shared = make_client(&peer, conf.as_ref());
    login(&shared, &peer, &mut new()).await;
    let mut warm = new();
    for _ in 0..runs {
        login(&shared, &peer, &mut warm).await;
    }
    if let Some((id, _)) = &conf {
        let _ = peer.unregister_client(id).await;
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        serde_json::json!({
            "client": concat!("atsession@", env!("CARGO_PKG_VERSION")),
            "kind": if confidential { "confidential (private_key_jwt)" } else { "loopback (public)" },
            "runs": runs,
            "cold_median_ms": round(median(&cold.total)),
            "cold_min_ms": round(min(&cold.total)),
            "warm_median_ms": round(median(&warm.total)),
            "warm_min_ms": round(min(&warm.total)),
            "cold_phases_median_ms": phases_json(&cold),
            "warm_phases_median_ms": phases_json(&warm),
        })
    );
}
