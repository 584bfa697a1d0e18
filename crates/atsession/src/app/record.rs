//! What an app session is: the stored record and the view handed to the app.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::secret::{TokenHash, random_bytes};
use crate::store::oauth::GrantId;
use crate::syntax::{Did, Handle};

/// A session's public identifier: 128 random bits in base64url.
///
/// It names a session in listings and admin commands; it is **not** a credential. Knowing it
/// does not let anyone use the session (that takes the session token, which is never stored).
///
/// Kept inline (22 bytes, no allocation): a clone is a copy.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SESSION_ID_SPACE]);

/// The length of a session id: 16 bytes in unpadded base64url.
const SESSION_ID_LEN: usize = 22;

/// The bytes a session id takes: its 22 characters and two zero bytes, so that it is
/// copied in whole words (the copy of a 22-byte array overlaps itself, which stalls the
/// copy of a record that follows it).
const SESSION_ID_SPACE: usize = 24;

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

impl SessionId {
    /// A fresh random id.
    #[must_use]
    pub fn generate() -> Self {
        let mut id = [0u8; SESSION_ID_SPACE];
        let n = URL_SAFE_NO_PAD
            .encode_slice(random_bytes::<16>(), &mut id[..SESSION_ID_LEN])
            .unwrap_or(0);
        debug_assert_eq!(n, SESSION_ID_LEN);
        Self(id)
    }

    /// Wraps an id read from a store or given by an admin. Only the form is checked
    /// (22 base64url characters).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == SESSION_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| {
            let mut id = [0u8; SESSION_ID_SPACE];
            id[..SESSION_ID_LEN].copy_from_slice(s.as_bytes());
            Self(id)
        })
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only base64url characters are ever stored (checked by `parse`, made by `generate`).
        std::str::from_utf8(&self.0[..SESSION_ID_LEN]).unwrap_or_default()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

/// A session as the store keeps it. Holds hashes of its tokens, never the tokens.
///
/// Invariants kept by [`SessionManager`](crate::app::SessionManager) (stores rely on them):
/// `idle_expires_at <= absolute_expires_at`; `version` starts at 1 and grows by one on every
/// update; `access_token_hash` and `access_expires_at` are both set or both unset; all times
/// are whole milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSession {
    /// The session's public id.
    pub id: SessionId,
    /// SHA-256 of the session token.
    pub token_hash: TokenHash,
    /// SHA-256 of the current access token, when access tokens are in use.
    pub access_token_hash: Option<TokenHash>,
    /// When the current access token stops working.
    pub access_expires_at: Option<OffsetDateTime>,
    /// The account.
    pub did: Did,
    /// The account's handle at login.
    pub handle: Handle,
    /// The app's own data, as JSON.
    pub data: Arc<serde_json::Value>,
    /// The OAuth grant this session belongs to, if any.
    pub grant_id: Option<GrantId>,
    /// When the session was created.
    pub created_at: OffsetDateTime,
    /// When the session was last used (recorded at most once per touch interval).
    pub last_seen_at: OffsetDateTime,
    /// The end of the sliding idle window.
    pub idle_expires_at: OffsetDateTime,
    /// The hard end of the session, whatever its use.
    pub absolute_expires_at: OffsetDateTime,
    /// The version, for compare-and-swap updates.
    pub version: u64,
}

impl StoredSession {
    /// When the session ends if nothing else happens: the earlier of the two expiries.
    #[must_use]
    pub fn expires_at(&self) -> OffsetDateTime {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether the session has ended at `now`.
    #[must_use]
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at() <= now
    }
}

/// An app session as the app sees it: a shared, read-only handle on the stored record.
///
/// The record's fields read through it (`session.did`, `session.data`, `session.version`,
/// …); a clone is one reference count, so handing a session to a handler, a request's
/// extensions or a task copies nothing, and the in-memory store returns the record it
/// holds without copying it. [`Debug`] and [`Serialize`] show everything but the token
/// hashes. To change a session, pass it to [`SessionManager::update`].
///
/// [`SessionManager::update`]: crate::app::SessionManager::update
#[derive(Clone, PartialEq)]
pub struct Session(Arc<StoredSession>);

impl Session {
    /// The custom data, deserialized.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&*self.0.data)
    }

    /// The stored record, shared.
    #[must_use]
    pub fn record(&self) -> &Arc<StoredSession> {
        &self.0
    }

    /// The stored record, copied only if another handle shares it.
    #[must_use]
    pub fn into_record(self) -> StoredSession {
        Arc::unwrap_or_clone(self.0)
    }

    /// What [`Debug`] and [`Serialize`] show: the record without its token hashes.
    fn view(&self) -> SessionView<'_> {
        let s = &*self.0;
        SessionView {
            id: &s.id,
            did: &s.did,
            handle: &s.handle,
            data: &s.data,
            grant_id: s.grant_id.as_ref(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
            access_expires_at: s.access_expires_at,
            version: s.version,
        }
    }
}

impl std::ops::Deref for Session {
    type Target = StoredSession;
    fn deref(&self) -> &StoredSession {
        &self.0
    }
}

impl From<StoredSession> for Session {
    fn from(s: StoredSession) -> Self {
        Self(Arc::new(s))
    }
}

impl From<Arc<StoredSession>> for Session {
    fn from(s: Arc<StoredSession>) -> Self {
        Self(s)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.view();
        f.debug_struct("Session")
            .field("id", v.id)
            .field("did", v.did)
            .field("handle", v.handle)
            .field("data", v.data)
            .field("grant_id", &v.grant_id)
            .field("created_at", &v.created_at)
            .field("last_seen_at", &v.last_seen_at)
            .field("idle_expires_at", &v.idle_expires_at)
            .field("absolute_expires_at", &v.absolute_expires_at)
            .field("access_expires_at", &v.access_expires_at)
            .field("version", &v.version)
            .finish()
    }
}

impl Serialize for Session {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

/// A session's fields as the app sees them, borrowed.
#[derive(Serialize)]
struct SessionView<'a> {
    id: &'a SessionId,
    did: &'a Did,
    handle: &'a Handle,
    data: &'a serde_json::Value,
    grant_id: Option<&'a GrantId>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    absolute_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    access_expires_at: Option<OffsetDateTime>,
    version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    fn record() -> StoredSession {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        StoredSession {
            id: SessionId::generate(),
            token_hash: Token::generate().hash(),
            access_token_hash: Some(Token::generate().hash()),
            access_expires_at: Some(at),
            did: Did::new("did:plc:abc").unwrap(),
            handle: Handle::new("alice.test").unwrap(),
            data: Arc::new(serde_json::json!({"theme": "dark"})),
            grant_id: None,
            created_at: at,
            last_seen_at: at,
            idle_expires_at: at,
            absolute_expires_at: at,
            version: 7,
        }
    }

    #[test]
    fn a_session_shares_its_record_and_shows_no_token_hash() {
        let r = record();
        let hashes = [
            r.token_hash.to_hex(),
            r.access_token_hash
                .as_ref()
                .map(TokenHash::to_hex)
                .unwrap_or_default(),
        ];
        let session = Session::from(r.clone());
        let copy = session.clone();
        assert!(Arc::ptr_eq(session.record(), copy.record()));
        assert_eq!(session.version, 7);
        assert_eq!(copy.into_record(), r);

        let json = serde_json::to_value(&session).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "absolute_expires_at",
                "access_expires_at",
                "created_at",
                "data",
                "did",
                "grant_id",
                "handle",
                "id",
                "idle_expires_at",
                "last_seen_at",
                "version"
            ]
        );
        assert_eq!(json["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["data"]["theme"], "dark");
        let debug = format!("{session:?}");
        assert!(debug.contains("alice.test") && debug.contains("version: 7"));
        for shown in [&json.to_string(), &debug] {
            assert!(!shown.contains("token_hash") && !shown.contains("TokenHash"));
            for h in &hashes {
                assert!(!shown.contains(&h[..8]));
            }
        }
    }
}
