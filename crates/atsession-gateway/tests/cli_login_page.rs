//! The page `atsession login` shows the browser: a stray request or another login's callback
//! does not end the wait, and success is shown only once the grant is stored. Against the
//! official PDS.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test cli_login_page`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn stray_requests_do_not_end_the_login() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let mut child = Command::from(bin::atsession())
        .args(["login", "alice.test", "--wait-secs", "60"])
        .env("ATSESSION_DEV", "1")
        .env("ATSESSION_PLC_URL", peer.plc_url())
        .env("ATSESSION_HANDLE_RESOLVER", peer.handle_resolver_url())
        .env("ATSESSION_DB", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = out.next_line().await.unwrap() {
            let line = line.trim();
            if line.contains("/oauth/authorize?") {
                return line.to_owned();
            }
        }
        panic!("no authorization URL");
    })
    .await
    .unwrap();
    let callback = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = err.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("waiting for the redirect on ") {
                return rest.trim_end_matches(" …").to_owned();
            }
        }
        panic!("no waiting line");
    })
    .await
    .unwrap();
    let origin = callback.trim_end_matches("/callback");

    // A stray request and another login's callback: answered, and the wait goes on.
    let stray = peer
        .http()
        .get(format!("{origin}/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 404);
    let other = peer
        .http()
        .get(format!(
            "{callback}?state=someone-else&code=x&iss=https%3A%2F%2Fx.example"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let body = other.text().await.unwrap();
    assert!(body.contains("not the login"), "{body}");
    assert!(!body.contains("Login complete"), "{body}");
    assert!(child.try_wait().unwrap().is_none(), "the login ended early");

    // The real callback: the page says so once the grant is stored.
    let redirect = peer
        .sign_in_and_consent(&url, &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let page = peer.http().get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Login complete"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let store = atsession::store::sqlite::SqliteStore::open_read_only(&db)
        .await
        .unwrap();
    let did = atsession::syntax::Did::new(alice.did.as_str()).unwrap();
    let grants = atsession::store::oauth::GrantStore::list_grants_by_did(&store, &did)
        .await
        .unwrap();
    assert_eq!(grants.len(), 1);
}
