//! `atsession serve` refuses a configuration that cannot work before it creates anything.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_huge_access_token_ttl_is_a_clear_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let mut child = bin::atsession()
        .args(["serve", "--listen", "127.0.0.1:0", "--dev"])
        .args(["--access-token-ttl", "9999999999999", "--db"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit on its own; a server that starts listening has accepted the value.
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("serve started with an access-token lifetime of 317,000 years");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("access-token lifetime is longer than the maximum"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "created {left:?}");
}
