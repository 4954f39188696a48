//! Strategic merge patch (`application/strategic-merge-patch+json`), following apimachinery's
//! `strategicpatch.StrategicMergeMapPatch` step for step (server-side options: parallel lists
//! are merged, unmatched `null`s are ignored), driven by the embedded patch metadata.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::PatchError;
use super::go::{self, GoType};
use super::meta::{Field, Node, SchemaRef};

const DIRECTIVE: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

type Object = Map<String, Value>;

/// Applies a strategic merge patch to `original` using the patch metadata of `schema`.
///
/// `patch` must be a JSON object (or `null`, an empty patch); `original` must be an object.
/// Maps merge recursively and `null` deletes a key; lists whose field has patch strategy `merge`
/// merge by the field's merge key (objects) or as a set (scalars), other lists are replaced
/// whole; the directives `$patch` (`replace`, `delete`), `$retainKeys`, `$setElementOrder/<f>`
/// and `$deleteFromPrimitiveList/<f>` work as in kube-apiserver, including its element-ordering
/// rules. Fields the metadata does not describe merge as maps or are replaced (lists).
///
/// Errors carry the class kube-apiserver gives them: malformed directive lists are
/// [`PatchError::Malformed`] (400), a list of lists is [`PatchError::Invalid`] (422), and other
/// failures (an item without its merge key, an unknown `$patch` value, `$patch: merge`) are
/// [`PatchError::Rejected`] (500, as the apiserver passes them through unclassified).
///
/// ```
/// use serde_json::json;
/// use yurt_core::patch::{schema_for, strategic_merge_patch};
///
/// let pod = json!({"status": {"conditions": [
///     {"type": "Ready", "status": "False"},
///     {"type": "PodScheduled", "status": "True"}]}});
/// let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
/// let schema = schema_for("", "v1", "Pod").unwrap();
/// let out = strategic_merge_patch(&pod, &patch, schema).unwrap();
/// assert_eq!(out, json!({"status": {"conditions": [
///     {"type": "Ready", "status": "True"},
///     {"type": "PodScheduled", "status": "True"}]}}));
/// ```
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: SchemaRef,
) -> Result<Value, PatchError> {
    let Value::Object(original) = original else {
        return Err(PatchError::malformed("invalid JSON document"));
    };
    let patch = match patch {
        Value::Object(p) => p.clone(),
        Value::Null => Object::new(),
        other => {
            return Err(PatchError::malformed(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                go::json_kind(other)
            )));
        }
    };
    merge_map(original.clone(), patch, schema.node).map(Value::Object)
}

/// `apply_patch` for [`PatchType::Strategic`](super::PatchType::Strategic) once the schema is
/// known: body validation as kube-apiserver does it, then the merge.
pub(crate) fn apply(original: &Value, body: &[u8], schema: SchemaRef) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|_| PatchError::malformed("invalid JSON patch"))?;
    strategic_merge_patch(original, &patch, schema)
}

// ---------------------------------------------------------------------------------------------
// Errors, named after apimachinery's mergepatch errors.

fn err_no_merge_key(m: &Value, key: &str) -> PatchError {
    PatchError::rejected(format!(
        "map: {} does not contain declared merge key: {key}",
        go::fmt_v(m)
    ))
}

fn err_bad_arg_type(expected: GoType, actual: &Value) -> PatchError {
    PatchError::rejected(format!(
        "expected a {}, but received a {}",
        expected.name(),
        GoType::of(actual).name()
    ))
}

fn err_bad_patch_type(directive: &Value, m: &Value) -> PatchError {
    PatchError::rejected(format!(
        "unknown patch type: {} in map: {}",
        go::fmt_s(directive),
        go::fmt_v(m)
    ))
}

fn err_bad_format_primitive_list() -> PatchError {
    PatchError::malformed("invalid patch format of primitive list")
}

fn err_bad_format_retain_keys() -> PatchError {
    PatchError::malformed("invalid patch format of retainKeys")
}

fn err_bad_format_set_element_order() -> PatchError {
    PatchError::malformed("invalid patch format of setElementOrder list")
}

// ---------------------------------------------------------------------------------------------
// Patch metadata.

/// `extractRetainKeysPatchStrategy`: the non-`retainKeys` strategy of a field (`""` if none).
fn strategy_of(meta: Option<&Field>) -> Result<&str, PatchError> {
    let Some(s) = meta.and_then(|m| m.strategy.as_deref()) else {
        return Ok("");
    };
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [one] => Ok(if *one == "retainKeys" { "" } else { one }),
        ["retainKeys", other] | [other, "retainKeys"] => Ok(other),
        _ => Err(PatchError::rejected(format!(
            "unexpected patch strategy: [{}]",
            parts.join(" ")
        ))),
    }
}

fn merge_key_of(meta: Option<&Field>) -> &str {
    meta.and_then(|m| m.merge_key.as_deref()).unwrap_or("")
}

/// `extractKey`: the field a `$deleteFromPrimitiveList/<f>` or `$setElementOrder/<f>` key names.
fn extract_key(key: &str, prefix: &str) -> Result<String, PatchError> {
    match key.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => Err(err_bad_format_primitive_list()),
        _ => Err(err_bad_format_set_element_order()),
    }
}

// ---------------------------------------------------------------------------------------------
// Values taken from the patch as they are.

fn is_directive_key(k: &str) -> bool {
    k == DIRECTIVE
        || k == RETAIN_KEYS
        || k.starts_with(SET_ELEMENT_ORDER)
        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// `removeDirectives` for a value added where the original had nothing: maps carrying `$patch`
/// are dropped (whole, with their list item), recursively. Leftover directive keys
/// (`$retainKeys`, `$setElementOrder/..`, `$deleteFromPrimitiveList/..`) are dropped too:
/// kube-apiserver loses them when it decodes the result into the typed object.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter(|(k, _)| !is_directive_key(k))
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// `discardNullValuesFromPatch`: drops `null` members of maps, recursively (not list elements).
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// A value kube-apiserver takes verbatim from the patch (`$patch: replace`, `replace` strategy,
/// non-merging lists, new list items): directive keys left inside are dropped, as the typed decode
/// that follows the merge in kube-apiserver drops them.
fn verbatim(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .map(|(k, v)| (k, verbatim(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(verbatim).collect()),
        other => other,
    }
}

fn verbatim_map(m: Object) -> Object {
    match verbatim(Value::Object(m)) {
        Value::Object(m) => m,
        _ => Object::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Maps.

/// `mergeMap`.
fn merge_map(mut original: Object, mut patch: Object, node: Node) -> Result<Object, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some(REPLACE) => {
                patch.remove(DIRECTIVE);
                Ok(verbatim_map(patch))
            }
            Some(DELETE) => Ok(Object::new()),
            _ => Err(err_bad_patch_type(directive, &Value::Object(patch.clone()))),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, node)?;

    // Go walks the patch in random map order; the only keys whose order can matter are a list
    // and its `$deleteFromPrimitiveList/` twin, so deletions run last (as they do after
    // `$setElementOrder`).
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((key, value));
        } else {
            merge_entry(&mut original, key, value, false, node)?;
        }
    }
    for (key, value) in deletions {
        let key = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?;
        merge_entry(&mut original, key, value, true, node)?;
    }
    Ok(original)
}

/// One iteration of `mergeMap`'s main loop.
fn merge_entry(
    original: &mut Object,
    key: String,
    mut patch_v: Value,
    is_delete_list: bool,
    node: Node,
) -> Result<(), PatchError> {
    if patch_v.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let Some(orig_v) = original.get_mut(&key) else {
        if !is_delete_list {
            discard_nulls(&mut patch_v);
            if let Some(v) = remove_directives(patch_v) {
                original.insert(key, v);
            }
        }
        return Ok(());
    };
    if GoType::of(orig_v) != GoType::of(&patch_v) {
        if !is_delete_list {
            discard_nulls(&mut patch_v);
            match remove_directives(patch_v) {
                Some(v) => *orig_v = v,
                None => {
                    original.remove(&key);
                }
            }
        }
        return Ok(());
    }
    match (orig_v.take(), patch_v) {
        (Value::Object(o), Value::Object(p)) => {
            let (child, meta) = node.field(&key);
            let merged = if strategy_of(meta)? == REPLACE {
                verbatim_map(p)
            } else {
                merge_map(o, p, child)?
            };
            *orig_v = Value::Object(merged);
        }
        (Value::Array(o), Value::Array(p)) => {
            let (child, meta) = node.field(&key);
            let strategy = strategy_of(meta)?;
            let merged =
                merge_slice_handler(o, p, child, strategy, merge_key_of(meta), is_delete_list)?;
            *orig_v = Value::Array(merged.items);
        }
        (_, p) => *orig_v = p,
    }
    Ok(())
}

/// `applyRetainKeysDirective`: drop the original's keys not listed in `$retainKeys`, after
/// checking that the patch only sets listed keys.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(list) = retain else {
        return Err(err_bad_format_retain_keys());
    };
    let mut keep = HashSet::new();
    for v in &list {
        go::hashable(v)?;
        if let Value::String(s) = v {
            keep.insert(s.as_str());
        }
    }
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(k.as_str()) {
            return Err(err_bad_format_retain_keys());
        }
    }
    original.retain(|k, _| keep.contains(k.as_str()));
    Ok(())
}

/// `mergePatchIntoOriginal`: every `$setElementOrder/<f>` merges list `<f>` of the patch into
/// the original and then orders the result: `$setElementOrder` first, then the patch's order,
/// then the live object's.
fn merge_set_element_order(
    original: &mut Object,
    patch: &mut Object,
    node: Node,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let Some(order_v) = patch.remove(&key) else {
            continue;
        };
        let Value::Array(order) = order_v else {
            return Err(err_bad_arg_type(GoType::Slice, &order_v));
        };
        let field = extract_key(&key, SET_ELEMENT_ORDER)?;

        // A null or empty list in the stored object is treated as absent: kube-apiserver's
        // original comes from a typed object, where both are omitted.
        let original_list = match original.get(&field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(err_bad_arg_type(GoType::Slice, other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => return Err(err_bad_arg_type(GoType::Slice, other)),
        };

        let (child, meta) = node.field(&field);
        let Some(meta) = meta.filter(|m| m.array) else {
            return Err(PatchError::rejected(format!(
                "unable to find api field in struct {} for the json field {field:?}",
                node.struct_name()
            )));
        };
        let strategy = strategy_of(Some(meta))?;
        let merge_key = merge_key_of(Some(meta));
        validate_patch_with_set_order_list(patch_list.as_deref(), &order, merge_key)?;

        let empty = Vec::new();
        let (merged, server_order) = match (&original_list, &patch_list) {
            (Some(o), None) => (o.clone(), o.clone()),
            (None, Some(p)) => {
                let merged = match remove_directives(Value::Array(p.clone())) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                (merged, Vec::new())
            }
            (Some(o), Some(p)) => {
                let merged =
                    merge_slice_handler(o.clone(), p.clone(), child, strategy, merge_key, false)?;
                (
                    merged.items,
                    merged.server_view.unwrap_or_else(|| o.clone()),
                )
            }
            (None, None) => continue,
        };

        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &order)?
        } else {
            partition_maps(merged, &order, merge_key)?
        };
        let kind = slice_element_type(&[
            original_list.as_deref().unwrap_or(&empty),
            patch_list.as_deref().unwrap_or(&empty),
        ])?;
        let ordered = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &server_order,
            merge_key,
            kind,
        )?;
        original.insert(field.clone(), Value::Array(ordered));
        patch.remove(&field);
    }
    Ok(())
}

/// `validatePatchWithSetOrderList`: the patch list's items (deletions and directives aside)
/// must appear in `$setElementOrder` in the same relative order.
fn validate_patch_with_set_order_list(
    patch_list: Option<&[Value]>,
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    let patch_list = patch_list.unwrap_or(&[]);
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        extract_to_delete_items(patch_list.to_vec())?.0
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if contains_directive_marker(&non_delete[pi]) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(PatchError::rejected(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go::fmt_v(&Value::Array(patch_list.to_vec())),
            go::fmt_v(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn contains_directive_marker(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

/// `mergeKeyValueEqual`.
fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return go::go_eq(left, right);
    }
    let l = left
        .as_object()
        .ok_or_else(|| err_bad_arg_type(GoType::Map, left))?;
    let r = right
        .as_object()
        .ok_or_else(|| err_bad_arg_type(GoType::Map, right))?;
    let lv = l
        .get(merge_key)
        .ok_or_else(|| err_no_merge_key(left, merge_key))?;
    let rv = r
        .get(merge_key)
        .ok_or_else(|| err_no_merge_key(right, merge_key))?;
    go::go_eq(lv, rv)
}

// ---------------------------------------------------------------------------------------------
// Lists.

/// A merged list, and the live-order view Go's `$setElementOrder` handling sees afterwards.
struct MergedSlice {
    items: Vec<Value>,
    /// Go deletes `$patch: delete` items from the original list in place (`append(s[:i],
    /// s[i+1:]...)`) and appends new items to the shortened slice, which writes them into the
    /// original's backing array. The `$setElementOrder` path still holds the original slice, so it
    /// sees that array: the survivors, then the first new items (as many as were deleted), then
    /// leftovers of the shifting. That view decides where server-only items land, so it is
    /// reproduced here. `None`: nothing was deleted, the view is the original list.
    server_view: Option<Vec<Value>>,
}

/// `mergeSliceHandler`.
fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: Node,
    strategy: &str,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<MergedSlice, PatchError> {
    if strategy == MERGE || is_delete_list {
        merge_slice(original, patch, node, merge_key, is_delete_list)
    } else {
        Ok(MergedSlice {
            items: patch.into_iter().map(verbatim).collect(),
            server_view: None,
        })
    }
}

/// `mergeSlice`.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: Node,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<MergedSlice, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(MergedSlice {
            items: original,
            server_view: None,
        });
    }
    let kind = slice_element_type(&[&original, &patch])?;
    if kind != GoType::Map {
        if is_delete_list {
            return Ok(MergedSlice {
                items: delete_from_slice(original, &patch),
                server_view: None,
            });
        }
        // Union without duplicates (also those already in the original); the order of `merged`
        // does not matter, normalize_element_order fully determines it.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = partition_primitives(merged, &patch)?;
        let items =
            normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)?;
        return Ok(MergedSlice {
            items,
            server_view: None,
        });
    }
    if merge_key.is_empty() {
        return Err(PatchError::rejected(format!(
            "cannot merge lists without merge key for {}",
            node.name()
        )));
    }
    let special = merge_slice_with_special_elements(original, patch, merge_key)?;
    let (merged, appended) = merge_slice_without_special_elements(
        special.live.clone(),
        &special.patch,
        merge_key,
        node,
    )?;
    let server_view = special.backing.map(|(mut backing, mut len)| {
        if !special.replaced {
            for item in appended {
                if len >= backing.len() {
                    break; // Go reallocates: later appends no longer touch the original.
                }
                backing[len] = item;
                len += 1;
            }
        }
        backing
    });
    let (patch_items, server_only) = partition_maps(merged, &special.patch, merge_key)?;
    let items = normalize_element_order(
        patch_items,
        server_only,
        &special.patch,
        &special.live,
        merge_key,
        kind,
    )?;
    Ok(MergedSlice { items, server_view })
}

/// `sliceElementType`: all elements of all lists must have one Go type, which is not a list.
fn slice_element_type(lists: &[&[Value]]) -> Result<GoType, PatchError> {
    let mut prev: Option<GoType> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let t = GoType::of(v);
        match prev {
            None => {
                if t == GoType::Nil {
                    // reflect.TypeOf(nil).Kind() panics in Go.
                    return Err(PatchError::rejected(
                        "runtime error: invalid memory address or nil pointer dereference",
                    ));
                }
                if t == GoType::Slice {
                    return Err(PatchError::Invalid {
                        message: "lists of lists are not supported".to_owned(),
                    });
                }
                prev = Some(t);
            }
            Some(p) if p != t => {
                let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                return Err(PatchError::rejected(format!(
                    "list element types are not identical: {}",
                    go::fmt_v(&Value::Array(all))
                )));
            }
            Some(_) => {}
        }
    }
    prev.ok_or_else(|| PatchError::rejected("no elements in any of the given slices"))
}

/// What `mergeSliceWithSpecialElements` leaves behind.
struct Special {
    /// The list to merge into: the original without deleted items, or, after `$patch: replace`,
    /// the patch's plain items.
    live: Vec<Value>,
    /// The patch's plain items (empty after `$patch: replace`).
    patch: Vec<Value>,
    /// The original's backing array after in-place deletions and the live length within it;
    /// `None` when nothing was deleted.
    backing: Option<(Vec<Value>, usize)>,
    replaced: bool,
}

/// `mergeSliceWithSpecialElements`: applies `$patch: delete` items (removing every original item
/// with that key) and `$patch: replace` (the patch's other items become the list).
fn merge_slice_with_special_elements(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<Special, PatchError> {
    let mut backing = original;
    let mut len = backing.len();
    let mut deleted = false;
    let mut plain = Vec::new();
    let mut replaced = false;
    for v in patch {
        let Some(directive) = v.get(DIRECTIVE) else {
            plain.push(v);
            continue;
        };
        match directive.as_str() {
            Some(DELETE) => {
                let key_value = v
                    .get(merge_key)
                    .ok_or_else(|| err_no_merge_key(&v, merge_key))?;
                // deleteMatchingEntries, shifting in place like Go's append(s[:i], s[i+1:]...):
                // the last live slot keeps its old value.
                while let Some(i) = find_map_in_slice(&backing[..len], merge_key, key_value)? {
                    for k in i..len - 1 {
                        backing[k] = backing[k + 1].clone();
                    }
                    len -= 1;
                    deleted = true;
                }
            }
            Some(REPLACE) => replaced = true,
            Some(MERGE) => {
                return Err(PatchError::rejected(
                    "merging lists cannot yet be specified in the patch",
                ));
            }
            _ => return Err(err_bad_patch_type(directive, &v)),
        }
    }
    let live = if replaced {
        plain.drain(..).map(verbatim).collect()
    } else {
        backing[..len].to_vec()
    };
    Ok(Special {
        live,
        patch: plain,
        backing: deleted.then_some((backing, len)),
        replaced,
    })
}

/// `mergeSliceWithoutSpecialElements`: patch items merge into the first original item with the
/// same merge key value, or are appended. Returns the list and the appended items.
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    node: Node,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut appended = Vec::new();
    for v in patch {
        let key_value = v
            .get(merge_key)
            .ok_or_else(|| err_no_merge_key(v, merge_key))?;
        match find_map_in_slice(&original, merge_key, key_value)? {
            Some(idx) => {
                let orig = match original[idx].take() {
                    Value::Object(m) => m,
                    _ => Object::new(),
                };
                let p = v.as_object().cloned().unwrap_or_default();
                original[idx] = Value::Object(merge_map(orig, p, node)?);
            }
            None => {
                let item = verbatim(v.clone());
                appended.push(item.clone());
                original.push(item);
            }
        }
    }
    Ok((original, appended))
}

/// `deleteFromSlice`: removes every occurrence of the given scalars.
fn delete_from_slice(current: Vec<Value>, to_delete: &[Value]) -> Vec<Value> {
    current
        .into_iter()
        .filter(|v| !to_delete.contains(v))
        .collect()
}

/// `findMapInSliceBasedOnKeyValue`: index of the first map whose `key` equals `value`.
fn find_map_in_slice(
    list: &[Value],
    key: &str,
    value: &Value,
) -> Result<Option<usize>, PatchError> {
    for (i, v) in list.iter().enumerate() {
        let Some(m) = v.as_object() else {
            return Err(PatchError::rejected(format!(
                "value for key {i} is not a map"
            )));
        };
        if let Some(candidate) = m.get(key)
            && go::go_eq(candidate, value)?
        {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// `partitionPrimitivesByPresentInList`: (items present in `by`, the others), order kept.
fn partition_primitives(
    items: Vec<Value>,
    by: &[Value],
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    for v in by {
        go::hashable(v)?;
    }
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for v in items {
        go::hashable(&v)?;
        if by.contains(&v) {
            present.push(v);
        } else {
            absent.push(v);
        }
    }
    Ok((present, absent))
}

/// `partitionMapsByPresentInList`: by merge key value.
fn partition_maps(
    items: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for v in items {
        let Some(m) = v.as_object() else {
            return Err(err_bad_arg_type(GoType::Map, &v));
        };
        let key_value = m
            .get(merge_key)
            .ok_or_else(|| err_no_merge_key(&v, merge_key))?;
        if find_map_in_slice(by, merge_key, key_value)?.is_some() {
            present.push(v);
        } else {
            absent.push(v);
        }
    }
    Ok((present, absent))
}

/// `validateMergeKeyInLists`.
fn validate_merge_key_in_lists(merge_key: &str, lists: &[&[Value]]) -> Result<(), PatchError> {
    for item in lists.iter().flat_map(|l| l.iter()) {
        let Some(m) = item.as_object() else {
            return Err(err_bad_arg_type(GoType::Map, item));
        };
        if !m.contains_key(merge_key) {
            return Err(err_no_merge_key(item, merge_key));
        }
    }
    Ok(())
}

/// `extractToDeleteItems`: (items, items carrying `$patch: delete`).
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for v in list {
        let Some(m) = v.as_object() else {
            return Err(err_bad_arg_type(GoType::Map, &v));
        };
        if m.get(DIRECTIVE).and_then(Value::as_str) == Some(DELETE) {
            delete.push(v);
        } else {
            keep.push(v);
        }
    }
    Ok((keep, delete))
}

/// What `index` compares: the merge key value of a map (nil when missing or not a map, as Go
/// reads it), or the item itself.
fn key_of<'a>(v: &'a Value, merge_key: &str, kind: GoType) -> &'a Value {
    static NIL: Value = Value::Null;
    if kind == GoType::Map {
        v.as_object().and_then(|m| m.get(merge_key)).unwrap_or(&NIL)
    } else {
        v
    }
}

/// `index`: position of `item` in `list`, comparing merge key values (maps) or the items.
fn index(
    list: &[Value],
    item: &Value,
    merge_key: &str,
    kind: GoType,
) -> Result<Option<usize>, PatchError> {
    let wanted = key_of(item, merge_key, kind);
    for (i, v) in list.iter().enumerate() {
        if go::go_eq(wanted, key_of(v, merge_key, kind))? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// `normalizeElementOrder`: sorts the patch's items by `patch_order` and the server-only items
/// by `server_order`, then interleaves them (`mergeSortedSlice`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    merge_sorted_slice(server_only, patch_items, server_order, merge_key, kind)
}

/// `normalizeSliceOrder`: stable sort by position in `order` (items carrying `$patch: delete`
/// go last), with Go's comparator, which calls anything not found in `order` "less".
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>, PatchError> {
    let (to_sort, to_delete) = if kind == GoType::Map {
        validate_merge_key_in_lists(merge_key, &[&to_sort, order])?;
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    let mut keyed = Vec::with_capacity(to_sort.len());
    for v in to_sort {
        keyed.push((index(order, &v, merge_key, kind)?, v));
    }
    go::stable_sort(&mut keyed, |a, b| match (a.0, b.0) {
        (Some(ia), Some(ib)) => ia < ib,
        _ => true,
    });
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

/// `mergeSortedSlice`: inserts each server-only item (`left`) before the first patch item
/// (`right`) that comes after it in the live order; patch items unknown to the live order go
/// first.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>, PatchError> {
    let mut li = Vec::with_capacity(left.len());
    for v in &left {
        li.push(index(server_order, v, merge_key, kind)?);
    }
    let mut ri = Vec::with_capacity(right.len());
    for v in &right {
        ri.push(index(server_order, v, merge_key, kind)?);
    }
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().zip(li).peekable();
    let mut right = right.into_iter().zip(ri).peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, l)), Some((_, r))) => matches!((l, r), (Some(l), Some(r)) if l < r),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((v, _)) = next {
            out.push(v);
        }
    }
    Ok(out)
}
