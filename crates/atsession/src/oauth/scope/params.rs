//! The parameters of scopes: record actions, audiences, account and identity attributes.

/// A record operation (`repo:` scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RepoAction {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl RepoAction {
    /// Every action, in canonical order.
    pub const ALL: [Self; 3] = [Self::Create, Self::Update, Self::Delete];

    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub(super) fn bit(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Update => 2,
            Self::Delete => 4,
        }
    }
}

/// A set of [`RepoAction`]s (never empty in a parsed scope).
///
/// ```
/// use atsession::oauth::scope::{RepoAction, RepoActions};
///
/// let a = RepoActions::of(&[RepoAction::Delete, RepoAction::Create]);
/// assert!(a.contains(RepoAction::Create) && !a.contains(RepoAction::Update));
/// assert_eq!(a.iter().collect::<Vec<_>>(), [RepoAction::Create, RepoAction::Delete]);
/// assert!(RepoActions::ALL.is_all());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoActions(u8);

impl RepoActions {
    /// All three actions (the default).
    pub const ALL: Self = Self(7);

    /// The set of `actions`.
    #[must_use]
    pub fn of(actions: &[RepoAction]) -> Self {
        Self(actions.iter().fold(0, |b, a| b | a.bit()))
    }

    /// Whether `action` is in the set.
    #[must_use]
    pub fn contains(self, action: RepoAction) -> bool {
        self.0 & action.bit() != 0
    }

    /// Whether every action is in the set.
    #[must_use]
    pub fn is_all(self) -> bool {
        self.0 == 7
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions, in canonical order (create, update, delete).
    pub fn iter(self) -> impl Iterator<Item = RepoAction> {
        RepoAction::ALL
            .into_iter()
            .filter(move |a| self.contains(*a))
    }
}

/// The audience of an `rpc:` or `include:` scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// `*`: any service.
    Any,
    /// A DID service reference, `did:web:api.bsky.app#bsky_appview`.
    Service(String),
}

impl Audience {
    /// The parameter value (`*` or the DID reference).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Service(s) => s,
        }
    }

    /// Whether this audience admits `aud`.
    #[must_use]
    pub fn admits(&self, aud: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Service(s) => s == aud,
        }
    }
}

/// What an `account:` scope controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountAttr {
    /// `email`: the account email address.
    Email,
    /// `repo`: importing a whole repository (CAR file).
    Repo,
    /// `status`: the account's hosting status.
    Status,
}

impl AccountAttr {
    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Repo => "repo",
            Self::Status => "status",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        [Self::Email, Self::Repo, Self::Status]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The degree of account control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountAction {
    /// `read` (the default).
    Read,
    /// `manage` (includes `read`).
    Manage,
}

impl AccountAction {
    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Manage => "manage",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "manage" => Some(Self::Manage),
            _ => None,
        }
    }
}

/// What an `identity:` scope controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityAttr {
    /// `handle`: changing the handle.
    Handle,
    /// `*`: full control of the DID document and handle.
    Any,
}

impl IdentityAttr {
    /// The parameter value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handle => "handle",
            Self::Any => "*",
        }
    }
}
