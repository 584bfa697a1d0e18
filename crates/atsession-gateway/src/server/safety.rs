//! Browser safety for a backend-for-frontend: what a cookie-authenticated API needs so
//! that another site cannot use the user's cookie, and the response headers that keep
//! tokens and pages out of caches, referrers and frames.
//!
//! - A request that carries the session cookie (and no `Authorization` header) with a
//!   method other than GET, HEAD or OPTIONS must send `x-csrf: 1` (a cross-site form cannot
//!   set a custom header, and a cross-site `fetch` that does needs a CORS preflight the
//!   gateway only grants to allowed origins); and if it sends `Origin`, that origin must be
//!   the gateway's own or an allowed one. Otherwise: `403` and the request goes no further.
//!   Bearer-authenticated requests (mobile apps) need neither.
//! - Every response: `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//! - Session, token, login and proxied responses: `Cache-Control: no-store`.
//! - The gateway's own pages and login routes: framing refused (`X-Frame-Options: DENY`,
//!   `Content-Security-Policy: frame-ancestors 'none'`).

use atsession::auth::AuthError;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The header a cookie-authenticated unsafe request must carry, and its value.
pub const CSRF_HEADER: &str = "x-csrf";

/// What the safety checks need to know.
#[derive(Debug, Clone)]
pub struct Safety {
    /// The session cookie's name.
    pub cookie_name: String,
    /// The gateway's own origin (`https://app.example`), as browsers send it in `Origin`.
    pub own_origin: String,
    /// Other origins allowed to call with credentials (`--allow-origin`).
    pub allowed_origins: Vec<String>,
}

impl Safety {
    fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.own_origin || self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// Whether the request carries a cookie of this name.
fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, _)| k.trim() == name)
}

/// The refusal, answered through the library's one table from error to HTTP answer.
fn refuse(e: &AuthError) -> Response {
    e.answer(false)
        .to_response(None)
        .map(axum::body::Body::from)
}

/// The CSRF rule (see the module docs), as axum middleware.
pub async fn csrf(State(safety): State<Arc<Safety>>, request: Request, next: Next) -> Response {
    let safe_method = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    let cookie_auth =
        !headers.contains_key(header::AUTHORIZATION) && has_cookie(headers, &safety.cookie_name);
    if !safe_method && cookie_auth {
        if headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) != Some(b"1") {
            return refuse(&AuthError::CsrfHeaderMissing);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| safety.origin_allowed(o));
            if !allowed {
                return refuse(&AuthError::OriginNotAllowed);
            }
        }
    }
    next.run(request).await
}

/// Which headers a response gets, by the path it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sessions, tokens, login, logout and proxied calls: never cached.
    Private,
    /// The gateway's own HTML pages: never cached, never framed.
    Page,
    /// Anything else (a static app, health): only the headers every response gets.
    Other,
}

fn kind(path: &str) -> Kind {
    if path == "/" || path.starts_with("/oauth/") {
        Kind::Page
    } else if path == "/session"
        || path.starts_with("/session/")
        || path == "/logout"
        || path.starts_with("/xrpc/")
    {
        Kind::Private
    } else {
        Kind::Other
    }
}

/// The response headers (see the module docs), as axum middleware. `/` counts as one of
/// the gateway's pages only when `own_pages` is set (no `--static` app).
pub async fn headers(State(own_pages): State<bool>, request: Request, next: Next) -> Response {
    let mut k = kind(request.uri().path());
    if k == Kind::Page && request.uri().path() == "/" && !own_pages {
        k = Kind::Other;
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if matches!(k, Kind::Private | Kind::Page) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if k == Kind::Page {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt as _;

    fn app(hits: Arc<AtomicUsize>) -> Router {
        let safety = Arc::new(Safety {
            cookie_name: "sid".into(),
            own_origin: "http://127.0.0.1:8080".into(),
            allowed_origins: vec!["https://app.example".into()],
        });
        let h = hits.clone();
        Router::new()
            .route(
                "/xrpc/{nsid}",
                post(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    async { "forwarded" }
                })
                .get(|| async { "read" }),
            )
            .route("/", get(|| async { "page" }))
            .route("/app.js", get(|| async { "js" }))
            .layer(axum::middleware::from_fn_with_state(safety, csrf))
            .layer(axum::middleware::from_fn_with_state(true, headers))
    }

    async fn send(app: &Router, req: axum::http::request::Builder) -> Response {
        app.clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn post_xrpc() -> axum::http::request::Builder {
        Request::builder()
            .method("POST")
            .uri("/xrpc/com.atproto.repo.createRecord")
    }

    #[tokio::test]
    async fn cookie_posts_need_the_header_and_an_allowed_origin() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = app(hits.clone());
        // Cookie, no header: refused, not forwarded.
        let r = send(&app, post_xrpc().header("cookie", "a=b; sid=xyz")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // Wrong value.
        let r = send(
            &app,
            post_xrpc()
                .header("cookie", "sid=xyz")
                .header("x-csrf", "yes"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // Header, but another site's origin.
        let r = send(
            &app,
            post_xrpc()
                .header("cookie", "sid=xyz")
                .header("x-csrf", "1")
                .header("origin", "https://evil.example"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing was forwarded");
        // Header and own origin, header and an allowed origin, header and no origin: passed.
        for origin in [
            Some("http://127.0.0.1:8080"),
            Some("https://app.example"),
            None,
        ] {
            let mut req = post_xrpc()
                .header("cookie", "sid=xyz")
                .header("x-csrf", "1");
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            assert_eq!(send(&app, req).await.status(), StatusCode::OK, "{origin:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn bearer_and_safe_requests_need_neither() {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = app(hits.clone());
        let r = send(
            &app,
            post_xrpc()
                .header("authorization", "Bearer abc")
                .header("cookie", "sid=xyz")
                .header("origin", "https://evil.example"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = send(
            &app,
            Request::builder()
                .uri("/xrpc/app.bsky.actor.getProfile")
                .header("cookie", "sid=xyz"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        // No session cookie at all: the route decides (here: it answers).
        let r = send(&app, post_xrpc().header("cookie", "other=1")).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn response_headers_by_kind() {
        let app = app(Arc::new(AtomicUsize::new(0)));
        let r = send(&app, Request::builder().uri("/")).await;
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let r = send(&app, Request::builder().uri("/xrpc/a.b.c")).await;
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert!(r.headers().get("x-frame-options").is_none());
        let r = send(&app, Request::builder().uri("/app.js")).await;
        assert!(r.headers().get("cache-control").is_none());
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        // A refusal is never cached either.
        let r = send(&app, post_xrpc().header("cookie", "sid=1")).await;
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
}
