//! Server-side Tables (`meta.k8s.io/v1` `Table`), the form `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! kubectl prints whatever columns the server sends, so a proxy that answers with plain JSON
//! makes `kubectl get nodes -o wide` show only NAME and AGE. [`table`] builds the Table the
//! kube-apiserver would from a set of objects: the apiserver's columns for pods, nodes,
//! services, endpoints, configmaps, secrets, events and leases (wide columns carry
//! `priority: 1`, which `-o wide` shows), and Name and Age for every other resource. Each row
//! holds the object as [`IncludeObject`] says (`includeObject=None|Metadata|Object`, Metadata by
//! default). The hub uses it to answer Table requests offline from its cache, and the test
//! apiserver to render its Tables, so the two agree.
//!
//! Cells are computed from the object JSON only, with the apiserver's rules simplified where
//! they need more than the object (a pod's STATUS is the deletion, the first waiting or
//! terminated container reason, or the phase; RESTARTS is the sum without the "ago" suffix).

mod columns;

use std::time::SystemTime;

use serde_json::{Value, json};

pub use columns::{Column, columns_for};

/// What each row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (unknown or absent: the default).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }

    /// Reads `includeObject` from a raw query string.
    pub fn from_query(query: Option<&str>) -> Self {
        let value = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "includeObject")
                .map(|(_, v)| v.into_owned())
        });
        IncludeObject::parse(value.as_deref())
    }
}

/// Whether an `Accept` value asks for a Table first (its first media range has `as=Table`).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .map(str::trim)
        .find(|r| !r.is_empty())
        .is_some_and(|first| {
            first
                .split(';')
                .skip(1)
                .any(|p| p.trim().eq_ignore_ascii_case("as=Table"))
        })
}

/// The `Table` of `objects` of `resource` in API group `group` (`""` for core), rows in the
/// given order; `resource_version` is the list's. `now` dates the Age cells.
pub fn table(
    group: &str,
    resource: &str,
    objects: &[Value],
    include: IncludeObject,
    resource_version: &str,
    now: SystemTime,
) -> Value {
    let columns = columns_for(group, resource);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(o, now)).collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The content type of a Table answer.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn accept_and_include_object() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert_eq!(
            IncludeObject::from_query(Some("limit=500&includeObject=Object")),
            IncludeObject::Object
        );
        assert_eq!(IncludeObject::from_query(None), IncludeObject::Metadata);
    }

    #[test]
    fn nodes_have_the_apiservers_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3 * 86_400 + 5 * 3600);
        let node = json!({"metadata": {"name": "edge-1", "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": {"node-role.kubernetes.io/edge": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
              "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
              "nodeInfo": {"kubeletVersion": "v1.36.0", "osImage": "Ubuntu", "kernelVersion": "6.8",
                           "containerRuntimeVersion": "containerd://2.0"}}});
        let t = table("", "nodes", &[node], IncludeObject::Metadata, "7", now);
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "edge-1",
                "Ready",
                "edge",
                "3d5h",
                "v1.36.0",
                "10.0.0.5",
                "<none>",
                "Ubuntu",
                "6.8",
                "containerd://2.0"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn pods_and_the_default_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_090);
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {"nodeName": "edge-1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.7", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table(
            "",
            "pods",
            std::slice::from_ref(&pod),
            IncludeObject::None,
            "1",
            now,
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "1/2",
                "CrashLoopBackOff",
                3,
                "90s",
                "10.1.0.7",
                "edge-1",
                "<none>",
                "<none>"
            ])
        );
        assert!(t["rows"][0].get("object").is_none());
        let t = table(
            "example.com",
            "widgets",
            std::slice::from_ref(&pod),
            IncludeObject::Object,
            "1",
            now,
        );
        assert_eq!(t["rows"][0]["cells"], json!(["web", "90s"]));
        assert_eq!(t["rows"][0]["object"], pod);
    }
}
