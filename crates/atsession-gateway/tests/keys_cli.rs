//! The at-rest keys through the binary: `serve` refuses keys that cannot open the stored
//! grants, and `keys rotate` re-seals every grant, across a kill in the middle.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::key_rotation::{ResealOptions, doc_grant, key_usage, reseal_grants};
use atsession::store::sqlite::SqliteStore;

fn write_key_file(path: &Path, ring: &AtRestKeyring) {
    std::fs::write(path, ring.to_specs().as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn atsession(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = bin::atsession();
    c.args(args).arg("--db").arg(db);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Starts `serve` on `db`: `Ok(())` once it listens (then stops it), `Err(stderr)` if it exits.
fn serve(db: &Path) -> Result<(), String> {
    let mut child = bin::atsession()
        .args(["serve", "--listen", "127.0.0.1:0", "--dev", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.starts_with("listening on") {
        child.kill().unwrap();
        child.wait().unwrap();
        return Ok(());
    }
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A temporary directory with the paths of a database in it and of its default key file
/// (`<db>.key`); the directory is removed when the first value is dropped.
fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let key_file = dir.path().join("gw.db.key");
    (dir, db, key_file)
}

async fn grants(db: &Path, ring: &AtRestKeyring, n: usize) {
    let store = SqliteStore::open(db).await.unwrap();
    for _ in 0..n {
        doc_grant(&store, ring).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_lost_or_swapped_key_file() {
    let (_dir, db, key_file) = files();
    let ring = AtRestKeyring::new(AtRestKey::generate("k-original").unwrap());
    write_key_file(&key_file, &ring);
    grants(&db, &ring, 2).await;
    serve(&db).unwrap();

    // Deleted: refused, and no new key file is made.
    std::fs::remove_file(&key_file).unwrap();
    let e = serve(&db).unwrap_err();
    assert!(e.contains("k-original") && e.contains("missing"), "{e}");
    assert!(!key_file.exists(), "a new key file was created");

    // Swapped for another valid key: refused, naming the key the grants need.
    write_key_file(
        &key_file,
        &AtRestKeyring::new(AtRestKey::generate("k-other").unwrap()),
    );
    let e = serve(&db).unwrap_err();
    assert!(e.contains("k-original"), "{e}");

    // Readable by others: refused as ssh would.
    write_key_file(&key_file, &ring);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = serve(&db).unwrap_err();
    assert!(e.contains("permissions 0640"), "{e}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    serve(&db).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_survives_a_kill_in_the_middle() {
    let (_dir, db, key_file) = files();
    let old = AtRestKeyring::new(AtRestKey::generate("k-old").unwrap());
    write_key_file(&key_file, &old);
    grants(&db, &old, 50).await;

    // Killed after 20 grants.
    let out = atsession(
        &["keys", "rotate"],
        &db,
        &[("ATSESSION_TEST_ROTATE_ABORT_AFTER", "20")],
    );
    assert!(!out.status.success());
    let ring = AtRestKeyring::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let new_id = ring.current().id().to_owned();
    assert_ne!(new_id, "k-old");
    assert!(
        ring.holds("k-old"),
        "the old key is kept while grants need it"
    );
    let store = SqliteStore::open(&db).await.unwrap();
    let usage = key_usage(&store).await.unwrap();
    assert_eq!(
        (usage.grants_under("k-old"), usage.grants_under(&new_id)),
        (30, 20)
    );
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The old key cannot be retired yet.
    let out = atsession(&["keys", "retire", "k-old"], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("30 grant(s) are still sealed under `k-old`"),
        "{stderr}"
    );

    // Run again: it resumes under the same new key.
    let out = atsession(&["keys", "rotate"], &db, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("resuming: 30 grant(s)"), "{stdout}");
    let ring = AtRestKeyring::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(ring.current().id(), new_id);
    let usage = key_usage(&store).await.unwrap();
    assert_eq!((usage.grants_under(&new_id), usage.total()), (50, 50));

    // Retire the old key; the new one alone opens every grant (re-sealing once more opens
    // each of them with it).
    let out = atsession(&["keys", "retire", "k-old"], &db, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ring = AtRestKeyring::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    assert_eq!(ring.key_ids(), [new_id.as_str()]);
    let check = ring.rotated(AtRestKey::generate("k-check").unwrap());
    let done = reseal_grants(&store, &check, ResealOptions::default())
        .await
        .unwrap();
    assert_eq!(done.resealed, 50);

    // The sealing key cannot be retired.
    let out = atsession(&["keys", "retire", &new_id], &db, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the sealing key"));
}

#[test]
fn status_names_a_missing_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_dir, db, key_file) = files();
    let lost = AtRestKeyring::new(AtRestKey::generate("k-lost").unwrap());
    rt.block_on(grants(&db, &lost, 3));
    write_key_file(
        &key_file,
        &AtRestKeyring::new(AtRestKey::generate("k-here").unwrap()),
    );
    let out = atsession(&["keys", "status"], &db, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stdout.contains("k-lost") && stdout.contains("MISSING"),
        "{stdout}"
    );
    assert!(stderr.contains("k-lost"), "{stderr}");
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn json_for_scripts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_dir, db, key_file) = files();
    let old = AtRestKeyring::new(AtRestKey::generate("k-old").unwrap());
    write_key_file(&key_file, &old);
    rt.block_on(grants(&db, &old, 3));

    let out = atsession(&["keys", "status", "--json"], &db, &[]);
    assert!(out.status.success());
    let status = json_of(&out);
    assert_eq!(status["ok"], true);
    assert_eq!(
        status["keys"],
        serde_json::json!([{"id": "k-old", "role": "seals", "grants": 3}])
    );
    assert_eq!(status["key_file"], key_file.to_str().unwrap());

    // ATSESSION_JSON=1 is --json.
    let out = atsession(&["keys", "rotate"], &db, &[("ATSESSION_JSON", "1")]);
    assert!(out.status.success());
    let rotated = json_of(&out);
    let new_id = rotated["sealing_key"].as_str().unwrap().to_owned();
    assert_ne!(new_id, "k-old");
    assert_eq!(rotated["new_key"], true);
    assert_eq!(rotated["resealed"], 3);
    assert_eq!(rotated["old_keys"], serde_json::json!(["k-old"]));

    let status = json_of(&atsession(&["keys", "status", "--json"], &db, &[]));
    assert_eq!(
        status["keys"],
        serde_json::json!([
            {"id": new_id, "role": "seals", "grants": 3},
            {"id": "k-old", "role": "opens", "grants": 0},
        ])
    );

    // No key material in what is printed: the secrets of both keys are in the file.
    let secrets: Vec<String> = std::fs::read_to_string(&key_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':').map(|(_, k)| k.to_owned()))
        .collect();
    assert_eq!(secrets.len(), 2);
    let printed = [
        serde_json::to_string(&status).unwrap(),
        serde_json::to_string(&rotated).unwrap(),
    ]
    .concat();
    assert!(secrets.iter().all(|k| !printed.contains(k.as_str())));

    let out = atsession(&["keys", "retire", "k-old", "--json"], &db, &[]);
    assert!(out.status.success());
    assert_eq!(json_of(&out)["retired"], "k-old");

    // A key the grants need is missing: `ok` is false, the key named, and the exit fails.
    write_key_file(
        &key_file,
        &AtRestKeyring::new(AtRestKey::generate("k-stranger").unwrap()),
    );
    let out = atsession(&["keys", "status", "--json"], &db, &[]);
    assert!(!out.status.success());
    let status = json_of(&out);
    assert_eq!(status["ok"], false);
    assert!(
        status["keys"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"id": new_id, "role": "missing", "grants": 3})),
        "{status}"
    );
}
