//! Streamed PDS calls against a small fake PDS on 127.0.0.1, for what the official PDS
//! cannot be made to show: a PDS that keeps asking for a new DPoP nonce, one that refuses
//! the access token of a streamed upload, one that stalls in the middle of a body, a slow
//! but steady upload, hostile paths and headers (a listener counts zero hits), and a 1 GB
//! metadata document (streamed, never allocated) cut at the discovery limit.
//!
//! `cargo test -p atsession --features oauth --test pds_stream_fake`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::DpopKey;
use atsession::oauth::reqwest::Method;
use atsession::oauth::reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use atsession::oauth::{
    AuthorizeOptions, ClientAuth, ClientMetadata, GetterConfig, Grant, GrantError, OAuthClient,
    OAuthClientConfig, OAuthError, PdsBody, PdsRequest, Refresh, RetryReason, SessionGetter,
    TokenSet,
};
use atsession::oauth::{HttpError, PdsOptions};
use atsession::secret::SecretString;
use atsession::store::MemoryStore;
use atsession::store::oauth::{GrantId, GrantStore};
use atsession::syntax::Did;
use base64::Engine as _;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DID: &str = "did:plc:alice0000000000000000000";
const UPLOAD: &str = "com.atproto.repo.uploadBlob";
const IDLE: Duration = Duration::from_millis(600);

/// How the fake PDS answers XRPC calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Requires the nonce `good`; any other proof gets `use_dpop_nonce` with `good`.
    NonceOnce,
    /// Every call gets `use_dpop_nonce` with a new nonce.
    NonceAlways,
    /// Accepts only the current access token (`access-<n>` after the n-th refresh; none
    /// before), with any nonce.
    TokenCheck,
    /// `getBlob` sends the headers and 100 KB of a 1 MB body, then nothing.
    Stall,
}

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    nonce: Option<String>,
    body_bytes: u64,
}

struct Fake {
    url: String,
    mode: Mutex<Mode>,
    valid_access: Mutex<String>,
    token_calls: AtomicUsize,
    nonce_counter: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

fn proof_nonce(proof: &str) -> Option<String> {
    let claims = proof.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    v.get("nonce")?.as_str().map(str::to_owned)
}

/// Reads a request: the head, then the whole body (by length or chunked), counted.
async fn read_request(
    sock: &mut BufReader<TcpStream>,
) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut first = String::new();
    if sock.read_line(&mut first).await.ok()? == 0 {
        return None;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        sock.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        sock.read_exact(&mut body).await.ok()?;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            sock.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            sock.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let path = first.split(' ').nth(1)?.to_owned();
    Some((path, headers, body))
}

impl Fake {
    async fn start(mode: Mode) -> Arc<Fake> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let fake = Arc::new(Fake {
            url,
            mode: Mutex::new(mode),
            valid_access: Mutex::new("access-0".into()),
            token_calls: AtomicUsize::new(0),
            nonce_counter: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let f = Arc::clone(&fake);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let f = Arc::clone(&f);
                tokio::spawn(async move { f.serve(sock).await });
            }
        });
        fake
    }

    fn seen(&self, path_prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    async fn serve(&self, sock: TcpStream) {
        let mut sock = BufReader::new(sock);
        let Some((path, headers, body)) = read_request(&mut sock).await else {
            return;
        };
        let nonce = headers.get("dpop").and_then(|p| proof_nonce(p));
        self.seen.lock().unwrap().push(Seen {
            path: path.clone(),
            nonce: nonce.clone(),
            body_bytes: body.len() as u64,
        });
        let mode = *self.mode.lock().unwrap();
        let (status, extra, resp) = if path == "/.well-known/oauth-authorization-server" {
            (
                "200 OK",
                String::new(),
                fake_http::as_metadata(&self.url).to_string(),
            )
        } else if path == "/oauth/token" {
            let n = self.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
            *self.valid_access.lock().unwrap() = format!("access-{n}");
            let tokens = serde_json::json!({
                "access_token": format!("access-{n}"),
                "refresh_token": format!("refresh-{n}"),
                "token_type": "DPoP",
                "scope": "atproto",
                "expires_in": 3600,
                "sub": DID,
            });
            ("200 OK", String::new(), tokens.to_string())
        } else if path.starts_with("/xrpc/") {
            let auth = headers.get("authorization").cloned().unwrap_or_default();
            let ok = serde_json::json!({"blob": {"size": body.len()}, "did": DID}).to_string();
            let want_nonce = |n: String| {
                (
                    "401 Unauthorized",
                    format!(
                        "dpop-nonce: {n}\r\nwww-authenticate: DPoP error=\"use_dpop_nonce\"\r\n"
                    ),
                    r#"{"error":"use_dpop_nonce","message":"DPoP nonce mismatch"}"#.to_owned(),
                )
            };
            match mode {
                Mode::NonceOnce if nonce.as_deref() != Some("good") => want_nonce("good".into()),
                Mode::NonceOnce => ("200 OK", "dpop-nonce: good\r\n".into(), ok),
                Mode::NonceAlways => {
                    let n = self.nonce_counter.fetch_add(1, Ordering::SeqCst);
                    want_nonce(format!("nonce-{n}"))
                }
                Mode::TokenCheck => {
                    if auth == format!("DPoP {}", self.valid_access.lock().unwrap()) {
                        ("200 OK", "dpop-nonce: good\r\n".into(), ok)
                    } else {
                        (
                            "401 Unauthorized",
                            "dpop-nonce: good\r\nwww-authenticate: DPoP error=\"invalid_token\", error_description=\"expired\"\r\n".into(),
                            r#"{"error":"InvalidToken","message":"Token has expired"}"#.into(),
                        )
                    }
                }
                Mode::Stall => {
                    let mut sock = sock.into_inner();
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\ndpop-nonce: good\r\n\r\n";
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&[7u8; 100_000]).await;
                    let _ = sock.flush().await;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
            }
        } else {
            ("404 Not Found", String::new(), "{}".to_owned())
        };
        fake_http::answer_json(&mut sock.into_inner(), status, &extra, &resp).await;
    }
}

fn keyring() -> AtRestKeyring {
    AtRestKeyring::new(AtRestKey::new("test", [7; 32]).unwrap())
}

struct Setup {
    client: OAuthClient<MemoryStore>,
    getter: SessionGetter<MemoryStore>,
    grant: GrantId,
    data: Grant,
}

/// A fresh grant (one hour left) on the PDS at `pds_url`, which is its own authorization
/// server.
async fn setup(pds_url: &str) -> Setup {
    setup_expiring(pds_url, Duration::from_secs(3600)).await
}

/// A grant whose access token expires in `expires_in`.
async fn setup_expiring(pds_url: &str, expires_in: Duration) -> Setup {
    let store = MemoryStore::new();
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], "atproto").unwrap();
    let client = OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring())
            .dev_mode(true)
            .pds_options(PdsOptions {
                idle_timeout: IDLE,
                ..PdsOptions::default()
            }),
        store.clone(),
    )
    .unwrap();
    let now = atsession::clock::truncate_ms(time::OffsetDateTime::now_utc());
    let data = Grant {
        grant_id: GrantId::generate(),
        token_set: TokenSet {
            iss: pds_url.to_owned(),
            sub: Did::new(DID).unwrap(),
            aud: format!("{pds_url}/"),
            scope: "atproto".into(),
            access_token: SecretString::new("access-0"),
            refresh_token: Some(SecretString::new("refresh-0")),
            expires_at: Some(now + expires_in),
        },
        dpop_key: DpopKey::generate(),
        auth: ClientAuth::None,
        created_at: now,
    };
    store
        .create_grant(&data.seal(&keyring(), now, 1).unwrap())
        .await
        .unwrap();
    Setup {
        getter: SessionGetter::new(client.clone(), GetterConfig::default()),
        client,
        grant: data.grant_id.clone(),
        data,
    }
}

/// A stream body of `n` bytes in 16 KiB chunks, counting what is taken from it.
fn counted_stream(n: usize, taken: Arc<AtomicU64>) -> PdsBody {
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..n)
        .step_by(16 * 1024)
        .map(|at| Ok(Bytes::from(vec![b'x'; (n - at).min(16 * 1024)])))
        .collect();
    let stream = futures_util::StreamExt::inspect(futures_util::stream::iter(chunks), move |c| {
        if let Ok(c) = c {
            taken.fetch_add(c.len() as u64, Ordering::SeqCst);
        }
    });
    PdsBody::sized_stream(stream, n as u64)
}

fn upload(body: PdsBody) -> PdsRequest {
    PdsRequest::procedure(UPLOAD)
        .header("content-type", "application/octet-stream")
        .body(body)
}

async fn grant_kept(s: &Setup) {
    let data = s.getter.get(&s.grant, Refresh::AcceptStale).await;
    assert!(data.is_ok(), "the grant is kept: {data:?}");
}

#[tokio::test]
async fn a_streamed_upload_learns_the_nonce_first_and_is_sent_once() {
    let fake = Fake::start(Mode::NonceOnce).await;
    let s = setup(&fake.url).await;
    let taken = Arc::new(AtomicU64::new(0));
    let session = s.getter.session(s.grant.clone());
    let answer = session
        .send(upload(counted_stream(300_000, Arc::clone(&taken))))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let v: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(v["blob"]["size"], 300_000);
    // The probe learnt the nonce; the upload went once, with it, whole.
    let xrpc = fake.seen("/xrpc/");
    assert_eq!(xrpc.len(), 2, "{xrpc:?}");
    assert_eq!(xrpc[0].path, "/xrpc/com.atproto.server.getSession");
    assert_eq!(xrpc[0].nonce, None);
    assert_eq!(xrpc[1].path, format!("/xrpc/{UPLOAD}"));
    assert_eq!(xrpc[1].nonce.as_deref(), Some("good"));
    assert_eq!(xrpc[1].body_bytes, 300_000);
    assert_eq!(taken.load(Ordering::SeqCst), 300_000);
    // The nonce is cached: the next streamed upload costs no probe.
    let answer = session
        .send(upload(counted_stream(1000, Arc::new(AtomicU64::new(0)))))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fake.seen("/xrpc/").len(), 3);
}

#[tokio::test]
async fn use_dpop_nonce_to_a_streamed_upload_is_retryable_and_nothing_is_resent() {
    let fake = Fake::start(Mode::NonceAlways).await;
    let s = setup(&fake.url).await;
    let taken = Arc::new(AtomicU64::new(0));
    let session = s.getter.session(s.grant.clone());
    let e = session
        .send(upload(counted_stream(200_000, Arc::clone(&taken))))
        .await
        .unwrap_err();
    assert!(
        matches!(e, GrantError::Retryable(RetryReason::UseDpopNonce)),
        "{e:?}"
    );
    assert!(e.is_retryable());
    let uploads = fake.seen(&format!("/xrpc/{UPLOAD}"));
    assert_eq!(uploads.len(), 1, "the stream went once: {uploads:?}");
    assert_eq!(uploads[0].body_bytes, 200_000);
    assert_eq!(
        taken.load(Ordering::SeqCst),
        200_000,
        "read once, never twice"
    );
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 0);
    grant_kept(&s).await;

    // A body in memory is resent once with the new nonce (and here refused again).
    let before = fake.seen(&format!("/xrpc/{UPLOAD}")).len();
    let answer = session
        .send(upload(PdsBody::from(vec![1u8; 1000])))
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let uploads = fake.seen(&format!("/xrpc/{UPLOAD}"));
    assert_eq!(uploads.len() - before, 2, "one retry for a buffered body");
    assert_ne!(uploads[before].nonce, uploads[before + 1].nonce);
    // The XRPC error of the answer keeps the server's message.
    let e = answer.error_for_status().await.unwrap_err();
    match e {
        GrantError::Xrpc {
            status,
            error,
            message,
        } => {
            assert_eq!(status, 401);
            assert_eq!(error, "use_dpop_nonce");
            assert_eq!(message.as_deref(), Some("DPoP nonce mismatch"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn invalid_token_to_a_streamed_upload_refreshes_once_then_is_retryable() {
    let fake = Fake::start(Mode::TokenCheck).await;
    let s = setup(&fake.url).await;
    let session = s.getter.session(s.grant.clone());
    // A first call caches the nonce; then the token is revoked behind the client's back.
    let answer = session.send(upload(PdsBody::from("small"))).await.unwrap();
    assert_eq!(answer.status(), 200);
    *fake.valid_access.lock().unwrap() = "revoked-elsewhere".into();
    let taken = Arc::new(AtomicU64::new(0));
    let e = session
        .send(upload(counted_stream(100_000, Arc::clone(&taken))))
        .await
        .unwrap_err();
    assert!(
        matches!(e, GrantError::Retryable(RetryReason::InvalidToken)),
        "{e:?}"
    );
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(fake.seen(&format!("/xrpc/{UPLOAD}")).len(), 2);
    assert_eq!(taken.load(Ordering::SeqCst), 100_000);
    // The retry the error promises works, with the refreshed tokens, without a refresh.
    let answer = session
        .send(upload(counted_stream(100_000, Arc::new(AtomicU64::new(0)))))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1);
    let uploads = fake.seen(&format!("/xrpc/{UPLOAD}"));
    assert_eq!(uploads.len(), 3);
    assert_eq!(uploads[2].body_bytes, 100_000);
    grant_kept(&s).await;
}

#[tokio::test]
async fn a_refused_nonce_probe_refreshes_before_the_stream_is_sent() {
    let fake = Fake::start(Mode::TokenCheck).await;
    *fake.valid_access.lock().unwrap() = "revoked-elsewhere".into();
    let s = setup(&fake.url).await;
    let taken = Arc::new(AtomicU64::new(0));
    let answer = s
        .getter
        .session(s.grant.clone())
        .send(upload(counted_stream(100_000, Arc::clone(&taken))))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1, "one refresh");
    let xrpc = fake.seen("/xrpc/");
    assert_eq!(xrpc.len(), 2, "the probe, then the upload once: {xrpc:?}");
    assert_eq!(xrpc[0].path, "/xrpc/com.atproto.server.getSession");
    assert_eq!(xrpc[1].body_bytes, 100_000);
    assert_eq!(taken.load(Ordering::SeqCst), 100_000);
}

#[tokio::test]
async fn a_body_cap_when_set_ends_the_read() {
    let fake = Fake::start(Mode::Stall).await;
    let store = MemoryStore::new();
    let s = setup(&fake.url).await;
    // Another client on the same grant data, with a 50 KB cap.
    let metadata = ClientMetadata::loopback(&["http://127.0.0.1:1/cb"], "atproto").unwrap();
    let capped = OAuthClient::new(
        OAuthClientConfig::new(metadata, keyring())
            .dev_mode(true)
            .pds_options(PdsOptions {
                idle_timeout: IDLE,
                max_body: Some(50_000),
                ..PdsOptions::default()
            }),
        store,
    )
    .unwrap();
    let started = Instant::now();
    let e = capped
        .pds_request(
            &s.data,
            Method::GET,
            "/xrpc/com.atproto.sync.getBlob?did=x&cid=y",
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OAuthError::Http(HttpError::TooLarge { limit: 50_000, .. })
        ),
        "{e:?}"
    );
    assert!(
        started.elapsed() < IDLE,
        "cut at once, not by the idle timeout"
    );
}

#[tokio::test]
async fn a_body_in_memory_is_refreshed_and_resent_on_invalid_token() {
    let fake = Fake::start(Mode::TokenCheck).await;
    *fake.valid_access.lock().unwrap() = "revoked-elsewhere".into();
    let s = setup(&fake.url).await;
    let session = s.getter.session(s.grant.clone());
    // Larger than one slice, so it is handed over in parts, and resent whole.
    let answer = session
        .send(upload(PdsBody::from(vec![3u8; 200_000])))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 1);
    let uploads = fake.seen(&format!("/xrpc/{UPLOAD}"));
    assert_eq!(uploads.len(), 2);
    assert!(
        uploads.iter().all(|u| u.body_bytes == 200_000),
        "{uploads:?}"
    );
}

#[tokio::test]
async fn a_server_stalling_mid_body_ends_the_read_within_the_idle_timeout() {
    let fake = Fake::start(Mode::Stall).await;
    let s = setup(&fake.url).await;
    let session = s.getter.session(s.grant.clone());
    let mut answer = session
        .send(PdsRequest::query(
            "com.atproto.sync.getBlob",
            &[("did", DID), ("cid", "bafkrei")],
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.content_length(), Some(1_000_000));
    let started = Instant::now();
    let e = loop {
        match answer.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the body cannot end: it is short"),
            Err(e) => break e,
        }
    };
    let waited = started.elapsed();
    assert!(matches!(e, HttpError::Idle { .. }), "{e:?}");
    assert_eq!(answer.received(), 100_000);
    assert!(waited >= IDLE && waited < IDLE * 4, "{waited:?}");
    assert!(
        !e.to_string().contains("access-0"),
        "no token in the error: {e}"
    );
    grant_kept(&s).await;
    assert_eq!(fake.token_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_slow_but_steady_upload_outlives_the_idle_timeout() {
    let fake = Fake::start(Mode::NonceOnce).await;
    let s = setup(&fake.url).await;
    // Ten chunks, one every 250 ms: 2.5 s in all, four times the idle timeout.
    let stream = futures_util::StreamExt::then(futures_util::stream::iter(0..10), |_| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 10_000]))
    });
    let started = Instant::now();
    let answer = s
        .getter
        .session(s.grant.clone())
        .send(upload(PdsBody::stream(stream)))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() > IDLE * 3);
    let uploads = fake.seen(&format!("/xrpc/{UPLOAD}"));
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].body_bytes, 100_000, "sent chunked, whole");
}

/// A listener that counts connections and never answers.
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn hostile_paths_and_headers_are_refused_without_a_request() {
    let (pds, pds_hits) = counting_listener().await;
    let (other, other_hits) = counting_listener().await;
    let other_host = other.trim_start_matches("http://");
    // Stale tokens: a refresh, too, would be a request (the PDS is its own server here).
    let s = setup_expiring(&pds, Duration::from_secs(1)).await;
    let session = s.getter.session(s.grant.clone());
    let paths = [
        format!("//{other_host}/xrpc/a.b.c"),
        format!("{other}/xrpc/a.b.c"),
        "https://evil.example/x".to_owned(),
        "\\\\evil.example\\x".to_owned(),
        "/\\evil.example/x".to_owned(),
        "/xrpc/../oauth/token".to_owned(),
        "/xrpc/%2e%2e/oauth/token".to_owned(),
        "/xrpc/%2E%2E%2Foauth%2Ftoken".to_owned(),
        "/xrpc/a.b.c/../../oauth/token".to_owned(),
        "/xrpc/a.b.c\r\nHost: evil.example".to_owned(),
        "/xrpc/a.b.c\u{0}".to_owned(),
        "/xrpc/a.b.c\t".to_owned(),
        "/xrpc/a.b.c x".to_owned(),
        "/xrpc/a.b.c?x=1?y=//evil.example".to_owned(),
        "/xrpc/a.b.c#@evil.example".to_owned(),
        format!("@{other_host}/xrpc/a.b.c"),
        format!("/xrpc/a.b.c@{other_host}"),
        format!("//user@{other_host}/xrpc/a.b.c"),
        "/oauth/token".to_owned(),
        "xrpc/a.b.c".to_owned(),
        String::new(),
    ];
    for path in &paths {
        let e = session
            .send(PdsRequest::new(Method::GET, path.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                GrantError::OAuth(OAuthError::Http(HttpError::PdsPath(_)))
            ),
            "{path:?}: {e:?}"
        );
        let e = s
            .client
            .pds_send(
                &s.data,
                Method::POST,
                path,
                &HeaderMap::new(),
                Some(vec![1]),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, OAuthError::Http(HttpError::PdsPath(_))),
            "{path:?}: {e:?}"
        );
        let e = s
            .client
            .pds_request(&s.data, Method::GET, path, None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, OAuthError::Http(HttpError::PdsPath(_))),
            "{path:?}: {e:?}"
        );
    }
    for name in [
        "cookie",
        "authorization",
        "dpop",
        "host",
        "connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-authorization",
        "x-forwarded-host",
    ] {
        let mut request = PdsRequest::procedure("com.atproto.repo.createRecord").body("{}");
        request
            .headers_mut()
            .insert(HeaderName::from_static(name), HeaderValue::from_static("x"));
        let e = session.send(request).await.unwrap_err();
        match e {
            GrantError::OAuth(OAuthError::Http(HttpError::Header { name: n })) => {
                assert_eq!(n, name);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pds_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the PDS"
    );
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "nothing reached the other host"
    );
    // The same client still calls the PDS itself (the listener counts it).
    let _ = session
        .send(PdsRequest::query("com.atproto.server.getSession", &[]))
        .await;
    assert!(pds_hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
}

/// Serves a 1 GB document at every path (with or without a `Content-Length`), written from
/// one 64 KiB buffer; counts the bytes the client took before it hung up.
async fn gigabyte_server(announce_length: bool) -> (String, Arc<AtomicU64>) {
    const GB: u64 = 1 << 30;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let written = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let w = Arc::clone(&w);
            tokio::spawn(async move {
                let mut sock = BufReader::new(sock);
                if read_request(&mut sock).await.is_none() {
                    return;
                }
                let mut sock = sock.into_inner();
                let head = if announce_length {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {GB}\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = vec![b' '; 64 * 1024];
                buf[0] = b'[';
                let mut sent = 0u64;
                while sent < GB {
                    if sock.write_all(&buf).await.is_err() {
                        break;
                    }
                    sent += buf.len() as u64;
                    w.fetch_add(buf.len() as u64, Ordering::SeqCst);
                    buf[0] = b' ';
                }
            });
        }
    });
    (url, written)
}

fn too_large_in_chain(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(HttpError::TooLarge { limit, .. }) = err.downcast_ref::<HttpError>() {
            return *limit == atsession::oauth::DEFAULT_MAX_BODY;
        }
        cur = err.source();
    }
    false
}

#[tokio::test]
async fn a_1_gb_metadata_document_is_cut_at_the_discovery_limit() {
    for announce in [true, false] {
        let (url, written) = gigabyte_server(announce).await;
        let s = setup(&url).await;
        let started = Instant::now();
        let e = s
            .client
            .authorize(&url, AuthorizeOptions::default())
            .await
            .unwrap_err();
        assert!(too_large_in_chain(&e), "announce={announce}: {e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Give the writer a moment to notice the hang-up, then check it stopped early.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let w = written.load(Ordering::SeqCst);
        assert!(
            w < 64 << 20,
            "announce={announce}: the client read {w} bytes"
        );
    }
}
