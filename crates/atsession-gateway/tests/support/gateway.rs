//! A gateway process for tests (`atsession serve` on a free port) and a login through it
//! against the official PDS peer.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{bin, pds};

/// A running gateway; killed when dropped. Under a profiler it runs in a process group of
/// its own, which is sent SIGINT: the gateway shuts down, and a tool that outlives it
/// (`perf stat`, `strace -c`) writes its report and exits rather than leaving the gateway
/// behind; whatever is left after a minute is killed.
pub struct Gateway {
    pub child: Child,
    pub base: String,
    profiled: bool,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.profiled
            && let Some(pid) = self.child.id()
        {
            let group = format!("-{pid}");
            let signal = |sig: &str| {
                let _ = std::process::Command::new("kill")
                    .args([sig, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            signal("-INT");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    // The tool has exited; anything of the group still running goes too.
                    signal("-KILL");
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            signal("-KILL");
        }
        let _ = self.child.start_kill();
    }
}

impl Gateway {
    /// `atsession serve --listen 127.0.0.1:0` with `args`, and for a peer `--dev` and its
    /// PLC directory and handle resolver.
    ///
    /// `ATSESSION_GATEWAY_UNDER="valgrind --tool=callgrind"` runs it under a profiler.
    pub async fn start<I, A>(peer: Option<&pds::Peer>, args: I) -> Gateway
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let under = std::env::var("ATSESSION_GATEWAY_UNDER").unwrap_or_default();
        Self::start_with(None, &under, peer, args).await
    }

    /// [`Gateway::start`] of the binary `program` (this build's when `None`), under
    /// `under`: a command (words split at spaces) that runs it in the same process, such as
    /// a profiler; none when empty.
    pub async fn start_with<I, A>(
        program: Option<&OsStr>,
        under: &str,
        peer: Option<&pds::Peer>,
        args: I,
    ) -> Gateway
    where
        I: IntoIterator<Item = A>,
        A: AsRef<OsStr>,
    {
        let program = program.unwrap_or(OsStr::new(bin::ATSESSION));
        let mut words = under.split_whitespace();
        let profiled = !under.trim().is_empty();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(peer) = peer {
            cmd.arg("--dev")
                .arg("--plc-url")
                .arg(peer.plc_url())
                .arg("--handle-resolver")
                .arg(peer.handle_resolver_url());
        }
        cmd.args(args);
        if profiled {
            cmd.process_group(0);
        }
        // Configured by `args` alone (see `bin`).
        for var in bin::inherited() {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the gateway printed its address");
        let base = line.strip_prefix("listening on ").unwrap().to_owned();
        Gateway {
            child,
            base,
            profiled,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

/// utime + stime of a process, in microseconds.
pub fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // The clock tick (100 Hz on most Linux kernels).
    let hz: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    ticks * 1_000_000 / hz
}

/// An HTTP client that follows no redirects and keeps no cookies.
pub fn client() -> reqwest::Client {
    let _ = rustls_graviola::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn cookie_pair(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// Logs `handle` in through the gateway at `base` (the browser's steps done over HTTP);
/// returns the session cookie (`atsession=…`).
pub async fn login(http: &reqwest::Client, peer: &pds::Peer, base: &str, handle: &str) -> String {
    let account = peer.account(handle).clone();
    let r = http
        .get(format!("{base}/oauth/login?identifier={handle}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login start: {:?}", r.text().await);
    let binding = cookie_pair(&r, "atsession-login").unwrap();
    let to = r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let redirect = peer
        .sign_in_and_consent(&to, &account.handle, &account.password)
        .await
        .unwrap();
    let callback = &redirect[redirect.find("/oauth/callback").unwrap()..];
    let r = http
        .get(format!("{base}{callback}"))
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "callback: {:?}", r.text().await);
    cookie_pair(&r, "atsession").unwrap()
}
