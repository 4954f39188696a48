//! The last unfiltered copy of each view-dependent object (EndpointSlices, Endpoints, Services)
//! that a filtered list or watch passed on, shared by the layer's clones: a watch opened after a
//! list starts out knowing what that list sent, so a view change re-filters those objects too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use yurt_core::selector::{FieldSelector, LabelSelector};

use super::view::ns_name;

type Objects = HashMap<(String, String), Arc<Value>>;

/// Objects by (apiVersion, resource), then (namespace, name); see the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    inner: Arc<Mutex<HashMap<(String, String), Objects>>>,
    /// Most objects kept per resource; beyond, new ones are not recorded.
    cap: usize,
}

/// Which objects a watch covers: its namespace (empty: all) and selectors.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) namespace: String,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Scope {
    /// The scope of a request, `None` when a selector does not parse.
    pub(crate) fn new(namespace: &str, labels: Option<&str>, fields: Option<&str>) -> Option<Self> {
        Some(Scope {
            namespace: namespace.to_owned(),
            labels: LabelSelector::parse(labels.unwrap_or("")).ok()?,
            fields: FieldSelector::parse(fields.unwrap_or("")).ok()?,
        })
    }

    fn contains(&self, obj: &Value) -> bool {
        (self.namespace.is_empty() || obj["metadata"]["namespace"] == self.namespace.as_str())
            && self.labels.matches_object(obj)
            && self.fields.matches(obj)
    }
}

impl Seen {
    pub(crate) fn new(cap: usize) -> Self {
        Seen {
            inner: Arc::new(Mutex::new(HashMap::new())),
            cap,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(String, String), Objects>) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records `obj` (unfiltered) as the latest copy.
    pub(crate) fn record(&self, gv: &str, resource: &str, obj: Arc<Value>) {
        let cap = self.cap;
        self.with(|m| {
            let objs = m.entry((gv.to_owned(), resource.to_owned())).or_default();
            let key = ns_name(&obj);
            if objs.len() < cap || objs.contains_key(&key) {
                objs.insert(key, obj);
            }
        });
    }

    /// Forgets a deleted object.
    pub(crate) fn forget(&self, gv: &str, resource: &str, obj: &Value) {
        self.with(|m| {
            if let Some(objs) = m.get_mut(&(gv.to_owned(), resource.to_owned())) {
                objs.remove(&ns_name(obj));
            }
        });
    }

    /// The recorded objects of a resource within `scope`, at most `limit`.
    pub(crate) fn matching(
        &self,
        gv: &str,
        resource: &str,
        scope: &Scope,
        limit: usize,
    ) -> Vec<Arc<Value>> {
        self.with(|m| {
            m.get(&(gv.to_owned(), resource.to_owned()))
                .map(|objs| {
                    objs.values()
                        .filter(|o| scope.contains(o))
                        .take(limit)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_within_cap_and_matches_scope() {
        let seen = Seen::new(2);
        let obj = |ns: &str, name: &str, app: &str| {
            Arc::new(json!({"metadata": {"namespace": ns, "name": name, "labels": {"app": app}}}))
        };
        seen.record("v1", "endpoints", obj("a", "x", "web"));
        seen.record("v1", "endpoints", obj("b", "y", "db"));
        seen.record("v1", "endpoints", obj("b", "z", "db"));
        seen.record("v1", "endpoints", obj("b", "y", "web"));
        let all = Scope::new("", None, None).unwrap();
        assert_eq!(seen.matching("v1", "endpoints", &all, 10).len(), 2);
        let web = Scope::new("", Some("app=web"), None).unwrap();
        assert_eq!(seen.matching("v1", "endpoints", &web, 10).len(), 2);
        let ns_a = Scope::new("a", None, Some("metadata.name=x")).unwrap();
        assert_eq!(seen.matching("v1", "endpoints", &ns_a, 10).len(), 1);
        seen.forget("v1", "endpoints", &obj("a", "x", "web"));
        assert_eq!(seen.matching("v1", "endpoints", &all, 10).len(), 1);
        assert!(seen.matching("v1", "services", &all, 10).is_empty());
        assert!(Scope::new("", Some("a in ("), None).is_none());
    }
}
