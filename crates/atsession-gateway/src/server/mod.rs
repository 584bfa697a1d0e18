//! `atsession serve`: the gateway's HTTP server.
//!
//! Routes:
//! - `GET /oauth/login`, `GET /oauth/callback`, `POST /oauth/logout`, and for a confidential
//!   gateway `GET /oauth/client-metadata.json` and `GET /oauth/jwks.json`: the library's
//!   login routes (`atsession::axum`), with the browser binding against login CSRF.
//! - `GET /healthz`: `200 ok` when the store answers; `GET /livez`: `200 ok` while the
//!   process serves (no store access).
//! - `GET /session`: the request's session (cookie or `Authorization: Bearer`) as JSON, with
//!   its grant's `scope` and `token_expires_at`, or `401 {"error": …}`. Sends a refreshed
//!   cookie when the idle window slid.
//! - `POST /session/refresh`: body `{"session_token": …}`; answers a new access token for
//!   mobile clients, `{"access_token", "access_expires_at", "session"}`.
//! - `POST /logout`: `POST /oauth/logout` for API clients: signs the session's grant out
//!   (revoked at the authorization server), ends the session and clears the cookie; `204`.
//! - `ANY /xrpc/{nsid}`: the backend-for-frontend proxy to the user's PDS ([`proxy`]).
//! - `GET /metrics`: Prometheus text ([`metrics`]).
//! - `GET /`: the sign-in page ([`page`]), or with `--static DIR` a single-page app served
//!   as the fallback of every other route ([`spa`]).
//!
//! Around every route: CORS for the `--allow-origin`s only, the response headers and the
//! CSRF rule of [`safety`], the slid session cookie; around `GET /oauth/login`, the
//! per-address limit of [`ratelimit`].
//!
//! The OAuth client it is: with an `http://` public URL (the default,
//! `http://127.0.0.1:8080`), a loopback client for development and single-user setups; with
//! an `https://` public URL, a confidential web client (`private_key_jwt`) whose metadata is
//! served at `<public url>/oauth/client-metadata.json`, signing with the private JWKS given by
//! `--client-keys`.

mod listen;
mod metrics;
mod nsid_rules;
mod page;
pub(crate) mod proxy;
mod ratelimit;
mod safety;
mod spa;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atsession::ErrorChain;
use atsession::app::{CookieConfig, SessionConfig, SessionId, SessionManager};
use atsession::auth::AuthError;
use atsession::axum::{AtprotoAuth, LoadedGrant, Session, WebConfig};
use atsession::oauth::DEFAULT_PLC_URL;

use atsession::oauth::{
    ClientMetadata, GetterConfig, OAuthClient, OAuthClientConfig, Refresh, SessionGetter, Url,
};
use atsession::oauth::{Jwks, Keyset};
use atsession::store::{AnyStore, SessionStore};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use clap::Args;
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};

use metrics::Metrics;
use nsid_rules::NsidRules;
use proxy::{Proxy, ProxyState};
use ratelimit::LoginLimit;
use safety::Safety;

use crate::cli::CliError;
use crate::setup::{identity_config, load_keyring};

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
    /// The scope to ask for, space-separated.
    #[arg(long, default_value = crate::setup::SCOPE, env = crate::setup::SCOPE_ENV)]
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
    /// Another origin (`https://app.example`) whose pages may call the gateway with the
    /// session cookie (CORS with credentials, and the `Origin` check of unsafe requests);
    /// repeat for more (the environment variable takes a comma-separated list). The
    /// gateway's own origin (of `--public-url`) is always allowed.
    #[arg(long, env = "ATSESSION_ALLOW_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    allow_origin: Vec<String>,
    /// Forward only these XRPC methods through `/xrpc/`: an NSID or a prefix such as
    /// `app.bsky.*`; repeat for more (environment: comma-separated). Default: every method.
    #[arg(long, env = "ATSESSION_ALLOW_NSID", value_delimiter = ',')]
    allow_nsid: Vec<nsid_rules::NsidPattern>,
    /// Never forward these XRPC methods (an NSID or a prefix such as `chat.bsky.*`); wins
    /// over `--allow-nsid`; repeat for more (environment: comma-separated).
    #[arg(long, env = "ATSESSION_DENY_NSID", value_delimiter = ',')]
    deny_nsid: Vec<nsid_rules::NsidPattern>,
    /// Refuse (`403 ScopeMissingError`, nothing forwarded) `/xrpc/` calls that the
    /// session's grant plainly does not permit (record writes by collection, blob uploads
    /// by type, calls through `atproto-proxy` by `rpc:` scope); anything unclear is left to
    /// the PDS.
    #[arg(long, env = "ATSESSION_CHECK_SCOPE")]
    check_scope: bool,
    /// Logins (`GET /oauth/login`) one client address may start per minute.
    #[arg(long, default_value_t = 30, env = "ATSESSION_LOGIN_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    login_rate: u32,
    /// A reverse proxy in front of the gateway (an address or a network, `10.0.0.0/8`):
    /// from these peers `X-Forwarded-For` is believed, so that logins are counted per client
    /// and not all as the proxy's; repeatable (the environment variable takes a
    /// comma-separated list).
    #[arg(long, env = "ATSESSION_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_network)]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// Serve the single-page app in this directory (it needs an `index.html`, which also
    /// answers paths that name no file) from the gateway's origin, instead of the built-in
    /// sign-in page at `/`. The gateway's routes win over files of the same name.
    #[arg(long = "static", env = "ATSESSION_STATIC", value_name = "DIR")]
    static_dir: Option<PathBuf>,
}

/// An `--allow-origin`: `scheme://host[:port]`, nothing else.
fn parse_origin(s: &str) -> Result<String, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("`{s}` is not an origin: {e}"))?;
    let origin = url.origin();
    if !origin.is_tuple()
        || !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "`{s}` is not an origin: give only the scheme, host and port (https://app.example)"
        ));
    }
    Ok(origin.ascii_serialization())
}

/// `--trusted-proxy`: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or a network (10.0.0.0/8, fd00::/8)"))
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
    // Expired sessions go with their grants (signed out first), abandoned logins on their own.
    let _cleanup = auth.spawn_cleanup(Duration::from_secs(args.cleanup_interval.max(1)));
    let _state_cleanup = auth
        .client()
        .spawn_cleanup(Duration::from_secs(args.cleanup_interval));
    let metrics = Arc::new(Metrics::new());
    let _events = metrics.spawn_events(auth.getter().subscribe());
    let login_rate = NonZeroU32::new(args.login_rate).ok_or("--login-rate must be at least 1")?;
    let login_limit =
        LoginLimit::per_minute(login_rate, &auth.config().login_path).trusting(&args.trusted_proxy);
    let _pruning = login_limit.spawn_pruning();
    let gateway = Gateway {
        safety: Arc::new(Safety {
            cookie_name: auth.sessions().config().cookie.name.clone(),
            own_origin: public_url.origin().ascii_serialization(),
            allowed_origins: args.allow_origin.clone(),
        }),
        proxy: Arc::new(Proxy {
            auth: auth.clone(),
            metrics: Arc::clone(&metrics),
            rules: NsidRules::new(args.allow_nsid.clone(), args.deny_nsid.clone()),
            check_scope: args.check_scope,
        }),
        auth,
        metrics,
        login_limit,
        static_dir: args.static_dir.clone(),
    };
    let app = app(&gateway)?;
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
        let jwks: Jwks = serde_json::from_str(&crate::setup::small_file::read(path)?)?;
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
        WebConfig::default()
            .redirect_uri(redirect_uri)
            .error_details(args.dev),
    ))
}

/// What the router is made of.
pub struct Gateway {
    auth: AtprotoAuth,
    metrics: Arc<Metrics>,
    proxy: Arc<Proxy>,
    safety: Arc<Safety>,
    login_limit: LoginLimit,
    static_dir: Option<PathBuf>,
}

/// The request headers a page on an allowed origin may send (CORS).
const CORS_REQUEST_HEADERS: [header::HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::HeaderName::from_static(safety::CSRF_HEADER),
    header::AUTHORIZATION,
    header::HeaderName::from_static("atproto-proxy"),
    header::HeaderName::from_static("atproto-accept-labelers"),
];

/// CORS for the `--allow-origin`s, with credentials; `None` when there are none.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, CliError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "an --allow-origin is not a valid header value")?;
    let exposed: Vec<header::HeaderName> = proxy::RESPONSE_HEADERS
        .iter()
        .map(|h| header::HeaderName::from_static(h))
        .collect();
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(CORS_REQUEST_HEADERS)
            .expose_headers(exposed)
            .max_age(Duration::from_secs(600)),
    ))
}

/// The gateway's routes, each with its request metrics.
pub fn router(g: &Gateway) -> Result<Router, CliError> {
    let auth = &g.auth;
    let login = auth.router().route_layer(middleware::from_fn_with_state(
        g.login_limit.clone(),
        ratelimit::limit_logins,
    ));
    let own = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/session", get(session))
        .route("/session/refresh", post(refresh))
        .route("/logout", post(api_logout))
        .merge(login)
        .with_state(auth.clone());
    let xrpc = Router::new()
        .route("/xrpc/{nsid}", any(proxy::handle))
        .with_state(ProxyState(Arc::clone(&g.proxy)));
    let metrics = Router::new()
        .route("/metrics", get(metrics::serve))
        .with_state(Arc::clone(&g.metrics));
    let mut app = own.merge(xrpc).merge(metrics);
    if g.static_dir.is_none() {
        app = app.route("/", get(page::index));
    }
    let mut app = app.route_layer(middleware::from_fn_with_state(
        Arc::clone(&g.metrics),
        metrics::track,
    ));
    if let Some(dir) = &g.static_dir {
        app = app.fallback_service(spa::service(dir)?);
    }
    Ok(app)
}

/// The whole gateway: [`router`] inside the middleware every request passes, outermost
/// first: CORS (when origins are allowed), the safety headers, the session cookie, the
/// CSRF check.
///
/// The middleware wraps the router once, around routing, rather than each route with
/// `Router::layer`, under which every layer is a boxed route of its own whose service is
/// copied for each request.
pub fn app(
    g: &Gateway,
) -> Result<
    impl Service<
        axum::extract::Request,
        Response = Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static,
    CliError,
> {
    Ok(ServiceBuilder::new()
        .option_layer(cors(&g.safety.allowed_origins)?)
        .layer(middleware::from_fn_with_state(
            g.static_dir.is_none(),
            safety::headers,
        ))
        .layer(g.auth.layer())
        .layer(middleware::from_fn_with_state(
            Arc::clone(&g.safety),
            safety::csrf,
        ))
        .service(router(g)?))
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

/// `GET /session`: the app session (DID, handle, idle and absolute expiry, …) with its
/// grant's `scope` and `token_expires_at` (when the grant's access token expires; the
/// gateway refreshes it as needed). A session whose grant is gone is ended: `401`.
/// `GET /session`'s answer: the session's fields and the grant's scope and token expiry,
/// written out in one pass (no intermediate JSON tree).
#[derive(Serialize)]
struct SessionAnswer<'a> {
    #[serde(flatten)]
    session: &'a atsession::app::Session,
    scope: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    token_expires_at: Option<time::OffsetDateTime>,
}

async fn session(
    State(auth): State<AtprotoAuth>,
    current: Session,
    mut request: Request,
) -> Response {
    let (mut scope, mut expires) = (None, None);
    // The grant's record, when it was read with the session (one query on SQLite
    // and PostgreSQL).
    if current.grant_id.is_some() {
        let preloaded = request
            .extensions_mut()
            .remove::<LoadedGrant>()
            .map(|LoadedGrant(g)| g);
        match auth.user(&current, preloaded, Refresh::AcceptStale).await {
            Ok((_, info)) => {
                scope = Some(info.scope);
                expires = info.expires_at;
            }
            Err(e) if e.ends_session() => return auth.error_response(&e).map(Body::from),
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "reading the session's grant failed");
            }
        }
    }
    Json(SessionAnswer {
        session: &current.session,
        scope,
        token_expires_at: expires,
    })
    .into_response()
}

#[derive(Deserialize)]
struct RefreshBody {
    session_token: String,
}

async fn refresh(State(auth): State<AtprotoAuth>, body: Option<Json<RefreshBody>>) -> Response {
    let Some(Json(body)) = body else {
        let e = AuthError::InvalidRequest("expected a JSON body {\"session_token\": …}".into());
        return auth.error_response(&e).map(Body::from);
    };
    match auth.sessions().refresh(&body.session_token).await {
        Ok(r) => Json(serde_json::json!({
            "access_token": r.access_token.as_ref().map(|t| t.expose()),
            "access_expires_at": r.session.access_expires_at.map(|t| t.unix_timestamp()),
            "session": r.session,
        }))
        .into_response(),
        Err(e) => auth.error_response(&e.into()).map(Body::from),
    }
}

/// `POST /logout`: the library's logout, answered as to an API client (`204`).
async fn api_logout(State(auth): State<AtprotoAuth>, mut headers: HeaderMap) -> Response {
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    auth.logout_route(&headers).await.map(Body::from)
}

#[cfg(test)]
mod tests {
    use super::parse_network;

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let net = |s| parse_network(s).map(|n| n.to_string());
        assert_eq!(net("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(net(" 192.0.2.1 ").unwrap(), "192.0.2.1/32");
        assert_eq!(net("::1").unwrap(), "::1/128");
        for bad in ["", "10.0.0.0/33", "proxy.example", "10.0.0.1:80"] {
            let e = net(bad).unwrap_err();
            assert!(e.contains("not an address or a network"), "{bad}: {e}");
        }
    }
}
