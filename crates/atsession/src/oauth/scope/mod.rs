//! atproto permission scopes.
//!
//! This layer stands alone: it imports no other layer of [`oauth`](crate::oauth).

pub mod form;
pub mod permission_set;

pub use form::*;
