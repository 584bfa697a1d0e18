//! A per-address limit on login starts: each `GET /oauth/login` resolves an identity,
//! fetches metadata, sends a pushed authorization request and stores a state, all before
//! the user has proven anything, so an address may start only so many per minute.
//!
//! Addresses are counted by IPv4 address and by IPv6 /64 (one host usually has a whole
//! /64). The table is pruned of quiet addresses every minute, so it does not grow without
//! bound. The address is the TCP peer's: behind a reverse proxy every login comes from the
//! proxy, and the proxy should do this limiting instead.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Login starts allowed per address and minute.
#[derive(Clone)]
pub struct LoginLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// The login route's path: the middleware counts `GET`s of it and lets anything else by.
    path: Arc<str>,
}

impl std::fmt::Debug for LoginLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimit")
            .field("addresses", &self.limiter.len())
            .finish()
    }
}

impl LoginLimit {
    /// `per_minute` starts per address and minute, in a burst or spread out, of the login
    /// route at `path`.
    #[must_use]
    pub fn per_minute(per_minute: NonZeroU32, path: &str) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            path: path.into(),
        }
    }

    /// Prunes quiet addresses every minute while the returned task runs.
    pub fn spawn_pruning(&self) -> tokio::task::JoinHandle<()> {
        let limiter = Arc::clone(&self.limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        })
    }

    /// `Ok` if `peer` may start a login now, else how long until it may.
    fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&bucket(peer))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The address an IP is counted under: itself for IPv4, its /64 for IPv6.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The middleware: `429 Too Many Requests` with `Retry-After` past the limit, for `GET`s of
/// the login route (other requests pass).
pub async fn limit_logins(
    State(limit): State<LoginLimit>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != axum::http::Method::GET || request.uri().path() != &*limit.path {
        return next.run(request).await;
    }
    match limit.check(peer.ip()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let secs = wait.as_secs().max(1);
            tracing::info!(peer = %peer.ip(), "login start refused: rate limit");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, HeaderValue::from(secs)),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                axum::Json(serde_json::json!({
                    "error": "RateLimited",
                    "message": format!("too many logins started from this address; retry in {secs} s"),
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn from(ip: &str) -> Request {
        let mut r = Request::builder()
            .uri("/oauth/login")
            .body(Body::empty())
            .unwrap();
        let addr: SocketAddr = (ip.parse::<IpAddr>().unwrap(), 4000).into();
        r.extensions_mut().insert(ConnectInfo(addr));
        r
    }

    #[tokio::test]
    async fn each_address_gets_its_own_allowance() {
        let limit = LoginLimit::per_minute(NonZeroU32::new(3).unwrap(), "/oauth/login");
        let app = Router::new()
            .route("/oauth/login", get(|| async { "ok" }))
            .route("/oauth/callback", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                limit.clone(),
                limit_logins,
            ));
        let status = |ip: &'static str| {
            let app = app.clone();
            async move { app.oneshot(from(ip)).await.unwrap().status() }
        };
        for _ in 0..3 {
            assert_eq!(status("192.0.2.1").await, StatusCode::OK);
        }
        let refused = app.clone().oneshot(from("192.0.2.1")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            refused.headers()[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        // Another address is not affected.
        assert_eq!(status("192.0.2.2").await, StatusCode::OK);
        // One IPv6 /64 is one address: its fourth different host is refused.
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            assert_eq!(status(host).await, StatusCode::OK);
        }
        assert_eq!(status("2001:db8::4").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status("2001:db8:0:1::1").await, StatusCode::OK);
        // An IPv4-mapped address counts as the IPv4 address.
        assert_eq!(
            status("::ffff:192.0.2.1").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(limit.limiter.len(), 4);
        // Only the login route counts.
        let mut callback = from("192.0.2.1");
        *callback.uri_mut() = "/oauth/callback".parse().unwrap();
        assert_eq!(
            app.oneshot(callback).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
