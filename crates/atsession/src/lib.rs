//! atsession: session management for AT Protocol applications.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod app;
pub mod clock;
pub mod lock;
pub mod secret;
pub mod store;
pub mod syntax;
