//! Patch metadata of the built-in Kubernetes types: which lists merge by which key, which are
//! replaced whole, which maps are `retainKeys`, from `data/k8s-patch-meta-v1.36.json` (derived
//! from the OpenAPI document a v1.36 kube-apiserver serves). Parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The embedded metadata document (126 KB).
static RAW: &str = include_str!("../../data/k8s-patch-meta-v1.36.json");

static CATALOG: OnceLock<Catalog> = OnceLock::new();

#[derive(Debug, Default, Deserialize)]
struct Document {
    #[serde(default)]
    definitions: HashMap<String, Definition>,
}

/// One API definition (`io.k8s.api.core.v1.PodSpec`): its fields that carry patch metadata, a
/// reference to a nested definition, or an array/map shape. Plain scalar fields are absent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Definition {
    #[serde(default)]
    fields: HashMap<String, Field>,
    #[serde(default)]
    gvk: Vec<Gvk>,
}

#[derive(Debug, Deserialize)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

/// A field's shape and patch metadata.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Field {
    /// A JSON array (of `reference` objects, or of scalars).
    #[serde(default)]
    pub(crate) array: bool,
    /// A JSON object with arbitrary keys (of `reference` objects, or of scalars).
    #[serde(default)]
    pub(crate) map: bool,
    /// The definition of the field (or of its items / map values).
    #[serde(default, rename = "ref")]
    pub(crate) reference: Option<String>,
    /// `x-kubernetes-patch-strategy`, e.g. `merge`, `retainKeys`, `merge,retainKeys`, `replace`.
    #[serde(default)]
    pub(crate) strategy: Option<String>,
    /// `x-kubernetes-patch-merge-key`.
    #[serde(default, rename = "mergeKey")]
    pub(crate) merge_key: Option<String>,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map` (server-side apply).
    #[serde(default, rename = "listType")]
    pub(crate) list_type: Option<String>,
    /// `x-kubernetes-list-map-keys` (server-side apply).
    #[serde(default, rename = "mapKeys")]
    pub(crate) map_keys: Vec<String>,
    /// `x-kubernetes-map-type` (server-side apply).
    #[serde(default, rename = "mapType")]
    pub(crate) map_type: Option<String>,
}

struct Catalog {
    defs: HashMap<String, Definition>,
    by_gvk: HashMap<(String, String, String), String>,
}

fn catalog() -> &'static Catalog {
    CATALOG.get_or_init(|| {
        // The document is embedded and covered by tests; should it ever fail to parse, every
        // lookup finds nothing (strategic merge is then refused) rather than panicking.
        let doc: Document = serde_json::from_str(RAW).unwrap_or_default();
        let mut by_gvk = HashMap::new();
        for (name, def) in &doc.definitions {
            for g in &def.gvk {
                by_gvk.insert(
                    (g.group.clone(), g.version.clone(), g.kind.clone()),
                    name.clone(),
                );
            }
        }
        Catalog {
            defs: doc.definitions,
            by_gvk,
        }
    })
}

/// A position in an object's schema, used to look up the patch metadata of its fields.
///
/// Obtain one for a built-in kind with [`schema_for`](super::schema_for); [`SchemaRef::free_form`]
/// is the schema of an object nothing is known about (maps merge, lists are replaced).
#[derive(Clone, Copy)]
pub struct SchemaRef {
    pub(crate) node: Node,
}

#[derive(Clone, Copy)]
pub(crate) enum Node {
    /// A struct with known fields.
    Def(&'static str, &'static Definition),
    /// A map whose values are all of one definition (or free-form when `None`).
    MapOf(Option<(&'static str, &'static Definition)>),
    /// Nothing known: unknown fields, `RawExtension`, preserve-unknown-fields content, scalars.
    Free,
}

impl std::fmt::Debug for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node {
            Node::Def(name, _) => write!(f, "SchemaRef({name})"),
            Node::MapOf(Some((name, _))) => write!(f, "SchemaRef(map of {name})"),
            Node::MapOf(None) => f.write_str("SchemaRef(map)"),
            Node::Free => f.write_str("SchemaRef(free-form)"),
        }
    }
}

impl SchemaRef {
    /// The schema of an object without patch metadata: maps merge key by key, lists are replaced
    /// whole. This is how fields unknown to the metadata (e.g. inside a `RawExtension`) merge.
    pub fn free_form() -> Self {
        Self { node: Node::Free }
    }

    /// The schema of an API definition by its OpenAPI name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub fn definition(name: &str) -> Option<Self> {
        let (name, def) = catalog().defs.get_key_value(name)?;
        Some(Self {
            node: Node::Def(name.as_str(), def),
        })
    }

    /// The OpenAPI definition name this schema position describes, if it is a known struct.
    pub fn name(&self) -> Option<&'static str> {
        match self.node {
            Node::Def(name, _) => Some(name),
            _ => None,
        }
    }
}

/// The schema of a built-in kind, e.g. `("apps", "v1", "Deployment")`; `None` for kinds the
/// metadata does not know (custom resources), on which strategic merge patch is not supported.
pub(crate) fn lookup_gvk(group: &str, version: &str, kind: &str) -> Option<SchemaRef> {
    let cat = catalog();
    let name = cat
        .by_gvk
        .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))?;
    SchemaRef::definition(name)
}

fn resolve(reference: Option<&str>) -> Option<(&'static str, &'static Definition)> {
    let (name, def) = catalog().defs.get_key_value(reference?)?;
    Some((name.as_str(), def))
}

impl Node {
    /// The metadata of field `key` of this position and the position of its value (for an array
    /// field: the position of its items).
    pub(crate) fn field(self, key: &str) -> (Node, Option<&'static Field>) {
        match self {
            Node::Def(_, def) => match def.fields.get(key) {
                Some(f) => {
                    let target = resolve(f.reference.as_deref());
                    let child = if f.map {
                        Node::MapOf(target)
                    } else {
                        target.map_or(Node::Free, |(n, d)| Node::Def(n, d))
                    };
                    (child, Some(f))
                }
                None => (Node::Free, None),
            },
            Node::MapOf(Some((n, d))) => (Node::Def(n, d), None),
            Node::MapOf(None) | Node::Free => (Node::Free, None),
        }
    }

    /// A printable name for error messages (Go prints the schema's type name).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Node::Def(name, _) => name,
            Node::MapOf(_) => "map",
            Node::Free => "struct",
        }
    }

    /// The definition name, for "unable to find api field" errors.
    pub(crate) fn struct_name(self) -> &'static str {
        match self {
            Node::Def(name, _) => name.rsplit('.').next().unwrap_or(name),
            Node::MapOf(_) => "map",
            Node::Free => "RawExtension",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_metadata_parses() {
        let cat = catalog();
        assert!(cat.defs.len() > 400, "{} definitions", cat.defs.len());
        assert!(cat.by_gvk.len() > 100);
    }

    #[test]
    fn follows_refs_from_a_kind() {
        let pod = lookup_gvk("", "v1", "Pod").unwrap();
        assert_eq!(pod.name(), Some("io.k8s.api.core.v1.Pod"));
        let (status, _) = pod.node.field("status");
        let (_, conditions) = status.field("conditions");
        let conditions = conditions.unwrap();
        assert_eq!(conditions.merge_key.as_deref(), Some("type"));
        assert_eq!(conditions.strategy.as_deref(), Some("merge"));
        let (_, cs) = status.field("containerStatuses");
        assert_eq!(cs.unwrap().strategy, None);
        let (meta, _) = pod.node.field("metadata");
        let (labels, _) = meta.field("labels");
        assert!(matches!(labels, Node::MapOf(None)));
        assert!(lookup_gvk("apps.openyurt.io", "v1beta1", "NodePool").is_none());
        assert!(lookup_gvk("apps", "v1", "Deployment").is_some());
    }
}
