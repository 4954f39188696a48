//! Server-side apply (`application/apply-patch+yaml`), simplified: the apply configuration is
//! merged onto the live object following the schema's list and map types, without managed
//! fields. See the module documentation of [`patch`](super) for what that leaves out.

use serde_json::{Map, Value};

use super::PatchError;
use super::go;
use super::meta::{Field, Node};

type Object = Map<String, Value>;

/// Validates an apply configuration as kube-apiserver does and merges it onto `original`
/// (`Value::Null` or any non-object when the object does not exist yet).
pub(crate) fn apply(
    original: &Value,
    body: &[u8],
    (group, version, kind): (&str, &str, &str),
    node: Node,
) -> Result<Value, PatchError> {
    let config: Value = serde_json::from_slice(body).map_err(|e| {
        PatchError::malformed(format!(
            "error decoding patch: {e} (yurt-core accepts apply configurations in JSON syntax only, not YAML)"
        ))
    })?;
    let config = match config {
        Value::Object(m) => m,
        Value::Null => Object::new(),
        other => {
            return Err(PatchError::malformed(format!(
                "error decoding patch: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                go::json_kind(&other)
            )));
        }
    };

    // The applied object must name exactly the kind addressed (versionCheckManager).
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (cfg_group, cfg_version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [v] => ("", *v),
        [g, v] => (*g, *v),
        _ => ("", ""),
    };
    let cfg_kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if (cfg_group, cfg_version, cfg_kind) != (group, version, kind) {
        return Err(PatchError::malformed(format!(
            "invalid object type: {cfg_group}/{cfg_version}, Kind={cfg_kind}"
        )));
    }
    if matches!(
        config.get("metadata").and_then(|m| m.get("managedFields")),
        Some(Value::Array(_))
    ) {
        return Err(PatchError::malformed("metadata.managedFields must be nil"));
    }

    let mut live = match original {
        Value::Object(m) => m.clone(),
        _ => Object::new(),
    };
    apply_map(&mut live, config, node);
    Ok(Value::Object(live))
}

/// Merges a configuration map onto a live map: `null` removes a field, maps merge (unless the
/// schema says `mapType: atomic`), lists follow their `listType`, anything else is replaced.
fn apply_map(live: &mut Object, config: Object, node: Node) {
    for (key, value) in config {
        if value.is_null() {
            live.remove(&key);
            continue;
        }
        let (child, meta) = node.field(&key);
        match (live.get_mut(&key), value) {
            (Some(Value::Object(l)), Value::Object(c)) if !is_atomic_map(meta) => {
                apply_map(l, c, child);
            }
            (Some(Value::Array(l)), Value::Array(c)) => {
                let merged = apply_list(std::mem::take(l), c, child, meta);
                *l = merged;
            }
            (_, value) => {
                live.insert(key, without_nulls(value));
            }
        }
    }
}

fn is_atomic_map(meta: Option<&Field>) -> bool {
    meta.and_then(|m| m.map_type.as_deref()) == Some("atomic")
}

/// `listType: map` merges items by their map keys (new items appended in configuration order),
/// `listType: set` adds missing values, anything else (`atomic`, unknown) is replaced.
fn apply_list(
    mut live: Vec<Value>,
    config: Vec<Value>,
    node: Node,
    meta: Option<&Field>,
) -> Vec<Value> {
    let list_type = meta.and_then(|m| m.list_type.as_deref());
    match (list_type, meta) {
        (Some("map"), Some(meta)) if !meta.map_keys.is_empty() => {
            for item in config {
                let Value::Object(item) = item else {
                    live.push(without_nulls(item));
                    continue;
                };
                let found = live.iter_mut().find_map(|l| match l {
                    Value::Object(l) if meta.map_keys.iter().all(|k| l.get(k) == item.get(k)) => {
                        Some(l)
                    }
                    _ => None,
                });
                match found {
                    Some(l) => apply_map(l, item, node),
                    None => live.push(without_nulls(Value::Object(item))),
                }
            }
            live
        }
        (Some("set"), _) => {
            for item in config {
                if !live.contains(&item) {
                    live.push(item);
                }
            }
            live
        }
        _ => config.into_iter().map(without_nulls).collect(),
    }
}

/// Drops `null` members of objects, recursively: in an apply configuration they mean "unset".
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
