//! Cryptography that atsession applies to what it stores: AES-256-GCM envelopes for OAuth
//! token sets, DPoP keys and authorization states, under keys the application holds
//! ([`AtRestKey`], [`AtRestKeyring`]), with key ids for rotation.

mod at_rest;

pub use at_rest::*;
