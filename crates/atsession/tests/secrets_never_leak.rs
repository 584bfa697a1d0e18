//! No raw session or access token appears in Debug or Display output, in error messages, or
//! in the logs, at any log level, across a whole session's life.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atsession::app::{SessionConfig, SessionManager};
use atsession::store::MemoryStore;
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_debug_errors_or_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = SessionConfig::default()
        .access_tokens(Duration::from_secs(60))
        .touch_interval(Duration::ZERO);
    let m = SessionManager::with_config(MemoryStore::new(), config).unwrap();
    let new = m.create("did:plc:abc", "alice.test", ()).await.unwrap();
    let token = new.token.expose().to_owned();
    let access = new.access_token.as_ref().unwrap().expose().to_owned();
    let mut shown = vec![format!("{new:?}"), format!("{:?}", new.session)];

    let mut h = HeaderMap::new();
    h.insert(COOKIE, format!("__Host-atsession={token}").parse().unwrap());
    let loaded = m.load_from_headers(&h).await.unwrap();
    shown.push(format!("{loaded:?}"));
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, format!("Bearer {access}").parse().unwrap());
    shown.push(format!("{:?}", m.load_from_headers(&h).await.unwrap()));
    let refreshed = m.refresh(&token).await.unwrap();
    let access2 = refreshed.access_token.as_ref().unwrap().expose().to_owned();
    shown.push(format!("{refreshed:?}"));
    // Errors that involve the tokens: a stale access token, a truncated one, a near miss.
    // The near miss keeps the token but for its last (still canonical) character.
    let last = if token.ends_with('A') { 'Q' } else { 'A' };
    let near = format!("{}{last}", &token[..42]);
    for bad in [access.clone(), token[..40].to_owned(), near] {
        let e = m.load_by_access_token(&bad).await.unwrap_err();
        shown.push(format!("{e} {e:?}"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, format!("__Host-atsession={bad}").parse().unwrap());
        let e = m.load_from_headers(&h).await.unwrap_err();
        shown.push(format!("{e} {e:?}"));
    }
    m.delete_by_token(&token).await.unwrap();
    let e = m.load(&token).await.unwrap_err();
    shown.push(format!("{e} {e:?}"));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("session created"),
        "the test must see the logs: {logs}"
    );
    shown.push(logs);
    for text in &shown {
        for secret in [&token, &access, &access2] {
            assert!(
                !text.contains(secret.as_str()),
                "a token leaked into: {text}"
            );
            assert!(
                !text.contains(&secret[..20]),
                "part of a token leaked into: {text}"
            );
        }
    }
}

#[cfg(feature = "oauth")]
#[test]
fn callback_params_hide_the_code_and_state_in_debug() {
    let code = "cod-5f1b2e9c7d4a";
    let state = "sta-8e2c44d1b0aa";
    let params = atsession::oauth::CallbackParams::from_query(&format!(
        "?code={code}&state={state}&iss=https%3A%2F%2Fas.example"
    ))
    .unwrap();
    assert_eq!(params.code.as_deref(), Some(code));
    for shown in [format!("{params:?}"), format!("{params:#?}")] {
        assert!(!shown.contains(code) && !shown.contains(state), "{shown}");
        assert!(shown.contains("https://as.example"), "{shown}");
    }
}
