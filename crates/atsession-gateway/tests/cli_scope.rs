//! `atsession login --scope …` and `atsession call` against the official PDS: a login
//! asking only for `repo:com.example.note?action=create` may create notes; a post is
//! refused and `call` says which scope is missing; an invalid `--scope` is refused before
//! anything is sent, naming what is wrong.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test cli_scope`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SCOPE: &str = "atproto repo:com.example.note?action=create";

fn common(cmd: &mut Command, peer: &pds::Peer, db: &Path) {
    cmd.arg("--dev")
        .arg("--plc-url")
        .arg(peer.plc_url())
        .arg("--handle-resolver")
        .arg(peer.handle_resolver_url())
        .arg("--db")
        .arg(db);
}

fn record(collection: &str, did: &str) -> String {
    serde_json::json!({
        "repo": did,
        "collection": collection,
        "record": {"$type": collection, "text": "hi", "createdAt": "2026-12-01T00:00:00Z"}
    })
    .to_string()
}

#[tokio::test]
async fn login_with_a_scope_then_calls_inside_and_outside_it() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");

    let mut cmd = Command::from(bin::atsession());
    cmd.args(["login", "alice.test", "--wait-secs", "60", "--scope", SCOPE]);
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
    assert_eq!(
        peer.http().get(&redirect).send().await.unwrap().status(),
        200
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(status.success(), "{rest}");
    assert!(
        rest.contains("com.example.note"),
        "the granted scope is shown: {rest}"
    );
    assert!(!rest.contains("did not grant"), "{rest}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cli.db.scope")).unwrap(),
        SCOPE
    );

    // Inside the scope (and with the client the login remembered).
    let mut cmd = Command::from(bin::atsession());
    cmd.args([
        "call",
        "com.atproto.repo.createRecord",
        "--body",
        &record("com.example.note", &alice.did),
    ]);
    common(&mut cmd, &peer, &db);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Outside it: refused, and the missing scope is named.
    let mut cmd = Command::from(bin::atsession());
    cmd.args([
        "call",
        "com.atproto.repo.createRecord",
        "--body",
        &record("app.bsky.feed.post", &alice.did),
    ]);
    common(&mut cmd, &peer, &db);
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the grant lacks the scope `repo:app.bsky.feed.post?action=create`"),
        "{stderr}"
    );

    // Logout authenticates as the same client and revokes.
    let mut cmd = Command::from(bin::atsession());
    cmd.arg("logout");
    common(&mut cmd, &peer, &db);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_invalid_scope_is_refused_in_words_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    // No server is needed: nothing is sent (the handle would not even resolve).
    let out = Command::from(bin::atsession())
        .args([
            "login",
            "nobody.invalid",
            "--db",
            db.to_str().unwrap(),
            "--scope",
            "atproto repo:app.bsky.*",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("partial wildcard `app.bsky.*`"), "{stderr}");
    assert!(!db.exists(), "nothing was created");
    assert!(!dir.path().join("cli.db.scope").exists());
}
