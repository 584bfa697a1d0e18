//! The gateway under load, measured with `wrk` (Debian's package) on loopback: `GET /session`
//! with a valid cookie against `GET /livez` (a route that does nothing) of the same server,
//! in the same run, at 64 keep-alive connections.
//!
//! ```sh
//! cargo bench -p atsession-gateway --bench gateway_load             # 10 s per route
//! ATSESSION_LOAD_SECONDS=30 cargo bench -p atsession-gateway --bench gateway_load
//! ```
//!
//! Prints one JSON line per route and the ratio. The load generator shares the machine's
//! cores with the gateway, so the absolute figures depend on the machine; the ratio is the
//! point. Each line also gives the gateway's CPU time per request under this load (from
//! `/proc/<pid>/stat`): set beside the same route's CPU per call when called one request
//! at a time (`proxy_cost`'s `gateway /livez`), it shows what waking an idle process costs
//! on the machine, which a proxied call pays twice.
//!
//! `ATSESSION_GATEWAY_UNDER="perf record -g"` (or `valgrind --tool=callgrind`) runs the
//! gateway under a profiler, stopped with SIGTERM at the end so that it writes its report.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/support/bin.rs"]
mod bin;
#[path = "../tests/support/gateway.rs"]
mod gateway;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::process::Command;

use atsession::app::{CookieConfig, SessionConfig, SessionManager};
use atsession::store::sqlite::SqliteStore;
use gateway::{Gateway, cpu_us};

struct Run {
    requests: u64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().unwrap() / 1000.0
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap()
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().unwrap() * 1000.0
    } else {
        panic!("latency `{s}`")
    }
}

fn wrk(url: &str, cookie: &str, seconds: u64) -> Run {
    let out = Command::new("wrk")
        .args(["-t1", "-c64", &format!("-d{seconds}s"), "--latency", "-H"])
        .arg(format!("cookie: {cookie}"))
        .arg(url)
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(str::trim)
                .map(str::to_owned)
        })
    };
    Run {
        // `  123456 requests in 10.00s, 12.34MB read`
        requests: text
            .lines()
            .find_map(|l| {
                l.trim()
                    .split_once(" requests in ")
                    .map(|(n, _)| n.to_owned())
            })
            .unwrap_or_else(|| panic!("{text}"))
            .parse()
            .unwrap(),
        requests_per_s: field("Requests/sec:")
            .unwrap_or_else(|| panic!("{text}"))
            .parse()
            .unwrap(),
        p50_ms: ms(&field("50%").unwrap()),
        p99_ms: ms(&field("99%").unwrap()),
        non_2xx: field("Non-2xx or 3xx responses:").map_or(0, |v| v.parse().unwrap()),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let seconds: u64 = std::env::var("ATSESSION_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("load.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let config = SessionConfig::default().cookie(CookieConfig::insecure_for_development());
        let sessions = SessionManager::with_config(store, config).unwrap();
        let new = sessions
            .create(
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "alice.test",
                serde_json::json!({}),
            )
            .await
            .unwrap();
        let cookie = format!("atsession={}", new.token.expose());
        let db_arg = db.as_os_str().to_owned();
        let gw = Gateway::start(None, [std::ffi::OsStr::new("--dev"), "--db".as_ref(), &db_arg]).await;
        let (base, pid) = (gw.base.clone(), gw.pid());
        // wrk runs on a blocking thread, so that the runtime keeps the gateway's pipes read.
        // The gateway's CPU time over the run, per request answered.
        let run = move |route: &'static str, seconds: u64| {
            let (url, cookie) = (format!("{base}{route}"), cookie.clone());
            tokio::task::spawn_blocking(move || {
                let before = cpu_us(pid);
                let run = wrk(&url, &cookie, seconds);
                let cpu = (cpu_us(pid) - before) as f64 / run.requests.max(1) as f64;
                (run, cpu)
            })
        };
        // Warm up both routes.
        run("/livez", 1).await.unwrap();
        run("/session", 1).await.unwrap();
        let (trivial, trivial_cpu) = run("/livez", seconds).await.unwrap();
        let (session, session_cpu) = run("/session", seconds).await.unwrap();
        drop(gw);
        assert_eq!(session.non_2xx, 0, "every /session answer was a success");
        for (route, r, cpu) in [
            ("/livez", &trivial, trivial_cpu),
            ("/session", &session, session_cpu),
        ] {
            println!(
                "{{\"route\":\"{route}\",\"connections\":64,\"seconds\":{seconds},\"requests_per_s\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"gateway_cpu_us_per_request\":{cpu:.1}}}",
                r.requests_per_s, r.p50_ms, r.p99_ms
            );
        }
        println!(
            "{{\"session_vs_trivial\":{:.3}}}",
            session.requests_per_s / trivial.requests_per_s
        );
    });
}
