//! Every file a command reads is bounded: `/dev/zero` given as a key, password or client-keys
//! file is refused at once with an error naming it.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::process::Stdio;
use std::time::{Duration, Instant};

fn run_refused(args: &[&str], dir: &std::path::Path) -> String {
    let mut child = bin::atsession()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("{args:?} is still reading");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dev_zero_is_refused_quickly_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 3] = [
        &["seal", "--password-file", "/dev/zero"],
        &["login", "alice.test", "--key-file", "/dev/zero"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "https://gw.example/",
            "--client-keys",
            "/dev/zero",
        ],
    ];
    for args in cases {
        let stderr = run_refused(args, dir.path());
        assert!(stderr.contains("/dev/zero"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("longer than 65536 bytes"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("at-rest.key");
    std::fs::write(&key, "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = run_refused(
        &["login", "alice.test", "--key-file", key.to_str().unwrap()],
        dir.path(),
    );
    assert!(stderr.contains("permissions 0644"), "{stderr}");
    assert!(stderr.contains("at-rest.key"), "{stderr}");
    // The failed login left only the key file that was there.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
