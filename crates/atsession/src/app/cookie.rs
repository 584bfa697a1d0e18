//! The session cookie and the `Authorization` header: reading credentials from a request and
//! writing `Set-Cookie`.

use cookie::Cookie;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use time::OffsetDateTime;

use super::config::CookieConfig;
use super::error::SessionError;
use crate::secret::Token;

/// Where a request's credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// The session cookie, carrying the session token.
    Cookie,
    /// `Authorization: Bearer`, carrying an access token (or the session token when access
    /// tokens are off).
    Bearer,
}

/// The credential a request carries, parsed but not yet looked up.
#[derive(Debug)]
pub(crate) struct Credential {
    pub(crate) source: CredentialSource,
    pub(crate) token: Token,
}

/// Finds the credential in a request's headers: `Authorization: Bearer` first, then the
/// session cookie.
pub(crate) fn credential(
    headers: &HeaderMap,
    cookie_name: &str,
) -> Result<Credential, SessionError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let token = bearer(value).ok_or(SessionError::MalformedAuthorization)?;
        return Ok(Credential {
            source: CredentialSource::Bearer,
            token: Token::parse(token).map_err(SessionError::MalformedToken)?,
        });
    }
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let value = value.to_str().map_err(|_| SessionError::MalformedCookie)?;
        // Unrelated cookies that do not parse are someone else's business: skip them.
        for c in Cookie::split_parse(value).flatten() {
            if c.name() == cookie_name {
                found = Some(c.value().to_owned());
            }
        }
    }
    let value = found.ok_or(SessionError::NoCredentials)?;
    Ok(Credential {
        source: CredentialSource::Cookie,
        token: Token::parse(&value).map_err(SessionError::MalformedToken)?,
    })
}

fn bearer(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// `Set-Cookie` carrying `token`, expiring at `expires_at`.
pub(crate) fn set_cookie(
    config: &CookieConfig,
    token: &Token,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> HeaderValue {
    let mut c = base(config, token.expose().to_owned());
    if config.max_age {
        let left = (expires_at - now).max(time::Duration::ZERO);
        c.set_max_age(time::Duration::seconds(left.whole_seconds()));
    }
    to_header(&c)
}

/// `Set-Cookie` that makes the browser forget the session cookie.
pub(crate) fn clear_cookie(config: &CookieConfig) -> HeaderValue {
    let mut c = base(config, String::new());
    c.set_max_age(time::Duration::ZERO);
    c.set_expires(OffsetDateTime::UNIX_EPOCH);
    to_header(&c)
}

fn base(config: &CookieConfig, value: String) -> Cookie<'static> {
    let mut c = Cookie::new(config.name.clone(), value);
    c.set_http_only(config.http_only);
    c.set_secure(config.secure);
    c.set_same_site(config.same_site);
    c.set_path(config.path.clone());
    if let Some(d) = &config.domain {
        c.set_domain(d.clone());
    }
    c
}

fn to_header(c: &Cookie<'_>) -> HeaderValue {
    // The name is checked by CookieConfig::validate, the value is base64url, and the
    // attributes come from the validated config: the header is always visible ASCII.
    let mut v =
        HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""));
    // It carries the token: Debug prints `Sensitive`, and HTTP/2 never indexes it.
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn finds_the_cookie_among_junk() {
        let t = Token::generate();
        let h = headers(&[(
            "cookie",
            &format!("a=b; junk; ==; sid={}; other=\"q\"", t.expose()),
        )]);
        let c = credential(&h, "sid").unwrap();
        assert_eq!(c.source, CredentialSource::Cookie);
        assert_eq!(c.token, t);
    }

    #[test]
    fn bearer_wins_and_is_case_insensitive() {
        let t = Token::generate();
        let h = headers(&[
            ("authorization", &format!("bearer {}", t.expose())),
            ("cookie", "sid=zzz"),
        ]);
        let c = credential(&h, "sid").unwrap();
        assert_eq!(c.source, CredentialSource::Bearer);
        assert_eq!(c.token, t);
    }

    #[test]
    fn bad_credentials_are_typed() {
        assert!(matches!(
            credential(&HeaderMap::new(), "sid"),
            Err(SessionError::NoCredentials)
        ));
        assert!(matches!(
            credential(&headers(&[("cookie", "other=1")]), "sid"),
            Err(SessionError::NoCredentials)
        ));
        assert!(matches!(
            credential(&headers(&[("cookie", "sid=short")]), "sid"),
            Err(SessionError::MalformedToken(_))
        ));
        for auth in ["Basic abc", "Bearer", "Bearer ", "Token x", "Bearer short"] {
            let r = credential(&headers(&[("authorization", auth)]), "sid");
            assert!(
                matches!(
                    r,
                    Err(SessionError::MalformedAuthorization | SessionError::MalformedToken(_))
                ),
                "{auth}: {r:?}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(b"sid=\xff\xfe").unwrap());
        assert!(matches!(
            credential(&h, "sid"),
            Err(SessionError::MalformedCookie)
        ));
    }

    #[test]
    fn set_cookie_has_safe_defaults() {
        let t = Token::generate();
        let now = OffsetDateTime::UNIX_EPOCH;
        let v = set_cookie(
            &CookieConfig::default(),
            &t,
            now,
            now + time::Duration::days(7),
        );
        let s = v.to_str().unwrap();
        assert!(
            s.starts_with(&format!("__Host-atsession={}", t.expose())),
            "{s}"
        );
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=604800",
        ] {
            assert!(s.contains(attr), "{attr} missing in {s}");
        }
        assert!(!s.contains("Domain"));
        let clear = clear_cookie(&CookieConfig::default());
        let s = clear.to_str().unwrap();
        assert!(s.starts_with("__Host-atsession=;"), "{s}");
        assert!(s.contains("Max-Age=0"), "{s}");
    }
}
