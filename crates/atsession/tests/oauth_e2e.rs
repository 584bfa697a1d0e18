//! The OAuth client against the official atproto PDS: whole logins (public loopback client
//! and confidential `private_key_jwt` client), consent refused, a replayed state, a wrong
//! `iss`, and an account whose PDS names another authorization server.
//!
//! Run with the peer up:
//! `bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json &&
//!  ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --features oauth --test oauth_e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;

use std::time::Duration;

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::DpopAlg;
use atsession::oauth::EcKey;
use atsession::oauth::Keyset;
use atsession::oauth::{
    AuthorizeOptions, CallbackError, CallbackParams, ClientAuth, ClientMetadata, OAuthClient,
    OAuthClientConfig, OAuthError,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantStore, StateStore};
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIRECT: &str = "http://127.0.0.1:8080/callback";

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::generate("test").unwrap())
}

fn identity(peer: &pds::Peer, plc_url: &str) -> IdentityConfig {
    IdentityConfig {
        plc_url: Url::parse(plc_url).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(60),
    }
}

fn loopback_client<S: StateStore + GrantStore>(peer: &pds::Peer, store: S) -> OAuthClient<S> {
    let metadata = ClientMetadata::loopback(&[REDIRECT], "atproto transition:generic").unwrap();
    let config = OAuthClientConfig::new(metadata, keyring())
        .dev_mode(true)
        .identity(identity(peer, peer.plc_url()));
    OAuthClient::new(config, store).unwrap()
}

fn callback_params(redirect: &str) -> CallbackParams {
    let url = Url::parse(redirect).unwrap();
    CallbackParams::from_query(url.query().unwrap_or_default()).unwrap()
}

async fn get_session<S: StateStore + GrantStore>(
    client: &OAuthClient<S>,
    session: &atsession::oauth::Grant,
) -> (StatusCode, Value) {
    let f = client
        .pds_request(
            session,
            Method::GET,
            "/xrpc/com.atproto.server.getSession",
            None,
        )
        .await
        .unwrap();
    (
        f.status,
        serde_json::from_slice(&f.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn public_loopback_client_full_flow() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("oauth.db"))
        .await
        .unwrap();
    let client = loopback_client(&peer, store.clone());

    let url = client
        .authorize(
            "@alice.test",
            AuthorizeOptions {
                app_state: Some("return-to=/home".into()),
                ..Default::default()
            },
        )
        .await
        .expect("authorize");
    assert!(
        url.as_str()
            .starts_with(&format!("{}/oauth/authorize?", peer.issuer()))
    );
    assert!(url.query().unwrap().contains("request_uri="));

    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    let done = client
        .callback(&callback_params(&redirect))
        .await
        .expect("callback");
    assert_eq!(done.app_state.as_deref(), Some("return-to=/home"));
    let session = done.grant;
    let ts = &session.token_set;
    assert_eq!(ts.sub.as_str(), alice.did);
    assert_eq!(ts.iss, peer.issuer());
    assert_eq!(ts.aud.trim_end_matches('/'), peer.pds_url());
    assert!(ts.has_scope("atproto"));
    assert!(ts.refresh_token.is_some());
    assert!(ts.expires_at.is_some());
    assert_eq!(session.auth, ClientAuth::None);
    // The PDS offers ES256K, which the client prefers for DPoP, as the reference client does.
    assert_eq!(session.dpop_key.alg(), DpopAlg::Es256k);
    // No token in Debug output.
    let dbg = format!("{session:?}");
    assert!(!dbg.contains(ts.access_token.expose()));

    // Stored (sealed) and readable back.
    let did = Did::new(alice.did.clone()).unwrap();
    assert_eq!(
        client.grants_of(&did).await.unwrap(),
        vec![session.grant_id.clone()]
    );
    let stored = store.load_grant(&session.grant_id).await.unwrap().unwrap();
    let raw = ts.access_token.expose().as_bytes();
    assert!(!stored.sealed.windows(raw.len()).any(|w| w == raw));
    let back = client.grant(&session.grant_id).await.unwrap().unwrap();
    assert_eq!(back.token_set, session.token_set);

    // The tokens work at the PDS (DPoP-bound, with ath and the nonce).
    let (status, body) = get_session(&client, &session).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["did"], alice.did.as_str());

    // Logout: revoked at the server and deleted here.
    assert!(client.revoke(&session.grant_id).await.expect("revoke"));
    assert!(client.grant(&session.grant_id).await.unwrap().is_none());
    let (status, _) = get_session(&client, &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused = client
        .refresh(&session)
        .await
        .expect_err("refresh after revoke");
    assert!(refused.is_invalid_grant(), "{refused:?}");
}

#[tokio::test]
async fn confidential_client_full_flow() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let tag = atsession::store::oauth::GrantId::generate();
    let client_id = format!("https://client.example.com/{tag}/client-metadata.json");
    let keyset = Keyset::new(vec![
        EcKey::generate().with_kid("k-2026"),
        EcKey::generate().with_kid("k-2025"),
    ])
    .unwrap();
    let metadata = ClientMetadata::confidential(
        &client_id,
        &["https://client.example.com/callback"],
        "atproto transition:generic",
        Some(keyset.public_jwks()),
        None,
    )
    .unwrap();
    peer.register_client(&client_id, &serde_json::to_value(&metadata).unwrap())
        .await
        .expect("register the client metadata");
    // P-256 DPoP keys (those of grants made before ES256K was preferred) work the same.
    let config = OAuthClientConfig::new(metadata, keyring())
        .keyset(keyset)
        .dev_mode(true)
        .identity(identity(&peer, peer.plc_url()))
        .dpop_alg(DpopAlg::Es256);
    let client = OAuthClient::new(config, MemoryStore::new()).unwrap();

    // Start from the DID this time.
    let url = client
        .authorize(&alice.did, AuthorizeOptions::default())
        .await
        .expect("authorize");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let session = client
        .callback(&callback_params(&redirect))
        .await
        .expect("callback")
        .grant;
    assert_eq!(
        session.auth,
        ClientAuth::PrivateKeyJwt {
            kid: "k-2026".into()
        }
    );
    assert_eq!(session.dpop_key.alg(), DpopAlg::Es256);
    let (status, body) = get_session(&client, &session).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["did"], alice.did.as_str());

    // A refresh rotates the refresh token and the new access token works.
    let refreshed = client.refresh(&session).await.expect("refresh");
    assert_ne!(
        refreshed.refresh_token.as_ref().unwrap().expose(),
        session.token_set.refresh_token.as_ref().unwrap().expose()
    );
    let mut current = session.clone();
    current.token_set = refreshed;
    let (status, _) = get_session(&client, &current).await;
    assert_eq!(status, StatusCode::OK);
    // The old refresh token is now refused.
    assert!(
        client
            .refresh(&session)
            .await
            .unwrap_err()
            .is_invalid_grant()
    );

    // Logout with the stored (older) token set still ends the grant: revoking the stored
    // access token ends the whole grant at the PDS, refreshed tokens included.
    assert!(client.revoke(&session.grant_id).await.is_ok());
    let (status, _) = get_session(&client, &current).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    peer.unregister_client(&client_id).await.unwrap();
}

#[tokio::test]
async fn consent_refused_is_access_denied() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let bob = peer.account("bob.test").clone();
    let client = loopback_client(&peer, MemoryStore::new());
    let url = client
        .authorize(
            "bob.test",
            AuthorizeOptions {
                app_state: Some("s1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_reject(url.as_str(), &bob.handle, &bob.password)
        .await
        .expect("sign-in and reject");
    let err = client
        .callback(&callback_params(&redirect))
        .await
        .expect_err("refused consent");
    match err {
        OAuthError::Callback(CallbackError::AccessDenied { app_state, .. }) => {
            assert_eq!(app_state.as_deref(), Some("s1"));
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    let did = Did::new(bob.did.clone()).unwrap();
    assert!(client.grants_of(&did).await.unwrap().is_empty());
}

#[tokio::test]
async fn replayed_state_is_refused_and_stores_nothing() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let carol = peer.account("carol.test").clone();
    let client = loopback_client(&peer, MemoryStore::new());
    let url = client
        .authorize("carol.test", AuthorizeOptions::default())
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &carol.handle, &carol.password)
        .await
        .unwrap();
    let params = callback_params(&redirect);
    let first = client.callback(&params).await.expect("first callback");
    let did = Did::new(carol.did.clone()).unwrap();
    assert_eq!(client.grants_of(&did).await.unwrap().len(), 1);

    let err = client.callback(&params).await.expect_err("replay");
    assert!(
        matches!(err, OAuthError::Callback(CallbackError::UnknownState)),
        "{err:?}"
    );
    assert_eq!(
        client.grants_of(&did).await.unwrap(),
        vec![first.grant.grant_id.clone()]
    );
    // A made-up state too.
    let mut forged = params.clone();
    forged.state = Some("forged".into());
    assert!(matches!(
        client.callback(&forged).await,
        Err(OAuthError::Callback(CallbackError::UnknownState))
    ));
    client.revoke(&first.grant.grant_id).await.unwrap();
}

#[tokio::test]
async fn wrong_iss_is_refused_and_stores_nothing() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let client = loopback_client(&peer, MemoryStore::new());
    let url = client
        .authorize("alice.test", AuthorizeOptions::default())
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .unwrap();
    let mut params = callback_params(&redirect);
    params.iss = Some("https://evil.example".into());
    let err = client.callback(&params).await.expect_err("wrong iss");
    match err {
        OAuthError::Callback(CallbackError::IssuerMismatch { expected, found }) => {
            assert_eq!(expected, peer.issuer());
            assert_eq!(found, "https://evil.example");
        }
        other => panic!("expected IssuerMismatch, got {other:?}"),
    }
    let did = Did::new(alice.did.clone()).unwrap();
    assert!(client.grants_of(&did).await.unwrap().is_empty());
    // The state was used up: the genuine response cannot be replayed after it.
    let genuine = callback_params(&redirect);
    assert!(matches!(
        client.callback(&genuine).await,
        Err(OAuthError::Callback(CallbackError::UnknownState))
    ));
    // A missing iss is refused too.
    let url = client
        .authorize("alice.test", AuthorizeOptions::default())
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .unwrap();
    let mut params = callback_params(&redirect);
    params.iss = None;
    assert!(matches!(
        client.callback(&params).await,
        Err(OAuthError::Callback(CallbackError::MissingIss))
    ));
    assert!(client.grants_of(&did).await.unwrap().is_empty());
}

/// A fake PLC directory and PDS in one loopback server: every DID document it serves
/// names the fake itself as the PDS, and its protected-resource metadata names the fake
/// itself as the authorization server. Stands for an account that lives elsewhere.
async fn fake_plc_and_pds() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let me = origin.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let me = me.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let body = if path == "/.well-known/oauth-protected-resource" {
                    serde_json::json!({"resource": me, "authorization_servers": [me]})
                } else if let Some(did) = path.strip_prefix('/').filter(|p| p.starts_with("did:")) {
                    serde_json::json!({
                        "id": did,
                        "alsoKnownAs": [],
                        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                     "serviceEndpoint": me}]
                    })
                } else {
                    serde_json::json!({"error": "NotFound"})
                };
                let body = body.to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    origin
}

#[tokio::test]
async fn sub_served_by_another_authorization_server_is_refused() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    // The login starts from the real PDS URL; the account's identity, though, resolves
    // (through the fake PLC) to a PDS protected by another issuer.
    let fake = fake_plc_and_pds().await;
    let metadata = ClientMetadata::loopback(&[REDIRECT], "atproto").unwrap();
    let config = OAuthClientConfig::new(metadata, keyring())
        .dev_mode(true)
        .identity(identity(&peer, &fake));
    let client = OAuthClient::new(config, MemoryStore::new()).unwrap();
    let url = client
        .authorize(peer.pds_url(), AuthorizeOptions::default())
        .await
        .expect("authorize from the PDS URL");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .unwrap();
    let err = client
        .callback(&callback_params(&redirect))
        .await
        .expect_err("sub from another server");
    match err {
        OAuthError::WrongAuthorizationServer {
            sub,
            expected,
            found,
        } => {
            assert_eq!(sub.as_str(), alice.did);
            assert_eq!(expected, peer.issuer());
            assert_eq!(found, fake);
        }
        other => panic!("expected WrongAuthorizationServer, got {other:?}"),
    }
    let did = Did::new(alice.did.clone()).unwrap();
    assert!(client.grants_of(&did).await.unwrap().is_empty());
}
