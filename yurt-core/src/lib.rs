//! The shared vocabulary of yurt-rs: everything the hub, the tunnel and the pool controllers must
//! agree on, with no sockets and no disk.
//!
//! - [`request`]: what a Kubernetes API request is ([`RequestInfo`]: verb, group/version/resource,
//!   namespace, name, subresource, typed list/watch options), resolved exactly as kube-apiserver does.
//! - [`selector`]: label and field selectors, parsed and matched against JSON objects.
//! - [`admission`]: the `AdmissionReview` and `ConversionReview` bodies webhooks receive, decoded
//!   and checked.
//! - [`component`]: which client sent a request ([`Component`], from the `User-Agent`).
//! - [`status`]: Kubernetes `Status` error bodies, the one way every crate answers an error.
//! - [`time`]: Kubernetes `Time` / `MicroTime` formatting.
//! - `protobuf` (feature `protobuf`): Kubernetes protobuf bodies to and from JSON for the kinds an
//!   edge node writes (ConfigMap, Secret, Namespace, ServiceAccount, Lease, Events).
//! - [`wellknown`]: OpenYurt's labels, annotations, names and ports, in one place.
//! - [`crd`] (feature `crd`, on by default): the OpenYurt custom resources (NodePool, NodeBucket,
//!   YurtAppSet, YurtStaticSet, Gateway) with upstream's field names, so existing manifests load.
//!
//! ```
//! use yurt_core::{Component, RequestInfo, Verb};
//!
//! let info = RequestInfo::parse("GET", "/api/v1/namespaces/kube-system/pods", Some("watch=1")).unwrap();
//! assert_eq!(info.verb, Verb::Watch);
//! assert_eq!((info.resource.as_str(), info.namespace.as_str()), ("pods", "kube-system"));
//! assert_eq!(Component::from_user_agent(Some("kubelet/v1.36.0 (linux/amd64)")).as_str(), "kubelet");
//! ```

#![forbid(unsafe_code)]

pub mod admission;
pub mod component;
#[cfg(feature = "crd")]
pub mod crd;
pub mod patch;
#[cfg(feature = "protobuf")]
pub mod protobuf;
pub mod request;
pub mod selector;
pub mod status;
pub mod table;
pub mod time;
pub mod validation;
pub mod wellknown;

pub use component::Component;
pub use request::{ListOptions, RequestError, RequestInfo, Verb};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Status, StatusReason};

/// The README's example, compiled and run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
