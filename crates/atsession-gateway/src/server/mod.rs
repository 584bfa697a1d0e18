//! `atsession serve`: the gateway's HTTP server.
//!
//! Routes:
//! - `GET /oauth/login`, `GET /oauth/callback`, `POST /oauth/logout`, and for a confidential
//!   gateway `GET /oauth/client-metadata.json` and `GET /oauth/jwks.json`: the library's
//!   login routes (`atsession::axum`), with the browser binding against login CSRF.
//! - `GET /healthz`: `200 ok` when the store answers; `GET /livez`: `200 ok` while the
//!   process serves (no store access).
//! - `GET /session`: the request's session (cookie or `Authorization: Bearer`) as JSON, or
//!   `401 {"error": …}`. Sends a refreshed cookie when the idle window slid.
//! - `POST /session/refresh`: body `{"session_token": …}`; answers a new access token for
//!   mobile clients, `{"access_token", "access_expires_at", "session"}`.
//! - `POST /logout`: `POST /oauth/logout` for API clients: signs the session's grant out
//!   (revoked at the authorization server), ends the session and clears the cookie; `204`.
//!
//! The OAuth client it is: with an `http://` public URL (the default,
//! `http://127.0.0.1:8080`), a loopback client for development and single-user setups; with
//! an `https://` public URL, a confidential web client (`private_key_jwt`) whose metadata is
//! served at `<public url>/oauth/client-metadata.json`, signing with the private JWKS given by
//! `--client-keys`.

mod listen;
#[allow(dead_code)] // Wired into the router together with the `/xrpc/` proxy.
mod metrics;
#[allow(dead_code)] // Wired into the router together with the `/xrpc/` proxy.
mod page;
#[allow(dead_code)] // Wired into the router together with the `/xrpc/` proxy.
mod ratelimit;
#[allow(dead_code)] // Wired into the router together with the `/xrpc/` proxy.
mod safety;
#[allow(dead_code)] // Wired into the router together with the `/xrpc/` proxy.
mod spa;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atsession::app::{CookieConfig, SessionConfig, SessionId, SessionManager};
use atsession::axum::{AtprotoAuth, Session, SessionRejection, WebConfig};
use atsession::oauth::identity::DEFAULT_PLC_URL;
use atsession::oauth::keys::{Jwks, Keyset};
use atsession::oauth::{
    ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, SessionGetter, Url,
};
use atsession::store::{AnyStore, SessionStore};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::Deserialize;

use crate::cli::CliError;
use crate::cli::login::{identity_config, load_keyring};

/// Options of `atsession serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ATSESSION_LISTEN")]
    listen: SocketAddr,
    /// The store: a SQLite file (created if missing) or a store URL: `sqlite://…`,
    /// `postgres://…` (TLS with `?sslmode=verify-full`), `redis://…`, `rediss://…`,
    /// `memory:`.
    #[arg(long, default_value = "./atsession.db", env = "ATSESSION_DB")]
    db: String,
    /// Lifetime of the Bearer access tokens given to mobile clients, in seconds.
    #[arg(long, default_value_t = 900, env = "ATSESSION_ACCESS_TOKEN_TTL")]
    access_token_ttl: u64,
    /// How often expired sessions and abandoned logins are deleted, in seconds.
    #[arg(long, default_value_t = 300, env = "ATSESSION_CLEANUP_INTERVAL")]
    cleanup_interval: u64,
    /// Where browsers reach the gateway. `http://…` makes a loopback OAuth client and a
    /// cookie without `Secure`; `https://…` a confidential client (needs `--client-keys`).
    /// Default: `http://` and the listen address.
    #[arg(long, env = "ATSESSION_PUBLIC_URL")]
    public_url: Option<Url>,
    /// The confidential client's private keys, a JWKS file of ES256 keys with `kid`s.
    #[arg(long, env = "ATSESSION_CLIENT_KEYS")]
    client_keys: Option<PathBuf>,
    /// The scope to ask for.
    #[arg(long, default_value = "atproto transition:generic")]
    scope: String,
    /// The at-rest key file for OAuth grants (default `<db>.key` beside a SQLite file,
    /// `./atsession.key` for a network store; created on first use;
    /// `ATSESSION_AT_REST_KEY` takes precedence).
    #[arg(long, env = "ATSESSION_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The PLC directory.
    #[arg(long, default_value = DEFAULT_PLC_URL, env = "ATSESSION_PLC_URL")]
    plc_url: Url,
    /// Resolve handles with `com.atproto.identity.resolveHandle` on this service instead of
    /// DNS and HTTPS.
    #[arg(long, env = "ATSESSION_HANDLE_RESOLVER")]
    handle_resolver: Option<Url>,
    /// Development mode: allow `http://` and loopback authorization servers (a local PDS).
    /// Never for real accounts.
    #[arg(long, env = "ATSESSION_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    dev: bool,
    /// A TOML file of these options, keyed by their long names (`listen = "…"`); a flag
    /// wins over its environment variable, which wins over the file.
    #[arg(long, env = "ATSESSION_CONFIG")]
    config: Option<PathBuf>,
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// is ready for a request (so an idle keep-alive connection closes after it too).
    #[arg(long, default_value_t = 10, env = "ATSESSION_HEADER_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Seconds without a byte in either direction after which a connection is closed.
    #[arg(long, default_value_t = 60, env = "ATSESSION_IDLE_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: u64,
    /// Open connections at most; more wait until one closes.
    #[arg(long, default_value_t = 512, env = "ATSESSION_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 10, env = "ATSESSION_SHUTDOWN_TIMEOUT", value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_timeout: u64,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = match &args.public_url {
        Some(u) => u.clone(),
        None => Url::parse(&format!("http://{addr}/"))?,
    };
    let confidential = public_url.scheme() == "https";
    let cookie = if confidential {
        CookieConfig::default()
    } else {
        // Browsers do not keep `Secure` cookies from plain-HTTP pages.
        CookieConfig::insecure_for_development()
    };
    let config = SessionConfig::default()
        .access_tokens(Duration::from_secs(args.access_token_ttl.max(1)))
        .cookie(cookie);
    config.validate()?; // before anything is created
    let store = atsession::store::open(&args.db).await?;
    crate::cli::keys::check_store_keys(&args.db, args.key_file.as_deref(), &store).await?;
    let backend = store.backend();
    let sessions = SessionManager::with_config(store.clone(), config)?;
    let auth = web_layer(&args, &public_url, addr, store, sessions.clone())?;
    let _cleanup = sessions.spawn_cleanup(Duration::from_secs(args.cleanup_interval.max(1)));
    let _state_cleanup = auth
        .client()
        .spawn_cleanup(Duration::from_secs(args.cleanup_interval));
    let app = router(auth);
    tracing::info!(%addr, %public_url, confidential, store = backend, "atsession gateway listening");
    // Scripts and tests read this line to learn the port.
    println!("listening on http://{addr}");
    let limits = listen::Limits {
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    listen::serve(listener, app, limits, shutdown()).await?;
    Ok(())
}

/// The web layer: a loopback OAuth client for an `http://` public URL, a confidential one
/// for `https://`; refreshes under the store's own lock.
fn web_layer(
    args: &ServeArgs,
    public_url: &Url,
    addr: SocketAddr,
    store: AnyStore,
    sessions: SessionManager<AnyStore>,
) -> Result<AtprotoAuth, CliError> {
    let keyring = load_keyring(&args.db, args.key_file.as_deref())?;
    let (metadata, keyset, redirect_uri) = if public_url.scheme() == "https" {
        let path = args
            .client_keys
            .as_ref()
            .ok_or("an https public URL makes a confidential client: give --client-keys")?;
        let jwks: Jwks = serde_json::from_str(&crate::cli::small_file::read(path)?)?;
        let keyset = Keyset::from_private_jwks(&jwks)?;
        let redirect = public_url.join("oauth/callback")?.to_string();
        let metadata = ClientMetadata::confidential(
            public_url.join("oauth/client-metadata.json")?.as_str(),
            &[&redirect],
            &args.scope,
            Some(keyset.public_jwks()),
            None,
        )?;
        (metadata, Some(keyset), redirect)
    } else {
        // A loopback client registers the path without a port and sends the real one.
        let metadata = ClientMetadata::loopback(&["http://127.0.0.1/oauth/callback"], &args.scope)?;
        (
            metadata,
            None,
            format!("http://127.0.0.1:{}/oauth/callback", addr.port()),
        )
    };
    let mut config = OAuthClientConfig::new(metadata, keyring)
        .dev_mode(args.dev)
        .identity(identity_config(
            args.plc_url.clone(),
            args.handle_resolver.clone(),
        ));
    if let Some(keyset) = keyset {
        config = config.keyset(keyset);
    }
    let lock = store.lock();
    let client = OAuthClient::new(config, store)?;
    let getter = SessionGetter::new(client, GetterConfig::default().lock(lock));
    Ok(AtprotoAuth::new(
        sessions,
        getter,
        WebConfig::default().redirect_uri(redirect_uri),
    ))
}

/// The gateway's routes.
pub fn router(auth: AtprotoAuth) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/session", get(session))
        .route("/session/refresh", post(refresh))
        .route("/logout", post(api_logout))
        .merge(auth.router())
        .layer(auth.layer())
        .with_state(auth)
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

/// `GET /livez`: `200 ok` while the process serves, without touching the store.
async fn livez() -> &'static str {
    "ok"
}

async fn healthz(State(auth): State<AtprotoAuth>) -> Response {
    // A lookup of an id that cannot exist: one indexed read.
    match auth.sessions().store().load(&SessionId::generate()).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn session(current: Session) -> Response {
    Json(&current.session).into_response()
}

#[derive(Deserialize)]
struct RefreshBody {
    session_token: String,
}

async fn refresh(State(auth): State<AtprotoAuth>, body: Option<Json<RefreshBody>>) -> Response {
    let Some(Json(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "expected a JSON body {\"session_token\": …}"})),
        )
            .into_response();
    };
    match auth.sessions().refresh(&body.session_token).await {
        Ok(r) => Json(serde_json::json!({
            "access_token": r.access_token.as_ref().map(|t| t.expose()),
            "access_expires_at": r.session.access_expires_at.map(|t| t.unix_timestamp()),
            "session": r.session,
        }))
        .into_response(),
        Err(e) => SessionRejection(e).into_response(),
    }
}

/// `POST /logout`: the library's logout, answered as to an API client (`204`).
async fn api_logout(State(auth): State<AtprotoAuth>, mut headers: HeaderMap) -> Response {
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    atsession::axum::login::logout(State(auth), headers).await
}
