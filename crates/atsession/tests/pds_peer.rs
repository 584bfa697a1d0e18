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
