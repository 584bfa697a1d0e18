//! `--allow-nsid` and `--deny-nsid`: which XRPC methods the `/xrpc/` proxy forwards.
//!
//! A pattern is an NSID (`com.atproto.repo.createRecord`, that method only) or a prefix of
//! whole segments followed by `.*` (`app.bsky.*`: every method under `app.bsky.`). A method
//! is forwarded when no deny pattern matches it and, if any allow pattern is given, one of
//! them matches it; otherwise the proxy answers `403` and sends nothing.

use std::fmt;
use std::str::FromStr;

use atsession::syntax::is_nsid;

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NsidPatternError {
    /// Neither an NSID nor whole segments followed by `.*`.
    #[error(
        "`{0}` is not an NSID pattern: give an NSID (com.atproto.repo.createRecord) or a prefix of whole segments and `.*` (app.bsky.*)"
    )]
    Invalid(String),
}

/// One `--allow-nsid` / `--deny-nsid` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsidPattern {
    /// This method only.
    Exact(String),
    /// Every method whose NSID starts with this prefix (which ends with a `.`).
    Prefix(String),
}

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FromStr for NsidPattern {
    type Err = NsidPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(prefix) = s.strip_suffix(".*") {
            if !prefix.is_empty() && prefix.split('.').all(is_segment) {
                return Ok(Self::Prefix(format!("{prefix}.")));
            }
        } else if is_nsid(s) {
            return Ok(Self::Exact(s.to_owned()));
        }
        Err(NsidPatternError::Invalid(s.to_owned()))
    }
}

impl fmt::Display for NsidPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(n) => f.write_str(n),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl NsidPattern {
    /// Whether `nsid` matches.
    #[must_use]
    pub fn matches(&self, nsid: &str) -> bool {
        match self {
            Self::Exact(n) => n == nsid,
            Self::Prefix(p) => nsid.starts_with(p.as_str()),
        }
    }
}

/// The allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct NsidRules {
    allow: Vec<NsidPattern>,
    deny: Vec<NsidPattern>,
}

impl NsidRules {
    /// Rules from the two lists; an empty allow list allows everything not denied.
    #[must_use]
    pub fn new(allow: Vec<NsidPattern>, deny: Vec<NsidPattern>) -> Self {
        Self { allow, deny }
    }

    /// Whether the proxy may forward a call to `nsid`.
    #[must_use]
    pub fn permits(&self, nsid: &str) -> bool {
        !self.deny.iter().any(|p| p.matches(nsid))
            && (self.allow.is_empty() || self.allow.iter().any(|p| p.matches(nsid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NsidPattern {
        s.parse().unwrap()
    }

    #[test]
    fn patterns_parse_or_are_refused() {
        assert_eq!(p("app.bsky.*"), NsidPattern::Prefix("app.bsky.".into()));
        assert_eq!(
            p("com.atproto.server.getSession"),
            NsidPattern::Exact("com.atproto.server.getSession".into())
        );
        assert_eq!(p("app.bsky.*").to_string(), "app.bsky.*");
        for bad in [
            "",
            "*",
            ".*",
            "app.bsky",
            "app.bs*",
            "app..bsky.*",
            "app.bsky.**",
            "a b.c.d",
            "app/bsky.*",
        ] {
            assert!(bad.parse::<NsidPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_restrict() {
        let open = NsidRules::default();
        assert!(open.permits("com.atproto.repo.createRecord"));
        let rules = NsidRules::new(
            vec![p("app.bsky.*"), p("com.atproto.repo.getRecord")],
            vec![p("app.bsky.actor.putPreferences")],
        );
        assert!(rules.permits("app.bsky.feed.getTimeline"));
        assert!(rules.permits("com.atproto.repo.getRecord"));
        assert!(!rules.permits("app.bsky.actor.putPreferences"), "deny wins");
        assert!(
            !rules.permits("com.atproto.repo.createRecord"),
            "not allowed"
        );
        // A prefix is of whole segments: app.bsky.* does not match app.bskyx.
        assert!(!rules.permits("app.bskyx.feed.get"));
        let deny_only = NsidRules::new(vec![], vec![p("chat.bsky.*")]);
        assert!(deny_only.permits("app.bsky.feed.getTimeline"));
        assert!(!deny_only.permits("chat.bsky.convo.listConvos"));
    }
}
