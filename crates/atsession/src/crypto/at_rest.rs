//! Encryption at rest: AES-256-GCM under keys the application holds.
//!
//! OAuth token sets, DPoP private keys and pending authorization states are secrets; stores
//! only ever see them sealed by an [`AtRestKeyring`]. Each envelope names the key that sealed
//! it, so keys rotate: add a new key as the current one, keep the old ones for reading, and
//! re-seal rows as they are written. The row's key (a grant id, a state hash) is bound as
//! associated data, so a sealed value copied to another row does not open.
//!
//! Envelope layout (binary): `0x01 | kid length (1 byte) | kid (UTF-8) | nonce (12 bytes) |
//! ciphertext and tag`.
//!
//! ```
//! use atsession::crypto::{AtRestKey, AtRestKeyring};
//!
//! let keyring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
//! let sealed = keyring.seal(b"grant:abc", b"secret token set").unwrap();
//! assert_eq!(keyring.open(b"grant:abc", &sealed).unwrap().as_slice(), b"secret token set");
//! // Bound to its row: another row key does not open it.
//! assert!(keyring.open(b"grant:xyz", &sealed).is_err());
//!
//! // Rotation: a new current key, the old one kept for reading.
//! let rotated = AtRestKeyring::new(AtRestKey::generate("k2").unwrap())
//!     .with_old_key(keyring.current().clone());
//! assert_eq!(rotated.open(b"grant:abc", &sealed).unwrap().as_slice(), b"secret token set");
//! assert_eq!(AtRestKeyring::key_id_of(&rotated.seal(b"r", b"x").unwrap()), Some("k2"));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::secret::random_bytes;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// The length of an at-rest key: 256 bits.
pub const KEY_LEN: usize = 32;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Why a key, a keyring or an envelope was refused. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtRestError {
    /// A key id is empty, longer than [`MAX_KEY_ID_LEN`], or holds characters outside
    /// `[A-Za-z0-9._-]`.
    #[error("invalid at-rest key id")]
    KeyId,
    /// Key material is not 32 bytes (or not unpadded base64url of 32 bytes).
    #[error("invalid at-rest key material: expected 32 bytes")]
    KeyMaterial,
    /// A key specification is not `kid:base64url-key`.
    #[error("invalid at-rest key specification: expected `kid:base64url(32 bytes)`")]
    KeySpec,
    /// The envelope is truncated or of an unknown version.
    #[error("the sealed value is malformed")]
    Malformed,
    /// The envelope was sealed under a key this keyring does not hold.
    #[error("the sealed value names at-rest key `{0}`, which the keyring does not hold")]
    UnknownKey(String),
    /// Authentication failed: wrong key, another row's value, or tampering.
    #[error("the sealed value does not decrypt (wrong key, wrong row, or tampered)")]
    Decrypt,
    /// Two keys of a keyring have the same id.
    #[error("two at-rest keys have the id `{0}`")]
    DuplicateKeyId(String),
    /// Encryption failed (only for absurdly long inputs).
    #[error("encryption failed")]
    Encrypt,
}

/// One AES-256 key with its id. The key is zeroed on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AtRestKey {
    #[zeroize(skip)]
    id: String,
    key: [u8; KEY_LEN],
}

impl fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtRestKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn valid_kid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl AtRestKey {
    /// A key from its id and 32 bytes of material.
    pub fn new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Result<Self, AtRestError> {
        let id = id.into();
        if !valid_kid(&id) {
            return Err(AtRestError::KeyId);
        }
        Ok(Self { id, key })
    }

    /// A fresh random key.
    pub fn generate(id: impl Into<String>) -> Result<Self, AtRestError> {
        Self::new(id, random_bytes())
    }

    /// Parses `kid:base64url(32 bytes)`, the form [`to_spec`](Self::to_spec) writes (for an
    /// environment variable or a key file). Surrounding whitespace is ignored.
    pub fn from_spec(spec: &str) -> Result<Self, AtRestError> {
        let (id, b64) = spec.trim().split_once(':').ok_or(AtRestError::KeySpec)?;
        let mut buf = Zeroizing::new([0u8; KEY_LEN + 3]);
        let n = URL_SAFE_NO_PAD
            .decode_slice(b64.trim().as_bytes(), &mut buf[..])
            .map_err(|_| AtRestError::KeyMaterial)?;
        if n != KEY_LEN {
            return Err(AtRestError::KeyMaterial);
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(&buf[..KEY_LEN]);
        Self::new(id, key)
    }

    /// `kid:base64url(key)`. This string is the secret: keep it out of logs.
    #[must_use]
    pub fn to_spec(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}:{}", self.id, URL_SAFE_NO_PAD.encode(self.key)))
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys an application encrypts its stored OAuth secrets with: one current key that
/// seals, and older keys that still open.
#[derive(Clone, Debug)]
pub struct AtRestKeyring {
    current: AtRestKey,
    old: BTreeMap<String, AtRestKey>,
}

impl AtRestKeyring {
    /// A keyring sealing with `current`.
    #[must_use]
    pub fn new(current: AtRestKey) -> Self {
        Self {
            current,
            old: BTreeMap::new(),
        }
    }

    /// Adds an older key, used only to open values sealed before a rotation.
    #[must_use]
    pub fn with_old_key(mut self, key: AtRestKey) -> Self {
        if key.id != self.current.id {
            self.old.insert(key.id.clone(), key);
        }
        self
    }

    /// The key that seals.
    #[must_use]
    pub fn current(&self) -> &AtRestKey {
        &self.current
    }

    /// Parses a keyring written as key specifications (`kid:base64url(32 bytes)`, as
    /// [`AtRestKey::to_spec`] writes them), one per line or separated by whitespace or
    /// commas; the first seals, the others only open. Empty lines and lines starting with
    /// `#` are skipped. This is the key file's format.
    ///
    /// ```
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    ///
    /// let (new, old) = (AtRestKey::generate("k2").unwrap(), AtRestKey::generate("k1").unwrap());
    /// let text = format!("# at-rest keys\n{}\n{}\n", new.to_spec().as_str(), old.to_spec().as_str());
    /// let ring = AtRestKeyring::parse(&text).unwrap();
    /// assert_eq!(ring.current().id(), "k2");
    /// assert!(ring.holds("k1"));
    /// assert_eq!(AtRestKeyring::parse(&ring.to_specs()).unwrap().key_ids(), ["k2", "k1"]);
    /// ```
    pub fn parse(text: &str) -> Result<Self, AtRestError> {
        let mut specs = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == ','))
            .filter(|s| !s.is_empty());
        let first = specs.next().ok_or(AtRestError::KeySpec)?;
        let mut ring = Self::new(AtRestKey::from_spec(first)?);
        for spec in specs {
            let key = AtRestKey::from_spec(spec)?;
            if ring.holds(key.id()) {
                return Err(AtRestError::DuplicateKeyId(key.id().to_owned()));
            }
            ring = ring.with_old_key(key);
        }
        Ok(ring)
    }

    /// The keyring as [`parse`](Self::parse) reads it: one specification per line, the
    /// current key first. This string is the secret: keep it out of logs.
    #[must_use]
    pub fn to_specs(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        for key in std::iter::once(&self.current).chain(self.old.values()) {
            out.push_str(&key.to_spec());
            out.push('\n');
        }
        out
    }

    /// Whether the keyring holds the key `id` (current or old).
    #[must_use]
    pub fn holds(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    /// The ids of the keys held: the current one first, then the old ones.
    #[must_use]
    pub fn key_ids(&self) -> Vec<&str> {
        std::iter::once(self.current.id.as_str())
            .chain(self.old.keys().map(String::as_str))
            .collect()
    }

    /// This keyring rotated to `new`: `new` seals, and every key of this one (its current
    /// key included) still opens.
    ///
    /// ```
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    ///
    /// let ring = AtRestKeyring::new(AtRestKey::generate("k1").unwrap());
    /// let sealed = ring.seal(b"row", b"x").unwrap();
    /// let rotated = ring.rotated(AtRestKey::generate("k2").unwrap());
    /// assert_eq!(rotated.key_ids(), ["k2", "k1"]);
    /// assert_eq!(rotated.open(b"row", &sealed).unwrap().as_slice(), b"x");
    /// ```
    #[must_use]
    pub fn rotated(&self, new: AtRestKey) -> Self {
        let mut ring = Self::new(new);
        for key in std::iter::once(&self.current).chain(self.old.values()) {
            ring = ring.with_old_key(key.clone());
        }
        ring
    }

    /// The keyring without the old key `id`; `None` if it holds no such old key (the
    /// current key cannot be removed).
    #[must_use]
    pub fn without_old_key(&self, id: &str) -> Option<Self> {
        let mut ring = self.clone();
        ring.old.remove(id).map(|_| ring)
    }

    fn key(&self, id: &str) -> Option<&AtRestKey> {
        if id == self.current.id {
            Some(&self.current)
        } else {
            self.old.get(id)
        }
    }

    /// Seals `plaintext` for the row named `row_key`.
    pub fn seal(&self, row_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let cipher =
            Aes256Gcm::new_from_slice(&self.current.key).map_err(|_| AtRestError::KeyMaterial)?;
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let nonce = Nonce::from(nonce_bytes);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: row_key,
                },
            )
            .map_err(|_| AtRestError::Encrypt)?;
        let kid = self.current.id.as_bytes();
        let mut out = Vec::with_capacity(2 + kid.len() + NONCE_LEN + ct.len());
        out.push(VERSION);
        // valid_kid bounds the length to 64.
        out.push(u8::try_from(kid.len()).map_err(|_| AtRestError::KeyId)?);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed for the row named `row_key`. The plaintext is zeroed on drop.
    pub fn open(&self, row_key: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
        let (kid, rest) = split_envelope(sealed).ok_or(AtRestError::Malformed)?;
        let key = self
            .key(kid)
            .ok_or_else(|| AtRestError::UnknownKey(kid.to_owned()))?;
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| AtRestError::Malformed)?;
        let cipher = Aes256Gcm::new_from_slice(&key.key).map_err(|_| AtRestError::KeyMaterial)?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: row_key,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| AtRestError::Decrypt)
    }

    /// The id of the key a sealed value names, if the envelope is well formed. Lets a
    /// re-encryption job find rows still sealed under an old key.
    #[must_use]
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        split_envelope(sealed).map(|(kid, _)| kid)
    }
}

/// `(kid, nonce || ciphertext)`, checking the version and minimum lengths.
fn split_envelope(sealed: &[u8]) -> Option<(&str, &[u8])> {
    let (&version, rest) = sealed.split_first()?;
    if version != VERSION {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if rest.len() < len + NONCE_LEN + 16 {
        return None;
    }
    let (kid, rest) = rest.split_at(len);
    let kid = std::str::from_utf8(kid).ok()?;
    Some((kid, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> AtRestKeyring {
        AtRestKeyring::new(AtRestKey::new("k1", [7; 32]).unwrap())
    }

    #[test]
    fn round_trip_and_binding() {
        let r = ring();
        let s = r.seal(b"row-1", b"hello").unwrap();
        assert_eq!(&*r.open(b"row-1", &s).unwrap(), b"hello");
        assert_eq!(r.open(b"row-2", &s), Err(AtRestError::Decrypt));
        // Two seals of the same value differ (random nonce).
        assert_ne!(s, r.seal(b"row-1", b"hello").unwrap());
        // The plaintext does not appear in the envelope.
        assert!(!s.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn tampering_and_truncation_are_typed_errors() {
        let r = ring();
        let s = r.seal(b"row", b"hello world").unwrap();
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert!(r.open(b"row", &t).is_err(), "flip at {i}");
        }
        for n in 0..s.len() {
            assert!(r.open(b"row", &s[..n]).is_err(), "truncated to {n}");
        }
        assert_eq!(r.open(b"row", &[]), Err(AtRestError::Malformed));
    }

    #[test]
    fn unknown_and_wrong_keys() {
        let s = ring().seal(b"row", b"x").unwrap();
        let other = AtRestKeyring::new(AtRestKey::new("k2", [7; 32]).unwrap());
        assert_eq!(
            other.open(b"row", &s),
            Err(AtRestError::UnknownKey("k1".into()))
        );
        let same_id = AtRestKeyring::new(AtRestKey::new("k1", [8; 32]).unwrap());
        assert_eq!(same_id.open(b"row", &s), Err(AtRestError::Decrypt));
    }

    #[test]
    fn specs_parse_and_keys_never_print() {
        let k = AtRestKey::generate("prod-2026").unwrap();
        let spec = k.to_spec();
        let back = AtRestKey::from_spec(&format!("  {}\n", spec.as_str())).unwrap();
        assert_eq!(back.key, k.key);
        assert_eq!(back.id(), "prod-2026");
        let material = spec.split_once(':').unwrap().1.to_owned();
        let dbg = format!("{k:?} {:?}", AtRestKeyring::new(k.clone()));
        assert!(!dbg.contains(&material), "{dbg}");
        assert_eq!(
            AtRestKey::from_spec("nocolon").err(),
            Some(AtRestError::KeySpec)
        );
        assert_eq!(
            AtRestKey::from_spec("k:AAAA").err(),
            Some(AtRestError::KeyMaterial)
        );
        assert_eq!(
            AtRestKey::from_spec(&format!("bad id:{material}")).map(|_| ()),
            Err(AtRestError::KeyId)
        );
    }
}
