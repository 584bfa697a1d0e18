//! The at-rest keys and the stored grants: which keys the grants are sealed under, whether a
//! keyring opens them all, and re-sealing every grant under the keyring's current key.
//!
//! A grant that no key opens cannot be refreshed, and cannot be revoked at its
//! authorization server either: its refresh token stays valid there. So an app should
//! [`check_keyring`] before it starts (the gateway refuses to start when a key is missing),
//! and rotate keys without ever dropping one that a grant still needs:
//!
//! 1. put a new key first in the keyring (it seals from now on), keeping the old ones;
//! 2. [`reseal_grants`]: every grant sealed under another key is opened and sealed again
//!    under the new one, by compare-and-swap (a refresh that writes the grant meanwhile
//!    wins, and its write is re-sealed in turn), each under the grant's refresh lock when
//!    one is given, so that no refresh in flight is lost;
//! 3. when [`KeyUsage`] shows no grant under an old key, drop that key.
//!
//! Each step can be interrupted and run again: re-sealing skips grants already under the
//! current key.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use atsession::crypto::{AtRestKey, AtRestKeyring};
//! use atsession::oauth::key_rotation::{ResealOptions, check_keyring, key_usage, reseal_grants};
//! use atsession::store::MemoryStore;
//!
//! let store = MemoryStore::new();
//! let old = AtRestKeyring::new(AtRestKey::generate("k1")?);
//! # atsession::oauth::key_rotation::doc_grant(&store, &old).await?;
//! let rotated = AtRestKeyring::new(AtRestKey::generate("k2")?).with_old_key(old.current().clone());
//! assert!(check_keyring(&store, &AtRestKeyring::new(AtRestKey::generate("k2")?)).await.is_err());
//! let done = reseal_grants(&store, &rotated, ResealOptions::default()).await?;
//! assert_eq!(done.resealed, 1);
//! assert_eq!(key_usage(&store).await?.grants_under("k1"), 0); // k1 can go
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::grant::{refresh_lock_key, row_key};
use crate::crypto::{AtRestError, AtRestKeyring};
use crate::lock::{Lock, LockError};
use crate::store::oauth::{GrantId, GrantStore};
use crate::store::{Cas, StoreError};

/// Grants listed per store call.
const PAGE: usize = 500;

/// Which at-rest keys the stored grants are sealed under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// Grants per key id.
    pub by_key: BTreeMap<String, u64>,
    /// Grants whose sealed value names no key (malformed).
    pub malformed: u64,
}

impl KeyUsage {
    /// How many grants are sealed under `id`.
    #[must_use]
    pub fn grants_under(&self, id: &str) -> u64 {
        self.by_key.get(id).copied().unwrap_or(0)
    }

    /// How many grants there are.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_key.values().sum::<u64>() + self.malformed
    }

    /// The key ids grants are sealed under that `keyring` does not hold.
    #[must_use]
    pub fn missing(&self, keyring: &AtRestKeyring) -> Vec<&str> {
        self.by_key
            .keys()
            .map(String::as_str)
            .filter(|id| !keyring.holds(id))
            .collect()
    }
}

/// Counts the grants under each key, listing every grant once.
pub async fn key_usage<S: GrantStore>(store: &S) -> Result<KeyUsage, StoreError> {
    let mut usage = KeyUsage::default();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let page = store.list_grants(cursor.as_ref(), PAGE).await?;
        for g in page.grants {
            if !seen.insert(g.id) {
                continue; // a store may list a grant twice (Redis)
            }
            match AtRestKeyring::key_id_of(&g.sealed) {
                Some(id) => *usage.by_key.entry(id.to_owned()).or_default() += 1,
                None => usage.malformed += 1,
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(usage),
        }
    }
}

/// Checks that `keyring` holds the key of every stored grant; returns the usage.
pub async fn check_keyring<S: GrantStore>(
    store: &S,
    keyring: &AtRestKeyring,
) -> Result<KeyUsage, KeyRotationError> {
    let usage = key_usage(store).await?;
    let missing: Vec<String> = usage
        .missing(keyring)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if missing.is_empty() {
        return Ok(usage);
    }
    let grants = missing.iter().map(|id| usage.grants_under(id)).sum();
    Err(KeyRotationError::MissingKeys { missing, grants })
}

/// What [`open_grants`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenCheck {
    /// Grants the keyring opens.
    pub opened: u64,
    /// How many grants it does not open.
    pub failed: u64,
    /// The first [`OPEN_FAILURES_NAMED`] grants it does not open.
    pub failed_ids: Vec<GrantId>,
}

/// How many grants that do not open [`open_grants`] names.
pub const OPEN_FAILURES_NAMED: usize = 10;

/// Tries to open every stored grant with `keyring`. Unlike [`check_keyring`], which
/// compares key ids only, this finds a key swapped for another under the same id, and
/// seals that are corrupt. Nothing is written; what is opened is dropped at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use atsession::crypto::{AtRestKey, AtRestKeyring};
/// use atsession::oauth::key_rotation::{check_keyring, open_grants};
/// use atsession::store::MemoryStore;
///
/// let store = MemoryStore::new();
/// let ring = AtRestKeyring::new(AtRestKey::generate("k1")?);
/// # atsession::oauth::key_rotation::doc_grant(&store, &ring).await?;
/// assert_eq!(open_grants(&store, &ring).await?.opened, 1);
/// // Another key under the same id: the ids match, the grant does not open.
/// let other = AtRestKeyring::new(AtRestKey::generate("k1")?);
/// assert!(check_keyring(&store, &other).await.is_ok());
/// assert_eq!(open_grants(&store, &other).await?.failed, 1);
/// # Ok(()) }
/// ```
pub async fn open_grants<S: GrantStore>(
    store: &S,
    keyring: &AtRestKeyring,
) -> Result<OpenCheck, StoreError> {
    let mut check = OpenCheck::default();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let page = store.list_grants(cursor.as_ref(), PAGE).await?;
        for g in page.grants {
            if !seen.insert(g.id.clone()) {
                continue; // a store may list a grant twice (Redis)
            }
            if keyring.open(&row_key(&g.id), &g.sealed).is_ok() {
                check.opened += 1;
            } else {
                check.failed += 1;
                if check.failed_ids.len() < OPEN_FAILURES_NAMED {
                    check.failed_ids.push(g.id);
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(check),
        }
    }
}

/// How [`reseal_grants`] runs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ResealOptions {
    /// The lock the app's [`SessionGetter`](crate::oauth::SessionGetter) refreshes under: each grant
    /// is re-sealed under its refresh lock, so that a refresh in flight elsewhere finishes
    /// first. Without it, a refresh that reads a grant before the re-seal and saves after
    /// loses its compare-and-swap and keeps the re-sealed (older) tokens.
    pub lock: Option<Arc<dyn Lock>>,
    /// Stop after re-sealing this many grants (the rest stay under their old keys, still
    /// readable; run again to continue).
    pub limit: Option<u64>,
}

impl std::fmt::Debug for ResealOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResealOptions")
            .field("lock", &self.lock.is_some())
            .field("limit", &self.limit)
            .finish()
    }
}

impl ResealOptions {
    /// Re-seals each grant under its refresh lock in `lock`.
    #[must_use]
    pub fn lock(mut self, lock: impl Lock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// Stops after `n` grants.
    #[must_use]
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// What [`reseal_grants`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Grants sealed again under the current key.
    pub resealed: u64,
    /// Grants that were already under it.
    pub current: u64,
    /// Grants deleted while the job ran (signed out).
    pub gone: u64,
    /// Whether the job stopped at its limit with grants left to do.
    pub stopped: bool,
}

/// Why a keyring does not fit a store ([`check_keyring`]), or why re-sealing stopped
/// ([`reseal_grants`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRotationError {
    /// Grants are sealed under keys the keyring does not hold.
    #[error("{grants} stored grant(s) are sealed under at-rest key(s) {} that the keyring does not hold", .missing.join(", "))]
    MissingKeys {
        /// The key ids.
        missing: Vec<String>,
        /// How many grants need them.
        grants: u64,
    },
    /// A grant does not open with the keyring (its key is missing, or it is corrupt); it was
    /// left as it is.
    #[error("grant {grant_id} does not open with the keyring")]
    Open {
        /// The grant.
        grant_id: GrantId,
        /// Why.
        #[source]
        source: AtRestError,
    },
    /// A grant's refresh lock was not acquired.
    #[error("cannot take the refresh lock of grant {grant_id}")]
    Lock {
        /// The grant.
        grant_id: GrantId,
        /// Why.
        #[source]
        source: LockError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a re-seal waits for a grant's refresh lock, and holds it.
const LOCK_TIMEOUT: Duration = Duration::from_secs(40);
const LOCK_LEASE: Duration = Duration::from_secs(30);

/// Seals every grant not under `keyring`'s current key again under it (see the
/// [module docs](self)). Idempotent; safe beside a running app.
pub async fn reseal_grants<S: GrantStore>(
    store: &S,
    keyring: &AtRestKeyring,
    options: ResealOptions,
) -> Result<Resealed, KeyRotationError> {
    let current = keyring.current().id().to_owned();
    let mut done = Resealed::default();
    let mut cursor = None;
    loop {
        let page = store.list_grants(cursor.as_ref(), PAGE).await?;
        for g in page.grants {
            if AtRestKeyring::key_id_of(&g.sealed) == Some(current.as_str()) {
                done.current += 1;
                continue;
            }
            if options.limit.is_some_and(|n| done.resealed >= n) {
                done.stopped = true;
                return Ok(done);
            }
            match reseal_one(store, keyring, &g.id, options.lock.as_ref()).await? {
                Outcome::Resealed => done.resealed += 1,
                Outcome::Current => done.current += 1,
                Outcome::Gone => done.gone += 1,
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(done),
        }
    }
}

enum Outcome {
    Resealed,
    Current,
    Gone,
}

async fn reseal_one<S: GrantStore>(
    store: &S,
    keyring: &AtRestKeyring,
    id: &GrantId,
    lock: Option<&Arc<dyn Lock>>,
) -> Result<Outcome, KeyRotationError> {
    let _guard = match lock {
        Some(lock) => Some(
            Arc::clone(lock)
                .acquire(&refresh_lock_key(id), LOCK_LEASE, LOCK_TIMEOUT)
                .await
                .map_err(|source| KeyRotationError::Lock {
                    grant_id: id.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let row = row_key(id);
    loop {
        let Some(stored) = store.load_grant(id).await? else {
            return Ok(Outcome::Gone);
        };
        if AtRestKeyring::key_id_of(&stored.sealed) == Some(keyring.current().id()) {
            return Ok(Outcome::Current);
        }
        let open = |source| KeyRotationError::Open {
            grant_id: id.clone(),
            source,
        };
        let plain = keyring.open(&row, &stored.sealed).map_err(open)?;
        let sealed = keyring.seal(&row, &plain).map_err(open)?;
        let mut next = stored.clone();
        next.sealed = sealed;
        next.version = stored.version.saturating_add(1);
        next.updated_at = crate::clock::truncate_ms(time::OffsetDateTime::now_utc());
        match store.update_grant(stored.version, &next).await? {
            Cas::Updated => return Ok(Outcome::Resealed),
            // Written meanwhile (a refresh): read it again.
            Cas::Conflict => continue,
            Cas::Missing => return Ok(Outcome::Gone),
        }
    }
}

/// Stores one grant sealed under `keyring` (for the module's example).
#[doc(hidden)]
pub async fn doc_grant<S: GrantStore>(
    store: &S,
    keyring: &AtRestKeyring,
) -> Result<(), Box<dyn std::error::Error>> {
    let id = GrantId::generate();
    let now = crate::clock::truncate_ms(time::OffsetDateTime::now_utc());
    let grant = crate::store::oauth::StoredGrant {
        sealed: keyring.seal(&row_key(&id), b"{}")?,
        id,
        did: crate::syntax::Did::new("did:plc:alice")?,
        issuer: "https://pds.example".to_owned(),
        created_at: now,
        updated_at: now,
        version: 1,
    };
    Ok(store.create_grant(&grant).await?)
}
