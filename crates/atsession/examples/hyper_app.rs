//! A Bluesky-login app on plain hyper 1.x, no web framework: a home page with a login form,
//! a profile page read from the signed-in user's PDS with their DPoP-bound tokens, and
//! logout. The flows are `atsession::auth`'s; this file only routes requests to them.
//!
//! ```sh
//! ATSESSION_DB=sqlite://app.db cargo run --example hyper_app --features oauth
//! # then open http://127.0.0.1:8080/
//! ```
//!
//! `ATSESSION_DB` takes any store URL (`memory:` by default); `AT_REST_KEY`
//! (`kid:base64url(32 bytes)`) is the key grants are sealed with (a new one each start by
//! default).
use std::convert::Infallible;

use atsession::app::{CookieConfig, SessionConfig};
use atsession::auth::{AtprotoAuth, AuthError, WebConfig};
use atsession::crypto::{AtRestKey, AtRestKeyring};
use atsession::oauth::IdentityConfig;
use atsession::oauth::{ClientMetadata, OAuthClientConfig, Refresh};
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The app's flows on store `db`, reachable at `http://127.0.0.1:{port}`.
pub async fn app(
    db: &str,
    port: u16,
    key: AtRestKey,
    identity: IdentityConfig,
    dev: bool,
) -> Result<AtprotoAuth, Error> {
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
    Ok(AtprotoAuth::build(
        atsession::store::open(db).await?,
        sessions,
        client,
        web,
    )?)
}

/// Serves `auth`'s app on `listener`, one task per connection.
pub async fn serve(listener: tokio::net::TcpListener, auth: AtprotoAuth) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let auth = auth.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let auth = auth.clone();
                async move { Ok::<_, Infallible>(route(&auth, request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn route(auth: &AtprotoAuth, request: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let (query, headers) = (request.uri().query().unwrap_or(""), request.headers());
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => home(auth, headers).await,
        (&Method::GET, "/profile") => profile(auth, headers).await,
        (&Method::GET, "/oauth/login") => auth.login_route(query, headers).await,
        (&Method::GET, "/oauth/callback") => auth.callback_route(query, headers).await,
        (&Method::POST, "/oauth/logout") => auth.logout_route(headers).await,
        _ => html(StatusCode::NOT_FOUND, "not found".into()),
    };
    response.map(|body| Full::new(Bytes::from(body)))
}

async fn home(auth: &AtprotoAuth, headers: &HeaderMap) -> Response<String> {
    match auth.request_session(headers).await {
        Ok(found) => {
            let page = format!(
                "<p>Signed in as {}. <a href=/profile>Profile</a></p>\
                 <form method=post action=/oauth/logout><button>Log out</button></form>",
                found.session.handle
            );
            with_cookie(html(StatusCode::OK, page), found.set_cookie)
        }
        Err(e) if e.is_signed_out() => html(
            StatusCode::OK,
            "<form action=/oauth/login><input name=identifier placeholder=alice.bsky.social>\
             <input type=hidden name=redirect_to value=/profile><button>Log in</button></form>"
                .into(),
        ),
        Err(e) => auth.error_response(&e),
    }
}

/// Read from the user's PDS with their tokens (refreshed first if stale).
async fn profile(auth: &AtprotoAuth, headers: &HeaderMap) -> Response<String> {
    let found = match auth.request_session(headers).await {
        Ok(found) => found,
        Err(e) => return auth.error_response(&e),
    };
    let page = async {
        let (oauth, info) = auth
            .user(&found.session, found.grant, Refresh::IfStale)
            .await?;
        let me: serde_json::Value =
            match oauth.xrpc_query("com.atproto.server.getSession", &[]).await {
                Ok(me) => me,
                Err(e) => return Err(auth.grant_failed(&found.session, e).await),
            };
        let (handle, did) = (me["handle"].as_str(), me["did"].as_str());
        let (handle, did) = (handle.unwrap_or_default(), did.unwrap_or_default());
        Ok::<_, AuthError>(format!(
            "<h1>{handle}</h1><p>{did}</p><p>Scope: {}</p>",
            info.scope
        ))
    };
    match page.await {
        Ok(page) => with_cookie(html(StatusCode::OK, page), found.set_cookie),
        Err(e) => auth.error_response(&e),
    }
}

fn html(status: StatusCode, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let html = http::HeaderValue::from_static("text/html; charset=utf-8");
    r.headers_mut().insert(header::CONTENT_TYPE, html);
    r
}

/// Puts the slid session cookie on the response, when the idle window slid.
fn with_cookie(mut r: Response<String>, cookie: Option<http::HeaderValue>) -> Response<String> {
    if let Some(cookie) = cookie {
        r.headers_mut().append(header::SET_COOKIE, cookie);
    }
    r
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let db = std::env::var("ATSESSION_DB").unwrap_or_else(|_| "memory:".into());
    let key = std::env::var("AT_REST_KEY").ok();
    let key = key.map_or_else(|| AtRestKey::generate("k1"), |k| AtRestKey::from_spec(&k))?;
    let auth = app(&db, 8080, key, IdentityConfig::default(), false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("open http://127.0.0.1:8080/");
    Ok(serve(listener, auth).await?)
}
