//! The client of PDS calls: how a request reaches a grant's PDS, under the idle timeout.
//!
//! The built-in transport is hyper-util's pooled HTTP/1.1 client over rustls, without
//! reqwest's layers on top (a call through the gateway's proxy paid for them on every
//! request). Its policy is the one of [`build_client`](super::http::build_client): the
//! library's rustls configuration (the *ring* provider, the platform's verifier), redirects
//! never followed (hyper does not follow them), outside development mode a resolver that
//! refuses host names resolving to non-public addresses, a connect timeout
//! ([`PdsOptions::connect_timeout`]), TCP keep-alive and `TCP_NODELAY`, and a
//! `User-Agent` of `atsession/<version>` when the caller gave none.
//!
//! A PDS URL that the environment sends through a proxy (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, less `NO_PROXY`, read once when the client is built, as reqwest reads them)
//! goes through [`build_pds_client`]'s reqwest client instead, which speaks to proxies. An
//! app's own client ([`OAuthClientConfig::http_client`](super::OAuthClientConfig::http_client))
//! carries every PDS call. Either way the URL is checked against the policy first
//! ([`check_url`]) and the idle timeout, the body cap and the typed errors are the same.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, USER_AGENT};
use url::Url;

use super::http::{
    HttpError, HttpOptions, PdsOptions, build_pds_client, check_url, display_url, lookup,
    tls_config,
};
use super::pds_request::{BoxError, BoxStream, PdsBody};
use super::pds_response::{Answer, PdsResponse};

/// The `User-Agent` of the built-in clients.
pub(crate) const USER_AGENT_VALUE: &str = concat!("atsession/", env!("CARGO_PKG_VERSION"));

/// Request bodies in memory larger than this are handed to the connection in slices of
/// this size, so that the idle timer sees their progress.
const BODY_SLICE: usize = 64 * 1024;

/// The body type of the built-in transport's requests.
type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

type Connector = hyper_rustls::HttpsConnector<HttpConnector<Resolver>>;

/// The client of PDS calls with its policy.
#[derive(Clone)]
pub(crate) struct PdsHttp {
    transport: Transport,
    pub(crate) options: PdsOptions,
    pub(crate) dev_mode: bool,
}

#[derive(Clone)]
enum Transport {
    /// hyper-util's client; reqwest's for URLs the environment sends through a proxy.
    Builtin {
        direct: Client<Connector, RequestBody>,
        proxies: Arc<Matcher>,
        via_proxy: reqwest::Client,
    },
    /// The app's own client.
    Own(reqwest::Client),
}

impl fmt::Debug for PdsHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The proxy settings may hold credentials: not shown.
        let transport = match self.transport {
            Transport::Builtin { .. } => "built-in",
            Transport::Own(_) => "the app's reqwest client",
        };
        f.debug_struct("PdsHttp")
            .field("transport", &transport)
            .field("options", &self.options)
            .field("dev_mode", &self.dev_mode)
            .finish()
    }
}

impl PdsHttp {
    /// The built-in client (see the [module docs](self)).
    pub(crate) fn new(http: &HttpOptions, options: PdsOptions) -> Result<Self, HttpError> {
        let mut tcp = HttpConnector::new_with_resolver(Resolver {
            public_only: !http.dev_mode,
        });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(options.connect_timeout));
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        let tls = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_config()?);
        let tls = if http.dev_mode {
            tls.https_or_http()
        } else {
            tls.https_only()
        };
        let connector = tls.enable_http1().wrap_connector(tcp);
        let direct = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            transport: Transport::Builtin {
                direct,
                proxies: Arc::new(Matcher::from_system()),
                via_proxy: build_pds_client(http, &options)?,
            },
            options,
            dev_mode: http.dev_mode,
        })
    }

    /// PDS calls on the app's own client.
    pub(crate) fn with_client(
        client: reqwest::Client,
        http: &HttpOptions,
        options: PdsOptions,
    ) -> Self {
        Self {
            transport: Transport::Own(client),
            options,
            dev_mode: http.dev_mode,
        }
    }

    /// Sends `method` to `url` (checked first) with `headers` and `body`, under the idle
    /// timeout, and returns the response as soon as its headers arrived. A stream body of
    /// known length is sent with that `Content-Length`.
    pub(crate) async fn send(
        &self,
        url: &Url,
        method: Method,
        mut headers: HeaderMap,
        body: PdsBody,
    ) -> Result<PdsResponse, HttpError> {
        check_url(url, self.dev_mode).map_err(|source| HttpError::Url {
            url: display_url(url),
            source,
        })?;
        let idle = self.options.idle_timeout;
        let progress = Arc::new(Progress::new());
        let body = Outgoing::new(body, &progress);
        if let Some(n) = body.announced_len {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        let transport_error = |source: BoxError| HttpError::Transport {
            url: display_url(url),
            source,
        };
        let via_reqwest = |client: &reqwest::Client, headers: HeaderMap, body: Outgoing| {
            let request = client.request(method.clone(), url.clone()).headers(headers);
            let request = match body.kind {
                OutgoingKind::Empty => request,
                OutgoingKind::Full(b) => request.body(b),
                OutgoingKind::Stream(s) => request.body(reqwest::Body::wrap_stream(s)),
            };
            futures_util::future::Either::Left(async move {
                match request.send().await {
                    Ok(r) => Ok(Answer::Reqwest(r)),
                    Err(e) => Err(Box::new(e.without_url()) as BoxError),
                }
            })
        };
        let pending = match &self.transport {
            Transport::Own(client) => via_reqwest(client, headers, body),
            Transport::Builtin {
                direct,
                proxies,
                via_proxy,
            } => {
                let uri: http::Uri = url
                    .as_str()
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| transport_error(Box::new(e)))?;
                if proxies.intercept(&uri).is_some() {
                    via_reqwest(via_proxy, headers, body)
                } else {
                    headers
                        .entry(USER_AGENT)
                        .or_insert(HeaderValue::from_static(USER_AGENT_VALUE));
                    let mut request = http::Request::new(body.into_hyper());
                    *request.method_mut() = method.clone();
                    *request.uri_mut() = uri;
                    *request.headers_mut() = headers;
                    let sent = direct.request(request);
                    futures_util::future::Either::Right(async move {
                        match sent.await {
                            Ok(r) => Ok(Answer::Direct(r)),
                            Err(e) => Err(Box::new(e) as BoxError),
                        }
                    })
                }
            }
        };
        tokio::pin!(pending);
        // One timer, re-armed to the last progress when it fires (not on every wake-up).
        let timer = tokio::time::sleep_until(progress.last() + idle);
        tokio::pin!(timer);
        let answer = loop {
            tokio::select! {
                biased;
                r = &mut pending => break r.map_err(transport_error)?,
                () = &mut timer => {
                    let deadline = progress.last() + idle;
                    if deadline <= tokio::time::Instant::now() {
                        return Err(HttpError::Idle { url: display_url(url), timeout: idle });
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        Ok(PdsResponse::new(
            answer,
            url.clone(),
            idle,
            self.options.max_body,
        ))
    }
}

/// A request body on its way out.
struct Outgoing {
    kind: OutgoingKind,
    /// The `Content-Length` to send for a stream (its own or of a body in slices).
    announced_len: Option<u64>,
}

enum OutgoingKind {
    Empty,
    Full(Bytes),
    /// Progress-tracked.
    Stream(ProgressStream),
}

impl Outgoing {
    fn new(body: PdsBody, progress: &Arc<Progress>) -> Self {
        let tracked = |inner: BoxStream| {
            OutgoingKind::Stream(ProgressStream {
                inner,
                progress: Arc::clone(progress),
            })
        };
        match body.into_stream() {
            Ok((stream, len)) => Self {
                kind: tracked(stream),
                announced_len: len,
            },
            Err(PdsBody::Bytes(b)) if b.len() > BODY_SLICE => {
                let len = b.len();
                let slices: Vec<Result<Bytes, BoxError>> = (0..len)
                    .step_by(BODY_SLICE)
                    .map(|at| Ok(b.slice(at..(at + BODY_SLICE).min(len))))
                    .collect();
                Self {
                    kind: tracked(Box::pin(futures_util::stream::iter(slices))),
                    announced_len: Some(len as u64),
                }
            }
            Err(PdsBody::Bytes(b)) => Self {
                kind: OutgoingKind::Full(b),
                announced_len: None,
            },
            Err(_) => Self {
                kind: OutgoingKind::Empty,
                announced_len: None,
            },
        }
    }

    fn into_hyper(self) -> RequestBody {
        match self.kind {
            OutgoingKind::Empty => Empty::new().map_err(|n| match n {}).boxed_unsync(),
            OutgoingKind::Full(b) => Full::new(b).map_err(|n| match n {}).boxed_unsync(),
            OutgoingKind::Stream(s) => {
                StreamBody::new(s.map_ok(http_body::Frame::data)).boxed_unsync()
            }
        }
    }
}

/// The resolver of the built-in transport: the system's, less non-public addresses
/// outside development mode.
#[derive(Debug, Clone, Copy)]
struct Resolver {
    public_only: bool,
}

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        let public_only = self.public_only;
        Box::pin(async move { Ok(lookup(&host, public_only).await?.into_iter()) })
    }
}

/// When a request body last made progress.
struct Progress {
    base: tokio::time::Instant,
    /// Milliseconds since `base`.
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A request body stream that records each chunk the connection takes.
struct ProgressStream {
    inner: BoxStream,
    progress: Arc<Progress>,
}

impl futures_core::Stream for ProgressStream {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if next.is_ready() {
            self.progress.touch();
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// What a loopback server read of one request: its head and its body.
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// Serves `answer` to each connection's first request on loopback, and hands over
    /// what it read (a `Content-Length` or chunked body read to its end).
    async fn serve(answer: &'static [u8]) -> (Url, tokio::sync::mpsc::UnboundedReceiver<Seen>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/xrpc/x", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                let end = loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(at + 4);
                    }
                };
                let Some(end) = end else { continue };
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                let mut seen = Seen {
                    head,
                    body: got[end..].to_vec(),
                };
                let chunked = seen
                    .header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                let want = seen
                    .header("content-length")
                    .map(|v| v.parse::<usize>().unwrap());
                loop {
                    let done = if chunked {
                        seen.body.ends_with(b"0\r\n\r\n")
                    } else {
                        seen.body.len() >= want.unwrap_or(0)
                    };
                    if done {
                        break;
                    }
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    seen.body.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(seen);
                let _ = sock.write_all(answer).await;
                let _ = sock.shutdown().await;
            }
        });
        (url, rx)
    }

    fn dev() -> HttpOptions {
        HttpOptions {
            dev_mode: true,
            ..HttpOptions::default()
        }
    }

    /// The two transports a PDS call can take in development mode: the built-in one
    /// (hyper-util) and an app's own reqwest client.
    fn transports(options: PdsOptions) -> Vec<(&'static str, PdsHttp)> {
        let own = build_pds_client(&dev(), &options).unwrap();
        vec![
            ("built-in", PdsHttp::new(&dev(), options).unwrap()),
            ("own", PdsHttp::with_client(own, &dev(), options)),
        ]
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, HeaderValue::from_static(v));
        }
        h
    }

    /// Both transports put the same request on the wire: the method, the path and query,
    /// the caller's headers, a `User-Agent`, the body with its length (in memory, in
    /// slices, a stream of known and of unknown length).
    #[tokio::test]
    async fn both_transports_send_the_same_request() {
        let big = Bytes::from(vec![7u8; 3 * BODY_SLICE + 5]);
        for (name, pds) in transports(PdsOptions::default()) {
            let (mut url, mut seen) =
                serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            url.set_query(Some("repo=did:plc:abc&limit=5"));
            let caller = headers(&[
                ("content-type", "application/json"),
                ("authorization", "DPoP tok"),
            ]);

            let r = pds
                .send(&url, Method::GET, caller.clone(), PdsBody::Empty)
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{name}");
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"ok", "{name}");
            let s = seen.recv().await.unwrap();
            assert!(
                s.head
                    .starts_with("GET /xrpc/x?repo=did:plc:abc&limit=5 HTTP/1.1\r\n"),
                "{name}: {}",
                s.head
            );
            assert_eq!(s.header("authorization"), Some("DPoP tok"), "{name}");
            assert_eq!(s.header("user-agent"), Some(USER_AGENT_VALUE), "{name}");
            assert!(
                s.header("host")
                    .is_some_and(|h| h.starts_with("127.0.0.1:")),
                "{name}"
            );
            assert_eq!(s.header("content-length"), None, "{name}");
            assert_eq!(s.header("transfer-encoding"), None, "{name}");

            let small = PdsBody::Bytes(Bytes::from_static(b"{\"a\":1}"));
            pds.send(&url, Method::POST, caller.clone(), small)
                .await
                .unwrap();
            let s = seen.recv().await.unwrap();
            assert!(s.head.starts_with("POST /xrpc/x?"), "{name}");
            assert_eq!(s.header("content-length"), Some("7"), "{name}");
            assert_eq!(s.body, b"{\"a\":1}", "{name}");

            pds.send(
                &url,
                Method::POST,
                caller.clone(),
                PdsBody::Bytes(big.clone()),
            )
            .await
            .unwrap();
            let s = seen.recv().await.unwrap();
            assert_eq!(
                s.header("content-length"),
                Some(big.len().to_string().as_str()),
                "{name}"
            );
            assert_eq!(s.body, big.as_ref(), "{name}");

            let chunks = || {
                futures_util::stream::iter(vec![
                    Ok::<_, std::io::Error>(Bytes::from_static(b"one,")),
                    Ok(Bytes::from_static(b"two")),
                ])
            };
            let known = PdsBody::sized_stream(chunks(), 7);
            pds.send(&url, Method::POST, caller.clone(), known)
                .await
                .unwrap();
            let s = seen.recv().await.unwrap();
            assert_eq!(s.header("content-length"), Some("7"), "{name}");
            assert_eq!(s.body, b"one,two", "{name}");

            let unknown = PdsBody::stream(chunks());
            pds.send(&url, Method::POST, caller, unknown).await.unwrap();
            let s = seen.recv().await.unwrap();
            assert_eq!(s.header("transfer-encoding"), Some("chunked"), "{name}");
            assert_eq!(s.header("content-length"), None, "{name}");
            assert!(s.body.starts_with(b"4\r\none,\r\n3\r\ntwo\r\n"), "{name}");
        }
    }

    /// A PDS answer names the URL called without its query, in `url()` and in its errors;
    /// a redirect comes back as it is, not followed.
    #[tokio::test]
    async fn answers_name_the_url_without_its_query_and_redirects_are_not_followed() {
        let options = PdsOptions {
            max_body: Some(5),
            ..PdsOptions::default()
        };
        for (name, pds) in transports(options) {
            let (url, _seen) =
                serve(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world").await;
            let mut call = url.clone();
            call.set_query(Some("cursor=secret-ish"));
            let mut answer = pds
                .send(&call, Method::GET, HeaderMap::new(), PdsBody::Empty)
                .await
                .unwrap();
            assert_eq!(answer.url(), url.as_str(), "{name}");
            assert_eq!(answer.content_length(), Some(11), "{name}");
            assert!(format!("{answer:?}").contains(url.as_str()), "{name}");
            assert!(!format!("{answer:?}").contains("secret-ish"), "{name}");
            match answer.chunk().await {
                Err(HttpError::TooLarge {
                    url: named,
                    limit: 5,
                }) => assert_eq!(named, url.as_str()),
                other => panic!("{name}: expected TooLarge, got {other:?}"),
            }

            let (url, mut seen) =
                serve(b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\n\r\n").await;
            let answer = pds
                .send(&url, Method::GET, HeaderMap::new(), PdsBody::Empty)
                .await
                .unwrap();
            assert_eq!(answer.status(), 302, "{name}");
            assert_eq!(
                answer.headers()["location"],
                "http://127.0.0.1:9/elsewhere",
                "{name}"
            );
            assert!(seen.recv().await.is_some());
            assert!(seen.try_recv().is_err(), "{name}: one request only");
        }
    }

    /// Outside development mode, a loopback URL is refused before any connection, and a
    /// host name that resolves only to loopback fails at the resolver.
    #[tokio::test]
    async fn production_refuses_private_destinations() {
        let pds = PdsHttp::new(&HttpOptions::default(), PdsOptions::default()).unwrap();
        let (url, mut seen) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let e = pds
            .send(&url, Method::GET, HeaderMap::new(), PdsBody::Empty)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Url { .. }), "{e:?}");
        assert!(seen.try_recv().is_err(), "nothing was sent");

        let mut resolver = Resolver { public_only: true };
        let name: Name = "localhost".parse().unwrap();
        let e = tower_service::Service::call(&mut resolver, name)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no public address"), "{e}");
        let mut dev = Resolver { public_only: false };
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = tower_service::Service::call(&mut dev, name)
            .await
            .unwrap()
            .collect();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(),
            "{addrs:?}"
        );
    }

    /// A server that takes the request and never answers ends the call with
    /// [`HttpError::Idle`] on both transports, and the error names no query.
    #[tokio::test]
    async fn a_silent_server_ends_in_the_idle_timeout() {
        let options = PdsOptions {
            idle_timeout: Duration::from_millis(300),
            ..PdsOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut url =
            Url::parse(&format!("http://{}/xrpc/x", listener.local_addr().unwrap())).unwrap();
        url.set_query(Some("q=secret-ish"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        for (name, pds) in transports(options) {
            let e = pds
                .send(&url, Method::GET, HeaderMap::new(), PdsBody::Empty)
                .await
                .unwrap_err();
            assert!(matches!(e, HttpError::Idle { .. }), "{name}: {e:?}");
            assert!(!e.to_string().contains("secret-ish"), "{name}: {e}");
        }
    }

    /// The environment's proxy settings send a URL to the reqwest transport, `NO_PROXY`
    /// exempts a host, and a PDS client's Debug output shows none of them.
    #[test]
    fn proxies_from_the_environment_are_matched_per_url() {
        let proxies = Matcher::builder()
            .https("http://user:pw@proxy.internal:3128")
            .no("pds.example.org")
            .build();
        let via = |u: &str| proxies.intercept(&u.parse().unwrap()).is_some();
        assert!(via("https://bsky.social/xrpc/x"));
        assert!(!via("https://pds.example.org/xrpc/x"));
        assert!(!via("http://127.0.0.1:2583/xrpc/x"));
        let pds = PdsHttp::new(&dev(), PdsOptions::default()).unwrap();
        let shown = format!("{pds:?}");
        assert!(
            shown.contains("built-in") && !shown.contains("proxy"),
            "{shown}"
        );
    }

    /// With `HTTP_PROXY` in the environment, a PDS call goes through that proxy (the
    /// reqwest transport), and a host in `NO_PROXY` does not. The test runs itself again
    /// as a child process with those variables set, its proxy a recording server here.
    #[tokio::test]
    async fn a_proxy_named_in_the_environment_carries_the_call() {
        const CHILD: &str = "ATSESSION_TEST_PDS_PROXY_CHILD";
        const TEST: &str =
            "oauth::pds_client::tests::a_proxy_named_in_the_environment_carries_the_call";
        if let Ok(direct) = std::env::var(CHILD) {
            let pds = PdsHttp::new(&dev(), PdsOptions::default()).unwrap();
            let url = Url::parse("http://pds.proxied.test/xrpc/x?q=1").unwrap();
            let r = pds
                .send(&url, Method::GET, HeaderMap::new(), PdsBody::Empty)
                .await
                .unwrap();
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"ok");
            let direct = Url::parse(&direct).unwrap();
            let r = pds
                .send(&direct, Method::GET, HeaderMap::new(), PdsBody::Empty)
                .await
                .unwrap();
            assert_eq!(r.bytes().await.unwrap().as_ref(), b"ok");
            return;
        }
        let (proxy, mut via_proxy) = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let (direct, mut direct_seen) =
            serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, direct.as_str())
            .env("HTTP_PROXY", format!("http://{}", proxy.authority()))
            .env("NO_PROXY", "127.0.0.1")
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy");
        let out = tokio::task::spawn_blocking(move || child.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "child: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = via_proxy.try_recv().expect("the proxy got the call");
        assert!(
            seen.head
                .starts_with("GET http://pds.proxied.test/xrpc/x?q=1 HTTP/1.1\r\n"),
            "{}",
            seen.head
        );
        assert!(
            via_proxy.try_recv().is_err(),
            "the NO_PROXY host went direct"
        );
        let seen = direct_seen
            .try_recv()
            .expect("the NO_PROXY host was called");
        assert!(
            seen.head.starts_with("GET /xrpc/x HTTP/1.1\r\n"),
            "{}",
            seen.head
        );
    }
}
