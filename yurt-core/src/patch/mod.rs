//! Kubernetes PATCH bodies applied to JSON objects the way kube-apiserver applies them.
//!
//! A PATCH request names its patch language in `Content-Type` ([`PatchType`]): JSON patch
//! (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch (Kubernetes' own, driven by
//! per-field metadata such as "`status.conditions` merge by `type`") or server-side apply. The test
//! apiserver (`yurt-testkit`) and the hub's offline update/patch path both call [`apply_patch`],
//! so an object patched while the cloud is unreachable comes out as the apiserver would have made
//! it, and errors map to the [`Status`] the apiserver would have answered
//! ([`PatchError::status`]).
//!
//! Strategic merge patch follows apimachinery's `strategicpatch` package step for step (list
//! ordering, `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`, `$patch`), reading the
//! patch metadata of every built-in v1.36 type from the embedded
//! `data/k8s-patch-meta-v1.36.json` ([`schema_for`]). Kinds it does not know (custom resources)
//! refuse strategic merge patch with 415, as kube-apiserver does for custom resources. JSON and
//! merge patch reproduce `gopkg.in/evanphx/json-patch.v4`, the library kube-apiserver uses,
//! including its departures from the RFCs (see [`json_patch()`]).
//!
//! ```
//! use serde_json::json;
//! use yurt_core::patch::{apply_patch, PatchType};
//!
//! let pod = json!({"metadata": {"name": "web-0", "finalizers": ["a"]},
//!                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
//! let patch = br#"{"metadata": {"finalizers": ["b"]},
//!                  "spec": {"containers": [{"name": "app", "image": "app:2"}]}}"#;
//! let ct = "application/strategic-merge-patch+json; charset=utf-8";
//! let out = apply_patch(PatchType::from_content_type(ct).unwrap(), &pod, patch, ("", "v1", "Pod")).unwrap();
//! assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
//! assert_eq!(out["spec"]["containers"], json!([{"name": "app", "image": "app:2"}]));
//! ```
//!
//! # Known differences from kube-apiserver
//!
//! - **No typed round trip.** kube-apiserver decodes the patched JSON into the Go type and
//!   re-encodes it: unknown fields are dropped, `null`s become zero values (mostly omitted),
//!   defaults are applied, fields come out in struct order. This module returns the merged JSON
//!   as is (keys in `serde_json` map order), so unknown fields survive and a `null` the merge
//!   keeps (JSON patch `add` of `null`, `null`s inside values strategic merge takes verbatim)
//!   stays `null`. Directive keys left inside such verbatim values (`$patch`, `$retainKeys`,
//!   `$setElementOrder/..`, `$deleteFromPrimitiveList/..`) are removed, as the typed decode
//!   would. Validation, admission and defaulting that follow the patch are not part of this
//!   module.
//! - **Fields without metadata.** Strategic merge merges maps and replaces lists wherever the
//!   metadata describes nothing (inside `RawExtension`, free-form JSON, map values); the
//!   apiserver instead fails with a 500 (`unable to find api field`) when both the live object
//!   and the patch hold a map or a list there. `$setElementOrder` on such a field fails as in
//!   the apiserver.
//! - **Key order.** Go walks the patch map in random order; the one case where it matters, a list
//!   patched together with its `$deleteFromPrimitiveList/` twin, is fixed here: the merge first,
//!   then the deletion (the order the apiserver uses whenever `$setElementOrder` is present).
//! - **Go runtime failures.** Where the apiserver's Go code panics (comparing two maps used as
//!   merge key values, a list starting with `null`, hashing a map) it answers 500; this module
//!   returns [`PatchError::Rejected`] (500) without panicking. A JSON patch through a `null`
//!   intermediate value, a Go panic too, is [`PatchError::Invalid`] (422) here. In-place slice
//!   aliasing inside strategic merge is reproduced for `$patch: delete` in merging lists (it
//!   decides where server-only items land); the analogous effect of duplicate scalars already
//!   present in a live primitive list is not.
//! - **Stored `null`/empty lists** are treated as absent by `$setElementOrder`, as they would
//!   be omitted from the apiserver's typed object.
//! - **JSON patch `test`** compares numbers by value (integer and float kept apart: `1` is not
//!   `1.0`); the apiserver compares their text, so it also tells `1.0` from `1.00`.
//! - **Server-side apply** ([`PatchType::Apply`]) is a simplification: the configuration is
//!   merged onto the live object (or onto nothing, on create) following `x-kubernetes-list-type`
//!   (`map` lists merge by their keys, `set` lists union, others are replaced),
//!   `x-kubernetes-map-type` (`atomic` maps are replaced) and `null` removing a field. There are no
//!   managed fields: no conflicts, no `force`, fields a manager stops applying are not removed,
//!   and `metadata.managedFields` is left untouched. New list items are appended after the live
//!   ones. Unknown kinds merge maps and replace lists.
//!   Bodies must be JSON (which every client library sends); YAML syntax is
//!   [`PatchError::Malformed`]. The applied `apiVersion`/`kind` must match the target, and
//!   `metadata.managedFields` must be absent, with the apiserver's 400 messages.
//! - **Content types** are matched as the apiserver matches them: the media type before any
//!   `;` parameters, exactly (case-sensitive, no trimming). `application/apply-patch+cbor` (behind
//!   a feature gate in v1.36) is not supported.
//! - **Messages** follow the apiserver's wording, including Go's `%v` rendering of values; where
//!   the apiserver embeds a Go JSON decoder error, the text here is an approximation. 422 `Status`
//!   bodies carry no `details`, where the apiserver sends an empty `"details": {}`.

mod apply;
mod go;
mod json;
mod merge;
mod meta;
mod strategic;

use serde_json::Value;

use crate::status::{Status, StatusReason};

/// Go's `%v` form of a JSON value, for validation messages that quote a patch.
pub(crate) use go::fmt_v as go_fmt_v;
pub use json::json_patch;
pub use merge::merge_patch;
pub use meta::SchemaRef;
pub use strategic::strategic_merge_patch;

/// The patch language of a PATCH request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// JSON merge patch, RFC 7386: `application/merge-patch+json`.
    Merge,
    /// JSON patch, RFC 6902: `application/json-patch+json`.
    Json,
    /// Kubernetes strategic merge patch: `application/strategic-merge-patch+json`.
    Strategic,
    /// Server-side apply: `application/apply-patch+yaml` (simplified, see the module docs).
    Apply,
}

impl PatchType {
    /// All patch types, in the order kube-apiserver lists them for built-in resources.
    pub const ALL: [PatchType; 4] = [Self::Json, Self::Merge, Self::Strategic, Self::Apply];

    /// The patch type of a `Content-Type` header value, ignoring parameters such as
    /// `; charset=utf-8`; `None` for any other media type (kube-apiserver answers 415).
    ///
    /// ```
    /// use yurt_core::patch::PatchType;
    ///
    /// assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
    /// assert_eq!(PatchType::from_content_type("application/json"), None);
    /// ```
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        // kube-apiserver cuts at the first ';' (when it is not the first character) and compares
        // the rest exactly.
        let media = match ct.find(';') {
            Some(idx) if idx > 0 => &ct[..idx],
            _ => ct,
        };
        Self::ALL.into_iter().find(|t| t.content_type() == media)
    }

    /// The media type that selects this patch type.
    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Merge => "application/merge-patch+json",
            Self::Json => "application/json-patch+json",
            Self::Strategic => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }
}

impl std::fmt::Display for PatchType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.content_type())
    }
}

/// Why a patch could not be applied. [`PatchError::status`] gives the `Status` kube-apiserver
/// answers for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The body cannot be decoded as a patch of its type, or a strategic merge directive list is
    /// malformed (400 BadRequest).
    #[error("{message}")]
    Malformed {
        /// The apiserver's message, e.g. `invalid JSON patch`.
        message: String,
    },
    /// A JSON patch `test` operation did not match (422 Invalid).
    #[error("{message}")]
    TestFailed {
        /// Which path failed, e.g. `testing value /spec/replicas failed: test failed`.
        message: String,
    },
    /// A well-formed patch that cannot apply to this object: a JSON patch path that does not
    /// exist, a bad array index, an unknown operation, a strategic list of lists (422 Invalid).
    #[error("{message}")]
    Invalid {
        /// What failed.
        message: String,
    },
    /// Strategic merge patch on a kind without patch metadata, i.e. a custom resource
    /// (415 UnsupportedMediaType).
    #[error("strategic merge patch is not supported for {group}/{version}, Kind={kind}")]
    UnsupportedForKind {
        /// API group of the target (`""` for core).
        group: String,
        /// API version of the target.
        version: String,
        /// Kind of the target.
        kind: String,
    },
    /// A strategic merge patch the merge engine rejects without classifying the failure (an
    /// item lacking its merge key, an unknown `$patch` value, `$patch: merge`, mixed element
    /// types): kube-apiserver passes such errors through as 500 with an empty reason.
    #[error("{message}")]
    Rejected {
        /// The merge engine's message, e.g. `map: map[image:x] does not contain declared merge
        /// key: name`.
        message: String,
    },
    /// A JSON patch with more than 10000 operations (413 RequestEntityTooLarge).
    #[error("{message}")]
    TooLarge {
        /// The apiserver's message.
        message: String,
    },
}

impl PatchError {
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::Malformed {
            message: message.into(),
        }
    }

    pub(crate) fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected {
            message: message.into(),
        }
    }

    /// The `Status` kube-apiserver answers a PATCH with when the patch fails this way.
    ///
    /// The apiserver's bodies for patch failures name no object: 400s carry the decoding error,
    /// 422s the fixed text `the server rejected our request due to an error in our request`
    /// (the detailed reason is only in this error's `Display`), 415 lists the accepted media types,
    /// and unclassified strategic merge failures are 500 with no reason and the merge error as
    /// message.
    ///
    /// ```
    /// use yurt_core::patch::{json_patch, PatchError};
    /// use yurt_core::status::StatusReason;
    ///
    /// let err = json_patch(&serde_json::json!({}), b"[{\"op\": \"remove\", \"path\": \"/x\"}]").unwrap_err();
    /// let st = err.status();
    /// assert_eq!((st.code, st.reason), (422, Some(StatusReason::Invalid)));
    /// ```
    pub fn status(&self) -> Status {
        match self {
            Self::Malformed { message } => Status::bad_request(message.clone()),
            Self::TestFailed { .. } | Self::Invalid { .. } => Status::failure(
                StatusReason::Invalid,
                "the server rejected our request due to an error in our request",
            ),
            Self::UnsupportedForKind { .. } => Status::unsupported_media_type(&[
                PatchType::Json.content_type(),
                PatchType::Merge.content_type(),
                PatchType::Apply.content_type(),
            ]),
            Self::Rejected { message } => {
                let mut st = Status::failure(StatusReason::InternalError, message.clone());
                st.reason = None;
                st
            }
            Self::TooLarge { message } => Status::failure(
                StatusReason::RequestEntityTooLarge,
                format!("Request entity too large: {message}"),
            ),
        }
    }
}

impl From<PatchError> for Status {
    fn from(e: PatchError) -> Self {
        e.status()
    }
}

/// The strategic merge patch metadata of a built-in kind, e.g. `schema_for("apps", "v1",
/// "Deployment")`; `None` for kinds it does not cover (custom resources).
pub fn schema_for(group: &str, version: &str, kind: &str) -> Option<SchemaRef> {
    meta::lookup_gvk(group, version, kind)
}

/// Applies a PATCH request body of `patch_type` to `original`, the object addressed by
/// `gvk` = `(group, version, kind)`, exactly as kube-apiserver's patch handler would (up to the
/// differences listed in the [module docs](self)).
///
/// For [`PatchType::Apply`], `original` is `Value::Null` when the object does not exist yet (apply
/// creates it); the other types need an existing object. Strategic merge patch on a kind
/// [`schema_for`] does not know is [`PatchError::UnsupportedForKind`]. A JSON patch that turns the
/// object into something else than a JSON object is [`PatchError::Invalid`], as the apiserver
/// cannot decode it back into the object's type.
pub fn apply_patch(
    patch_type: PatchType,
    original: &Value,
    patch: &[u8],
    gvk: (&str, &str, &str),
) -> Result<Value, PatchError> {
    let (group, version, kind) = gvk;
    match patch_type {
        PatchType::Json => {
            let patched = json_patch(original, patch)?;
            if !patched.is_object() {
                // The apiserver cannot decode the result into the object's type.
                return Err(PatchError::Invalid {
                    message: format!(
                        "\"\" is invalid: patch: Invalid value: \"{patched}\": the patched document is not an object"
                    ),
                });
            }
            Ok(patched)
        }
        PatchType::Merge => merge::apply(original, patch),
        PatchType::Strategic => match schema_for(group, version, kind) {
            Some(schema) => strategic::apply(original, patch, schema),
            None => Err(PatchError::UnsupportedForKind {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: kind.to_owned(),
            }),
        },
        PatchType::Apply => {
            let node = schema_for(group, version, kind).unwrap_or_else(SchemaRef::free_form);
            apply::apply(original, patch, gvk, node.node)
        }
    }
}
