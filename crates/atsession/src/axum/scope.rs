//! Whether a granted scope covers a required one, for [`RequireScope`](super::RequireScope).
//!
//! For now a scope token must appear as is in the granted scope string (space-separated).
//! This is the seam for typed atproto permission scopes: when the scope module of the OAuth
//! client can tell that `repo:*` covers `repo:app.bsky.feed.post`, this function asks it.

/// Whether `granted` (a space-separated scope string from a token response) includes the
/// scope token `required`.
///
/// ```
/// use atsession::axum::scope_covers;
/// assert!(scope_covers("atproto transition:generic", "transition:generic"));
/// assert!(!scope_covers("atproto", "transition:generic"));
/// assert!(!scope_covers("atproto transition:generic", "transition"));
/// ```
#[must_use]
pub fn scope_covers(granted: &str, required: &str) -> bool {
    granted.split_ascii_whitespace().any(|s| s == required)
}
