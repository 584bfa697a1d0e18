//! `atsession serve`: the gateway's HTTP server.
//!
//! Routes:
//! - `GET /oauth/login`, `GET /oauth/callback`, and for a confidential gateway
//!   `GET /oauth/client-metadata.json` and `GET /oauth/jwks.json`: see [`login`].
//! - `GET /healthz`: `200 ok` when the store answers.
//! - `GET /session`: the request's session (cookie or `Authorization: Bearer`) as JSON, or
//!   `401 {"error": …}`. Sends a refreshed cookie when the idle window slid.
//! - `POST /session/refresh`: body `{"session_token": …}`; answers a new access token for
//!   mobile clients, `{"access_token", "access_expires_at", "session"}`.
//! - `POST /logout`: revokes the session's OAuth grant at the authorization server, ends the
//!   session and clears the cookie; `204`.
//!
//! The OAuth client it is: with an `http://` public URL (the default,
//! `http://127.0.0.1:8080`), a loopback client for development and single-user setups; with
//! an `https://` public URL, a confidential web client (`private_key_jwt`) whose metadata is
//! served at `<public url>/oauth/client-metadata.json`, signing with the private JWKS given by
//! `--client-keys`.

mod login;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atsession::app::{CookieConfig, SessionConfig, SessionError, SessionId, SessionManager};
use atsession::axum::{CurrentSession, SessionRejection};
use atsession::oauth::identity::DEFAULT_PLC_URL;
use atsession::oauth::keys::{Jwks, Keyset};
use atsession::oauth::{ClientMetadata, OAuthClient, OAuthClientConfig, Url};
use atsession::store::SessionStore;
use atsession::store::sqlite::SqliteStore;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
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
    /// The SQLite database (file path or `sqlite://` URL); created if missing.
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
    /// The at-rest key file for OAuth grants (default `<db>.key`, created on first use;
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
}

type Manager = SessionManager<SqliteStore>;
type Current = CurrentSession<SqliteStore>;

/// The gateway's shared state.
#[derive(Clone)]
pub struct Gateway {
    sessions: Manager,
    login: login::Login,
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
    let store = SqliteStore::connect(&args.db).await?;
    crate::cli::keys::check_store_keys(&args.db, args.key_file.as_deref(), &store).await?;
    let sessions = SessionManager::with_config(store.clone(), config)?;
    let login = oauth_client(&args, &public_url, addr, store)?;
    let _cleanup = sessions.spawn_cleanup(Duration::from_secs(args.cleanup_interval.max(1)));
    let _state_cleanup = login
        .client
        .spawn_cleanup(Duration::from_secs(args.cleanup_interval));
    let app = router(Gateway { sessions, login });
    tracing::info!(%addr, %public_url, confidential, db = %args.db, "atsession gateway listening");
    // Scripts and tests read this line to learn the port.
    println!("listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// The OAuth client: loopback for an `http://` public URL, confidential for `https://`.
fn oauth_client(
    args: &ServeArgs,
    public_url: &Url,
    addr: SocketAddr,
    store: SqliteStore,
) -> Result<login::Login, CliError> {
    let db_path = args
        .db
        .strip_prefix("sqlite://")
        .or_else(|| args.db.strip_prefix("sqlite:"))
        .unwrap_or(&args.db);
    let keyring = load_keyring(std::path::Path::new(db_path), args.key_file.as_deref())?;
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
    let confidential = keyset.is_some();
    let mut config = OAuthClientConfig::new(metadata, keyring)
        .dev_mode(args.dev)
        .identity(identity_config(
            args.plc_url.clone(),
            args.handle_resolver.clone(),
        ));
    if let Some(keyset) = keyset {
        config = config.keyset(keyset);
    }
    Ok(login::Login {
        client: Arc::new(OAuthClient::new(config, store)?),
        redirect_uri,
        confidential,
    })
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/session", get(session))
        .route("/session/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/oauth/login", get(login::login))
        .route("/oauth/callback", get(login::callback))
        .route("/oauth/client-metadata.json", get(login::client_metadata))
        .route("/oauth/jwks.json", get(login::jwks))
        .with_state(gateway)
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

async fn healthz(State(m): State<Manager>) -> Response {
    // A lookup of an id that cannot exist: one indexed read.
    match m.store().load(&SessionId::generate()).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn session(current: Current) -> Response {
    let cookie = current.refreshed_cookie();
    let body = Json(&current.0.session).into_response();
    match cookie {
        Some(c) => ([c], body).into_response(),
        None => body,
    }
}

#[derive(Deserialize)]
struct RefreshBody {
    session_token: String,
}

async fn refresh(State(m): State<Manager>, body: Option<Json<RefreshBody>>) -> Response {
    let Some(Json(body)) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "expected a JSON body {\"session_token\": …}"})),
        )
            .into_response();
    };
    match m.refresh(&body.session_token).await {
        Ok(r) => Json(serde_json::json!({
            "access_token": r.access_token.as_ref().map(|t| t.expose()),
            "access_expires_at": r.session.access_expires_at.map(|t| t.unix_timestamp()),
            "session": r.session,
        }))
        .into_response(),
        Err(e) => SessionRejection(e).into_response(),
    }
}

async fn logout(State(g): State<Gateway>, headers: HeaderMap) -> Response {
    let m = &g.sessions;
    let clear = [(header::SET_COOKIE, m.clear_cookie())];
    match m.load_from_headers(&headers).await {
        Ok(found) => match m.delete(&found.session.id).await {
            Ok(_) => {
                login::revoke_grant(&g.login, found.session.grant_id.as_deref()).await;
                (StatusCode::NO_CONTENT, clear).into_response()
            }
            Err(e) => SessionRejection(e).into_response(),
        },
        // Already signed out: still clear the cookie.
        Err(e) if e.is_unauthenticated() && !matches!(e, SessionError::Conflict) => {
            (StatusCode::NO_CONTENT, clear).into_response()
        }
        Err(e) => SessionRejection(e).into_response(),
    }
}
