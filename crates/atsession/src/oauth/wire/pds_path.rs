//! The path of a PDS call, checked so that the DPoP-bound access token only ever goes to
//! the grant's own PDS origin.

use url::Url;

use super::http::HttpError;
use crate::syntax::is_nsid;

/// Checks `path_and_query` and returns its path and query parts.
///
/// The path of a PDS call, checked so that the DPoP-bound access token only ever goes to
/// the grant's own PDS origin.
///
/// `Url::join` would follow `//other.example/x` or `https://evil/x` to another host, and
/// `..` segments (also percent-encoded) could reach other routes of the server. A path given
/// to a PDS call is therefore accepted only in one form:
///
/// - `/xrpc/<nsid>`, where `<nsid>` is an [NSID](crate::syntax::Nsid): dot-separated
///   ASCII letters, digits and (in the authority) hyphens (so no `.`/`..` segments, no
///   `//`, no `@`, no percent-encoded `/`, `\` or `.`, no backslash);
/// - then at most one `?` and a query of URL characters (unreserved, `%XX` escapes,
///   sub-delimiters, `:`, `@`, `/`), with no second `?`, no `#`, no space, control or
///   non-ASCII character.
///
/// The URL is then built on the grant's PDS URL and its origin is checked once more.
///
/// ```
/// use atsession::oauth::{HttpError, pds_url};
/// use atsession::oauth::Url;
///
/// let pds = Url::parse("https://pds.example").unwrap();
/// let url = pds_url(&pds, "/xrpc/com.atproto.repo.listRecords?repo=did%3Aplc%3Ax&limit=100").unwrap();
/// assert_eq!(url.as_str(), "https://pds.example/xrpc/com.atproto.repo.listRecords?repo=did%3Aplc%3Ax&limit=100");
///
/// assert!(matches!(pds_url(&pds, "//evil.example/x"), Err(HttpError::NotAbsolutePath)));
/// assert!(matches!(pds_url(&pds, "/xrpc/../oauth/token"), Err(HttpError::NotXrpc)));
/// assert!(matches!(pds_url(&pds, "/xrpc/a.b.c?x=1?y=2"), Err(HttpError::PathQuery)));
/// ```
///
/// ```
/// use atsession::oauth::check_path;
///
/// assert_eq!(check_path("/xrpc/a.b.c?x=1").unwrap(), ("/xrpc/a.b.c", Some("x=1")));
/// assert!(check_path("/xrpc/%2e%2e/x").is_err());
/// ```
pub fn check_path(path_and_query: &str) -> Result<(&str, Option<&str>), HttpError> {
    let bytes = path_and_query.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.get(1).is_some_and(|b| *b == b'/' || *b == b'\\') {
        return Err(HttpError::NotAbsolutePath);
    }
    if bytes
        .iter()
        .any(|b| !b.is_ascii() || b.is_ascii_control() || matches!(b, b' ' | b'\\' | b'#'))
    {
        return Err(HttpError::PathCharacter);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let nsid = path.strip_prefix("/xrpc/").ok_or(HttpError::NotXrpc)?;
    if !is_nsid(nsid) {
        return Err(HttpError::NotXrpc);
    }
    if let Some(q) = query {
        check_query(q)?;
    }
    Ok((path, query))
}

fn check_query(q: &str) -> Result<(), HttpError> {
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return Err(HttpError::PathQuery);
                }
                i += 3;
                continue;
            }
            c if c.is_ascii_alphanumeric() => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b':' | b'@' | b'/' => {}
            _ => return Err(HttpError::PathQuery),
        }
        i += 1;
    }
    Ok(())
}

/// `url`'s origin as its ASCII serialization (`scheme://host[:port]`, the port only when not
/// the scheme's default), read in place from the URL's own serialization, which the `url`
/// crate keeps in that form: `None` when the origin is opaque (a scheme other than those of
/// the WHATWG tuple origins) or the URL carries user info. Equal to
/// [`Origin::ascii_serialization`](url::Origin::ascii_serialization) whenever `Some`, without
/// building an [`Origin`](url::Origin) and its string on every PDS call.
pub(crate) fn in_place_origin(url: &Url) -> Option<&str> {
    let tuple = matches!(url.scheme(), "http" | "https" | "ws" | "wss" | "ftp");
    (tuple && url.has_host() && url.username().is_empty() && url.password().is_none())
        .then(|| &url[..url::Position::BeforePath])
}

/// The URL of a PDS call: `path_and_query` (checked by [`check_path`]) on the PDS at `pds`,
/// whose origin the result is checked to have.
pub fn pds_url(pds: &Url, path_and_query: &str) -> Result<Url, HttpError> {
    let (path, query) = check_path(path_and_query)?;
    if pds.cannot_be_a_base() || pds.host().is_none() {
        return Err(HttpError::PdsUrl);
    }
    let mut url = pds.clone();
    url.set_fragment(None);
    url.set_path(path);
    url.set_query(query);
    // Scheme, host and port unchanged, and a tuple origin (an opaque one never equals
    // another); a URL with user info has no in-place origin and is refused.
    let same_origin = matches!(
        (in_place_origin(&url), in_place_origin(pds)),
        (Some(a), Some(b)) if a == b
    );
    if !same_origin
        || url.path() != path
        || url.query() != query
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(HttpError::OtherOrigin);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same refusal (the variants compared carry no data).
    fn same(a: &HttpError, b: &HttpError) -> bool {
        std::mem::discriminant(a) == std::mem::discriminant(b)
    }

    #[test]
    fn hostile_paths() {
        let pds = Url::parse("https://pds.example").unwrap();
        let refused = [
            ("//other.example/x", HttpError::NotAbsolutePath),
            ("https://evil/x", HttpError::NotAbsolutePath),
            ("\\\\evil", HttpError::NotAbsolutePath),
            ("/\\evil/x", HttpError::NotAbsolutePath),
            ("@evil.example/xrpc/a.b.c", HttpError::NotAbsolutePath),
            ("", HttpError::NotAbsolutePath),
            ("xrpc/a.b.c", HttpError::NotAbsolutePath),
            ("/xrpc/../oauth/token", HttpError::NotXrpc),
            ("/xrpc/%2e%2e/oauth/token", HttpError::NotXrpc),
            ("/xrpc/%2E%2E%2Foauth%2Ftoken", HttpError::NotXrpc),
            ("/xrpc/a.b.c%2f..%2f..%2foauth", HttpError::NotXrpc),
            ("/xrpc/./a.b.c", HttpError::NotXrpc),
            ("/xrpc//a.b.c", HttpError::NotXrpc),
            ("/xrpc/a.b.c/", HttpError::NotXrpc),
            ("/xrpc/a.b.c%5c", HttpError::NotXrpc),
            ("/xrpc/user@evil.example", HttpError::NotXrpc),
            ("/oauth/token", HttpError::NotXrpc),
            ("/@atproto/oauth-provider/~api/sign-in", HttpError::NotXrpc),
            ("/xrpc/a.b.c\\x", HttpError::PathCharacter),
            ("/xrpc/a.b.c\r\nHost: evil", HttpError::PathCharacter),
            ("/xrpc/a.b.c\0", HttpError::PathCharacter),
            ("/xrpc/a.b.c x", HttpError::PathCharacter),
            ("/xrpc/a.b.c#frag", HttpError::PathCharacter),
            ("/xrpc/a.b.é", HttpError::PathCharacter),
            ("/xrpc/a.b.c?x=1?y=2", HttpError::PathQuery),
            ("/xrpc/a.b.c??", HttpError::PathQuery),
            ("/xrpc/a.b.c?x=%zz", HttpError::PathQuery),
            ("/xrpc/a.b.c?x=%2", HttpError::PathQuery),
            ("/xrpc/a.b.c?x=<script>", HttpError::PathQuery),
        ];
        for (path, want) in refused {
            let got = pds_url(&pds, path).unwrap_err();
            assert!(same(&got, &want), "{path:?}: {got:?}");
        }
        let accepted = [
            "/xrpc/com.atproto.server.getSession",
            "/xrpc/com.atproto.repo.listRecords?repo=did:plc:abc&collection=app.bsky.feed.post&limit=100",
            "/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Aabc&cid=bafkrei",
            "/xrpc/app.bsky.feed.getPostThread?uri=at://did:plc:x/app.bsky.feed.post/3k",
            "/xrpc/a.b.c?",
        ];
        for path in accepted {
            let url = pds_url(&pds, path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(url.origin(), pds.origin(), "{path}");
            assert!(
                url.as_str().starts_with("https://pds.example/xrpc/"),
                "{url}"
            );
        }
    }

    #[test]
    fn the_pds_url_keeps_its_origin_and_port() {
        let pds = Url::parse("http://localhost:2583/").unwrap();
        let url = pds_url(&pds, "/xrpc/a.b.c?x=1").unwrap();
        assert_eq!(url.as_str(), "http://localhost:2583/xrpc/a.b.c?x=1");
        // A PDS URL with a path of its own is replaced by the XRPC path, same origin.
        let pds = Url::parse("https://pds.example/base/").unwrap();
        assert_eq!(
            pds_url(&pds, "/xrpc/a.b.c").unwrap().as_str(),
            "https://pds.example/xrpc/a.b.c"
        );
        // An opaque origin equals no other, its own included.
        for opaque in ["foo://pds.example/", "file://pds.example/"] {
            let pds = Url::parse(opaque).unwrap();
            assert!(
                matches!(pds_url(&pds, "/xrpc/a.b.c"), Err(HttpError::OtherOrigin)),
                "{opaque}"
            );
        }
        let with_user = Url::parse("https://u:p@pds.example/").unwrap();
        assert!(matches!(
            pds_url(&with_user, "/xrpc/a.b.c"),
            Err(HttpError::OtherOrigin)
        ));
        let odd = Url::parse("mailto:x@example.com").unwrap();
        assert!(matches!(
            pds_url(&odd, "/xrpc/a.b.c"),
            Err(HttpError::PdsUrl)
        ));
    }
}
