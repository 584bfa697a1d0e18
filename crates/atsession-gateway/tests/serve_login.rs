//! `atsession serve` doing the whole job against the official PDS: `/oauth/login` sends the
//! browser to the PDS, the user's step is done with four HTTP calls, `/oauth/callback` stores
//! the grant, creates the app session and sets the cookie, `/session` finds it, and
//! `/logout` revokes the grant at the PDS and ends the session. A callback followed in
//! another browser (without the login's binding cookie) creates nothing.
//!
//! `bash e2e/pds/up.sh /tmp/pds.json && ATSESSION_E2E_PDS=/tmp/pds.json
//!  cargo test -p atsession-gateway --test serve_login`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/bin.rs"]
mod bin;
#[path = "../../atsession/tests/support/pds.rs"]
mod pds;

use std::process::Stdio;

use atsession::store::oauth::GrantStore;
use atsession::store::sqlite::SqliteStore;
use atsession::syntax::Did;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start(peer: &pds::Peer, db: &std::path::Path) -> Gateway {
    let mut child = Command::from(bin::atsession())
        .args(["serve", "--listen", "127.0.0.1:0", "--dev", "--db"])
        .arg(db)
        .arg("--plc-url")
        .arg(peer.plc_url())
        .arg("--handle-resolver")
        .arg(peer.handle_resolver_url())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let base = line.strip_prefix("listening on ").unwrap().to_owned();
    Gateway { child, base }
}

fn client() -> reqwest::Client {
    let _ = rustls_graviola::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_session_and_logout_through_the_gateway() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gw = start(&peer, &db).await;
    let http = client();

    // 1. The app sends the browser to /oauth/login; the gateway sends it on to the PDS.
    let r = http
        .get(format!(
            "{}/oauth/login?identifier=alice.test&redirect_to=/home",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let authorization_url = location(&r);
    assert!(
        authorization_url.starts_with(peer.issuer()),
        "{authorization_url}"
    );
    // The login is bound to this browser by a short-lived cookie.
    let binding = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(binding.starts_with("atsession-login="), "{binding}");
    assert!(binding.contains("HttpOnly") && binding.contains("SameSite=Lax"));

    // 2. The user signs in and consents at the PDS, which redirects back to the gateway.
    let redirect = peer
        .sign_in_and_consent(&authorization_url, &alice.handle, &alice.password)
        .await
        .unwrap();
    assert!(redirect.contains("/oauth/callback?"), "{redirect}");
    let callback_path = &redirect[redirect.find("/oauth/callback").unwrap()..];

    // Followed in another browser (no binding cookie, or another one), the callback creates
    // nothing; the state is spent.
    let elsewhere = http
        .get(format!("{}{callback_path}", gw.base))
        .header(
            "cookie",
            "atsession-login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 403);
    let body = elsewhere.text().await.unwrap();
    assert!(body.contains("another browser"), "{body}");
    let store = SqliteStore::open(&db).await.unwrap();
    let did = Did::new(alice.did.clone()).unwrap();
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());

    // 3. A second login, finished in the browser that started it: session created, cookie
    // set, browser sent to redirect_to.
    let r = http
        .get(format!(
            "{}/oauth/login?identifier=alice.test&redirect_to=/home",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    let binding = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let redirect = peer
        .sign_in_and_consent(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let callback_path = &redirect[redirect.find("/oauth/callback").unwrap()..];
    let r = http
        .get(format!("{}{callback_path}", gw.base))
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(location(&r), "/home");
    let set_cookie = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("atsession="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    assert!(
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .all(|v| !v.to_str().unwrap().starts_with("atsession-login=")),
        "the binding cookie is left for other logins of this browser"
    );

    // A replay of the same callback, even with the binding cookie, is refused and creates
    // nothing.
    let r = http
        .get(format!("{}{callback_path}", gw.base))
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .all(|v| !v.to_str().unwrap().starts_with("atsession="))
    );
    assert_eq!(store.list_grants_by_did(&did).await.unwrap().len(), 1);

    // 4. The session is there, tied to a stored grant.
    let r = http
        .get(format!("{}/session", gw.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session: serde_json::Value = r.json().await.unwrap();
    assert_eq!(session["did"], alice.did.as_str());
    assert_eq!(session["handle"], "alice.test");
    let grant_id = session["grant_id"].as_str().unwrap().to_owned();
    let grants = store.list_grants_by_did(&did).await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].id.as_str(), grant_id);

    // 5. Logout: the grant is revoked and deleted, the session ends, the cookie is cleared.
    let r = http
        .post(format!("{}/logout", gw.base))
        .header("cookie", &cookie)
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()[reqwest::header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());
    let r = http
        .get(format!("{}/session", gw.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // 6. Admin revocation: `atsession sessions revoke --did` ends the account's sessions and
    // signs their grants out (through the session getter).
    log_in(&http, &gw.base, &peer, &alice).await;
    assert_eq!(store.list_grants_by_did(&did).await.unwrap().len(), 1);
    let out = Command::from(bin::atsession())
        .args(["sessions", "revoke", "--did", alice.did.as_str(), "--db"])
        .arg(&db)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("revoked 1 sessions of the account"),
        "{stdout}"
    );
    assert!(stdout.contains("signed out 1 OAuth grants"), "{stdout}");
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());

    // 7. `atsession sessions cleanup` deletes an expired session and signs its grant out:
    // no grant outlives its session.
    log_in(&http, &gw.base, &peer, &alice).await;
    assert_eq!(store.list_grants_by_did(&did).await.unwrap().len(), 1);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE app_sessions SET idle_expires_at = 0, expires_at = 0",
            [],
        )
        .unwrap();
    let out = Command::from(bin::atsession())
        .args(["sessions", "cleanup", "--json", "--db"])
        .arg(&db)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"deleted": 1, "grants_signed_out": 1})
    );
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());
}

/// Logs `account` in through the gateway (login, sign-in and consent at the PDS, callback).
async fn log_in(http: &reqwest::Client, base: &str, peer: &pds::Peer, account: &pds::Account) {
    let r = http
        .get(format!("{base}/oauth/login?identifier={}", account.handle))
        .send()
        .await
        .unwrap();
    let binding = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let redirect = peer
        .sign_in_and_consent(&location(&r), &account.handle, &account.password)
        .await
        .unwrap();
    let r = http
        .get(format!(
            "{base}{}",
            &redirect[redirect.find("/oauth/callback").unwrap()..]
        ))
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_consent_and_bad_input_create_nothing() {
    let Some(peer) = pds::peer_or_skip!() else {
        return;
    };
    let alice = peer.account("alice.test").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let gw = start(&peer, &db).await;
    let http = client();

    for bad in [
        "",
        "identifier=",
        "identifier=not%20a%20handle",
        "identifier=nobody.test",
    ] {
        let r = http
            .get(format!("{}/oauth/login?{bad}", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    let r = http
        .get(format!(
            "{}/oauth/login?identifier=alice.test&redirect_to=https://evil.example",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    let binding = r.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let redirect = peer
        .sign_in_and_reject(&location(&r), &alice.handle, &alice.password)
        .await
        .unwrap();
    let callback_path = &redirect[redirect.find("/oauth/callback").unwrap()..];
    let r = http
        .get(format!("{}{callback_path}", gw.base))
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("denied"), "{body}");

    for junk in ["", "?state=x&code=y", "?error=server_error", "?%ff%fe"] {
        let r = http
            .get(format!("{}/oauth/callback{junk}", gw.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{junk}");
        assert!(r.headers().get(reqwest::header::SET_COOKIE).is_none());
    }
    let store = SqliteStore::open(&db).await.unwrap();
    let did = Did::new(alice.did.clone()).unwrap();
    assert!(store.list_grants_by_did(&did).await.unwrap().is_empty());
}
