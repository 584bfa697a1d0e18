//! [`PdsResponse`]: the answer of a PDS call, its status and headers available before the
//! body, the body read as a stream (in constant memory) or buffered.
//!
//! Every read of the body is bounded by the idle timeout
//! ([`PdsOptions::idle_timeout`](super::http::PdsOptions::idle_timeout)): a server that
//! stops sending in the middle of a body ends the read with [`HttpError::Idle`]. A body
//! cap ([`PdsOptions::max_body`](super::http::PdsOptions::max_body)), when set, ends it
//! with [`HttpError::TooLarge`].

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::http::{Fetched, HttpError};

/// The answer of a PDS call. Dropping it before the end of the body closes the
/// connection.
pub struct PdsResponse {
    inner: reqwest::Response,
    idle: Duration,
    max_body: Option<u64>,
    received: u64,
}

impl fmt::Debug for PdsResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdsResponse")
            .field("url", &self.url())
            .field("status", &self.inner.status())
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl PdsResponse {
    pub(crate) fn new(inner: reqwest::Response, idle: Duration, max_body: Option<u64>) -> Self {
        Self {
            inner,
            idle,
            max_body,
            received: 0,
        }
    }

    /// The status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body's length as announced by the server (`Content-Length`), if any.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// The URL called, without its query.
    #[must_use]
    pub fn url(&self) -> &str {
        let url = self.inner.url();
        // PDS call URLs carry no user info (`pds_url` refuses it); were one to, only its
        // path would be shown.
        if url.username().is_empty() && url.password().is_none() {
            &url[..url::Position::AfterPath]
        } else {
            url.path()
        }
    }

    /// How many bytes of the body were read so far.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    fn too_large(&self) -> HttpError {
        HttpError::TooLarge {
            url: self.url().to_owned(),
            limit: self
                .max_body
                .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX)),
        }
    }

    /// The next chunk of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if self.received == 0
            && let (Some(max), Some(len)) = (self.max_body, self.inner.content_length())
            && len > max
        {
            return Err(self.too_large());
        }
        let next = match tokio::time::timeout(self.idle, self.inner.chunk()).await {
            Err(_) => {
                return Err(HttpError::Idle {
                    url: self.url().to_owned(),
                    timeout: self.idle,
                });
            }
            Ok(r) => r.map_err(|e| HttpError::Transport {
                url: self.url().to_owned(),
                source: e.without_url(),
            })?,
        };
        if let Some(c) = &next {
            self.received += c.len() as u64;
            if self.max_body.is_some_and(|m| self.received > m) {
                return Err(self.too_large());
            }
        }
        Ok(next)
    }

    /// The body as a stream of chunks.
    ///
    /// ```no_run
    /// # async fn demo(response: atsession::oauth::PdsResponse) -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt as _;
    /// use tokio::io::AsyncWriteExt as _;
    ///
    /// let mut file = tokio::fs::File::create("blob.bin").await?;
    /// let mut body = std::pin::pin!(response.bytes_stream());
    /// while let Some(chunk) = body.next().await {
    ///     file.write_all(&chunk?).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, HttpError>> + Send {
        futures_util::stream::try_unfold(self, |mut r| async move {
            Ok(r.chunk().await?.map(|c| (c, r)))
        })
    }

    /// The whole body, in memory (within [`PdsOptions::max_body`](super::http::PdsOptions::max_body)
    /// when set). For small answers; stream large ones.
    pub async fn bytes(mut self) -> Result<Bytes, HttpError> {
        let mut body = BytesMut::new();
        while let Some(c) = self.chunk().await? {
            body.extend_from_slice(&c);
        }
        Ok(body.freeze())
    }

    /// The whole answer, buffered.
    pub async fn into_fetched(self) -> Result<Fetched, HttpError> {
        let status = self.status();
        let headers = self.headers().clone();
        let body = self.bytes().await?.to_vec();
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}
