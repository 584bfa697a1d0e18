//! `atsession seal` and `atsession unseal`, run as a user would.

#[path = "support/bin.rs"]
mod bin;

use std::io::Write as _;
use std::process::{Output, Stdio};

const PW: &str = "some_not_random_password_that_is_at_least_32_characters";

fn run(args: &[&str], password: Option<&str>, stdin: &str) -> Output {
    let mut cmd = bin::atsession();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("ATSESSION_SEAL_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("the binary finishes")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

fn failure(o: &Output) -> String {
    assert!(!o.status.success(), "unexpected success");
    assert!(o.stdout.is_empty(), "nothing on stdout on failure");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains(PW), "the password leaked: {err}");
    err
}

#[test]
fn seal_then_unseal() {
    let sealed = stdout(&run(&["seal"], Some(PW), r#"{"did":"did:plc:abc","n":1}"#));
    let sealed = sealed.trim();
    assert!(sealed.starts_with("Fe26.2**"), "{sealed}");
    assert_eq!(sealed.split('*').nth(5), Some(""), "no TTL: no expiry");
    let json = stdout(&run(&["unseal"], Some(PW), sealed));
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON out");
    assert_eq!(v, serde_json::json!({"did": "did:plc:abc", "n": 1}));
}

#[test]
fn ttl_password_id_and_iron_session_form() {
    let sealed = stdout(&run(
        &[
            "seal",
            "--ttl",
            "2h",
            "--password-id",
            "7",
            "--iron-session",
        ],
        Some(PW),
        "[1,2,3]",
    ));
    let sealed = sealed.trim();
    assert!(
        sealed.starts_with("Fe26.2*7*") && sealed.ends_with("~2"),
        "{sealed}"
    );
    let exp: u128 = sealed
        .split('*')
        .nth(5)
        .expect("field")
        .parse()
        .expect("ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    assert!(
        exp > now + 7_100_000 && exp <= now + 7_200_000,
        "{exp} vs {now}"
    );

    // Pasted as a cookie, suffix and attributes included.
    let cookie = format!("sid={sealed}; Path=/; HttpOnly");
    let out = stdout(&run(&["unseal", "--password-id", "7"], Some(PW), &cookie));
    assert_eq!(out.trim(), "[1,2,3]");
    // Another id is refused; no id accepts any.
    let err = failure(&run(&["unseal", "--password-id", "8"], Some(PW), sealed));
    assert!(err.contains("no password with id \"7\""), "{err}");
    assert_eq!(
        stdout(&run(&["unseal"], Some(PW), sealed)).trim(),
        "[1,2,3]"
    );
}

#[test]
fn password_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("pw");
    std::fs::write(&path, format!("{PW}\n")).expect("write");
    let p = path.to_str().expect("UTF-8 path");
    let sealed = stdout(&run(&["seal", "--password-file", p], None, "true"));
    assert_eq!(
        stdout(&run(&["unseal"], Some(PW), sealed.trim())).trim(),
        "true"
    );
    let err = failure(&run(
        &["seal", "--password-file", "/nonexistent/pw"],
        None,
        "1",
    ));
    assert!(err.contains("cannot read the password file"), "{err}");
}

#[test]
fn node_seal_opens() {
    // Sealed by @hapi/iron 7.0.1 with {id: 'k1', secret: PW}.
    let sealed = include_str!("../../atsession/src/seal/testdata/hapi_k1.txt");
    let out = stdout(&run(&["unseal", "--password-id", "k1"], Some(PW), sealed));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["c"], serde_json::json!([3, 4, 5]));
}

#[test]
fn errors_are_clear_and_non_zero() {
    let err = failure(&run(&["seal"], None, "{}"));
    assert!(err.contains("ATSESSION_SEAL_PASSWORD"), "{err}");
    let err = failure(&run(&["seal"], Some("short"), "{}"));
    assert!(err.contains("32 characters"), "{err}");
    let err = failure(&run(&["seal"], Some(PW), "{not json"));
    assert!(err.contains("not JSON"), "{err}");

    let sealed = stdout(&run(&["seal"], Some(PW), "{}"));
    let other = "a_different_password_of_at_least_32_chars";
    let err = failure(&run(&["unseal"], Some(other), sealed.trim()));
    assert!(err.contains("hmac does not match"), "{err}");
    let err = failure(&run(&["unseal"], Some(PW), "Fe26.2*garbage"));
    assert!(err.contains("2 fields"), "{err}");
    let err = failure(&run(&["unseal"], Some(PW), ""));
    assert!(err.contains("empty"), "{err}");
    let junk = "A".repeat(1 << 20);
    let err = failure(&run(&["unseal"], Some(PW), &junk));
    assert!(err.contains("limit"), "{err}");
}
