//! atsession: session management for AT Protocol applications.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod seal;
pub mod secret;
pub mod syntax;
