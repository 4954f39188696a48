//! Discovery: `/api`, `/apis`, `/apis/<group>`, the per-group-version resource lists, both in the
//! legacy form and as aggregated discovery (`apidiscovery.k8s.io/v2`, which kubectl asks for
//! first), plus the root path list.
//!
//! Built-in group-versions are served verbatim from a real v1.36 kube-apiserver's documents;
//! custom resources (from CRDs or [`TestApiServer::register`](crate::TestApiServer::register))
//! are described from their definitions, in the same shape. Groups the recorded documents do not
//! describe (autoscaling, networking, storage, ...) are not advertised, since the server has no
//! resource list for them.

use std::cmp::Ordering;
use std::sync::Arc;

use http::StatusCode;
use http::request::Parts;
use serde_json::{Value, json};

use crate::body::{self, Body};
use crate::registry::ResourceDef;
use crate::server::Shared;

/// The aggregated discovery media type.
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The `/` document: every path served.
pub(crate) fn root_paths(shared: &Shared) -> Value {
    let reg = shared.registry();
    let mut paths = vec!["/api".to_owned(), "/api/v1".to_owned(), "/apis".to_owned()];
    for (g, versions) in reg.groups() {
        paths.push(format!("/apis/{g}"));
        for v in versions {
            paths.push(format!("/apis/{g}/{v}"));
        }
    }
    for p in ["/healthz", "/livez", "/readyz", "/version"] {
        paths.push(p.to_owned());
    }
    json!({ "paths": paths })
}

/// Whether the client asks for aggregated discovery v2.
fn wants_aggregated(parts: &Parts) -> bool {
    let accept = parts
        .headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.split(',').any(|range| {
        let params: Vec<String> = range
            .split(';')
            .skip(1)
            .map(|p| p.trim().replace(' ', ""))
            .collect();
        let has = |p: &str| params.iter().any(|x| x == p);
        has("g=apidiscovery.k8s.io") && has("v=v2") && has("as=APIGroupDiscoveryList")
    })
}

/// Answers a discovery path, or `None` if it is not one.
pub(crate) fn serve(shared: &Shared, parts: &Parts, path: &str) -> Option<http::Response<Body>> {
    let aggregated = wants_aggregated(parts);
    match path {
        "/api" => Some(if aggregated {
            aggregated_response(&aggregated_list(shared, true))
        } else {
            body::json_value(
                StatusCode::OK,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                        "serverAddress": shared.addr.to_string()}]
                }),
            )
        }),
        "/apis" => Some(if aggregated {
            aggregated_response(&aggregated_list(shared, false))
        } else {
            let groups: Vec<Value> = ordered_groups(shared)
                .into_iter()
                .map(|(g, versions)| group_doc(&g, &versions))
                .collect();
            body::json_value(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }),
        "/api/v1" => Some(body::json_value(
            StatusCode::OK,
            &resource_list(shared, "", "v1")?,
        )),
        _ => {
            let rest = path.strip_prefix("/apis/")?;
            match rest.split('/').collect::<Vec<_>>()[..] {
                [group] => {
                    let (_, versions) = ordered_groups(shared)
                        .into_iter()
                        .find(|(g, _)| g == group)?;
                    let mut doc = group_doc(group, &versions);
                    doc["kind"] = json!("APIGroup");
                    doc["apiVersion"] = json!("v1");
                    Some(body::json_value(StatusCode::OK, &doc))
                }
                [group, version] => Some(body::json_value(
                    StatusCode::OK,
                    &resource_list(shared, group, version)?,
                )),
                _ => None,
            }
        }
    }
}

fn aggregated_response(v: &Value) -> http::Response<Body> {
    let mut resp = body::response(
        StatusCode::OK,
        AGGREGATED,
        body::full(serde_json::to_vec(v).unwrap_or_default()),
    );
    resp.headers_mut()
        .insert(http::header::VARY, http::HeaderValue::from_static("Accept"));
    resp
}

/// Groups (not core) with their versions, preferred version first.
fn ordered_groups(shared: &Shared) -> Vec<(String, Vec<String>)> {
    shared
        .registry()
        .groups()
        .into_iter()
        .map(|(g, mut versions)| {
            versions.sort_by(|a, b| version_priority(b, a));
            (g, versions)
        })
        .collect()
}

/// The legacy `APIGroup` entry of a group.
fn group_doc(group: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": gvs, "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null)})
}

/// The legacy `APIResourceList` of a group-version.
fn resource_list(shared: &Shared, group: &str, version: &str) -> Option<Value> {
    let reg = shared.registry();
    if let Some(doc) = reg.builtin_doc(group, version) {
        return Some(doc.clone());
    }
    let defs = reg.in_group_version(group, version);
    if defs.is_empty() {
        return None;
    }
    let resources: Vec<Value> = defs.iter().flat_map(|d| d.discovery_entries()).collect();
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The aggregated `APIGroupDiscoveryList` of the core group (`core`) or of all other groups.
fn aggregated_list(shared: &Shared, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_owned()])]
    } else {
        ordered_groups(shared)
    };
    let reg = shared.registry();
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(&group, v)
                        .iter()
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !group.is_empty() {
                meta["name"] = json!(group);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// One resource in aggregated form.
fn aggregated_resource(def: &Arc<ResourceDef>) -> Value {
    let kind = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let subresources: Vec<Value> = def
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group.clone().unwrap_or_else(|| def.group.clone()),
                    "version": s.version.clone().unwrap_or_else(|| def.version.clone()), "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut r = json!({
        "resource": def.plural,
        "responseKind": kind,
        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": def.singular,
        "verbs": def.verbs,
    });
    if !def.short_names.is_empty() {
        r["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        r["categories"] = json!(def.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

/// Kubernetes version priority: GA over beta over alpha, then by major and minor number;
/// versions not of that form sort last, alphabetically.
fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

#[cfg(test)]
mod tests {
    use super::version_priority;
    use std::cmp::Ordering;

    #[test]
    fn kube_version_order() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "foo", "v2"];
        v.sort_by(|a, b| version_priority(b, a));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
        assert_eq!(version_priority("v1", "v1"), Ordering::Equal);
    }
}
