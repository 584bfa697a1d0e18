//! An axum app with Bluesky login: a home page with a login form, a profile page read from
//! the signed-in user's PDS with their DPoP-bound tokens, and logout.
//!
//! ```sh
//! ATSESSION_DB=sqlite://app.db cargo run --example axum_app --features axum
//! # then open http://127.0.0.1:8080/
//! ```
//!
//! `ATSESSION_DB` takes any store URL (`memory:` by default); `AT_REST_KEY`
//! (`kid:base64url(32 bytes)`) is the key grants are sealed with (a new one each start by
//! default). The profile page calls `com.atproto.server.getSession` on the user's PDS:
//! `app.bsky.actor.getProfile` needs a Bluesky AppView, which a bare PDS (like the local one
//! the end-to-end test runs against) does not have.
use atsession::app::{CookieConfig, SessionConfig};
use atsession::axum::{AtprotoAuth, AtprotoSession, Session, WebConfig};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::IdentityConfig;
use atsession::oauth::{ClientMetadata, OAuthClientConfig};
use axum::response::Html;
use axum::{Router, routing::get};

/// The app on store `db`, reachable at `http://127.0.0.1:{port}`.
pub async fn app(
    db: &str,
    port: u16,
    key: AtRestKey,
    identity: IdentityConfig,
    dev: bool,
) -> Result<Router, Box<dyn std::error::Error + Send + Sync>> {
    let metadata = ClientMetadata::loopback(
        &["http://127.0.0.1/oauth/callback"],
        "atproto transition:generic",
    )?;
    let client = OAuthClientConfig::new(metadata, AtRestKeyring::new(key))
        .identity(identity)
        .dev_mode(dev);
    let sessions = SessionConfig::default().cookie(CookieConfig::insecure_for_development());
    let web = WebConfig::default()
        .redirect_uri(format!("http://127.0.0.1:{port}/oauth/callback"))
        .error_path("/");
    let auth = AtprotoAuth::build(atsession::store::open(db).await?, sessions, client, web)?;
    Ok(Router::new()
        .route("/", get(home))
        .route("/profile", get(profile))
        .merge(auth.router())
        .layer(auth.layer())
        .with_state(auth))
}

async fn home(session: Option<Session>) -> Html<String> {
    Html(match session {
        Some(s) => format!(
            "<p>Signed in as {}. <a href=/profile>Profile</a></p>\
             <form method=post action=/oauth/logout><button>Log out</button></form>",
            s.handle
        ),
        None => "<form action=/oauth/login><input name=identifier placeholder=alice.bsky.social>\
                 <input type=hidden name=redirect_to value=/profile><button>Log in</button></form>"
            .to_owned(),
    })
}

/// Read from the user's PDS with their tokens (refreshed first if stale).
async fn profile(user: AtprotoSession) -> Result<Html<String>, String> {
    let me: serde_json::Value = user
        .oauth
        .xrpc_query("com.atproto.server.getSession", &[])
        .await
        .map_err(|e| e.to_string())?;
    let (handle, did, scope) = (&me["handle"], &me["did"], &user.info.scope);
    Ok(Html(format!(
        "<h1>{handle}</h1><p>{did}</p><p>Scope: {scope}</p>"
    )))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let db = std::env::var("ATSESSION_DB").unwrap_or_else(|_| "memory:".into());
    let key = std::env::var("AT_REST_KEY").ok();
    let key = key.map_or_else(|| AtRestKey::generate("k1"), |k| AtRestKey::from_spec(&k))?;
    let app = app(&db, 8080, key, IdentityConfig::default(), false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("open http://127.0.0.1:8080/");
    Ok(axum::serve(listener, app).await?)
}
