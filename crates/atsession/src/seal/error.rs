//! Why a seal could not be made or opened.

use std::fmt;

/// A field of an `Fe26.2` seal, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The encryption salt (third field).
    EncryptionSalt,
    /// The AES initialisation vector (fourth field).
    Iv,
    /// The ciphertext (fifth field).
    Ciphertext,
    /// The HMAC salt (seventh field).
    MacSalt,
    /// The HMAC (eighth field).
    Mac,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EncryptionSalt => "encryption salt",
            Self::Iv => "iv",
            Self::Ciphertext => "ciphertext",
            Self::MacSalt => "hmac salt",
            Self::Mac => "hmac",
        })
    }
}

/// Where sealed data failed to (de)serialise. Carries the position and the kind of failure,
/// never serde's message: that message can quote the data, and the data is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// Syntax, data (wrong shape for the type), end of input, or I/O.
    pub category: JsonCategory,
    /// 1-based line of the failure, 0 if unknown.
    pub line: usize,
    /// 1-based column of the failure, 0 if unknown.
    pub column: usize,
}

/// The kind of a [`JsonError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonCategory {
    /// Not JSON at all.
    Syntax,
    /// Valid JSON of the wrong shape for the requested type.
    Data,
    /// The JSON text ends too early.
    Eof,
    /// Anything else (a serializer refused the value, an I/O error).
    Other,
}

impl From<&serde_json::Error> for JsonError {
    fn from(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let category = match e.classify() {
            Category::Syntax => JsonCategory::Syntax,
            Category::Data => JsonCategory::Data,
            Category::Eof => JsonCategory::Eof,
            Category::Io => JsonCategory::Other,
        };
        Self {
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.category {
            JsonCategory::Syntax => "not valid JSON",
            JsonCategory::Data => "JSON of the wrong shape",
            JsonCategory::Eof => "truncated JSON",
            JsonCategory::Other => "not serialisable as JSON",
        };
        if self.line == 0 {
            f.write_str(what)
        } else {
            write!(f, "{what} at line {}, column {}", self.line, self.column)
        }
    }
}

/// Why a seal could not be made or opened, or why a password set is unusable.
///
/// Messages never contain a password, a key, the sealed data or any part of the seal except
/// a password id that matches `^\w{1,64}$`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The seal is the empty string.
    #[error("seal is empty")]
    Empty,
    /// The seal is longer than the configured limit; nothing else was looked at.
    #[error("seal is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// The length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The seal does not have eight `*`-separated fields.
    #[error("seal has {0} fields, expected 8")]
    FieldCount(usize),
    /// The first field is not `Fe26.2`.
    #[error("seal does not start with Fe26.2")]
    Prefix,
    /// The expiration field is neither empty nor a positive decimal number of milliseconds.
    #[error("seal expiration is not a positive number of milliseconds")]
    Expiration,
    /// The seal expired (more than the allowed clock skew ago).
    #[error("seal expired")]
    Expired,
    /// No known password has the seal's password id (`default` when the id is empty).
    #[error("no password with id {id:?}")]
    UnknownPasswordId {
        /// The id, or `<invalid>` when it is not `^\w{1,64}$`.
        id: String,
    },
    /// A salt field is empty.
    #[error("seal {0} is empty")]
    EmptySalt(Field),
    /// A field is not unpadded base64url, or decodes to the wrong length.
    #[error("seal {0} is not valid base64url of the right length")]
    Base64(Field),
    /// The HMAC does not match: the seal was altered or made with another password.
    #[error("seal hmac does not match")]
    BadMac,
    /// The MAC matched but the ciphertext does not decrypt (bad length or padding).
    #[error("seal ciphertext does not decrypt")]
    Decrypt,
    /// The sealed data is not JSON of the expected shape (on unseal), or the value could not be
    /// serialised (on seal).
    #[error("sealed data is {0}")]
    Json(JsonError),
    /// A password is shorter than 32 characters.
    #[error("password is shorter than {min} characters")]
    PasswordTooShort {
        /// The minimum length.
        min: usize,
    },
    /// A password id does not match `^\w+$` (ASCII letters, digits, underscore).
    #[error("password id is not made of ASCII letters, digits and underscores")]
    InvalidPasswordId,
    /// The same password id was given twice.
    #[error("password id {0:?} given twice")]
    DuplicatePasswordId(String),
    /// A password set needs at least one password.
    #[error("no passwords given")]
    NoPasswords,
}

impl SealError {
    /// An [`SealError::UnknownPasswordId`] that repeats the id only when it is harmless.
    pub(crate) fn unknown_id(id: &str) -> Self {
        let printable = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        Self::UnknownPasswordId {
            id: if id.is_empty() {
                "default".to_owned()
            } else if printable {
                id.to_owned()
            } else {
                "<invalid>".to_owned()
            },
        }
    }
}
