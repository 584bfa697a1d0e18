//! atsession: session management for AT Protocol applications.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod clock;
pub mod crypto;
#[cfg(feature = "oauth")]
pub mod oauth;
pub mod secret;
pub mod store;
pub mod syntax;
