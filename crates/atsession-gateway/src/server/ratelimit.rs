//! A per-address limit on login starts: each `GET /oauth/login` resolves an identity,
//! fetches metadata, sends a pushed authorization request and stores a state, all before
//! the user has proven anything, so an address may start only so many per minute.
//!
//! Addresses are counted by IPv4 address and by IPv6 /64 (one host usually has a whole
//! /64). The table is pruned of quiet addresses every minute, so it does not grow without
//! bound. The address is the TCP peer's, unless the peer is a trusted proxy
//! (`--trusted-proxy`): then it is the last address in `X-Forwarded-For` that is not itself
//! a trusted proxy (the one the nearest trusted proxy saw). Addresses a client writes into
//! the header itself sit left of that and are never used.

use atsession::auth::AuthError;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// Login starts allowed per address and minute.
#[derive(Clone)]
pub struct LoginLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// The login route's path: the middleware counts `GET`s of it and lets anything else by.
    path: Arc<str>,
    /// Proxies whose `X-Forwarded-For` is believed.
    trusted: Arc<[IpNet]>,
}

impl std::fmt::Debug for LoginLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimit")
            .field("addresses", &self.limiter.len())
            .field("trusted_proxies", &self.trusted)
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
            trusted: Arc::from([]),
        }
    }

    /// Believes `X-Forwarded-For` from peers in these networks (a reverse proxy in front of
    /// the gateway), so that logins are counted by the client's address, not the proxy's.
    #[must_use]
    pub fn trusting(mut self, proxies: &[IpNet]) -> Self {
        self.trusted = proxies.into();
        self
    }

    /// The address a request is counted under: the peer's, or for a trusted peer the
    /// rightmost address of `X-Forwarded-For` that is not a trusted proxy. A header that
    /// cannot be read ends the walk at the last trusted hop.
    fn client(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(&canonical(*ip)));
        let mut client = peer;
        if !trusted(&client) {
            return client;
        }
        // Later header lines were added by nearer proxies: read them last-first.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| {
                let list = v.to_str().unwrap_or("");
                list.rsplit(',').map(str::trim).collect::<Vec<_>>()
            });
        for hop in hops {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        client
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

/// An address of `X-Forwarded-For`: an IP, or as some proxies write it with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`, what a dual-stack socket reports)
/// as IPv4, so that it matches an IPv4 network.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
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
    let client = limit.client(peer.ip(), request.headers());
    match limit.check(client) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let secs = wait.as_secs().max(1);
            tracing::info!(peer = %peer.ip(), %client, "login start refused: rate limit");
            let e = AuthError::RateLimited {
                retry_after: u32::try_from(secs).unwrap_or(u32::MAX),
            };
            e.answer(false)
                .to_response(None)
                .map(axum::body::Body::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, header};
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

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop() {
        let limit =
            LoginLimit::per_minute(NonZeroU32::new(3).unwrap(), "/oauth/login").trusting(&[
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8:ffff::1/128".parse().unwrap(),
            ]);
        let client = |peer: &str, lines: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for l in lines {
                h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
            }
            limit.client(peer.parse().unwrap(), &h).to_string()
        };
        assert_eq!(client("10.0.0.1", &["198.51.100.7"]), "198.51.100.7");
        // What the client wrote itself is left of what the proxy saw.
        assert_eq!(
            client("10.0.0.1", &["203.0.113.9, 198.51.100.7"]),
            "198.51.100.7"
        );
        // A chain of trusted proxies, in one line or in several.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7, 10.0.0.2"]),
            "198.51.100.7"
        );
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7", "10.0.0.3"]),
            "198.51.100.7"
        );
        assert_eq!(
            client("2001:db8:ffff::1", &["[2001:db8::5]:4711"]),
            "2001:db8::5"
        );
        assert_eq!(
            client("::ffff:10.0.0.1", &["198.51.100.7:80"]),
            "198.51.100.7"
        );
        // An untrusted peer's header is not believed.
        assert_eq!(client("192.0.2.50", &["198.51.100.7"]), "192.0.2.50");
        // No header, or one that cannot be read: the last trusted hop.
        assert_eq!(client("10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(client("10.0.0.1", &["198.51.100.7, bogus"]), "10.0.0.1");
        assert_eq!(client("10.0.0.1", &["bogus, 10.0.0.4"]), "10.0.0.4");
        // Every hop trusted: the leftmost.
        assert_eq!(client("10.0.0.1", &["10.0.0.5, 10.0.0.6"]), "10.0.0.5");
    }

    #[tokio::test]
    async fn clients_behind_one_trusted_proxy_get_their_own_allowances() {
        let limit = LoginLimit::per_minute(NonZeroU32::new(2).unwrap(), "/oauth/login")
            .trusting(&["127.0.0.1/32".parse().unwrap()]);
        let app = Router::new()
            .route("/oauth/login", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limit, limit_logins));
        let status = |forwarded: &'static str| {
            let app = app.clone();
            async move {
                let mut r = from("127.0.0.1");
                r.headers_mut()
                    .insert("x-forwarded-for", HeaderValue::from_static(forwarded));
                app.oneshot(r).await.unwrap().status()
            }
        };
        for _ in 0..2 {
            assert_eq!(status("198.51.100.1").await, StatusCode::OK);
        }
        assert_eq!(status("198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
        // A spoofed left entry does not buy a new allowance.
        assert_eq!(
            status("203.0.113.1, 198.51.100.1").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status("198.51.100.2").await, StatusCode::OK);
    }
}
