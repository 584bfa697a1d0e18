//! The scope grammar: the generic `resource[:positional][?name=value…]` syntax (split,
//! percent-decoded, re-encoded) and the checks of its values (DID service references, MIME
//! types and patterns). NSIDs are checked by [`crate::syntax::is_nsid`].

use std::fmt::Write as _;

use super::error::{ScopeError, cut};
use crate::syntax::is_nsid;

/// Whether `s` is an atproto DID service reference, as the reference implementation
/// reads one: an atproto DID, `#`, and a non-empty URI fragment
/// (`did:web:api.bsky.app#bsky_appview`). The DID is a `did:plc:` of 24 base32 characters,
/// or a host-only `did:web:` (a port, `%3A…`, only for `localhost`).
///
/// ```
/// use atsession::oauth::scope::is_did_service_ref;
///
/// assert!(is_did_service_ref("did:web:api.bsky.app#bsky_appview"));
/// assert!(is_did_service_ref("did:web:localhost%3A2583#atproto_pds"));
/// assert!(!is_did_service_ref("did:web:api.bsky.app"));
/// assert!(!is_did_service_ref("did:web:example.com%3A8443#svc"));
/// assert!(!is_did_service_ref("did:web:example.com:path#svc"));
/// assert!(!is_did_service_ref("did:key:zQ3sh#x"));
/// ```
#[must_use]
pub fn is_did_service_ref(s: &str) -> bool {
    let Some((did, fragment)) = s.split_once('#') else {
        return false;
    };
    !fragment.is_empty() && is_uri_fragment(fragment) && is_atproto_did(did)
}

pub(super) fn is_atproto_did(did: &str) -> bool {
    if let Some(id) = did.strip_prefix("did:plc:") {
        return id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
    }
    let Some(host) = did.strip_prefix("did:web:") else {
        return false;
    };
    if host.is_empty() || host.contains(':') || crate::syntax::Did::new(did).is_err() {
        return false;
    }
    let (name, port) = match host.split_once("%3A") {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let port_ok = match port {
        None => true,
        Some(p) => name == "localhost" && !p.is_empty() && p.parse::<u16>().is_ok(),
    };
    port_ok
        && !name.contains('%')
        && url::Url::parse(&format!("https://{name}/")).is_ok_and(|u| u.host_str().is_some())
}

/// RFC 3986 `fragment`: unreserved, percent-encoded, sub-delims, `:`, `@`, `/`, `?`.
pub(super) fn is_uri_fragment(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

pub(super) fn is_mime_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b)
}

/// Whether `s` is a concrete MIME type (`image/png`: one slash, no wildcard).
#[must_use]
pub fn is_mime(s: &str) -> bool {
    match s.split_once('/') {
        Some((t, sub)) => {
            !t.is_empty()
                && !sub.is_empty()
                && t.len() <= 127
                && sub.len() <= 127
                && t.bytes().all(is_mime_char)
                && sub.bytes().all(is_mime_char)
        }
        None => false,
    }
}

pub(super) enum AcceptCheck {
    Ok,
    PartialWildcard,
    Invalid,
}

pub(super) fn check_accept(s: &str) -> AcceptCheck {
    if s == "*/*" {
        return AcceptCheck::Ok;
    }
    if let Some(t) = s.strip_suffix("/*") {
        return if is_mime(&format!("{t}/x")) {
            AcceptCheck::Ok
        } else if t.contains('*') {
            AcceptCheck::PartialWildcard
        } else {
            AcceptCheck::Invalid
        };
    }
    if is_mime(s) {
        AcceptCheck::Ok
    } else if s.contains('*') && s.matches('/').count() == 1 {
        AcceptCheck::PartialWildcard
    } else {
        AcceptCheck::Invalid
    }
}

pub(super) fn accept_matches(accept: &str, mime: &str) -> bool {
    if accept == "*/*" {
        return true;
    }
    match accept.strip_suffix('*') {
        Some(prefix) => mime.starts_with(prefix),
        None => accept == mime,
    }
}

// The generic syntax: `resource[:positional][?name=value…]`.

pub(super) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` as a space when `form`); `None` when malformed or not UTF-8.
pub(super) fn decode(s: &str, form: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = hex(*b.get(i + 1)?)?;
                let l = hex(*b.get(i + 2)?)?;
                out.push(h * 16 + l);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes `s` for a scope string: letters, digits, `-._*` and `:/,@` stay (and `+`
/// in the positional part, where it is not a space); everything else is `%XX`.
pub(super) fn encode(s: &str, positional: bool, out: &mut String) {
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._*:/,@".contains(&b)
            || (positional && b"+~!'()".contains(&b));
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A scope split into its resource, positional part and named parameters.
pub(super) struct Syntax<'a> {
    pub(super) raw: &'a str,
    pub(super) resource: &'a str,
    pub(super) positional: Option<String>,
    pub(super) params: Vec<(String, String)>,
}

impl<'a> Syntax<'a> {
    pub(super) fn split(raw: &'a str) -> Result<Self, ScopeError> {
        let q = raw.find('?');
        let c = raw.find(':');
        let end = match (q, c) {
            (Some(q), Some(c)) => q.min(c),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => raw.len(),
        };
        let resource = &raw[..end];
        let enc = || ScopeError::Encoding { scope: cut(raw) };
        let positional = match (c, q) {
            (Some(c), None) => Some(decode(&raw[c + 1..], false).ok_or_else(enc)?),
            (Some(c), Some(q)) if c < q => Some(decode(&raw[c + 1..q], false).ok_or_else(enc)?),
            _ => None,
        };
        let mut params = Vec::new();
        if let Some(q) = q {
            let query = &raw[q + 1..];
            if !query.is_empty() {
                for pair in query.split('&') {
                    if pair.is_empty() {
                        continue;
                    }
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    params.push((
                        decode(k, true).ok_or_else(enc)?,
                        decode(v, true).ok_or_else(enc)?,
                    ));
                }
            }
        }
        Ok(Self {
            raw,
            resource,
            positional,
            params,
        })
    }

    pub(super) fn scope(&self) -> String {
        cut(self.raw)
    }

    /// Refuses parameters not in `known`.
    pub(super) fn only(&self, known: &[&str]) -> Result<(), ScopeError> {
        match self
            .params
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ScopeError::UnknownParameter {
                scope: self.scope(),
                name: cut(k),
            }),
            None => Ok(()),
        }
    }

    pub(super) fn named(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A single-valued parameter (not positional).
    pub(super) fn single(&self, name: &str) -> Result<Option<&str>, ScopeError> {
        let v = self.named(name);
        match v.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(ScopeError::RepeatedParameter {
                scope: self.scope(),
                name: name.into(),
            }),
        }
    }

    /// The values of the positional parameter `name`: positional or named, not both.
    pub(super) fn positional_values(&self, name: &str) -> Result<Vec<String>, ScopeError> {
        let named = self.named(name);
        match (&self.positional, named.is_empty()) {
            (Some(_), false) => Err(ScopeError::PositionalAndNamed {
                scope: self.scope(),
                name: name.into(),
            }),
            (Some(p), true) => Ok(vec![p.clone()]),
            (None, false) => Ok(named.into_iter().map(str::to_owned).collect()),
            (None, true) => Err(ScopeError::MissingParameter {
                scope: self.scope(),
                name: name.into(),
            }),
        }
    }

    pub(super) fn positional_single(&self, name: &str) -> Result<String, ScopeError> {
        let v = self.positional_values(name)?;
        if v.len() > 1 {
            return Err(ScopeError::RepeatedParameter {
                scope: self.scope(),
                name: name.into(),
            });
        }
        Ok(v.into_iter().next().unwrap_or_default())
    }

    /// NSIDs or `*`, normalised: sorted, deduplicated, `["*"]` if a wildcard is among them.
    pub(super) fn nsids(&self, name: &str) -> Result<Vec<String>, ScopeError> {
        let mut v = self.positional_values(name)?;
        for x in &v {
            if x != "*" && !is_nsid(x) {
                return Err(if x.contains('*') {
                    ScopeError::PartialWildcard {
                        scope: self.scope(),
                        value: cut(x),
                    }
                } else {
                    ScopeError::InvalidNsid {
                        scope: self.scope(),
                        value: cut(x),
                    }
                });
            }
        }
        if v.iter().any(|x| x == "*") {
            return Ok(vec!["*".into()]);
        }
        v.sort();
        v.dedup();
        Ok(v)
    }
}
