//! Whether a granted scope covers a required one (for routes that require a scope, such as
//! the axum adapter's `RequireScope`), with the typed atproto permission scopes of
//! [`oauth::scope`](crate::oauth::scope).

use crate::oauth::scope::{Scope, ScopeSet};

/// Whether `granted` (a space-separated scope string from a token response) permits what
/// the scope `required` stands for: the same scope, or a broader one
/// ([`ScopeSet::covers`]). A `required` that is not a valid scope must appear as is.
///
/// ```
/// use atsession::auth::scope_covers;
/// assert!(scope_covers("atproto transition:generic", "transition:generic"));
/// assert!(!scope_covers("atproto", "transition:generic"));
/// assert!(!scope_covers("atproto transition:generic", "transition"));
/// assert!(scope_covers("atproto repo:app.bsky.feed.post", "repo:app.bsky.feed.post?action=create"));
/// assert!(scope_covers("atproto transition:generic", "repo:app.bsky.feed.post"));
/// assert!(!scope_covers("atproto repo:app.bsky.feed.post?action=create", "repo:app.bsky.feed.post"));
/// ```
#[must_use]
pub fn scope_covers(granted: &str, required: &str) -> bool {
    let literal = || granted.split_ascii_whitespace().any(|s| s == required);
    match (ScopeSet::parse_granted(granted), required.parse::<Scope>()) {
        (Ok(set), Ok(scope)) => set.covers(&scope) || literal(),
        _ => literal(),
    }
}
