//! Sparse JSON decoding for field selectors: only the paths a selector reads are built into the
//! `Value`; every other subtree is skipped without allocating. An offline list of 10,000 pods
//! with kubelet's `spec.nodeName=<node>` selector decodes each pod this way instead of whole.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use yurt_core::selector::FieldSelector;

/// The paths to keep, as a trie of object keys; a leaf keeps the whole value there.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paths(BTreeMap<String, Paths>);

impl Paths {
    /// The paths `selector` reads, or `None` when it reads a field whose value the apiserver
    /// computes from other fields (then decode the whole object).
    pub(crate) fn of(selector: &FieldSelector) -> Option<Paths> {
        let mut root = Paths::default();
        for req in selector.requirements() {
            let f = req.field.as_str();
            let plain =
                (f.starts_with("metadata.") || f.starts_with("spec.") || f.starts_with("status."))
                    && f != "status.successful";
            if !plain {
                return None;
            }
            let mut node = &mut root;
            for seg in f.split('.') {
                node = node.0.entry(seg.to_owned()).or_default();
            }
            // A leaf: keep everything below (a previous longer path under it is subsumed).
            node.0.clear();
        }
        Some(root)
    }

    /// Decodes `json` keeping only these paths.
    pub(crate) fn decode(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let v = self.deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for &Paths {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.is_empty() {
            return Value::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &Paths {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.get(&key) {
                Some(sub) => {
                    let v = map.next_value_seed(sub)?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    // Anything but an object where a path descends: the path reads nothing there.
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    #[test]
    fn sparse_and_full_decoding_select_alike() {
        let pods = [
            r#"{"metadata":{"name":"a","namespace":"d"},"spec":{"nodeName":"edge-1","containers":[{"name":"c"}]},"status":{"phase":"Running"}}"#,
            r#"{"metadata":{"name":"b","namespace":"d"},"spec":{"nodeName":"edge-2"},"status":{"phase":"Pending"}}"#,
            r#"{"metadata":{"name":"c"},"spec":{}}"#,
            r#"{"metadata":{"name":"d"},"spec":"odd","status":[1,2]}"#,
            r#"{"metadata":{"name":"e"},"spec":{"nodeName":3,"hostNetwork":true}}"#,
        ];
        for s in [
            "spec.nodeName=edge-1",
            "spec.nodeName!=edge-1",
            "spec.nodeName=",
            "status.phase=Running,metadata.namespace=d",
            "spec.nodeName=3",
            "spec.hostNetwork=false",
            "metadata.name=c",
        ] {
            let selector = sel(s);
            let paths = Paths::of(&selector).expect("plain fields");
            for p in pods {
                let full: Value = serde_json::from_str(p).unwrap();
                let sparse = paths.decode(p.as_bytes()).unwrap();
                assert_eq!(
                    selector.matches(&full),
                    selector.matches(&sparse),
                    "{s} on {p}"
                );
            }
        }
    }

    #[test]
    fn computed_fields_decode_whole() {
        assert!(Paths::of(&sel("source=kubelet")).is_none());
        assert!(Paths::of(&sel("status.successful=1")).is_none());
    }
}
