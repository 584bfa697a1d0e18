//! TLS to PostgreSQL: which connections use it, and the rustls configuration.
//!
//! `sslmode=require`, `verify-ca` or `verify-full` in the URL make the store connect over
//! TLS (rustls with the *ring* provider; no process-wide provider is installed) and verify
//! the server's certificate chain and host name, whatever the mode says: against the
//! platform's roots, or against the PEM file named by `sslrootcert=<path>`. Without one of
//! these modes (the default is `prefer`) connections are plain, as before: use them on
//! loopback, a private network or a Unix socket. TLS is configured in the `postgres://` URL
//! form only; the `key=value` form connects without it.

use std::sync::Arc;

use super::{BACKEND, StoreError};
use crate::store::open::{read_ca_file, take_query_param};

/// A URL ready for `tokio_postgres::Config`, and the TLS configuration if TLS is required.
pub(super) struct Prepared {
    pub(super) url: String,
    pub(super) tls: Option<rustls::ClientConfig>,
}

/// Takes `sslrootcert` out of the URL (tokio-postgres does not know it) and turns the
/// verifying modes into `require` (the only one it knows that insists on TLS).
pub(super) fn prepare(url: &str) -> Result<Prepared, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // The `key=value` form: plain connections only (a required TLS would fail later,
        // with a less clear error).
        if [
            "sslmode=require",
            "sslmode=verify-ca",
            "sslmode=verify-full",
        ]
        .iter()
        .any(|m| url.contains(m))
        {
            return Err(StoreError::backend(
                BACKEND,
                "connect",
                "TLS settings are read from the postgres:// URL form only",
            ));
        }
        return Ok(Prepared {
            url: url.to_owned(),
            tls: None,
        });
    }
    let (url, root_cert) = take_query_param(url, "sslrootcert");
    let (mut url, mode) = take_query_param(&url, "sslmode");
    let required = match mode.as_deref() {
        Some("require" | "verify-ca" | "verify-full") => true,
        Some("disable" | "allow" | "prefer") | None => false,
        Some(_) => {
            return Err(StoreError::backend(
                BACKEND,
                "connect",
                "the PostgreSQL URL has an unknown sslmode",
            ));
        }
    };
    if let Some(m) = &mode {
        let mode = if required { "require" } else { m.as_str() };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("sslmode=");
        url.push_str(mode);
    }
    let tls = if required {
        Some(client_config(root_cert.as_deref())?)
    } else {
        None
    };
    Ok(Prepared { url, tls })
}

/// rustls with the *ring* provider, trusting `root_cert`'s certificates or the platform's.
fn client_config(root_cert: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    let failed = |e: rustls::Error| StoreError::backend(BACKEND, "connect", e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(failed)?;
    let config = match root_cert {
        Some(path) => builder.with_root_certificates(read_ca_file(BACKEND, path)?),
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder.with_platform_verifier().map_err(failed)?
        }
    };
    Ok(config.with_no_client_auth())
}
