//! Secrets: random tokens, their SHA-256 hashes at rest, constant-time comparison, and
//! redaction.
//!
//! Every bearer secret atsession hands out is a [`Token`]: 256 random bits written as 43
//! characters of unpadded base64url. The raw token leaves the process once, in a cookie or a
//! response body; stores keep only its [`TokenHash`]. A `Token` never prints itself: its
//! `Debug` and `Display` say `<redacted>`, and its memory is wiped when it is dropped.
//!
//! ```
//! use atsession::secret::Token;
//!
//! let token = Token::generate();
//! let wire = token.expose().to_owned(); // what the client gets
//! assert_eq!(wire.len(), 43);
//! assert_eq!(format!("{token:?}"), "Token(<redacted>)");
//!
//! // Later, the client sends it back: parse, then look up by hash.
//! let parsed = Token::parse(&wire).unwrap();
//! assert_eq!(parsed.hash(), token.hash());
//! assert!(Token::parse("not a token").is_err());
//! ```

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The number of random bytes in a [`Token`].
pub const TOKEN_BYTES: usize = 32;
/// The length of a [`Token`] on the wire: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// Why a string is not a token. The message never contains the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The string is empty.
    #[error("token is empty")]
    Empty,
    /// The string has the wrong length.
    #[error("token has {0} characters, expected {TOKEN_LEN}")]
    Length(usize),
    /// The string holds characters outside unpadded base64url, or does not decode canonically.
    #[error("token is not unpadded base64url")]
    Encoding,
}

/// A 256-bit random bearer secret.
///
/// Invariants: always exactly [`TOKEN_BYTES`] bytes of entropy from the operating system's
/// generator, or bytes parsed from a canonical 43-character base64url string. Never printed;
/// zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Token {
    encoded: String,
}

impl Token {
    /// Draws a fresh token from the operating system's random generator.
    ///
    /// # Panics
    /// Only if the operating system has no random source, which no supported platform lacks.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = random_bytes::<TOKEN_BYTES>();
        let encoded = URL_SAFE_NO_PAD.encode(bytes);
        bytes.zeroize();
        Self { encoded }
    }

    /// Parses a token a client sent back. Checks length and alphabet before decoding, so an
    /// overlong or hostile input costs nothing.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        check_wire_form(s)?;
        Ok(Self {
            encoded: s.to_owned(),
        })
    }

    /// The [`hash`](Self::hash) of a token a client sent back, checked as
    /// [`parse`](Self::parse) checks it, without keeping a copy of the token: what a lookup
    /// needs.
    ///
    /// ```
    /// use atsession::secret::Token;
    ///
    /// let t = Token::generate();
    /// assert_eq!(Token::hash_of(t.expose()).unwrap(), t.hash());
    /// assert!(Token::hash_of("short").is_err());
    /// ```
    pub fn hash_of(s: &str) -> Result<TokenHash, TokenError> {
        check_wire_form(s)?;
        Ok(TokenHash::of(s.as_bytes()))
    }

    /// The token as sent to the client. Handle with care: this is the secret.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.encoded
    }

    /// The SHA-256 of the token's wire form: what stores keep.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.encoded.as_bytes())
    }
}

/// Checks that `s` is the canonical unpadded base64url form of [`TOKEN_BYTES`] bytes without
/// decoding it: 43 characters of the alphabet (258 bits for 256), so the last character
/// carries 4 bits of data and 2 zero bits. Length first, so hostile input costs nothing.
fn check_wire_form(s: &str) -> Result<(), TokenError> {
    if s.is_empty() {
        return Err(TokenError::Empty);
    }
    if s.len() != TOKEN_LEN {
        return Err(TokenError::Length(s.len()));
    }
    let bytes = s.as_bytes();
    // Every byte is looked at, without an early exit, so that the check compiles to a few
    // vector compares: this runs on every lookup.
    let alphabet_ok = bytes.iter().fold(true, |ok, &b| ok & is_base64url(b));
    if !alphabet_ok || sextet(bytes[TOKEN_LEN - 1]) & 0b11 != 0 {
        return Err(TokenError::Encoding);
    }
    Ok(())
}

/// Whether `b` is a base64url character, without branches.
#[inline]
const fn is_base64url(b: u8) -> bool {
    let upper = b.wrapping_sub(b'A') < 26;
    let lower = b.wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    upper | lower | digit | (b == b'-') | (b == b'_')
}

/// The longest input whose SHA-256 is one compression: 64 bytes less the `0x80` marker and
/// the 8-byte length. Tokens (43 bytes) are hashed so, on every lookup.
const ONE_BLOCK_MAX: usize = 55;

/// SHA-256 of at most [`ONE_BLOCK_MAX`] bytes: the padded block compressed once from the
/// initial state (FIPS 180-4, 5.1.1 and 5.3.3), without the streaming hasher's buffering.
fn sha256_one_block(bytes: &[u8]) -> [u8; 32] {
    const H0: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let n = bytes.len().min(ONE_BLOCK_MAX);
    let mut block = [0u8; 64];
    block[..n].copy_from_slice(&bytes[..n]);
    block[n] = 0x80;
    block[56..].copy_from_slice(&((n as u64) * 8).to_be_bytes());
    let mut state = H0;
    sha2::block_api::compress256(&mut state, &[block]);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The value of a base64url character (the caller has checked the alphabet).
const fn sextet(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.encoded.as_bytes(), other.encoded.as_bytes())
    }
}
impl Eq for Token {}

/// The SHA-256 of a token: safe to store and to index by. Compared in constant time.
///
/// Aligned to 8 bytes, so that a record holding an `Option<TokenHash>` is copied in whole
/// words (the option's flag otherwise shifts the hash to an odd offset).
#[derive(Clone, Copy)]
#[repr(align(8))]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes arbitrary bytes.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.len() <= ONE_BLOCK_MAX {
            Self(sha256_one_block(bytes))
        } else {
            Self(Sha256::digest(bytes).into())
        }
    }

    /// Rebuilds a hash read back from storage.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, for stores that key by string.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            use fmt::Write as _;
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}
impl Eq for TokenHash {}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with the constant-time `eq`: equal hashes have equal bytes.
        self.0.hash(state);
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the secret, but a short prefix is all a reader needs to tell two apart.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `N` bytes from the operating system's random generator.
///
/// # Panics
/// Only if the operating system has no random source.
#[must_use]
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill_random(&mut out);
    out
}

/// Fills `out` from the operating system's random generator.
///
/// # Panics
/// Only if the operating system has no random source.
pub(crate) fn fill_random(out: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(out).expect("the operating system's random generator failed");
}

/// A string secret (a token, a password) that never prints itself and is wiped on drop.
///
/// Clones share one buffer, so cloning a session's tokens copies nothing; the buffer is
/// wiped when the last clone is dropped.
#[derive(Clone)]
pub struct SecretString(Arc<Wiped>);

/// The shared buffer: zeroed when dropped.
struct Wiped(String);

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretString {
    /// Wraps a secret.
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Self(Arc::new(Wiped(s.into())))
    }
    /// The secret itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0.0
    }
}

impl ZeroizeOnDrop for SecretString {}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_block_hash_is_sha256() {
        let input: Vec<u8> = (0..=200u8).collect();
        for n in 0..=120 {
            let expected: [u8; 32] = Sha256::digest(&input[..n]).into();
            assert_eq!(TokenHash::of(&input[..n]).0, expected, "{n} bytes");
        }
        // FIPS 180-2 test vector.
        assert_eq!(TokenHash::of(b"abc").0[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn only_base64url_characters_pass_in_every_position() {
        let good = Token::generate().expose().to_owned();
        for b in 0..=255u8 {
            let alphabet = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url(b), alphabet, "byte {b}");
            for at in [0, 17, 31, 32, TOKEN_LEN - 2] {
                let mut t = good.clone().into_bytes();
                t[at] = b;
                let result = String::from_utf8(t).map(|t| check_wire_form(&t));
                if alphabet {
                    assert!(matches!(result, Ok(Ok(()))), "byte {b} at {at}");
                } else if let Ok(r) = result {
                    assert!(matches!(r, Err(TokenError::Encoding)), "byte {b} at {at}");
                }
            }
        }
    }

    #[test]
    fn generated_tokens_are_distinct_and_parse_back() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
        let p = Token::parse(a.expose()).unwrap();
        assert_eq!(p, a);
        assert_eq!(p.hash(), a.hash());
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(Token::parse(""), Err(TokenError::Empty));
        assert_eq!(Token::parse("abc"), Err(TokenError::Length(3)));
        let long = "A".repeat(1 << 20);
        assert_eq!(Token::parse(&long), Err(TokenError::Length(1 << 20)));
        let bad = "!".repeat(TOKEN_LEN);
        assert_eq!(Token::parse(&bad), Err(TokenError::Encoding));
        // Standard base64 ('+', '/') and padding are not base64url.
        let std = format!("{}+", "A".repeat(TOKEN_LEN - 1));
        assert_eq!(Token::parse(&std), Err(TokenError::Encoding));
        // Non-canonical final character (trailing bits set) is refused.
        let noncanon = format!("{}B", "A".repeat(TOKEN_LEN - 1));
        assert_eq!(Token::parse(&noncanon), Err(TokenError::Encoding));
        // Multi-byte UTF-8 of the right byte length.
        let utf = format!("{}é", "A".repeat(TOKEN_LEN - 2));
        assert_eq!(Token::parse(&utf), Err(TokenError::Encoding));
    }

    proptest::proptest! {
        /// The fast check accepts exactly what a strict base64url decoder accepts.
        #[test]
        fn wire_check_agrees_with_a_strict_decoder(s in "[A-Za-z0-9_-]{42}[A-Za-z0-9_+/=.-]") {
            let mut buf = [0u8; 33];
            let strict = URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut buf) == Ok(TOKEN_BYTES);
            proptest::prop_assert_eq!(Token::parse(&s).is_ok(), strict);
        }

        #[test]
        fn encoded_bytes_always_parse(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let s = URL_SAFE_NO_PAD.encode(bytes);
            proptest::prop_assert!(Token::parse(&s).is_ok());
        }
    }

    #[test]
    fn secrets_never_print() {
        let t = Token::generate();
        let raw = t.expose().to_owned();
        for s in [format!("{t:?}"), format!("{t}"), format!("{:?}", t.hash())] {
            assert!(!s.contains(&raw), "{s}");
        }
        let s = SecretString::new("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secret_string_clones_share_one_buffer_and_compare_by_content() {
        let a = SecretString::new("access-token-value");
        let b = a.clone();
        assert_eq!(a.expose().as_ptr(), b.expose().as_ptr());
        let c = SecretString::from("access-token-value");
        assert_ne!(a.expose().as_ptr(), c.expose().as_ptr());
        assert_eq!(a, c);
        assert_ne!(a, SecretString::from("other"));
        drop(a);
        assert_eq!(b.expose(), "access-token-value");
    }

    #[test]
    fn hash_is_sha256_of_wire_form() {
        let t = Token::parse(&"A".repeat(TOKEN_LEN)).unwrap();
        assert_eq!(
            t.hash().to_hex(),
            "0f007385b6f9d4b7eeb2748605afe1a984a0a3bfa3f014d09e2a784ce9e5cd1a"
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
