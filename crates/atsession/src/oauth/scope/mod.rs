//! atproto permission scopes: a typed model of every scope form of the
//! [permission spec](https://atproto.com/specs/permission), parsed, validated, normalised
//! and printed with the grammar and the matching rules of the reference implementation
//! (`@atproto/oauth-scopes`), and the questions an app asks of a grant: may it create a
//! record in this collection, call this method on this service, upload this MIME type.
//!
//! # Scope string syntax
//!
//! `resource[:positional][?name=value&name=value…]`: the resource name runs to the first
//! `:` or `?`; the positional part (percent-decoded) stands for one parameter of the
//! resource; the query holds named parameters (form-encoded), repeated for arrays. A
//! parameter may not be both positional and named, and a resource refuses parameters it
//! does not know.
//!
//! | form | meaning |
//! |---|---|
//! | `atproto` | required in every request |
//! | `transition:generic` | everything but `chat.bsky.*` and account/identity control |
//! | `transition:chat.bsky` | `chat.bsky.*` methods |
//! | `transition:email` | reading the account email |
//! | `repo:<collection>[?action=create&action=update&action=delete]` | writing records; all three actions by default; `*` for every collection |
//! | `rpc:<lxm>?aud=<did>%23<service>` (or `aud=*`) | calling a method on a service; not both wildcards |
//! | `blob:<mime pattern>` | uploading blobs: `image/png`, `image/*`, `*/*` |
//! | `account:<email\|repo\|status>[?action=read\|manage]` | account control; `read` by default, `manage` includes `read` |
//! | `identity:<handle\|*>` | handle or full identity control |
//! | `include:<nsid>[?aud=<did>%23<service>]` | a permission set (a lexicon), expanded by the server |
//!
//! Several collections, methods or MIME types are written with named parameters:
//! `repo?collection=a.b.c&collection=a.b.d`. Partial wildcards (`com.example.*`) are not
//! allowed. Scope forms this code does not know (a future resource) are kept as
//! [`Scope::Unknown`] and passed through untouched; they permit nothing here.
//!
//! # Strict and lenient parsing
//!
//! [`ScopeSet::from_str`](std::str::FromStr) is strict: a malformed `repo:`/`rpc:`/…
//! scope is a [`ScopeError`]. What a server *grants* is read with [`ScopeSet::parse_granted`],
//! which never refuses a malformed scope (it is kept as [`Scope::Unknown`] and permits
//! nothing), so a server's answer can never make a session unusable. Both refuse hostile
//! input (overlong, too many scopes, control characters) with a typed error, never a panic.
//!
//! ```
//! use atsession::oauth::scope::{RepoAction, ScopeSet};
//!
//! let granted: ScopeSet = "atproto repo:com.example.note?action=create blob:image/*".parse().unwrap();
//! assert!(granted.allows_repo("com.example.note", RepoAction::Create));
//! assert!(!granted.allows_repo("com.example.note", RepoAction::Delete));
//! assert!(granted.allows_blob("image/png"));
//! assert!(!granted.allows_blob("video/mp4"));
//! // What is missing, in the form the PDS names it:
//! assert_eq!(
//!     granted.check_repo("app.bsky.feed.post", RepoAction::Create).unwrap_err().scope,
//!     "repo:app.bsky.feed.post?action=create"
//! );
//! ```
//!
//! # Layout
//!
//! This layer stands alone: it imports no other layer of [`oauth`](crate::oauth) (the
//! client and the session layer import it). The grammar ([`Scope`] read and written), the
//! parameters of each form, [`ScopeSet`] and what it covers, [`ScopeMissing`] (what a PDS
//! refuses), the XRPC pre-check [`precheck_xrpc`], and permission sets ([`PermissionSet`]).

mod error;
mod form;
mod grammar;
mod missing;
mod params;
mod permission_set;
mod precheck;
mod set;
#[cfg(test)]
mod tests;

pub use error::{MAX_SCOPE_LEN, MAX_SCOPE_STRING_LEN, MAX_SCOPES, ScopeError};
pub use form::Scope;
pub use grammar::{is_did_service_ref, is_mime};
pub use missing::{ScopeMissing, scope_missing};
pub use params::{AccountAction, AccountAttr, Audience, IdentityAttr, RepoAction, RepoActions};
pub use permission_set::{PermissionSet, PermissionSetError, SetPermission, in_namespace};
pub use precheck::precheck_xrpc;
pub use set::ScopeSet;
