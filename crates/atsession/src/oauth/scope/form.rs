//! One scope: the [`Scope`] type, read from and written in the scope grammar.

use std::fmt;
use std::str::FromStr;

use super::error::{MAX_SCOPE_LEN, ScopeError, cut};
use super::grammar::*;
use super::params::*;
use crate::syntax::is_nsid;

/// One atproto OAuth scope.
///
/// Invariants of a parsed scope: NSID lists are sorted, deduplicated and never empty, and
/// a list holding `*` is exactly `["*"]`; MIME patterns are lower-case, sorted, without
/// those covered by another (`image/png` beside `image/*`), and `*/*` stands alone.
/// Printing ([`Display`](fmt::Display)) gives the canonical form, which parses back to
/// the same value.
///
/// ```
/// use atsession::oauth::scope::{Audience, Scope};
///
/// let s: Scope = "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview".parse().unwrap();
/// assert_eq!(s, Scope::Rpc {
///     lxm: vec!["app.bsky.feed.getTimeline".into()],
///     aud: Audience::Service("did:web:api.bsky.app#bsky_appview".into()),
/// });
/// // Equivalent spellings print the same.
/// let t: Scope = "repo?collection=b.example.x&collection=a.example.x&action=delete&action=create".parse().unwrap();
/// assert_eq!(t.to_string(), "repo?collection=a.example.x&collection=b.example.x&action=create&action=delete");
/// assert_eq!("repo:a.example.x?action=create&action=update&action=delete".parse::<Scope>().unwrap().to_string(), "repo:a.example.x");
/// // A future resource is kept as it is.
/// assert_eq!("space:x?y=1".parse::<Scope>().unwrap(), Scope::Unknown("space:x?y=1".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `atproto`.
    Atproto,
    /// `transition:generic`.
    TransitionGeneric,
    /// `transition:chat.bsky`.
    TransitionChatBsky,
    /// `transition:email`.
    TransitionEmail,
    /// `repo:`: writing records.
    Repo {
        /// Collection NSIDs, or `["*"]` for all.
        collection: Vec<String>,
        /// The actions allowed.
        actions: RepoActions,
    },
    /// `rpc:`: calling methods on a service.
    Rpc {
        /// Method NSIDs, or `["*"]` for all.
        lxm: Vec<String>,
        /// The service.
        aud: Audience,
    },
    /// `blob:`: uploading blobs.
    Blob {
        /// MIME types and patterns (`image/png`, `image/*`, `*/*`).
        accept: Vec<String>,
    },
    /// `account:`: account control.
    Account {
        /// What is controlled.
        attr: AccountAttr,
        /// How much.
        action: AccountAction,
    },
    /// `identity:`: identity control.
    Identity {
        /// What is controlled.
        attr: IdentityAttr,
    },
    /// `include:`: a permission set.
    Include {
        /// The permission set's NSID.
        nsid: String,
        /// The audience its `rpc` permissions may inherit.
        aud: Option<String>,
    },
    /// A scope of a form not known here, kept as it was written. Permits nothing.
    Unknown(String),
}

impl Scope {
    /// Parses one scope strictly: a malformed scope of a known resource is an error; an
    /// unknown resource is [`Scope::Unknown`].
    ///
    /// ```
    /// use atsession::oauth::scope::{Scope, ScopeError};
    ///
    /// assert!(matches!(Scope::parse("repo:app.bsky.*"), Err(ScopeError::PartialWildcard { .. })));
    /// assert!(matches!(Scope::parse("rpc:app.bsky.feed.getTimeline"), Err(ScopeError::RpcWithoutAud { .. })));
    /// assert!(matches!(Scope::parse("rpc:*?aud=*"), Err(ScopeError::RpcWildcards { .. })));
    /// assert_eq!(Scope::parse("identity:*").unwrap().to_string(), "identity:*");
    /// ```
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        check_chars(s)?;
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        if let Some(position) = s.find(' ') {
            return Err(ScopeError::Space { position });
        }
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::ScopeTooLong {
                len: s.len(),
                max: MAX_SCOPE_LEN,
            });
        }
        Self::parse_checked(s)
    }

    /// Parses a scope whose characters and length were checked.
    pub(super) fn parse_checked(s: &str) -> Result<Self, ScopeError> {
        match s {
            "atproto" => return Ok(Self::Atproto),
            "transition:generic" => return Ok(Self::TransitionGeneric),
            "transition:chat.bsky" => return Ok(Self::TransitionChatBsky),
            "transition:email" => return Ok(Self::TransitionEmail),
            _ => {}
        }
        let x = Syntax::split(s)?;
        match x.resource {
            "repo" => {
                x.only(&["collection", "action"])?;
                let collection = x.nsids("collection")?;
                let actions = x.named("action");
                let actions = if actions.is_empty() {
                    RepoActions::ALL
                } else {
                    let mut v = Vec::new();
                    for a in actions {
                        v.push(
                            RepoAction::parse(a).ok_or_else(|| ScopeError::InvalidValue {
                                scope: x.scope(),
                                name: "action".into(),
                                value: cut(a),
                            })?,
                        );
                    }
                    RepoActions::of(&v)
                };
                Ok(Self::Repo {
                    collection,
                    actions,
                })
            }
            "rpc" => {
                x.only(&["lxm", "aud"])?;
                let lxm = x.nsids("lxm")?;
                let aud = match x.single("aud")? {
                    None => return Err(ScopeError::RpcWithoutAud { scope: x.scope() }),
                    Some("*") => Audience::Any,
                    Some(a) if is_did_service_ref(a) => Audience::Service(a.to_owned()),
                    Some(a) => {
                        return Err(if a.contains('*') {
                            ScopeError::PartialWildcard {
                                scope: x.scope(),
                                value: cut(a),
                            }
                        } else {
                            ScopeError::InvalidAudience {
                                scope: x.scope(),
                                value: cut(a),
                            }
                        });
                    }
                };
                if aud == Audience::Any && lxm == ["*"] {
                    return Err(ScopeError::RpcWildcards { scope: x.scope() });
                }
                Ok(Self::Rpc { lxm, aud })
            }
            "blob" => {
                x.only(&["accept"])?;
                let mut accept = Vec::new();
                for a in x.positional_values("accept")? {
                    let a = a.to_ascii_lowercase();
                    match check_accept(&a) {
                        AcceptCheck::Ok => accept.push(a),
                        AcceptCheck::PartialWildcard => {
                            return Err(ScopeError::PartialWildcard {
                                scope: x.scope(),
                                value: cut(&a),
                            });
                        }
                        AcceptCheck::Invalid => {
                            return Err(ScopeError::InvalidMime {
                                scope: x.scope(),
                                value: cut(&a),
                            });
                        }
                    }
                }
                Ok(Self::Blob {
                    accept: normalize_accept(accept),
                })
            }
            "account" => {
                x.only(&["attr", "action"])?;
                let attr = x.positional_single("attr")?;
                let attr = AccountAttr::parse(&attr).ok_or_else(|| ScopeError::InvalidValue {
                    scope: x.scope(),
                    name: "attr".into(),
                    value: cut(&attr),
                })?;
                let mut action = AccountAction::Read;
                for a in x.named("action") {
                    let a = AccountAction::parse(a).ok_or_else(|| ScopeError::InvalidValue {
                        scope: x.scope(),
                        name: "action".into(),
                        value: cut(a),
                    })?;
                    action = action.max(a);
                }
                Ok(Self::Account { attr, action })
            }
            "identity" => {
                x.only(&["attr"])?;
                let attr = x.positional_single("attr")?;
                let attr = match attr.as_str() {
                    "handle" => IdentityAttr::Handle,
                    "*" => IdentityAttr::Any,
                    other => {
                        return Err(ScopeError::InvalidValue {
                            scope: x.scope(),
                            name: "attr".into(),
                            value: cut(other),
                        });
                    }
                };
                Ok(Self::Identity { attr })
            }
            "include" => {
                x.only(&["nsid", "aud"])?;
                let nsid = x.positional_single("nsid")?;
                if !is_nsid(&nsid) {
                    return Err(if nsid.contains('*') {
                        ScopeError::PartialWildcard {
                            scope: x.scope(),
                            value: cut(&nsid),
                        }
                    } else {
                        ScopeError::InvalidNsid {
                            scope: x.scope(),
                            value: cut(&nsid),
                        }
                    });
                }
                let aud = match x.single("aud")? {
                    None => None,
                    Some(a) if is_did_service_ref(a) => Some(a.to_owned()),
                    Some(a) => {
                        return Err(ScopeError::InvalidAudience {
                            scope: x.scope(),
                            value: cut(a),
                        });
                    }
                };
                Ok(Self::Include { nsid, aud })
            }
            _ => Ok(Self::Unknown(s.to_owned())),
        }
    }

    /// Whether this is a permission this code understands (not [`Scope::Unknown`]).
    #[must_use]
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }

    /// The scope a call needs to write a record: `repo:<collection>?action=<action>`, the
    /// form the PDS names in its `ScopeMissingError`.
    ///
    /// ```
    /// use atsession::oauth::scope::{RepoAction, Scope};
    /// assert_eq!(
    ///     Scope::repo_needed("app.bsky.feed.post", RepoAction::Create).to_string(),
    ///     "repo:app.bsky.feed.post?action=create"
    /// );
    /// ```
    #[must_use]
    pub fn repo_needed(collection: &str, action: RepoAction) -> Self {
        Self::Repo {
            collection: vec![collection.to_owned()],
            actions: RepoActions::of(&[action]),
        }
    }

    /// The scope a call needs to call `lxm` on `aud`.
    ///
    /// ```
    /// use atsession::oauth::scope::Scope;
    /// assert_eq!(
    ///     Scope::rpc_needed("app.bsky.feed.getTimeline", "did:web:api.bsky.app#bsky_appview").to_string(),
    ///     "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"
    /// );
    /// ```
    #[must_use]
    pub fn rpc_needed(lxm: &str, aud: &str) -> Self {
        Self::Rpc {
            lxm: vec![lxm.to_owned()],
            aud: if aud == "*" {
                Audience::Any
            } else {
                Audience::Service(aud.to_owned())
            },
        }
    }

    /// The scope a call needs to upload a blob of type `mime`.
    ///
    /// ```
    /// use atsession::oauth::scope::Scope;
    /// assert_eq!(Scope::blob_needed("image/png").to_string(), "blob:image/png");
    /// ```
    #[must_use]
    pub fn blob_needed(mime: &str) -> Self {
        Self::Blob {
            accept: vec![mime.to_ascii_lowercase()],
        }
    }
}

pub(super) fn normalize_accept(mut accept: Vec<String>) -> Vec<String> {
    if accept.iter().any(|a| a == "*/*") {
        return vec!["*/*".into()];
    }
    accept.sort();
    accept.dedup();
    let wild: Vec<String> = accept
        .iter()
        .filter_map(|a| a.strip_suffix("/*").map(str::to_owned))
        .collect();
    accept.retain(|a| {
        a.ends_with("/*")
            || !a
                .split_once('/')
                .is_some_and(|(t, _)| wild.iter().any(|w| w == t))
    });
    accept
}

pub(super) fn write_list(out: &mut String, name: &str, values: &[String], first: &mut bool) {
    for v in values {
        out.push(if *first { '?' } else { '&' });
        *first = false;
        out.push_str(name);
        out.push('=');
        encode(v, false, out);
    }
}

pub(super) fn write_resource(
    out: &mut String,
    resource: &str,
    positional_name: &str,
    values: &[String],
) -> bool {
    out.push_str(resource);
    if let [one] = values {
        out.push(':');
        encode(one, true, out);
        true
    } else {
        let mut first = true;
        write_list(out, positional_name, values, &mut first);
        first
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self {
            Self::Atproto => out.push_str("atproto"),
            Self::TransitionGeneric => out.push_str("transition:generic"),
            Self::TransitionChatBsky => out.push_str("transition:chat.bsky"),
            Self::TransitionEmail => out.push_str("transition:email"),
            Self::Repo {
                collection,
                actions,
            } => {
                let mut first = write_resource(&mut out, "repo", "collection", collection);
                if !actions.is_all() {
                    let a: Vec<String> = actions.iter().map(|a| a.as_str().to_owned()).collect();
                    write_list(&mut out, "action", &a, &mut first);
                }
            }
            Self::Rpc { lxm, aud } => {
                let mut first = write_resource(&mut out, "rpc", "lxm", lxm);
                write_list(&mut out, "aud", &[aud.as_str().to_owned()], &mut first);
            }
            Self::Blob { accept } => {
                write_resource(&mut out, "blob", "accept", accept);
            }
            Self::Account { attr, action } => {
                let mut first =
                    write_resource(&mut out, "account", "attr", &[attr.as_str().into()]);
                if *action != AccountAction::Read {
                    write_list(&mut out, "action", &[action.as_str().into()], &mut first);
                }
            }
            Self::Identity { attr } => {
                write_resource(&mut out, "identity", "attr", &[attr.as_str().into()]);
            }
            Self::Include { nsid, aud } => {
                let mut first =
                    write_resource(&mut out, "include", "nsid", std::slice::from_ref(nsid));
                if let Some(a) = aud {
                    write_list(&mut out, "aud", std::slice::from_ref(a), &mut first);
                }
            }
            Self::Unknown(s) => out.push_str(s),
        }
        f.write_str(&out)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Refuses control characters and anything outside printable ASCII (space allowed).
pub(super) fn check_chars(s: &str) -> Result<(), ScopeError> {
    for (position, b) in s.bytes().enumerate() {
        if b < 0x20 || b == 0x7f {
            return Err(ScopeError::ControlCharacter { position });
        }
        if b > 0x7f {
            return Err(ScopeError::NonAscii { position });
        }
    }
    Ok(())
}
