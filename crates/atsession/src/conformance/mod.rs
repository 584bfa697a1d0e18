//! The conformance suites (feature `conformance`): the contracts every store and lock must
//! keep, as public functions and macros, so that a backend written outside this crate can
//! prove it keeps them. Every backend of this crate runs them from here.
//!
//! | suite | macro | checks |
//! |---|---|---|
//! | app sessions ([`SessionStore`](crate::store::SessionStore)) | [`session_store_suite!`](crate::session_store_suite) | [`sessions`] |
//! | sessions with their grants ([`SessionGrantStore`](crate::store::oauth::SessionGrantStore)) | [`session_grant_store_suite!`](crate::session_grant_store_suite) | [`sessions::sessions_load_with_their_grants`] |
//! | OAuth states and grants ([`StateStore`](crate::store::oauth::StateStore), [`GrantStore`](crate::store::oauth::GrantStore)) | [`oauth_store_suite!`](crate::oauth_store_suite) | [`oauth`] |
//! | locks ([`Lock`](crate::lock::Lock)) | [`lock_suite!`](crate::lock_suite) | [`locks`] |
//!
//! Each macro expands to one `#[test]` per check, each on its own multi-threaded tokio
//! runtime, with a fresh store (or lock) from the expression it is given: a future of the
//! store, evaluated inside the test (so it may `return` early to skip, when a server is
//! missing). Backends that share a server must give each call its own database, schema or
//! key prefix. In a test file of your crate (with `atsession` as a dev-dependency with the
//! feature `conformance`):
//!
//! ```ignore
//! atsession::session_store_suite!(async { MyStore::new_for_test().await });
//! mod oauth {
//!     atsession::oauth_store_suite!(async { MyStore::new_for_test().await });
//! }
//! mod locks {
//!     atsession::lock_suite!(async { MyLock::new_for_test().await });
//! }
//! ```
//!
//! The checks panic (they are assertions) when a store breaks the contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod locks;
pub mod oauth;
pub mod sessions;

/// Runs a check on a fresh multi-threaded tokio runtime (what the suite macros expand to).
///
/// ```
/// atsession::conformance::block_on(async {
///     atsession::conformance::sessions::create_and_lookup(atsession::store::MemoryStore::new()).await;
/// });
/// ```
pub fn block_on<F: std::future::Future>(check: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(check)
}

/// One `#[test]` per app-session check ([`sessions`]), each with a fresh store from `$make`
/// (an expression evaluating to a future of the store).
///
/// ```ignore
/// atsession::session_store_suite!(async { atsession::store::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! session_store_suite {
    ($make:expr) => {
        $crate::session_store_suite!(@tests $make;
            create_and_lookup, fresh_tokens_per_login, only_hashes_are_stored,
            bad_tokens_change_nothing, bad_identifiers_change_nothing, update_and_conflict,
            idle_expiry, absolute_expiry, sliding_touch_interval, refresh_rotates_access_token,
            access_token_expiry, delete_logs_out, delete_all_for_did, list_by_did,
            cleanup_deletes_only_expired, cleanup_in_batches, expired_sessions_name_their_grants,
            duplicate_create_fails,
            cas_never_inserts, concurrent_updates_lose_nothing, no_resurrection_after_delete,
            no_resurrection_under_races, headers_cookie_and_bearer);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::block_on(async {
                    let store = $make.await;
                    $crate::conformance::sessions::$name(store).await;
                });
            }
        )*
    };
}

/// One `#[test]` per check of a store that reads a session with its grant
/// ([`SessionGrantStore`](crate::store::oauth::SessionGrantStore)): today
/// [`sessions::sessions_load_with_their_grants`].
///
/// ```ignore
/// atsession::session_grant_store_suite!(async { atsession::store::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! session_grant_store_suite {
    ($make:expr) => {
        $crate::session_store_suite!(@tests $make; sessions_load_with_their_grants);
    };
}

/// One `#[test]` per OAuth store check ([`oauth`]), each with a fresh store from `$make`
/// (an expression evaluating to a future of the store).
///
/// ```ignore
/// atsession::oauth_store_suite!(async { atsession::store::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! oauth_store_suite {
    ($make:expr) => {
        $crate::oauth_store_suite!(@tests $make;
            states_are_taken_once, expired_states_are_not_returned,
            concurrent_takes_yield_one_winner, grants_crud_and_cas, grants_by_did,
            concurrent_grant_updates_have_one_winner, grant_updates_keep_the_did_index,
            sealed_bytes_round_trip, abandoned_logins_are_deleted_after_expiry,
            every_grant_is_listed_page_by_page);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::block_on(async {
                    let store = $make.await;
                    $crate::conformance::oauth::$name(&store).await;
                });
            }
        )*
    };
}

/// One `#[test]` per lock check ([`locks`]), each with a fresh lock from `$make` (an
/// expression evaluating to a future of the lock).
///
/// ```ignore
/// atsession::lock_suite!(async { atsession::lock::MemoryLock::new() });
/// ```
#[macro_export]
macro_rules! lock_suite {
    ($make:expr) => {
        $crate::lock_suite!(@tests $make; mutual_exclusion, lease_runs_out, renew_extends,
            non_owner_is_refused, bounded_wait, drop_releases, lost_lease_is_reported,
            invalid_requests);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::block_on(async {
                    let lock = $make.await;
                    $crate::conformance::locks::$name(lock).await;
                });
            }
        )*
    };
}
