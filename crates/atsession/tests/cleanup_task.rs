//! The background cleanup task deletes expired sessions, and stops when its handle drops.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use atsession::app::SessionManager;
use atsession::clock::{Clock, ManualClock};
use atsession::store::MemoryStore;

#[tokio::test]
async fn cleanup_runs_until_dropped() {
    let clock = Arc::new(ManualClock::at_now());
    let store = MemoryStore::new();
    let m = SessionManager::new(store.clone()).with_clock(clock.clone() as Arc<dyn Clock>);
    m.create("did:plc:old", "old.test", ()).await.unwrap();
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    m.create("did:plc:young", "young.test", ()).await.unwrap();
    assert_eq!(store.len(), 2);

    let task = m.spawn_cleanup(Duration::from_millis(5));
    for _ in 0..200 {
        if store.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.len(),
        1,
        "the expired session is deleted, the live one kept"
    );

    drop(task);
    tokio::time::sleep(Duration::from_millis(20)).await;
    clock.advance(Duration::from_secs(8 * 24 * 3600));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.len(), 1, "a dropped task no longer runs");
}
