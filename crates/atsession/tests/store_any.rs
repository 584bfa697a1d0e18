//! `AnyStore` and `AnyLock` run every conformance suite (on memory, a custom store and
//! SQLite here, on PostgreSQL and Redis when their servers are up), and `store::open` gives typed errors
//! that name the store but never a password.
#![allow(clippy::unwrap_used)]

mod support;

use atsession::store::{AnyStore, OpenError, open};

/// A fresh SQLite file, opened by URL.
#[cfg(feature = "sqlite")]
async fn sqlite_any() -> AnyStore {
    let dir = tempfile::tempdir().unwrap().keep();
    open(&format!("sqlite://{}", dir.join("any.db").display()))
        .await
        .unwrap()
}

mod memory {
    atsession::session_store_suite!(async { atsession::store::open("memory:").await.unwrap() });
    mod oauth {
        atsession::oauth_store_suite!(async { atsession::store::open("memory:").await.unwrap() });
        atsession::session_grant_store_suite!(async {
            atsession::store::open("memory:").await.unwrap()
        });
    }
    mod lock {
        atsession::lock_suite!(async { atsession::store::open("memory:").await.unwrap().lock() });
    }
}

/// A store "written elsewhere": the memory store as an `Arc<dyn Store>`.
fn custom() -> AnyStore {
    AnyStore::custom(
        "custom-memory",
        atsession::store::MemoryStore::new(),
        atsession::lock::MemoryLock::new(),
    )
}

mod custom {
    atsession::session_store_suite!(async { crate::custom() });
    mod oauth {
        atsession::oauth_store_suite!(async { crate::custom() });
        atsession::session_grant_store_suite!(async { crate::custom() });
    }
    mod lock {
        atsession::lock_suite!(async { crate::custom().lock() });
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    atsession::session_store_suite!(crate::sqlite_any());
    mod oauth {
        atsession::oauth_store_suite!(crate::sqlite_any());
        atsession::session_grant_store_suite!(crate::sqlite_any());
    }
    mod lock {
        atsession::lock_suite!(async { crate::sqlite_any().await.lock() });
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    async fn fresh() -> Option<super::AnyStore> {
        crate::support::fresh_postgres()
            .await
            .map(super::AnyStore::from)
    }
    atsession::session_store_suite!({
        let Some(store) = fresh().await else { return };
        std::future::ready(store)
    });
    mod oauth {
        atsession::oauth_store_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store)
        });
        atsession::session_grant_store_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store)
        });
    }
    mod lock {
        atsession::lock_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store.lock())
        });
    }
}

#[cfg(feature = "redis")]
mod redis {
    async fn fresh() -> Option<super::AnyStore> {
        crate::support::fresh_redis()
            .await
            .map(super::AnyStore::from)
    }
    atsession::session_store_suite!({
        let Some(store) = fresh().await else { return };
        std::future::ready(store)
    });
    mod oauth {
        atsession::oauth_store_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store)
        });
        atsession::session_grant_store_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store)
        });
    }
    mod lock {
        atsession::lock_suite!({
            let Some(store) = super::fresh().await else {
                return;
            };
            std::future::ready(store.lock())
        });
    }
}

/// The error's message, its causes, and its Debug form.
fn everything(e: &OpenError) -> String {
    let mut s = format!("{e} {e:?}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(&format!(" / {c} {c:?}"));
        cause = c.source();
    }
    s
}

const PASSWORD: &str = "hunter2-s3cret";

#[tokio::test]
async fn unknown_scheme_is_typed_and_names_no_password() {
    let e = open(&format!("mysql://root:{PASSWORD}@db/app"))
        .await
        .unwrap_err();
    assert!(matches!(&e, OpenError::UnknownScheme { scheme } if scheme == "mysql"));
    assert!(!everything(&e).contains(PASSWORD));
}

#[tokio::test]
async fn bad_ports_are_typed_and_name_no_password() {
    for url in [
        format!("postgres://app:{PASSWORD}@127.0.0.1:99999/app"),
        format!("postgresql://app:{PASSWORD}@127.0.0.1:0/app"),
        format!("redis://:{PASSWORD}@127.0.0.1:12ab/0"),
        format!("rediss://default:{PASSWORD}@127.0.0.1:70000"),
    ] {
        let e = open(&url).await.unwrap_err();
        if cfg!(any(feature = "postgres", feature = "redis")) {
            let is_bad_port = matches!(e, OpenError::BadPort { .. });
            let not_built = matches!(e, OpenError::NotEnabled { .. });
            assert!(is_bad_port || not_built, "{url}: {e:?}");
        }
        assert!(!everything(&e).contains(PASSWORD), "{url}");
    }
}

/// A loopback port nothing listens on.
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unreachable_postgres_is_typed_and_names_no_password() {
    let port = closed_port().await;
    let e = open(&format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app"))
        .await
        .unwrap_err();
    let all = everything(&e);
    assert!(
        matches!(&e, OpenError::Unreachable { store: "postgres", address, .. } if *address == format!("127.0.0.1:{port}")),
        "{all}"
    );
    assert!(e.to_string().contains("postgres"));
    assert!(!all.contains(PASSWORD), "{all}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn unreachable_redis_is_typed_and_names_no_password() {
    let port = closed_port().await;
    let e = open(&format!("redis://default:{PASSWORD}@127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    let all = everything(&e);
    assert!(
        matches!(&e, OpenError::Unreachable { store: "redis", .. }),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn wrong_postgres_password_is_not_echoed() {
    // The local server trusts every login, so ask for a database that does not exist: the
    // server answers with an error, which must not quote the URL.
    let url = support::postgres_url();
    let Some(rest) = url.strip_prefix("postgres://postgres@") else {
        return;
    };
    let host = rest.split('/').next().unwrap();
    let e = open(&format!(
        "postgres://postgres:{PASSWORD}@{host}/atsession_no_such_db"
    ))
    .await;
    let Err(e) = e else {
        panic!("a database that does not exist opened")
    };
    let all = everything(&e);
    if matches!(e, OpenError::Unreachable { .. }) {
        return; // no server here
    }
    assert!(
        matches!(
            e,
            OpenError::Open {
                store: "postgres",
                ..
            }
        ),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn urls_and_bare_paths_open_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.db");
    let store = open(bare.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(bare.exists());
    let e = open("sqlite://").await.unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::BadUrl {
                store: "sqlite",
                ..
            }
        ),
        "{e:?}"
    );
    let e = open(&format!(
        "sqlite://{}/missing/dir/x.db",
        dir.path().display()
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Open {
                store: "sqlite",
                ..
            }
        ),
        "{e:?}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unknown_sslmode_is_a_bad_url() {
    let e = open(&format!(
        "postgres://app:{PASSWORD}@127.0.0.1:5432/app?sslmode=sometimes"
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&e, OpenError::BadUrl { store: "postgres", reason } if reason.contains("sslmode")),
        "{e:?}"
    );
    assert!(!everything(&e).contains(PASSWORD));
}
