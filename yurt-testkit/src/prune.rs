//! Structural pruning of custom resources: fields their OpenAPI v3 schema does not specify are
//! dropped on create and update, as kube-apiserver prunes objects of CRDs with structural
//! schemas (unless `x-kubernetes-preserve-unknown-fields` keeps them).
//!
//! `apiVersion`, `kind` and `metadata` at the root (and in `x-kubernetes-embedded-resource`
//! objects) are always kept; `metadata` itself is not pruned. Schemas built from `anyOf`/`allOf`/
//! `oneOf` without `properties` are left alone rather than guessed at.

use serde_json::Value;

/// Prunes `obj` in place against `schema` (the version's `openAPIV3Schema`).
pub(crate) fn prune(obj: &mut Value, schema: &Value) {
    prune_value(obj, schema, true);
}

fn prune_value(v: &mut Value, s: &Value, root: bool) {
    let preserve = s["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    let embedded = root || s["x-kubernetes-embedded-resource"] == Value::Bool(true);
    match v {
        Value::Object(map) => {
            if let Some(props) = s["properties"].as_object() {
                if !preserve {
                    map.retain(|k, _| {
                        props.contains_key(k)
                            || (embedded
                                && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (k, child) in map.iter_mut() {
                    if let Some(cs) = props.get(k)
                        && !(embedded && k == "metadata")
                    {
                        prune_value(child, cs, false);
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties") {
                if ap.is_object() {
                    for child in map.values_mut() {
                        prune_value(child, ap, false);
                    }
                }
            } else if !preserve
                && s["type"] == "object"
                && s.get("anyOf").is_none()
                && s.get("allOf").is_none()
                && s.get("oneOf").is_none()
            {
                map.retain(|k, _| {
                    embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                });
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for item in items {
                    prune_value(item, is, false);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_unknown_fields() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"},
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}}},
            "status": {"type": "object"}}});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "odd": 1},
            "spec": {"a": "1", "b": 2, "m": {"k": "v"}, "free": {"z": 1}, "list": [{"n": "1", "q": 2}]},
            "status": {"s": 1}, "extra": true});
        prune(&mut obj, &schema);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a", "odd": 1},
            "spec": {"a": "1", "m": {"k": "v"}, "free": {"z": 1}, "list": [{"n": "1"}]},
            "status": {}})
        );
    }
}
