//! `atsession call` with large bodies against the official PDS: a 50 MB file uploaded with
//! `--input` and read back with `--output`, byte for byte, each in a process whose peak
//! resident memory (`/usr/bin/time -v`) stays within 16 MB of a small call's; an upload
//! from standard input; `getRepo` to a file; the server's message in the error output.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test cli_call_stream` (needs `/usr/bin/time`, Debian
//! package `time`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

const TIME: &str = "/usr/bin/time";
const LEN: usize = 50 * 1024 * 1024;

fn atsession(timed: bool) -> Command {
    let mut cmd = if timed {
        let mut c = Command::new(TIME);
        c.arg("-v").arg(bin::ATSESSION);
        for var in bin::inherited() {
            c.env_remove(var);
        }
        c
    } else {
        Command::from(bin::atsession())
    };
    cmd.kill_on_drop(true);
    cmd
}

fn common(cmd: &mut Command, peer: &pds::Peer, db: &Path) {
    cmd.arg("--dev")
        .arg("--plc-url")
        .arg(peer.plc_url())
        .arg("--handle-resolver")
        .arg(peer.handle_resolver_url())
        .arg("--db")
        .arg(db);
}

/// `atsession call <args>`, under `/usr/bin/time -v` when `timed`.
async fn call(peer: &pds::Peer, db: &Path, args: &[&str], timed: bool) -> Output {
    let mut cmd = atsession(timed);
    cmd.arg("call").args(args);
    common(&mut cmd, peer, db);
    cmd.output().await.unwrap()
}

fn ok_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "call failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The peak resident set size `/usr/bin/time -v` reported, in KiB.
fn max_rss_kib(out: &Output) -> u64 {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {stderr}"))
}

fn sha256_file(path: &Path) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    hash.finalize().into()
}

async fn login(peer: &pds::Peer, db: &Path, handle: &str) {
    let account = peer.account(handle).clone();
    let mut cmd = atsession(false);
    cmd.args(["login", handle, "--wait-secs", "60"]);
    common(&mut cmd, peer, db);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
        .sign_in_and_consent(&url, &account.handle, &account.password)
        .await
        .expect("sign-in and consent");
    let page = peer.http().get(&redirect).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_in_bounded_memory() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    assert!(
        Path::new(TIME).exists(),
        "{TIME} is missing: apt-get install -y time"
    );
    let did = peer.account("carol.test").did.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    login(&peer, &db, "carol.test").await;

    // A small call: the baseline peak RSS of the process.
    let small = call(&peer, &db, &["com.atproto.server.getSession"], true).await;
    assert_eq!(ok_json(&small)["did"], did.as_str());
    let baseline = max_rss_kib(&small);

    // 50 MB of varied bytes.
    let input = dir.path().join("in.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let mut x: u32 = 12345;
        let mut piece = vec![0u8; 1 << 20];
        for _ in 0..LEN / piece.len() {
            for b in &mut piece {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            f.write_all(&piece).unwrap();
        }
        f.flush().unwrap();
    }
    let up = call(
        &peer,
        &db,
        &[
            "com.atproto.repo.uploadBlob",
            "--input",
            input.to_str().unwrap(),
            "--content-type",
            "application/octet-stream",
        ],
        true,
    )
    .await;
    let blob = ok_json(&up)["blob"].clone();
    assert_eq!(blob["size"], LEN);
    assert_eq!(blob["mimeType"], "application/octet-stream");
    let up_rss = max_rss_kib(&up);
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    let record = serde_json::json!({
        "repo": did,
        "collection": "com.example.media",
        "record": {"$type": "com.example.media", "file": blob},
    });
    ok_json(
        &call(
            &peer,
            &db,
            &[
                "com.atproto.repo.createRecord",
                "--body",
                &record.to_string(),
            ],
            false,
        )
        .await,
    );

    // Back down to a file (named by the environment variable this time).
    let output = dir.path().join("out.bin");
    let mut cmd = atsession(true);
    cmd.args([
        "call",
        "com.atproto.sync.getBlob",
        "--param",
        &format!("did={did}"),
        "--param",
        &format!("cid={cid}"),
    ])
    .env("ATSESSION_CALL_OUTPUT", &output);
    common(&mut cmd, &peer, &db);
    let down = cmd.output().await.unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(down.stdout.is_empty(), "the blob went to the file");
    let down_rss = max_rss_kib(&down);
    assert_eq!(std::fs::metadata(&output).unwrap().len(), LEN as u64);
    assert_eq!(sha256_file(&output), sha256_file(&input), "byte-identical");

    // Peak memory: the 50 MB transfers cost a few MB over a small call.
    eprintln!("peak RSS: getSession {baseline} KiB, upload {up_rss} KiB, download {down_rss} KiB");
    assert!(
        up_rss < baseline + 16 * 1024,
        "upload {up_rss} KiB vs {baseline} KiB"
    );
    assert!(
        down_rss < baseline + 16 * 1024,
        "download {down_rss} KiB vs {baseline} KiB"
    );
}

#[tokio::test]
async fn stdin_uploads_get_repo_to_a_file_and_server_messages() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let did = peer.account("alice.test").did.clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    login(&peer, &db, "alice.test").await;

    // From standard input (length unknown: sent chunked).
    let mut cmd = atsession(false);
    cmd.args([
        "call",
        "com.atproto.repo.uploadBlob",
        "--input",
        "-",
        "--content-type",
        "text/plain",
    ]);
    common(&mut cmd, &peer, &db);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = "hello from standard input\n".repeat(10_000);
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let v = ok_json(&out);
    assert_eq!(v["blob"]["size"], text.len());
    assert_eq!(v["blob"]["mimeType"], "text/plain");

    // getRepo, a CAR file, to a file.
    let car = dir.path().join("repo.car");
    let out = call(
        &peer,
        &db,
        &[
            "com.atproto.sync.getRepo",
            "--param",
            &format!("did={did}"),
            "--output",
            car.to_str().unwrap(),
        ],
        false,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&car).unwrap();
    assert!(bytes.len() > 100);
    assert!(
        bytes[..bytes.len().min(120)]
            .windows(5)
            .any(|w| w == b"roots")
    );

    // An error answer: the XRPC error name and the server's message, no token.
    let out = call(&peer, &db, &["com.atproto.repo.listRecords"], false).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 400: InvalidRequest"), "{stderr}");
    assert!(stderr.contains("repo"), "the server's message: {stderr}");
    assert!(!stderr.to_ascii_lowercase().contains("dpop "), "{stderr}");
}
