//! JSON merge patch (RFC 7386, `application/merge-patch+json`) as kube-apiserver applies it, with
//! `gopkg.in/evanphx/json-patch.v4`'s `MergePatch`.

use serde_json::{Map, Value};

use super::PatchError;
use super::go;

/// Applies an RFC 7386 JSON merge patch to `original` and returns the result.
///
/// Objects merge key by key, `null` deletes a key, anything else (arrays included) replaces the
/// target value. A patch that is not an object replaces the whole document. Like kube-apiserver
/// (evanphx/json-patch v4), `null`s nested in a value that lands where nothing (or a non-object)
/// was are dropped, also inside objects in arrays; an array patched over an object is kept as is.
///
/// ```
/// use serde_json::json;
/// use yurt_core::patch::merge_patch;
///
/// let pod = json!({"metadata": {"labels": {"app": "web", "tier": "1"}}, "spec": {"nodeName": "n1"}});
/// let patched = merge_patch(&pod, &json!({"metadata": {"labels": {"tier": null, "v": "2"}}}));
/// assert_eq!(patched, json!({"metadata": {"labels": {"app": "web", "v": "2"}}, "spec": {"nodeName": "n1"}}));
/// ```
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    match (original, patch) {
        (Value::Object(doc), Value::Object(p)) => {
            let mut doc = doc.clone();
            merge_docs(&mut doc, p);
            Value::Object(doc)
        }
        _ => pruned(patch),
    }
}

/// `apply_patch` for [`PatchType::Merge`](super::PatchType::Merge): validates the body the way
/// kube-apiserver does, then merges.
pub(crate) fn apply(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|_| PatchError::malformed("invalid JSON patch"))?;
    match &patch {
        Value::Object(_) => Ok(merge_patch(original, &patch)),
        // Decodes into a nil map, which evanphx/json-patch rejects as ErrBadJSONPatch.
        Value::Null => Err(PatchError::malformed("Invalid JSON Patch")),
        other => Err(PatchError::malformed(format!(
            "error decoding patch: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            go::json_kind(other)
        ))),
    }
}

fn merge_docs(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            doc.remove(k);
            continue;
        }
        match doc.get_mut(k) {
            Some(cur) if !cur.is_null() => merge_value(cur, v),
            _ => {
                doc.insert(k.clone(), pruned(v));
            }
        }
    }
}

/// `merge(cur, patch)` of evanphx/json-patch: a non-object target takes the (pruned) patch, a
/// non-object patch replaces the target verbatim, two objects merge.
fn merge_value(cur: &mut Value, patch: &Value) {
    match (cur, patch) {
        (Value::Object(doc), Value::Object(p)) => merge_docs(doc, p),
        (cur @ Value::Object(_), p) => *cur = p.clone(),
        (cur, p) => *cur = pruned(p),
    }
}

/// `pruneNulls`: drops `null` members of objects, recursively (also inside arrays), but keeps
/// `null` array elements.
fn pruned(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), pruned(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}
