//! Sealed-session cookies: building `Set-Cookie` values, reading `Cookie` headers, and
//! splitting a seal too large for one cookie across `name.0`..`name.3`, as iron-session 9
//! does with `chunk: true`.
//!
//! The rules, taken from iron-session 9's source:
//! - a seal whose whole `Set-Cookie` line fits in 4096 bytes goes in one cookie `name`;
//! - otherwise it is cut, as an opaque string, into pieces of
//!   `4096 - len("name.0=; <attributes>")` bytes, written to `name.0`, `name.1`, ... at most
//!   [`MAX_CHUNKS`]; needing more is an error;
//! - reading takes `name` if present and non-empty, else concatenates `name.0`, `name.1`, ...
//!   up to the first missing one (at most [`MAX_CHUNKS`]) and hands the result to unseal, whose
//!   MAC covers the whole seal (a dropped, reordered or foreign chunk fails the MAC);
//! - cookies of the other shape that the request still carries are expired, so a stale chunk
//!   never joins a fresh seal.

use std::fmt;
use std::time::Duration;

use super::sessions::SealedSessionError;
use cookie::{Cookie, SameSite};
use http::header::{COOKIE, HeaderMap, HeaderValue, SET_COOKIE};

/// The most bytes a browser keeps of one `Set-Cookie` line.
pub const MAX_COOKIE_BYTES: usize = 4096;
/// The most cookies one seal is split into.
pub const MAX_CHUNKS: usize = 4;

/// iron-session's `Max-Age` for a cookie without expiry (`ttl: 0`): 2^31 - 1 seconds.
pub(crate) const FOREVER_SECS: i64 = 2_147_483_647;

/// One or more `Set-Cookie` header values, in order. The values hold seals, which are bearer
/// credentials: `Debug` shows the cookie names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SetCookies(Vec<HeaderValue>);

impl SetCookies {
    /// The header values.
    #[must_use]
    pub fn values(&self) -> &[HeaderValue] {
        &self.0
    }

    /// Appends every value as a `Set-Cookie` header of `headers`.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        for v in &self.0 {
            headers.append(SET_COOKIE, v.clone());
        }
    }

    /// How many `Set-Cookie` headers this is.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is nothing to set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The single value, when there is exactly one (the usual case: no chunking).
    #[must_use]
    pub fn single(&self) -> Option<&HeaderValue> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl IntoIterator for SetCookies {
    type Item = HeaderValue;
    type IntoIter = std::vec::IntoIter<HeaderValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Debug for SetCookies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .0
            .iter()
            .map(|v| {
                let name = v
                    .as_bytes()
                    .split(|&b| b == b'=')
                    .next()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                format!("{name}=<redacted>")
            })
            .collect();
        f.debug_tuple("SetCookies").field(&names).finish()
    }
}

/// Cookie name and attributes.
#[derive(Debug, Clone)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) path: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: Option<SameSite>,
    pub(crate) chunking: bool,
}

/// The session cookies a request carries.
#[derive(Debug, Default)]
pub(crate) struct Present {
    whole: Option<String>,
    chunks: [Option<String>; MAX_CHUNKS],
}

impl Present {
    /// The seal, whole or reassembled; `None` when the request has no session cookie.
    pub(crate) fn seal(&self) -> Option<String> {
        if let Some(w) = self.whole.as_ref().filter(|w| !w.is_empty()) {
            return Some(w.clone());
        }
        let mut out = String::new();
        for c in &self.chunks {
            match c {
                Some(c) if !c.is_empty() => out.push_str(c),
                _ => break,
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

pub(crate) fn chunk_name(name: &str, i: usize) -> String {
    format!("{name}.{i}")
}

/// Whether `name` is a valid cookie name (an RFC 7230 token).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl CookieSettings {
    /// Reads the session cookies from every `Cookie` header. For a repeated name the first wins,
    /// as in the `cookie` npm package.
    pub(crate) fn read(&self, headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        for value in headers.get_all(COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for c in Cookie::split_parse_encoded(value).flatten() {
                let name = c.name();
                let slot = if name == self.name {
                    &mut present.whole
                } else if let Some(i) = name
                    .strip_prefix(self.name.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|r| r.parse::<usize>().ok())
                    .filter(|&i| i < MAX_CHUNKS && name.len() == self.name.len() + 2)
                {
                    &mut present.chunks[i]
                } else {
                    continue;
                };
                if slot.is_none() {
                    *slot = Some(c.value().to_owned());
                }
            }
        }
        present
    }

    fn line(&self, name: &str, value: &str, max_age: Option<i64>) -> String {
        let mut c = Cookie::new(name.to_owned(), value.to_owned());
        c.set_http_only(self.http_only);
        c.set_secure(self.secure);
        if let Some(s) = self.same_site {
            c.set_same_site(s);
        }
        if let Some(p) = &self.path {
            c.set_path(p.clone());
        }
        if let Some(d) = &self.domain {
            c.set_domain(d.clone());
        }
        if let Some(secs) = max_age {
            c.set_max_age(time::Duration::seconds(secs));
        }
        c.to_string()
    }

    /// A `Set-Cookie` value; seals, names and attributes are ASCII without controls.
    fn header(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let line = self.line(name, value, max_age);
        HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Expires cookie `name`.
    fn expire(&self, name: &str) -> HeaderValue {
        self.header(name, "", Some(0))
    }

    /// The cookies that clear a session: the whole cookie and, when chunking is on, every chunk.
    pub(crate) fn clear(&self) -> SetCookies {
        let mut out = vec![self.expire(&self.name)];
        if self.chunking {
            out.extend((0..MAX_CHUNKS).map(|i| self.expire(&chunk_name(&self.name, i))));
        }
        SetCookies(out)
    }

    /// The cookies that carry `seal`. `present` is what the request carried (to expire stale
    /// cookies of the other shape); `None` assumes any of them may be there.
    pub(crate) fn write(
        &self,
        seal: &str,
        max_age: Option<Duration>,
        present: Option<&Present>,
    ) -> Result<SetCookies, SealedSessionError> {
        let max_age = Some(max_age.map_or(FOREVER_SECS, |d| {
            i64::try_from(d.as_secs()).unwrap_or(FOREVER_SECS)
        }));
        let whole = self.line(&self.name, seal, max_age);
        if whole.len() <= MAX_COOKIE_BYTES {
            let mut out = vec![self.header(&self.name, seal, max_age)];
            if let Some(p) = present {
                for (i, c) in p.chunks.iter().enumerate() {
                    if c.is_some() {
                        out.push(self.expire(&chunk_name(&self.name, i)));
                    }
                }
            }
            return Ok(SetCookies(out));
        }
        if !self.chunking {
            return Err(SealedSessionError::TooLarge { bytes: whole.len() });
        }
        let overhead = self.line(&chunk_name(&self.name, 0), "", max_age).len();
        let budget = MAX_COOKIE_BYTES
            .checked_sub(overhead)
            .filter(|&b| b > 0)
            .ok_or(SealedSessionError::NoRoom)?;
        let needed = seal.len().div_ceil(budget);
        if needed > MAX_CHUNKS {
            return Err(SealedSessionError::TooManyChunks { needed });
        }
        // Seals are ASCII, so byte offsets are character boundaries.
        let mut out: Vec<HeaderValue> = seal
            .as_bytes()
            .chunks(budget)
            .enumerate()
            .map(|(i, piece)| {
                let piece = std::str::from_utf8(piece).unwrap_or_default();
                self.header(&chunk_name(&self.name, i), piece, max_age)
            })
            .collect();
        let whole_present = present.is_none_or(|p| p.whole.is_some());
        if whole_present {
            out.push(self.expire(&self.name));
        }
        for i in needed..MAX_CHUNKS {
            if present.is_none_or(|p| p.chunks[i].is_some()) {
                out.push(self.expire(&chunk_name(&self.name, i)));
            }
        }
        Ok(SetCookies(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(chunking: bool) -> CookieSettings {
        CookieSettings {
            name: "sid".into(),
            path: Some("/".into()),
            domain: None,
            secure: true,
            http_only: true,
            same_site: Some(SameSite::Lax),
            chunking,
        }
    }

    fn request(cookies: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(cookies).unwrap());
        h
    }

    #[test]
    fn whole_cookie_line() {
        let s = settings(true);
        let out = s
            .write("Fe26.2*x~2", Some(Duration::from_secs(100)), None)
            .unwrap();
        let v = out.single().unwrap().to_str().unwrap();
        assert!(v.starts_with("sid=Fe26.2*x~2;"), "{v}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=100",
        ] {
            assert!(v.contains(attr), "{v} lacks {attr}");
        }
    }

    #[test]
    fn split_and_reassemble() {
        let s = settings(true);
        let seal: String = (0..10_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let out = s.write(&seal, None, None).unwrap();
        // Three chunks, then the whole cookie and the fourth chunk expired.
        assert_eq!(out.len(), 5);
        let mut pairs = Vec::new();
        for v in out.values() {
            let line = v.to_str().unwrap();
            assert!(line.len() <= MAX_COOKIE_BYTES, "{}", line.len());
            let c = Cookie::parse(line).unwrap();
            if !c.value().is_empty() {
                pairs.push(format!("{}={}", c.name(), c.value()));
            }
        }
        assert_eq!(pairs.len(), 3);
        let req = request(&pairs.join("; "));
        assert_eq!(s.read(&req).seal().unwrap(), seal);

        // A gap stops reassembly.
        let req = request(&format!("{}; {}", pairs[0], pairs[2]));
        assert_eq!(s.read(&req).seal().unwrap().len(), pairs[0].len() - 6);

        // Too big for four chunks.
        let huge = "a".repeat(4 * 4096);
        assert!(matches!(
            s.write(&huge, None, None),
            Err(SealedSessionError::TooManyChunks { needed: 5 })
        ));
        // Chunking off: a clear error.
        assert!(matches!(
            settings(false).write(&seal, None, None),
            Err(SealedSessionError::TooLarge { .. })
        ));
    }

    #[test]
    fn stale_cookies_are_expired() {
        let s = settings(true);
        let req = request("sid.0=a; sid.1=b; other=1");
        let present = s.read(&req);
        let out = s.write("small", None, Some(&present)).unwrap();
        let names: Vec<String> = out
            .values()
            .iter()
            .map(|v| {
                Cookie::parse(v.to_str().unwrap())
                    .unwrap()
                    .name()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["sid", "sid.0", "sid.1"]);
        let req = request("sid=whole");
        let present = s.read(&req);
        let big = "b".repeat(5000);
        let out = s.write(&big, None, Some(&present)).unwrap();
        let names: Vec<String> = out
            .values()
            .iter()
            .map(|v| {
                Cookie::parse(v.to_str().unwrap())
                    .unwrap()
                    .name()
                    .to_owned()
            })
            .collect();
        assert_eq!(names, ["sid.0", "sid.1", "sid"]);
    }

    #[test]
    fn first_cookie_wins_and_whole_beats_chunks() {
        let s = settings(true);
        let req = request("sid=first; sid=second; sid.0=x");
        assert_eq!(s.read(&req).seal().unwrap(), "first");
        let req = request("sidx=1; sid.00=2; sid.4=3");
        assert_eq!(s.read(&req).seal(), None);
    }

    #[test]
    fn debug_redacts_values() {
        let s = settings(false);
        let out = s.write("Fe26.2*secret", None, None).unwrap();
        let d = format!("{out:?}");
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("sid=<redacted>"), "{d}");
    }
}
