//! The two halves of every per-kind conversion: [`Out`] writes a JSON object from protobuf fields
//! following Go's `encoding/json` rules for the field's Go type, and [`In`] takes a JSON object
//! apart field by field, refusing fields the kind does not have.
//!
//! Go's rules decide what the apiserver writes: a plain string/int/bool with `omitempty` vanishes
//! when zero, a pointer (`*bool`, `*int64`, `*string`, `*Struct`) is written whenever it is set,
//! even to its zero value, a struct value is always written (`{}`), and a zero `metav1.Time` value
//! is `null`. Each method of [`Out`] names the Go shape it implements.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use serde_json::{Map, Value};

use super::ProtobufError;
use super::time;

/// A JSON object under construction, for one kind (named in errors).
pub(super) struct Out {
    kind: &'static str,
    map: Map<String, Value>,
}

impl Out {
    pub(super) fn new(kind: &'static str) -> Self {
        Self {
            kind,
            map: Map::new(),
        }
    }

    /// The kind this object belongs to (for errors).
    pub(super) fn kind(&self) -> &'static str {
        self.kind
    }

    /// A nested object of the same kind.
    pub(super) fn child(&self) -> Self {
        Self::new(self.kind)
    }

    pub(super) fn into_value(self) -> Value {
        Value::Object(self.map)
    }

    fn put(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_owned(), value);
    }

    /// `string` with `omitempty`.
    pub(super) fn string(&mut self, key: &str, v: Option<String>) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            self.put(key, Value::String(v));
        }
    }

    /// `string` without `omitempty`: always written.
    pub(super) fn required_string(&mut self, key: &str, v: Option<String>) {
        self.put(key, Value::String(v.unwrap_or_default()));
    }

    /// `*string`: written whenever set.
    pub(super) fn ptr_string(&mut self, key: &str, v: Option<String>) {
        if let Some(v) = v {
            self.put(key, Value::String(v));
        }
    }

    /// `*bool`: written whenever set.
    pub(super) fn ptr_bool(&mut self, key: &str, v: Option<bool>) {
        if let Some(v) = v {
            self.put(key, Value::Bool(v));
        }
    }

    /// An integer with `omitempty`.
    pub(super) fn int(&mut self, key: &str, v: Option<impl Into<i64>>) {
        if let Some(v) = v.map(Into::into).filter(|v| *v != 0) {
            self.put(key, Value::from(v));
        }
    }

    /// An integer without `omitempty`: always written.
    pub(super) fn required_int(&mut self, key: &str, v: Option<impl Into<i64>>) {
        self.put(key, Value::from(v.map(Into::into).unwrap_or(0)));
    }

    /// `*int32` / `*int64`: written whenever set.
    pub(super) fn ptr_int(&mut self, key: &str, v: Option<impl Into<i64>>) {
        if let Some(v) = v {
            self.put(key, Value::from(v.into()));
        }
    }

    /// `[]string` with `omitempty`.
    pub(super) fn strings(&mut self, key: &str, v: Vec<String>) {
        if !v.is_empty() {
            self.put(key, Value::from(v));
        }
    }

    /// `map[string]string` with `omitempty`.
    pub(super) fn string_map(&mut self, key: &str, v: BTreeMap<String, String>) {
        if !v.is_empty() {
            self.put(
                key,
                Value::Object(v.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
            );
        }
    }

    /// `map[string][]byte` with `omitempty`: values in standard base64, as Go writes `[]byte`.
    pub(super) fn bytes_map(&mut self, key: &str, v: BTreeMap<String, Vec<u8>>) {
        if !v.is_empty() {
            let m = v
                .into_iter()
                .map(|(k, v)| (k, Value::String(STANDARD.encode(v))))
                .collect();
            self.put(key, Value::Object(m));
        }
    }

    /// A slice of structs with `omitempty`.
    pub(super) fn list(&mut self, key: &str, v: Vec<Out>) {
        if !v.is_empty() {
            self.put(
                key,
                Value::Array(v.into_iter().map(Out::into_value).collect()),
            );
        }
    }

    /// A struct value: always written, `{}` when unset.
    pub(super) fn object(&mut self, key: &str, v: Out) {
        self.put(key, v.into_value());
    }

    /// A `*Struct`: written whenever set.
    pub(super) fn ptr_object(&mut self, key: &str, v: Option<Out>) {
        if let Some(v) = v {
            self.put(key, v.into_value());
        }
    }

    /// An arbitrary JSON value (a `FieldsV1` document).
    pub(super) fn raw(&mut self, key: &str, v: Value) {
        self.put(key, v);
    }

    fn timestamp(
        &self,
        key: &str,
        seconds: Option<i64>,
        nanos: Option<i32>,
    ) -> Result<Option<(i64, u32)>, ProtobufError> {
        time::normalise(seconds, nanos).map_err(|m| ProtobufError::field(self.kind, key, m))
    }

    /// A `metav1.Time` value: `null` when zero.
    pub(super) fn time(&mut self, key: &str, v: Option<Time>) -> Result<(), ProtobufError> {
        self.opt_time(key, v)?;
        self.map.entry(key.to_owned()).or_insert(Value::Null);
        Ok(())
    }

    /// A `*metav1.Time`: absent when unset, `null` when zero (omitted here; the same to every
    /// decoder).
    pub(super) fn opt_time(&mut self, key: &str, v: Option<Time>) -> Result<(), ProtobufError> {
        let Some(Time { seconds, nanos }) = v else {
            return Ok(());
        };
        if let Some((s, _)) = self.timestamp(key, seconds, nanos)? {
            self.put(key, Value::String(time::format_time(s)));
        }
        Ok(())
    }

    /// A `metav1.MicroTime` value: `null` when zero.
    pub(super) fn micro_time(
        &mut self,
        key: &str,
        v: Option<MicroTime>,
    ) -> Result<(), ProtobufError> {
        self.opt_micro_time(key, v)?;
        self.map.entry(key.to_owned()).or_insert(Value::Null);
        Ok(())
    }

    /// A `*metav1.MicroTime`.
    pub(super) fn opt_micro_time(
        &mut self,
        key: &str,
        v: Option<MicroTime>,
    ) -> Result<(), ProtobufError> {
        let Some(MicroTime { seconds, nanos }) = v else {
            return Ok(());
        };
        if let Some((s, n)) = self.timestamp(key, seconds, nanos)? {
            self.put(key, Value::String(time::format_micro(s, n)));
        }
        Ok(())
    }
}

/// A JSON object being taken apart for one kind; `path` names it in errors (`metadata`,
/// `spec`, `metadata.ownerReferences[0]`).
pub(super) struct In {
    kind: &'static str,
    path: String,
    map: Map<String, Value>,
}

impl In {
    pub(super) fn new(
        kind: &'static str,
        path: String,
        value: Value,
    ) -> Result<Self, ProtobufError> {
        match value {
            Value::Object(map) => Ok(Self { kind, path, map }),
            other => Err(ProtobufError::field(
                kind,
                &path,
                format!("expected an object, got {}", type_name(&other)),
            )),
        }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, message: impl Into<String>) -> ProtobufError {
        ProtobufError::field(self.kind, &self.key_path(key), message)
    }

    /// Removes `key`; JSON `null` counts as absent, as Go's decoder treats it.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, ProtobufError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.err(key, format!("expected a string, got {}", type_name(&other))))
            }
        }
    }

    pub(super) fn boolean(&mut self, key: &str) -> Result<Option<bool>, ProtobufError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(self.err(
                key,
                format!("expected a boolean, got {}", type_name(&other)),
            )),
        }
    }

    pub(super) fn i64(&mut self, key: &str) -> Result<Option<i64>, ProtobufError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected an int64, got {v}"))),
        }
    }

    pub(super) fn i32(&mut self, key: &str) -> Result<Option<i32>, ProtobufError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected an int32, got {v}"))),
        }
    }

    pub(super) fn strings(&mut self, key: &str) -> Result<Vec<String>, ProtobufError> {
        let Some(v) = self.take(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(self.err(
                key,
                format!("expected a list of strings, got {}", type_name(&v)),
            ));
        };
        items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                other => Err(self.err(
                    key,
                    format!("expected a string item, got {}", type_name(&other)),
                )),
            })
            .collect()
    }

    pub(super) fn string_map(
        &mut self,
        key: &str,
    ) -> Result<BTreeMap<String, String>, ProtobufError> {
        let Some(v) = self.take(key) else {
            return Ok(BTreeMap::new());
        };
        let Value::Object(m) = v else {
            return Err(self.err(
                key,
                format!("expected a map of strings, got {}", type_name(&v)),
            ));
        };
        m.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(self.err(
                    &format!("{key}.{k}"),
                    format!("expected a string, got {}", type_name(&other)),
                )),
            })
            .collect()
    }

    /// `map[string][]byte`: base64 values (standard alphabet, padded, as Go reads them).
    pub(super) fn bytes_map(
        &mut self,
        key: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ProtobufError> {
        let Some(v) = self.take(key) else {
            return Ok(BTreeMap::new());
        };
        let Value::Object(m) = v else {
            return Err(self.err(
                key,
                format!("expected a map of base64 strings, got {}", type_name(&v)),
            ));
        };
        m.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => STANDARD
                    .decode(s.as_bytes())
                    .map(|b| (k.clone(), b))
                    .map_err(|e| {
                        self.err(&format!("{key}.{k}"), format!("illegal base64 data: {e}"))
                    }),
                other => Err(self.err(
                    &k,
                    format!("expected a base64 string, got {}", type_name(&other)),
                )),
            })
            .collect()
    }

    /// A nested object; `None` when absent or `null`.
    pub(super) fn object(&mut self, key: &str) -> Result<Option<In>, ProtobufError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => In::new(self.kind, self.key_path(key), v).map(Some),
        }
    }

    /// A list of objects.
    pub(super) fn objects(&mut self, key: &str) -> Result<Vec<In>, ProtobufError> {
        let Some(v) = self.take(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = v else {
            return Err(self.err(key, format!("expected a list, got {}", type_name(&v))));
        };
        let path = self.key_path(key);
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| In::new(self.kind, format!("{path}[{i}]"), item))
            .collect()
    }

    /// Any JSON value (a `FieldsV1` document).
    pub(super) fn raw(&mut self, key: &str) -> Option<Value> {
        self.take(key)
    }

    fn timestamp(&mut self, key: &str) -> Result<Option<(i64, i32)>, ProtobufError> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        let (secs, nanos) = time::parse_rfc3339(&s)
            .ok_or_else(|| self.err(key, format!("parsing time {s:?} as RFC 3339 failed")))?;
        Ok(Some((secs, i32::try_from(nanos).unwrap_or(0))))
    }

    pub(super) fn time(&mut self, key: &str) -> Result<Option<Time>, ProtobufError> {
        Ok(self.timestamp(key)?.map(|(s, n)| Time {
            seconds: Some(s),
            nanos: Some(n),
        }))
    }

    pub(super) fn micro_time(&mut self, key: &str) -> Result<Option<MicroTime>, ProtobufError> {
        Ok(self.timestamp(key)?.map(|(s, n)| MicroTime {
            seconds: Some(s),
            nanos: Some(n),
        }))
    }

    /// Fails on any field left over: a field this kind's protobuf message does not have would be
    /// dropped silently otherwise.
    pub(super) fn finish(self) -> Result<(), ProtobufError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.err(k, "unknown field")),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
