//! Storage for the OAuth client: pending authorization states and OAuth grants.
//!
//! Both hold only sealed bytes: the OAuth client encrypts states and grants with its
//! [`AtRestKeyring`](crate::crypto::AtRestKeyring) before a store sees them, so no
//! backend can leak a token set or a DPoP key, and every backend gets the encryption for
//! free. What stays in clear is what lookups need: the grant id, the DID, the issuer and
//! times.
//!
//! The contract (every backend):
//! - [`StateStore::take_state`] is a one-time take: it removes the state and returns it in
//!   one atomic step, so two callbacks with the same `state` cannot both succeed. An expired
//!   state is removed and not returned.
//! - [`GrantStore::create_grant`] never overwrites;
//!   [`update_grant`](GrantStore::update_grant) is compare-and-swap on the version and
//!   never re-creates a deleted grant.

use std::fmt;
use std::sync::Arc;

use time::OffsetDateTime;

use super::{Cas, SessionStore, StoreError, StoreFuture};
use crate::secret::{TokenHash, random_bytes};
use crate::syntax::Did;

/// The id of an OAuth grant: 128 random bits as 22 characters of base64url. Each device's
/// login gets its own grant, so logging out on one does not end another's.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GrantId(String);

impl GrantId {
    /// A fresh random id.
    #[must_use]
    pub fn generate() -> Self {
        use base64::Engine as _;
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>()))
    }

    /// Parses an id: 22 to 64 characters of base64url.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (16..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GrantId {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or("invalid grant id")
    }
}

impl From<GrantId> for String {
    fn from(g: GrantId) -> Self {
        g.0
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantId({})", self.0)
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored OAuth grant: the sealed grant (token set, DPoP key, auth method; `oauth::Grant`)
/// and the clear fields lookups need.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredGrant {
    /// The grant id (primary key).
    pub id: GrantId,
    /// The account (indexed).
    pub did: Did,
    /// The authorization server's issuer.
    pub issuer: String,
    /// The sealed grant (token set, DPoP key, client authentication).
    pub sealed: Vec<u8>,
    /// When the grant was made.
    pub created_at: OffsetDateTime,
    /// When the sealed grant was last written.
    pub updated_at: OffsetDateTime,
    /// Bumped by every update.
    pub version: u64,
}

impl fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredGrant")
            .field("id", &self.id)
            .field("did", &self.did)
            .field("issuer", &self.issuer)
            .field("sealed_len", &self.sealed.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Where [`GrantStore::list_grants`] stopped: hand it back for the next page. Opaque;
/// its content is the backend's business (the last grant id for SQL stores, a `SCAN`
/// cursor for Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCursor(String);

impl GrantCursor {
    /// A cursor from a backend's own text (for store implementations).
    #[must_use]
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The backend's text (for store implementations).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One page of [`GrantStore::list_grants`].
#[derive(Debug, Clone)]
pub struct GrantPage {
    /// Grants, up to the limit asked for (a Redis page may hold fewer, even none, before the
    /// end).
    pub grants: Vec<StoredGrant>,
    /// Where to continue; `None` when every grant has been listed.
    pub next: Option<GrantCursor>,
}

/// A pending authorization, between `authorize` and `callback`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAuthState {
    /// SHA-256 of the `state` parameter: the raw value is never stored.
    pub key: TokenHash,
    /// The sealed state (PKCE verifier, DPoP key, issuer, auth method, app state).
    pub sealed: Vec<u8>,
    /// When it stops being usable (10 minutes after `authorize` by default).
    pub expires_at: OffsetDateTime,
}

impl fmt::Debug for StoredAuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAuthState")
            .field("key", &self.key)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

store_trait! {
    /// Pending authorization states: put once, taken once.
    ///
    /// Object-safe, like every store trait (see [`SessionStore`]).
    pub trait StateStore: Send + Sync {
        /// Inserts a state; fails if the key exists.
        fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()>;

        /// Removes and returns the state atomically, if it exists and has not expired at
        /// `now`. An expired state is removed too, and `None` returned.
        fn take_state<'a>(
            &'a self,
            key: &'a TokenHash,
            now: OffsetDateTime,
        ) -> StoreFuture<'a, Option<StoredAuthState>>;

        /// Removes every state expired at `now`; returns how many.
        fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64>;
    }
}

store_trait! {
    /// OAuth grants, keyed by grant id, indexed by DID.
    ///
    /// Object-safe, like every store trait (see [`SessionStore`]).
    pub trait GrantStore: Send + Sync {
        /// Inserts a grant; fails if the id exists.
        fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()>;

        /// The grant with this id.
        fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>>;

        /// Writes `grant` if the stored one is at `expected_version`; never inserts.
        /// `grant.version` is the new version.
        fn update_grant<'a>(
            &'a self,
            expected_version: u64,
            grant: &'a StoredGrant,
        ) -> StoreFuture<'a, Cas>;

        /// Deletes a grant; `true` if it existed.
        fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool>;

        /// The grants of an account, oldest first.
        fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>>;

        /// Deletes every grant of an account; returns how many.
        fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64>;

        /// Every grant, a page of about `limit` at a time, starting from `cursor` (`None`
        /// for the first page): for maintenance jobs such as checking or rotating the
        /// at-rest keys, not for request paths. Every grant that exists for the whole
        /// listing is listed at least once; one created or deleted meanwhile may or may not
        /// be.
        fn list_grants<'a>(
            &'a self,
            cursor: Option<&'a GrantCursor>,
            limit: usize,
        ) -> StoreFuture<'a, GrantPage>;
    }
}

/// An app session as stored, with its OAuth grant's record when it names one that exists.
pub type SessionWithGrant = (Arc<crate::app::StoredSession>, Option<StoredGrant>);

store_trait! {
    /// A store that keeps both app sessions and OAuth grants, and reads a session together with
    /// its grant: what a request that calls the user's PDS needs first. A backend that can join
    /// the two (SQLite, PostgreSQL) answers with one query, so a proxied call costs one read
    /// (one round trip, one read transaction) instead of two; the provided methods read the
    /// session, then its grant.
    ///
    /// The grant is `None` when the session names none, or names one that no longer exists.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use atsession::store::MemoryStore;
    /// use atsession::store::SessionStore;
    /// use atsession::store::oauth::SessionGrantStore;
    /// use atsession::secret::Token;
    ///
    /// let store = MemoryStore::new();
    /// let unknown = Token::generate().hash();
    /// assert!(store.load_by_token_with_grant(&unknown).await.unwrap().is_none());
    /// # }
    /// ```
    pub trait SessionGrantStore: SessionStore + GrantStore {
        /// Whether the two are read with one query (`false` for the provided methods). A
        /// caller that may not need the grant reads it along only when this is `true`.
        fn reads_together(&self) -> bool {
            false
        }

        /// The session whose session token hashes to `hash`, with its grant.
        fn load_by_token_with_grant<'a>(
            &'a self,
            hash: &'a TokenHash,
        ) -> StoreFuture<'a, Option<SessionWithGrant>> {
            StoreFuture::new(async move {
                let found = self.load_by_token(hash).await?;
                grant_of(self, found).await
            })
        }

        /// The session whose current access token hashes to `hash`, with its grant.
        fn load_by_access_token_with_grant<'a>(
            &'a self,
            hash: &'a TokenHash,
        ) -> StoreFuture<'a, Option<SessionWithGrant>> {
            StoreFuture::new(async move {
                let found = self.load_by_access_token(hash).await?;
                grant_of(self, found).await
            })
        }

        /// `found` with its grant, read after it (what the provided methods do).
        fn with_grant<'a>(
            &'a self,
            found: Option<Arc<crate::app::StoredSession>>,
        ) -> StoreFuture<'a, Option<SessionWithGrant>> {
            StoreFuture::new(grant_of(self, found))
        }
    }
}

/// `found` with its grant, read after it.
async fn grant_of<S: GrantStore + ?Sized>(
    store: &S,
    found: Option<Arc<crate::app::StoredSession>>,
) -> Result<Option<SessionWithGrant>, StoreError> {
    let Some(session) = found else {
        return Ok(None);
    };
    let grant = match &session.grant_id {
        Some(id) => store.load_grant(id).await?,
        None => None,
    };
    Ok(Some((session, grant)))
}
