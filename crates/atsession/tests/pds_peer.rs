//! The e2e peer on its own: the official PDS and its PLC directory answer as the
//! OAuth tests expect. Run with the peer up:
//! `bash e2e/pds/setup.sh && bash e2e/pds/up.sh /tmp/pds.json &&
//!  ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession --test pds_peer`.

#[path = "support/pds.rs"]
mod pds;

use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn protected_resource_names_the_issuer() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    assert!(
        peer.issuer().starts_with("http://localhost:"),
        "{}",
        peer.issuer()
    );
    let prm = peer
        .get_json(&format!(
            "{}/.well-known/oauth-protected-resource",
            peer.pds_url()
        ))
        .await
        .expect("protected-resource metadata");
    assert_eq!(prm["resource"], peer.pds_url());
    assert_eq!(strings(&prm["authorization_servers"]), [peer.issuer()]);
}

#[tokio::test]
async fn authorization_server_metadata_has_what_the_client_needs() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let issuer = peer.issuer();
    let m = peer
        .get_json(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .expect("authorization-server metadata");
    assert_eq!(m["issuer"], issuer);
    assert_eq!(m["require_pushed_authorization_requests"], true);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert!(strings(&m["dpop_signing_alg_values_supported"]).contains(&"ES256"));
    let methods = strings(&m["token_endpoint_auth_methods_supported"]);
    assert!(methods.contains(&"none"), "{methods:?}");
    assert!(methods.contains(&"private_key_jwt"), "{methods:?}");
    assert!(strings(&m["token_endpoint_auth_signing_alg_values_supported"]).contains(&"ES256"));
    assert!(strings(&m["code_challenge_methods_supported"]).contains(&"S256"));
    assert!(strings(&m["scopes_supported"]).contains(&"atproto"));
    for (key, path) in [
        ("pushed_authorization_request_endpoint", "/oauth/par"),
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        assert_eq!(m[key], format!("{issuer}{path}"), "{key}");
    }
}

#[tokio::test]
async fn handles_resolve_and_plc_documents_point_back() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    assert!(peer.accounts().len() >= 2);
    for handle in ["alice.test", "bob.test"] {
        let account = peer.account(handle);
        assert!(account.did.starts_with("did:plc:"), "{}", account.did);
        let did = peer.resolve_handle(handle).await.expect("resolveHandle");
        assert_eq!(did, account.did);

        let doc = peer
            .get_json(&format!("{}/{did}", peer.plc_url()))
            .await
            .expect("DID document from the PLC directory");
        assert_eq!(doc["id"], did);
        assert!(strings(&doc["alsoKnownAs"]).contains(&format!("at://{handle}").as_str()));
        let services = doc["service"].as_array().expect("service array");
        let pds_service = services
            .iter()
            .find(|s| {
                s["id"]
                    .as_str()
                    .is_some_and(|id| id == "#atproto_pds" || id == format!("{did}#atproto_pds"))
            })
            .expect("an #atproto_pds service");
        assert_eq!(pds_service["type"], "AtprotoPersonalDataServer");
        assert_eq!(pds_service["serviceEndpoint"], peer.pds_url());
    }
    assert_ne!(peer.account("alice.test").did, peer.account("bob.test").did);
    assert!(peer.resolve_handle("nobody.test").await.is_err());
}

#[tokio::test]
async fn unknown_request_uri_is_refused_on_the_authorization_page() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let url = format!(
        "{}/oauth/authorize?client_id={}&request_uri={}",
        peer.issuer(),
        "http%3A%2F%2Flocalhost",
        "urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Areq-0000000000000000"
    );
    let err = peer
        .sign_in_and_consent(&url, "alice.test", "alice-password-e2e")
        .await
        .expect_err("no PAR was made for this request_uri");
    assert!(
        matches!(err, pds::PeerError::Status { status, .. } if status.is_client_error()),
        "{err}"
    );
}

#[tokio::test]
async fn admin_endpoint_registers_and_forgets_clients() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let client_id = "https://client.example.com/pds-peer-test/client-metadata.json";
    peer.register_client(client_id, &json!({ "client_id": client_id }))
        .await
        .expect("register");
    assert!(peer.unregister_client(client_id).await.expect("unregister"));
    assert!(
        !peer
            .unregister_client(client_id)
            .await
            .expect("unregister again")
    );
    // Not an https client id: refused by the harness.
    assert!(
        peer.register_client("http://localhost/x", &json!({}))
            .await
            .is_err()
    );
}

const REDIRECT_URI: &str = "http://127.0.0.1:8917/callback";
// RFC 7636 appendix B: the S256 challenge of a known verifier.
const CODE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn loopback_client_id() -> String {
    let url = reqwest::Url::parse_with_params(
        "http://localhost",
        [("redirect_uri", REDIRECT_URI), ("scope", "atproto")],
    )
    .expect("static URL");
    url.to_string()
}

/// A PAR without DPoP (the provider binds the grant to a DPoP key at the token
/// endpoint): enough to exercise the user's step. Returns (status, body).
async fn par(peer: &pds::Peer, params: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
    let form = reqwest::Url::parse_with_params("http://form.invalid", params)
        .expect("form encoding")
        .query()
        .unwrap_or_default()
        .to_owned();
    let res = peer
        .http()
        .post(format!("{}/oauth/par", peer.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("PAR request");
    let status = res.status();
    let body = res.json::<Value>().await.expect("PAR answers JSON");
    (status, body)
}

/// PAR for the loopback client; returns the authorization URL.
async fn loopback_authorization_url(peer: &pds::Peer, state: &str, login_hint: &str) -> String {
    let client_id = loopback_client_id();
    let (status, body) = par(
        peer,
        &[
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT_URI),
            ("response_type", "code"),
            ("scope", "atproto"),
            ("state", state),
            ("code_challenge", CODE_CHALLENGE),
            ("code_challenge_method", "S256"),
            ("login_hint", login_hint),
        ],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let request_uri = body["request_uri"].as_str().expect("request_uri");
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    reqwest::Url::parse_with_params(
        &format!("{}/oauth/authorize", peer.issuer()),
        [
            ("client_id", client_id.as_str()),
            ("request_uri", request_uri),
        ],
    )
    .expect("authorization URL")
    .to_string()
}

#[tokio::test]
async fn sign_in_and_consent_returns_a_code_to_the_redirect_uri() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test");
    let url = loopback_authorization_url(&peer, "state-consent", &alice.handle).await;
    let redirect = peer
        .sign_in_and_consent(&url, &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    assert!(redirect.starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(
        pds::query_param(&redirect, "state").as_deref(),
        Some("state-consent")
    );
    assert_eq!(
        pds::query_param(&redirect, "iss").as_deref(),
        Some(peer.issuer())
    );
    let code = pds::query_param(&redirect, "code").expect("a code");
    assert!(code.len() > 16, "{code}");
    assert_eq!(pds::query_param(&redirect, "error"), None);

    // The request is used up: the same authorization URL cannot be consented twice.
    assert!(
        peer.sign_in_and_consent(&url, &alice.handle, &alice.password)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sign_in_and_reject_returns_access_denied() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let bob = peer.account("bob.test");
    let url = loopback_authorization_url(&peer, "state-reject", &bob.handle).await;
    let redirect = peer
        .sign_in_and_reject(&url, &bob.handle, &bob.password)
        .await
        .expect("sign-in and reject");
    assert!(redirect.starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(
        pds::query_param(&redirect, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        pds::query_param(&redirect, "state").as_deref(),
        Some("state-reject")
    );
    assert_eq!(
        pds::query_param(&redirect, "iss").as_deref(),
        Some(peer.issuer())
    );
    assert_eq!(pds::query_param(&redirect, "code"), None);
}

#[tokio::test]
async fn wrong_password_is_refused_at_sign_in() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test");
    let url = loopback_authorization_url(&peer, "state-bad-password", &alice.handle).await;
    let err = peer
        .sign_in_and_consent(&url, &alice.handle, "not-the-password")
        .await
        .expect_err("a wrong password");
    assert!(
        matches!(&err, pds::PeerError::Status { step: "sign-in", status, .. } if status.is_client_error()),
        "{err}"
    );
}

/// The harness serves a registered confidential client's metadata, and the provider
/// still validates it: a valid document gets as far as checking the client assertion,
/// an invalid one is refused as client metadata, an unregistered one cannot be fetched.
#[tokio::test]
async fn registered_confidential_client_metadata_is_validated_by_the_provider() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let client_id = "https://client.example.com/pds-peer-validation/client-metadata.json";
    let redirect_uri = "https://client.example.com/callback";
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    });
    let metadata = |keys: Value| {
        json!({
            "client_id": client_id,
            "client_uri": "https://client.example.com",
            "redirect_uris": [redirect_uri],
            "scope": "atproto",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "application_type": "web",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "dpop_bound_access_tokens": true,
            "jwks": { "keys": keys },
        })
    };
    let params = [
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("response_type", "code"),
        ("scope", "atproto"),
        ("state", "s"),
        ("code_challenge", CODE_CHALLENGE),
        ("code_challenge_method", "S256"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        (
            "client_assertion",
            "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJ4In0.AAAA",
        ),
    ];

    let _ = peer.unregister_client(client_id).await;
    let (status, body) = par(&peer, &params).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");

    peer.register_client(client_id, &metadata(json!([jwk])))
        .await
        .expect("register a valid document");
    let (status, body) = par(&peer, &params).await;
    assert!(status.is_client_error(), "{status} {body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("client_assertion")),
        "{body}"
    );

    peer.register_client(client_id, &metadata(json!([])))
        .await
        .expect("register a document without keys");
    let (status, body) = par(&peer, &params).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_client_metadata", "{body}");

    assert!(peer.unregister_client(client_id).await.expect("unregister"));
}

#[tokio::test]
async fn token_max_age_can_be_read_and_set_through_the_harness() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let configured = std::time::Duration::from_millis(peer.info().token_max_age_ms);
    assert!(!configured.is_zero());
    // Setting the value the peer started with: other tests sharing the peer see no change.
    // A peer reused from an earlier run that stopped before putting its value back (a
    // refresh test killed midway) is put back here, so the first answer may differ.
    let live = peer
        .set_token_max_age(configured)
        .await
        .expect("set token max age");
    if live != configured {
        eprintln!("the peer's token max age was {live:?}, not {configured:?}: put back");
    }
    let previous = peer
        .set_token_max_age(configured)
        .await
        .expect("set token max age");
    assert_eq!(previous, configured, "the value set is the value read back");
}
