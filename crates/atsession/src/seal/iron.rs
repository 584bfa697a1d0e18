//! The Iron `Fe26.2` format, as written by `@hapi/iron` 7 and `iron-webcrypto` 1 and 2.
//!
//! ```text
//! Fe26.2*{pwId}*{encSalt}*{b64url(iv)}*{b64url(ciphertext)}*{expMs}*{macSalt}*{b64url(mac)}
//! ```
//!
//! - salts: 32 random bytes as 64 lowercase hex characters; that ASCII string is the PBKDF2 salt;
//! - keys: PBKDF2-HMAC-SHA1 of the password (UTF-8), 1 iteration, 32 bytes;
//! - encryption: AES-256-CBC, PKCS#7, a random 16-byte IV;
//! - integrity: HMAC-SHA256 over the first six fields joined by `*`;
//! - base64url without padding; an expiration in milliseconds since the epoch, or empty for none;
//! - on unseal the expiration is checked before the MAC, with 60 s of skew: a seal is refused
//!   when `exp <= now - 60 s`.

use std::sync::Arc;
use std::time::Duration;

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{KeyInit, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::passwords::{Password, Passwords};
use super::{JsonError, SealError};
use crate::clock::{Clock, SystemClock, from_millis, to_millis};
use crate::secret::{ct_eq, random_bytes};

/// The first field of every seal: the format name and MAC format version.
pub const PREFIX: &str = "Fe26.2";
/// Clock skew allowed when checking an expiration, as in the Node libraries.
pub const TIMESTAMP_SKEW: Duration = Duration::from_secs(60);
/// The default limit on the length of a seal to open: 64 KiB. Longer input is refused before
/// any other work. (Four 4 KiB cookies, the most a browser session can carry, fit easily.)
pub const DEFAULT_MAX_SEAL_LEN: usize = 64 * 1024;

const SALT_BYTES: usize = 32;
const IV_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
const MAC_BYTES: usize = 32;

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What an opened seal held, and how it was sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed<T> {
    /// The data.
    pub data: T,
    /// The password id field of the seal (empty when the seal has none).
    pub password_id: String,
    /// When the seal expires (`None` when it was sealed without a TTL).
    pub expires_at: Option<OffsetDateTime>,
}

/// Seals and unseals data with a set of [`Passwords`].
///
/// ```
/// use std::time::Duration;
/// use atsession::seal::{Iron, Passwords, SealError};
///
/// let iron = Iron::new(Passwords::single("a password of at least 32 characters")?)
///     .with_ttl(Duration::from_secs(3600));
/// let sealed = iron.seal(&serde_json::json!({"did": "did:plc:abc"}))?;
/// assert!(sealed.starts_with("Fe26.2**"));
/// let data: serde_json::Value = iron.unseal(&sealed)?;
/// assert_eq!(data["did"], "did:plc:abc");
/// assert_eq!(iron.unseal::<serde_json::Value>("Fe26.2*junk"), Err(SealError::FieldCount(2)));
/// # Ok::<(), SealError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Iron {
    passwords: Passwords,
    ttl: Option<Duration>,
    skew: Duration,
    max_len: usize,
    clock: Arc<dyn Clock>,
}

impl Iron {
    /// A sealer with no TTL (seals never expire), 60 s of skew, the system clock and a limit of
    /// [`DEFAULT_MAX_SEAL_LEN`].
    #[must_use]
    pub fn new(passwords: Passwords) -> Self {
        Self {
            passwords,
            ttl: None,
            skew: TIMESTAMP_SKEW,
            max_len: DEFAULT_MAX_SEAL_LEN,
            clock: Arc::new(SystemClock),
        }
    }

    /// Seals expire `ttl` after they are made. `Duration::ZERO` means never, as in Iron.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = (!ttl.is_zero()).then_some(ttl);
        self
    }

    /// Reads the time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refuses seals longer than `max_len` bytes, both to open and to make.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The password set.
    #[must_use]
    pub fn passwords(&self) -> &Passwords {
        &self.passwords
    }

    /// The TTL of new seals, if any.
    #[must_use]
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The clock this sealer reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Seals `value` as JSON with the current password.
    ///
    /// # Errors
    /// [`SealError::Json`] when `value` cannot be serialised, [`SealError::TooLong`] when the
    /// seal would exceed the length limit.
    pub fn seal<T: Serialize + ?Sized>(&self, value: &T) -> Result<String, SealError> {
        let json = Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| SealError::Json(JsonError::from(&e)))?,
        );
        self.seal_bytes(&json)
    }

    /// Seals raw bytes. The Node libraries parse the plaintext as JSON, so give them JSON text.
    ///
    /// # Errors
    /// [`SealError::TooLong`] when the seal would exceed the length limit.
    pub fn seal_bytes(&self, plaintext: &[u8]) -> Result<String, SealError> {
        let now = to_millis(self.clock.now());
        let expiration = self.ttl.map(|ttl| {
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            now.saturating_add(ttl_ms)
        });
        seal_raw(
            plaintext,
            self.passwords.current(),
            expiration,
            self.max_len,
        )
    }

    /// Opens a seal and parses its JSON as `T`.
    ///
    /// # Errors
    /// Any [`SealError`] describing the first problem found.
    pub fn unseal<T: DeserializeOwned>(&self, sealed: &str) -> Result<T, SealError> {
        self.unseal_full(sealed).map(|u| u.data)
    }

    /// Opens a seal and parses its JSON as `T`, returning its password id and expiry too.
    ///
    /// # Errors
    /// Any [`SealError`] describing the first problem found.
    pub fn unseal_full<T: DeserializeOwned>(&self, sealed: &str) -> Result<Unsealed<T>, SealError> {
        let raw = self.unseal_bytes(sealed)?;
        let data =
            serde_json::from_slice(&raw.data).map_err(|e| SealError::Json(JsonError::from(&e)))?;
        Ok(Unsealed {
            data,
            password_id: raw.password_id,
            expires_at: raw.expires_at,
        })
    }

    /// Opens a seal and returns its plaintext bytes, unparsed.
    ///
    /// # Errors
    /// Any [`SealError`] describing the first problem found, checked in this order: empty, too
    /// long, field count, prefix, expiration, password id, salts, base64, HMAC, decryption.
    pub fn unseal_bytes(&self, sealed: &str) -> Result<Unsealed<Zeroizing<Vec<u8>>>, SealError> {
        let now = to_millis(self.clock.now());
        let skew = i64::try_from(self.skew.as_millis()).unwrap_or(i64::MAX);
        unseal_raw(sealed, &self.passwords, now, skew, self.max_len)
    }
}

/// PBKDF2-HMAC-SHA1, one iteration, 32 bytes: Iron's key derivation.
fn derive_key(password: &Password, salt: &str) -> Zeroizing<[u8; KEY_BYTES]> {
    password.derive_key(salt.as_bytes())
}

fn mac(password: &Password, salt: &str, base: &str) -> [u8; MAC_BYTES] {
    let key = derive_key(password, salt);
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key.as_ref())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(base.as_bytes());
    mac.finalize().into_bytes().into()
}

fn hex_salt() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = random_bytes::<SALT_BYTES>();
    let mut s = String::with_capacity(SALT_BYTES * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// The length of a seal of `plaintext_len` bytes, to refuse an oversized one before any work.
fn sealed_len(plaintext_len: usize, id_len: usize, expiration: Option<i64>) -> usize {
    let ct = (plaintext_len / 16 + 1) * 16;
    let b64 = |n: usize| n.div_ceil(3) * 4 - (3 - n % 3) % 3;
    let exp = expiration.map_or(0, |e| e.to_string().len());
    PREFIX.len() + 7 + id_len + 2 * SALT_BYTES * 2 + b64(IV_BYTES) + b64(ct) + exp + b64(MAC_BYTES)
}

/// Seals `plaintext` with `password`; `expiration` in ms since the epoch.
pub(crate) fn seal_raw(
    plaintext: &[u8],
    password: &Password,
    expiration: Option<i64>,
    max_len: usize,
) -> Result<String, SealError> {
    let len = sealed_len(plaintext.len(), password.id.len(), expiration);
    if len > max_len {
        return Err(SealError::TooLong { len, max: max_len });
    }
    let enc_salt = hex_salt();
    let iv = random_bytes::<IV_BYTES>();
    let key = derive_key(password, &enc_salt);
    let ciphertext =
        Aes256CbcEnc::new((&*key).into(), (&iv).into()).encrypt_padded_vec::<Pkcs7>(plaintext);

    let mut out = String::with_capacity(len);
    out.push_str(PREFIX);
    out.push('*');
    out.push_str(&password.id);
    out.push('*');
    out.push_str(&enc_salt);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(iv, &mut out);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(&ciphertext, &mut out);
    out.push('*');
    if let Some(exp) = expiration {
        use std::fmt::Write as _;
        let _ = write!(out, "{exp}");
    }
    let mac_salt = hex_salt();
    let digest = mac(password, &mac_salt, &out);
    out.push('*');
    out.push_str(&mac_salt);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(digest, &mut out);
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

/// Parses an expiration field: empty, or `^[1-9]\d*$` (iron-webcrypto's rule) fitting an i64.
fn parse_expiration(field: &str) -> Result<Option<i64>, SealError> {
    if field.is_empty() {
        return Ok(None);
    }
    let bytes = field.as_bytes();
    if bytes[0] == b'0' || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(SealError::Expiration);
    }
    field
        .parse::<i64>()
        .map(Some)
        .map_err(|_| SealError::Expiration)
}

/// Decodes unpadded base64url into exactly `N` bytes.
fn decode_exact<const N: usize>(field: &str, which: super::Field) -> Result<[u8; N], SealError> {
    // One spare byte so an overlong input is caught as a wrong length, not a buffer error.
    let mut buf = [0u8; 64];
    if field.len() > (N + 1).div_ceil(3) * 4 || N >= buf.len() {
        return Err(SealError::Base64(which));
    }
    let n = URL_SAFE_NO_PAD
        .decode_slice(field.as_bytes(), &mut buf)
        .map_err(|_| SealError::Base64(which))?;
    if n != N {
        return Err(SealError::Base64(which));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    Ok(out)
}

/// Opens a seal. `now` and `skew` in milliseconds.
pub(crate) fn unseal_raw(
    sealed: &str,
    passwords: &Passwords,
    now: i64,
    skew: i64,
    max_len: usize,
) -> Result<Unsealed<Zeroizing<Vec<u8>>>, SealError> {
    use super::Field;

    if sealed.is_empty() {
        return Err(SealError::Empty);
    }
    if sealed.len() > max_len {
        return Err(SealError::TooLong {
            len: sealed.len(),
            max: max_len,
        });
    }
    let mut parts = [""; 8];
    let mut count = 0usize;
    for part in sealed.split('*') {
        if let Some(slot) = parts.get_mut(count) {
            *slot = part;
        }
        count += 1;
    }
    if count != 8 {
        return Err(SealError::FieldCount(count));
    }
    let [
        prefix,
        password_id,
        enc_salt,
        iv_b64,
        ct_b64,
        exp_field,
        mac_salt,
        mac_b64,
    ] = parts;
    if prefix != PREFIX {
        return Err(SealError::Prefix);
    }
    let expiration = parse_expiration(exp_field)?;
    if let Some(exp) = expiration
        && exp <= now.saturating_sub(skew)
    {
        return Err(SealError::Expired);
    }
    let password = passwords
        .find(password_id)
        .ok_or_else(|| SealError::unknown_id(password_id))?;
    if enc_salt.is_empty() {
        return Err(SealError::EmptySalt(Field::EncryptionSalt));
    }
    if mac_salt.is_empty() {
        return Err(SealError::EmptySalt(Field::MacSalt));
    }
    let iv = decode_exact::<IV_BYTES>(iv_b64, Field::Iv)?;
    let given_mac = decode_exact::<MAC_BYTES>(mac_b64, Field::Mac)?;
    let mut buf = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(ct_b64)
            .map_err(|_| SealError::Base64(Field::Ciphertext))?,
    );

    // The MAC covers the first six fields exactly as they appear in the input.
    let base_len = sealed.len() - mac_salt.len() - mac_b64.len() - 2;
    let expected = mac(password, mac_salt, &sealed[..base_len]);
    if !ct_eq(&expected, &given_mac) {
        return Err(SealError::BadMac);
    }

    let key = derive_key(password, enc_salt);
    let plain_len = Aes256CbcDec::new((&*key).into(), (&iv).into())
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| SealError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(Unsealed {
        data: buf,
        password_id: password_id.to_owned(),
        expires_at: expiration.map(from_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const PW: &str = "some_not_random_password_that_is_at_least_32_characters";

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(from_millis(1_700_000_000_000)))
    }

    fn iron(clock: &Arc<ManualClock>) -> Iron {
        Iron::new(Passwords::single(PW).unwrap()).with_clock(clock.clone())
    }

    #[test]
    fn round_trip_without_ttl() {
        let c = clock();
        let iron = iron(&c);
        let v = serde_json::json!({"a": 1, "b": [true, null], "c": "é"});
        let s = iron.seal(&v).unwrap();
        let parts: Vec<&str> = s.split('*').collect();
        assert_eq!(parts.len(), 8);
        assert_eq!(parts[0], "Fe26.2");
        assert_eq!(parts[1], "");
        assert_eq!(parts[2].len(), 64);
        assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(parts[3].len(), 22);
        assert_eq!(parts[5], "");
        assert_eq!(parts[6].len(), 64);
        assert_eq!(parts[7].len(), 43);
        let full = iron.unseal_full::<serde_json::Value>(&s).unwrap();
        assert_eq!(full.data, v);
        assert_eq!(full.expires_at, None);
        // No expiry: still opens a century later.
        c.advance(Duration::from_secs(100 * 365 * 86_400));
        assert_eq!(iron.unseal::<serde_json::Value>(&s).unwrap(), v);
    }

    #[test]
    fn expiry_with_skew() {
        let c = clock();
        let iron = iron(&c).with_ttl(Duration::from_secs(10));
        let s = iron.seal(&1).unwrap();
        let exp: i64 = s.split('*').nth(5).unwrap().parse().unwrap();
        assert_eq!(exp, 1_700_000_000_000 + 10_000);
        // Expired 59.999 s ago: still inside the skew.
        c.advance(Duration::from_millis(10_000 + 59_999));
        assert_eq!(iron.unseal::<i32>(&s).unwrap(), 1);
        // exp <= now - 60 s: refused, as in Node.
        c.advance(Duration::from_millis(1));
        assert_eq!(iron.unseal::<i32>(&s), Err(SealError::Expired));
    }

    #[test]
    fn sealed_len_is_exact() {
        let c = clock();
        for n in 0..70 {
            let iron = iron(&c).with_ttl(Duration::from_secs(5));
            let s = iron.seal_bytes(&vec![b'x'; n]).unwrap();
            assert_eq!(s.len(), sealed_len(n, 0, Some(1_700_000_005_000)));
        }
        let iron = iron(&c).with_max_len(300);
        assert!(matches!(
            iron.seal_bytes(&[0; 300]),
            Err(SealError::TooLong { .. })
        ));
    }

    #[test]
    fn known_answer_from_hapi_iron() {
        // Sealed by @hapi/iron 7.0.1: Iron.seal({a: 1, b: 2, c: [3, 4, 5], d: {e: 'f'}},
        // {id: 'k1', secret: PW}, Iron.defaults) (no TTL).
        let sealed = include_str!("testdata/hapi_k1.txt").trim();
        let iron = Iron::new(Passwords::new([("k1", PW)]).unwrap());
        let v: serde_json::Value = iron.unseal(sealed).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": 1, "b": 2, "c": [3, 4, 5], "d": {"e": "f"}})
        );
    }
}
