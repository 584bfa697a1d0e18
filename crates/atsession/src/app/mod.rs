//! App sessions: the app's own server-side login sessions.
//!
//! A session is created when a user logs in and is found again from the request's cookie
//! or `Authorization: Bearer` header. The client holds a 256-bit random session token (and,
//! if enabled, a short-lived access token beside it); the store holds only their SHA-256.
//!
//! Lifetimes: a session ends after [`idle_timeout`](SessionConfig::idle_timeout) without
//! use (sliding; use is recorded at most once per
//! [`touch_interval`](SessionConfig::touch_interval)) or after
//! [`absolute_timeout`](SessionConfig::absolute_timeout), whichever comes first; both are
//! checked on every read, and an expired session found is deleted.
//!
//! Updates are compare-and-swap on a version: a concurrent writer gets
//! [`SessionError::Conflict`], never a silent lost write, and a deleted session is never
//! written back.

mod config;
mod cookie;
mod error;
mod manager;
mod record;

pub use self::config::{CookieConfig, SessionConfig, SessionConfigError};
pub use self::cookie::CredentialSource;
pub use self::error::SessionError;
pub use self::manager::{
    CleanupTask, CreateOptions, LoadedSession, NewSession, Refreshed, SessionManager,
};
pub use self::record::{Session, SessionId, StoredSession};
pub use ::cookie::SameSite;
