//! Cryptography that atsession applies to what it stores.
//!
//! - [`at_rest`]: AES-256-GCM envelopes for OAuth token sets, DPoP keys and authorization
//!   states, under keys the application holds, with key ids for rotation.

pub mod at_rest;
