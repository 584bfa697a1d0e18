//! The HTTP side of the OAuth client: one `reqwest` client, a URL policy, size limits and
//! timeouts on every request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use url::{Host, Url};

use super::pds_request::{BoxError, BoxStream, PdsBody};
use super::pds_response::PdsResponse;

/// The default limit on a response body: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// The default timeout of one request, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default connect timeout of a PDS call.
pub const DEFAULT_PDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default idle timeout of a PDS call: how long it may go without progress.
pub const DEFAULT_PDS_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the calls to a grant's PDS (see [`HttpOptions`] for the two policies).
///
/// ```
/// use std::time::Duration;
/// use atsession::oauth::PdsOptions;
///
/// let options = PdsOptions {
///     max_body: Some(200 * 1024 * 1024),
///     idle_timeout: Duration::from_secs(60),
///     ..PdsOptions::default()
/// };
/// assert_eq!(options.connect_timeout, Duration::from_secs(10));
/// assert_eq!(PdsOptions::default().max_body, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdsOptions {
    /// How long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long a call may go without progress: no chunk of the request body taken by the
    /// connection, no response headers, no chunk of the response body.
    pub idle_timeout: Duration,
    /// The largest response body read, if any (none by default).
    pub max_body: Option<u64>,
}

impl Default for PdsOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_PDS_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_PDS_IDLE_TIMEOUT,
            max_body: None,
        }
    }
}

/// Limits and policy for every request the OAuth client makes to discovery and
/// authorization-server endpoints: one `reqwest` client, a URL policy, size limits and
/// timeouts on every request.
///
/// Outside development mode every URL the client fetches must be `https`, must not name
/// `localhost` or a loopback, private, link-local or otherwise non-public address, and the
/// client built by [`build_client`] also refuses host names that *resolve* to such addresses
/// (its DNS resolver filters them), so a hostile document cannot point the client at the
/// machine's own services. Redirects are never followed. Every response body is read up to
/// a limit ([`HttpOptions::max_body`], 64 KiB by default) and every request has a timeout.
///
/// Development mode ([`HttpOptions::dev_mode`]) allows `http` and loopback addresses, for a
/// PDS on `http://localhost:<port>`. Never enable it in production.
///
/// # Two policies
///
/// Discovery and the authorization server (identity, DID documents, metadata, PAR, token,
/// revocation) are read with [`HttpOptions`]: every body is capped and every request has one
/// short whole-call timeout, because those documents are small and may be hostile.
///
/// Calls to a grant's PDS (the data an app reads and writes) are made with [`PdsOptions`]:
/// no body cap unless the app sets one, a connect timeout, and an *idle* timeout instead of
/// a whole-call timeout. The idle timer restarts whenever the request body makes progress
/// (a chunk is taken by the connection) and whenever a chunk of the response arrives, so a
/// 100 MB upload on a slow link is not cut off while a server that stops answering is.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Allow `http` URLs and loopback/private addresses. For local development and tests
    /// only.
    pub dev_mode: bool,
    /// Timeout of each request, from connecting to the end of the body.
    pub timeout: Duration,
    /// The largest response body read; larger ones are an error.
    pub max_body: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            dev_mode: false,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// A failed request. Messages name the URL without its query; they never carry a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL was refused by the policy ([`check_url`]). Nothing was sent.
    #[error("refused URL {url}")]
    Url {
        /// The URL, without query or fragment.
        url: String,
        /// Why: one of [`UrlParse`](Self::UrlParse), [`Scheme`](Self::Scheme),
        /// [`Credentials`](Self::Credentials), [`NoHost`](Self::NoHost),
        /// [`NotPublic`](Self::NotPublic).
        #[source]
        source: Box<HttpError>,
    },
    /// Why a URL was refused: not a URL.
    #[error("not a valid URL")]
    UrlParse,
    /// Why a URL was refused: the scheme is not `https` (or `http` in development mode).
    #[error("URL scheme `{0}` is not allowed (https only outside development mode)")]
    Scheme(String),
    /// Why a URL was refused: it has a user name or password.
    #[error("URL carries credentials")]
    Credentials,
    /// Why a URL was refused: it has no host.
    #[error("URL has no host")]
    NoHost,
    /// Why a URL was refused: the host is `localhost` or a loopback, private, link-local or
    /// reserved address.
    #[error("URL host `{0}` is not a public address (allowed in development mode only)")]
    NotPublic(String),
    /// Connecting, sending or receiving failed, or timed out.
    #[error("request to {url} failed")]
    Transport {
        /// The URL, without query or fragment.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The response body is larger than the limit.
    #[error("response from {url} exceeds {limit} bytes")]
    TooLarge {
        /// The URL, without query or fragment.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// An unexpected status (a redirect included: redirects are not followed).
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL, without query or fragment.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is not JSON of the expected shape.
    #[error("response from {url} is not the expected JSON")]
    Json {
        /// The URL, without query or fragment.
        url: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Build(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A PDS call made no progress for the idle timeout ([`PdsOptions::idle_timeout`]).
    #[error("{url} made no progress for {timeout:?}")]
    Idle {
        /// The URL, without query or fragment.
        url: String,
        /// The idle timeout.
        timeout: Duration,
    },
    /// The path of a PDS call was refused ([`check_path`](super::pds_path::check_path),
    /// [`pds_url`](super::pds_path::pds_url)): it could lead the access token elsewhere.
    /// Nothing was sent. Why: one of [`NotAbsolutePath`](Self::NotAbsolutePath),
    /// [`PathCharacter`](Self::PathCharacter), [`NotXrpc`](Self::NotXrpc),
    /// [`PathQuery`](Self::PathQuery), [`PdsUrl`](Self::PdsUrl),
    /// [`OtherOrigin`](Self::OtherOrigin).
    #[error("refused PDS path")]
    PdsPath(#[source] Box<HttpError>),
    /// Why a PDS path was refused: it does not start with a single `/` (a scheme, `//host`,
    /// a backslash, a relative path).
    #[error("the path must start with a single `/`")]
    NotAbsolutePath,
    /// Why a PDS path was refused: a space, a control character, a backslash, a `#` or a
    /// non-ASCII character.
    #[error("the path holds a space, a control character, a backslash, `#` or non-ASCII")]
    PathCharacter,
    /// Why a PDS path was refused: it is not `/xrpc/<nsid>` (a `.`/`..` segment, an encoded
    /// separator, another route).
    #[error("the path is not /xrpc/<nsid>")]
    NotXrpc,
    /// Why a PDS path was refused: the query holds a second `?`, a bad `%` escape or a
    /// character outside URLs.
    #[error("the query is not a plain URL query")]
    PathQuery,
    /// Why a PDS path was refused: the grant's PDS URL does not parse or cannot be a base.
    #[error("the grant's PDS URL is unusable")]
    PdsUrl,
    /// Why a PDS path was refused: the URL built is not on the grant's PDS origin (a safety
    /// net: the checks above should make this impossible).
    #[error("the URL built is not on the grant's PDS origin")]
    OtherOrigin,
    /// A header given for a PDS call is not one that is forwarded
    /// ([`PDS_REQUEST_HEADERS`](super::pds_headers::PDS_REQUEST_HEADERS)). Nothing was sent.
    #[error("the header `{name}` is not forwarded to a PDS")]
    Header {
        /// The header name (lowercase).
        name: String,
    },
}

/// A URL for messages: scheme, host, port and path; no query, fragment or credentials.
pub(crate) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Checks a URL against the policy. The error is why it is refused (one of the variants
/// that [`HttpError::Url`] wraps).
pub fn check_url(url: &Url, dev_mode: bool) -> Result<(), HttpError> {
    match url.scheme() {
        "https" => {}
        "http" if dev_mode => {}
        other => return Err(HttpError::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::Credentials);
    }
    let host = url.host().ok_or(HttpError::NoHost)?;
    if dev_mode {
        return Ok(());
    }
    let public = match &host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d != "localhost" && !d.ends_with(".localhost") && d.contains('.')
        }
        Host::Ipv4(ip) => is_public_ip(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => is_public_ip(IpAddr::V6(*ip)),
    };
    if public {
        Ok(())
    } else {
        Err(HttpError::NotPublic(host.to_string()))
    }
}

/// Parses and checks a URL.
pub(crate) fn parse_url(s: &str, dev_mode: bool) -> Result<Url, HttpError> {
    let url = Url::parse(s).map_err(|_| HttpError::UrlParse)?;
    check_url(&url, dev_mode)?;
    Ok(url)
}

/// Whether an address is publicly routable: not loopback, private, link-local, shared,
/// documentation, benchmarking, multicast, reserved or unspecified.
#[must_use]
pub(crate) fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: embeds an IPv4 address
                || (s[0] == 0x2002) // 6to4: embeds an IPv4 address
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || s[..6] == [0; 6]) // IPv4-compatible and other reserved
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240) // reserved
}

/// A DNS resolver that drops non-public addresses, so that a public-looking host name cannot
/// lead the client to a private service.
#[derive(Debug, Clone, Copy)]
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public_ip(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Builds the HTTP client the OAuth client uses by default: rustls with the *ring* crypto
/// provider and the platform's certificate verifier (no process-wide provider is
/// installed), no redirects, no retries of its own (the library decides what is sent
/// again), a connect timeout, and outside development mode a DNS resolver that refuses
/// non-public addresses.
pub fn build_client(options: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    base_builder(
        options.dev_mode,
        options.timeout.min(Duration::from_secs(5)),
    )?
    .timeout(options.timeout)
    .build()
    .map_err(|e| HttpError::Build(Box::new(e)))
}

/// Builds the HTTP client of PDS calls: the same TLS, redirect and address policy as
/// [`build_client`], [`PdsOptions::connect_timeout`], and no whole-call timeout (the idle
/// timeout is applied per call).
pub fn build_pds_client(
    http: &HttpOptions,
    pds: &PdsOptions,
) -> Result<reqwest::Client, HttpError> {
    base_builder(http.dev_mode, pds.connect_timeout)?
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| HttpError::Build(Box::new(e)))
}

fn base_builder(
    dev_mode: bool,
    connect_timeout: Duration,
) -> Result<reqwest::ClientBuilder, HttpError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Build(Box::new(e)))?
        .with_platform_verifier()
        .map_err(|e| HttpError::Build(Box::new(e)))?
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        // reqwest's default policy retries only HTTP/2 and HTTP/3 refusals, which this
        // HTTP/1.1 client never sees, yet copies every request's headers for it.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .connect_timeout(connect_timeout)
        .user_agent(concat!("atsession/", env!("CARGO_PKG_VERSION")));
    if !dev_mode {
        builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
    }
    Ok(builder)
}

/// A response read to the end (within the limit).
#[derive(Clone)]
pub struct Fetched {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may hold tokens.
        f.debug_struct("Fetched")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Fetched {
    /// The body as JSON of type `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|source| HttpError::Json {
            url: display_url(url),
            source,
        })
    }
}

/// The client with its policy.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) options: HttpOptions,
}

impl Http {
    pub(crate) fn check(&self, url: &Url) -> Result<(), HttpError> {
        check_url(url, self.options.dev_mode).map_err(|source| HttpError::Url {
            url: display_url(url),
            source: Box::new(source),
        })
    }

    /// Sends a request to `url` (checked first) and reads the whole response within the
    /// limit and the timeout.
    pub(crate) async fn send(
        &self,
        url: &Url,
        request: RequestBuilder,
    ) -> Result<Fetched, HttpError> {
        self.check(url)?;
        let transport = |e: reqwest::Error| HttpError::Transport {
            url: display_url(url),
            source: e.without_url(),
        };
        let mut response = request
            .timeout(self.options.timeout)
            .send()
            .await
            .map_err(transport)?;
        let limit = self.options.max_body;
        let too_large = || HttpError::TooLarge {
            url: display_url(url),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        })
    }

    /// GETs a JSON document: status 200 only (a redirect is an error), within the limits.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, HttpError> {
        let f = self.get(url).await?;
        if f.status != StatusCode::OK {
            return Err(HttpError::Status {
                url: display_url(url),
                status: f.status.as_u16(),
            });
        }
        f.json(url)
    }

    /// GETs a document, any status.
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, HttpError> {
        let req = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(url, req).await
    }
}

/// The client of PDS calls with its policy.
#[derive(Debug, Clone)]
pub(crate) struct PdsHttp {
    pub(crate) client: reqwest::Client,
    pub(crate) options: PdsOptions,
    pub(crate) dev_mode: bool,
}

/// Request bodies in memory larger than this are handed to the connection in slices of
/// this size, so that the idle timer sees their progress.
const BODY_SLICE: usize = 64 * 1024;

impl PdsHttp {
    /// Sends `request` (its URL checked first) with `body`, under the idle timeout, and
    /// returns the response as soon as its headers arrived. A stream body of known length
    /// is sent with that `Content-Length`.
    pub(crate) async fn send(
        &self,
        url: &Url,
        request: RequestBuilder,
        body: PdsBody,
    ) -> Result<PdsResponse, HttpError> {
        check_url(url, self.dev_mode).map_err(|source| HttpError::Url {
            url: display_url(url),
            source: Box::new(source),
        })?;
        let idle = self.options.idle_timeout;
        let progress = Arc::new(Progress::new());
        let tracked = |inner: BoxStream| {
            reqwest::Body::wrap_stream(ProgressStream {
                inner,
                progress: Arc::clone(&progress),
            })
        };
        let request = match body.into_stream() {
            Ok((stream, len)) => {
                let request = match len {
                    Some(n) => request.header(reqwest::header::CONTENT_LENGTH, n),
                    None => request,
                };
                request.body(tracked(stream))
            }
            Err(PdsBody::Bytes(b)) if b.len() > BODY_SLICE => {
                let len = b.len();
                let slices: Vec<Result<Bytes, BoxError>> = (0..len)
                    .step_by(BODY_SLICE)
                    .map(|at| Ok(b.slice(at..(at + BODY_SLICE).min(len))))
                    .collect();
                request
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(tracked(Box::pin(futures_util::stream::iter(slices))))
            }
            Err(PdsBody::Bytes(b)) => request.body(b),
            Err(_) => request,
        };
        let send = request.send();
        tokio::pin!(send);
        // One timer, re-armed to the last progress when it fires (not on every wake-up).
        let timer = tokio::time::sleep_until(progress.last() + idle);
        tokio::pin!(timer);
        let response = loop {
            tokio::select! {
                biased;
                r = &mut send => break r.map_err(|e| HttpError::Transport {
                    url: display_url(url),
                    source: e.without_url(),
                })?,
                () = &mut timer => {
                    let deadline = progress.last() + idle;
                    if deadline <= tokio::time::Instant::now() {
                        return Err(HttpError::Idle { url: display_url(url), timeout: idle });
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        Ok(PdsResponse::new(response, idle, self.options.max_body))
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

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
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
    use super::*;

    #[test]
    fn url_policy() {
        let ok = |s: &str, dev: bool| parse_url(s, dev).is_ok();
        assert!(ok("https://bsky.social/x", false));
        assert!(!ok("http://bsky.social/x", false));
        assert!(ok("http://localhost:2583", true));
        assert!(!ok("https://localhost:2583", false));
        assert!(!ok("https://foo.localhost", false));
        assert!(!ok("https://127.0.0.1", false));
        assert!(!ok("https://10.1.2.3", false));
        assert!(!ok("https://192.168.0.1", false));
        assert!(!ok("https://169.254.169.254/latest/meta-data", false));
        assert!(!ok("https://100.64.0.1", false));
        assert!(!ok("https://[::1]", false));
        assert!(!ok("https://[fe80::1]", false));
        assert!(!ok("https://[fd00::1]", false));
        assert!(!ok("https://[::ffff:127.0.0.1]", false));
        assert!(!ok("https://intranet", false));
        assert!(ok("https://8.8.8.8", false));
        assert!(ok("https://[2606:4700::1111]", false));
        assert!(!ok("ftp://bsky.social", true));
        assert!(!ok("https://user:pw@bsky.social", false));
        assert!(!ok("not a url", true));
    }

    /// Serves one canned response per connection on loopback.
    async fn serve(response: Vec<u8>) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/doc", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            }
        });
        url
    }

    fn dev_http(max_body: usize) -> Http {
        let options = HttpOptions {
            dev_mode: true,
            timeout: Duration::from_secs(5),
            max_body,
        };
        Http {
            client: build_client(&options).unwrap(),
            options,
        }
    }

    #[tokio::test]
    async fn limits_redirects_and_policy() {
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(100_000));
        // Announced length over the limit.
        let url = serve(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{big}",
                big.len()
            )
            .into_bytes(),
        )
        .await;
        let http = dev_http(DEFAULT_MAX_BODY);
        let e = http.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e:?}");
        // No length announced (read until close): still cut at the limit.
        let url = serve(
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{big}")
                .into_bytes(),
        )
        .await;
        let e = http.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(e, HttpError::TooLarge { .. }), "{e:?}");
        // A redirect is not followed.
        let url = serve(
            b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let e = http.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(e, HttpError::Status { status: 302, .. }), "{e:?}");
        // Not JSON.
        let url = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
        let e = http.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(e, HttpError::Json { .. }), "{e:?}");
        // Outside development mode, the same loopback URL is refused before any request.
        let prod = Http {
            client: http.client.clone(),
            options: HttpOptions::default(),
        };
        let e = prod.get_json::<serde_json::Value>(&url).await.unwrap_err();
        assert!(matches!(e, HttpError::Url { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn the_public_only_resolver_refuses_private_answers() {
        let r = PublicOnlyResolver;
        let name: Name = "localhost".parse().unwrap();
        assert!(r.resolve(name).await.is_err());
    }

    /// A PDS answer names the URL called without its query, in `url()` and in its errors.
    #[tokio::test]
    async fn pds_answers_name_the_url_without_its_query() {
        let url = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world".to_vec()).await;
        let options = PdsOptions {
            max_body: Some(5),
            ..PdsOptions::default()
        };
        let pds = PdsHttp {
            client: build_pds_client(&dev_http(DEFAULT_MAX_BODY).options, &options).unwrap(),
            options,
            dev_mode: true,
        };
        let mut call = url.clone();
        call.set_query(Some("cursor=secret-ish"));
        let request = pds.client.get(call.clone());
        let mut answer = pds.send(&call, request, PdsBody::Empty).await.unwrap();
        assert_eq!(answer.url(), url.as_str());
        assert!(format!("{answer:?}").contains(url.as_str()));
        match answer.chunk().await {
            Err(HttpError::TooLarge {
                url: named,
                limit: 5,
            }) => assert_eq!(named, url.as_str()),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn display_url_drops_query_and_credentials() {
        let u = Url::parse("https://u:p@h.example/a/b?code=secret#frag").unwrap();
        assert_eq!(display_url(&u), "https://h.example/a/b");
    }
}
