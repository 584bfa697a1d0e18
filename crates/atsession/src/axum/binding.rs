//! The login's browser binding (login CSRF): a short-lived `HttpOnly`, `SameSite=Lax` cookie
//! holding a random value whose SHA-256 is sealed in the OAuth state. The callback requires
//! the cookie, and the OAuth client compares it in constant time before anything is
//! exchanged or stored; a callback URL followed by any other browser creates nothing.
//!
//! One login at a time per browser: a second login started before the first came back
//! replaces the cookie, and the first one's callback is refused.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

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

/// `Set-Cookie` for a new binding.
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

/// `Set-Cookie` that removes the binding.
pub(crate) fn clear_cookie(secure: bool) -> HeaderValue {
    let value = format!(
        "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        name(secure),
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
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
