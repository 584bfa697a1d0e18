//! `atsession doctor`: passes against a real `atsession serve` (a confidential client with
//! its client keys), names the failing check against a loopback server that publishes
//! broken documents (faults the real server cannot show), and finds at-rest keys that do
//! not open the stored grants.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::EcKey;
use atsession::oauth::Keyset;
use atsession::oauth::key_rotation::doc_grant;
use atsession::store::sqlite::SqliteStore;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gateway::Gateway;
use serde_json::{Value, json};

/// What one run of `atsession doctor` printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// The status of the check `name` (`ok`, `warn`, `fail`), from `--json` output.
    fn status(&self, name: &str) -> String {
        let v = self.json();
        let found = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {}", self.stdout));
        found["status"].as_str().unwrap().to_owned()
    }

    fn detail(&self, name: &str) -> String {
        let v = self.json();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["detail"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// The names of the failed checks.
    fn failed(&self) -> Vec<String> {
        self.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Runs `atsession doctor ARGS` in `dir` (so that no `./atsession.db` is found by chance).
fn doctor(dir: &Path, args: &[&str]) -> Run {
    doctor_env(dir, args, &[])
}

/// [`doctor`] with these environment variables set.
fn doctor_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = bin::atsession();
    c.arg("doctor").args(args).current_dir(dir);
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    Run {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A private JWKS file with one key `kid`; returns the keyset.
fn client_keys(path: &Path, kid: &str) -> Keyset {
    let keyset = Keyset::new(vec![EcKey::generate().with_kid(kid)]).unwrap();
    write_private(
        path,
        &serde_json::to_string(&keyset.private_jwks()).unwrap(),
    );
    keyset
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_gateway_passes_and_other_client_keys_fail() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client-keys.json");
    let keyset = client_keys(&keys, "gw-1");
    let db = dir.path().join("gw.db");
    let gw = Gateway::start(
        None,
        [
            "--public-url".as_ref(),
            "https://gw.test/".as_ref(),
            "--client-keys".as_ref(),
            keys.as_os_str(),
            "--db".as_ref(),
            db.as_os_str(),
        ],
    )
    .await;
    let db = db.to_str().unwrap();
    let keys_arg = keys.to_str().unwrap();
    let base = ["https://gw.test/", "--via", &gw.base, "--db", db];

    let run = doctor(
        dir.path(),
        &[&base[..], &["--client-keys", keys_arg, "--json"]].concat(),
    );
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert!(run.failed().is_empty(), "{}", run.stdout);
    for name in [
        "client_keys",
        "url",
        "metadata.fetch",
        "metadata.content_type",
        "metadata.client_id",
        "metadata.dpop_bound_access_tokens",
        "metadata.grant_types",
        "metadata.response_types",
        "metadata.scope",
        "metadata.redirect_uris",
        "metadata.auth_method",
        "jwks.keys",
        "jwks.client_keys",
        "at_rest.keys",
        "at_rest.grants",
    ] {
        assert_eq!(run.status(name), "ok", "{name}: {}", run.stdout);
    }
    assert_eq!(run.json()["ok"], true);
    assert!(
        run.detail("metadata.client_id")
            .contains("https://gw.test/oauth/client-metadata.json")
    );

    // The text report: one line per check, no colour off a terminal, no secret.
    let text = doctor(
        dir.path(),
        &[&base[..], &["--client-keys", keys_arg]].concat(),
    );
    assert!(text.success, "{}", text.stdout);
    assert!(!text.stdout.contains('\x1b'), "{}", text.stdout);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("jwks.client_keys")),
        "{}",
        text.stdout
    );
    let d = keyset.private_jwks().keys[0].d.clone().unwrap();
    assert!(!text.stdout.contains(d.expose()) && !text.stderr.contains(d.expose()));

    // A scope the metadata does not declare.
    let run = doctor(
        dir.path(),
        &[
            &base[..],
            &["--scope", "atproto repo:com.example.note", "--json"],
        ]
        .concat(),
    );
    assert!(!run.success);
    assert_eq!(run.failed(), ["metadata.scope"], "{}", run.stdout);
    assert!(
        run.detail("metadata.scope")
            .contains("repo:com.example.note")
    );

    // Private keys that are not the ones the gateway publishes (same kid, another key).
    let other = dir.path().join("other-keys.json");
    client_keys(&other, "gw-1");
    let run = doctor(
        dir.path(),
        &[
            &base[..],
            &["--client-keys", other.to_str().unwrap(), "--json"],
        ]
        .concat(),
    );
    assert!(!run.success);
    assert_eq!(run.failed(), ["jwks.client_keys"], "{}", run.stdout);

    // The serve config file gives the same options; its serve-only keys are skipped, a
    // flag wins over it, and ATSESSION_JSON asks for JSON.
    let config = dir.path().join("atsession.toml");
    std::fs::write(
        &config,
        format!(
            "public-url = \"https://gw.test/\"\nclient-keys = {keys_arg:?}\ndb = {db:?}\n\
             listen = \"127.0.0.1:9\"\nallow-origin = [\"https://app.test\"]\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = doctor_env(
        dir.path(),
        &["--config", config, "--via", &gw.base],
        &[("ATSESSION_JSON", "1")],
    );
    assert!(run.success, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status("jwks.client_keys"), "ok", "{}", run.stdout);
    assert_eq!(run.status("at_rest.grants"), "ok", "{}", run.stdout);
    assert!(
        run.detail("metadata.client_id")
            .contains("https://gw.test/oauth/client-metadata.json")
    );
    let run = doctor(
        dir.path(),
        &[
            "--config",
            config,
            "--via",
            &gw.base,
            "--client-keys",
            other.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(run.failed(), ["jwks.client_keys"], "{}", run.stdout);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "pubilc-url = \"https://gw.test/\"\n").unwrap();
    let run = doctor(dir.path(), &["--config", bad.to_str().unwrap()]);
    assert!(!run.success);
    assert!(run.stderr.contains("`pubilc-url`"), "{}", run.stderr);

    // Without --client-keys: a warning, not a failure.
    let run = doctor(dir.path(), &[&base[..], &["--json"]].concat());
    assert!(run.success, "{}", run.stdout);
    assert_eq!(run.status("jwks.client_keys"), "warn");

    // Reached at its own http address, the gateway's client id is not that URL; and an
    // http URL needs --dev at all.
    let run = doctor(dir.path(), &[&gw.url("/"), "--json"]);
    assert_eq!(run.failed(), ["url"], "{}", run.stdout);
    let run = doctor(dir.path(), &[&gw.url("/"), "--dev", "--json"]);
    assert!(
        run.failed().contains(&"metadata.client_id".to_owned()),
        "{}",
        run.stdout
    );

    // A gateway with an http public URL is a loopback client: it publishes no metadata.
    let loopback = Gateway::start(
        None,
        ["--db".as_ref(), dir.path().join("lo.db").as_os_str()],
    )
    .await;
    let run = doctor(dir.path(), &[&loopback.url("/"), "--dev", "--json"]);
    assert_eq!(run.failed(), ["metadata.fetch"], "{}", run.stdout);
    let detail = run.detail("metadata.fetch");
    assert!(
        detail.contains("404") && detail.contains("loopback client"),
        "{detail}"
    );
}

/// A loopback server that publishes broken client metadata, one fault per path:
/// `/<case>/client-metadata.json` for the client id `https://app.test/<case>/…`.
#[derive(Clone)]
struct Fake {
    /// The public keys published at `/keys/jwks.json`.
    jwks: Value,
    /// The server's own origin (for the `dev` case).
    origin: String,
}

fn good_doc(client_id: &str, origin: &str) -> Value {
    json!({
        "client_id": client_id,
        "application_type": "web",
        "redirect_uris": [format!("{origin}/oauth/callback")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "atproto transition:generic",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "dpop_bound_access_tokens": true,
        "jwks_uri": format!("{origin}/keys/jwks.json"),
    })
}

async fn metadata(State(fake): State<Fake>, UrlPath(case): UrlPath<String>) -> Response {
    let public = "https://app.test";
    let id = format!("{public}/{case}/client-metadata.json");
    let mut doc = good_doc(&id, public);
    match case.as_str() {
        "redirect" => {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, "/good/client-metadata.json")],
            )
                .into_response();
        }
        "type" => {
            return ([(header::CONTENT_TYPE, "text/plain")], doc.to_string()).into_response();
        }
        "mismatch" => doc["client_id"] = json!("https://app.test/other/client-metadata.json"),
        "nodpop" => {
            doc.as_object_mut()
                .unwrap()
                .remove("dpop_bound_access_tokens");
        }
        "origin" => doc["redirect_uris"] = json!(["https://elsewhere.test/oauth/callback"]),
        "dev" => {
            doc = good_doc(
                &format!("{}/dev/client-metadata.json", fake.origin),
                &fake.origin,
            )
        }
        _ => {}
    }
    axum::Json(doc).into_response()
}

async fn jwks(State(fake): State<Fake>) -> Response {
    axum::Json(fake.jwks).into_response()
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_documents_fail_the_check_that_names_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("client-keys.json");
    let keyset = client_keys(&keys, "app-1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let fake = Fake {
        jwks: serde_json::to_value(keyset.public_jwks()).unwrap(),
        origin: origin.clone(),
    };
    let app = axum::Router::new()
        .route("/{case}/client-metadata.json", get(metadata))
        .route("/keys/jwks.json", get(jwks))
        .with_state(fake.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let keys = keys.to_str().unwrap().to_owned();
    let check = |case: &str, client_keys: &str| {
        let url = format!("https://app.test/{case}/client-metadata.json");
        let dir = dir.path().to_owned();
        let origin = origin.clone();
        let client_keys = client_keys.to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                doctor(
                    &dir,
                    &[
                        &url,
                        "--via",
                        &origin,
                        "--client-keys",
                        &client_keys,
                        "--json",
                    ],
                )
            })
            .await
            .unwrap()
        }
    };

    // The well-formed document passes, so each failure below is its case's fault.
    let run = check("good", &keys).await;
    assert!(run.success, "{}", run.stdout);
    assert_eq!(run.status("jwks.fetch"), "ok");
    assert_eq!(run.status("jwks.client_keys"), "ok");

    for (case, failed) in [
        ("redirect", "metadata.fetch"),
        ("type", "metadata.content_type"),
        ("mismatch", "metadata.client_id"),
        ("nodpop", "metadata.dpop_bound_access_tokens"),
        ("origin", "metadata.redirect_uris"),
    ] {
        let run = check(case, &keys).await;
        assert!(!run.success, "{case}: {}", run.stdout);
        let names = run.failed();
        assert!(names.contains(&failed.to_owned()), "{case}: {}", run.stdout);
        if case != "nodpop" {
            // (A missing field also fails the schema check.)
            assert_eq!(names, [failed], "{case}: {}", run.stdout);
        }
    }
    let run = check("redirect", &keys).await;
    assert!(run.detail("metadata.fetch").contains("302"));

    // The published JWKS is not the public part of the private keys given.
    let other = dir.path().join("other.json");
    client_keys(&other, "app-1");
    let run = check("good", other.to_str().unwrap()).await;
    assert_eq!(run.failed(), ["jwks.client_keys"], "{}", run.stdout);
    let run = check("good", &keys).await;
    assert!(run.success);

    // A local deployment on http: refused without --dev, checked with it.
    let url = format!("{}/dev/client-metadata.json", fake.origin);
    let (d, u, k) = (dir.path().to_owned(), url.clone(), keys.clone());
    let run = tokio::task::spawn_blocking(move || doctor(&d, &[&u, "--client-keys", &k, "--json"]))
        .await
        .unwrap();
    assert_eq!(run.failed(), ["url"], "{}", run.stdout);
    let d = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        doctor(&d, &[&url, "--dev", "--client-keys", &keys, "--json"])
    })
    .await
    .unwrap();
    assert!(run.success, "{}", run.stdout);
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn at_rest_keys_that_do_not_open_the_grants_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let key_file = dir.path().join("gw.db.key");
    let ring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    write_private(&key_file, &ring.to_specs());
    let store = SqliteStore::open(&db).await.unwrap();
    for _ in 0..3 {
        doc_grant(&store, &ring).await.unwrap();
    }
    drop(store);
    let before = std::fs::read(&db).unwrap();
    let db_path = db.clone();
    let db = db.to_str().unwrap();

    let run = doctor(dir.path(), &["--db", db, "--json"]);
    assert!(run.success, "{}", run.stdout);
    assert!(
        std::fs::read(&db_path).unwrap() == before,
        "the database was written"
    );
    assert_eq!(run.status("at_rest.keys"), "ok");
    assert_eq!(run.status("at_rest.grants"), "ok");
    assert!(run.detail("at_rest.grants").contains('3'));

    // Swapped for another key under the same id: the ids match, the grants do not open.
    let swapped = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    write_private(&key_file, &swapped.to_specs());
    let run = doctor(dir.path(), &["--db", db, "--json"]);
    assert!(!run.success);
    assert_eq!(run.failed(), ["at_rest.grants"], "{}", run.stdout);
    assert!(run.detail("at_rest.grants").starts_with("3 of 3"));
    // The key is never printed.
    let spec = swapped.to_specs();
    let secret = spec.trim().split(':').nth(1).unwrap();
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));

    // Swapped for a key of another id: the key check names the key the grants need.
    write_private(
        &key_file,
        &AtRestKeyring::new(AtRestKey::generate("k2").unwrap()).to_specs(),
    );
    let run = doctor(dir.path(), &["--db", db, "--json"]);
    assert!(run.failed().contains(&"at_rest.keys".to_owned()));
    assert!(run.detail("at_rest.keys").contains("k1"));

    // Deleted: a failure, and no new key file is made.
    std::fs::remove_file(&key_file).unwrap();
    let run = doctor(dir.path(), &["--db", db, "--json"]);
    assert_eq!(run.failed(), ["at_rest.keys"], "{}", run.stdout);
    assert!(!key_file.exists());

    // Restored: passes again.
    write_private(&key_file, &ring.to_specs());
    let text = doctor(dir.path(), &["--db", db]);
    assert!(text.success, "{}", text.stdout);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("at_rest.grants"))
    );

    // A database that does not exist is a failure, and is not created.
    let missing = dir.path().join("missing.db");
    let run = doctor(dir.path(), &["--db", missing.to_str().unwrap(), "--json"]);
    assert_eq!(run.failed(), ["at_rest.keys"]);
    assert!(!missing.exists());

    // Endless files are refused at once, naming them.
    let run = doctor(
        dir.path(),
        &[
            "--db",
            db,
            "--client-keys",
            "/dev/zero",
            "--key-file",
            "/dev/zero",
            "--json",
        ],
    );
    assert_eq!(
        run.failed(),
        ["client_keys", "at_rest.keys"],
        "{}",
        run.stdout
    );
    assert!(
        run.detail("client_keys")
            .contains("longer than 65536 bytes")
    );
    assert!(run.detail("at_rest.keys").contains("/dev/zero"));
}
