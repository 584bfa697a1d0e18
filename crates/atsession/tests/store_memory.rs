//! The conformance suite on the in-memory store.

mod conformance;

conformance::session_store_suite!(async { atsession::store::MemoryStore::new() });
