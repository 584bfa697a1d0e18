//! `GET /metrics`: the gateway's counters in the Prometheus text format.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `atsession_http_requests_total` | `route`, `method`, `status` | requests answered |
//! | `atsession_http_request_duration_seconds` | `route` | time to the response head |
//! | `atsession_oauth_token_sets_total` | `outcome` | token sets stored by refreshes (`refreshed`) and grants ended by the session layer (`refused`, `subject_changed`, `auth_unsatisfiable`, `no_refresh_token`, `save_failed`, `signed_out`) |
//! | `atsession_oauth_refresh_failures_total` | | refreshes that failed and kept the grant (network, 5xx, timeout) |
//! | `atsession_proxied_bytes_total` | `direction` (`up`, `down`) | bytes of bodies the `/xrpc/` proxy forwarded |
//!
//! `route` is the route's pattern (`/xrpc/{nsid}`), never the raw path, and `method` one of
//! the nine methods HTTP defines or `other`, never a made-up one as sent, so the number of
//! series stays bounded.

use std::sync::Arc;
use std::time::Instant;

use atsession::oauth::{DeleteCause, SessionEvent};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    /// [`method_label`]: never what a client wrote, when it is not a method HTTP defines.
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

/// Which way proxied bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the browser to the PDS (request bodies).
    Up,
    /// From the PDS to the browser (response bodies).
    Down,
}

fn duration_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 18,
    ))
}

/// The gateway's metrics. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabel, Histogram, fn() -> Histogram>,
    token_sets: Family<OutcomeLabel, Counter>,
    refresh_failures: Counter,
    /// The two series of `proxied_bytes` (created at start, both shown from 0), held so
    /// that counting a chunk neither hashes labels nor takes the family's lock.
    proxied_up: Counter,
    proxied_down: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty counters, registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("atsession");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let token_sets = Family::<OutcomeLabel, Counter>::default();
        let refresh_failures = Counter::default();
        let proxied = Family::<DirectionLabel, Counter>::default();
        registry.register("http_requests", "Requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from the request to the response head",
            durations.clone(),
        );
        registry.register(
            "oauth_token_sets",
            "Token sets stored by refreshes, and grants ended by the session layer",
            token_sets.clone(),
        );
        registry.register(
            "oauth_refresh_failures",
            "Refreshes that failed and kept the grant",
            refresh_failures.clone(),
        );
        registry.register(
            "proxied_bytes",
            "Body bytes forwarded by the /xrpc/ proxy",
            proxied.clone(),
        );
        let series = |direction| proxied.get_or_create(&DirectionLabel { direction }).clone();
        Self {
            proxied_up: series("up"),
            proxied_down: series("down"),
            registry,
            requests,
            durations,
            token_sets,
            refresh_failures,
        }
    }

    /// Counts a refresh that failed and kept the grant.
    pub fn refresh_failed(&self) {
        self.refresh_failures.inc();
    }

    /// Counts proxied body bytes.
    pub fn proxied(&self, direction: Direction, bytes: u64) {
        match direction {
            Direction::Up => self.proxied_up.inc_by(bytes),
            Direction::Down => self.proxied_down.inc_by(bytes),
        };
    }

    /// Counts one event of the session layer.
    pub fn event(&self, event: &SessionEvent) {
        let outcome = match event {
            SessionEvent::Updated(_) => "refreshed",
            SessionEvent::Deleted { cause, .. } => match cause {
                DeleteCause::RefreshRefused { .. } => "refused",
                DeleteCause::SubjectChanged => "subject_changed",
                DeleteCause::AuthMethodUnsatisfiable => "auth_unsatisfiable",
                DeleteCause::NoRefreshToken => "no_refresh_token",
                DeleteCause::SaveFailed => "save_failed",
                DeleteCause::SignedOut => "signed_out",
                _ => "other",
            },
            _ => "other",
        };
        self.token_sets
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts the session layer's events while the returned task runs.
    pub fn spawn_events(
        self: &Arc<Self>,
        mut events: broadcast::Receiver<SessionEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let metrics = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => metrics.event(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics missed session events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The middleware that counts every request by route and status.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    // One allocation for both labels.
    let route: Arc<str> = Arc::from(
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str),
    );
    let method = method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    metrics
        .durations
        .get_or_create(&RouteLabel {
            route: Arc::clone(&route),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `method` as a label: its name when HTTP defines it, else `other`. The proxy takes every
/// method, and a client that sent made-up ones would otherwise add a series for each, and
/// grow the gateway's memory and `/metrics` without bound.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::{any, get};
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn counts_by_route_pattern_and_status() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .route("/xrpc/{nsid}", get(|| async { StatusCode::ACCEPTED }))
            .route("/metrics", get(serve))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&metrics),
                track,
            ))
            .with_state(Arc::clone(&metrics));
        for nsid in ["a.b.c", "d.e.f", "a.b.c"] {
            let r = app
                .clone()
                .oneshot(
                    Request::get(format!("/xrpc/{nsid}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        metrics.proxied(Direction::Down, 1500);
        metrics.proxied(Direction::Down, 500);
        metrics.refresh_failed();
        let r = app
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains(
                r#"atsession_http_requests_total{route="/xrpc/{nsid}",method="GET",status="202"} 3"#
            ),
            "{text}"
        );
        assert!(!text.contains("a.b.c"), "raw paths never become labels");
        assert!(text.contains(r#"atsession_proxied_bytes_total{direction="down"} 2000"#));
        assert!(text.contains(r#"atsession_proxied_bytes_total{direction="up"} 0"#));
        assert!(text.contains("atsession_oauth_refresh_failures_total 1"));
        assert!(
            text.contains(
                r#"atsession_http_request_duration_seconds_count{route="/xrpc/{nsid}"} 3"#
            )
        );
    }

    #[tokio::test]
    async fn made_up_methods_share_one_label() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .route("/xrpc/{nsid}", any(|| async { StatusCode::OK }))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&metrics),
                track,
            ));
        for method in ["FOO1", "FOO2", "FOO3", "POST"] {
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri("/xrpc/a.b.c")
                .body(Body::empty())
                .unwrap();
            let r = app.clone().oneshot(request).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"atsession_http_requests_total{route="/xrpc/{nsid}",method="other",status="200"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"atsession_http_requests_total{route="/xrpc/{nsid}",method="POST",status="200"} 1"#
        ));
        assert!(!text.contains("FOO"), "{text}");
    }

    #[test]
    fn events_are_counted_by_outcome() {
        let m = Metrics::new();
        let grant_id = atsession::store::oauth::GrantId::generate();
        let did = atsession::syntax::Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        m.event(&SessionEvent::Deleted {
            grant_id: grant_id.clone(),
            did: did.clone(),
            cause: DeleteCause::RefreshRefused {
                error: "invalid_grant".into(),
            },
        });
        m.event(&SessionEvent::Deleted {
            grant_id,
            did,
            cause: DeleteCause::SignedOut,
        });
        let text = m.render();
        assert!(
            text.contains(r#"atsession_oauth_token_sets_total{outcome="refused"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"atsession_oauth_token_sets_total{outcome="signed_out"} 1"#));
    }
}
