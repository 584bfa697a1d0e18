//! Why a scope or a scope string was refused, and the limits on their size.

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

pub(super) fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}
