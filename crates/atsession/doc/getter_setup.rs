// Shared by the doc examples of `SessionGetter` and `OAuthSession`: a getter over a memory
// store holding one grant whose access token is good for an hour. The grant's issuer is a
// closed loopback port, so whatever would reach the authorization server fails at once.

/// A getter and the id of the grant it holds.
async fn demo_getter() -> (
    atsession::oauth::SessionGetter<atsession::store::MemoryStore>,
    atsession::store::oauth::GrantId,
) {
    use atsession::crypto::{AtRestKey, AtRestKeyring};
    use atsession::oauth::DpopKey;
    use atsession::oauth::{
        ClientAuth, ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig,
        Grant, SessionGetter, TokenSet,
    };
    use atsession::store::oauth::{GrantId, GrantStore};

    let keyring = AtRestKeyring::new(AtRestKey::new("doc", [7; 32]).unwrap());
    let store = atsession::store::MemoryStore::new();
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto").unwrap();
    let client =
        OAuthClient::new(OAuthClientConfig::new(metadata, keyring.clone()), store.clone()).unwrap();
    let now = atsession::clock::truncate_ms(time::OffsetDateTime::now_utc());
    let data = Grant {
        grant_id: GrantId::generate(),
        token_set: TokenSet {
            iss: "https://127.0.0.1:9".into(),
            sub: atsession::syntax::Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            aud: "https://127.0.0.1:9/".into(),
            scope: "atproto transition:generic".into(),
            access_token: "access-token".into(),
            refresh_token: Some("refresh-token".into()),
            expires_at: Some(now + std::time::Duration::from_secs(3600)),
        },
        dpop_key: DpopKey::generate(),
        auth: ClientAuth::None,
        created_at: now,
    };
    store.create_grant(&data.seal(&keyring, now, 1).unwrap()).await.unwrap();
    (SessionGetter::new(client, GetterConfig::default()), data.grant_id)
}
