//! The little HTTP/1.1 the library tests' fake servers speak: one request read (its head and
//! a `Content-Length` body), one JSON answer written on a connection that is then closed, and
//! the authorization-server metadata they all serve. The faults each fake injects stay in
//! its own test file.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request as a fake server sees it.
pub struct Request {
    /// The request target: path and query.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body (as long as `Content-Length` says, or what came before the peer closed).
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The body as `application/x-www-form-urlencoded` fields.
    pub fn form(&self) -> HashMap<String, String> {
        atsession::oauth::url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// Reads one request; `None` when the peer closes or fails before the head is complete.
pub async fn read_request(sock: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    Some(Request {
        path: first.split(' ').nth(1).unwrap_or("/").to_owned(),
        headers,
        body: buf[head_end..].to_vec(),
    })
}

/// Writes a JSON answer with `extra` header lines (each ending in `\r\n`) and closes.
pub async fn answer_json(sock: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// The authorization-server metadata of a fake at `iss`: PAR, DPoP with ES256 only (so
/// grants made there have P-256 keys), both client auth methods.
pub fn as_metadata(iss: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": iss,
        "scopes_supported": ["atproto"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "pushed_authorization_request_endpoint": format!("{iss}/oauth/par"),
        "require_pushed_authorization_requests": true,
        "dpop_signing_alg_values_supported": ["ES256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true
    })
}
