//! Wire compatibility with the Node Iron libraries: @hapi/iron 7, iron-webcrypto 2, and
//! iron-session 8 (on iron-webcrypto 1) and 9, run as real peers through
//! `e2e/iron/iron.mjs`.
//!
//! Needs `npm ci --prefix e2e/iron` (or `bash e2e/iron/setup.sh`). Without it the tests print
//! how to set up and pass, except under `CI=true`, where they fail.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use atsession::clock::{Clock, ManualClock, SystemClock};
use atsession::seal::{Iron, Passwords, SealError, SealedSessionError, SealedSessions, SetCookies};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

const PW: &str = "some_not_random_password_that_is_at_least_32_characters";
const PW2: &str = "another_password_that_is_also_at_least_32_characters";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs jobs through the Node peer; `None` when the peer is not installed (outside CI).
fn node(jobs: &[Value]) -> Option<Vec<Value>> {
    let dir = root().join("e2e/iron");
    if !dir.join("node_modules/iron-session-9").is_dir() {
        let msg = "e2e/iron/node_modules is missing: run `npm ci --prefix e2e/iron` \
                   (or `bash e2e/iron/setup.sh`) to run the Iron compatibility tests";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipped: {msg}");
        return None;
    }
    let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
        .arg(dir.join("iron.mjs"))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let input = serde_json::to_vec(jobs).expect("jobs serialise");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write jobs");
    let out = child.wait_with_output().expect("node finishes");
    assert!(out.status.success(), "node failed: {:?}", out.status);
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("node answers JSON");
    assert_eq!(results.len(), jobs.len());
    Some(results)
}

fn ok<'a>(r: &'a Value, key: &str) -> &'a Value {
    assert_eq!(r["ok"], true, "node refused: {r}");
    &r[key]
}

fn data() -> Value {
    json!({"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "handle": "alice.test", "n": 42,
           "tags": ["a", "b"], "nested": {"emoji": "😀", "none": null}})
}

fn keyring() -> Passwords {
    Passwords::new([("1", PW), ("2", PW2)]).expect("valid passwords")
}

fn clock_offset(offset_ms: i64) -> Arc<ManualClock> {
    let now = SystemClock.now() + time::Duration::milliseconds(offset_ms);
    Arc::new(ManualClock::new(now))
}

const IRON_LIBS: [&str; 2] = ["hapi", "webcrypto"];
const SESSION_LIBS: [&str; 2] = ["session8", "session9"];

#[test]
fn node_seals_open_in_rust() {
    let mut jobs = Vec::new();
    for lib in IRON_LIBS {
        for ttl in [0, 3_600_000] {
            jobs.push(
                json!({"op": "seal", "lib": lib, "password": PW, "data": data(), "ttl_ms": ttl}),
            );
            jobs.push(
                json!({"op": "seal", "lib": lib, "password": {"id": "2", "secret": PW2},
                             "data": data(), "ttl_ms": ttl}),
            );
        }
    }
    for lib in SESSION_LIBS {
        jobs.push(json!({"op": "seal", "lib": lib, "password": PW, "data": data()}));
        jobs.push(
            json!({"op": "seal", "lib": lib, "password": {"1": PW, "2": PW2}, "data": data()}),
        );
    }
    let Some(results) = node(&jobs) else { return };

    let single = Iron::new(Passwords::single(PW).expect("valid"));
    let ring = Iron::new(keyring());
    let sessions = SealedSessions::<Value>::builder(keyring())
        .build()
        .expect("valid");
    for (job, r) in jobs.iter().zip(&results) {
        let sealed = ok(r, "sealed").as_str().expect("a seal");
        let lib = job["lib"].as_str().expect("lib");
        if lib.starts_with("session") {
            assert!(sealed.ends_with("~2"), "{sealed}");
            let u = sessions
                .unseal_bearer(sealed)
                .expect("iron-session seal opens");
            assert_eq!(u.data, data(), "{lib}");
            let expected_id = if job["password"].is_string() {
                "1"
            } else {
                "2"
            };
            assert_eq!(u.password_id, expected_id);
            let exp = u.expires_at.expect("iron-session seals expire");
            let in_14_days = SystemClock.now() + time::Duration::days(14);
            assert!((exp - in_14_days).abs() < time::Duration::minutes(1));
            continue;
        }
        let iron = if job["password"].is_string() {
            &single
        } else {
            &ring
        };
        let u = iron
            .unseal_full::<Value>(sealed)
            .unwrap_or_else(|e| panic!("{lib}: {e}"));
        assert_eq!(u.data, data(), "{lib}");
        assert_eq!(u.expires_at.is_some(), job["ttl_ms"] != 0, "{lib}");
        // A keyring without the seal's id refuses it.
        if !job["password"].is_string() {
            let other = Iron::new(Passwords::new([("1", PW)]).expect("valid"));
            assert_eq!(
                other.unseal_bytes(sealed).unwrap_err(),
                SealError::UnknownPasswordId { id: "2".into() }
            );
        }
    }
}

#[test]
fn rust_seals_open_in_node() {
    let single = Iron::new(Passwords::single(PW).expect("valid"));
    let ring = Iron::new(keyring());
    let mut jobs = Vec::new();
    for ttl in [0u64, 3600] {
        for lib in IRON_LIBS {
            let a = single
                .clone()
                .with_ttl(Duration::from_secs(ttl))
                .seal(&data())
                .expect("seals");
            assert!(a.starts_with("Fe26.2**"));
            jobs.push(json!({"op": "unseal", "lib": lib, "password": PW, "sealed": a}));
            let b = ring
                .clone()
                .with_ttl(Duration::from_secs(ttl))
                .seal(&data())
                .expect("seals");
            assert!(b.starts_with("Fe26.2*2*"));
            jobs.push(
                json!({"op": "unseal", "lib": lib, "password": {"1": PW, "2": PW2}, "sealed": b}),
            );
        }
    }
    let by_string = SealedSessions::<Value>::new(PW).expect("valid");
    let by_ring = SealedSessions::<Value>::builder(keyring())
        .build()
        .expect("valid");
    for lib in SESSION_LIBS {
        let a = by_string.seal_bearer(&data()).expect("seals");
        jobs.push(json!({"op": "unseal", "lib": lib, "password": PW, "sealed": a}));
        let b = by_ring.seal_bearer(&data()).expect("seals");
        jobs.push(
            json!({"op": "unseal", "lib": lib, "password": {"1": PW, "2": PW2}, "sealed": b}),
        );
    }
    let Some(results) = node(&jobs) else { return };
    for (job, r) in jobs.iter().zip(&results) {
        assert_eq!(ok(r, "data"), &data(), "{}", job["lib"]);
    }
}

#[test]
fn expired_seals_are_refused_both_ways() {
    // Rust seals made two hours ago with a one-hour TTL; Node must refuse them. Seals made
    // 30 minutes ago with the same TTL are the control.
    let old = clock_offset(-2 * 3_600_000);
    let recent = clock_offset(-30 * 60_000);
    let make = |clock: &Arc<ManualClock>, passwords: Passwords| {
        Iron::new(passwords)
            .with_ttl(Duration::from_secs(3600))
            .with_clock(clock.clone())
    };
    let mut jobs = Vec::new();
    for lib in IRON_LIBS {
        for (clock, expect_ok) in [(&old, false), (&recent, true)] {
            let s = make(clock, Passwords::single(PW).expect("valid"))
                .seal(&data())
                .expect("seals");
            jobs.push((
                json!({"op": "unseal", "lib": lib, "password": PW, "sealed": s}),
                expect_ok,
            ));
        }
    }
    for lib in SESSION_LIBS {
        for (clock, expect_ok) in [(&old, false), (&recent, true)] {
            let s = make(clock, Passwords::new([("1", PW)]).expect("valid"))
                .seal(&data())
                .expect("seals");
            jobs.push((
                json!({"op": "unseal", "lib": lib, "password": PW, "sealed": format!("{s}~2")}),
                expect_ok,
            ));
        }
    }
    // Node seals: hapi and webcrypto sealed "two hours ago" through their clock offset;
    // iron-session with a one-second TTL, opened by Rust two minutes from now.
    let mut node_jobs = Vec::new();
    for lib in IRON_LIBS {
        node_jobs.push(
            json!({"op": "seal", "lib": lib, "password": PW, "data": data(),
                              "ttl_ms": 3_600_000, "now_offset_ms": -2 * 3_600_000}),
        );
        node_jobs.push(
            json!({"op": "seal", "lib": lib, "password": PW, "data": data(),
                              "ttl_ms": 3_600_000, "now_offset_ms": -30 * 60_000}),
        );
    }
    for lib in SESSION_LIBS {
        node_jobs.push(
            json!({"op": "seal", "lib": lib, "password": PW, "data": data(), "ttl_ms": 1000}),
        );
    }
    let all: Vec<Value> = jobs
        .iter()
        .map(|(j, _)| j.clone())
        .chain(node_jobs.iter().cloned())
        .collect();
    let Some(results) = node(&all) else { return };

    for ((job, expect_ok), r) in jobs.iter().zip(&results) {
        let lib = job["lib"].as_str().expect("lib");
        match (lib.starts_with("session"), expect_ok) {
            (false, true) | (true, true) => assert_eq!(ok(r, "data"), &data(), "{lib}"),
            (false, false) => {
                assert_eq!(r["ok"], false, "{lib} accepted an expired seal");
                assert_eq!(r["error"], "Expired seal", "{lib}");
            }
            // iron-session answers an empty session for an expired seal.
            (true, false) => assert_eq!(ok(r, "data"), &json!({}), "{lib}"),
        }
    }

    let node_results = &results[jobs.len()..];
    let single = Iron::new(Passwords::single(PW).expect("valid"));
    for (i, lib) in IRON_LIBS.iter().enumerate() {
        let expired = ok(&node_results[2 * i], "sealed").as_str().expect("seal");
        let fresh = ok(&node_results[2 * i + 1], "sealed")
            .as_str()
            .expect("seal");
        assert_eq!(
            single.unseal_bytes(expired).unwrap_err(),
            SealError::Expired,
            "{lib}"
        );
        assert_eq!(
            single.unseal::<Value>(fresh).expect("opens"),
            data(),
            "{lib}"
        );
    }
    for (i, lib) in SESSION_LIBS.iter().enumerate() {
        let sealed = ok(&node_results[2 * IRON_LIBS.len() + i], "sealed")
            .as_str()
            .expect("seal");
        let later = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).expect("valid"))
            .clock(clock_offset(120_000))
            .build()
            .expect("valid");
        assert_eq!(
            later.unseal_bearer(sealed).unwrap_err(),
            SealedSessionError::Seal(SealError::Expired),
            "{lib}"
        );
        let soon = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).expect("valid"))
            .clock(clock_offset(30_000))
            .build()
            .expect("valid");
        assert_eq!(soon.unseal_bearer(sealed).expect("in skew").data, data());
    }
}

/// The `Cookie` header a browser sends back for these `Set-Cookie` lines.
fn cookie_header<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    lines
        .into_iter()
        .filter_map(|l| {
            let c = cookie::Cookie::parse(l.to_owned()).expect("a Set-Cookie line");
            (!c.value().is_empty()).then(|| format!("{}={}", c.name(), c.value()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn lines(set: &SetCookies) -> Vec<&str> {
    set.values()
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect()
}

fn request(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_str(cookie).expect("a header"));
    h
}

fn attributes(line: &str) -> Vec<String> {
    let mut a: Vec<String> = line
        .split(';')
        .skip(1)
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    a.sort();
    a
}

/// A payload that does not compress into one cookie: about 7 KB of JSON.
fn big_data() -> Value {
    let blob: String = (0..7000u32)
        .map(|i| {
            char::from(b'a' + u8::try_from(i.wrapping_mul(2_654_435_761) >> 27).unwrap_or(0) % 26)
        })
        .collect();
    json!({"did": "did:plc:abc", "blob": blob})
}

#[test]
fn iron_session_cookies_both_ways() {
    let fourteen_days = Duration::from_secs(14 * 86_400);
    let rust = SealedSessions::<Value>::builder(Passwords::new([("1", PW)]).expect("valid"))
        .ttl(fourteen_days)
        .build()
        .expect("valid");
    let small = rust.create(&data()).expect("fits");
    let big = rust.create(&big_data()).expect("splits");
    assert!(big.len() >= 2);

    let mut jobs = Vec::new();
    for lib in SESSION_LIBS {
        // Rust writes, iron-session reads.
        jobs.push(json!({"op": "cookie_read", "lib": lib, "password": PW,
                         "cookie": cookie_header(lines(&small))}));
        // iron-session writes, Rust reads.
        jobs.push(json!({"op": "cookie_write", "lib": lib, "password": PW, "data": data()}));
    }
    // Chunked cookies: iron-session 9 only.
    jobs.push(
        json!({"op": "cookie_read", "lib": "session9", "password": PW,
                     "cookie": cookie_header(lines(&big))}),
    );
    jobs.push(
        json!({"op": "cookie_write", "lib": "session9", "password": PW,
                     "data": big_data(), "chunk": true}),
    );
    // iron-session 8 refuses what does not fit one cookie, as Rust does without chunking.
    jobs.push(json!({"op": "cookie_write", "lib": "session8", "password": PW, "data": big_data()}));
    let Some(results) = node(&jobs) else { return };

    for (i, lib) in SESSION_LIBS.iter().enumerate() {
        assert_eq!(
            ok(&results[2 * i], "data"),
            &data(),
            "{lib} reads Rust's cookie"
        );
        let set: Vec<&str> = ok(&results[2 * i + 1], "set_cookie")
            .as_array()
            .expect("lines")
            .iter()
            .map(|v| v.as_str().expect("a line"))
            .collect();
        assert_eq!(set.len(), 1, "{lib}");
        assert!(set[0].starts_with("sid=Fe26.2*1*"), "{lib}: {}", set[0]);
        // Same attributes, same Max-Age (14 days minus 60 s).
        assert_eq!(attributes(set[0]), attributes(lines(&small)[0]), "{lib}");
        let loaded = rust
            .load(&request(&cookie_header(set.iter().copied())))
            .expect("Rust reads iron-session's cookie")
            .expect("a session");
        assert_eq!(loaded.data, data(), "{lib}");
        assert!(
            loaded.set_cookie.is_none(),
            "a fresh cookie needs no refresh"
        );
    }
    let n = 2 * SESSION_LIBS.len();
    assert_eq!(
        ok(&results[n], "data"),
        &big_data(),
        "iron-session 9 joins Rust's chunks"
    );
    let chunks: Vec<&str> = ok(&results[n + 1], "set_cookie")
        .as_array()
        .expect("lines")
        .iter()
        .map(|v| v.as_str().expect("a line"))
        .collect();
    assert!(
        chunks.len() >= 2 && chunks[0].starts_with("sid.0="),
        "{chunks:?}"
    );
    let loaded = rust
        .load(&request(&cookie_header(chunks.iter().copied())))
        .expect("Rust joins iron-session's chunks")
        .expect("a session");
    assert_eq!(loaded.data, big_data());
    assert_eq!(results[n + 2]["ok"], false);
    assert!(
        results[n + 2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Cookie length is too big")
    );
}
