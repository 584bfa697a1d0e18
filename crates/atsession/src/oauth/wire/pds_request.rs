//! A call to a grant's PDS before it is sent: [`PdsRequest`] (method, path, headers) and its
//! [`PdsBody`], which is either kept in memory (and can be sent again) or a stream (sent
//! once).
//!
//! ```
//! use atsession::oauth::{PdsBody, PdsRequest};
//!
//! // A small JSON procedure: the body is kept, so a DPoP nonce retry or a refresh-and-retry
//! // can send it again.
//! let request = PdsRequest::procedure("com.atproto.repo.createRecord")
//!     .header("content-type", "application/json")
//!     .body(br#"{"repo":"did:plc:x"}"#.to_vec());
//! assert!(request.body_ref().is_resendable());
//!
//! // A large upload from any stream: sent once, never resent.
//! let chunks = futures_util::stream::iter(vec![
//!     Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"first ")),
//!     Ok(bytes::Bytes::from_static(b"second")),
//! ]);
//! let body = PdsBody::sized_stream(chunks, 12);
//! assert!(!body.is_resendable());
//! assert_eq!(body.len(), Some(12));
//! ```

use std::fmt;
use std::path::Path;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::AsyncRead;

/// The error type a body stream may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// The body of a PDS call.
///
/// `Empty` and `Bytes` are kept in memory and can be sent again (the DPoP nonce retry and
/// the refresh-and-retry on `invalid_token` do so). A `Stream` is sent once: the session
/// layer makes sure a DPoP nonce is known and the tokens are fresh before sending it, and
/// if the server still refuses it the call ends with
/// [`GrantError::Retryable`](crate::oauth::GrantError::Retryable), never a partial resend.
#[derive(Default)]
pub enum PdsBody {
    /// No body.
    #[default]
    Empty,
    /// A body in memory.
    Bytes(Bytes),
    /// A body read from a stream, sent once.
    Stream(BodyStream),
}

/// A streamed body: a stream of chunks and, when known, its length (sent as
/// `Content-Length`; without it the body is sent chunked).
pub struct BodyStream {
    stream: BoxStream,
    len: Option<u64>,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PdsBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A body may hold anything; only its size is shown.
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Stream(s) => write!(f, "Stream(len={:?})", s.len),
        }
    }
}

impl PdsBody {
    /// A body from any stream of chunks, of unknown length (sent chunked).
    pub fn stream<S, B, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Into<BoxError>,
    {
        Self::Stream(BodyStream {
            stream: boxed(stream),
            len: None,
        })
    }

    /// A body from a stream of chunks that together make exactly `len` bytes (sent with
    /// `Content-Length: len`).
    pub fn sized_stream<S, B, E>(stream: S, len: u64) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes>,
        E: Into<BoxError>,
    {
        Self::Stream(BodyStream {
            stream: boxed(stream),
            len: Some(len),
        })
    }

    /// A body read from `reader` in chunks of up to 256 KiB; `len` is its length if known.
    pub fn reader<R: AsyncRead + Send + 'static>(reader: R, len: Option<u64>) -> Self {
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024);
        match len {
            Some(n) => Self::sized_stream(stream, n),
            None => Self::stream(stream),
        }
    }

    /// A body read from the file at `path`, streamed (never read into memory), with its
    /// length from the file's metadata.
    pub async fn file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        Ok(Self::reader(file, Some(len)))
    }

    /// Whether the body can be sent again (it is in memory).
    #[must_use]
    pub fn is_resendable(&self) -> bool {
        !matches!(self, Self::Stream(_))
    }

    /// The body's length, if known.
    #[must_use]
    pub fn len(&self) -> Option<u64> {
        match self {
            Self::Empty => Some(0),
            Self::Bytes(b) => Some(b.len() as u64),
            Self::Stream(s) => s.len,
        }
    }

    /// Whether the body is known to be empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// A copy of the body, if it can be sent again (a cheap reference-counted copy).
    #[must_use]
    pub fn try_clone(&self) -> Option<Self> {
        match self {
            Self::Empty => Some(Self::Empty),
            Self::Bytes(b) => Some(Self::Bytes(b.clone())),
            Self::Stream(_) => None,
        }
    }

    /// The chunks of a stream body and its length; `None` for a body in memory.
    pub(crate) fn into_stream(self) -> Result<(BoxStream, Option<u64>), Self> {
        match self {
            Self::Stream(s) => Ok((s.stream, s.len)),
            other => Err(other),
        }
    }
}

impl From<Bytes> for PdsBody {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

impl From<Vec<u8>> for PdsBody {
    fn from(b: Vec<u8>) -> Self {
        Self::Bytes(b.into())
    }
}

impl From<String> for PdsBody {
    fn from(s: String) -> Self {
        Self::Bytes(s.into())
    }
}

impl From<&'static [u8]> for PdsBody {
    fn from(b: &'static [u8]) -> Self {
        Self::Bytes(Bytes::from_static(b))
    }
}

impl From<&'static str> for PdsBody {
    fn from(s: &'static str) -> Self {
        Self::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<Option<Vec<u8>>> for PdsBody {
    fn from(b: Option<Vec<u8>>) -> Self {
        b.map_or(Self::Empty, Self::from)
    }
}

fn boxed<S, B, E>(stream: S) -> BoxStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: Into<Bytes>,
    E: Into<BoxError>,
{
    use futures_util::StreamExt as _;
    Box::pin(stream.map(|r| r.map(Into::into).map_err(Into::into)))
}

/// A PDS call: method, path and query on the grant's PDS, the caller's headers (only those
/// on the [allow-list](crate::oauth::PDS_REQUEST_HEADERS)) and a [`PdsBody`].
///
/// The path is checked before anything is sent (see [`check_path`](crate::oauth::check_path)): it must
/// be `/xrpc/<nsid>` with at most one query string.
#[derive(Debug)]
pub struct PdsRequest {
    pub(crate) method: Method,
    pub(crate) path_and_query: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: PdsBody,
}

impl PdsRequest {
    /// A request with this method and path (and query), no headers, no body.
    pub fn new(method: Method, path_and_query: impl Into<String>) -> Self {
        Self {
            method,
            path_and_query: path_and_query.into(),
            headers: HeaderMap::new(),
            body: PdsBody::Empty,
        }
    }

    /// `GET /xrpc/<nsid>?<params>` (the parameters form-encoded).
    ///
    /// ```
    /// use atsession::oauth::PdsRequest;
    ///
    /// let r = PdsRequest::query("com.atproto.sync.getBlob", &[("did", "did:plc:x"), ("cid", "bafy")]);
    /// assert_eq!(r.path_and_query(), "/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Ax&cid=bafy");
    /// ```
    pub fn query(nsid: &str, params: &[(&str, &str)]) -> Self {
        let mut path = format!("/xrpc/{nsid}");
        if !params.is_empty() {
            path.push('?');
            path.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish(),
            );
        }
        Self::new(Method::GET, path)
    }

    /// `POST /xrpc/<nsid>`, no body yet.
    pub fn procedure(nsid: &str) -> Self {
        Self::new(Method::POST, format!("/xrpc/{nsid}"))
    }

    /// Adds a header. A name or value that is not valid HTTP is dropped here and a name off
    /// the allow-list is refused when the request is sent; use
    /// [`headers_mut`](Self::headers_mut) for typed names and values.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.append(n, v);
        }
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<PdsBody>) -> Self {
        self.body = body.into();
        self
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path and query.
    #[must_use]
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    #[must_use]
    pub fn body_ref(&self) -> &PdsBody {
        &self.body
    }

    /// The method, path and query, headers and body.
    pub(crate) fn into_parts(self) -> (Method, String, HeaderMap, PdsBody) {
        (self.method, self.path_and_query, self.headers, self.body)
    }
}
