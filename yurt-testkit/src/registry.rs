//! Resource definitions: which group/version/resources the test apiserver serves, with their kind,
//! scope, verbs, subresources and selectable fields, and how each is stored.
//!
//! The built-in definitions come from the discovery documents of a real v1.36 kube-apiserver
//! (`data/k8s-discovery-v1.36.json`), so every resource a real cluster advertises is served, with
//! the same verbs, short names and categories, and `kubectl` sees the same discovery. On top of
//! that each built-in gets the per-kind behaviour kube-apiserver's registry gives it (field
//! selectors, generation tracking, create-on-update, ...; see [`ResourceDef`]). Custom resources
//! are added when a CustomResourceDefinition is created, or directly with
//! [`TestApiServer::register`](crate::TestApiServer::register).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::meta::NameRule;

/// The discovery documents of a v1.36 kube-apiserver, legacy JSON form.
pub(crate) const DISCOVERY_JSON: &str = include_str!("../data/k8s-discovery-v1.36.json");

/// One API resource the test apiserver serves at one group/version.
///
/// Build one with [`ResourceDef::new`] and the builder methods, then hand it to
/// [`TestApiServer::register`](crate::TestApiServer::register). Objects are generic JSON; the
/// definition only says where they live and how they are addressed.
///
/// ```
/// use yurt_testkit::ResourceDef;
///
/// let def = ResourceDef::new("example.com", "v1", "widgets", "Widget")
///     .cluster_scoped()
///     .status_subresource()
///     .field_selector("spec.color");
/// assert_eq!(def.singular, "widget");
/// ```
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource name, e.g. `pods`.
    pub plural: String,
    /// Singular name, e.g. `pod`.
    pub singular: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Kind of a list, e.g. `PodList`.
    pub list_kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Verbs allowed on the resource (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`); others are answered 405 MethodNotAllowed.
    pub verbs: Vec<String>,
    /// Short names, e.g. `po`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Subresources, e.g. `status`.
    pub subresources: Vec<Subresource>,
    /// Fields a field selector may name; any other field is refused with 400, as kube-apiserver
    /// refuses unsupported field labels.
    pub field_selectors: Vec<String>,
    pub(crate) behaviour: Behaviour,
    /// Verbatim discovery entries (the resource, then its subresources) for built-ins.
    pub(crate) discovery: Option<Vec<Value>>,
}

/// A subresource of a [`ResourceDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    /// Name, e.g. `status`.
    pub name: String,
    /// Kind sent and received, e.g. `Pod` or `Scale`.
    pub kind: String,
    /// Group of that kind when it differs from the resource's (e.g. `autoscaling`).
    pub group: Option<String>,
    /// Version of that kind when it differs.
    pub version: Option<String>,
    /// Verbs allowed on the subresource.
    pub verbs: Vec<String>,
}

/// What kube-apiserver's registry strategy does differently per resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Behaviour {
    /// `metadata.generation` starts at 1 and increases when anything but metadata (and status,
    /// when there is a status subresource) changes.
    pub generation: bool,
    /// A PUT of a missing object creates it (leases, endpoints, events, limit ranges).
    pub create_on_update: bool,
    /// A PUT without `metadata.resourceVersion` is allowed (false for custom resources and CRDs).
    pub unconditional_update: bool,
    /// A completed DELETE answers with the object rather than a `Success` Status.
    pub return_deleted_object: bool,
    /// The name rule for `metadata.name`.
    pub name_rule: NameRule,
    /// Kind-specific logic.
    pub special: Special,
    /// Where objects are stored: resources sharing a storage key share objects (core and
    /// `events.k8s.io` events, the versions of a custom resource).
    pub storage_key: String,
    /// How objects convert between this version and the stored form.
    pub conversion: Conversion,
    /// For custom resources: the OpenAPI v3 schema of this version, used for pruning.
    pub schema: Option<Value>,
    /// For custom resources: the storage version and conversion of their CRD.
    pub crd: Option<Arc<crate::conversion::CrdVersions>>,
}

/// Resources with logic of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    Pod,
    Namespace,
    Service,
    Csr,
    Crd,
    /// A custom resource defined by the named CRD.
    CustomResource(String),
    /// A create-only resource that is answered, never stored (reviews, bindings).
    Virtual,
}

/// Conversion between a served version and the stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversion {
    /// Same fields; only `apiVersion` differs.
    ApiVersion,
    /// `events.k8s.io/v1` Event over the core Event storage.
    EventsV1,
}

impl ResourceDef {
    /// A namespaced resource with every standard verb, `metadata.name`/`metadata.namespace` field
    /// selectors and no subresources. The singular name is the lower-cased kind.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str) -> ResourceDef {
        ResourceDef {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.to_owned(),
            list_kind: format!("{kind}List"),
            namespaced: true,
            verbs: STANDARD_VERBS.iter().map(|v| (*v).to_owned()).collect(),
            short_names: Vec::new(),
            categories: Vec::new(),
            subresources: Vec::new(),
            field_selectors: vec!["metadata.name".into(), "metadata.namespace".into()],
            behaviour: Behaviour {
                generation: false,
                create_on_update: false,
                unconditional_update: true,
                return_deleted_object: false,
                name_rule: NameRule::Subdomain,
                special: Special::None,
                storage_key: storage_key(group, plural),
                conversion: Conversion::ApiVersion,
                schema: None,
                crd: None,
            },
            discovery: None,
        }
    }

    /// Makes the resource cluster-scoped.
    pub fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    /// Adds a `status` subresource: PUT/PATCH on `/status` change only `status`, and the main
    /// resource ignores changes to `status`.
    pub fn status_subresource(mut self) -> Self {
        if !self.has_subresource("status") {
            self.subresources.push(Subresource {
                name: "status".into(),
                kind: self.kind.clone(),
                group: None,
                version: None,
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        self
    }

    /// Allows a field selector on `path` (a dotted JSON path such as `spec.nodeName`).
    pub fn field_selector(mut self, path: &str) -> Self {
        if !self.field_selectors.iter().any(|f| f == path) {
            self.field_selectors.push(path.to_owned());
        }
        self
    }

    /// Sets the short names.
    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Tracks `metadata.generation` as custom resources do.
    pub fn with_generation(mut self) -> Self {
        self.behaviour.generation = true;
        self
    }

    /// `group/version` as it appears in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the named subresource exists.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    /// The named subresource.
    pub(crate) fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `verb` is allowed on the resource itself.
    pub(crate) fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The legacy discovery entries: the resource, then its subresources.
    pub(crate) fn discovery_entries(&self) -> Vec<Value> {
        if let Some(entries) = &self.discovery {
            return entries.clone();
        }
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        for sub in &self.subresources {
            let mut e = json!({
                "name": format!("{}/{}", self.plural, sub.name),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some(g) = &sub.group {
                e["group"] = json!(g);
            }
            if let Some(v) = &sub.version {
                e["version"] = json!(v);
            }
            out.push(e);
        }
        out
    }
}

/// The verbs of an ordinary stored resource.
pub(crate) const STANDARD_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The storage key of a group/resource.
pub(crate) fn storage_key(group: &str, plural: &str) -> String {
    format!("{group}/{plural}")
}

/// Every resource served, by group/version/resource.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    defs: HashMap<(String, String, String), Arc<ResourceDef>>,
    /// Group-versions in discovery order: `""`/`v1` first, then groups as the real apiserver
    /// orders them, then custom groups in registration order.
    group_versions: Vec<(String, String)>,
    /// Verbatim legacy documents of built-in group-versions (`/api/v1`, `/apis/apps/v1`).
    builtin_docs: HashMap<(String, String), Value>,
    /// Verbatim `/version`.
    pub(crate) version: Value,
    /// Built-in group order from `/apis`.
    builtin_groups: Vec<String>,
}

impl Registry {
    /// The built-in resources of a v1.36 kube-apiserver.
    pub(crate) fn builtin() -> Registry {
        let doc: Value = serde_json::from_str(DISCOVERY_JSON).expect("embedded discovery parses");
        let paths = &doc["paths"];
        let mut reg = Registry {
            version: paths["/version"].clone(),
            ..Registry::default()
        };
        reg.builtin_groups = paths["/apis"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str().map(str::to_owned))
            .collect();
        let mut gvs: Vec<(String, String, &Value)> = Vec::new();
        if let Some(v1) = paths.get("/api/v1") {
            gvs.push((String::new(), "v1".into(), v1));
        }
        for group in &reg.builtin_groups {
            let preferred = paths[format!("/apis/{group}")]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["version"].as_str().map(str::to_owned))
                .collect::<Vec<_>>();
            for version in preferred {
                if let Some(d) = paths.get(format!("/apis/{group}/{version}")) {
                    gvs.push((group.clone(), version, d));
                }
            }
        }
        for (group, version, doc) in gvs {
            let resources = doc["resources"].as_array().cloned().unwrap_or_default();
            for entry in &resources {
                let name = entry["name"].as_str().unwrap_or_default();
                if name.contains('/') {
                    continue;
                }
                let def = builtin_def(&group, &version, entry, &resources);
                reg.insert(def);
            }
            reg.builtin_docs.insert((group, version), doc.clone());
        }
        reg
    }

    fn insert(&mut self, def: ResourceDef) {
        let key = (def.group.clone(), def.version.clone(), def.plural.clone());
        if !self
            .group_versions
            .iter()
            .any(|(g, v)| g == &def.group && v == &def.version)
        {
            self.group_versions
                .push((def.group.clone(), def.version.clone()));
        }
        self.defs.insert(key, Arc::new(def));
    }

    /// Adds or replaces a definition. A built-in group-version that gains a resource is then
    /// described from the definitions rather than verbatim.
    pub(crate) fn register(&mut self, def: ResourceDef) {
        self.builtin_docs
            .remove(&(def.group.clone(), def.version.clone()));
        self.insert(def);
    }

    /// Removes every definition whose storage key is `storage_key`; returns how many.
    pub(crate) fn unregister_storage(&mut self, storage_key: &str) -> usize {
        let before = self.defs.len();
        self.defs
            .retain(|_, d| d.behaviour.storage_key != storage_key);
        let defs = &self.defs;
        self.group_versions
            .retain(|(g, v)| defs.keys().any(|(dg, dv, _)| dg == g && dv == v));
        before - self.defs.len()
    }

    /// The definition at group/version/resource.
    pub(crate) fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// Every definition, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.defs.values()
    }

    /// Group-versions in discovery order.
    #[cfg(test)]
    pub(crate) fn group_versions(&self) -> &[(String, String)] {
        &self.group_versions
    }

    /// Groups in discovery order (`""` excluded), each with its versions in order.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut ordered: Vec<&(String, String)> = self.group_versions.iter().collect();
        // Built-in groups keep the real apiserver's order; others follow in registration order.
        ordered.sort_by_key(|(g, _)| {
            self.builtin_groups
                .iter()
                .position(|b| b == g)
                .unwrap_or(usize::MAX)
        });
        for (g, v) in ordered {
            if g.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(name, _)| name == g) {
                Some((_, versions)) => versions.push(v.clone()),
                None => out.push((g.clone(), vec![v.clone()])),
            }
        }
        out
    }

    /// Definitions of one group-version, sorted by resource name.
    pub(crate) fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        let mut defs: Vec<_> = self
            .defs
            .values()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect();
        defs.sort_by(|a, b| a.plural.cmp(&b.plural));
        defs
    }

    /// The verbatim legacy document of a built-in group-version, unless it was extended.
    pub(crate) fn builtin_doc(&self, group: &str, version: &str) -> Option<&Value> {
        self.builtin_docs
            .get(&(group.to_owned(), version.to_owned()))
    }
}

/// A built-in definition from its discovery entry, with kube-apiserver's per-kind behaviour.
fn builtin_def(group: &str, version: &str, entry: &Value, all: &[Value]) -> ResourceDef {
    let plural = entry["name"].as_str().unwrap_or_default().to_owned();
    let kind = entry["kind"].as_str().unwrap_or_default().to_owned();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut def = ResourceDef::new(group, version, &plural, &kind);
    def.singular = entry["singularName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    def.namespaced = entry["namespaced"].as_bool().unwrap_or(false);
    def.verbs = strings(&entry["verbs"]);
    def.short_names = strings(&entry["shortNames"]);
    def.categories = strings(&entry["categories"]);
    let prefix = format!("{plural}/");
    let mut entries = vec![entry.clone()];
    for sub in all {
        let name = sub["name"].as_str().unwrap_or_default();
        if let Some(sub_name) = name.strip_prefix(&prefix) {
            def.subresources.push(Subresource {
                name: sub_name.to_owned(),
                kind: sub["kind"].as_str().unwrap_or_default().to_owned(),
                group: sub["group"].as_str().map(str::to_owned),
                version: sub["version"].as_str().map(str::to_owned),
                verbs: strings(&sub["verbs"]),
            });
            entries.push(sub.clone());
        }
    }
    def.discovery = Some(entries);
    if !def.namespaced {
        def.field_selectors = vec!["metadata.name".into(), "metadata.namespace".into()];
    }
    let b = &mut def.behaviour;
    let extra: &[&str] = match (group, plural.as_str()) {
        ("", "pods") => {
            b.special = Special::Pod;
            b.generation = true;
            b.return_deleted_object = true;
            &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ]
        }
        ("", "nodes") => {
            def.field_selectors = vec!["metadata.name".into()];
            &["spec.unschedulable"]
        }
        ("", "namespaces") => {
            b.special = Special::Namespace;
            b.return_deleted_object = true;
            b.name_rule = NameRule::Label;
            def.field_selectors = vec!["metadata.name".into()];
            &["status.phase"]
        }
        ("", "secrets") => &["type"],
        ("", "services") => {
            b.special = Special::Service;
            b.name_rule = NameRule::Label;
            b.return_deleted_object = true;
            &["spec.clusterIP", "spec.type"]
        }
        ("", "serviceaccounts") => {
            b.return_deleted_object = true;
            &[]
        }
        ("", "events") => {
            b.create_on_update = true;
            b.name_rule = NameRule::PathSegment;
            &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ]
        }
        ("events.k8s.io", "events") => {
            b.create_on_update = true;
            b.name_rule = NameRule::PathSegment;
            b.storage_key = storage_key("", "events");
            b.conversion = Conversion::EventsV1;
            &[]
        }
        ("", "endpoints") | ("", "limitranges") | ("coordination.k8s.io", "leases") => {
            b.create_on_update = true;
            &[]
        }
        ("", "replicationcontrollers") => {
            b.generation = true;
            &["status.replicas"]
        }
        ("apps", "replicasets") => {
            b.generation = true;
            &["status.replicas"]
        }
        ("apps", "deployments" | "statefulsets" | "daemonsets") => {
            b.generation = true;
            &[]
        }
        ("batch", "jobs") => {
            b.generation = true;
            &["status.successful"]
        }
        ("batch", "cronjobs") | ("policy", "poddisruptionbudgets") => {
            b.generation = true;
            &[]
        }
        ("certificates.k8s.io", "certificatesigningrequests") => {
            b.special = Special::Csr;
            def.field_selectors = vec!["metadata.name".into()];
            &["spec.signerName"]
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            b.special = Special::Crd;
            b.generation = true;
            b.unconditional_update = false;
            b.return_deleted_object = true;
            &[]
        }
        ("rbac.authorization.k8s.io", _) => {
            b.name_rule = NameRule::PathSegment;
            &[]
        }
        _ => &[],
    };
    for f in extra {
        def.field_selectors.push((*f).to_owned());
    }
    let stored = def.verbs.iter().any(|v| v == "get" || v == "list");
    if !stored {
        def.behaviour.special = Special::Virtual;
    }
    def
}

/// The definitions a CustomResourceDefinition object declares (one per served version), or why
/// it cannot be served.
pub(crate) fn defs_from_crd(crd: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"]
        .as_str()
        .ok_or("spec.names.kind: Required value")?;
    let scope = spec["scope"].as_str().unwrap_or("Namespaced");
    let name = crate::meta::meta_str(crd, "name");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let versions = spec["versions"]
        .as_array()
        .filter(|v| !v.is_empty())
        .ok_or(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        )?;
    let crd_versions = crate::conversion::CrdVersions::from_crd_spec(spec).map(Arc::new);
    let mut out = Vec::new();
    for v in versions {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let version = v["name"]
            .as_str()
            .ok_or("spec.versions[].name: Required value")?;
        let mut def = ResourceDef::new(group, version, plural, kind);
        def.namespaced = scope != "Cluster";
        if let Some(s) = names["singular"].as_str() {
            def.singular = s.to_owned();
        }
        if let Some(lk) = names["listKind"].as_str() {
            def.list_kind = lk.to_owned();
        }
        def.short_names = strings(&names["shortNames"]);
        def.categories = strings(&names["categories"]);
        if !def.namespaced {
            def.field_selectors = vec!["metadata.name".into(), "metadata.namespace".into()];
        }
        for field in v["selectableFields"].as_array().into_iter().flatten() {
            if let Some(path) = field["jsonPath"].as_str() {
                def = def.field_selector(path.trim_start_matches('.'));
            }
        }
        let subs = &v["subresources"];
        if subs.get("status").is_some() {
            def = def.status_subresource();
        }
        if subs.get("scale").is_some() {
            def.subresources.push(Subresource {
                name: "scale".into(),
                kind: "Scale".into(),
                group: Some("autoscaling".into()),
                version: Some("v1".into()),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            });
        }
        def.behaviour.generation = true;
        def.behaviour.unconditional_update = false;
        def.behaviour.return_deleted_object = true;
        def.behaviour.name_rule = NameRule::PathSegment;
        def.behaviour.special = Special::CustomResource(name.to_owned());
        def.behaviour.schema = v["schema"]["openAPIV3Schema"]
            .as_object()
            .map(|o| Value::Object(o.clone()));
        def.behaviour.crd = crd_versions.clone();
        out.push(def);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load() {
        let reg = Registry::builtin();
        let pods = reg.get("", "v1", "pods").unwrap();
        assert_eq!(pods.kind, "Pod");
        assert!(pods.namespaced);
        assert!(pods.has_subresource("status"));
        assert!(pods.field_selectors.iter().any(|f| f == "spec.nodeName"));
        let ev = reg.get("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(ev.behaviour.storage_key, "/events");
        let ns = reg.get("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced && !ns.allows("deletecollection"));
        assert_eq!(
            reg.get("authentication.k8s.io", "v1", "tokenreviews")
                .unwrap()
                .behaviour
                .special,
            Special::Virtual
        );
        assert_eq!(reg.group_versions()[0], (String::new(), "v1".to_owned()));
        let apps = reg
            .group_versions()
            .iter()
            .filter(|(g, _)| g == "apps")
            .count();
        assert_eq!(apps, 1);
    }
}
