//! The atproto OAuth client.

mod cache;
pub mod client;
pub mod client_metadata;
pub mod dpop;
pub mod error;
pub mod http;
pub mod identity;
pub mod jose;
pub mod keys;
pub mod metadata;
pub mod pkce;
mod server;
pub mod session;
mod state;
pub mod token;

pub use client::{AuthorizeOptions, Callback, CallbackParams, OAuthClient, OAuthClientConfig};
pub use client_metadata::{ClientAuth, ClientMetadata};
pub use error::{CallbackError, OAuthError};
pub use session::OAuthSessionData;
pub use token::TokenSet;
