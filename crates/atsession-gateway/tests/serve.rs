//! `atsession serve` as a real process on a free port, spoken to over plain HTTP/1.1.
#![allow(clippy::unwrap_used)]

#[path = "support/bin.rs"]
mod bin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use atsession::app::SessionManager;
use atsession::store::sqlite::SqliteStore;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db: &std::path::Path) -> Server {
    let mut child = bin::atsession()
        .args(["serve", "--listen", "127.0.0.1:0", "--dev", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    Server { child, addr }
}

/// One request; returns (status, headers, body).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn session_refresh_and_logout_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let server = start(&db);
    let a = server.addr.as_str();

    let (status, _, body) = request(a, "GET", "/healthz", &[], "");
    assert_eq!((status, body.as_str()), (200, "ok"));

    // A session as the login flow would create it, in the gateway's own database.
    let m = SessionManager::new(SqliteStore::open(&db).await.unwrap());
    let new = m
        .create(
            "did:plc:alice00000000000000000000",
            "alice.test",
            serde_json::json!({"x": 1}),
        )
        .await
        .unwrap();
    let cookie = format!("atsession={}", new.token.expose());

    let (status, _, body) = request(a, "GET", "/session", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["did"], "did:plc:alice00000000000000000000");
    assert_eq!(json["data"]["x"], 1);
    assert!(!body.contains(new.token.expose()));

    let (status, _, body) = request(a, "GET", "/session", &[("Cookie", "atsession=junk")], "");
    assert_eq!(status, 401);
    assert!(body.contains("malformed session token"), "{body}");
    let (status, _, _) = request(a, "GET", "/session", &[], "");
    assert_eq!(status, 401);

    // Mobile: refresh with the session token, then use the access token as Bearer.
    let refresh_body = format!("{{\"session_token\":\"{}\"}}", new.token.expose());
    let (status, _, body) = request(
        a,
        "POST",
        "/session/refresh",
        &[("Content-Type", "application/json")],
        &refresh_body,
    );
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let access = json["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {access}");
    let (status, _, _) = request(a, "GET", "/session", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200);
    let (status, _, _) = request(
        a,
        "POST",
        "/session/refresh",
        &[("Content-Type", "application/json")],
        "{\"session_token\":\"nope\"}",
    );
    assert_eq!(status, 401);

    // A cookie-authenticated POST without `x-csrf: 1` is refused, and changes nothing.
    let (status, _, body) = request(a, "POST", "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CsrfHeaderMissing"), "{body}");
    let (status, _, _) = request(a, "GET", "/session", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    let (status, head, _) = request(
        a,
        "POST",
        "/logout",
        &[("Cookie", &cookie), ("x-csrf", "1")],
        "",
    );
    assert_eq!(status, 204);
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: atsession=;"),
        "{head}"
    );
    let (status, _, _) = request(a, "GET", "/session", &[("Cookie", &cookie)], "");
    assert_eq!(status, 401);
    let (status, _, _) = request(a, "GET", "/session", &[("Authorization", &bearer)], "");
    assert_eq!(status, 401);
}
