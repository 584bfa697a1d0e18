//! Times streamed PDS calls through the session layer against the local PDS:
//!
//! - `getBlob` of a 50 MB blob, streamed and discarded, against `curl` fetching the same
//!   public URL to `/dev/null` in the same run (runs interleaved; the ratio is
//!   session layer / curl);
//! - `uploadBlob` of the same 50 MB from a file (in the page cache), streamed, in MB/s,
//!   beside `curl --data-binary @file` with a password session's Bearer token;
//! - the client's CPU time per 50 MB transfer, ours (this process, `/proc/self/stat`) and
//!   curl's (`/usr/bin/time`), which stays meaningful when a loaded machine makes the
//!   throughput noisy (the PDS, in Node, is usually the bottleneck);
//! - the CPU time of the whole process per small XRPC call (`getSession`, sequential),
//!   from `/proc/self/stat` (user + system, every thread) over many calls, in µs, beside
//!   the cost of the DPoP proof alone.
//!
//! ```text
//! bash e2e/pds/up.sh /tmp/pds.json
//! ATSESSION_E2E_PDS=/tmp/pds.json cargo run --release -p atsession --features oauth \
//!     --example pds_throughput -- [runs=5] [calls=3000]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/pds.rs"]
mod pds;

use std::process::Command;
use std::time::{Duration, Instant};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::{
    AuthorizeOptions, CallbackParams, ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig,
    OAuthSession, PdsBody, PdsRequest, SessionGetter,
};
use atsession::oauth::{DpopKey, ath};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

const LEN: usize = 50 * 1024 * 1024;

fn mb_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// User + system CPU time of this process (every thread), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

async fn login(peer: &pds::Peer) -> (OAuthSession<MemoryStore>, String) {
    let metadata = ClientMetadata::loopback(
        &["http://127.0.0.1:8080/callback"],
        "atproto transition:generic",
    )
    .unwrap();
    let identity = IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(600),
    };
    let config = OAuthClientConfig::new(
        metadata,
        AtRestKeyring::new(AtRestKey::generate("k").unwrap()),
    )
    .dev_mode(true)
    .identity(identity);
    let client = OAuthClient::new(config, MemoryStore::new()).unwrap();
    let alice = peer.account("alice.test").clone();
    let url = client
        .authorize("alice.test", AuthorizeOptions::default())
        .await
        .unwrap();
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &alice.handle, &alice.password)
        .await
        .unwrap();
    let query = Url::parse(&redirect).unwrap().query().unwrap().to_owned();
    let done = client
        .callback(&CallbackParams::from_query(&query).unwrap())
        .await
        .unwrap();
    let getter = SessionGetter::new(client, GetterConfig::default());
    (getter.session(done.grant.grant_id), alice.did)
}

async fn upload(session: &OAuthSession<MemoryStore>, path: &std::path::Path) -> (Value, Duration) {
    let started = Instant::now();
    let v: Value = session
        .send(
            PdsRequest::procedure("com.atproto.repo.uploadBlob")
                .header("content-type", "application/octet-stream")
                .body(PdsBody::file(path).await.unwrap()),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (v, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(5, |a| a.parse().unwrap());
    let calls: u32 = args.next().map_or(3000, |a| a.parse().unwrap());
    let peer = pds::Peer::from_env().expect("ATSESSION_E2E_PDS names a running peer");
    let (session, did) = login(&peer).await;

    // 50 MB of varied bytes in a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.bin");
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut piece = vec![0u8; 1 << 20];
    for _ in 0..LEN / piece.len() {
        for b in &mut piece {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        file.write_all(&piece).await.unwrap();
    }
    file.flush().await.unwrap();
    drop(file);

    // Upload: the session layer and curl, interleaved.
    let password = peer.account("alice.test").password.clone();
    let bearer: Value = peer
        .http()
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            peer.pds_url()
        ))
        .json(&json!({"identifier": "alice.test", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = bearer["accessJwt"].as_str().unwrap().to_owned();
    let (mut ours_up, mut curl_up) = (Vec::new(), Vec::new());
    let mut blob = Value::Null;
    for _ in 0..runs {
        let (v, took) = upload(&session, &path).await;
        assert_eq!(v["blob"]["size"], LEN);
        blob = v["blob"].clone();
        ours_up.push(mb_s(LEN, took));
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{speed_upload} %{http_code}",
                "-X",
                "POST",
            ])
            .args(["-H", "content-type: application/octet-stream"])
            .args(["-H", &format!("authorization: Bearer {jwt}")])
            .arg("--data-binary")
            .arg(format!("@{}", path.display()))
            .arg(format!(
                "{}/xrpc/com.atproto.repo.uploadBlob",
                peer.pds_url()
            ))
            .output()
            .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        let (speed, code) = out.split_once(' ').unwrap();
        assert_eq!(code, "200", "curl upload");
        curl_up.push(speed.parse::<f64>().unwrap() / 1e6);
    }
    let _: Value = session
        .xrpc_procedure(
            "com.atproto.repo.createRecord",
            &json!({"repo": did, "collection": "com.example.media",
                    "record": {"$type": "com.example.media", "file": blob}}),
        )
        .await
        .unwrap();
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();

    // Download: the session layer and curl, interleaved.
    let public = format!(
        "{}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}",
        peer.pds_url()
    );
    let (mut ours_down, mut curl_down) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut curl_cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let cpu0 = cpu_time();
        let started = Instant::now();
        let mut answer = session
            .send(PdsRequest::query(
                "com.atproto.sync.getBlob",
                &[("did", &did), ("cid", &cid)],
            ))
            .await
            .unwrap();
        let mut got = 0;
        while let Some(c) = answer.chunk().await.unwrap() {
            got += c.len();
        }
        let took = started.elapsed();
        ours_cpu.push((cpu_time() - cpu0).as_secs_f64() * 1e3);
        assert_eq!(got, LEN);
        ours_down.push(mb_s(LEN, took));
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%U %S", "curl", "-s", "-o", "/dev/null", "-w"])
            .arg("%{speed_download} %{size_download}")
            .arg(&public)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let (speed, size) = stdout.split_once(' ').unwrap();
        assert_eq!(size, LEN.to_string(), "curl download");
        curl_down.push(speed.parse::<f64>().unwrap() / 1e6);
        let stderr = String::from_utf8(out.stderr).unwrap();
        let cpu: f64 = stderr
            .split_whitespace()
            .filter_map(|t| t.parse::<f64>().ok())
            .sum();
        curl_cpu.push(cpu * 1e3);
    }

    // CPU per small call.
    for _ in 0..50 {
        let _: Value = session
            .xrpc_query("com.atproto.server.getSession", &[])
            .await
            .unwrap();
    }
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    for _ in 0..calls {
        let _: Value = session
            .xrpc_query("com.atproto.server.getSession", &[])
            .await
            .unwrap();
    }
    let per_call_cpu = (cpu_time() - cpu0).as_secs_f64() * 1e6 / f64::from(calls);
    let per_call_wall = wall0.elapsed().as_secs_f64() * 1e6 / f64::from(calls);
    let key = DpopKey::generate();
    let a = ath("access-token");
    let started = Instant::now();
    for i in 0..2000 {
        let _ = key
            .proof(
                "GET",
                "http://localhost/xrpc/x.y.z",
                Some("nonce"),
                Some(&a),
                i,
            )
            .unwrap();
    }
    let proof_us = started.elapsed().as_secs_f64() * 1e6 / 2000.0;

    let (ours_down_m, curl_down_m) = (median(ours_down.clone()), median(curl_down.clone()));
    let report = json!({
        "runs": runs,
        "get_blob_50mb": {
            "session_mb_s": ours_down, "curl_mb_s": curl_down,
            "median_session_mb_s": ours_down_m, "median_curl_mb_s": curl_down_m,
            "ratio_session_over_curl": ours_down_m / curl_down_m,
            "session_cpu_ms": ours_cpu, "curl_cpu_ms": curl_cpu,
            "median_session_cpu_ms": median(ours_cpu.clone()), "median_curl_cpu_ms": median(curl_cpu.clone()),
        },
        "upload_blob_50mb": {
            "session_mb_s": ours_up, "curl_mb_s": curl_up,
            "median_session_mb_s": median(ours_up.clone()), "median_curl_mb_s": median(curl_up.clone()),
        },
        "get_session": {
            "calls": calls,
            "cpu_us_per_call_whole_process": per_call_cpu,
            "wall_us_per_call": per_call_wall,
            "dpop_proof_us": proof_us,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
