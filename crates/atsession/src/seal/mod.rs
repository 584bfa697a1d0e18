//! Sealed sessions: stateless, encrypted session data in a cookie or a Bearer token, in the
//! Iron `Fe26.2` format, byte-compatible with `@hapi/iron`, `iron-webcrypto` and
//! `iron-session`.
//!
//! A seal is data encrypted (AES-256-CBC) and authenticated (HMAC-SHA256) under a password,
//! with an optional expiry. Nothing is stored on the server: whoever holds the password can
//! open the seal, and nobody else can read or change it. The price is that a seal cannot be
//! revoked before it expires; use app sessions (server-side) when you need sign-out
//! everywhere.
//!
//! # Sessions in cookies
//!
//! [`SealedSessions`] keeps typed data (any `Serialize + DeserializeOwned`) in a cookie that an
//! iron-session app with the same password can read and write:
//!
//! ```
//! use atsession::seal::SealedSessions;
//! use http::header::{COOKIE, HeaderMap, HeaderValue};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct User {
//!     did: String,
//!     handle: String,
//! }
//!
//! // At least 32 characters; from your configuration, never from source code.
//! let sessions = SealedSessions::<User>::new("a secret of at least 32 characters!!")?;
//!
//! // Sign-in: send these as `Set-Cookie` headers.
//! let alice = User { did: "did:plc:alice".into(), handle: "alice.test".into() };
//! let set_cookie = sessions.create(&alice)?;
//! let mut response = HeaderMap::new();
//! set_cookie.append_to(&mut response);
//!
//! // Each request: read the cookie back.
//! let sent = set_cookie.single().unwrap().to_str().unwrap();
//! let mut request = HeaderMap::new();
//! request.insert(COOKIE, HeaderValue::from_str(sent.split(';').next().unwrap()).unwrap());
//! match sessions.load(&request) {
//!     Ok(Some(loaded)) => {
//!         assert_eq!(loaded.data, alice);
//!         // Present when the expiry slid: send it with the response.
//!         if let Some(refreshed) = loaded.set_cookie {
//!             refreshed.append_to(&mut response);
//!         }
//!     }
//!     Ok(None) => { /* no session: signed out */ }
//!     Err(_forged_or_expired) => { /* treat as signed out; maybe send sessions.clear() */ }
//! }
//!
//! // Sign-out.
//! sessions.clear().append_to(&mut response);
//! # Ok::<(), atsession::seal::SealedSessionError>(())
//! ```
//!
//! The defaults are those of iron-session except the TTL: cookie `sid`, `HttpOnly; Secure;
//! SameSite=Lax; Path=/`, a 7-day TTL, `Max-Age` the TTL minus 60 s, the `~2` suffix. The
//! expiry slides: see [`SealedSessions`] for the rule. A seal over the 4096-byte cookie limit is
//! split into `sid.0`..`sid.3` as iron-session 9 does with `chunk: true`; beyond that,
//! [`SealedSessionError::TooManyChunks`].
//!
//! # Bearer tokens for mobile clients
//!
//! The same seal works as a Bearer token: [`SealedSessions::seal_bearer`],
//! [`SealedSessions::from_bearer`] (reads `Authorization: Bearer <seal>`), and
//! [`SealedSessions::refresh_bearer`] (same data, a new expiry).
//!
//! ```
//! use atsession::seal::SealedSessions;
//! use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
//!
//! let sessions = SealedSessions::<String>::new("a secret of at least 32 characters!!")?;
//! let token = sessions.seal_bearer(&"did:plc:alice".to_owned())?;
//!
//! let mut request = HeaderMap::new();
//! request.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
//! let session = sessions.from_bearer(&request)?.expect("a token");
//! assert_eq!(session.data, "did:plc:alice");
//!
//! let renewed = sessions.refresh_bearer(&token)?;
//! assert_eq!(sessions.unseal_bearer(&renewed)?.data, "did:plc:alice");
//! # Ok::<(), atsession::seal::SealedSessionError>(())
//! ```
//!
//! # Password rotation
//!
//! Give every password an id. New seals use the current one (the highest numeric id, as in
//! iron-session, unless you choose); seals made with any listed password still open, and
//! [`SealedSessions::load`] re-seals them with the current one. Drop an old password once its
//! seals have expired.
//!
//! ```
//! use atsession::seal::{Passwords, SealedSessions};
//!
//! let v1 = "the first password, 32 characters or more";
//! let v2 = "the second password, 32 characters or more";
//! let before = SealedSessions::<u32>::builder(Passwords::new([("1", v1)])?).build()?;
//! let after = SealedSessions::<u32>::builder(Passwords::new([("1", v1), ("2", v2)])?).build()?;
//!
//! let old_token = before.seal_bearer(&7)?;
//! let opened = after.unseal_bearer(&old_token)?;
//! assert_eq!((opened.data, opened.password_id.as_str()), (7, "1"));
//! assert!(after.seal_bearer(&7)?.starts_with("Fe26.2*2*"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The format itself
//!
//! [`Iron`] seals and unseals any JSON value (or raw bytes) with a [`Passwords`] set, a TTL and
//! a [`Clock`](crate::clock::Clock); see [`Iron`] for the format. Every malformed, forged,
//! expired or oversized input is a [`SealError`], checked cheapest first, never a panic; MACs
//! are compared in constant time; errors never quote a password or the sealed data.
//!
//! ```
//! use atsession::seal::{Iron, Passwords, SealError};
//!
//! // A seal made by @hapi/iron: Iron.seal({a: 1, b: 2, c: [3, 4, 5], d: {e: 'f'}},
//! //   {id: 'k1', secret: PASSWORD}, Iron.defaults)
//! let sealed = "Fe26.2*k1*c71a283a2e25ad48dd0e008f301c33638ab57607ad38054658586f68399b08a7\
//!     *sGBqY_64yHUpQCbzl892og*AQbPc0duDyn5pkk-PQWO5MJ8TojKitmL-hF2vwpEC3N8ilACrk3t0OclnAxpRQaE\
//!     **6dabce569b878db00903b5cbff18f5df1cc3aa53ff428c12a4c443bfcc3010f6\
//!     *6NrUD1VCQdsAVtQJvPqhx1w3uD9aFsFA_gduaoaiTp8";
//! let iron = Iron::new(Passwords::new([(
//!     "k1",
//!     "some_not_random_password_that_is_at_least_32_characters",
//! )])?);
//! let value: serde_json::Value = iron.unseal(sealed)?;
//! assert_eq!(value["d"]["e"], "f");
//!
//! let mut forged = sealed.to_owned();
//! forged.replace_range(40..41, "0");
//! assert_eq!(iron.unseal::<serde_json::Value>(&forged), Err(SealError::BadMac));
//! # Ok::<(), SealError>(())
//! ```

mod cookies;
mod error;
mod iron;
mod passwords;
mod sessions;
#[cfg(test)]
mod tests;

pub use cookies::{MAX_CHUNKS, MAX_COOKIE_BYTES, SetCookies};
pub use error::{Field, JsonCategory, JsonError, SealError};
pub use iron::{DEFAULT_MAX_SEAL_LEN, Iron, PREFIX, TIMESTAMP_SKEW, Unsealed};
pub use passwords::{MIN_PASSWORD_LEN, Passwords};
pub use sessions::{
    DEFAULT_COOKIE_NAME, DEFAULT_TTL, IRON_SESSION_SUFFIX, Loaded, SealedSessionError,
    SealedSessions, SealedSessionsBuilder,
};
