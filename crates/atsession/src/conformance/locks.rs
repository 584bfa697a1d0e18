//! The lock suite: the [`Lock`] contract (mutual exclusion, lease expiry, renewal, owner
//! checks, bounded waits, release on drop).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::lock::{LeaseOwner, Lock, LockError};

const KEY: &str = "refresh:grant-1";

/// Conformance check `mutual_exclusion` (locks); panics if the store breaks the contract.
pub async fn mutual_exclusion<L: Lock + Clone>(lock: L) {
    let inside = Arc::new(AtomicU32::new(0));
    let entries = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let lock = lock.clone();
            let inside = Arc::clone(&inside);
            let entries = Arc::clone(&entries);
            tokio::spawn(async move {
                for _ in 0..8 {
                    let g = lock
                        .acquire(KEY, Duration::from_secs(10), Duration::from_secs(30))
                        .await
                        .unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    entries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    g.release().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(entries.load(Ordering::SeqCst), 48);
}

/// Conformance check `lease_runs_out` (locks); panics if the store breaks the contract.
pub async fn lease_runs_out<L: Lock + Clone>(lock: L) {
    let (a, b) = (LeaseOwner::generate(), LeaseOwner::generate());
    assert!(
        lock.try_lock(KEY, &a, Duration::from_millis(300))
            .await
            .unwrap()
    );
    assert!(
        !lock
            .try_lock(KEY, &b, Duration::from_millis(300))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    // a never released: the lease ran out, so b gets the key.
    assert!(
        lock.try_lock(KEY, &b, Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(!lock.renew(KEY, &a, Duration::from_secs(10)).await.unwrap());
    assert!(!lock.unlock(KEY, &a).await.unwrap());
    assert!(
        !lock
            .try_lock(KEY, &a, Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(lock.unlock(KEY, &b).await.unwrap());
}

/// Conformance check `renew_extends` (locks); panics if the store breaks the contract.
pub async fn renew_extends<L: Lock + Clone>(lock: L) {
    let mut g = lock
        .acquire(KEY, Duration::from_millis(400), Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    g.renew(Duration::from_millis(1500)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // 650 ms after the first lease of 400 ms: still held thanks to the renewal.
    assert!(
        lock.try_acquire(KEY, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
    g.release().await.unwrap();
    assert!(
        lock.try_acquire(KEY, Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

/// Conformance check `non_owner_is_refused` (locks); panics if the store breaks the contract.
pub async fn non_owner_is_refused<L: Lock + Clone>(lock: L) {
    let g = lock
        .acquire(KEY, Duration::from_secs(10), Duration::from_secs(5))
        .await
        .unwrap();
    let intruder = LeaseOwner::generate();
    assert!(!lock.unlock(KEY, &intruder).await.unwrap());
    assert!(
        !lock
            .renew(KEY, &intruder, Duration::from_secs(60))
            .await
            .unwrap()
    );
    // Still held by g.
    assert!(
        !lock
            .try_lock(KEY, &intruder, Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert!(
        lock.renew(KEY, g.owner(), Duration::from_secs(10))
            .await
            .unwrap()
    );
    g.release().await.unwrap();
    assert!(
        lock.try_lock(KEY, &intruder, Duration::from_secs(1))
            .await
            .unwrap()
    );
}

/// Conformance check `bounded_wait` (locks); panics if the store breaks the contract.
pub async fn bounded_wait<L: Lock + Clone>(lock: L) {
    let g = lock
        .acquire(KEY, Duration::from_secs(10), Duration::from_secs(5))
        .await
        .unwrap();
    let start = Instant::now();
    let r = lock
        .acquire(KEY, Duration::from_secs(10), Duration::from_millis(300))
        .await;
    let took = start.elapsed();
    match r {
        Err(LockError::Timeout { waited }) => {
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // A zero timeout is one attempt.
    assert!(matches!(
        lock.acquire(KEY, Duration::from_secs(1), Duration::ZERO)
            .await,
        Err(LockError::Timeout { .. })
    ));
    // A waiter gets the key soon after it is released.
    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move {
            lock.acquire(KEY, Duration::from_secs(10), Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let released = Instant::now();
    g.release().await.unwrap();
    let g2 = waiter.await.unwrap().unwrap();
    assert!(released.elapsed() < Duration::from_millis(1000));
    g2.release().await.unwrap();
}

/// Conformance check `drop_releases` (locks); panics if the store breaks the contract.
pub async fn drop_releases<L: Lock + Clone>(lock: L) {
    {
        let _g = lock
            .acquire(KEY, Duration::from_secs(60), Duration::from_secs(5))
            .await
            .unwrap();
    }
    // Released by a spawned task, well before the 60 s lease.
    let g = lock
        .acquire(KEY, Duration::from_secs(60), Duration::from_secs(5))
        .await
        .unwrap();
    g.release().await.unwrap();
}

/// Conformance check `lost_lease_is_reported` (locks); panics if the store breaks the contract.
pub async fn lost_lease_is_reported<L: Lock + Clone>(lock: L) {
    let mut g = lock
        .acquire(KEY, Duration::from_millis(200), Duration::from_secs(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let other = lock
        .acquire(KEY, Duration::from_secs(10), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(
        g.renew(Duration::from_secs(10)).await,
        Err(LockError::Lost)
    ));
    assert!(matches!(g.release().await, Err(LockError::Lost)));
    // The late release did not free the new holder's key.
    assert!(
        lock.try_acquire(KEY, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
    other.release().await.unwrap();
}

/// Conformance check `invalid_requests` (locks); panics if the store breaks the contract.
pub async fn invalid_requests<L: Lock + Clone>(lock: L) {
    let long = "k".repeat(513);
    for (key, lease) in [
        ("", Duration::from_secs(1)),
        (long.as_str(), Duration::from_secs(1)),
        (KEY, Duration::ZERO),
    ] {
        assert!(matches!(
            lock.acquire(key, lease, Duration::from_secs(1)).await,
            Err(LockError::Invalid(_))
        ));
    }
}
