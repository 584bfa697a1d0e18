//! Shared by `benches/oauth_session.rs` and `examples/get_fresh_loop.rs`: a getter over a
//! store holding 1,000 fresh grants (tokens good for an hour, sizes as a PDS issues them).

use std::time::Duration;

use atsession::clock::truncate_ms;
use atsession::crypto::at_rest::{AtRestKey, AtRestKeyring};
use atsession::oauth::dpop::DpopKey;
use atsession::oauth::{
    ClientAuth, ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, OAuthSessionData,
    SessionGetter, TokenSet,
};
use atsession::secret::SecretString;
use atsession::store::oauth::{GrantId, OAuthSessionStore, StateStore};
use atsession::syntax::Did;

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("bench", [9; 32]).unwrap())
}

/// A getter over `store`, which is given 1,000 fresh grants, and their ids.
pub async fn fresh_grants<S: StateStore + OAuthSessionStore + Clone>(
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
