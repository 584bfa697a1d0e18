//! What a PDS refuses: the scope a call needs and the grant lacks, as the PDS names it.

use super::error::MAX_SCOPE_LEN;
use super::form::{Scope, check_chars};

/// A scope a call needs and the grant does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the grant lacks the scope `{scope}`")]
pub struct ScopeMissing {
    /// The missing scope, in the form the PDS names it
    /// (`repo:app.bsky.feed.post?action=create`).
    pub scope: String,
}

impl ScopeMissing {
    pub(super) fn new(scope: Scope) -> Self {
        Self {
            scope: scope.to_string(),
        }
    }
}

/// The scope a PDS answer says is missing: a `403` whose XRPC error is
/// `ScopeMissingError`, with the message `Missing required scope "<scope>"`. `None` for
/// any other answer; `Some("")` when the PDS did not name the scope.
///
/// ```
/// use atsession::oauth::scope::scope_missing;
///
/// let msg = r#"Missing required scope "repo:app.bsky.feed.post?action=create""#;
/// assert_eq!(
///     scope_missing(403, "ScopeMissingError", Some(msg)).as_deref(),
///     Some("repo:app.bsky.feed.post?action=create")
/// );
/// assert_eq!(scope_missing(400, "ScopeMissingError", Some(msg)), None);
/// assert_eq!(scope_missing(403, "Forbidden", Some(msg)), None);
/// assert_eq!(scope_missing(403, "ScopeMissingError", None).as_deref(), Some(""));
/// ```
#[must_use]
pub fn scope_missing(status: u16, error: &str, message: Option<&str>) -> Option<String> {
    if status != 403 || error != "ScopeMissingError" {
        return None;
    }
    let named = message
        .and_then(|m| m.strip_prefix("Missing required scope \""))
        .and_then(|m| m.strip_suffix('"'))
        .filter(|s| s.len() <= MAX_SCOPE_LEN && check_chars(s).is_ok() && !s.contains(' '));
    Some(named.map(str::to_owned).unwrap_or_default())
}
