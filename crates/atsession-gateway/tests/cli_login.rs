//! `atsession login` and `atsession logout` against the official PDS: the binary prints
//! the authorization URL, the user's step is done with four HTTP calls, the browser's
//! redirect is sent to the binary's loopback listener, and the grant lands in SQLite;
//! logout revokes it.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test cli_login`
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
async fn login_then_logout() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let common = |cmd: &mut Command| {
        cmd.arg("--dev")
            .arg("--plc-url")
            .arg(peer.plc_url())
            .arg("--handle-resolver")
            .arg(peer.handle_resolver_url())
            .arg("--db")
            .arg(&db);
    };
    let mut cmd = Command::from(bin::atsession());
    cmd.args(["login", "alice.test", "--wait-secs", "60"]);
    common(&mut cmd);
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
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    // The browser follows the redirect to the command's loopback listener.
    let page = peer.http().get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Login complete"));

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(status.success(), "login failed: {rest}");
    assert!(
        rest.contains(&format!("Logged in as {}", alice.did)),
        "{rest}"
    );
    // The key file was created next to the database, private to the user.
    let key = dir.path().join("cli.db.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
            0
        );
    }

    let mut cmd = Command::from(bin::atsession());
    cmd.arg("logout");
    common(&mut cmd);
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "logout failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 grant(s) deleted"), "{stdout}");
    // Nothing left to log out.
    let mut cmd = Command::from(bin::atsession());
    cmd.args(["logout", "--did", &alice.did]);
    common(&mut cmd);
    let out = cmd.output().await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("No OAuth grant stored"));
}
