//! The gateway as a backend-for-frontend against the official PDS: `/xrpc/{nsid}` forwards
//! the signed-in user's calls (cookie or Bearer) with the grant's DPoP-bound token: queries
//! with their query string, JSON procedures, a streamed upload and download, the response
//! headers a browser needs and none it must not see; the CSRF rule for cookie requests; a
//! session whose grant is gone ends; allow/deny lists and the scope pre-check refuse before
//! anything is sent; `/session` answers the grant's scope and expiry; metrics count it.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test serve_proxy`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use gateway::{Gateway, client, login};
use serde_json::{Value, json};
use std::time::Duration;

async fn list_notes(http: &reqwest::Client, gw: &Gateway, auth: (&str, &str), did: &str) -> usize {
    let r = http
        .get(gw.url(&format!(
            "/xrpc/com.atproto.repo.listRecords?repo={did}&collection=com.example.note"
        )))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["records"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_go_through_with_the_session_and_nothing_else() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gw = Gateway::start(Some(&peer), [std::ffi::OsStr::new("--db"), db.as_os_str()]).await;
    let http = client();

    // Without a session: 401 with a JSON body, nothing forwarded.
    let r = http
        .get(gw.url("/xrpc/com.atproto.server.getSession"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "AuthenticationRequired");

    let cookie = login(&http, &peer, &gw.base, "alice.test").await;
    let c = ("cookie", cookie.as_str());

    // A query: the PDS's answer, with the browser's headers and without the PDS's private ones.
    let r = http
        .get(gw.url("/xrpc/com.atproto.server.getSession"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(h["cache-control"], "no-store");
    for never in ["dpop-nonce", "www-authenticate", "set-cookie"] {
        assert!(h.get(never).is_none(), "{never} came back");
    }
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["did"], alice.did.as_str());
    assert_eq!(me["handle"], "alice.test");

    // /session: the grant's scope and the token's expiry.
    let r = http
        .get(gw.url("/session"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["did"], alice.did.as_str());
    assert!(s["scope"].as_str().unwrap().contains("atproto"), "{s}");
    assert!(s["token_expires_at"].is_string(), "{s}");
    assert!(s["idle_expires_at"].is_string() && s["absolute_expires_at"].is_string());

    // A cookie-authenticated write without `x-csrf: 1`, or from another site: refused,
    // nothing created.
    let note = json!({
        "repo": alice.did,
        "collection": "com.example.note",
        "record": {"$type": "com.example.note", "text": "through the gateway", "createdAt": "2026-12-01T00:00:00Z"},
    });
    let before = list_notes(&http, &gw, c, &alice.did).await;
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .header("origin", "https://evil.example")
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(list_notes(&http, &gw, c, &alice.did).await, before);

    // With the header: created.
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .header("origin", &gw.base)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let created: Value = r.json().await.unwrap();
    assert!(
        created["uri"]
            .as_str()
            .unwrap()
            .contains("com.example.note")
    );
    assert_eq!(list_notes(&http, &gw, c, &alice.did).await, before + 1);

    // An XRPC error from the PDS comes back as it is.
    let r = http
        .get(gw.url("/xrpc/com.atproto.repo.listRecords"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "InvalidRequest");

    // A 300 KiB upload of unknown length (chunked) and a 200 KiB one with a length: both
    // streamed to the PDS; the blob comes back byte for byte.
    let blob: Vec<u8> = (0..300 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        blob.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.uploadBlob"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let up: Value = r.json().await.unwrap();
    assert_eq!(up["blob"]["size"], blob.len());
    let sized = &blob[..200 * 1024];
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.uploadBlob"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .header("content-type", "application/octet-stream")
        .body(sized.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let up2: Value = r.json().await.unwrap();
    assert_eq!(up2["blob"]["size"], sized.len());
    // Referenced from a record so the PDS keeps it, then read back through getBlob.
    let cid = up["blob"]["ref"]["$link"].as_str().unwrap().to_owned();
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .json(&json!({
            "repo": alice.did,
            "collection": "com.example.file",
            "record": {"$type": "com.example.file", "file": up["blob"], "createdAt": "2026-12-01T00:00:00Z"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = http
        .get(gw.url(&format!(
            "/xrpc/com.atproto.sync.getBlob?did={}&cid={cid}",
            alice.did
        )))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        blob.len().to_string().as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), blob.as_slice());

    // A mobile client: a Bearer access token, no cookie, no CSRF header needed.
    let token = cookie.strip_prefix("atsession=").unwrap();
    let r = http
        .post(gw.url("/session/refresh"))
        .json(&json!({ "session_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {access}");
    let b = ("authorization", bearer.as_str());
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(b.0, b.1)
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(list_notes(&http, &gw, b, &alice.did).await, before + 2);

    // Not an NSID: 400, nothing sent.
    let r = http
        .get(gw.url("/xrpc/not-an-nsid"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The metrics count the route and the bytes that went up and down.
    let text = http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"atsession_http_requests_total{route="/xrpc/{nsid}",method="GET",status="200"}"#
        ),
        "{text}"
    );
    let bytes = |dir: &str| -> u64 {
        let key = format!("atsession_proxied_bytes_total{{direction=\"{dir}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
        line[key.len()..].trim().parse().unwrap()
    };
    assert!(bytes("up") >= 500 * 1024, "{text}");
    assert!(bytes("down") >= 300 * 1024, "{text}");

    // The grant is signed out elsewhere (deleted from the store): the next call is 401, the
    // app session ends and the cookie is cleared.
    let store = SqliteStore::open(&db).await.unwrap();
    let did = Did::new(alice.did.clone()).unwrap();
    let grants = store.list_grants_by_did(&did).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert!(store.delete_grant(&grants[0].id).await.unwrap());
    let r = http
        .get(gw.url("/xrpc/com.atproto.server.getSession"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"),
        "the cookie is cleared"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "AuthenticationRequired"
    );
    let r = http
        .get(gw.url("/session"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the app session ended");
    let r = http
        .get(gw.url("/xrpc/com.atproto.server.getSession"))
        .header(b.0, b.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "its access tokens too");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_and_the_scope_check_refuse_before_sending() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("bob.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gw = Gateway::start(
        Some(&peer),
        [
            "--db",
            db.to_str().unwrap(),
            "--scope",
            "atproto repo:com.example.note?action=create",
            "--check-scope",
            "--allow-nsid",
            "com.atproto.repo.*",
            "--allow-nsid",
            "com.atproto.server.getSession",
            "--deny-nsid",
            "com.atproto.repo.deleteRecord",
        ],
    )
    .await;
    let http = client();
    let cookie = login(&http, &peer, &gw.base, "bob.test").await;
    let c = ("cookie", cookie.as_str());

    let s: Value = http
        .get(gw.url("/session"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        s["scope"]
            .as_str()
            .unwrap()
            .contains("repo:com.example.note"),
        "{s}"
    );

    let post = |collection: &str| {
        json!({
            "repo": alice.did,
            "collection": collection,
            "record": {"$type": collection, "text": "x", "createdAt": "2026-12-01T00:00:00Z"},
        })
    };
    // Within the grant: created.
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .json(&post("com.example.note"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Outside it: 403 naming the scope, and nothing was created.
    let r = http
        .post(gw.url("/xrpc/com.atproto.repo.createRecord"))
        .header(c.0, c.1)
        .header("x-csrf", "1")
        .json(&post("com.example.other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "ScopeMissingError");
    assert_eq!(e["scope"], "repo:com.example.other?action=create");
    let r = http
        .get(gw.url(&format!(
            "/xrpc/com.atproto.repo.listRecords?repo={}&collection=com.example.other",
            alice.did
        )))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.unwrap()["records"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Denied and not-allowed methods: 403 before anything is sent.
    for (method, nsid) in [
        ("POST", "com.atproto.repo.deleteRecord"),
        ("GET", "app.bsky.actor.getProfile"),
        ("GET", "com.atproto.server.describeServer"),
    ] {
        let r = http
            .request(method.parse().unwrap(), gw.url(&format!("/xrpc/{nsid}")))
            .header(c.0, c.1)
            .header("x-csrf", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{nsid}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "MethodNotAllowed"
        );
    }
    let r = http
        .get(gw.url("/xrpc/com.atproto.server.getSession"))
        .header(c.0, c.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_slow_proxied_upload_finish() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let mut gw = Gateway::start(
        Some(&peer),
        ["--db", db.to_str().unwrap(), "--shutdown-timeout", "10"],
    )
    .await;
    let http = client();
    let cookie = login(&http, &peer, &gw.base, "carol.test").await;

    // 24 chunks of 8 KiB, one every 125 ms: a 3 s upload.
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i == 24 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(125)).await;
        Some((Ok::<_, std::io::Error>(vec![i as u8; 8 * 1024]), i + 1))
    });
    let upload = http
        .post(gw.url("/xrpc/com.atproto.repo.uploadBlob"))
        .header("cookie", &cookie)
        .header("x-csrf", "1")
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let upload = tokio::spawn(upload);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let signalled = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "the call in flight finished");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["blob"]["size"], 24 * 8 * 1024);
    // The gateway exits once it is done, well within the bound, and takes nothing new.
    let status = tokio::time::timeout(Duration::from_secs(10), gw.child.wait())
        .await
        .expect("the gateway exited within the shutdown bound")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(http.get(gw.url("/livez")).send().await.is_err());
}
