//! Stateless sessions: typed data sealed into a cookie or a Bearer token.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use cookie::SameSite;
use http::header::{AUTHORIZATION, HeaderMap};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::cookies::{
    CookieSettings, MAX_CHUNKS, MAX_COOKIE_BYTES, Present, SetCookies, valid_name,
};
use super::iron::{DEFAULT_MAX_SEAL_LEN, Iron, TIMESTAMP_SKEW, Unsealed};
use super::{JsonError, Passwords, SealError};
use crate::clock::Clock;
use crate::secret::SecretString;

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";
/// The default session lifetime: 7 days.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// What iron-session appends to a seal (outside the MAC) to mark its format version.
pub const IRON_SESSION_SUFFIX: &str = "~2";

/// Why a sealed session could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealedSessionError {
    /// The seal is unusable (forged, expired, malformed...), or a password is.
    #[error("sealed session refused")]
    Seal(#[from] SealError),
    /// The seal does not fit in one cookie and chunking is off.
    #[error("the session cookie would be {bytes} bytes, over the {MAX_COOKIE_BYTES}-byte limit")]
    TooLarge {
        /// The length of the whole `Set-Cookie` line.
        bytes: usize,
    },
    /// The seal needs more than [`MAX_CHUNKS`] cookies.
    #[error("the session needs {needed} cookies, more than the limit of {MAX_CHUNKS}")]
    TooManyChunks {
        /// How many cookies it would take.
        needed: usize,
    },
    /// The cookie name and attributes alone fill a cookie.
    #[error("the cookie name and attributes leave no room for the session")]
    NoRoom,
    /// The cookie name is not an HTTP token.
    #[error("the cookie name is not an HTTP token")]
    InvalidCookieName,
    /// The `Authorization` header says `Bearer` but carries no readable token.
    #[error("the Authorization header is not `Bearer <seal>`")]
    Authorization,
}

/// A session read from a request's cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<T> {
    /// The session data.
    pub data: T,
    /// The password id the seal carried.
    pub password_id: String,
    /// When the seal expires (`None` for a seal made without a TTL).
    pub expires_at: Option<OffsetDateTime>,
    /// Cookies to send back when the session was refreshed (see [`SealedSessions`] for the
    /// rule); `None` when the cookie the client holds is still good.
    pub set_cookie: Option<SetCookies>,
}

/// Sealed (stateless) sessions holding data of type `T`, as cookies or Bearer tokens, readable
/// and writable by iron-session.
///
/// Defaults: cookie `sid`; `HttpOnly; Secure; SameSite=Lax; Path=/`; TTL 7 days; seals carry
/// iron-session's `~2` suffix; a seal too big for one cookie is split into `sid.0`..`sid.3`.
/// Like iron-session, a cookie's `Max-Age` is the TTL minus 60 s (the seal's own expiry is the
/// full TTL, and unseal allows 60 s of skew), and a TTL of zero means a seal without expiry.
///
/// **Sliding expiry.** Reading a session returns fresh cookies (same data, full TTL, current
/// password) when any of these holds, and none otherwise:
/// - less than half the TTL remains before the seal expires (so an active user is re-sealed
///   at most about once per half-TTL, and never expires while active);
/// - the seal was made with a password other than the current one (so rotation converges);
/// - the seal has no expiry but sessions have a TTL.
///
/// Turn the first rule off with [`SealedSessionsBuilder::sliding`] for a fixed lifetime.
/// Bearer tokens do not slide on their own: call [`SealedSessions::refresh_bearer`].
#[derive(Debug, Clone)]
pub struct SealedSessions<T> {
    iron: Iron,
    cookie: CookieSettings,
    sliding: bool,
    suffix: bool,
    _data: PhantomData<fn() -> T>,
}

/// Configures [`SealedSessions`]; made by [`SealedSessions::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SealedSessionsBuilder<T> {
    passwords: Passwords,
    cookie: CookieSettings,
    ttl: Duration,
    sliding: bool,
    suffix: bool,
    max_len: usize,
    clock: Option<Arc<dyn Clock>>,
    _data: PhantomData<fn() -> T>,
}

impl<T> SealedSessionsBuilder<T> {
    /// The cookie name (default `sid`). Chunks are named `{name}.0`..`{name}.3`.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into();
        self
    }
    /// How long a seal is valid (default 7 days). `Duration::ZERO`: seals never expire.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// The cookie's `Path` (default `/`); `None` omits it.
    pub fn path(mut self, path: Option<String>) -> Self {
        self.cookie.path = path;
        self
    }
    /// The cookie's `Domain` (default none).
    pub fn domain(mut self, domain: Option<String>) -> Self {
        self.cookie.domain = domain;
        self
    }
    /// The `Secure` attribute (default on). Turn off only for plain-HTTP development.
    pub fn secure(mut self, on: bool) -> Self {
        self.cookie.secure = on;
        self
    }
    /// The `HttpOnly` attribute (default on).
    pub fn http_only(mut self, on: bool) -> Self {
        self.cookie.http_only = on;
        self
    }
    /// The `SameSite` attribute (default `Lax`); `None` omits it.
    pub fn same_site(mut self, same_site: Option<SameSite>) -> Self {
        self.cookie.same_site = same_site;
        self
    }
    /// Whether a seal too big for one cookie is split across up to four (default on). Off, such
    /// a seal is an error, as in iron-session 8. Chunked cookies are always read.
    pub fn chunking(mut self, on: bool) -> Self {
        self.cookie.chunking = on;
        self
    }
    /// Whether reading a session refreshes it when less than half its TTL is left (default on).
    pub fn sliding(mut self, on: bool) -> Self {
        self.sliding = on;
        self
    }
    /// Whether seals written carry iron-session's `~2` suffix (default on; iron-session 8 reads
    /// a seal without it as a v6-era session). Seals are read with or without it.
    pub fn iron_session_suffix(mut self, on: bool) -> Self {
        self.suffix = on;
        self
    }
    /// The longest seal accepted (default 64 KiB).
    pub fn max_seal_len(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`SealedSessionError::InvalidCookieName`] for a cookie name that is not an HTTP token.
    pub fn build(self) -> Result<SealedSessions<T>, SealedSessionError> {
        if !valid_name(&self.cookie.name) {
            return Err(SealedSessionError::InvalidCookieName);
        }
        let mut iron = Iron::new(self.passwords)
            .with_ttl(self.ttl)
            .with_max_len(self.max_len);
        if let Some(clock) = self.clock {
            iron = iron.with_clock(clock);
        }
        Ok(SealedSessions {
            iron,
            cookie: self.cookie,
            sliding: self.sliding,
            suffix: self.suffix,
            _data: PhantomData,
        })
    }
}

/// Parsed data beside the JSON it came from (to re-seal the same bytes).
type WithJson<T> = (T, Zeroizing<Vec<u8>>);

/// Removes a `~version` suffix (iron-session), which sits outside the MAC and means nothing.
fn strip_version(seal: &str) -> &str {
    seal.split_once('~').map_or(seal, |(s, _)| s)
}

impl<T: Serialize + DeserializeOwned> SealedSessions<T> {
    /// Sessions with the defaults and one password, which seals carry as id `1`: exactly what
    /// iron-session does with a string password, so the two read each other's cookies.
    ///
    /// # Errors
    /// [`SealError::PasswordTooShort`] (inside [`SealedSessionError::Seal`]) for a secret of fewer
    /// than 32 characters.
    ///
    /// ```
    /// use atsession::seal::{SealError, SealedSessions, SealedSessionError};
    ///
    /// let ok = SealedSessions::<String>::new("a secret of at least 32 characters!!");
    /// assert!(ok.is_ok());
    /// let short = SealedSessions::<String>::new("too short");
    /// assert!(matches!(short, Err(SealedSessionError::Seal(SealError::PasswordTooShort { .. }))));
    /// ```
    pub fn new(secret: impl Into<SecretString>) -> Result<Self, SealedSessionError> {
        Self::builder(Passwords::new([("1", secret.into())])?).build()
    }

    /// A builder with the defaults, for a password set of your own (rotation).
    pub fn builder(passwords: Passwords) -> SealedSessionsBuilder<T> {
        SealedSessionsBuilder {
            passwords,
            cookie: CookieSettings {
                name: DEFAULT_COOKIE_NAME.to_owned(),
                path: Some("/".to_owned()),
                domain: None,
                secure: true,
                http_only: true,
                same_site: Some(SameSite::Lax),
                chunking: true,
            },
            ttl: DEFAULT_TTL,
            sliding: true,
            suffix: true,
            max_len: DEFAULT_MAX_SEAL_LEN,
            clock: None,
            _data: PhantomData,
        }
    }

    /// The sealer underneath, for seals outside cookies and tokens.
    #[must_use]
    pub fn iron(&self) -> &Iron {
        &self.iron
    }

    fn seal_bytes(&self, plaintext: &[u8]) -> Result<String, SealError> {
        let mut seal = self.iron.seal_bytes(plaintext)?;
        if self.suffix {
            seal.push_str(IRON_SESSION_SUFFIX);
        }
        Ok(seal)
    }

    fn to_json(data: &T) -> Result<Zeroizing<Vec<u8>>, SealError> {
        serde_json::to_vec(data)
            .map(Zeroizing::new)
            .map_err(|e| SealError::Json(JsonError::from(&e)))
    }

    fn open(&self, seal: &str) -> Result<Unsealed<WithJson<T>>, SealError> {
        let raw = self.iron.unseal_bytes(strip_version(seal))?;
        let data =
            serde_json::from_slice(&raw.data).map_err(|e| SealError::Json(JsonError::from(&e)))?;
        Ok(Unsealed {
            data: (data, raw.data),
            password_id: raw.password_id,
            expires_at: raw.expires_at,
        })
    }

    /// The cookie `Max-Age`: iron-session's `ttl - 60 s` (the TTL itself when shorter).
    fn max_age(&self) -> Option<Duration> {
        let ttl = self.iron.ttl()?;
        Some(if ttl > TIMESTAMP_SKEW {
            ttl - TIMESTAMP_SKEW
        } else {
            ttl
        })
    }

    fn write(
        &self,
        plaintext: &[u8],
        present: Option<&Present>,
    ) -> Result<SetCookies, SealedSessionError> {
        let seal = self.seal_bytes(plaintext)?;
        self.cookie.write(&seal, self.max_age(), present)
    }

    fn needs_refresh<U>(&self, u: &Unsealed<U>) -> bool {
        if !self.iron.passwords().is_current(&u.password_id) {
            return true;
        }
        let Some(ttl) = self.iron.ttl() else {
            return false;
        };
        match u.expires_at {
            None => true,
            Some(exp) => self.sliding && exp - self.iron.clock().now() < ttl / 2,
        }
    }

    /// Reads the session from a request's `Cookie` headers.
    ///
    /// `Ok(None)` when the request carries no session cookie. A cookie that is there but
    /// unusable (forged, expired, sealed with an unknown password, of the wrong shape for `T`) is
    /// an error; treat it as signed out, and send [`SealedSessions::clear`] if you like.
    ///
    /// # Errors
    /// [`SealedSessionError::Seal`] for an unusable seal; [`SealedSessionError::TooLarge`] (or another cookie-size variant) when a refreshed
    /// session no longer fits in cookies.
    ///
    /// ```
    /// use atsession::seal::SealedSessions;
    /// use http::header::{COOKIE, HeaderMap, HeaderValue};
    ///
    /// let sessions = SealedSessions::<String>::new("a secret of at least 32 characters!!")?;
    /// let set = sessions.create(&"did:plc:alice".to_owned())?;
    /// // The browser sends back `name=value`, without the attributes.
    /// let pair = set.single().unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(COOKIE, HeaderValue::from_str(&pair).unwrap());
    /// let loaded = sessions.load(&headers)?.expect("a session");
    /// assert_eq!(loaded.data, "did:plc:alice");
    /// assert!(loaded.set_cookie.is_none()); // fresh: nothing to refresh
    /// assert!(sessions.load(&HeaderMap::new())?.is_none());
    /// # Ok::<(), atsession::seal::SealedSessionError>(())
    /// ```
    pub fn load(&self, headers: &HeaderMap) -> Result<Option<Loaded<T>>, SealedSessionError> {
        let present = self.cookie.read(headers);
        let Some(seal) = present.seal() else {
            return Ok(None);
        };
        let u = self.open(&seal)?;
        let set_cookie = if self.needs_refresh(&u) {
            Some(self.write(&u.data.1, Some(&present))?)
        } else {
            None
        };
        Ok(Some(Loaded {
            data: u.data.0,
            password_id: u.password_id,
            expires_at: u.expires_at,
            set_cookie,
        }))
    }

    /// Seals `data` into a new session cookie (more than one when it must be split).
    ///
    /// # Errors
    /// [`SealedSessionError::Seal`] when `data` cannot be serialised; [`SealedSessionError::TooLarge`] (or another cookie-size variant) when it
    /// does not fit.
    ///
    /// ```
    /// use atsession::seal::SealedSessions;
    ///
    /// let sessions = SealedSessions::<u64>::new("a secret of at least 32 characters!!")?;
    /// let set = sessions.create(&42)?;
    /// let line = set.single().unwrap().to_str().unwrap();
    /// assert!(line.starts_with("sid=Fe26.2*1*"));
    /// assert!(line.contains("~2;"));
    /// assert!(line.contains("HttpOnly") && line.contains("Secure") && line.contains("SameSite=Lax"));
    /// assert!(line.contains("Max-Age=604740")); // 7 days minus 60 s, like iron-session
    /// # Ok::<(), atsession::seal::SealedSessionError>(())
    /// ```
    pub fn create(&self, data: &T) -> Result<SetCookies, SealedSessionError> {
        self.write(&Self::to_json(data)?, None)
    }

    /// Like [`SealedSessions::create`], but expires only the stale cookies `request` carries
    /// (chunks of an older, larger session) instead of every name that might be stale.
    ///
    /// # Errors
    /// As [`SealedSessions::create`].
    pub fn save(&self, data: &T, request: &HeaderMap) -> Result<SetCookies, SealedSessionError> {
        let present = self.cookie.read(request);
        self.write(&Self::to_json(data)?, Some(&present))
    }

    /// The cookies that end the session in the browser (`Max-Age=0`; with chunking on, the
    /// chunk names too).
    ///
    /// ```
    /// use atsession::seal::SealedSessions;
    ///
    /// let sessions = SealedSessions::<u64>::builder(
    ///     atsession::seal::Passwords::single("a secret of at least 32 characters!!")?,
    /// )
    /// .chunking(false)
    /// .build()?;
    /// let clear = sessions.clear();
    /// assert!(clear.single().unwrap().to_str().unwrap().starts_with("sid=; "));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn clear(&self) -> SetCookies {
        self.cookie.clear()
    }

    /// Seals `data` as a Bearer token for a mobile client (same format as the cookie value).
    ///
    /// # Errors
    /// [`SealedSessionError::Seal`] when `data` cannot be serialised or is too large.
    pub fn seal_bearer(&self, data: &T) -> Result<String, SealedSessionError> {
        Ok(self.seal_bytes(&Self::to_json(data)?)?)
    }

    /// Opens a Bearer token made by [`SealedSessions::seal_bearer`] (or by iron-session's
    /// `sealData`).
    ///
    /// # Errors
    /// [`SealedSessionError::Seal`] for an unusable token.
    pub fn unseal_bearer(&self, token: &str) -> Result<Unsealed<T>, SealedSessionError> {
        let u = self.open(token)?;
        Ok(Unsealed {
            data: u.data.0,
            password_id: u.password_id,
            expires_at: u.expires_at,
        })
    }

    /// Reads `Authorization: Bearer <seal>`. `Ok(None)` when there is no `Authorization` header
    /// or it uses another scheme.
    ///
    /// # Errors
    /// [`SealedSessionError::Authorization`] for a `Bearer` header without a readable token;
    /// [`SealedSessionError::Seal`] for an unusable token.
    ///
    /// ```
    /// use atsession::seal::SealedSessions;
    /// use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
    ///
    /// let sessions = SealedSessions::<String>::new("a secret of at least 32 characters!!")?;
    /// let token = sessions.seal_bearer(&"did:plc:alice".to_owned())?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    /// assert_eq!(sessions.from_bearer(&headers)?.unwrap().data, "did:plc:alice");
    ///
    /// headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer Fe26.2*forged"));
    /// assert!(sessions.from_bearer(&headers).is_err());
    /// # Ok::<(), atsession::seal::SealedSessionError>(())
    /// ```
    pub fn from_bearer(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Unsealed<T>>, SealedSessionError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        let is_bearer = bytes.len() >= 7
            && bytes[..6].eq_ignore_ascii_case(b"bearer")
            && (bytes[6] == b' ' || bytes[6] == b'\t');
        if !is_bearer {
            return if bytes.len() == 6 && bytes.eq_ignore_ascii_case(b"bearer") {
                Err(SealedSessionError::Authorization)
            } else {
                Ok(None)
            };
        }
        let token = std::str::from_utf8(&bytes[7..])
            .map_err(|_| SealedSessionError::Authorization)?
            .trim();
        if token.is_empty() {
            return Err(SealedSessionError::Authorization);
        }
        self.unseal_bearer(token).map(Some)
    }

    /// A new token with the same data, the full TTL from now and the current password. The old
    /// token stays valid until it expires: seals cannot be revoked.
    ///
    /// # Errors
    /// [`SealedSessionError::Seal`] when `token` is unusable.
    ///
    /// ```
    /// use std::{sync::Arc, time::Duration};
    /// use atsession::clock::ManualClock;
    /// use atsession::seal::{Passwords, SealedSessions};
    ///
    /// let clock = Arc::new(ManualClock::at_now());
    /// let sessions = SealedSessions::<u32>::builder(Passwords::single("a secret of at least 32 characters!!")?)
    ///     .ttl(Duration::from_secs(3600))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let token = sessions.seal_bearer(&7)?;
    /// clock.advance(Duration::from_secs(3000));
    /// let fresh = sessions.refresh_bearer(&token)?;
    /// clock.advance(Duration::from_secs(3000)); // the old token has now expired
    /// assert!(sessions.unseal_bearer(&token).is_err());
    /// assert_eq!(sessions.unseal_bearer(&fresh)?.data, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn refresh_bearer(&self, token: &str) -> Result<String, SealedSessionError> {
        let u = self.open(token)?;
        Ok(self.seal_bytes(&u.data.1)?)
    }
}
