//! JSON patch (RFC 6902, `application/json-patch+json`) with the semantics kube-apiserver has,
//! which are those of `gopkg.in/evanphx/json-patch.v4` rather than the letter of the RFC:
//!
//! - `replace` of a missing member of an existing object adds it (only a missing parent fails);
//! - array indexes may be negative (`-1` is the last element; for `add`, `-1` appends);
//! - `test` of a missing member succeeds when the expected value is `null`;
//! - a missing `value` is `null`; `copy` of a missing member copies `null`;
//! - only the last reference token names the target: the first one is ignored, so `a/b` means `/b`;
//! - more than 10000 operations are refused with 413, and `copy` operations may add at most 3 MiB
//!   in total (kube-apiserver's default `JSONPatchMaxCopyBytes`), else 422.

use serde_json::{Map, Value};

use super::PatchError;
use super::go;

/// The most operations kube-apiserver accepts in one JSON patch.
const MAX_OPERATIONS: usize = 10_000;

/// kube-apiserver's default `JSONPatchMaxCopyBytes`: the total size `copy` operations may add.
const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies an RFC 6902 JSON patch (the raw request body) to `original`, as kube-apiserver does.
///
/// Errors: a body that is not JSON or not an array of operation objects is
/// [`PatchError::Malformed`] (400); a failed `test` is [`PatchError::TestFailed`] and any other
/// operation that cannot apply (missing path, bad index, unknown `op`) is [`PatchError::Invalid`]
/// (both 422); more than 10000 operations is [`PatchError::TooLarge`] (413). A `null` body is an
/// empty patch.
///
/// ```
/// use serde_json::json;
/// use yurt_core::patch::{json_patch, PatchError};
///
/// let cm = json!({"data": {"a": "1"}});
/// let out = json_patch(&cm, br#"[{"op": "add", "path": "/data/b", "value": "2"}]"#).unwrap();
/// assert_eq!(out, json!({"data": {"a": "1", "b": "2"}}));
/// let err = json_patch(&cm, br#"[{"op": "test", "path": "/data/a", "value": "9"}]"#).unwrap_err();
/// assert!(matches!(err, PatchError::TestFailed { .. }));
/// ```
pub fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let body: Value =
        serde_json::from_slice(patch).map_err(|_| PatchError::malformed("invalid JSON patch"))?;
    let ops = match body {
        Value::Null => return Ok(original.clone()),
        Value::Array(ops) => ops,
        other => {
            return Err(PatchError::malformed(format!(
                "error decoding patch: json: cannot unmarshal {} into Go value of type []handlers.jsonPatchOp",
                go::json_kind(&other)
            )));
        }
    };
    // kube-apiserver first decodes the body into []struct{Op, Path, From string; Value any}.
    for op in &ops {
        match op {
            Value::Null => {}
            Value::Object(fields) => {
                for name in ["op", "path", "from"] {
                    match fields.get(name) {
                        None | Some(Value::Null | Value::String(_)) => {}
                        Some(other) => {
                            return Err(PatchError::malformed(format!(
                                "error decoding patch: json: cannot unmarshal {} into Go struct field jsonPatchOp.{name} of type string",
                                go::json_kind(other)
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(PatchError::malformed(format!(
                    "error decoding patch: json: cannot unmarshal {} into Go value of type handlers.jsonPatchOp",
                    go::json_kind(other)
                )));
            }
        }
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::TooLarge {
            message: format!(
                "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
                ops.len()
            ),
        });
    }
    let empty = Map::new();
    let mut doc = original.clone();
    let mut copied = 0;
    for op in &ops {
        let fields = op.as_object().unwrap_or(&empty);
        apply_op(&mut doc, fields, &mut copied)?;
    }
    Ok(doc)
}

fn invalid(message: String) -> PatchError {
    PatchError::Invalid { message }
}

fn test_failed(path: &str) -> PatchError {
    PatchError::TestFailed {
        message: format!("testing value {path} failed: test failed"),
    }
}

fn str_field<'a>(op: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    op.get(name).and_then(Value::as_str)
}

/// The operation's `value`: `None` when absent; a present `null` is `Some(Null)`.
fn value_of(op: &Map<String, Value>) -> Option<&Value> {
    op.get("value")
}

fn apply_op(
    doc: &mut Value,
    op: &Map<String, Value>,
    copied: &mut usize,
) -> Result<(), PatchError> {
    let kind = str_field(op, "op").unwrap_or("unknown");
    let path = str_field(op, "path");
    let from = str_field(op, "from");
    const NO_PATH: &str = "operation missing path field: missing value";
    const NO_FROM: &str = "operation, missing from field: missing value";
    match kind {
        "add" => {
            let path = path.ok_or_else(|| {
                invalid("add operation failed to decode path: missing value".into())
            })?;
            let value = value_of(op).cloned().unwrap_or(Value::Null);
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "add operation does not apply: doc is missing path: \"{path}\": missing value"
                ))
            })?;
            add(con, &key, value)
                .map_err(|e| invalid(format!("error in add for path: '{path}': {e}")))
        }
        "remove" => {
            let path = path.ok_or_else(|| {
                invalid("remove operation failed to decode path: missing value".into())
            })?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": missing value"
                ))
            })?;
            remove(con, &key)
                .map(drop)
                .map_err(|e| invalid(format!("error in remove for path: '{path}': {e}")))
        }
        "replace" => {
            let path = path.ok_or_else(|| {
                invalid(format!(
                    "replace operation failed to decode path: {NO_PATH}"
                ))
            })?;
            let value = value_of(op).cloned().unwrap_or(Value::Null);
            if path.is_empty() {
                if !matches!(value, Value::Object(_) | Value::Array(_)) {
                    return Err(invalid(
                        "replace operation value must be object or array".into(),
                    ));
                }
                *doc = value;
                return Ok(());
            }
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "replace operation does not apply: doc is missing path: {path}: missing value"
                ))
            })?;
            get(con, &key).map_err(|_| {
                invalid(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ))
            })?;
            set(con, &key, value)
                .map_err(|e| invalid(format!("error in remove for path: '{path}': {e}")))
        }
        "move" => {
            let from = from.ok_or_else(|| {
                invalid(format!("move operation failed to decode from: {NO_FROM}"))
            })?;
            let (con, key) = find_object(doc, from).ok_or_else(|| {
                invalid(format!(
                    "move operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            get(con, &key).map_err(|e| invalid(format!("error in move for path: '{key}': {e}")))?;
            let value = remove(con, &key)
                .map_err(|e| invalid(format!("error in move for path: '{key}': {e}")))?;
            let path = path.ok_or_else(|| {
                invalid(format!("move operation failed to decode path: {NO_PATH}"))
            })?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "move operation does not apply: doc is missing destination path: {path}: missing value"
                ))
            })?;
            add(con, &key, value)
                .map_err(|e| invalid(format!("error in move for path: '{path}': {e}")))
        }
        "copy" => {
            let from = from.ok_or_else(|| {
                invalid(format!("copy operation failed to decode from: {NO_FROM}"))
            })?;
            let (con, key) = find_object(doc, from).ok_or_else(|| {
                invalid(format!(
                    "copy operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            let source = get(con, &key)
                .map_err(|e| invalid(format!("error in copy for from: '{from}': {e}")))?;
            // Go measures the copied node's JSON (a missing member copies null, size 0) and
            // checks the budget after finding the destination; the value is only cloned when
            // within budget.
            let size = source.map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len()));
            *copied = copied.saturating_add(size);
            let value = if *copied > MAX_COPY_BYTES {
                None
            } else {
                Some(source.cloned().unwrap_or(Value::Null))
            };
            let path = path.ok_or_else(|| {
                invalid("copy operation failed to decode path: missing value".into())
            })?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "copy operation does not apply: doc is missing destination path: {path}: missing value"
                ))
            })?;
            let Some(value) = value else {
                return Err(invalid(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_COPY_BYTES}"
                )));
            };
            add(con, &key, value)
                .map_err(|e| invalid(format!("error while adding value during copy: {e}")))
        }
        "test" => {
            let path = path.ok_or_else(|| {
                invalid(format!("test operation failed to decode path: {NO_PATH}"))
            })?;
            let expected = value_of(op);
            if path.is_empty() {
                return match expected {
                    Some(v) if v == doc => Ok(()),
                    _ => Err(test_failed(path)),
                };
            }
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                invalid(format!(
                    "test operation does not apply: is missing path: {path}: missing value"
                ))
            })?;
            let actual = get(con, &key)
                .map_err(|e| invalid(format!("error in test for path: '{path}': {e}")))?;
            match (actual, expected) {
                // A missing member and a JSON null are the same to evanphx/json-patch.
                (None, None | Some(Value::Null)) => Ok(()),
                (Some(actual), Some(expected)) if actual == expected => Ok(()),
                _ => Err(test_failed(path)),
            }
        }
        other => Err(invalid(format!("Unexpected kind: {other}"))),
    }
}

/// RFC 6901 token decoding: `~1` is `/`, `~0` is `~` (one left-to-right pass).
fn decode_token(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// evanphx's `findObject`: the container (object or array) holding the last token of `path`, and
/// that token decoded. The first token is skipped unexamined, so `path` needs no leading `/`
/// (and `"x/y"` means `"/y"`). `None` when an intermediate value is missing or not a container.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let key = decode_token(part);
        let next = match cur {
            Value::Object(m) => m.get_mut(&key)?,
            Value::Array(items) => {
                let idx = resolve_index(&key, items.len(), items.len()).ok()?;
                items.get_mut(idx)?
            }
            _ => return None,
        };
        if !matches!(next, Value::Object(_) | Value::Array(_)) {
            return None;
        }
        cur = next;
    }
    if !matches!(cur, Value::Object(_) | Value::Array(_)) {
        return None;
    }
    Some((cur, decode_token(split[split.len() - 1])))
}

/// An array index: `strconv.Atoi`, negative counts from `base` (evanphx's negative indexes),
/// must be below `limit`.
fn resolve_index(key: &str, base: usize, limit: usize) -> Result<usize, String> {
    let idx = go::atoi(key)?;
    let len = i64::try_from(base).unwrap_or(i64::MAX);
    let resolved = if idx < 0 {
        if idx < -len {
            return Err(format!(
                "Unable to access invalid index: {idx}: invalid index referenced"
            ));
        }
        idx + len
    } else {
        idx
    };
    match usize::try_from(resolved) {
        Ok(i) if i < limit => Ok(i),
        _ => Err(format!(
            "Unable to access invalid index: {idx}: invalid index referenced"
        )),
    }
}

/// The value at `key` (`None` for a missing object member or a JSON null, like Go's nil node).
fn get<'a>(con: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    let v = match con {
        Value::Object(m) => m.get(key),
        Value::Array(items) => Some(&items[resolve_index(key, items.len(), items.len())?]),
        _ => None,
    };
    Ok(v.filter(|v| !v.is_null()))
}

fn add(con: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_owned(), value);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
                return Ok(());
            }
            if let Err(e) = go::atoi(key) {
                return Err(format!("value was not a proper array index: '{key}': {e}"));
            }
            // Insertion positions run to len inclusive, so negatives count from len + 1.
            let idx = resolve_index(key, items.len() + 1, items.len() + 1)?;
            items.insert(idx, value);
            Ok(())
        }
        _ => Err("invalid container".to_owned()),
    }
}

/// Removes `key`, returning what was there (`null` for a JSON null).
fn remove(con: &mut Value, key: &str) -> Result<Value, String> {
    match con {
        Value::Object(m) => m
            .remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: missing value")),
        Value::Array(items) => {
            let idx = resolve_index(key, items.len(), items.len())?;
            Ok(items.remove(idx))
        }
        _ => Err("invalid container".to_owned()),
    }
}

fn set(con: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_owned(), value);
            Ok(())
        }
        Value::Array(items) => {
            let idx = resolve_index(key, items.len(), items.len())?;
            items[idx] = value;
            Ok(())
        }
        _ => Err("invalid container".to_owned()),
    }
}
