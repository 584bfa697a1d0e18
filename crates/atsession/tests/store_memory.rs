//! The conformance suite on the in-memory store.

atsession::session_store_suite!(async { atsession::store::MemoryStore::new() });
