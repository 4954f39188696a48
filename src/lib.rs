//! yurt-rs: OpenYurt's edge capabilities for Kubernetes, as Rust libraries.
//!
//! This facade re-exports the member crates so an edge-agent vendor can depend on one crate:
//!
//! | module | crate | what it is |
//! | --- | --- | --- |
//! | [`core`] | `yurt-core` | request parsing, selectors, `Status` errors, well-known labels, CRD types |
//! | [`cache`] | `yurt-cache` | the YurtHub engine: caching proxy Layer and its crash-safe redb store |
//! | [`tunnel`] | `yurt-tunnel` | cloud-to-edge reverse tunnels (Raven L7 equivalent) |
//! | [`pool`] | `yurt-pool` | node-pool reconcilers (yurt-manager equivalent) |
//!
//! The reference daemons that compose them live in `examples/`; the test apiserver is the
//! separate dev-dependency `yurt-testkit`.
//!
//! ```
//! let info = yurt::core::RequestInfo::parse("GET", "/api/v1/nodes/edge-1", None).unwrap();
//! assert_eq!(info.verb, yurt::core::Verb::Get);
//! assert_eq!(info.name, "edge-1");
//! ```

#![forbid(unsafe_code)]

pub use yurt_cache as cache;
pub use yurt_core as core;
pub use yurt_pool as pool;
pub use yurt_tunnel as tunnel;
