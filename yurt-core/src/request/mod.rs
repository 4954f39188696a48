//! Kubernetes API requests, resolved: which verb, group, version, resource, namespace, name and
//! subresource a request line addresses, and its typed list/watch options.
//!
//! Everything in the hub keys on this: the cache decides what to store and what it may answer
//! offline from the [`Verb`] and the group/version/resource, filters are chosen per
//! (component, verb, resource), and the multiplexer serves `list`/`watch` of shared resources.
//! [`RequestInfo::parse`] therefore reproduces kube-apiserver's own resolver
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) rule for rule, so the hub and the
//! apiserver never disagree on what a request is. The few deliberate differences (streaming
//! subresources get [`Verb::Connect`]/[`Verb::Proxy`], malformed list options fail at
//! resolution) are listed on [`RequestInfo`].
//!
//! ```
//! use yurt_core::request::{RequestInfo, Verb};
//!
//! // kubelet watching the pods of its node
//! let info = RequestInfo::parse(
//!     "GET",
//!     "/api/v1/pods",
//!     Some("fieldSelector=spec.nodeName%3Dnode1&resourceVersion=42&watch=true"),
//! )
//! .unwrap();
//! assert_eq!(info.verb, Verb::Watch);
//! assert_eq!(info.gvr_string(), "pods.v1.core");
//! assert!(info.is_collection());
//! assert_eq!(info.options.field_selector.as_deref(), Some("spec.nodeName=node1"));
//! assert_eq!(info.options.resource_version.as_deref(), Some("42"));
//!
//! // kubectl exec: a streaming upgrade the hub must not cache
//! let exec = "/api/v1/namespaces/default/pods/web-0/exec";
//! let info = RequestInfo::parse("POST", exec, Some("command=sh&stdin=true")).unwrap();
//! assert_eq!((info.verb, info.subresource.as_str()), (Verb::Connect, "exec"));
//! ```

mod accept;
mod error;
mod info;
mod options;
mod verb;

pub use accept::{MediaType, negotiate, not_acceptable};
pub use error::RequestError;
pub use info::RequestInfo;
pub use options::{ListOptions, resource_version_error, resource_version_status};
pub use verb::Verb;
