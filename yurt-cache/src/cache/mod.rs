//! The cache layer: route requests to an apiserver and tee responses into the store.
//!
//! Placeholder for the layer itself (being written); [`agents`] decides which components are cached.

pub mod agents;

pub use agents::CacheAgents;
