//! Conversion between a served version and the stored form of an object.
//!
//! Most resources are stored in the version they are served in. Custom resources are stored at
//! their CRD's storage version; here only `apiVersion` changes between versions (conversion
//! strategy `None`; the conversion module calls webhooks for strategy `Webhook`). Events are stored
//! once and served both as core `v1` Events and as `events.k8s.io/v1` Events, with the field
//! mapping kube-apiserver's conversion functions apply (`involvedObject` is `regarding`,
//! `message` is `note`, `source` is `deprecatedSource`, ...).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::registry::{Conversion, ResourceDef};
use crate::storage::Obj;

/// core/v1 Event field <-> events.k8s.io/v1 Event field.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// The object as `def` serves it.
pub(crate) fn to_served(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = stored.clone();
    if def.behaviour.conversion == Conversion::EventsV1
        && let Some(map) = v.as_object_mut()
    {
        rename(map, EVENT_FIELDS.iter().map(|(core, ev)| (*core, *ev)));
    }
    set_type(&mut v, def);
    v
}

/// The object as it is stored, from `def`'s version (custom resources: at the storage version,
/// converting only `apiVersion`; see the conversion module for webhook conversion).
pub(crate) fn to_stored(def: &ResourceDef, served: Value) -> Value {
    let mut v = served;
    if def.behaviour.crd.is_some()
        && let Some(map) = v.as_object_mut()
    {
        let storage = crate::conversion::storage_api_version(def);
        map.insert("apiVersion".into(), Value::String(storage));
        return v;
    }
    if def.behaviour.conversion == Conversion::EventsV1
        && let Some(map) = v.as_object_mut()
    {
        rename(map, EVENT_FIELDS.iter().map(|(core, ev)| (*ev, *core)));
        map.insert("apiVersion".into(), Value::String("v1".into()));
        map.insert("kind".into(), Value::String("Event".into()));
        return v;
    }
    v
}

/// The served JSON of a stored object; the cached encoding when no conversion is needed.
pub(crate) fn served_json(def: &ResourceDef, obj: &Obj, list_item: bool) -> Bytes {
    if needs_conversion(def, &obj.value) {
        let mut v = to_served(def, &obj.value);
        if list_item && let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    } else if list_item {
        obj.item_json().clone()
    } else {
        obj.json().clone()
    }
}

/// Whether the stored object differs from what `def` serves.
pub(crate) fn needs_conversion(def: &ResourceDef, stored: &Value) -> bool {
    def.behaviour.conversion != Conversion::ApiVersion
        || stored["apiVersion"].as_str() != Some(def.api_version().as_str())
        || stored["kind"].as_str() != Some(def.kind.as_str())
}

/// Sets `apiVersion` and `kind` to `def`'s.
pub(crate) fn set_type(v: &mut Value, def: &ResourceDef) {
    if let Some(map) = v.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(def.api_version()));
        map.insert("kind".into(), Value::String(def.kind.clone()));
    }
}

fn rename<'a>(map: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (from, to) in pairs {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn events_convert_both_ways() {
        let reg = Registry::builtin();
        let v1 = reg.get("events.k8s.io", "v1", "events").unwrap();
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "note": "hi",
            "regarding": {"kind": "Pod", "name": "p"}, "reason": "Started"});
        let stored = to_stored(&v1, served.clone());
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(to_served(&v1, &stored), served);
    }
}
