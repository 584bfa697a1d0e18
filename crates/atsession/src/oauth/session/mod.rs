//! The session layer, on top: the [`getter`] that refreshes grants (one refresh per grant
//! at a time), [`OAuthSession`](oauth_session::OAuthSession) for calls to the user's PDS,
//! XRPC errors, the scope pre-check, and the [`events`] sent to the app.
//!
//! This layer may import every other layer of [`oauth`](crate::oauth).

mod callback;
pub(crate) mod events;
pub(crate) mod getter;
pub(crate) mod oauth_session;
mod scope_check;
mod xrpc_error;
