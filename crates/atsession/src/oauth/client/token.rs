//! Token sets and the checks on a token response.
//!
//! A token response is accepted only if: it is a JSON object; `access_token` is a non-empty
//! string of visible ASCII characters and spaces (it goes into an `Authorization` header);
//! `token_type` is `DPoP` (case-insensitively); `sub` is a DID; `scope` includes
//! `atproto`; `expires_in`, when present, is a non-negative number; `refresh_token`, when
//! present, is a non-empty string. Nothing the server sends can make this panic, and no
//! error message repeats a token.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::oauth::scope::{ScopeError, ScopeSet};
use crate::secret::SecretString;
use crate::syntax::Did;

/// The tokens of one grant, with what they are for.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The issuer that granted them.
    pub iss: String,
    /// The account (the token response's `sub`).
    pub sub: Did,
    /// The resource server the tokens are for: the account's PDS URL.
    pub aud: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The access token (DPoP-bound).
    pub access_token: SecretString,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<SecretString>,
    /// When the access token expires, if the server said.
    pub expires_at: Option<OffsetDateTime>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("aud", &self.aud)
            .field("scope", &self.scope)
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl TokenSet {
    /// Whether the access token has expired at `now`, or will within `margin`.
    #[must_use]
    pub fn is_expired(&self, now: OffsetDateTime, margin: Duration) -> bool {
        self.expires_at.is_some_and(|at| at <= now + margin)
    }

    /// Whether the granted scope includes `scope` (literally).
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split_ascii_whitespace().any(|s| s == scope)
    }

    /// The granted scope, parsed as a server's grant is read
    /// ([`ScopeSet::parse_granted`]): ask it what the tokens permit.
    ///
    /// ```
    /// use atsession::oauth::TokenSet;
    /// use atsession::oauth::scope::RepoAction;
    /// use atsession::syntax::Did;
    ///
    /// let t = TokenSet {
    ///     iss: "https://pds.example".into(),
    ///     sub: Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
    ///     aud: "https://pds.example/".into(),
    ///     scope: "atproto repo:com.example.note?action=create".into(),
    ///     access_token: "a".into(),
    ///     refresh_token: None,
    ///     expires_at: None,
    /// };
    /// let granted = t.granted().unwrap();
    /// assert!(granted.allows_repo("com.example.note", RepoAction::Create));
    /// assert!(!granted.allows_repo("app.bsky.feed.post", RepoAction::Create));
    /// ```
    pub fn granted(&self) -> Result<ScopeSet, ScopeError> {
        ScopeSet::parse_granted(&self.scope)
    }
}

/// Why a token response was refused. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenResponseError {
    /// Not a JSON object.
    #[error("the token response is not a JSON object")]
    NotJson,
    /// `access_token` is missing, empty, not a string or not of visible ASCII characters
    /// and spaces (RFC 6749, appendix A.12: it goes into an `Authorization` header).
    #[error("the token response has no valid access token")]
    AccessToken,
    /// `token_type` is not `DPoP`.
    #[error("the token type is not DPoP")]
    TokenType,
    /// `sub` is missing or not a DID.
    #[error("the token response's `sub` is missing or not a DID")]
    Sub,
    /// `scope` is missing or lacks `atproto`.
    #[error("the granted scope does not include `atproto`")]
    Scope,
    /// `expires_in` is not a non-negative number.
    #[error("the token response's `expires_in` is invalid")]
    ExpiresIn,
    /// `refresh_token` is present but empty or not a string.
    #[error("the token response's refresh token is invalid")]
    RefreshToken,
}

/// A checked token response.
#[derive(Clone)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token.
    pub refresh_token: Option<SecretString>,
    /// The account.
    pub sub: Did,
    /// The granted scope.
    pub scope: String,
    /// When the access token expires.
    pub expires_at: Option<OffsetDateTime>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("sub", &self.sub)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The longest `expires_in` taken at face value: ten years.
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

/// Checks a token response body received at `now`.
pub(crate) fn parse_token_response(
    body: &[u8],
    now: OffsetDateTime,
) -> Result<TokenResponse, TokenResponseError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| TokenResponseError::NotJson)?;
    let obj = v.as_object().ok_or(TokenResponseError::NotJson)?;
    let access_token = obj
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .ok_or(TokenResponseError::AccessToken)?;
    let token_type = obj
        .get("token_type")
        .and_then(|t| t.as_str())
        .ok_or(TokenResponseError::TokenType)?;
    if !token_type.eq_ignore_ascii_case("DPoP") {
        return Err(TokenResponseError::TokenType);
    }
    let sub = obj
        .get("sub")
        .and_then(|s| s.as_str())
        .and_then(|s| Did::new(s).ok())
        .ok_or(TokenResponseError::Sub)?;
    let scope = obj
        .get("scope")
        .and_then(|s| s.as_str())
        .ok_or(TokenResponseError::Scope)?;
    if !scope.split_ascii_whitespace().any(|s| s == "atproto") {
        return Err(TokenResponseError::Scope);
    }
    let expires_at = match obj.get("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(n) => {
            let secs = n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f.min(MAX_EXPIRES_IN as f64) as u64)
                })
                .ok_or(TokenResponseError::ExpiresIn)?;
            Some(now + Duration::from_secs(secs.min(MAX_EXPIRES_IN)))
        }
    };
    let refresh_token = match obj.get("refresh_token") {
        None | Some(serde_json::Value::Null) => None,
        Some(r) => Some(
            r.as_str()
                .filter(|r| !r.is_empty())
                .map(SecretString::new)
                .ok_or(TokenResponseError::RefreshToken)?,
        ),
    };
    Ok(TokenResponse {
        access_token: SecretString::new(access_token),
        refresh_token,
        sub,
        scope: scope.to_owned(),
        expires_at,
    })
}

/// The form in which a token set is sealed at rest.
#[derive(Serialize, Deserialize)]
pub(crate) struct TokenSetRecord {
    pub(crate) iss: String,
    pub(crate) sub: Did,
    pub(crate) aud: String,
    pub(crate) scope: String,
    pub(crate) access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at_ms: Option<i64>,
}

impl From<&TokenSet> for TokenSetRecord {
    fn from(t: &TokenSet) -> Self {
        Self {
            iss: t.iss.clone(),
            sub: t.sub.clone(),
            aud: t.aud.clone(),
            scope: t.scope.clone(),
            access_token: t.access_token.expose().to_owned(),
            refresh_token: t.refresh_token.as_ref().map(|r| r.expose().to_owned()),
            expires_at_ms: t.expires_at.map(crate::clock::to_millis),
        }
    }
}

impl From<TokenSetRecord> for TokenSet {
    fn from(mut r: TokenSetRecord) -> Self {
        let t = Self {
            iss: std::mem::take(&mut r.iss),
            sub: r.sub.clone(),
            aud: std::mem::take(&mut r.aud),
            scope: std::mem::take(&mut r.scope),
            access_token: SecretString::new(std::mem::take(&mut r.access_token)),
            refresh_token: r.refresh_token.take().map(SecretString::new),
            expires_at: r.expires_at_ms.map(crate::clock::from_millis),
        };
        drop(r);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<TokenResponse, TokenResponseError> {
        parse_token_response(v.to_string().as_bytes(), OffsetDateTime::UNIX_EPOCH)
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "access_token": "at-secret", "token_type": "DPoP", "refresh_token": "rt-secret",
            "scope": "atproto transition:generic", "expires_in": 3600, "sub": "did:plc:abc"
        })
    }

    #[test]
    fn accepts_the_official_shape() {
        let t = parse(good()).unwrap();
        assert_eq!(t.access_token.expose(), "at-secret");
        assert_eq!(t.refresh_token.unwrap().expose(), "rt-secret");
        assert_eq!(t.sub.as_str(), "did:plc:abc");
        assert_eq!(t.expires_at.unwrap().unix_timestamp(), 3600);
        let mut lower = good();
        lower["token_type"] = "dpop".into();
        assert!(parse(lower).is_ok(), "token_type is case-insensitive");
        let mut float = good();
        float["expires_in"] = serde_json::json!(59.5);
        assert_eq!(
            parse(float).unwrap().expires_at.unwrap().unix_timestamp(),
            59
        );
    }

    #[test]
    fn refuses_bad_responses_without_panicking() {
        let set = |k: &str, v: serde_json::Value| {
            let mut g = good();
            g[k] = v;
            g
        };
        let del = |k: &str| {
            let mut g = good();
            g.as_object_mut().unwrap().remove(k);
            g
        };
        use TokenResponseError as E;
        let cases = [
            (set("token_type", "Bearer".into()), E::TokenType),
            (del("token_type"), E::TokenType),
            (set("access_token", "".into()), E::AccessToken),
            (set("access_token", 5.into()), E::AccessToken),
            (
                set("access_token", "at\r\nx-evil: 1".into()),
                E::AccessToken,
            ),
            (set("access_token", "at\u{e9}".into()), E::AccessToken),
            (set("sub", "alice".into()), E::Sub),
            (del("sub"), E::Sub),
            (set("scope", "transition:generic".into()), E::Scope),
            (del("scope"), E::Scope),
            (set("scope", serde_json::json!(["atproto"])), E::Scope),
            (set("expires_in", (-1).into()), E::ExpiresIn),
            (set("expires_in", "3600".into()), E::ExpiresIn),
            (set("refresh_token", 1.into()), E::RefreshToken),
            (serde_json::json!([1, 2]), E::NotJson),
        ];
        for (v, e) in cases {
            assert_eq!(parse(v.clone()).err(), Some(e), "{v}");
        }
        assert_eq!(
            parse_token_response(b"not json", OffsetDateTime::UNIX_EPOCH).err(),
            Some(E::NotJson)
        );
        // An absurd expiry is clamped, not an overflow.
        assert!(parse(set("expires_in", serde_json::json!(1e300))).is_ok());
        assert!(parse(set("expires_in", serde_json::json!(u64::MAX))).is_ok());
    }

    #[test]
    fn tokens_never_print() {
        let r = parse(good()).unwrap();
        let set = TokenSet {
            iss: "https://x".into(),
            sub: r.sub.clone(),
            aud: "https://pds".into(),
            scope: r.scope.clone(),
            access_token: r.access_token.clone(),
            refresh_token: r.refresh_token.clone(),
            expires_at: r.expires_at,
        };
        let s = format!("{set:?} {r:?}");
        assert!(!s.contains("at-secret") && !s.contains("rt-secret"), "{s}");
    }
}
