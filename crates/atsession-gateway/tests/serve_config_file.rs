//! `atsession serve --config FILE` and `--log-format json`, on the real binary.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Starts serve, waits for its "listening" line, stops it; returns (stdout line, stderr).
fn run_serve(args: &[&str], envs: &[(&str, &std::path::Path)]) -> (String, String) {
    let mut cmd = bin::atsession();
    cmd.arg("serve").args(args).env("ATSESSION_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (line, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn flags_over_environment_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file.db");
    let from_env = dir.path().join("from-env.db");
    let config = dir.path().join("atsession.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndb = \"{}\"\ndev = true\naccess-token-ttl = 600\n",
            from_file.display()
        ),
    )
    .unwrap();
    // The file alone.
    let (line, _) = run_serve(&["--config", config.to_str().unwrap()], &[]);
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert!(from_file.exists(), "the file's db was used");
    // The environment over the file.
    let (line, _) = run_serve(
        &["--config", config.to_str().unwrap()],
        &[("ATSESSION_DB", &from_env)],
    );
    assert!(line.starts_with("listening on"), "{line}");
    assert!(from_env.exists(), "ATSESSION_DB won over the file");
    // A flag over both.
    let from_flag = dir.path().join("from-flag.db");
    let (line, _) = run_serve(
        &[
            "--config",
            config.to_str().unwrap(),
            "--db",
            from_flag.to_str().unwrap(),
        ],
        &[("ATSESSION_DB", &from_env)],
    );
    assert!(line.starts_with("listening on"), "{line}");
    assert!(from_flag.exists(), "--db won over the environment");
}

#[test]
fn a_bad_config_file_is_named_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("atsession.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let t = Instant::now();
    let out = bin::atsession()
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`lisen`"), "{err}");
    assert!(
        !dir.path().join("atsession.db").exists(),
        "nothing was created"
    );
}

#[test]
fn json_logs_are_one_object_per_line_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let (line, stderr) = run_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--dev",
            "--log-format",
            "json",
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    assert!(line.starts_with("listening on"), "{line}");
    let first = stderr
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(v["level"], "INFO");
    assert!(!stderr.contains('\u{1b}'), "no ANSI codes off a terminal");
}
