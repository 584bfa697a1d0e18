//! Opening a store from a URL, with the backend chosen at run time.
//!
//! Errors ([`OpenError`]) name the store and the host, never the URL's user or password.

#[cfg(any(feature = "postgres", feature = "redis"))]
use std::error::Error as StdError;

use super::{AnyStore, MemoryStore, StoreError};

/// Why a store could not be opened from its URL. Names the store (and the host it was
/// asked to reach), never the URL's user name or password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL's scheme names no store.
    #[error(
        "unknown store URL scheme `{scheme}:` (expected memory:, sqlite://, postgres://, \
         postgresql://, redis:// or rediss://, or a file path)"
    )]
    UnknownScheme {
        /// The scheme (at most 32 characters of `a-z0-9+.-`).
        scheme: String,
    },
    /// The URL names a store this build does not have.
    #[error("the {store} store is not in this build (enable the feature `{store}`)")]
    NotEnabled {
        /// Which store.
        store: &'static str,
    },
    /// The URL does not parse.
    #[error("the {store} store URL is malformed: {reason}")]
    BadUrl {
        /// Which store.
        store: &'static str,
        /// What is wrong (never a part of the URL).
        reason: String,
    },
    /// The URL's port is not a number from 1 to 65535.
    #[error("the {store} store URL has a bad port (expected a number from 1 to 65535)")]
    BadPort {
        /// Which store.
        store: &'static str,
    },
    /// The server could not be reached (refused, timed out, no route, unknown host).
    #[error("the {store} store at {address} could not be reached")]
    Unreachable {
        /// Which store.
        store: &'static str,
        /// The host (and port) asked for.
        address: String,
        /// The driver's error.
        #[source]
        source: StoreError,
    },
    /// The server's TLS certificate is not trusted (unknown issuer, wrong host name,
    /// expired).
    #[error("the {store} server at {address} presented a TLS certificate that is not trusted")]
    UntrustedCertificate {
        /// Which store.
        store: &'static str,
        /// The host (and port) asked for.
        address: String,
        /// The TLS error.
        #[source]
        source: StoreError,
    },
    /// The server answered but the store could not be opened (authentication, migration,
    /// a file that cannot be created, a CA file that cannot be read, …).
    #[error("the {store} store at {address} could not be opened")]
    Open {
        /// Which store.
        store: &'static str,
        /// The host (and port), or the file.
        address: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

/// Opens the store a URL names; for SQLite and PostgreSQL the schema is created or
/// migrated.
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory:` | [`MemoryStore`] | always |
/// | `sqlite://relative.db`, `sqlite:///absolute.db`, `sqlite::memory:`, a bare path | SQLite | `sqlite` |
/// | `postgres://…`, `postgresql://…` (TLS with `sslmode=require` or `verify-full`) | PostgreSQL | `postgres` |
/// | `redis://…`, `rediss://…` (TLS) | Redis / Valkey | `redis` |
///
/// For TLS the server's certificate is checked against the platform's roots, or against the
/// CA certificates of the PEM file named by `sslrootcert=<path>` in the URL's query (for
/// PostgreSQL and Redis alike). The certificate chain and the host name are always verified:
/// `sslmode=require`, `verify-ca` and `verify-full` all mean *encrypted and verified*.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use atsession::store::{OpenError, open};
///
/// let store = open("memory:").await.unwrap();
/// assert_eq!(store.backend(), "memory");
/// let dir = tempfile::tempdir().unwrap();
/// let store = open(dir.path().join("app.db").to_str().unwrap()).await.unwrap();
/// assert_eq!(store.backend(), "sqlite");
///
/// let err = open("mysql://root:hunter2@db/app").await.unwrap_err();
/// assert!(matches!(err, OpenError::UnknownScheme { .. }));
/// assert!(!err.to_string().contains("hunter2"));
/// # }
/// ```
pub async fn open(url: &str) -> Result<AnyStore, OpenError> {
    let url = url.trim();
    match scheme(url) {
        Some("memory") => Ok(MemoryStore::new().into()),
        Some("sqlite") | None => open_sqlite(url).await,
        Some("postgres" | "postgresql") => open_postgres(url).await,
        Some("redis" | "rediss") => open_redis(url).await,
        Some(other) => Err(OpenError::UnknownScheme {
            scheme: other.to_owned(),
        }),
    }
}

/// Opens the store a URL names without writing to it, for tools that only look: no file,
/// table, schema or key is created and nothing is migrated. The store must exist and be
/// current, else the error's source is a [`StoreError::Database`] saying why (missing,
/// another application's, or at another schema version); writes through the store fail.
///
/// What *current* means per backend: SQLite, `user_version` equal to
/// [`sqlite::SCHEMA_VERSION`](super::sqlite::SCHEMA_VERSION) in a file marked as
/// atsession's; PostgreSQL, the version recorded in `atsession_schema` equal to
/// [`postgres::SCHEMA_VERSION`](super::postgres::SCHEMA_VERSION) (in the `public` schema);
/// Redis, the mark `atsession:schema` equal to
/// [`redis::SCHEMA_VERSION`](super::redis::SCHEMA_VERSION). `memory:` and
/// `sqlite::memory:` hold nothing to read, and are refused as missing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use atsession::store::{DatabaseProblem, OpenError, StoreError, open, open_read_only};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("app.db");
/// let url = path.to_str().unwrap();
/// let err = open_read_only(url).await.unwrap_err();
/// assert!(matches!(
///     err,
///     OpenError::Open { source: StoreError::Database { problem: DatabaseProblem::Missing, .. }, .. }
/// ));
/// assert!(!path.exists()); // nothing created
/// drop(open(url).await.unwrap());
/// assert_eq!(open_read_only(url).await.unwrap().backend(), "sqlite");
/// # }
/// ```
pub async fn open_read_only(url: &str) -> Result<AnyStore, OpenError> {
    let url = url.trim();
    match scheme(url) {
        Some("memory") => Err(OpenError::Open {
            store: "memory",
            address: "memory:".to_owned(),
            source: StoreError::Database {
                backend: "memory",
                database: "memory:".to_owned(),
                problem: super::DatabaseProblem::Missing,
            },
        }),
        Some("sqlite") | None => open_sqlite_read_only(url).await,
        Some("postgres" | "postgresql") => open_postgres_read_only(url).await,
        Some("redis" | "rediss") => open_redis_read_only(url).await,
        Some(other) => Err(OpenError::UnknownScheme {
            scheme: other.to_owned(),
        }),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite_read_only(url: &str) -> Result<AnyStore, OpenError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(OpenError::BadUrl {
            store: "sqlite",
            reason: "it names no file".into(),
        });
    }
    let address: String = path.chars().take(200).collect();
    let result = if path == ":memory:" {
        Err(StoreError::Database {
            backend: "sqlite",
            database: address.clone(),
            problem: super::DatabaseProblem::Missing,
        })
    } else {
        super::sqlite::SqliteStore::open_read_only(path).await
    };
    result
        .map(AnyStore::from)
        .map_err(|source| OpenError::Open {
            store: "sqlite",
            address,
            source,
        })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite_read_only(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "sqlite" })
}

#[cfg(feature = "postgres")]
async fn open_postgres_read_only(url: &str) -> Result<AnyStore, OpenError> {
    const STORE: &str = "postgres";
    let address = network_address(STORE, url)?;
    super::postgres::PostgresStore::connect_read_only(url)
        .await
        .map(AnyStore::from)
        .map_err(|e| classify(STORE, address, e))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres_read_only(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "postgres" })
}

#[cfg(feature = "redis")]
async fn open_redis_read_only(url: &str) -> Result<AnyStore, OpenError> {
    const STORE: &str = "redis";
    let address = network_address(STORE, url)?;
    super::redis::RedisStore::connect_read_only(url)
        .await
        .map(AnyStore::from)
        .map_err(|e| classify(STORE, address, e))
}

#[cfg(not(feature = "redis"))]
async fn open_redis_read_only(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "redis" })
}

/// The URL's scheme, if it has one (`a-z` then `a-z0-9+.-`, up to 32, before a `:`). A
/// one-letter scheme is a Windows drive, not a scheme.
fn scheme(url: &str) -> Option<&str> {
    let (s, _) = url.split_once(':')?;
    let ok = (2..=32).contains(&s.len())
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b));
    ok.then_some(s)
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str) -> Result<AnyStore, OpenError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.split('?').next().unwrap_or_default().is_empty() {
        return Err(OpenError::BadUrl {
            store: "sqlite",
            reason: "it names no file".into(),
        });
    }
    super::sqlite::SqliteStore::connect(url)
        .await
        .map(AnyStore::from)
        .map_err(|source| OpenError::Open {
            store: "sqlite",
            address: path.chars().take(200).collect(),
            source,
        })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "sqlite" })
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<AnyStore, OpenError> {
    const STORE: &str = "postgres";
    let address = network_address(STORE, url)?;
    super::postgres::PostgresStore::connect(url)
        .await
        .map(AnyStore::from)
        .map_err(|e| classify(STORE, address, e))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "postgres" })
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<AnyStore, OpenError> {
    const STORE: &str = "redis";
    let address = network_address(STORE, url)?;
    super::redis::RedisStore::connect(url)
        .await
        .map(AnyStore::from)
        .map_err(|e| classify(STORE, address, e))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_url: &str) -> Result<AnyStore, OpenError> {
    Err(OpenError::NotEnabled { store: "redis" })
}

/// The `host[:port]` list of a `scheme://[user[:password]@]hosts[/…]` URL, without the
/// user and password; checks every port.
#[cfg(any(feature = "postgres", feature = "redis", test))]
fn network_address(store: &'static str, url: &str) -> Result<String, OpenError> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| OpenError::BadUrl {
            store,
            reason: "expected scheme://host".into(),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    for host in hosts.split(',') {
        let port = if let Some(v6) = host.strip_prefix('[') {
            let (_, after) = v6.split_once(']').ok_or_else(|| OpenError::BadUrl {
                store,
                reason: "an IPv6 address without its closing `]`".into(),
            })?;
            after.strip_prefix(':')
        } else {
            host.rsplit_once(':').map(|(_, p)| p)
        };
        if let Some(p) = port
            && !matches!(p.parse::<u16>(), Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(OpenError::BadPort { store });
        }
    }
    if hosts.is_empty() {
        return Ok("the default host".to_owned());
    }
    Ok(hosts.chars().take(200).collect())
}

/// Sorts a connect failure into unreachable, untrusted certificate, or other.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn classify(store: &'static str, address: String, source: StoreError) -> OpenError {
    let mut cert = false;
    let mut unreachable = false;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(&source);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            cert |= is_cert_error(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            unreachable |= matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::TimedOut
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::AddrNotAvailable
            );
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                cert |= is_cert_error(r);
            }
        }
        // Drivers that flatten their causes into text.
        let text = e.to_string();
        cert |= text.contains("invalid peer certificate");
        unreachable |= text.contains("Connection refused")
            || text.contains("timed out")
            || text.contains("failed to lookup address");
        cur = e.source();
    }
    if cert {
        OpenError::UntrustedCertificate {
            store,
            address,
            source,
        }
    } else if let StoreError::Backend { source: s, .. } = &source
        && s.source().is_none()
        && s.to_string().contains("URL")
    {
        // One of the stores' own messages about the URL (never quoting it).
        OpenError::BadUrl {
            store,
            reason: s.to_string(),
        }
    } else if unreachable {
        OpenError::Unreachable {
            store,
            address,
            source,
        }
    } else {
        OpenError::Open {
            store,
            address,
            source,
        }
    }
}

#[cfg(any(feature = "postgres", feature = "redis"))]
fn is_cert_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)
    )
}

/// Removes `name=value` from a URL's query; returns the URL without it and the value
/// (percent-decoded). The URL is otherwise unchanged.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn take_query_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut found = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                found = Some(percent_decode(v));
                false
            }
            _ => !pair.is_empty(),
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out, found)
}

#[cfg(any(feature = "postgres", feature = "redis"))]
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The CA certificates of a PEM file, for a TLS connection to a store.
#[cfg(feature = "postgres")]
pub(crate) fn read_ca_file(
    backend: &'static str,
    path: &str,
) -> Result<rustls::RootCertStore, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bad = |e: Box<dyn StdError + Send + Sync>| {
        StoreError::backend(backend, "connect", CaFileError(e))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(Box::new(e)))? {
        roots
            .add(cert.map_err(|e| bad(Box::new(e)))?)
            .map_err(|e| bad(Box::new(e)))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    Ok(roots)
}

/// The CA file named by `sslrootcert` could not be used.
#[cfg(any(feature = "postgres", feature = "redis"))]
#[derive(Debug, thiserror::Error)]
#[error("the CA file (sslrootcert) cannot be used")]
pub(crate) struct CaFileError(#[source] pub(crate) Box<dyn StdError + Send + Sync>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("memory:"), Some("memory"));
        assert_eq!(scheme("postgres://h/db"), Some("postgres"));
        assert_eq!(scheme("./atsession.db"), None);
        assert_eq!(scheme("C:\\data\\a.db"), None);
        assert_eq!(scheme("Mysql://x"), None);
    }

    #[test]
    fn ports_are_checked_and_passwords_dropped() {
        assert_eq!(
            network_address("postgres", "postgres://u:secret@db:5432/app").unwrap(),
            "db:5432"
        );
        assert_eq!(
            network_address("postgres", "postgres://[::1]:5432,h2:5433/app").unwrap(),
            "[::1]:5432,h2:5433"
        );
        for bad in [
            "postgres://u:p@db:99999/app",
            "postgres://db:0/app",
            "postgres://db:54x/app",
            "postgres://db:/app",
            "redis://u:hunter2/0",
        ] {
            let e = network_address("postgres", bad).unwrap_err();
            assert!(matches!(e, OpenError::BadPort { .. }), "{bad}");
            assert!(!format!("{e} {e:?}").contains("hunter2"));
        }
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn query_params_are_taken_out() {
        let (u, v) = take_query_param(
            "postgres://h/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&x=1",
            "sslrootcert",
        );
        assert_eq!(u, "postgres://h/db?sslmode=require&x=1");
        assert_eq!(v.as_deref(), Some("/tmp/ca.pem"));
        let (u, v) = take_query_param("rediss://h:1/0?sslrootcert=/ca.pem", "sslrootcert");
        assert_eq!(u, "rediss://h:1/0");
        assert_eq!(v.as_deref(), Some("/ca.pem"));
        assert_eq!(
            take_query_param("redis://h", "a"),
            ("redis://h".into(), None)
        );
    }
}
