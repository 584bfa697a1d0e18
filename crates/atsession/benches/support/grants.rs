//! Shared by `benches/oauth_session.rs`, `examples/get_fresh_loop.rs` and
//! `tests/oauth_opened_cache.rs`: a getter over a store holding fresh grants (tokens good for
//! an hour, sizes as a PDS issues them; grant `i` is for `did:plc:bench<i, 20 digits>`).
#![allow(dead_code)]

use std::time::Duration;

use atsession::clock::truncate_ms;
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::DpopKey;
use atsession::oauth::{
    ClientAuth, ClientMetadata, GetterConfig, Grant, OAuthClient, OAuthClientConfig, SessionGetter,
    TokenSet,
};
use atsession::secret::SecretString;
use atsession::store::oauth::{GrantId, GrantStore, StateStore};
use atsession::syntax::Did;

pub fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("bench", [9; 32]).unwrap())
}

/// A getter over `store`, which is given 1,000 fresh grants, and their ids.
pub async fn fresh_grants<S: StateStore + GrantStore + Clone>(
    store: S,
) -> (SessionGetter<S>, Vec<GrantId>) {
    fresh_grants_with(store, 1000, GetterConfig::default()).await
}

/// The DID of grant `i`.
pub fn did(i: usize) -> Did {
    Did::new(format!("did:plc:bench{i:020}")).unwrap()
}

/// A getter configured by `config` over `store`, which is given `n` fresh grants, and their
/// ids.
pub async fn fresh_grants_with<S: StateStore + GrantStore + Clone>(
    store: S,
    n: usize,
    config: GetterConfig,
) -> (SessionGetter<S>, Vec<GrantId>) {
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], "atproto").unwrap();
    let client =
        OAuthClient::new(OAuthClientConfig::new(metadata, keyring()), store.clone()).unwrap();
    let now = truncate_ms(time::OffsetDateTime::now_utc());
    let mut ids = Vec::new();
    for i in 0..n {
        let data = Grant {
            grant_id: GrantId::generate(),
            token_set: TokenSet {
                iss: "https://pds.example".into(),
                sub: did(i),
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
    (SessionGetter::new(client, config), ids)
}
