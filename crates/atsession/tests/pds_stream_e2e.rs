//! PDS calls of every size against the official atproto PDS: `listRecords` answers of more
//! than 1 MB, a 50 MB blob uploaded from a file and read back as a stream, byte for byte,
//! `getRepo` of a repository of a few thousand records written to a file, XRPC errors
//! with the server's message, and an upload that starts after the access token expired
//! (one refresh, the body sent once, counted at a recording proxy on loopback).
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && bash e2e/pds/up.sh /tmp/pds-refresh.json &&
//!  ATSESSION_E2E_PDS=/tmp/pds.json ATSESSION_E2E_PDS_REFRESH=/tmp/pds-refresh.json
//!  cargo test -p atsession --features oauth,sqlite --test pds_stream_e2e`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/pds.rs"]
mod pds;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::{
    AuthorizeOptions, CallbackParams, ClientMetadata, GetterConfig, Grant, GrantError, OAuthClient,
    OAuthClientConfig, OAuthSession, PdsBody, PdsRequest, SessionEvent, SessionGetter,
};
use atsession::oauth::{HandleResolver, IdentityConfig};
use atsession::store::MemoryStore;
use futures_util::StreamExt as _;
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const REDIRECT: &str = "http://127.0.0.1:8080/callback";

fn client(peer: &pds::Peer, http: Option<reqwest::Client>) -> OAuthClient<MemoryStore> {
    let metadata = ClientMetadata::loopback(&[REDIRECT], "atproto transition:generic").unwrap();
    let identity = IdentityConfig {
        plc_url: Url::parse(peer.plc_url()).unwrap(),
        handle_resolver: HandleResolver::Xrpc(Url::parse(peer.handle_resolver_url()).unwrap()),
        cache_ttl: Duration::from_secs(60),
    };
    let mut config = OAuthClientConfig::new(
        metadata,
        AtRestKeyring::new(AtRestKey::generate("k").unwrap()),
    )
    .dev_mode(true)
    .identity(identity);
    if let Some(http) = http {
        config = config.http_client(http);
    }
    OAuthClient::new(config, MemoryStore::new()).unwrap()
}

async fn login(peer: &pds::Peer, client: &OAuthClient<MemoryStore>, handle: &str) -> Grant {
    let account = peer.account(handle).clone();
    let url = client
        .authorize(handle, AuthorizeOptions::default())
        .await
        .expect("authorize");
    let redirect = peer
        .sign_in_and_consent(url.as_str(), &account.handle, &account.password)
        .await
        .expect("sign-in and consent");
    let query = Url::parse(&redirect).unwrap().query().unwrap().to_owned();
    client
        .callback(&CallbackParams::from_query(&query).unwrap())
        .await
        .expect("callback")
        .grant
}

async fn session_for(peer: &pds::Peer, handle: &str) -> (OAuthSession<MemoryStore>, String) {
    let client = client(peer, None);
    let data = login(peer, &client, handle).await;
    let did = data.token_set.sub.to_string();
    let getter = SessionGetter::new(client, GetterConfig::default());
    (getter.session(data.grant_id), did)
}

/// Creates `n` records of `size` bytes of text in `collection`, `batch` per `applyWrites`.
async fn create_records(
    session: &OAuthSession<MemoryStore>,
    did: &str,
    collection: &str,
    n: usize,
    size: usize,
    batch: usize,
) {
    let text = "a".repeat(size);
    for start in (0..n).step_by(batch) {
        let writes: Vec<Value> = (start..(start + batch).min(n))
            .map(|i| {
                json!({
                    "$type": "com.atproto.repo.applyWrites#create",
                    "collection": collection,
                    "value": {"$type": collection, "n": i, "text": text},
                })
            })
            .collect();
        let _: Value = session
            .xrpc_procedure(
                "com.atproto.repo.applyWrites",
                &json!({"repo": did, "writes": writes}),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn list_records_answers_over_a_megabyte_and_xrpc_errors_keep_the_message() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let (session, did) = session_for(&peer, "alice.test").await;
    create_records(&session, &did, "com.example.big", 100, 12_000, 25).await;
    let answer = session
        .send(PdsRequest::query(
            "com.atproto.repo.listRecords",
            &[
                ("repo", &did),
                ("collection", "com.example.big"),
                ("limit", "100"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.unwrap();
    assert!(body.len() > 1_000_000, "{} bytes", body.len());
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 100);
    // The buffered helper has no cap on PDS answers either.
    let page: Value = session
        .xrpc_query(
            "com.atproto.repo.listRecords",
            &[
                ("repo", &did),
                ("collection", "com.example.big"),
                ("limit", "100"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 100);

    // An XRPC error keeps the status, the error name and the server's message.
    let e = session
        .xrpc_query::<Value>("com.atproto.repo.listRecords", &[])
        .await
        .unwrap_err();
    match &e {
        GrantError::Xrpc {
            status,
            error,
            message,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error, "InvalidRequest");
            let message = message.as_deref().unwrap();
            assert!(message.contains("repo"), "{message}");
            assert!(e.to_string().contains(message), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The same from a streamed call.
    let answer = session
        .send(PdsRequest::query(
            "com.atproto.sync.getBlob",
            &[
                ("did", &did),
                (
                    "cid",
                    "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                ),
            ],
        ))
        .await
        .unwrap();
    let e = answer.error_for_status().await.unwrap_err();
    assert!(
        matches!(&e, GrantError::Xrpc { status: 400, error, message: Some(m) } if error == "InvalidRequest" && m == "Blob not found"),
        "{e:?}"
    );
}

/// Writes `len` pseudo-random bytes to `path` in 1 MiB pieces; returns their SHA-256.
async fn write_random_file(path: &Path, len: usize) -> [u8; 32] {
    let mut file = tokio::fs::File::create(path).await.unwrap();
    let mut hash = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut piece = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len());
        for b in &mut piece[..n] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        hash.update(&piece[..n]);
        file.write_all(&piece[..n]).await.unwrap();
        left -= n;
    }
    file.flush().await.unwrap();
    hash.finalize().into()
}

#[tokio::test]
async fn a_50_mb_blob_goes_up_streamed_and_comes_back_identical() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    const LEN: usize = 50 * 1024 * 1024;
    let (session, did) = session_for(&peer, "bob.test").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.bin");
    let sent_hash = write_random_file(&path, LEN).await;

    let body = PdsBody::file(&path).await.unwrap();
    assert!(!body.is_resendable());
    assert_eq!(body.len(), Some(LEN as u64));
    let uploaded: Value = session
        .send(
            PdsRequest::procedure("com.atproto.repo.uploadBlob")
                .header("content-type", "application/octet-stream")
                .body(body),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let blob = uploaded["blob"].clone();
    assert_eq!(blob["size"], LEN);
    let cid = blob["ref"]["$link"].as_str().unwrap().to_owned();
    // A blob is kept once a record refers to it.
    let _: Value = session
        .xrpc_procedure(
            "com.atproto.repo.createRecord",
            &json!({
                "repo": did,
                "collection": "com.example.media",
                "record": {"$type": "com.example.media", "file": blob},
            }),
        )
        .await
        .unwrap();

    let answer = session
        .send(PdsRequest::query(
            "com.atproto.sync.getBlob",
            &[("did", &did), ("cid", &cid)],
        ))
        .await
        .unwrap()
        .error_for_status()
        .await
        .unwrap();
    assert_eq!(answer.content_length(), Some(LEN as u64));
    let mut hash = Sha256::new();
    let mut got = 0usize;
    let mut largest = 0usize;
    let mut chunks = std::pin::pin!(answer.bytes_stream());
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        got += chunk.len();
        largest = largest.max(chunk.len());
        hash.update(&chunk);
    }
    assert_eq!(got, LEN);
    assert_eq!(<[u8; 32]>::from(hash.finalize()), sent_hash);
    assert!(largest < 4 << 20, "read in pieces, not whole: {largest}");
}

#[tokio::test]
async fn get_repo_of_thousands_of_records_is_written_to_a_file() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let (session, did) = session_for(&peer, "carol.test").await;
    create_records(&session, &did, "com.example.small", 3000, 20, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.car");
    let mut answer = session
        .send(
            PdsRequest::query("com.atproto.sync.getRepo", &[("did", &did)])
                .header("accept", "application/vnd.ipld.car"),
        )
        .await
        .unwrap()
        .error_for_status()
        .await
        .unwrap();
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "application/vnd.ipld.car"
    );
    let mut file = tokio::fs::File::create(&path).await.unwrap();
    while let Some(chunk) = answer.chunk().await.unwrap() {
        file.write_all(&chunk).await.unwrap();
    }
    file.flush().await.unwrap();
    drop(file);
    let car = tokio::fs::read(&path).await.unwrap();
    assert_eq!(car.len() as u64, answer.received());
    // 3000 records of about 60 bytes, plus the tree and the commit.
    assert!(car.len() > 3000 * 60, "{} bytes", car.len());
    // A CARv1: a varint-prefixed DAG-CBOR header naming `roots` and `version`.
    let head = &car[..car.len().min(120)];
    assert!(head.windows(5).any(|w| w == b"roots"));
    assert!(head.windows(7).any(|w| w == b"version"));
    // Every record is in it: the text of each (`n` differs) is a CBOR map with `n`.
    let records = car.windows(20).filter(|w| *w == [b'a'; 20]).count();
    assert!(records >= 3000, "{records} records found");
}

/// One connection through the recording proxy: the request line and the bytes the client
/// sent after the request head.
#[derive(Debug)]
struct Relayed {
    request_line: String,
    body_bytes: Arc<AtomicU64>,
}

/// A forward HTTP proxy on loopback that records every request and counts the bytes of
/// each request body.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<Relayed>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let l = Arc::clone(&l);
            tokio::spawn(async move { relay(sock, l).await });
        }
    });
    (url, log)
}

async fn relay(sock: TcpStream, log: Arc<Mutex<Vec<Relayed>>>) {
    let mut client = BufReader::new(sock);
    let mut first = String::new();
    if client.read_line(&mut first).await.unwrap_or(0) == 0 {
        return;
    }
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let target = Url::parse(target).unwrap();
    let origin_form = match target.query() {
        Some(q) => format!("{}?{q}", target.path()),
        None => target.path().to_owned(),
    };
    let mut head = format!("{method} {origin_form} {version}");
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let end = line == "\r\n";
        if !line.to_ascii_lowercase().starts_with("proxy-") {
            head.push_str(&line);
        }
        if end {
            break;
        }
    }
    let body_bytes = Arc::new(AtomicU64::new(0));
    log.lock().unwrap().push(Relayed {
        request_line: format!("{method} {origin_form}"),
        body_bytes: Arc::clone(&body_bytes),
    });
    let upstream = TcpStream::connect(("127.0.0.1", target.port().unwrap()))
        .await
        .unwrap();
    let (mut up_read, mut up_write) = upstream.into_split();
    up_write.write_all(head.as_bytes()).await.unwrap();
    let buffered = client.buffer().to_vec();
    let mut client = client.into_inner();
    let (mut client_read, mut client_write) = client.split();
    let upload = async {
        body_bytes.fetch_add(buffered.len() as u64, Ordering::SeqCst);
        up_write.write_all(&buffered).await?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            body_bytes.fetch_add(n as u64, Ordering::SeqCst);
            up_write.write_all(&buf[..n]).await?;
        }
        up_write.shutdown().await
    };
    let download = async {
        tokio::io::copy(&mut up_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    let _ = tokio::join!(upload, download);
}

#[tokio::test]
async fn an_upload_after_expiry_refreshes_once_and_sends_the_body_once() {
    let Some(peer) = pds::refresh_peer_or_skip!() else {
        return;
    };
    peer.set_token_max_age(Duration::from_secs(6))
        .await
        .unwrap();
    let (proxy, relayed) = recording_proxy().await;
    // One connection per request, so that the proxy sees each request on its own.
    let http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).unwrap())
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let client = client(&peer, Some(http));
    let data = login(&peer, &client, "alice.test").await;
    let getter = SessionGetter::new(
        client,
        GetterConfig {
            stale_margin: Duration::from_secs(1),
            stale_jitter: Duration::ZERO,
            ..GetterConfig::default()
        },
    );
    let mut events = getter.subscribe();
    let session = getter.session(data.grant_id.clone());
    // Wait until the access token has expired.
    let left = data.token_set.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    tokio::time::sleep(left.unsigned_abs() + Duration::from_millis(300)).await;
    relayed.lock().unwrap().clear();

    const LEN: usize = 5 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.bin");
    write_random_file(&path, LEN).await;
    let uploaded: Value = session
        .send(
            PdsRequest::procedure("com.atproto.repo.uploadBlob")
                .header("content-type", "application/octet-stream")
                .body(PdsBody::file(&path).await.unwrap()),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded["blob"]["size"], LEN);
    peer.set_token_max_age(Duration::from_secs(3600))
        .await
        .unwrap();

    let relayed = relayed.lock().unwrap();
    let lines: Vec<&str> = relayed.iter().map(|r| r.request_line.as_str()).collect();
    let refreshes = lines.iter().filter(|l| **l == "POST /oauth/token").count();
    assert_eq!(refreshes, 1, "one refresh: {lines:?}");
    let uploads: Vec<&Relayed> = relayed
        .iter()
        .filter(|r| {
            r.request_line
                .starts_with("POST /xrpc/com.atproto.repo.uploadBlob")
        })
        .collect();
    assert_eq!(uploads.len(), 1, "the body went once: {lines:?}");
    assert_eq!(
        uploads[0].body_bytes.load(Ordering::SeqCst),
        LEN as u64,
        "exactly the body, once"
    );
    // The refresh came before the upload.
    let refresh_at = lines
        .iter()
        .position(|l| *l == "POST /oauth/token")
        .unwrap();
    let upload_at = lines
        .iter()
        .position(|l| l.starts_with("POST /xrpc/com.atproto.repo.uploadBlob"))
        .unwrap();
    assert!(refresh_at < upload_at, "{lines:?}");
    let updated = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, SessionEvent::Updated(_)))
        .count();
    assert_eq!(updated, 1);
}

#[tokio::test]
async fn a_refused_refresh_keeps_the_server_description_and_no_token() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let client = client(&peer, None);
    let data = login(&peer, &client, "alice.test").await;
    // The first refresh rotates the refresh token; sending the old one again is a replay.
    let fresh = client.refresh(&data).await.unwrap();
    let e = client.refresh(&data).await.unwrap_err();
    assert!(e.is_invalid_grant(), "{e:?}");
    let atsession::oauth::OAuthError::Server { description, .. } = &e else {
        panic!("{e:?}")
    };
    let description = description.as_deref().expect("the server's description");
    assert!(!description.is_empty());
    let shown = e.to_string();
    assert!(shown.contains(description), "{shown}");
    for secret in [
        data.token_set.refresh_token.as_ref().unwrap().expose(),
        fresh.refresh_token.as_ref().unwrap().expose(),
        fresh.access_token.expose(),
    ] {
        assert!(!shown.contains(secret) && !format!("{e:?}").contains(secret));
    }
    eprintln!("refused refresh: {shown}");
}
