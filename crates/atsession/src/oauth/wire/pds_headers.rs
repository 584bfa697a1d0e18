//! Which request headers a caller may hand to a PDS call, and so which ones a proxy in
//! front of the PDS (the gateway's `/xrpc/{nsid}`) forwards.
//!
//! The allow-list is [`PDS_REQUEST_HEADERS`]: content negotiation and description of the
//! body, conditional and range requests, and the atproto service headers. Everything else
//! is refused, and in particular these never are forwarded: `Authorization` and `DPoP` (the
//! session layer sets its own), `Cookie` (the app's session, not the PDS's), `Host`, and
//! the hop-by-hop headers (`Connection`, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`, `Proxy-*`).
//!
//! ```
//! use atsession::oauth::{forwardable_headers, is_forwardable};
//! use atsession::oauth::reqwest::header::{HeaderMap, HeaderName, HeaderValue};
//!
//! assert!(is_forwardable(&HeaderName::from_static("atproto-proxy")));
//! assert!(!is_forwardable(&HeaderName::from_static("cookie")));
//!
//! let mut from_browser = HeaderMap::new();
//! from_browser.insert("accept", HeaderValue::from_static("application/json"));
//! from_browser.insert("cookie", HeaderValue::from_static("sid=secret"));
//! from_browser.insert("connection", HeaderValue::from_static("close"));
//! let kept = forwardable_headers(&from_browser);
//! assert_eq!(kept.len(), 1);
//! assert!(kept.contains_key("accept"));
//! ```

use reqwest::header::{HeaderMap, HeaderName};

/// The request headers a PDS call forwards (lowercase names).
pub const PDS_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "atproto-accept-labelers",
    "atproto-proxy",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "range",
];

/// Whether a caller's request header is forwarded to a PDS.
#[must_use]
pub fn is_forwardable(name: &HeaderName) -> bool {
    PDS_REQUEST_HEADERS.contains(&name.as_str())
}

/// The headers of `headers` that are forwarded to a PDS (the others dropped), for a proxy
/// that passes on what a browser sent.
#[must_use]
pub fn forwardable_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if is_forwardable(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The first header of `headers` that is not forwarded, if any.
pub(crate) fn first_refused(headers: &HeaderMap) -> Option<&HeaderName> {
    headers.keys().find(|n| !is_forwardable(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forwarded() {
        for name in [
            "authorization",
            "dpop",
            "cookie",
            "host",
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
            "x-forwarded-for",
            "origin",
        ] {
            assert!(!is_forwardable(&HeaderName::from_static(name)), "{name}");
        }
        for name in PDS_REQUEST_HEADERS {
            assert!(is_forwardable(&HeaderName::from_static(name)), "{name}");
            assert_eq!(name.to_ascii_lowercase(), *name);
        }
    }
}
