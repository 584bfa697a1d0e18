//! The gateway's browser-facing surface without a PDS: the sign-in page at `/` or a
//! `--static` app, response headers, CORS only for `--allow-origin`s, the login rate limit,
//! `/metrics`, and error bodies that name no internal URL outside `--dev`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "support/gateway.rs"]
mod gateway;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use gateway::{Gateway, client};

#[tokio::test(flavor = "multi_thread")]
async fn the_page_headers_cors_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let gw = Gateway::start(
        None,
        [
            "--db",
            db.to_str().unwrap(),
            "--allow-origin",
            "https://app.example",
        ],
    )
    .await;
    let http = client();

    let r = http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(r.text().await.unwrap().contains(r#"action="/oauth/login""#));

    // CORS preflight: granted to the allowed origin with credentials, not to others.
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            gw.url("/xrpc/com.atproto.repo.createRecord"),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-csrf")
        .send()
    };
    let r = preflight("https://app.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed.contains("x-csrf") && allowed.contains("atproto-proxy"),
        "{allowed}"
    );
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // A cookie POST from the allowed origin passes the CSRF rule (and is 401: no session);
    // from another origin it is refused.
    let post = |origin: &'static str| {
        http.post(gw.url("/xrpc/com.atproto.repo.createRecord"))
            .header("cookie", "atsession=AAAA")
            .header("x-csrf", "1")
            .header("origin", origin)
            .send()
    };
    let r = post("https://app.example").await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post("https://evil.example").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("OriginNotAllowed"));

    let text = http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"atsession_http_requests_total{route="/",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/xrpc/{nsid}",method="POST",status="401""#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_app_the_login_limit_and_production_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("index.html"), "<h1>my app</h1>").unwrap();
    std::fs::write(app.join("app.js"), "console.log(1)").unwrap();
    // Not --dev: errors carry no causes. The handle resolver is an internal address that
    // must not show in any answer.
    let gw = Gateway::start(
        None,
        [
            "--db",
            db.to_str().unwrap(),
            "--static",
            app.to_str().unwrap(),
            "--login-rate",
            "3",
            "--handle-resolver",
            "http://127.0.0.1:9/internal-resolver",
            "--plc-url",
            "http://127.0.0.1:9/internal-plc",
        ],
    )
    .await;
    let http = client();
    for path in ["/", "/profile/alice"] {
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "<h1>my app</h1>");
    }
    assert_eq!(
        http.get(gw.url("/app.js"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "console.log(1)"
    );
    // The gateway's routes win.
    let r = http.get(gw.url("/session")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    for identifier in [
        "alice.test",
        "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "http://127.0.0.1:9/pds",
    ] {
        let r = http
            .get(gw.url(&format!("/oauth/login?identifier={identifier}")))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error() || r.status().is_server_error());
        let body = r.text().await.unwrap();
        for secret in [
            "127.0.0.1:9",
            "internal-resolver",
            "internal-plc",
            "sqlite",
            "g.db",
        ] {
            assert!(
                !body.contains(secret),
                "{identifier}: {body} names {secret}"
            );
        }
    }
    // The third login start above was the last of the minute for this address.
    let r = http
        .get(gw.url("/oauth/login?identifier=alice.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Without --trusted-proxy, X-Forwarded-For is not believed.
    let r = http
        .get(gw.url("/oauth/login?identifier=alice.test"))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Other routes are not limited.
    assert_eq!(
        http.get(gw.url("/livez")).send().await.unwrap().status(),
        200
    );
}

/// Behind a trusted reverse proxy, logins are counted per client address of
/// `X-Forwarded-For`, and what a client writes left of the proxy's entry is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_logins_are_counted_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    let gw = Gateway::start(
        None,
        [
            "--db",
            db.to_str().unwrap(),
            "--login-rate",
            "1",
            "--trusted-proxy",
            "127.0.0.0/8,::1",
            "--handle-resolver",
            "http://127.0.0.1:9/",
        ],
    )
    .await;
    let http = client();
    let login = |forwarded: &'static str| {
        let http = http.clone();
        let url = gw.url("/oauth/login?identifier=alice.test");
        async move {
            http.get(url)
                .header("accept", "application/json")
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_ne!(login("198.51.100.1").await, 429);
    assert_eq!(login("198.51.100.1").await, 429);
    assert_eq!(login("203.0.113.7, 198.51.100.1").await, 429);
    assert_ne!(login("198.51.100.2").await, 429);
}
