//! atproto identifiers: [`Did`], [`Handle`] and [`Nsid`], validated against the atproto syntax
//! rules.
//!
//! ```
//! use atsession::syntax::{Did, Handle};
//!
//! let did: Did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz".parse().unwrap();
//! assert_eq!(did.method(), "plc");
//! let handle: Handle = "Alice.Bsky.Social".parse().unwrap();
//! assert_eq!(handle.as_str(), "alice.bsky.social"); // handles are case-insensitive
//!
//! assert!("did:PLC:x".parse::<Did>().is_err());
//! assert!("alice".parse::<Handle>().is_err());
//! assert!("app.bsky.feed.getTimeline".parse::<atsession::syntax::Nsid>().is_ok());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest DID atproto accepts.
pub const DID_MAX_LEN: usize = 2048;
/// The longest handle atproto accepts.
pub const HANDLE_MAX_LEN: usize = 253;
/// The longest NSID atproto accepts.
pub const NSID_MAX_LEN: usize = 317;

/// Why a string is not a valid DID or handle. Carries no copy of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// Not a DID: `did:<method>:<identifier>`, method in lowercase letters, identifier from
    /// `[A-Za-z0-9._:%-]`, not ending in `:` or `%`, at most 2048 characters.
    #[error("invalid DID syntax")]
    Did,
    /// Not a handle: at least two dot-separated labels of 1–63 letters, digits or hyphens
    /// (no hyphen at either end), a last label that does not start with a digit, at most
    /// 253 characters.
    #[error("invalid handle syntax")]
    Handle,
    /// Not an NSID: a domain authority (at least two segments in reverse order, at most 253
    /// characters) and a name, all separated by `.`; authority segments of 1–63 ASCII
    /// letters, digits or hyphens (no hyphen at either end, the first not starting with a
    /// digit); a name of 1–63 ASCII letters and digits, not starting with a digit; at most
    /// 317 characters in all.
    #[error("invalid NSID syntax")]
    Nsid,
}

/// The text of a [`Did`] or a [`Handle`]: kept inline when short (as nearly all are), so a
/// clone copies a few bytes and touches no reference count; shared when long.
#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    Shared(Arc<str>),
}

/// The longest text kept inline: a `did:plc:` DID is 32 bytes, most handles are shorter.
const INLINE_LEN: usize = 38;

impl Text {
    /// Short text is copied inline; only long text is allocated (once, shared).
    fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE_LEN => {
                let mut bytes = [0u8; INLINE_LEN];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Shared(s.into()),
        }
    }

    /// [`Text::new`] in ASCII lowercase.
    fn lowercase(s: &str) -> Self {
        let mut text = Self::new(s);
        match &mut text {
            Self::Inline { len, bytes } => bytes[..usize::from(*len)].make_ascii_lowercase(),
            Self::Shared(shared) => {
                if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    *shared = s.to_ascii_lowercase().into();
                }
            }
        }
        text
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            // Only ever whole strings are copied in, so this is always UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Shared(s) => s,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

/// A decentralized identifier in atproto's syntax, such as `did:plc:…` or `did:web:…`.
///
/// Invariant: the string matches atproto's DID syntax (see [`SyntaxError::Did`]).
///
/// Cheap to clone (no allocation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(Text);

impl Did {
    /// Validates a DID.
    pub fn new(s: impl AsRef<str>) -> Result<Self, SyntaxError> {
        let s = s.as_ref();
        if is_valid_did(s) {
            Ok(Self(Text::new(s)))
        } else {
            Err(SyntaxError::Did)
        }
    }

    /// The DID as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The method: `plc` in `did:plc:…`.
    #[must_use]
    pub fn method(&self) -> &str {
        self.0[4..].split(':').next().unwrap_or_default()
    }

    /// Everything after `did:<method>:`.
    #[must_use]
    pub fn identifier(&self) -> &str {
        let rest = &self.0[4..];
        rest.split_once(':').map(|(_, id)| id).unwrap_or_default()
    }
}

fn is_valid_did(s: &str) -> bool {
    if s.len() > DID_MAX_LEN {
        return false;
    }
    let Some(rest) = s.strip_prefix("did:") else {
        return false;
    };
    let Some((method, id)) = rest.split_once(':') else {
        return false;
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
    {
        return false;
    }
    !id.ends_with(':') && !id.ends_with('%')
}

/// An atproto handle, such as `alice.bsky.social`, normalized to lowercase.
///
/// Invariant: the string matches atproto's handle syntax (see [`SyntaxError::Handle`]) and is
/// lowercase.
///
/// Cheap to clone (no allocation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(Text);

impl Handle {
    /// Validates a handle and lowercases it.
    pub fn new(s: impl AsRef<str>) -> Result<Self, SyntaxError> {
        let s = s.as_ref();
        if !is_valid_handle(s) {
            return Err(SyntaxError::Handle);
        }
        Ok(Self(Text::lowercase(s)))
    }

    /// The handle as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid_handle(s: &str) -> bool {
    if s.is_empty() || s.len() > HANDLE_MAX_LEN {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // At least two labels, the last not starting with a digit.
    s.split('.').all(label_ok)
        && s.rsplit_once('.')
            .is_some_and(|(_, tld)| !tld.as_bytes()[0].is_ascii_digit())
}

/// A namespaced identifier, such as `app.bsky.feed.getTimeline`: the name of a Lexicon
/// schema, an XRPC method or a record collection ([atproto NSID
/// spec](https://atproto.com/specs/nsid)).
///
/// Invariant: the string matches atproto's NSID syntax (see [`SyntaxError::Nsid`]). The
/// text is kept as given (NSIDs are compared case-sensitively on the wire).
///
/// ```
/// use atsession::syntax::Nsid;
///
/// let nsid = Nsid::new("app.bsky.feed.getTimeline").unwrap();
/// assert_eq!(nsid.authority(), "app.bsky.feed");
/// assert_eq!(nsid.name(), "getTimeline");
/// assert!(Nsid::new("app.bsky").is_err()); // at least three segments
/// assert!(Nsid::new("app.bsky.feed.get-x").is_err()); // no hyphen in the name
/// assert!(Nsid::new("app.bsky.*").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(Text);

impl Nsid {
    /// Validates an NSID.
    pub fn new(s: impl AsRef<str>) -> Result<Self, SyntaxError> {
        let s = s.as_ref();
        if is_nsid(s) {
            Ok(Self(Text::new(s)))
        } else {
            Err(SyntaxError::Nsid)
        }
    }

    /// The NSID as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain authority, in the NSID's (reversed) order: `app.bsky.feed` in
    /// `app.bsky.feed.getTimeline`.
    #[must_use]
    pub fn authority(&self) -> &str {
        self.0.rsplit_once('.').map(|(a, _)| a).unwrap_or_default()
    }

    /// The name: `getTimeline` in `app.bsky.feed.getTimeline`.
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map(|(_, n)| n).unwrap_or_default()
    }
}

/// Whether [`Nsid::new`] accepts `s`, without making an [`Nsid`]: the one NSID rule (see
/// [`SyntaxError::Nsid`]).
///
/// ```
/// use atsession::syntax::is_nsid;
///
/// assert!(is_nsid("com.atproto.server.getSession"));
/// assert!(!is_nsid("getSession"));
/// assert!(!is_nsid("com.atproto..getSession"));
/// assert!(!is_nsid("com.atproto.server/getSession"));
/// ```
#[must_use]
pub fn is_nsid(s: &str) -> bool {
    if s.len() > NSID_MAX_LEN {
        return false;
    }
    let Some((authority, name)) = s.rsplit_once('.') else {
        return false;
    };
    let n = name.as_bytes();
    let name_ok = !n.is_empty()
        && n.len() <= 63
        && n[0].is_ascii_alphabetic()
        && n.iter().all(u8::is_ascii_alphanumeric);
    if !name_ok || authority.len() > HANDLE_MAX_LEN {
        return false;
    }
    let mut segments = 0usize;
    for (i, segment) in authority.split('.').enumerate() {
        let b = segment.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && (i > 0 || !b[0].is_ascii_digit());
        if !ok {
            return false;
        }
        segments += 1;
    }
    segments >= 2
}

macro_rules! string_type {
    ($t:ident) => {
        impl FromStr for $t {
            type Err = SyntaxError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = SyntaxError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = SyntaxError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), &*self.0)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0.to_string()
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_type!(Did);
string_type!(Handle);
string_type!(Nsid);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_texts_behave_alike() {
        let short = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        let long = format!("did:web:{}.example.com", "a".repeat(200));
        for s in [short, long.as_str()] {
            let d = Did::new(s).unwrap();
            assert_eq!(d.as_str(), s);
            assert_eq!(d.clone(), d);
            assert_eq!(String::from(d.clone()), s);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{s}\""));
            let mut set = std::collections::HashSet::new();
            set.insert(d.clone());
            assert!(set.contains(&Did::new(s).unwrap()));
        }
        assert!(Did::new(short).unwrap() < Did::new(long.as_str()).unwrap());
        let h = Handle::new(format!("{}.bsky.social", "x".repeat(60))).unwrap();
        assert_eq!(h.as_str().len(), 72);
    }

    #[test]
    fn dids() {
        for ok in [
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "did:web:example.com",
            "did:web:localhost%3A8080",
            "did:method:val:two",
            "did:m:v",
            "did:example:123456789abcdefghi",
        ] {
            assert!(Did::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "did",
            "did:",
            "did:plc",
            "did:plc:",
            "did:PLC:abc",
            "DID:plc:abc",
            "did:plc:abc:",
            "did:plc:abc%",
            "did:plc:a b",
            "did:plc:a/b",
            "did:pl1c:abc",
            "did::abc",
        ] {
            assert_eq!(Did::new(bad), Err(SyntaxError::Did), "{bad}");
        }
        let long = format!("did:plc:{}", "a".repeat(DID_MAX_LEN));
        assert!(Did::new(long).is_err());
        let d = Did::new("did:web:example.com").unwrap();
        assert_eq!(d.method(), "web");
        assert_eq!(d.identifier(), "example.com");
    }

    #[test]
    fn handles() {
        for ok in [
            "alice.test",
            "jay.bsky.social",
            "8.cn",
            "xn--ls8h.test",
            "a-b.c-d.example",
            "ALICE.Test",
        ] {
            assert!(Handle::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alice",
            ".alice.test",
            "alice.test.",
            "alice..test",
            "-alice.test",
            "alice-.test",
            "alice.1test",
            "al ice.test",
            "alice_x.test",
            "ålice.test",
        ] {
            assert_eq!(Handle::new(bad), Err(SyntaxError::Handle), "{bad}");
        }
        let long = format!("{}.test", "a.".repeat(130));
        assert!(Handle::new(long).is_err());
        let label = format!("{}.test", "a".repeat(64));
        assert!(Handle::new(label).is_err());
        assert_eq!(Handle::new("ALICE.Test").unwrap().as_str(), "alice.test");
        // Long handles (kept shared, not inline) are lowercased too.
        let long = format!("{}.Bsky.Social", "X".repeat(60));
        assert_eq!(
            Handle::new(&long).unwrap().as_str(),
            long.to_ascii_lowercase()
        );
        let lower = format!("{}.bsky.social", "x".repeat(60));
        assert_eq!(Handle::new(&lower).unwrap().as_str(), lower);
    }

    #[test]
    fn nsids() {
        for ok in [
            "com.atproto.server.getSession",
            "app.bsky.feed.post",
            "com.example.fooBar",
            "a.b.c",
            "a-0.b-1.c",
            "com.example.a1",
            "COM.Example.FooBar",
            "net.users.bob.ping",
        ] {
            assert!(is_nsid(ok), "{ok}");
            assert_eq!(Nsid::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "com.atproto",
            "com.atproto.server/../x",
            "com..atproto.x",
            "com.atproto.x?y=1",
            ".com.atproto.x",
            "com.atproto.x.",
            "com.atproto.sérver",
            "app.bsky.feed.get-x",
            "app.bsky.*",
            "com.example.1abc",
            "1com.example.x",
            "-com.example.x",
            "com-.example.x",
            "com.-example.x",
            "com.example.x_y",
        ] {
            assert!(!is_nsid(bad), "{bad}");
            assert_eq!(Nsid::new(bad), Err(SyntaxError::Nsid), "{bad}");
        }
        let segment = |n: usize| "a".repeat(n);
        assert!(is_nsid(&format!("a.b.{}", segment(63))));
        assert!(!is_nsid(&format!("a.b.{}", segment(64))));
        assert!(!is_nsid(&format!("{}.b.c", segment(64))));
        // The longest: a 253-character authority and a 63-character name.
        let authority = format!(
            "{}.{}.{}.{}",
            segment(63),
            segment(63),
            segment(63),
            segment(61)
        );
        assert_eq!(authority.len(), 253);
        let long = format!("{authority}.{}", segment(63));
        assert_eq!(long.len(), NSID_MAX_LEN);
        assert!(is_nsid(&long));
        assert!(!is_nsid(&format!("{long}a")));
        // An authority over 253 characters, even under 317 in all.
        assert!(!is_nsid(&format!("{authority}a.b")));
        let nsid: Nsid = "app.bsky.feed.getTimeline".parse().unwrap();
        assert_eq!(
            (nsid.authority(), nsid.name()),
            ("app.bsky.feed", "getTimeline")
        );
        assert_eq!(
            serde_json::to_string(&nsid).unwrap(),
            "\"app.bsky.feed.getTimeline\""
        );
        assert!(serde_json::from_str::<Nsid>("\"app.bsky\"").is_err());
    }

    /// The one-pass check agrees with the rule as written (the spec's regular grammar), on
    /// every string of up to six characters over an alphabet that reaches each branch.
    #[test]
    fn nsid_check_matches_its_definition() {
        fn by_definition(nsid: &str) -> bool {
            let segments: Vec<&str> = nsid.split('.').collect();
            let Some((name, authority)) = segments.split_last() else {
                return false;
            };
            let domain_segment = |s: &&str| {
                !s.is_empty()
                    && s.len() <= 63
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !s.starts_with('-')
                    && !s.ends_with('-')
            };
            nsid.len() <= NSID_MAX_LEN
                && segments.len() >= 3
                && authority.join(".").len() <= HANDLE_MAX_LEN
                && authority.iter().all(domain_segment)
                && !authority[0].starts_with(|c: char| c.is_ascii_digit())
                && (1..=63).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        let alphabet = ['a', 'Z', '7', '-', '.', '/', '_'];
        let mut strings = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.len() == strings.last().map_or(0, String::len))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert!(strings.len() > 100_000);
        for s in &strings {
            assert_eq!(is_nsid(s), by_definition(s), "{s:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Did = serde_json::from_str("\"did:plc:abc\"").unwrap();
        assert_eq!(ok.as_str(), "did:plc:abc");
        assert!(serde_json::from_str::<Did>("\"nope\"").is_err());
        assert!(serde_json::from_str::<Handle>("\"nope\"").is_err());
    }
}
