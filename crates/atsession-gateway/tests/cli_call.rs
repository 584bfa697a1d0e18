//! `atsession call` against the official PDS: after `atsession login`, a query with params,
//! a procedure with a JSON body, and a call after the access token expired (the stored grant
//! is refreshed: its version goes up).
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test cli_call`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use atsession::store::oauth::GrantStore;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn common(cmd: &mut Command, peer: &pds::Peer, db: &Path) {
    cmd.arg("--dev")
        .arg("--plc-url")
        .arg(peer.plc_url())
        .arg("--handle-resolver")
        .arg(peer.handle_resolver_url())
        .arg("--db")
        .arg(db);
}

async fn call(peer: &pds::Peer, db: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::from(bin::atsession());
    cmd.arg("call").args(args);
    common(&mut cmd, peer, db);
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "call {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn login_then_call() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    // Short access tokens, so that the last call needs a refresh.
    peer.set_token_max_age(Duration::from_secs(15))
        .await
        .unwrap();
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let mut cmd = Command::from(bin::atsession());
    cmd.args(["login", "alice.test", "--wait-secs", "60"]);
    common(&mut cmd, &peer, &db);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line = line.trim();
            if line.starts_with("http") && line.contains("/oauth/authorize?") {
                return line.to_owned();
            }
        }
        panic!("the login command printed no authorization URL");
    })
    .await
    .expect("authorization URL in time");
    let redirect = peer
        .sign_in_and_consent(&url, &alice.handle, &alice.password)
        .await
        .expect("sign-in and consent");
    let page = peer.http().get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();

    // A query.
    let v = call(&peer, &db, &["com.atproto.server.getSession"]).await;
    assert_eq!(v["did"], alice.did.as_str());
    // A query with params.
    let v = call(
        &peer,
        &db,
        &[
            "com.atproto.repo.describeRepo",
            "--param",
            &format!("repo={}", alice.did),
        ],
    )
    .await;
    assert_eq!(v["handle"], "alice.test");
    // A procedure with a JSON body.
    let body = serde_json::json!({
        "repo": alice.did,
        "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "hello from atsession call", "createdAt": "2026-01-01T00:00:00Z"}
    });
    let v = call(
        &peer,
        &db,
        &["com.atproto.repo.createRecord", "--body", &body.to_string()],
    )
    .await;
    assert!(v["uri"].as_str().unwrap().starts_with("at://"), "{v}");

    // After the access token expired: refreshed, and the call still succeeds.
    let left = Duration::from_secs(16).saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    // With --verbose: says which grant, that it was refreshed, and shows no token.
    let mut cmd = Command::from(bin::atsession());
    cmd.args(["--verbose", "call", "com.atproto.server.getSession"])
        .env_remove("ATSESSION_LOG");
    common(&mut cmd, &peer, &db);
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["did"], alice.did.as_str());
    assert!(stderr.contains("grant loaded"), "{stderr}");
    assert!(stderr.contains("grant refreshed"), "{stderr}");
    assert!(
        !stderr.contains("eyJ"),
        "no JWT in the verbose output: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours into a pipe: {stderr:?}"
    );
    let store = atsession::store::sqlite::SqliteStore::open(&db)
        .await
        .unwrap();
    let did = atsession::syntax::Did::new(&alice.did).unwrap();
    let grants = store.list_grants_by_did(&did).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert!(grants[0].version >= 2, "the grant was refreshed");

    // A bad NSID is refused before any request.
    let mut cmd = Command::from(bin::atsession());
    cmd.args(["call", "not-an-nsid"]);
    common(&mut cmd, &peer, &db);
    let out = cmd.output().await.unwrap();
    assert!(!out.status.success());
}

/// A body that is not JSON, a body beside `--param`, or one given with `--json` (which
/// `call` does not take) is refused before the store is opened or anything is sent, and the
/// message names the option to use; no PDS is needed.
#[tokio::test]
async fn bad_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    for (args, expected) in [
        (&["--body", "{not json"][..], "--body is not JSON"),
        (
            &["--body", "{}", "--param", "a=b"][..],
            "the argument '--body <JSON>' cannot be used with '--param <KEY=VALUE>'",
        ),
        (
            &["--json", "{}"][..],
            "tip: a procedure call's JSON body is `--body JSON`",
        ),
    ] {
        let out = Command::from(bin::atsession())
            .args(["call", "com.atproto.repo.createRecord"])
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!db.exists(), "{args:?} created the store");
    }
}
