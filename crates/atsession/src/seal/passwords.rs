//! Password sets for Iron seals: seal with the current password, unseal with any known one.

use std::fmt;

use hmac::{KeyInit, Mac};

use crate::secret::SecretString;

use super::SealError;

/// The shortest password Iron accepts, in characters (UTF-16 code units, as JavaScript counts).
pub const MIN_PASSWORD_LEN: usize = 32;

/// One password and its id.
#[derive(Clone)]
pub(crate) struct Password {
    pub(crate) id: String,
    /// HMAC-SHA1 keyed with the password: the PBKDF2 pseudo-random function, keyed once so
    /// each key derivation starts from it. Wiped on drop (the `zeroize` features of hmac and
    /// sha1).
    prf: hmac::Hmac<sha1::Sha1>,
}

impl Password {
    fn new(id: String, secret: &SecretString) -> Self {
        let prf = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { id, prf }
    }

    /// PBKDF2-HMAC-SHA1 with one iteration and a 32-byte output, Iron's key derivation:
    /// `T_i = HMAC(password, salt || INT_BE(i))`, key = `T_1 || T_2[..12]`.
    pub(crate) fn derive_key(&self, salt: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        for (block, chunk) in (1u32..).zip(key.chunks_mut(20)) {
            let mut prf = self.prf.clone();
            prf.update(salt);
            prf.update(&block.to_be_bytes());
            let t = prf.finalize().into_bytes();
            chunk.copy_from_slice(&t[..chunk.len()]);
        }
        key
    }
}

/// The passwords a sealer knows, and which one it seals with.
///
/// Two shapes, matching what the Node libraries accept:
///
/// - [`Passwords::single`]: one password without an id, like passing a bare string to
///   `@hapi/iron` or `iron-webcrypto`. Seals carry an empty password id; unsealing uses this
///   password whatever id the seal names.
/// - [`Passwords::new`]: a keyring `{id: password}`, like passing an object to those libraries
///   or to iron-session. Seals carry the current id; unsealing looks the seal's id up (an empty
///   id means `default`) and refuses unknown ids. The current id is the one chosen with
///   [`Passwords::with_current`], or else the highest numeric id (iron-session's rule), or else,
///   when no id is numeric, the last one given.
///
/// Invariants: at least one password; every password has at least [`MIN_PASSWORD_LEN`]
/// characters; every id matches `^\w+$`; ids are distinct. Passwords never print themselves and
/// are wiped from memory on drop.
///
/// ```
/// use atsession::seal::Passwords;
///
/// let old = "an old password of at least 32 characters";
/// let new = "the new password, also 32 characters or more";
/// let keyring = Passwords::new([("1", old), ("2", new)])?;
/// assert_eq!(keyring.current_id(), "2");
/// assert!(!format!("{keyring:?}").contains("password of"));
///
/// // A new id rotates the password: seals made with "1" still open.
/// let pinned = keyring.with_current("1")?;
/// assert_eq!(pinned.current_id(), "1");
/// # Ok::<(), atsession::seal::SealError>(())
/// ```
#[derive(Clone)]
pub struct Passwords {
    entries: Vec<Password>,
    current: usize,
    any_id: bool,
}

fn check_secret(secret: &SecretString) -> Result<(), SealError> {
    if secret.expose().encode_utf16().count() < MIN_PASSWORD_LEN {
        return Err(SealError::PasswordTooShort {
            min: MIN_PASSWORD_LEN,
        });
    }
    Ok(())
}

/// Whether `id` matches JavaScript's `^\w+$`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Passwords {
    /// One password, no id (see the type's documentation).
    ///
    /// # Errors
    /// [`SealError::PasswordTooShort`] when it has fewer than 32 characters.
    ///
    /// ```
    /// use atsession::seal::{Passwords, SealError};
    ///
    /// assert!(Passwords::single("a password of at least 32 characters").is_ok());
    /// assert!(matches!(Passwords::single("short"), Err(SealError::PasswordTooShort { .. })));
    /// ```
    pub fn single(secret: impl Into<SecretString>) -> Result<Self, SealError> {
        let secret = secret.into();
        check_secret(&secret)?;
        Ok(Self {
            entries: vec![Password::new(String::new(), &secret)],
            current: 0,
            any_id: true,
        })
    }

    /// A keyring of `(id, password)` pairs (see the type's documentation).
    ///
    /// # Errors
    /// [`SealError::NoPasswords`], [`SealError::InvalidPasswordId`],
    /// [`SealError::DuplicatePasswordId`] or [`SealError::PasswordTooShort`].
    ///
    /// ```
    /// use atsession::seal::Passwords;
    ///
    /// let p = Passwords::new([("default", "a password of at least 32 characters")])?;
    /// assert_eq!(p.current_id(), "default");
    /// assert!(Passwords::new([("no spaces", "a password of at least 32 characters")]).is_err());
    /// # Ok::<(), atsession::seal::SealError>(())
    /// ```
    pub fn new<I, K, S>(pairs: I) -> Result<Self, SealError>
    where
        I: IntoIterator<Item = (K, S)>,
        K: Into<String>,
        S: Into<SecretString>,
    {
        let mut entries: Vec<Password> = Vec::new();
        for (id, secret) in pairs {
            let id = id.into();
            let secret = secret.into();
            if !valid_id(&id) {
                return Err(SealError::InvalidPasswordId);
            }
            check_secret(&secret)?;
            if entries.iter().any(|e| e.id == id) {
                return Err(SealError::DuplicatePasswordId(id));
            }
            entries.push(Password::new(id, &secret));
        }
        if entries.is_empty() {
            return Err(SealError::NoPasswords);
        }
        let newest_numeric = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.id.bytes().all(|b| b.is_ascii_digit()))
            // Compare numerically without overflow: strip leading zeros, then longer is larger.
            .max_by(|(_, a), (_, b)| {
                let a = a.id.trim_start_matches('0');
                let b = b.id.trim_start_matches('0');
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            })
            .map(|(i, _)| i);
        let current = newest_numeric.unwrap_or(entries.len() - 1);
        Ok(Self {
            entries,
            current,
            any_id: false,
        })
    }

    /// Seals with the password `id` from now on. Has no effect on which seals open.
    ///
    /// # Errors
    /// [`SealError::UnknownPasswordId`] when the set has no such id.
    pub fn with_current(mut self, id: &str) -> Result<Self, SealError> {
        let i = self
            .entries
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| SealError::unknown_id(id))?;
        self.current = i;
        Ok(self)
    }

    /// The id new seals carry (empty for [`Passwords::single`]).
    #[must_use]
    pub fn current_id(&self) -> &str {
        &self.entries[self.current].id
    }

    /// The ids of all known passwords.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.id.as_str())
    }

    pub(crate) fn current(&self) -> &Password {
        &self.entries[self.current]
    }

    /// Whether a seal carrying `seal_id` was made with the current password. Always true for
    /// [`Passwords::single`], which has only one.
    pub(crate) fn is_current(&self, seal_id: &str) -> bool {
        if self.any_id {
            return true;
        }
        let id = if seal_id.is_empty() {
            "default"
        } else {
            seal_id
        };
        id == self.current_id()
    }

    /// The password that opens a seal whose password id field is `seal_id`.
    pub(crate) fn find(&self, seal_id: &str) -> Option<&Password> {
        if self.any_id {
            return self.entries.first();
        }
        let id = if seal_id.is_empty() {
            "default"
        } else {
            seal_id
        };
        self.entries.iter().find(|e| e.id == id)
    }
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("current", &self.current_id())
            .field("any_id", &self.any_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn newest_numeric_id_is_current() {
        let p = Passwords::new([("2", A), ("10", B), ("9", A)]).unwrap();
        assert_eq!(p.current_id(), "10");
        let p = Passwords::new([("alpha", A), ("beta", B)]).unwrap();
        assert_eq!(p.current_id(), "beta");
        let p = Passwords::new([("2", A), ("beta", B)]).unwrap();
        assert_eq!(p.current_id(), "2");
        let p = Passwords::new([("99999999999999999999999", A), ("1", B)]).unwrap();
        assert_eq!(p.current_id(), "99999999999999999999999");
    }

    #[test]
    fn bad_sets_are_refused() {
        let empty: [(&str, &str); 0] = [];
        assert_eq!(Passwords::new(empty).unwrap_err(), SealError::NoPasswords);
        assert_eq!(
            Passwords::new([("", A)]).unwrap_err(),
            SealError::InvalidPasswordId
        );
        assert_eq!(
            Passwords::new([("a-b", A)]).unwrap_err(),
            SealError::InvalidPasswordId
        );
        assert_eq!(
            Passwords::new([("1", A), ("1", B)]).unwrap_err(),
            SealError::DuplicatePasswordId("1".into())
        );
        assert_eq!(
            Passwords::new([("1", "x".repeat(31))]).unwrap_err(),
            SealError::PasswordTooShort { min: 32 }
        );
        // 32 UTF-16 units: 16 characters outside the BMP count twice, as in JavaScript.
        assert!(Passwords::single("😀".repeat(16)).is_ok());
        assert!(Passwords::single("é".repeat(31)).is_err());
        assert!(
            Passwords::new([("1", A)])
                .unwrap()
                .with_current("2")
                .is_err()
        );
    }

    #[test]
    fn lookup_follows_iron() {
        let p = Passwords::new([("default", A), ("k2", B)]).unwrap();
        assert_eq!(p.find("").unwrap().id, "default");
        assert_eq!(p.find("k2").unwrap().id, "k2");
        assert!(p.find("k3").is_none());
        let s = Passwords::single(A).unwrap();
        assert_eq!(s.current_id(), "");
        assert!(s.find("anything").is_some());
        assert!(s.find("").is_some());
    }

    #[test]
    fn key_derivation_is_pbkdf2_sha1_one_iteration() {
        for (pw, salt) in [
            (
                A,
                "c71a283a2e25ad48dd0e008f301c33638ab57607ad38054658586f68399b08a7",
            ),
            ("😀 a password with unicode, long enough", "x"),
            (B, ""),
        ] {
            let p = Password::new("1".into(), &SecretString::new(pw));
            let mut expected = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(pw.as_bytes(), salt.as_bytes(), 1, &mut expected);
            assert_eq!(*p.derive_key(salt.as_bytes()), expected);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let p = Passwords::new([("1", A)]).unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("aaaa"), "{d}");
        assert!(d.contains("\"1\""), "{d}");
    }
}
