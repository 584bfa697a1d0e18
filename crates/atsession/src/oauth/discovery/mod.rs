//! Discovery: who the user is and who serves them. Identity resolution (handle → DID →
//! document → PDS, [`identity`]), the PDS's and the authorization server's metadata
//! ([`metadata`]), and the client's own keys ([`keys`]).
//!
//! This layer imports only [`wire`](super::wire) (and the crate's modules outside
//! [`oauth`](crate::oauth)).

pub(crate) mod identity;
pub(crate) mod keys;
pub(crate) mod metadata;
