//! Granular permission scopes against the official atproto PDS: a login asking for
//! `atproto repo:com.example.note?action=create` may create notes and not posts (the PDS's
//! `ScopeMissingError` becomes a typed error naming the scope, and the opt-in pre-check
//! refuses without sending); a scope upgrade adding `repo:app.bsky.feed.post` keeps the
//! grant id and the app session, makes posting work, and the earlier refresh token is
//! refused by the PDS; an upgrade that comes back as another account touches nothing.
//!
//! `bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json &&
//!  ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --features oauth,sqlite --test scopes_e2e`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;

use std::time::Duration;

use atsession::app::{CreateOptions, SessionManager};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::scope::{RepoAction, ScopeSet};
use atsession::oauth::{
    AuthorizeOptions, CallbackError, CallbackParams, ClientMetadata, GetterConfig, GrantError,
    OAuthClient, OAuthClientConfig, OAuthError, Refresh, SessionEvent, SessionGetter,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use atsession::store::oauth::GrantStore;
use atsession::syntax::Did;
use reqwest::Url;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:8080/callback";
const NOTE: &str = "repo:com.example.note?action=create";
const POST: &str = "repo:app.bsky.feed.post";

fn client(peer: &pds::Peer, store: MemoryStore) -> OAuthClient<MemoryStore> {
    // The loopback client id declares every scope the app may ask for, the upgrade's too.
    let metadata =
        ClientMetadata::loopback(&[REDIRECT], &format!("atproto {NOTE} {POST}")).unwrap();
    let identity = IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(60),
    };
    let keyring = AtRestKeyring::new(AtRestKey::generate("k").unwrap());
    OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring)
            .dev_mode(true)
            .identity(identity),
        store,
    )
    .unwrap()
}

fn query_of(redirect: &str) -> CallbackParams {
    let q = Url::parse(redirect).unwrap().query().unwrap().to_owned();
    CallbackParams::from_query(&q).unwrap()
}

fn record(collection: &str, did: &str) -> Value {
    json!({
        "repo": did,
        "collection": collection,
        "record": {"$type": collection, "text": "hello", "createdAt": "2026-12-01T00:00:00Z"},
    })
}

#[tokio::test]
async fn granular_scopes_and_upgrade_in_place() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let store = MemoryStore::new();
    let client = client(&peer, store.clone());
    let getter = SessionGetter::new(client.clone(), GetterConfig::default());
    let checked = SessionGetter::new(client.clone(), GetterConfig::default().scope_check(true));
    let mut events = getter.subscribe();

    // Login asking for notes only.
    let url = client
        .authorize(
            "alice.test",
            AuthorizeOptions {
                scope: Some(format!("atproto {NOTE}")),
                ..AuthorizeOptions::default()
            },
        )
        .await
        .expect("authorize");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let login = getter
        .callback(&query_of(&redirect))
        .await
        .expect("callback");
    assert!(login.upgrade.is_none());
    let grant = login.grant.grant_id.clone();
    let granted = ScopeSet::parse_granted(&login.grant.token_set.scope).unwrap();
    assert!(
        granted.allows_repo("com.example.note", RepoAction::Create),
        "{granted}"
    );
    assert!(
        !granted.allows_repo("app.bsky.feed.post", RepoAction::Create),
        "{granted}"
    );
    let before = getter.get(&grant, Refresh::AcceptStale).await.unwrap();
    assert_eq!(
        before.token_set.scope, login.grant.token_set.scope,
        "the token response's scope is what was stored"
    );

    // The app session that belongs to this grant.
    let sessions = SessionManager::new(MemoryStore::new());
    let app = sessions
        .create_with(
            &alice.did,
            &alice.handle,
            json!({}),
            CreateOptions::new().grant_id(grant.clone()),
        )
        .await
        .unwrap();

    // Notes: allowed.
    let session = getter.session(grant.clone());
    let created: Value = session
        .xrpc_procedure(
            "com.atproto.repo.createRecord",
            &record("com.example.note", &alice.did),
        )
        .await
        .expect("creating a note is within the grant");
    assert!(
        created["uri"]
            .as_str()
            .unwrap()
            .contains("com.example.note")
    );

    // Posts: the PDS refuses, naming the scope.
    let e = session
        .xrpc_procedure::<_, Value>(
            "com.atproto.repo.createRecord",
            &record("app.bsky.feed.post", &alice.did),
        )
        .await
        .unwrap_err();
    let GrantError::ScopeMissing { scope, message } = &e else {
        panic!("expected ScopeMissing, got {e:?}");
    };
    assert_eq!(scope, "repo:app.bsky.feed.post?action=create");
    assert!(message.is_some(), "this one came from the PDS");
    eprintln!("the PDS refused the post: {e}");

    // The opt-in pre-check refuses it without a request (no message: nothing was sent).
    let e = checked
        .session(grant.clone())
        .xrpc_procedure::<_, Value>(
            "com.atproto.repo.createRecord",
            &record("app.bsky.feed.post", &alice.did),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, GrantError::ScopeMissing { scope, message: None } if scope == "repo:app.bsky.feed.post?action=create"),
        "{e:?}"
    );
    // …and lets notes through.
    let _: Value = checked
        .session(grant.clone())
        .xrpc_procedure(
            "com.atproto.repo.createRecord",
            &record("com.example.note", &alice.did),
        )
        .await
        .expect("the pre-check permits notes");
    while events.try_recv().is_ok() {}

    // The upgrade: same account, current scope plus posts.
    let url = client
        .authorize_upgrade(&grant, POST, AuthorizeOptions::default())
        .await
        .expect("authorize_upgrade");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .expect("consent to the upgrade");
    let done = getter
        .callback(&query_of(&redirect))
        .await
        .expect("upgrade callback");
    let upgrade = done.upgrade.expect("an upgrade");
    assert_eq!(done.grant.grant_id, grant, "the same grant");
    assert_eq!(upgrade.previous_scope, before.token_set.scope);
    let now = ScopeSet::parse_granted(&done.grant.token_set.scope).unwrap();
    assert!(
        now.allows_repo("app.bsky.feed.post", RepoAction::Create),
        "{now}"
    );
    assert!(
        now.allows_repo("com.example.note", RepoAction::Create),
        "{now}"
    );
    assert_eq!(
        store
            .list_grants_by_did(&Did::new(&alice.did).unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
    match events.try_recv().expect("an Updated event") {
        SessionEvent::Updated(info) => {
            assert_eq!(info.grant_id, grant);
            assert_eq!(
                info.previous_scope.as_deref(),
                Some(before.token_set.scope.as_str())
            );
            assert_eq!(info.scope, done.grant.token_set.scope);
            assert_eq!(info.version, upgrade.version);
        }
        other => panic!("unexpected {other:?}"),
    }

    // Posting works now, through the same session handle and the same getter (its
    // opened-session cache sees the new row).
    let posted: Value = session
        .xrpc_procedure(
            "com.atproto.repo.createRecord",
            &record("app.bsky.feed.post", &alice.did),
        )
        .await
        .expect("posting after the upgrade");
    assert!(
        posted["uri"]
            .as_str()
            .unwrap()
            .contains("app.bsky.feed.post")
    );
    checked
        .session(grant.clone())
        .check_scope(
            "com.atproto.repo.createRecord",
            Some(&record("app.bsky.feed.post", &alice.did)),
            None,
        )
        .await
        .expect("the pre-check reads the new scope");

    // The app session is untouched and still leads to this grant.
    let loaded = sessions.load(app.token.expose()).await.unwrap();
    assert_eq!(loaded.grant_id.as_ref(), Some(&grant));

    // The earlier refresh token is refused by the PDS; the current one works.
    let e = client.refresh(&before).await.unwrap_err();
    assert!(e.is_invalid_grant(), "{e:?}");
    let current = getter.get(&grant, Refresh::AcceptStale).await.unwrap();
    client
        .refresh(&current)
        .await
        .expect("the new refresh token works");
}

#[tokio::test]
async fn an_upgrade_answered_by_another_account_touches_nothing() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let bob = peer.account("bob.test").clone();
    let store = MemoryStore::new();
    let client = client(&peer, store.clone());
    let getter = SessionGetter::new(client.clone(), GetterConfig::default());
    let mut events = getter.subscribe();

    let url = client
        .authorize(
            "alice.test",
            AuthorizeOptions {
                scope: Some(format!("atproto {NOTE}")),
                ..AuthorizeOptions::default()
            },
        )
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .unwrap();
    let login = getter.callback(&query_of(&redirect)).await.unwrap();
    let grant = login.grant.grant_id.clone();
    let stored_before = store.load_grant(&grant).await.unwrap().unwrap();

    // The upgrade of alice's grant, but bob signs in.
    let url = client
        .authorize_upgrade(
            &grant,
            POST,
            AuthorizeOptions {
                login_hint: Some(bob.handle.clone()),
                ..AuthorizeOptions::default()
            },
        )
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &bob.handle, &bob.password)
        .await
        .expect("bob signs in");
    let e = getter.callback(&query_of(&redirect)).await.unwrap_err();
    match e {
        OAuthError::Callback(CallbackError::UpgradeAccountMismatch { expected, found }) => {
            assert_eq!(expected.as_str(), alice.did);
            assert_eq!(found.as_str(), bob.did);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Alice's grant is exactly as it was; nothing is stored for bob; no event.
    assert_eq!(
        store.load_grant(&grant).await.unwrap().unwrap(),
        stored_before
    );
    assert!(
        store
            .list_grants_by_did(&Did::new(&bob.did).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(events.try_recv().is_err());
    // Alice's tokens still work.
    let me: Value = getter
        .session(grant.clone())
        .xrpc_query("com.atproto.server.getSession", &[])
        .await
        .unwrap();
    assert_eq!(me["did"], alice.did.as_str());
}
