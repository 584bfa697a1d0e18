//! How app sessions behave: lifetimes, access tokens, and the cookie.

use std::time::Duration;

use cookie::SameSite;

/// A configuration that cannot work. Found when a [`SessionManager`] is built, not when the
/// first request comes.
///
/// [`SessionManager`]: crate::app::SessionManager
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionConfigError {
    /// The cookie name is empty or holds characters a cookie name cannot.
    #[error("invalid cookie name")]
    CookieName,
    /// A `__Host-` cookie must be `Secure`, have `Path=/` and no `Domain`.
    #[error("a __Host- cookie must be Secure, with Path=/ and no Domain")]
    HostPrefix,
    /// A `__Secure-` cookie must be `Secure`.
    #[error("a __Secure- cookie must be Secure")]
    SecurePrefix,
    /// `SameSite=None` is refused by browsers without `Secure`.
    #[error("SameSite=None requires Secure")]
    SameSiteNone,
    /// A duration is zero, or the idle timeout is longer than the absolute one.
    #[error("invalid duration: {0}")]
    Duration(&'static str),
    /// A duration is longer than [`MAX_DURATION`](crate::clock::MAX_DURATION).
    #[error("the {name} is longer than the maximum of {} days", max.as_secs() / 86_400)]
    DurationTooLong {
        /// Which duration.
        name: &'static str,
        /// The longest allowed.
        max: Duration,
    },
}

/// Lifetimes and tokens of app sessions.
///
/// ```
/// use std::time::Duration;
/// use atsession::app::SessionConfig;
///
/// let config = SessionConfig::default()
///     .idle_timeout(Duration::from_secs(24 * 3600))
///     .access_tokens(Duration::from_secs(15 * 60));
/// assert_eq!(config.cookie.name, "__Host-atsession");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// A session unused for this long ends. Default 7 days.
    pub idle_timeout: Duration,
    /// A session ends this long after it was created, whatever its use. Default 30 days.
    pub absolute_timeout: Duration,
    /// Use is recorded (and the idle window slid) at most once per this interval, so that a
    /// read-heavy session does not write on every request. Default 60 seconds.
    pub touch_interval: Duration,
    /// When set, every session also gets a short-lived access token of this lifetime, for
    /// `Authorization: Bearer`; [`refresh`] issues the next one. Default: off.
    ///
    /// [`refresh`]: crate::app::SessionManager::refresh
    pub access_token_ttl: Option<Duration>,
    /// The session cookie.
    pub cookie: CookieConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(7 * 24 * 3600),
            absolute_timeout: Duration::from_secs(30 * 24 * 3600),
            touch_interval: Duration::from_secs(60),
            access_token_ttl: None,
            cookie: CookieConfig::default(),
        }
    }
}

impl SessionConfig {
    /// The default access-token lifetime: 15 minutes.
    pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

    /// Sets the idle timeout.
    #[must_use]
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Sets the absolute timeout.
    #[must_use]
    pub fn absolute_timeout(mut self, d: Duration) -> Self {
        self.absolute_timeout = d;
        self
    }

    /// Sets the touch interval.
    #[must_use]
    pub fn touch_interval(mut self, d: Duration) -> Self {
        self.touch_interval = d;
        self
    }

    /// Turns access tokens on with this lifetime (see
    /// [`DEFAULT_ACCESS_TOKEN_TTL`](Self::DEFAULT_ACCESS_TOKEN_TTL)).
    #[must_use]
    pub fn access_tokens(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = Some(ttl);
        self
    }

    /// Sets the cookie configuration.
    #[must_use]
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// Checks that the configuration can work: every duration positive (the touch interval
    /// may be zero) and at most [`MAX_DURATION`](crate::clock::MAX_DURATION), and the idle
    /// timeout within the absolute one.
    pub fn validate(&self) -> Result<(), SessionConfigError> {
        let durations = [
            ("idle timeout", Some(self.idle_timeout)),
            ("absolute timeout", Some(self.absolute_timeout)),
            ("touch interval", Some(self.touch_interval)),
            ("access-token lifetime", self.access_token_ttl),
        ];
        for (name, d) in durations {
            if d.is_some_and(|d| d > crate::clock::MAX_DURATION) {
                return Err(SessionConfigError::DurationTooLong {
                    name,
                    max: crate::clock::MAX_DURATION,
                });
            }
        }
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return Err(SessionConfigError::Duration("timeouts must be positive"));
        }
        if self.idle_timeout > self.absolute_timeout {
            return Err(SessionConfigError::Duration(
                "the idle timeout must not exceed the absolute timeout",
            ));
        }
        if self.access_token_ttl.is_some_and(|d| d.is_zero()) {
            return Err(SessionConfigError::Duration(
                "the access-token lifetime must be positive",
            ));
        }
        self.cookie.validate()
    }
}

/// The session cookie's name and attributes.
///
/// The defaults are the safe ones: `__Host-atsession; HttpOnly; Secure; SameSite=Lax; Path=/`
/// with `Max-Age` from the session's expiry. For plain-HTTP development on localhost, use
/// [`CookieConfig::insecure_for_development`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieConfig {
    /// The cookie's name. Default `__Host-atsession`.
    pub name: String,
    /// `HttpOnly`. Default on.
    pub http_only: bool,
    /// `Secure`. Default on.
    pub secure: bool,
    /// `SameSite`. Default `Lax`.
    pub same_site: SameSite,
    /// `Path`. Default `/`.
    pub path: String,
    /// `Domain`. Default none (host-only).
    pub domain: Option<String>,
    /// Whether to send `Max-Age` (the time left until the session expires). Off makes a
    /// browser-session cookie. Default on.
    pub max_age: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "__Host-atsession".to_owned(),
            http_only: true,
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age: true,
        }
    }
}

impl CookieConfig {
    /// A cookie for `http://localhost` during development: named `atsession`, not `Secure`.
    #[must_use]
    pub fn insecure_for_development() -> Self {
        Self {
            name: "atsession".to_owned(),
            secure: false,
            ..Self::default()
        }
    }

    /// Sets the name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets `Domain` (not allowed with a `__Host-` name).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `SameSite`.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Checks the name and the rules of the `__Host-` and `__Secure-` prefixes.
    pub fn validate(&self) -> Result<(), SessionConfigError> {
        // RFC 6265 token: visible ASCII minus separators.
        let token_char = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
        if self.name.is_empty() || !self.name.bytes().all(token_char) {
            return Err(SessionConfigError::CookieName);
        }
        if self.name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(SessionConfigError::HostPrefix);
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(SessionConfigError::SecurePrefix);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(SessionConfigError::SameSiteNone);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_rules_are_enforced() {
        assert_eq!(CookieConfig::default().validate(), Ok(()));
        assert_eq!(CookieConfig::insecure_for_development().validate(), Ok(()));
        assert_eq!(
            CookieConfig::default().domain("example.com").validate(),
            Err(SessionConfigError::HostPrefix)
        );
        let insecure_host = CookieConfig {
            secure: false,
            ..CookieConfig::default()
        };
        assert_eq!(
            insecure_host.validate(),
            Err(SessionConfigError::HostPrefix)
        );
        let sub_path = CookieConfig {
            path: "/app".into(),
            ..CookieConfig::default()
        };
        assert_eq!(sub_path.validate(), Err(SessionConfigError::HostPrefix));
        let secure_prefix = CookieConfig {
            secure: false,
            ..CookieConfig::default().name("__Secure-s")
        };
        assert_eq!(
            secure_prefix.validate(),
            Err(SessionConfigError::SecurePrefix)
        );
        let none = CookieConfig::insecure_for_development().same_site(SameSite::None);
        assert_eq!(none.validate(), Err(SessionConfigError::SameSiteNone));
        for bad in ["", "a b", "a;b", "a=b", "é"] {
            assert_eq!(
                CookieConfig::default().name(bad).validate(),
                Err(SessionConfigError::CookieName),
                "{bad}"
            );
        }
        let ok = CookieConfig::insecure_for_development()
            .name("sid")
            .domain("example.com");
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn durations_are_checked() {
        let c = SessionConfig::default().idle_timeout(Duration::ZERO);
        assert!(matches!(c.validate(), Err(SessionConfigError::Duration(_))));
        let c = SessionConfig::default()
            .idle_timeout(Duration::from_secs(100))
            .absolute_timeout(Duration::from_secs(10));
        assert!(matches!(c.validate(), Err(SessionConfigError::Duration(_))));
        let c = SessionConfig::default().access_tokens(Duration::ZERO);
        assert!(matches!(c.validate(), Err(SessionConfigError::Duration(_))));
        assert!(SessionConfig::default().validate().is_ok());
    }

    #[test]
    fn durations_are_bounded() {
        let huge = Duration::from_secs(9_999_999_999_999);
        let too_long = |c: SessionConfig| match c.validate() {
            Err(SessionConfigError::DurationTooLong { name, max }) => {
                assert_eq!(max, crate::clock::MAX_DURATION);
                name
            }
            other => panic!("expected DurationTooLong, got {other:?}"),
        };
        assert_eq!(
            too_long(SessionConfig::default().access_tokens(huge)),
            "access-token lifetime"
        );
        assert_eq!(
            too_long(SessionConfig::default().absolute_timeout(huge)),
            "absolute timeout"
        );
        assert_eq!(
            too_long(
                SessionConfig::default()
                    .idle_timeout(huge)
                    .absolute_timeout(huge)
            ),
            "idle timeout"
        );
        assert_eq!(
            too_long(SessionConfig::default().touch_interval(Duration::MAX)),
            "touch interval"
        );
        let longest = SessionConfig::default()
            .idle_timeout(crate::clock::MAX_DURATION)
            .absolute_timeout(crate::clock::MAX_DURATION)
            .access_tokens(crate::clock::MAX_DURATION);
        assert_eq!(longest.validate(), Ok(()));
    }
}
