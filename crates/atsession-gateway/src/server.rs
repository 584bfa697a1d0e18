//! `atsession serve`: the gateway's HTTP server.
//!
//! Routes:
//! - `GET /healthz`: `200 ok` when the store answers.
//! - `GET /session`: the request's session (cookie or `Authorization: Bearer`) as JSON, or
//!   `401 {"error": …}`. Sends a refreshed cookie when the idle window slid.
//! - `POST /session/refresh`: body `{"session_token": …}`; answers a new access token for
//!   mobile clients, `{"access_token", "access_expires_at", "session"}`.
//! - `POST /logout`: ends the request's session and clears the cookie; `204`.

use std::net::SocketAddr;
use std::time::Duration;

use atsession::app::{CookieConfig, SessionConfig, SessionError, SessionId, SessionManager};
use atsession::axum::{CurrentSession, SessionRejection};
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
    /// How often expired sessions are deleted, in seconds.
    #[arg(long, default_value_t = 300)]
    cleanup_interval: u64,
    /// Development over plain HTTP: the cookie is named `atsession` and not `Secure`.
    #[arg(long)]
    dev: bool,
}

type Manager = SessionManager<SqliteStore>;
type Current = CurrentSession<SqliteStore>;

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let store = SqliteStore::connect(&args.db).await?;
    let cookie = if args.dev {
        CookieConfig::insecure_for_development()
    } else {
        CookieConfig::default()
    };
    let config = SessionConfig::default()
        .access_tokens(Duration::from_secs(args.access_token_ttl.max(1)))
        .cookie(cookie);
    let manager = SessionManager::with_config(store, config)?;
    let _cleanup = manager.spawn_cleanup(Duration::from_secs(args.cleanup_interval.max(1)));
    let app = router(manager);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %args.db, "atsession gateway listening");
    // Scripts and tests read this line to learn the port.
    println!("listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// The gateway's routes over a session manager.
pub fn router(manager: Manager) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/session", get(session))
        .route("/session/refresh", post(refresh))
        .route("/logout", post(logout))
        .with_state(manager)
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

async fn logout(State(m): State<Manager>, headers: HeaderMap) -> Response {
    let clear = [(header::SET_COOKIE, m.clear_cookie())];
    match m.load_from_headers(&headers).await {
        Ok(found) => match m.delete(&found.session.id).await {
            Ok(_) => (StatusCode::NO_CONTENT, clear).into_response(),
            Err(e) => SessionRejection(e).into_response(),
        },
        // Already signed out: still clear the cookie.
        Err(e) if e.is_unauthenticated() && !matches!(e, SessionError::Conflict) => {
            (StatusCode::NO_CONTENT, clear).into_response()
        }
        Err(e) => SessionRejection(e).into_response(),
    }
}
