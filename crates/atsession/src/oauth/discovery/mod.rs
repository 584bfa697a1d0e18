//! Discovery: who the user is and who serves them. Identity resolution (handle → DID →
//! document → PDS, [`identity`]), and the PDS's and the authorization server's metadata
//! ([`metadata`]).
//!
//! This layer imports only [`wire`](super::wire) (and the crate's modules outside
//! [`oauth`](crate::oauth)).

pub(crate) mod identity;
pub(crate) mod metadata;
