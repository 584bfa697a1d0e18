//! The wire: what goes over HTTP, with no knowledge of grants or sessions. HTTP with bounds
//! ([`http`]), DPoP proofs and nonces ([`dpop`]), JOSE keys and JWTs ([`jose`]), PKCE
//! ([`pkce`]), presigned ECDSA ([`presign`]), TTL caches ([`cache`]), and the PDS call's
//! primitives: its path ([`pds_path`]), headers ([`pds_headers`]), request
//! ([`pds_request`]) and response ([`pds_response`]).
//!
//! This layer imports no other layer of [`oauth`](crate::oauth).

pub(crate) mod cache;
pub(crate) mod dpop;
pub(crate) mod http;
pub(crate) mod jose;
pub(crate) mod pds_headers;
pub(crate) mod pds_path;
pub(crate) mod pds_request;
pub(crate) mod pds_response;
pub(crate) mod pkce;
pub(crate) mod presign;
