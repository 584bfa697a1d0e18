//! atproto permission scopes: a typed model of every scope form of the
//! [permission spec](https://atproto.com/specs/permission), parsed, validated, normalised
//! and printed with the grammar and the matching rules of the reference implementation
//! (`@atproto/oauth-scopes`), and the questions an app asks of a grant: may it create a
//! record in this collection, call this method on this service, upload this MIME type.
//!
//! # Scope string syntax
//!
//! `resource[:positional][?name=value&name=value…]`: the resource name runs to the first
//! `:` or `?`; the positional part (percent-decoded) stands for one parameter of the
//! resource; the query holds named parameters (form-encoded), repeated for arrays. A
//! parameter may not be both positional and named, and a resource refuses parameters it
//! does not know.
//!
//! | form | meaning |
//! |---|---|
//! | `atproto` | required in every request |
//! | `transition:generic` | everything but `chat.bsky.*` and account/identity control |
//! | `transition:chat.bsky` | `chat.bsky.*` methods |
//! | `transition:email` | reading the account email |
//! | `repo:<collection>[?action=create&action=update&action=delete]` | writing records; all three actions by default; `*` for every collection |
//! | `rpc:<lxm>?aud=<did>%23<service>` (or `aud=*`) | calling a method on a service; not both wildcards |
//! | `blob:<mime pattern>` | uploading blobs: `image/png`, `image/*`, `*/*` |
//! | `account:<email\|repo\|status>[?action=read\|manage]` | account control; `read` by default, `manage` includes `read` |
//! | `identity:<handle\|*>` | handle or full identity control |
//! | `include:<nsid>[?aud=<did>%23<service>]` | a permission set (a lexicon), expanded by the server |
//!
//! Several collections, methods or MIME types are written with named parameters:
//! `repo?collection=a.b.c&collection=a.b.d`. Partial wildcards (`com.example.*`) are not
//! allowed. Scope forms this code does not know (a future resource) are kept as
//! [`Scope::Unknown`] and passed through untouched; they permit nothing here.
//!
//! # Strict and lenient parsing
//!
//! [`ScopeSet::from_str`](std::str::FromStr) is strict: a malformed `repo:`/`rpc:`/…
//! scope is a [`ScopeError`]. What a server *grants* is read with [`ScopeSet::parse_granted`],
//! which never refuses a malformed scope (it is kept as [`Scope::Unknown`] and permits
//! nothing), so a server's answer can never make a session unusable. Both refuse hostile
//! input (overlong, too many scopes, control characters) with a typed error, never a panic.
//!
//! ```
//! use atsession::oauth::scope::{RepoAction, ScopeSet};
//!
//! let granted: ScopeSet = "atproto repo:com.example.note?action=create blob:image/*".parse().unwrap();
//! assert!(granted.allows_repo("com.example.note", RepoAction::Create));
//! assert!(!granted.allows_repo("com.example.note", RepoAction::Delete));
//! assert!(granted.allows_blob("image/png"));
//! assert!(!granted.allows_blob("video/mp4"));
//! // What is missing, in the form the PDS names it:
//! assert_eq!(
//!     granted.check_repo("app.bsky.feed.post", RepoAction::Create).unwrap_err().scope,
//!     "repo:app.bsky.feed.post?action=create"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The longest scope string accepted (64 KiB).
pub const MAX_SCOPE_STRING_LEN: usize = 64 * 1024;
/// The most scopes in one scope string.
pub const MAX_SCOPES: usize = 512;
/// The longest single scope (16 KiB).
pub const MAX_SCOPE_LEN: usize = 16 * 1024;

/// Why a scope or a scope string was refused. Every variant names what was wrong; a scope
/// quoted in an error is cut to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope string is longer than [`MAX_SCOPE_STRING_LEN`].
    #[error("the scope string is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// One scope is longer than [`MAX_SCOPE_LEN`].
    #[error("a scope is {len} bytes long; at most {max} are accepted")]
    ScopeTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_SCOPES`] scopes.
    #[error("the scope string holds more than {max} scopes")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A control character (tab, newline, NUL, DEL, …) at this byte offset. Scopes are
    /// separated by single spaces.
    #[error("a control character at byte {position} of the scope string")]
    ControlCharacter {
        /// The byte offset.
        position: usize,
    },
    /// A character outside printable ASCII at this byte offset.
    #[error("a character outside printable ASCII at byte {position} of the scope string")]
    NonAscii {
        /// The byte offset.
        position: usize,
    },
    /// A space inside what should be one scope.
    #[error("a space at byte {position} of what should be one scope")]
    Space {
        /// The byte offset.
        position: usize,
    },
    /// An empty scope: two spaces in a row, or a leading or trailing space.
    #[error("an empty scope (two spaces in a row, or a leading or trailing space)")]
    Empty,
    /// Malformed percent-encoding.
    #[error("`{scope}`: malformed percent-encoding")]
    Encoding {
        /// The scope.
        scope: String,
    },
    /// A parameter the resource does not have.
    #[error("`{scope}`: unknown parameter `{name}`")]
    UnknownParameter {
        /// The scope.
        scope: String,
        /// The parameter.
        name: String,
    },
    /// A single-valued parameter given more than once.
    #[error("`{scope}`: the parameter `{name}` is repeated")]
    RepeatedParameter {
        /// The scope.
        scope: String,
        /// The parameter.
        name: String,
    },
    /// A parameter given both in the positional part and as a named parameter.
    #[error("`{scope}`: `{name}` is given both positionally and as a named parameter")]
    PositionalAndNamed {
        /// The scope.
        scope: String,
        /// The parameter.
        name: String,
    },
    /// A required parameter is missing.
    #[error("`{scope}`: the parameter `{name}` is required")]
    MissingParameter {
        /// The scope.
        scope: String,
        /// The parameter.
        name: String,
    },
    /// An `rpc:` scope without `aud` (write `aud=*` for any service).
    #[error("`{scope}`: an rpc scope needs `aud` (a DID service reference, or `*`)")]
    RpcWithoutAud {
        /// The scope.
        scope: String,
    },
    /// `rpc:*?aud=*`: the method and the audience may not both be wildcards.
    #[error("`{scope}`: the method and the audience may not both be `*`")]
    RpcWildcards {
        /// The scope.
        scope: String,
    },
    /// A wildcard that is not the whole value (`com.example.*`, `*/png`, `ima*/*`).
    #[error("`{scope}`: partial wildcard `{value}` (only `*` alone is allowed)")]
    PartialWildcard {
        /// The scope.
        scope: String,
        /// The value.
        value: String,
    },
    /// Not an NSID.
    #[error("`{scope}`: `{value}` is not an NSID")]
    InvalidNsid {
        /// The scope.
        scope: String,
        /// The value.
        value: String,
    },
    /// Not a DID service reference (`did:web:api.example.com#svc`).
    #[error("`{scope}`: `{value}` is not a DID service reference (did:…#service)")]
    InvalidAudience {
        /// The scope.
        scope: String,
        /// The value.
        value: String,
    },
    /// Not a MIME type or MIME pattern.
    #[error("`{scope}`: `{value}` is not a MIME type or pattern")]
    InvalidMime {
        /// The scope.
        scope: String,
        /// The value.
        value: String,
    },
    /// A value the parameter does not take (an unknown action or attribute).
    #[error("`{scope}`: `{value}` is not a valid `{name}`")]
    InvalidValue {
        /// The scope.
        scope: String,
        /// The parameter.
        name: String,
        /// The value.
        value: String,
    },
}

fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

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

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn bit(self) -> u8 {
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

    fn parse(s: &str) -> Option<Self> {
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

    fn parse(s: &str) -> Option<Self> {
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

// ---------------------------------------------------------------------------------------
// Syntax checks

/// Whether `s` is an NSID (`com.example.fooBar`), with the rules of `@atproto/syntax`: at
/// most 317 characters, at least three segments, domain segments of letters, digits and
/// inner hyphens (the first starting with a letter), a name segment of letters and digits
/// starting with a letter.
///
/// ```
/// use atsession::oauth::scope::is_nsid;
///
/// assert!(is_nsid("app.bsky.feed.post"));
/// assert!(!is_nsid("app.bsky.*"));
/// assert!(!is_nsid("app.bsky"));
/// assert!(!is_nsid("app.bsky.feed.get-x"));
/// ```
#[must_use]
pub fn is_nsid(s: &str) -> bool {
    if s.len() < 5 || s.len() > 253 + 1 + 63 {
        return false;
    }
    let segs: Vec<&str> = s.split('.').collect();
    if segs.len() < 3 {
        return false;
    }
    let (name, domain) = segs.split_last().unwrap_or((&"", &[]));
    let domain_ok = domain.iter().enumerate().all(|(i, seg)| {
        let b = seg.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && (i > 0 || b[0].is_ascii_alphabetic())
    });
    let n = name.as_bytes();
    domain_ok
        && !n.is_empty()
        && n.len() <= 63
        && n[0].is_ascii_alphabetic()
        && n.iter().all(u8::is_ascii_alphanumeric)
}

/// Whether `s` is an atproto DID service reference, as the reference implementation
/// reads one: an atproto DID, `#`, and a non-empty URI fragment
/// (`did:web:api.bsky.app#bsky_appview`). The DID is a `did:plc:` of 24 base32 characters,
/// or a host-only `did:web:` (a port, `%3A…`, only for `localhost`).
///
/// ```
/// use atsession::oauth::scope::is_did_service_ref;
///
/// assert!(is_did_service_ref("did:web:api.bsky.app#bsky_appview"));
/// assert!(is_did_service_ref("did:web:localhost%3A2583#atproto_pds"));
/// assert!(!is_did_service_ref("did:web:api.bsky.app"));
/// assert!(!is_did_service_ref("did:web:example.com%3A8443#svc"));
/// assert!(!is_did_service_ref("did:web:example.com:path#svc"));
/// assert!(!is_did_service_ref("did:key:zQ3sh#x"));
/// ```
#[must_use]
pub fn is_did_service_ref(s: &str) -> bool {
    let Some((did, fragment)) = s.split_once('#') else {
        return false;
    };
    !fragment.is_empty() && is_uri_fragment(fragment) && is_atproto_did(did)
}

fn is_atproto_did(did: &str) -> bool {
    if let Some(id) = did.strip_prefix("did:plc:") {
        return id.len() == 24 && id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
    }
    let Some(host) = did.strip_prefix("did:web:") else {
        return false;
    };
    if host.is_empty() || host.contains(':') || crate::syntax::Did::new(did).is_err() {
        return false;
    }
    let (name, port) = match host.split_once("%3A") {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let port_ok = match port {
        None => true,
        Some(p) => name == "localhost" && !p.is_empty() && p.parse::<u16>().is_ok(),
    };
    port_ok
        && !name.contains('%')
        && url::Url::parse(&format!("https://{name}/")).is_ok_and(|u| u.host_str().is_some())
}

/// RFC 3986 `fragment`: unreserved, percent-encoded, sub-delims, `:`, `@`, `/`, `?`.
fn is_uri_fragment(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_mime_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b)
}

/// Whether `s` is a concrete MIME type (`image/png`: one slash, no wildcard).
#[must_use]
pub fn is_mime(s: &str) -> bool {
    match s.split_once('/') {
        Some((t, sub)) => {
            !t.is_empty()
                && !sub.is_empty()
                && t.len() <= 127
                && sub.len() <= 127
                && t.bytes().all(is_mime_char)
                && sub.bytes().all(is_mime_char)
        }
        None => false,
    }
}

enum AcceptCheck {
    Ok,
    PartialWildcard,
    Invalid,
}

fn check_accept(s: &str) -> AcceptCheck {
    if s == "*/*" {
        return AcceptCheck::Ok;
    }
    if let Some(t) = s.strip_suffix("/*") {
        return if is_mime(&format!("{t}/x")) {
            AcceptCheck::Ok
        } else if t.contains('*') {
            AcceptCheck::PartialWildcard
        } else {
            AcceptCheck::Invalid
        };
    }
    if is_mime(s) {
        AcceptCheck::Ok
    } else if s.contains('*') && s.matches('/').count() == 1 {
        AcceptCheck::PartialWildcard
    } else {
        AcceptCheck::Invalid
    }
}

fn accept_matches(accept: &str, mime: &str) -> bool {
    if accept == "*/*" {
        return true;
    }
    match accept.strip_suffix('*') {
        Some(prefix) => mime.starts_with(prefix),
        None => accept == mime,
    }
}

// ---------------------------------------------------------------------------------------
// The generic syntax

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` as a space when `form`); `None` when malformed or not UTF-8.
fn decode(s: &str, form: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = hex(*b.get(i + 1)?)?;
                let l = hex(*b.get(i + 2)?)?;
                out.push(h * 16 + l);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes `s` for a scope string: letters, digits, `-._*` and `:/,@` stay (and `+`
/// in the positional part, where it is not a space); everything else is `%XX`.
fn encode(s: &str, positional: bool, out: &mut String) {
    use fmt::Write as _;
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b"-._*:/,@".contains(&b)
            || (positional && b"+~!'()".contains(&b));
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A scope split into its resource, positional part and named parameters.
struct Syntax<'a> {
    raw: &'a str,
    resource: &'a str,
    positional: Option<String>,
    params: Vec<(String, String)>,
}

impl<'a> Syntax<'a> {
    fn split(raw: &'a str) -> Result<Self, ScopeError> {
        let q = raw.find('?');
        let c = raw.find(':');
        let end = match (q, c) {
            (Some(q), Some(c)) => q.min(c),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => raw.len(),
        };
        let resource = &raw[..end];
        let enc = || ScopeError::Encoding { scope: cut(raw) };
        let positional = match (c, q) {
            (Some(c), None) => Some(decode(&raw[c + 1..], false).ok_or_else(enc)?),
            (Some(c), Some(q)) if c < q => Some(decode(&raw[c + 1..q], false).ok_or_else(enc)?),
            _ => None,
        };
        let mut params = Vec::new();
        if let Some(q) = q {
            let query = &raw[q + 1..];
            if !query.is_empty() {
                for pair in query.split('&') {
                    if pair.is_empty() {
                        continue;
                    }
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    params.push((
                        decode(k, true).ok_or_else(enc)?,
                        decode(v, true).ok_or_else(enc)?,
                    ));
                }
            }
        }
        Ok(Self {
            raw,
            resource,
            positional,
            params,
        })
    }

    fn scope(&self) -> String {
        cut(self.raw)
    }

    /// Refuses parameters not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), ScopeError> {
        match self
            .params
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(ScopeError::UnknownParameter {
                scope: self.scope(),
                name: cut(k),
            }),
            None => Ok(()),
        }
    }

    fn named(&self, name: &str) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A single-valued parameter (not positional).
    fn single(&self, name: &str) -> Result<Option<&str>, ScopeError> {
        let v = self.named(name);
        match v.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(ScopeError::RepeatedParameter {
                scope: self.scope(),
                name: name.into(),
            }),
        }
    }

    /// The values of the positional parameter `name`: positional or named, not both.
    fn positional_values(&self, name: &str) -> Result<Vec<String>, ScopeError> {
        let named = self.named(name);
        match (&self.positional, named.is_empty()) {
            (Some(_), false) => Err(ScopeError::PositionalAndNamed {
                scope: self.scope(),
                name: name.into(),
            }),
            (Some(p), true) => Ok(vec![p.clone()]),
            (None, false) => Ok(named.into_iter().map(str::to_owned).collect()),
            (None, true) => Err(ScopeError::MissingParameter {
                scope: self.scope(),
                name: name.into(),
            }),
        }
    }

    fn positional_single(&self, name: &str) -> Result<String, ScopeError> {
        let v = self.positional_values(name)?;
        if v.len() > 1 {
            return Err(ScopeError::RepeatedParameter {
                scope: self.scope(),
                name: name.into(),
            });
        }
        Ok(v.into_iter().next().unwrap_or_default())
    }

    /// NSIDs or `*`, normalised: sorted, deduplicated, `["*"]` if a wildcard is among them.
    fn nsids(&self, name: &str) -> Result<Vec<String>, ScopeError> {
        let mut v = self.positional_values(name)?;
        for x in &v {
            if x != "*" && !is_nsid(x) {
                return Err(if x.contains('*') {
                    ScopeError::PartialWildcard {
                        scope: self.scope(),
                        value: cut(x),
                    }
                } else {
                    ScopeError::InvalidNsid {
                        scope: self.scope(),
                        value: cut(x),
                    }
                });
            }
        }
        if v.iter().any(|x| x == "*") {
            return Ok(vec!["*".into()]);
        }
        v.sort();
        v.dedup();
        Ok(v)
    }
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
    fn parse_checked(s: &str) -> Result<Self, ScopeError> {
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

fn normalize_accept(mut accept: Vec<String>) -> Vec<String> {
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

fn write_list(out: &mut String, name: &str, values: &[String], first: &mut bool) {
    for v in values {
        out.push(if *first { '?' } else { '&' });
        *first = false;
        out.push_str(name);
        out.push('=');
        encode(v, false, out);
    }
}

fn write_resource(
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
fn check_chars(s: &str) -> Result<(), ScopeError> {
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

// ---------------------------------------------------------------------------------------
// Scope sets

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

// ---------------------------------------------------------------------------------------
// What a PDS refuses, and what a call needs

/// A scope a call needs and the grant does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the grant lacks the scope `{scope}`")]
pub struct ScopeMissing {
    /// The missing scope, in the form the PDS names it
    /// (`repo:app.bsky.feed.post?action=create`).
    pub scope: String,
}

impl ScopeMissing {
    fn new(scope: Scope) -> Self {
        Self {
            scope: scope.to_string(),
        }
    }
}

/// The scope a PDS answer says is missing: a `403` whose XRPC error is
/// `ScopeMissingError`, with the message `Missing required scope "<scope>"`. `None` for
/// any other answer; `Some("")` when the PDS did not name the scope.
///
/// ```
/// use atsession::oauth::scope::scope_missing;
///
/// let msg = r#"Missing required scope "repo:app.bsky.feed.post?action=create""#;
/// assert_eq!(
///     scope_missing(403, "ScopeMissingError", Some(msg)).as_deref(),
///     Some("repo:app.bsky.feed.post?action=create")
/// );
/// assert_eq!(scope_missing(400, "ScopeMissingError", Some(msg)), None);
/// assert_eq!(scope_missing(403, "Forbidden", Some(msg)), None);
/// assert_eq!(scope_missing(403, "ScopeMissingError", None).as_deref(), Some(""));
/// ```
#[must_use]
pub fn scope_missing(status: u16, error: &str, message: Option<&str>) -> Option<String> {
    if status != 403 || error != "ScopeMissingError" {
        return None;
    }
    let named = message
        .and_then(|m| m.strip_prefix("Missing required scope \""))
        .and_then(|m| m.strip_suffix('"'))
        .filter(|s| s.len() <= MAX_SCOPE_LEN && check_chars(s).is_ok() && !s.contains(' '));
    Some(named.map(str::to_owned).unwrap_or_default())
}

/// What the grant `granted` plainly does not permit for an XRPC call to `nsid`, judged
/// before sending it: `createRecord`, `putRecord`, `deleteRecord` and `applyWrites` by the
/// collections in their JSON `input` (as the PDS checks them), `uploadBlob` by its
/// `content_type`, and any other method sent with an `atproto-proxy` header (`proxy`) as
/// an `rpc` call on that service. Anything else is left to the PDS (`Ok`), and so is every
/// call when the grant holds a scope whose reach is not known here (an `include:` the
/// server did not expand, or a [`Scope::Unknown`] form): the pre-check never refuses what
/// the server might permit.
///
/// ```
/// use atsession::oauth::scope::{ScopeSet, precheck_xrpc};
/// use serde_json::json;
///
/// let granted: ScopeSet = "atproto repo:com.example.note?action=create".parse().unwrap();
/// let note = json!({"repo": "did:plc:x", "collection": "com.example.note", "record": {}});
/// assert!(precheck_xrpc(&granted, "com.atproto.repo.createRecord", Some(&note), None, None).is_ok());
/// let post = json!({"repo": "did:plc:x", "collection": "app.bsky.feed.post", "record": {}});
/// assert_eq!(
///     precheck_xrpc(&granted, "com.atproto.repo.createRecord", Some(&post), None, None).unwrap_err().scope,
///     "repo:app.bsky.feed.post?action=create"
/// );
/// // putRecord needs both create and update, as the PDS checks.
/// assert!(precheck_xrpc(&granted, "com.atproto.repo.putRecord", Some(&note), None, None).is_err());
/// let proxied = precheck_xrpc(&granted, "app.bsky.feed.getTimeline", None, Some("did:web:api.bsky.app#bsky_appview"), None);
/// assert_eq!(proxied.unwrap_err().scope, "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview");
/// // An unexpanded permission set might permit it: left to the PDS.
/// let with_set: ScopeSet = "atproto include:app.bsky.authFullApp".parse().unwrap();
/// assert!(precheck_xrpc(&with_set, "com.atproto.repo.createRecord", Some(&post), None, None).is_ok());
/// ```
pub fn precheck_xrpc(
    granted: &ScopeSet,
    nsid: &str,
    input: Option<&serde_json::Value>,
    proxy: Option<&str>,
    content_type: Option<&str>,
) -> Result<(), ScopeMissing> {
    if granted
        .iter()
        .any(|s| matches!(s, Scope::Include { .. } | Scope::Unknown(_)))
    {
        return Ok(());
    }
    let collection = || {
        input
            .and_then(|v| v.get("collection"))
            .and_then(|c| c.as_str())
    };
    match nsid {
        "com.atproto.repo.createRecord" => match collection() {
            Some(c) => granted.check_repo(c, RepoAction::Create),
            None => Ok(()),
        },
        "com.atproto.repo.putRecord" => match collection() {
            Some(c) => granted
                .check_repo(c, RepoAction::Create)
                .and_then(|()| granted.check_repo(c, RepoAction::Update)),
            None => Ok(()),
        },
        "com.atproto.repo.deleteRecord" => match collection() {
            Some(c) => granted.check_repo(c, RepoAction::Delete),
            None => Ok(()),
        },
        "com.atproto.repo.applyWrites" => {
            let writes = input
                .and_then(|v| v.get("writes"))
                .and_then(|w| w.as_array())
                .map(Vec::as_slice)
                .unwrap_or_default();
            for w in writes {
                let action = match w.get("$type").and_then(|t| t.as_str()) {
                    Some("com.atproto.repo.applyWrites#create") => RepoAction::Create,
                    Some("com.atproto.repo.applyWrites#update") => RepoAction::Update,
                    Some("com.atproto.repo.applyWrites#delete") => RepoAction::Delete,
                    _ => continue,
                };
                if let Some(c) = w.get("collection").and_then(|c| c.as_str()) {
                    granted.check_repo(c, action)?;
                }
            }
            Ok(())
        }
        "com.atproto.repo.uploadBlob" => match content_type {
            Some(ct) => {
                let mime = ct.split(';').next().unwrap_or_default().trim();
                granted.check_blob(mime)
            }
            None => Ok(()),
        },
        _ => match proxy {
            Some(aud) => granted.check_rpc(nsid, aud),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Scope {
        Scope::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canonical_forms() {
        for (input, canonical) in [
            ("atproto", "atproto"),
            ("repo:app.bsky.feed.post", "repo:app.bsky.feed.post"),
            (
                "repo?collection=app.bsky.feed.post",
                "repo:app.bsky.feed.post",
            ),
            ("repo:*?action=delete", "repo:*?action=delete"),
            ("repo?collection=a.b.c&collection=*", "repo:*"),
            (
                "repo:a.b.c?action=update&action=create",
                "repo:a.b.c?action=create&action=update",
            ),
            ("rpc:a.b.c?aud=*", "rpc:a.b.c?aud=*"),
            (
                "rpc?lxm=*&aud=did:web:api.example.com%23svc_appview",
                "rpc:*?aud=did:web:api.example.com%23svc_appview",
            ),
            (
                "rpc?aud=*&lxm=b.b.c&lxm=a.b.c",
                "rpc?lxm=a.b.c&lxm=b.b.c&aud=*",
            ),
            ("blob:*/*", "blob:*/*"),
            (
                "blob?accept=video/*&accept=text/html",
                "blob?accept=text/html&accept=video/*",
            ),
            ("blob?accept=image/png&accept=image/*", "blob:image/*"),
            ("blob?accept=IMAGE/PNG&accept=*/*", "blob:*/*"),
            ("account:email", "account:email"),
            ("account:email?action=read", "account:email"),
            ("account:repo?action=manage", "account:repo?action=manage"),
            (
                "account?action=manage&attr=repo",
                "account:repo?action=manage",
            ),
            ("identity:*", "identity:*"),
            ("identity:*?", "identity:*"),
            ("identity?attr=handle", "identity:handle"),
            (
                "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat",
                "include:app.example.authFull?aud=did:web:api.example.com%23svc_chat",
            ),
            (
                "include:app.example.authFull",
                "include:app.example.authFull",
            ),
        ] {
            assert_eq!(p(input).to_string(), canonical, "{input}");
            assert_eq!(p(canonical), p(input), "{canonical}");
        }
    }

    #[test]
    fn refusals() {
        use ScopeError as E;
        type Check = fn(&E) -> bool;
        let cases: &[(&str, Check)] = &[
            ("repo", |e| matches!(e, E::MissingParameter { .. })),
            ("repo:", |e| matches!(e, E::InvalidNsid { .. })),
            ("repo?action=create", |e| {
                matches!(e, E::MissingParameter { .. })
            }),
            ("repo:com.example.*", |e| {
                matches!(e, E::PartialWildcard { .. })
            }),
            ("repo:a.b.c?collection=a.b.d", |e| {
                matches!(e, E::PositionalAndNamed { .. })
            }),
            ("repo:a.b.c?action=read", |e| {
                matches!(e, E::InvalidValue { .. })
            }),
            ("repo:a.b.c?foo=1", |e| {
                matches!(e, E::UnknownParameter { .. })
            }),
            ("rpc:a.b.c", |e| matches!(e, E::RpcWithoutAud { .. })),
            ("rpc:*?aud=*", |e| matches!(e, E::RpcWildcards { .. })),
            ("rpc:a.b.c?aud=did:web:x.example", |e| {
                matches!(e, E::InvalidAudience { .. })
            }),
            ("rpc:a.b.c?aud=*&aud=*", |e| {
                matches!(e, E::RepeatedParameter { .. })
            }),
            ("blob:image", |e| matches!(e, E::InvalidMime { .. })),
            ("blob:*/png", |e| matches!(e, E::PartialWildcard { .. })),
            ("blob:ima*/*", |e| matches!(e, E::PartialWildcard { .. })),
            ("account:*", |e| matches!(e, E::InvalidValue { .. })),
            ("identity:email", |e| matches!(e, E::InvalidValue { .. })),
            ("include:app.example.*", |e| {
                matches!(e, E::PartialWildcard { .. })
            }),
            ("include:a.b.c?aud=*", |e| {
                matches!(e, E::InvalidAudience { .. })
            }),
            ("repo:a%zz.b.c", |e| matches!(e, E::Encoding { .. })),
        ];
        for (s, ok) in cases {
            let e = Scope::parse(s).unwrap_err();
            assert!(ok(&e), "{s}: {e:?}");
        }
        assert!(matches!(ScopeSet::parse("atproto  repo:*"), Err(E::Empty)));
        assert!(matches!(
            ScopeSet::parse("atproto\trepo:*"),
            Err(E::ControlCharacter { position: 7 })
        ));
        assert!(matches!(
            ScopeSet::parse("repo:é"),
            Err(E::NonAscii { position: 5 })
        ));
    }

    #[test]
    fn unknown_forms_pass_through() {
        for s in [
            "resource",
            "resource:positional?key=val",
            "transition:other",
            "space:x",
        ] {
            assert_eq!(p(s), Scope::Unknown(s.into()));
            assert_eq!(p(s).to_string(), s);
        }
        let set: ScopeSet = "atproto future:thing".parse().unwrap();
        assert_eq!(set.to_string(), "atproto future:thing");
    }

    #[test]
    fn transition_semantics() {
        let g: ScopeSet = "atproto transition:generic".parse().unwrap();
        assert!(g.allows_rpc("*", "did:web:x.example#y"));
        assert!(g.allows_blob("video/mp4"));
        assert!(!g.allows_account(AccountAttr::Email, AccountAction::Read));
        assert!(!g.allows_identity(IdentityAttr::Handle));
        let c: ScopeSet = "atproto transition:chat.bsky".parse().unwrap();
        assert!(c.allows_rpc("chat.bsky.convo.getLog", "did:web:api.bsky.chat#bsky_chat"));
        assert!(!c.allows_rpc(
            "app.bsky.feed.getTimeline",
            "did:web:api.bsky.app#bsky_appview"
        ));
        let e: ScopeSet = "atproto transition:email".parse().unwrap();
        assert!(e.allows_account(AccountAttr::Email, AccountAction::Read));
        assert!(!e.allows_account(AccountAttr::Email, AccountAction::Manage));
    }

    #[test]
    fn missing_scope_detection_needs_the_exact_shape() {
        assert_eq!(
            scope_missing(
                403,
                "ScopeMissingError",
                Some("Missing required scope \"a b\"")
            )
            .as_deref(),
            Some("")
        );
        assert_eq!(
            scope_missing(403, "ScopeMissingError", Some("nope")).as_deref(),
            Some("")
        );
    }

    #[test]
    fn percent_in_values_round_trips() {
        let s = p("rpc:a.b.c?aud=did:web:localhost%253A2583%23atproto_pds");
        assert_eq!(
            s,
            Scope::Rpc {
                lxm: vec!["a.b.c".into()],
                aud: Audience::Service("did:web:localhost%3A2583#atproto_pds".into())
            }
        );
        assert_eq!(p(&s.to_string()), s);
    }
}
