//! The OAuth client: authorize, callback, tokens, the authorization-server agent
//! ([`server`]), pending states ([`state`]), scope upgrades ([`upgrade`]), grants
//! ([`grant`]), key rotation ([`key_rotation`]), cleanup, and the client's errors
//! ([`error`]).
//!
//! This layer imports [`wire`](super::wire), [`discovery`](super::discovery) and
//! [`scope`](super::scope), never [`session`](super::session).

mod cleanup;
pub mod client_metadata;
pub mod error;
pub mod grant;
pub mod key_rotation;
pub mod oauth_client;
pub(crate) mod server;
pub(crate) mod state;
pub mod token;
pub mod upgrade;
