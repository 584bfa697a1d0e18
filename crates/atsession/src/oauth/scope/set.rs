//! Sets of scopes: a grant's scope, deduplicated and in canonical order, and the questions
//! asked of it (does it cover this record write, this call, this upload).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::error::*;
use super::form::*;
use super::grammar::*;
use super::missing::ScopeMissing;
use super::params::*;

/// A set of scopes: deduplicated (by canonical form) and kept in canonical order (sorted
/// by their printed form, as the reference implementation normalises). Printed
/// space-separated.
///
/// ```
/// use atsession::oauth::scope::ScopeSet;
///
/// let a: ScopeSet = "repo:b.example.x atproto repo?collection=b.example.x".parse().unwrap();
/// assert_eq!(a.to_string(), "atproto repo:b.example.x");
/// let mut b: ScopeSet = "atproto blob:image/*".parse().unwrap();
/// b.merge(&a);
/// assert_eq!(b.to_string(), "atproto blob:image/* repo:b.example.x");
/// assert!(b.contains_all(&a) && !a.contains_all(&b));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: BTreeMap<String, Scope>,
}

impl ScopeSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn split_checked(s: &str) -> Result<impl Iterator<Item = &str>, ScopeError> {
        if s.len() > MAX_SCOPE_STRING_LEN {
            return Err(ScopeError::TooLong {
                len: s.len(),
                max: MAX_SCOPE_STRING_LEN,
            });
        }
        check_chars(s)?;
        if s.split(' ').nth(MAX_SCOPES).is_some() {
            return Err(ScopeError::TooMany { max: MAX_SCOPES });
        }
        if s.is_empty() {
            return Ok(None.into_iter().flatten());
        }
        if let Some(long) = s.split(' ').find(|x| x.len() > MAX_SCOPE_LEN) {
            return Err(ScopeError::ScopeTooLong {
                len: long.len(),
                max: MAX_SCOPE_LEN,
            });
        }
        Ok(Some(s.split(' ')).into_iter().flatten())
    }

    /// Parses a space-separated scope string strictly (see [`Scope::parse`]). Empty
    /// scopes (two spaces in a row) are refused.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let mut set = Self::new();
        for part in Self::split_checked(s)? {
            if part.is_empty() {
                return Err(ScopeError::Empty);
            }
            set.insert(Scope::parse_checked(part)?);
        }
        Ok(set)
    }

    /// Reads a scope string a server granted: hostile input (overlong, too many scopes,
    /// control characters) is still an error, but a malformed scope is kept as
    /// [`Scope::Unknown`] (permitting nothing), and empty scopes are skipped.
    ///
    /// ```
    /// use atsession::oauth::scope::{Scope, ScopeSet};
    ///
    /// let g = ScopeSet::parse_granted("atproto  repo:app.bsky.*").unwrap();
    /// assert!(g.contains(&Scope::Unknown("repo:app.bsky.*".into())));
    /// assert!(ScopeSet::parse_granted("atproto\nrepo:*").is_err());
    /// ```
    pub fn parse_granted(s: &str) -> Result<Self, ScopeError> {
        let mut set = Self::new();
        for part in Self::split_checked(s)?.filter(|p| !p.is_empty()) {
            set.insert(
                Scope::parse_checked(part).unwrap_or_else(|_| Scope::Unknown(part.to_owned())),
            );
        }
        Ok(set)
    }

    /// Adds a scope (a no-op if an equal one is in the set).
    pub fn insert(&mut self, scope: Scope) {
        self.scopes.entry(scope.to_string()).or_insert(scope);
    }

    /// Adds every scope of `other`.
    pub fn merge(&mut self, other: &ScopeSet) {
        for (k, v) in &other.scopes {
            self.scopes.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    /// Whether an equal scope is in the set.
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains_key(&scope.to_string())
    }

    /// Whether the set permits everything `required` stands for: an equal scope, or broader
    /// ones (`repo:*` or `transition:generic` cover `repo:app.bsky.feed.post?action=create`,
    /// `blob:image/*` covers `blob:image/png`). A form without a permission meaning of its
    /// own (`atproto`, `transition:*`, `include:`, an unknown form) is covered only by an
    /// equal scope.
    ///
    /// ```
    /// use atsession::oauth::scope::{Scope, ScopeSet};
    ///
    /// let granted = ScopeSet::parse("atproto repo:app.bsky.feed.post blob:image/*").unwrap();
    /// let covers = |s: &str| granted.covers(&s.parse::<Scope>().unwrap());
    /// assert!(covers("repo:app.bsky.feed.post?action=create"));
    /// assert!(covers("blob:image/png"));
    /// assert!(!covers("repo:app.bsky.feed.like"));
    /// assert!(!covers("repo:*"));
    /// assert!(!covers("blob:video/mp4"));
    /// ```
    #[must_use]
    pub fn covers(&self, required: &Scope) -> bool {
        if self.contains(required) {
            return true;
        }
        match required {
            Scope::Repo {
                collection,
                actions,
            } => collection
                .iter()
                .all(|c| actions.iter().all(|a| self.allows_repo(c, a))),
            Scope::Rpc { lxm, aud } => lxm.iter().all(|m| self.allows_rpc(m, aud.as_str())),
            Scope::Blob { accept } => accept.iter().all(|m| self.allows_blob(m)),
            Scope::Account { attr, action } => self.allows_account(*attr, *action),
            Scope::Identity { attr } => self.allows_identity(*attr),
            _ => false,
        }
    }

    /// Whether every scope of `other` is in the set (literally, by canonical form).
    #[must_use]
    pub fn contains_all(&self, other: &ScopeSet) -> bool {
        other.scopes.keys().all(|k| self.scopes.contains_key(k))
    }

    /// The scopes of `self` that are not in `other`.
    #[must_use]
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        Self {
            scopes: self
                .scopes
                .iter()
                .filter(|(k, _)| !other.scopes.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The scopes, in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.values()
    }

    /// How many scopes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    fn has(&self, s: &Scope) -> bool {
        self.scopes.values().any(|x| x == s)
    }

    /// Whether the set permits writing (`action`) a record of `collection`.
    /// `transition:generic` permits every write.
    ///
    /// ```
    /// use atsession::oauth::scope::{RepoAction, ScopeSet};
    ///
    /// let s: ScopeSet = "atproto repo:*?action=delete".parse().unwrap();
    /// assert!(s.allows_repo("app.bsky.feed.like", RepoAction::Delete));
    /// assert!(!s.allows_repo("app.bsky.feed.like", RepoAction::Create));
    /// let g: ScopeSet = "atproto transition:generic".parse().unwrap();
    /// assert!(g.allows_repo("app.bsky.feed.post", RepoAction::Create));
    /// ```
    #[must_use]
    pub fn allows_repo(&self, collection: &str, action: RepoAction) -> bool {
        self.has(&Scope::TransitionGeneric)
            || self.iter().any(|s| match s {
                Scope::Repo {
                    collection: c,
                    actions,
                } => {
                    actions.contains(action)
                        && (c[..] == ["*"] || c.iter().any(|x| x == collection))
                }
                _ => false,
            })
    }

    /// Whether the set permits calling `lxm` on the service `aud` (a DID service reference
    /// such as `did:web:api.bsky.app#bsky_appview`). `transition:generic` permits every
    /// method outside `chat.bsky.*`; `transition:chat.bsky` permits `chat.bsky.*`.
    ///
    /// ```
    /// use atsession::oauth::scope::ScopeSet;
    ///
    /// const APPVIEW: &str = "did:web:api.bsky.app#bsky_appview";
    /// let s: ScopeSet = "atproto rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview".parse().unwrap();
    /// assert!(s.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    /// assert!(!s.allows_rpc("app.bsky.feed.getTimeline", "did:web:other.example#bsky_appview"));
    /// let g: ScopeSet = "atproto transition:generic".parse().unwrap();
    /// assert!(g.allows_rpc("app.bsky.feed.getTimeline", APPVIEW));
    /// assert!(!g.allows_rpc("chat.bsky.convo.listConvos", "did:web:api.bsky.chat#bsky_chat"));
    /// ```
    #[must_use]
    pub fn allows_rpc(&self, lxm: &str, aud: &str) -> bool {
        let chat = lxm.starts_with("chat.bsky.");
        if self.has(&Scope::TransitionGeneric) && (lxm == "*" || !chat) {
            return true;
        }
        if self.has(&Scope::TransitionChatBsky) && chat {
            return true;
        }
        self.iter().any(|s| match s {
            Scope::Rpc { lxm: l, aud: a } => {
                a.admits(aud) && (l[..] == ["*"] || l.iter().any(|x| x == lxm))
            }
            _ => false,
        })
    }

    /// Whether the set permits uploading a blob of type `mime` (a concrete MIME type;
    /// compared case-insensitively). `transition:generic` permits every upload.
    ///
    /// ```
    /// use atsession::oauth::scope::ScopeSet;
    ///
    /// let s: ScopeSet = "atproto blob:image/* blob:video/mp4".parse().unwrap();
    /// assert!(s.allows_blob("image/png") && s.allows_blob("VIDEO/MP4"));
    /// assert!(!s.allows_blob("video/webm") && !s.allows_blob("image/*"));
    /// ```
    #[must_use]
    pub fn allows_blob(&self, mime: &str) -> bool {
        if self.has(&Scope::TransitionGeneric) {
            return true;
        }
        let mime = mime.to_ascii_lowercase();
        is_mime(&mime)
            && self.iter().any(|s| match s {
                Scope::Blob { accept } => accept.iter().any(|a| accept_matches(a, &mime)),
                _ => false,
            })
    }

    /// Whether the set permits `action` on the account attribute `attr` (`manage` includes
    /// `read`; `transition:email` permits reading the email).
    ///
    /// ```
    /// use atsession::oauth::scope::{AccountAction, AccountAttr, ScopeSet};
    ///
    /// let s: ScopeSet = "atproto account:email?action=manage".parse().unwrap();
    /// assert!(s.allows_account(AccountAttr::Email, AccountAction::Read));
    /// assert!(!s.allows_account(AccountAttr::Repo, AccountAction::Read));
    /// ```
    #[must_use]
    pub fn allows_account(&self, attr: AccountAttr, action: AccountAction) -> bool {
        if attr == AccountAttr::Email
            && action == AccountAction::Read
            && self.has(&Scope::TransitionEmail)
        {
            return true;
        }
        self.iter().any(|s| match s {
            Scope::Account {
                attr: a,
                action: granted,
            } => *a == attr && *granted >= action,
            _ => false,
        })
    }

    /// Whether the set permits control of the identity attribute `attr`.
    ///
    /// ```
    /// use atsession::oauth::scope::{IdentityAttr, ScopeSet};
    ///
    /// let s: ScopeSet = "atproto identity:*".parse().unwrap();
    /// assert!(s.allows_identity(IdentityAttr::Handle));
    /// ```
    #[must_use]
    pub fn allows_identity(&self, attr: IdentityAttr) -> bool {
        self.iter().any(|s| match s {
            Scope::Identity { attr: a } => *a == IdentityAttr::Any || *a == attr,
            _ => false,
        })
    }

    /// [`allows_repo`](Self::allows_repo), or the scope that is missing.
    pub fn check_repo(&self, collection: &str, action: RepoAction) -> Result<(), ScopeMissing> {
        if self.allows_repo(collection, action) {
            Ok(())
        } else {
            Err(ScopeMissing::new(Scope::repo_needed(collection, action)))
        }
    }

    /// [`allows_rpc`](Self::allows_rpc), or the scope that is missing.
    pub fn check_rpc(&self, lxm: &str, aud: &str) -> Result<(), ScopeMissing> {
        if self.allows_rpc(lxm, aud) {
            Ok(())
        } else {
            Err(ScopeMissing::new(Scope::rpc_needed(lxm, aud)))
        }
    }

    /// [`allows_blob`](Self::allows_blob), or the scope that is missing.
    pub fn check_blob(&self, mime: &str) -> Result<(), ScopeMissing> {
        if self.allows_blob(mime) {
            Ok(())
        } else {
            Err(ScopeMissing::new(Scope::blob_needed(mime)))
        }
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in self.scopes.keys().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(k)?;
        }
        Ok(())
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut s = Self::new();
        for x in iter {
            s.insert(x);
        }
        s
    }
}
