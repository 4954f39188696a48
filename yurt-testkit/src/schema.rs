//! Defaulting and validation of custom resources against their CRD version's structural
//! `openAPIV3Schema`, as kube-apiserver's apiextensions server does it on create and update.
//!
//! Defaulting: a `default` fills every property missing from an object that is present (also
//! in array items and `additionalProperties` values); `null` in a property that is not
//! `nullable` is dropped first (and then defaulted). Validation checks `type` (with
//! `x-kubernetes-int-or-string`), `nullable`, `required`, `enum`, `pattern`, `format`-free
//! string lengths (`minLength`/`maxLength`, counted in characters), `minimum`/`maximum` (and
//! their exclusive forms), `multipleOf`, `minItems`/`maxItems`, `minProperties`/
//! `maxProperties`, and recurses through `properties`, `additionalProperties` and `items`;
//! `x-kubernetes-preserve-unknown-fields` only relaxes pruning, never validation of what is
//! specified. `metadata` is not validated by the schema (names are checked elsewhere), nor are
//! `anyOf`/`allOf`/`oneOf`/`not`, CEL rules (`x-kubernetes-validations`) or list-type/map-type
//! uniqueness.
//!
//! Errors are Kubernetes field errors worded as the apiserver words them, e.g.
//! `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:
//! "string"`, `spec.type: Required value`, `spec.type: Unsupported value: "x": supported values:
//! "Edge", "Cloud"`, `spec.name: Too long: may not be more than 5 bytes`.

use serde_json::{Map, Value};

/// One field error (`field.Error`): where, its cause reason, and the text after the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field path, e.g. `spec.ports[0].port`.
    pub field: String,
    /// The StatusCause reason, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The error body, e.g. `Required value`.
    pub body: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body)
    }
}

/// Applies the schema's defaults to `obj` (and drops `null`s of non-nullable properties).
pub(crate) fn apply_defaults(obj: &mut Value, schema: &Value) {
    default_value(obj, schema, true);
}

fn default_value(v: &mut Value, s: &Value, root: bool) {
    match v {
        Value::Object(map) => {
            if let Some(props) = s["properties"].as_object() {
                for (k, ps) in props {
                    if root && k == "metadata" {
                        continue;
                    }
                    if map.get(k).is_some_and(Value::is_null) && ps["nullable"] != Value::Bool(true)
                    {
                        map.remove(k);
                    }
                    if !map.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                }
                for (k, child) in map.iter_mut() {
                    if let Some(ps) = props.get(k)
                        && !(root && k == "metadata")
                    {
                        default_value(child, ps, false);
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    default_value(child, ap, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for item in items {
                    default_value(item, is, false);
                }
            }
        }
        _ => {}
    }
}

/// Validates `obj` against `schema`; every error, in document order.
pub(crate) fn validate(obj: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_value(obj, schema, "", true, &mut errs);
    errs
}

/// The JSON type name the OpenAPI validator reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A bad value as Go's field errors print it: strings quoted, numbers and booleans bare.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        Value::Array(_) => "[]interface {}".into(),
        Value::Object(_) => "map[string]interface {}".into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(path: &str, value: &str, detail: String) -> FieldError {
    FieldError {
        field: path.to_owned(),
        reason: "FieldValueInvalid",
        body: format!("Invalid value: {value}: {detail}"),
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// `1`, `1.5`: a limit as Go prints it.
fn show_limit(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => v.to_string(),
    }
}

fn validate_value(v: &Value, s: &Value, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    // Where a message names the field: "spec.x in body".
    let at = if path.is_empty() {
        "body".to_owned()
    } else {
        format!("{path} in body")
    };
    if v.is_null() {
        if s["nullable"] == Value::Bool(true) || s.get("type").is_none() {
            return;
        }
        errs.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueTypeInvalid",
            body: format!(
                "Invalid value: \"null\": {at} must be of type {}: \"null\"",
                s["type"].as_str().unwrap_or("")
            ),
        });
        return;
    }
    let int_or_string = s["x-kubernetes-int-or-string"] == Value::Bool(true);
    if let Some(want) = s["type"].as_str() {
        let have = type_name(v);
        let ok = match want {
            "number" => matches!(have, "number" | "integer"),
            "integer" => have == "integer",
            other => have == other,
        } || (int_or_string && matches!(have, "integer" | "string"));
        if !ok {
            errs.push(FieldError {
                field: path.to_owned(),
                reason: "FieldValueTypeInvalid",
                body: format!("Invalid value: \"{have}\": {at} must be of type {want}: \"{have}\""),
            });
            return;
        }
    } else if int_or_string && !matches!(type_name(v), "integer" | "string") {
        let have = type_name(v);
        errs.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueTypeInvalid",
            body: format!(
                "Invalid value: \"{have}\": {at} must be of type integer or string: \"{have}\""
            ),
        });
        return;
    }
    if let Some(options) = s["enum"].as_array()
        && !options.contains(v)
    {
        let supported: Vec<String> = options.iter().map(show).collect();
        errs.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueNotSupported",
            body: format!(
                "Unsupported value: {}: supported values: {}",
                show(v),
                supported.join(", ")
            ),
        });
    }
    match v {
        Value::String(text) => validate_string(text, s, path, &at, errs),
        Value::Number(_) => validate_number(v, s, path, &at, errs),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = s["minItems"].as_u64()
                && n < min
            {
                errs.push(invalid(
                    path,
                    &n.to_string(),
                    format!("{at} should have at least {min} items"),
                ));
            }
            if let Some(max) = s["maxItems"].as_u64()
                && n > max
            {
                errs.push(FieldError {
                    field: path.to_owned(),
                    reason: "FieldValueTooMany",
                    body: format!("Too many: {n}: must have at most {max} items"),
                });
            }
            if let Some(is) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate_value(item, is, &format!("{path}[{i}]"), false, errs);
                }
            }
        }
        Value::Object(map) => validate_object(map, s, path, &at, root, errs),
        _ => {}
    }
}

fn validate_string(text: &str, s: &Value, path: &str, at: &str, errs: &mut Vec<FieldError>) {
    let len = text.chars().count() as u64;
    let shown = format!("{text:?}");
    if let Some(min) = s["minLength"].as_u64()
        && len < min
    {
        errs.push(invalid(
            path,
            &shown,
            format!("{at} should be at least {min} chars long"),
        ));
    }
    if let Some(max) = s["maxLength"].as_u64()
        && len > max
    {
        errs.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueTooLong",
            body: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(pattern) = s["pattern"].as_str() {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(text) => {
                errs.push(invalid(
                    path,
                    &shown,
                    format!("{at} should match '{pattern}'"),
                ));
            }
            _ => {}
        }
    }
}

fn validate_number(v: &Value, s: &Value, path: &str, at: &str, errs: &mut Vec<FieldError>) {
    let Some(x) = number(v) else {
        return;
    };
    let shown = show(v);
    if let Some(min) = s.get("minimum").and_then(number) {
        let exclusive = s["exclusiveMinimum"] == Value::Bool(true);
        if x < min || (exclusive && x == min) {
            let rel = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(invalid(
                path,
                &shown,
                format!("{at} should be {rel} {}", show_limit(&s["minimum"])),
            ));
        }
    }
    if let Some(max) = s.get("maximum").and_then(number) {
        let exclusive = s["exclusiveMaximum"] == Value::Bool(true);
        if x > max || (exclusive && x == max) {
            let rel = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(invalid(
                path,
                &shown,
                format!("{at} should be {rel} {}", show_limit(&s["maximum"])),
            ));
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(number)
        && m > 0.0
        && (x / m).fract() != 0.0
    {
        errs.push(invalid(
            path,
            &shown,
            format!(
                "{at} should be a multiple of {}",
                show_limit(&s["multipleOf"])
            ),
        ));
    }
}

fn validate_object(
    map: &Map<String, Value>,
    s: &Value,
    path: &str,
    at: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    for req in s["required"].as_array().into_iter().flatten() {
        let Some(key) = req.as_str() else {
            continue;
        };
        if root && key == "metadata" {
            continue;
        }
        if !map.contains_key(key) {
            errs.push(FieldError {
                field: join(path, key),
                reason: "FieldValueRequired",
                body: "Required value".into(),
            });
        }
    }
    let n = map.len() as u64;
    if let Some(min) = s["minProperties"].as_u64()
        && n < min
    {
        errs.push(invalid(
            path,
            &n.to_string(),
            format!("{at} should have at least {min} properties"),
        ));
    }
    if let Some(max) = s["maxProperties"].as_u64()
        && n > max
    {
        errs.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueTooMany",
            body: format!("Too many: {n}: must have at most {max} items"),
        });
    }
    let props = s["properties"].as_object();
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in map {
        if root && matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
            continue;
        }
        let child_schema = props.and_then(|p| p.get(k)).or(additional);
        if let Some(cs) = child_schema {
            validate_value(child, cs, &join(path, k), false, errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["Edge", "Cloud"]},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "ports": {"type": "array", "minItems": 1, "maxItems": 2,
                    "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                "note": {"type": "string", "nullable": true},
                "size": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}})
    }

    fn messages(obj: Value) -> Vec<String> {
        validate(&obj, &schema())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_objects_pass_and_defaults_apply() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"type": "Edge", "note": null, "size": "50%", "labels": {"a": "b"}}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
        assert!(obj["spec"]["note"].is_null());
        assert!(validate(&obj, &schema()).is_empty());
        let mut obj = json!({"spec": {"type": "Edge", "replicas": null}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(
            obj["spec"]["replicas"], 1,
            "a null non-nullable field is dropped, then defaulted"
        );
    }

    #[test]
    fn errors_are_worded_as_the_apiserver_words_them() {
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "replicas": "three"}})),
            [
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert_eq!(messages(json!({"spec": {}})), ["spec.type: Required value"]);
        assert_eq!(
            messages(json!({"spec": {"type": "Moon"}})),
            [r#"spec.type: Unsupported value: "Moon": supported values: "Edge", "Cloud""#]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "replicas": 0}})),
            [
                "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "replicas": 11}})),
            [
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "name": "abcdef"}})),
            ["spec.name: Too long: may not be more than 5 bytes"]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "name": ""}})),
            [
                r#"spec.name: Invalid value: "": spec.name in body should be at least 1 chars long"#,
                r#"spec.name: Invalid value: "": spec.name in body should match '^[a-z]+$'"#
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "ports": []}})),
            ["spec.ports: Invalid value: 0: spec.ports in body should have at least 1 items"]
        );
        assert_eq!(
            messages(
                json!({"spec": {"type": "Edge", "ports": [{"port": 1}, {"port": 2}, {"port": "x"}]}})
            ),
            [
                "spec.ports: Too many: 3: must have at most 2 items",
                r#"spec.ports[2].port: Invalid value: "string": spec.ports[2].port in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"type": "Edge", "size": true, "labels": {"a": 1}}})),
            [
                r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
                r#"spec.size: Invalid value: "boolean": spec.size in body must be of type integer or string: "boolean""#
            ]
        );
    }
}
