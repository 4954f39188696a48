//! The values that cross the store's API: keys, scopes, objects and the outcome of each write.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use yurt_core::selector::{FieldSelector, LabelSelector};

use super::error::StoreError;

/// A resource type as the request named it: API group (empty for the core group), version and
/// plural resource name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    /// API group; empty for the legacy core group.
    pub group: String,
    /// API version (`v1`).
    pub version: String,
    /// Plural resource name (`pods`).
    pub resource: String,
}

impl Gvr {
    /// Builds a `Gvr` from its three parts.
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// Where one object lives: the component that fetched it, its resource type, namespace (empty
/// when cluster-scoped) and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The client component (`kubelet`, `kube-proxy`, ...); each caches its own view.
    pub component: String,
    /// Resource type.
    pub gvr: Gvr,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key from its parts.
    pub fn new(component: &str, gvr: &Gvr, namespace: &str, name: &str) -> Self {
        Self {
            component: component.to_owned(),
            gvr: gvr.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// One list scope of one component: resource, namespace (empty = every namespace) and the
/// selectors of the list request, parsed.
#[derive(Clone, Debug)]
pub struct ListScope {
    /// The client component.
    pub component: String,
    /// Resource type.
    pub gvr: Gvr,
    /// Namespace of the list request; empty for a cluster-wide list (all namespaces).
    pub namespace: String,
    /// `labelSelector` of the request.
    pub label_selector: LabelSelector,
    /// `fieldSelector` of the request.
    pub field_selector: FieldSelector,
}

impl ListScope {
    /// Parses a scope from the request's selector strings (empty strings select everything).
    pub fn parse(
        component: &str,
        gvr: &Gvr,
        namespace: &str,
        label_selector: &str,
        field_selector: &str,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            component: component.to_owned(),
            gvr: gvr.clone(),
            namespace: namespace.to_owned(),
            label_selector: LabelSelector::parse(label_selector)
                .map_err(|e| StoreError::InvalidSelector(e.to_string()))?,
            field_selector: FieldSelector::parse(field_selector)
                .map_err(|e| StoreError::InvalidSelector(e.to_string()))?,
        })
    }

    /// The scope's identity: selectors in their canonical (sorted) form, so `a=1,b=2` and
    /// `b=2,a=1` are one scope.
    pub fn key(&self) -> ListScopeKey {
        ListScopeKey {
            component: self.component.clone(),
            gvr: self.gvr.clone(),
            namespace: self.namespace.clone(),
            label_selector: self.label_selector.to_string(),
            field_selector: self.field_selector.to_string(),
        }
    }

    /// The scope's selectors, ready to test many objects (the field selector's decoding plan
    /// is worked out once, not per object).
    pub(crate) fn selection(&self) -> Selection<'_> {
        Selection {
            scope: self,
            paths: if self.field_selector.is_empty() {
                None
            } else {
                super::sparse::Paths::of(&self.field_selector)
            },
        }
    }
}

/// A [`ListScope`]'s selectors prepared by [`ListScope::selection`].
pub(crate) struct Selection<'a> {
    scope: &'a ListScope,
    /// The paths a field selector reads; `None` decodes the whole object (or, without a field
    /// selector, nothing).
    paths: Option<super::sparse::Paths>,
}

impl Selection<'_> {
    /// Whether nothing is filtered.
    pub(crate) fn is_everything(&self) -> bool {
        self.scope.label_selector.is_empty() && self.scope.field_selector.is_empty()
    }

    /// Whether the stored object (its labels, and its JSON when the field selector needs it)
    /// belongs to the scope's selection.
    pub(crate) fn selects(&self, labels: &BTreeMap<String, String>, json: &[u8]) -> bool {
        let scope = self.scope;
        if !scope.label_selector.is_empty() && !scope.label_selector.matches(labels) {
            return false;
        }
        if scope.field_selector.is_empty() {
            return true;
        }
        let decoded = match &self.paths {
            Some(paths) => paths.decode(json),
            None => serde_json::from_slice::<serde_json::Value>(json),
        };
        match decoded {
            Ok(v) => scope.field_selector.matches(&v),
            Err(_) => false,
        }
    }
}

/// A list scope's identity as stored in the `lists` table (selectors in canonical text form).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListScopeKey {
    /// The client component.
    pub component: String,
    /// Resource type.
    pub gvr: Gvr,
    /// Namespace; empty for cluster-wide.
    pub namespace: String,
    /// Canonical label selector (empty = everything).
    pub label_selector: String,
    /// Canonical field selector (empty = everything).
    pub field_selector: String,
}

/// What the store remembers about a completed list of a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    /// `metadata.resourceVersion` of the list response.
    #[serde(rename = "resourceVersion")]
    pub resource_version: String,
    /// `kind` of the list response (`PodList`).
    pub kind: String,
    /// `apiVersion` of the list response.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// When the list was completely received, Unix milliseconds.
    #[serde(rename = "completedAtMs")]
    pub completed_at_ms: u64,
}

/// An object to store: its JSON exactly as the apiserver sent it, with the few fields the store
/// indexes (name, namespace, resourceVersion, labels) extracted once, when it is built.
#[derive(Clone, Debug)]
pub struct Object {
    pub(crate) json: Bytes,
    /// The index fields back to back in one allocation: name, namespace, resourceVersion and
    /// the canonical JSON of `metadata.labels` (`{}` when absent).
    index: String,
    /// Where name, namespace and resourceVersion end in `index` (labels run to its end).
    ends: [usize; 3],
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    metadata: Option<MetaHead<'a>>,
}

/// The `metadata` fields the store indexes, borrowed from the object's JSON where possible.
#[derive(Deserialize)]
pub(crate) struct MetaHead<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

impl Object {
    /// Validates `json` (UTF-8, one JSON object with a non-empty `metadata.name`) and extracts its
    /// index fields. The bytes are stored unchanged.
    pub fn from_json(json: impl Into<Bytes>) -> Result<Self, StoreError> {
        let json = json.into();
        let text = std::str::from_utf8(&json)
            .map_err(|e| StoreError::InvalidObject(format!("not UTF-8: {e}")))?;
        let head: Head<'_> = serde_json::from_str(text)
            .map_err(|e| StoreError::InvalidObject(format!("not a JSON object: {e}")))?;
        Self::with_meta(json.clone(), head.metadata)
    }

    /// Builds an object from `json` and its `metadata`, already parsed (and `json` already
    /// checked to be UTF-8 JSON) by a caller that reads more of the object in the same pass.
    pub(crate) fn with_meta(json: Bytes, meta: Option<MetaHead<'_>>) -> Result<Self, StoreError> {
        let meta = meta.ok_or_else(|| StoreError::InvalidObject("no metadata".into()))?;
        let name = meta.name.unwrap_or_default();
        if name.is_empty() {
            return Err(StoreError::InvalidObject("no metadata.name".into()));
        }
        let namespace = meta.namespace.unwrap_or_default();
        let resource_version = meta.resource_version.unwrap_or_default();
        if resource_version.len() > usize::from(u16::MAX) {
            return Err(StoreError::InvalidObject("resourceVersion too long".into()));
        }
        let mut index =
            Vec::with_capacity(name.len() + namespace.len() + resource_version.len() + 2);
        let mut ends = [0; 3];
        for (end, part) in ends.iter_mut().zip([&name, &namespace, &resource_version]) {
            index.extend_from_slice(part.as_bytes());
            *end = index.len();
        }
        serde_json::to_writer(&mut index, &meta.labels.unwrap_or_default())
            .map_err(|e| StoreError::InvalidObject(e.to_string()))?;
        let index = String::from_utf8(index)
            .map_err(|e| StoreError::InvalidObject(format!("not UTF-8: {e}")))?;
        Ok(Self { json, index, ends })
    }

    /// Serializes `value` and validates it as [`Object::from_json`] does.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, StoreError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| StoreError::InvalidObject(e.to_string()))?;
        Self::from_json(bytes)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.index[..self.ends[0]]
    }

    /// `metadata.namespace` (empty when cluster-scoped).
    pub fn namespace(&self) -> &str {
        &self.index[self.ends[0]..self.ends[1]]
    }

    /// `metadata.resourceVersion` (empty when absent).
    pub fn resource_version(&self) -> &str {
        &self.index[self.ends[1]..self.ends[2]]
    }

    /// Canonical JSON of `metadata.labels` (`{}` when absent).
    pub(crate) fn labels(&self) -> &str {
        &self.index[self.ends[2]..]
    }

    /// The JSON as given.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The key this object is stored under for `component` and `gvr`.
    pub fn key(&self, component: &str, gvr: &Gvr) -> ObjectKey {
        ObjectKey::new(component, gvr, self.namespace(), self.name())
    }
}

/// An object read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// `metadata.resourceVersion` as stored (empty when the object had none).
    pub resource_version: String,
    /// The object JSON exactly as it was written.
    pub json: Bytes,
}

/// The answer to a list read.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Matching objects in key order (namespace, then name).
    pub items: Vec<StoredObject>,
    /// Highest item resourceVersion (the offline list's `metadata.resourceVersion`, as upstream
    /// serves it); empty when there are no items.
    pub resource_version: String,
    /// The stored metadata of exactly this scope, if the component ever completed this list.
    pub meta: Option<ListMeta>,
}

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `ADDED`: write with the resourceVersion compare.
    Added,
    /// `MODIFIED`: write with the resourceVersion compare.
    Modified,
    /// `DELETED`: delete unless the stored copy is newer.
    Deleted,
    /// `BOOKMARK`: ignored by the store.
    Bookmark,
}

/// One decoded watch event.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// Event type.
    pub kind: EventKind,
    /// The event's object.
    pub object: Object,
}

/// What a compare-resourceVersion-and-write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// No object was stored under the key.
    Created,
    /// The stored object was replaced (its resourceVersion was older, equal or not comparable).
    Updated,
    /// The stored bytes were identical; nothing was written.
    Unchanged,
    /// Refused: the stored object is newer.
    Stale {
        /// resourceVersion of the stored (newer) object.
        stored: String,
    },
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The object was removed.
    Deleted,
    /// Nothing was stored under the key.
    NotFound,
    /// Refused: the stored object is newer than the delete's resourceVersion.
    Stale {
        /// resourceVersion of the stored (newer) object.
        stored: String,
    },
}

/// What a list replace did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaceOutcome {
    /// Items written (created or updated).
    pub written: usize,
    /// Items not written because the stored copy was newer (or identical).
    pub kept: usize,
    /// Objects of the scope's selection that were absent from the list and removed.
    pub deleted: usize,
}

/// What one watch event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// `ADDED` / `MODIFIED`.
    Put(PutOutcome),
    /// `DELETED`.
    Delete(DeleteOutcome),
    /// `BOOKMARK`.
    Ignored,
}

/// Size figures of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Objects stored (all components).
    pub objects: u64,
    /// Bytes of object keys and values (live data, without B-tree overhead).
    pub object_bytes: u64,
    /// List scopes recorded.
    pub lists: u64,
    /// Non-resource documents stored.
    pub nonresource: u64,
    /// Bytes of all live keys and values in every table.
    pub live_bytes: u64,
    /// Size of the database file (0 for a store without a file).
    pub file_bytes: u64,
}
