//! Side-by-side benchmarks of atsession against the nearest Rust anchors, kept apart from the
//! library so that its own builds and tests never compile the anchors. Nothing here is
//! published; the benchmarks are under `benches/`:
//!
//! ```sh
//! cargo bench -p atsession-compare --bench memory_lookup
//! ```
