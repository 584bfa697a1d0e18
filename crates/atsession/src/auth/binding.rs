//! The login's browser binding (login CSRF): a short-lived `HttpOnly`, `SameSite=Lax` cookie
//! holding a random value whose SHA-256 is sealed in the OAuth state. The callback requires
//! the cookie, and the OAuth client compares it in constant time before anything is
//! exchanged or stored; a callback URL followed by any other browser creates nothing.
//!
//! Logins started in several tabs of one browser can each come back: a login started while
//! the browser still holds a binding keeps that value (and renews the cookie's lifetime),
//! and a callback leaves the cookie in place; it expires on its own, the login lifetime
//! after the last login started. Each state is still used once only.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use crate::secret::{SecretString, Token, TokenHash};

/// The cookie's name on HTTPS sites (the `__Host-` prefix pins it to this host, path `/`).
pub const SECURE_COOKIE: &str = "__Host-atsession-login";
/// The cookie's name on plain-HTTP development sites (browsers refuse `__Host-` there).
pub const PLAIN_COOKIE: &str = "atsession-login";

fn name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { PLAIN_COOKIE }
}

/// A fresh binding: the value for the cookie and the hash for the state.
pub(crate) fn generate() -> (Token, TokenHash) {
    let token = Token::generate();
    let hash = TokenHash::of(token.expose().as_bytes());
    (token, hash)
}

/// The browser's binding, when its cookie holds one this module made (so a login started
/// beside another one shares its value); else a fresh one.
pub(crate) fn current_or_generate(headers: &HeaderMap, secure: bool) -> (Token, TokenHash) {
    from_headers(headers, secure)
        .and_then(|v| Token::parse(v.expose()).ok())
        .map_or_else(generate, |token| {
            let hash = TokenHash::of(token.expose().as_bytes());
            (token, hash)
        })
}

/// `Set-Cookie` for a binding (new or renewed).
pub(crate) fn set_cookie(token: &Token, secure: bool, ttl: Duration) -> HeaderValue {
    let value = format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        name(secure),
        token.expose(),
        ttl.as_secs().max(1),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The binding value the request's cookies carry, if any (the first, if repeated).
pub(crate) fn from_headers(headers: &HeaderMap, secure: bool) -> Option<SecretString> {
    let wanted = name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == wanted && !v.is_empty() && v.len() <= 128)
        .map(|(_, v)| SecretString::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip() {
        let (token, hash) = generate();
        let set = set_cookie(&token, true, Duration::from_secs(600));
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-atsession-login="));
        for attr in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=600",
        ] {
            assert!(set.contains(attr), "{attr}");
        }
        let mut headers = HeaderMap::new();
        let pair = set.split(';').next().unwrap();
        headers.insert(header::COOKIE, format!("a=b; {pair}").parse().unwrap());
        let got = from_headers(&headers, true).unwrap();
        assert_eq!(TokenHash::of(got.expose().as_bytes()), hash);
        assert!(from_headers(&headers, false).is_none());
        // A second login in the same browser keeps the binding; a malformed one is replaced.
        let (again, again_hash) = current_or_generate(&headers, true);
        assert_eq!(again.expose(), token.expose());
        assert_eq!(again_hash, hash);
        let mut odd = HeaderMap::new();
        odd.insert(
            header::COOKIE,
            "__Host-atsession-login=short".parse().unwrap(),
        );
        let (fresh, _) = current_or_generate(&odd, true);
        assert_ne!(fresh.expose(), "short");
        assert_ne!(fresh.expose(), token.expose());
    }
}
