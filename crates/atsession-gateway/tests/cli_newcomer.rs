//! What a newcomer meets at the command line: every option from the environment too, the
//! error for an http address naming `--dev`, no colours into a pipe, and a failing command
//! leaves no database and no key file behind.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::path::Path;
use std::process::Output;

fn atsession(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin::atsession();
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn an_http_address_without_dev_names_dev_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = atsession(
        dir.path(),
        &["login", "http://127.0.0.1:9/", "--wait-secs", "5"],
        &[("ATSESSION_LOG", "debug")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--dev"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI colours into a pipe: {stderr:?}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_failed_login_removes_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    // --dev from the environment: the address is allowed, nothing answers there.
    let out = atsession(
        dir.path(),
        &["login", "http://127.0.0.1:9/", "--wait-secs", "5"],
        &[("ATSESSION_DEV", "true"), ("ATSESSION_DB", "from-env.db")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("--dev"), "{stderr}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn logout_takes_the_database_from_the_environment_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = atsession(
        dir.path(),
        &["logout", "--did", "did:plc:abc"],
        &[("ATSESSION_DB", "elsewhere.db")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("elsewhere.db"), "{stderr}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn help_names_the_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = atsession(dir.path(), &["login", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "ATSESSION_DB",
        "ATSESSION_KEY_FILE",
        "ATSESSION_PLC_URL",
        "ATSESSION_HANDLE_RESOLVER",
        "ATSESSION_DEV",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

#[test]
fn serve_takes_the_same_options_from_the_same_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = atsession(dir.path(), &["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "ATSESSION_DB",
        "ATSESSION_KEY_FILE",
        "ATSESSION_PLC_URL",
        "ATSESSION_HANDLE_RESOLVER",
        "ATSESSION_DEV",
        "ATSESSION_CLEANUP_INTERVAL",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

#[test]
fn call_without_a_database_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = atsession(
        dir.path(),
        &[
            "call",
            "com.atproto.server.getSession",
            "--did",
            "did:plc:abc",
        ],
        &[("ATSESSION_DB", "nowhere.db")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nowhere.db"), "{stderr}");
    assert!(stderr.contains("atsession login"), "{stderr}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[tokio::test]
async fn a_failed_call_removes_the_key_file_it_made() {
    let dir = tempfile::tempdir().unwrap();
    // A database with no grant and no key file yet.
    drop(
        atsession::store::sqlite::SqliteStore::open(dir.path().join("app.db"))
            .await
            .unwrap(),
    );
    let before = entries(dir.path());
    assert!(before.iter().any(|f| f == "app.db"), "{before:?}");
    assert!(!before.iter().any(|f| f == "app.db.key"), "{before:?}");
    let out = atsession(
        dir.path(),
        &[
            "call",
            "com.atproto.server.getSession",
            "--did",
            "did:plc:abc",
            "--db",
            "app.db",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no OAuth grant stored"), "{stderr}");
    let after = entries(dir.path());
    assert!(!after.iter().any(|f| f == "app.db.key"), "{after:?}");
}

#[test]
fn help_names_variables_but_never_shows_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "postgres://atsession:s3cret-in-env@127.0.0.1/atsession";
    for args in [
        &["serve", "--help"][..],
        &["sessions", "list", "--help"],
        &["call", "--help"],
    ] {
        let out = atsession(dir.path(), args, &[("ATSESSION_DB", secret)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout.contains("[env: ATSESSION_DB"), "{args:?}: {stdout}");
        assert!(
            !stdout.contains("s3cret"),
            "{args:?} shows the value: {stdout}"
        );
    }
}
