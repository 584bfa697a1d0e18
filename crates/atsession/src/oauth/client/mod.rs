//! The OAuth client: authorize, callback, tokens, the authorization-server agent
//! ([`server`]), pending states ([`state`]), scope upgrades ([`upgrade`]), grants
//! ([`grant`]), key rotation ([`key_rotation`]), cleanup, and the client's errors
//! ([`error`]).
//!
//! This layer imports [`wire`](super::wire), [`discovery`](super::discovery) and
//! [`scope`](super::scope), never [`session`](super::session).

mod authorize;
mod callback;
mod cleanup;
pub(crate) mod client_metadata;
mod config;
pub(crate) mod error;
pub(crate) mod grant;
pub mod key_rotation;
pub(crate) mod keys;
pub(crate) mod oauth_client;
mod pds;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod token;
mod tokens;
pub(crate) mod upgrade;

pub use authorize::{AuthorizeOptions, MAX_APP_STATE_LEN, Prompt};
pub use callback::{Callback, CallbackParams};
pub use config::{DEFAULT_METADATA_TTL, DEFAULT_STATE_TTL, OAuthClientConfig};
pub use oauth_client::OAuthClient;
