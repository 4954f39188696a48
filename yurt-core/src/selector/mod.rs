//! Label and field selectors, parsed and matched exactly as kube-apiserver does.
//!
//! While the cloud is reachable the hub forwards `labelSelector` and `fieldSelector` untouched;
//! offline it must answer a list or watch from its cache, so it must accept, refuse and match
//! selectors the way the apiserver would, or clients see different objects online and offline.
//! [`LabelSelector`] follows apimachinery's `labels.Parse` (set-based grammar, key and value
//! validation, `in`/`notin`/`exists`/`>`/`<`), [`FieldSelector`] follows `fields.ParseSelector`
//! (escaped values, `=`/`==`/`!=`), and both match against objects in their JSON form, which is
//! how the store keeps them. Both print a canonical form (Kubernetes' `String()`) that parses
//! back to an equal selector, so the store can key cached lists by it.
//!
//! Parsing never panics; errors are [`SelectorError`]s that name the offending token and its
//! byte offset.
//!
//! ```
//! use serde_json::json;
//! use yurt_core::selector::{FieldSelector, LabelSelector};
//!
//! let labels = LabelSelector::parse("!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name").unwrap();
//! let fields = FieldSelector::parse("metadata.namespace!=kube-system").unwrap();
//! let svc = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
//! assert!(labels.matches_object(&svc) && fields.matches(&svc));
//!
//! let err = LabelSelector::parse("a in (b").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"invalid label selector "a in (b": expected ',' or ')' after "b", found end of string at byte 7"#
//! );
//! ```

mod error;
mod field;
mod label;
mod label_parse;

pub use error::{SelectorError, SelectorKind};
pub use field::{FieldOperator, FieldRequirement, FieldSelector};
pub use label::{LabelOperator, LabelRequirement, LabelSelector};
