//! Every key the store writes is built here, and nowhere else.
//!
//! A key is a sequence of segments joined by `/`. Each segment is escaped so that `/` can only
//! ever be a separator: bytes outside `[A-Za-z0-9-._~:]` (this includes `/`, `%`, NUL, spaces and
//! every byte of a non-ASCII character) become `%XX` with upper-case hex digits. The escaping is
//! canonical (an unreserved byte is never escaped, hex is always upper case), and [`decode`]
//! rejects anything else, so `decode(encode(x)) == x` and `encode(decode(k)) == k`: two distinct
//! segment tuples can never share a key.
//!
//! Because `/` never occurs inside an escaped segment, the keys whose first *n* segments are a
//! given tuple are exactly the keys that start with `seg1/…/segn/`, and they form one contiguous
//! range `[prefix, prefix')` where `prefix'` is `prefix` with its final `/` replaced by `0` (the
//! next byte). A scan for namespace `ns` therefore never reaches namespace `ns2`, and a scan for
//! name prefix never mixes in a neighbouring scope.
//!
//! Key shapes (all keys are ASCII and stored as `&str`):
//!
//! | table | segments |
//! | --- | --- |
//! | `objects` | component / group / version / resource / namespace / name |
//! | `lists` | component / group / version / resource / namespace / label selector / field selector |
//! | `nonresource` | path (one segment) |
//!
//! Cluster-scoped objects and cluster-wide list scopes use an empty namespace segment; the core
//! API group is the empty group segment (`kubelet//v1/pods/default/nginx`).

use super::error::StoreError;
use super::types::{Gvr, ListScopeKey, ObjectKey};

/// Number of segments of an `objects` key.
pub const OBJECT_SEGMENTS: usize = 6;
/// Number of segments of a `lists` key.
pub const LIST_SEGMENTS: usize = 7;

const SEPARATOR: char = '/';
/// The byte after `/`: replacing a prefix's trailing `/` with it gives the exclusive range end.
const AFTER_SEPARATOR: char = '0';

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends the escaped form of `segment` to `out`.
pub fn escape_segment(segment: &str, out: &mut String) {
    // Most segments need no escape: copy them whole.
    let clean = segment
        .as_bytes()
        .iter()
        .position(|&b| !is_unreserved(b))
        .unwrap_or(segment.len());
    out.push_str(&segment[..clean]);
    for &b in &segment.as_bytes()[clean..] {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one escaped segment; rejects separators, non-canonical escapes and invalid UTF-8.
pub fn unescape_segment(escaped: &str) -> Result<String, StoreError> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                return Err(invalid(escaped, "truncated escape"));
            };
            let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
                return Err(invalid(escaped, "escape is not two upper-case hex digits"));
            };
            let decoded = (hi << 4) | lo;
            if is_unreserved(decoded) {
                return Err(invalid(escaped, "unreserved byte escaped (non-canonical)"));
            }
            out.push(decoded);
            i += 3;
        } else if is_unreserved(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(invalid(escaped, "byte must be escaped"));
        }
    }
    String::from_utf8(out).map_err(|_| invalid(escaped, "segment is not UTF-8"))
}

fn invalid(key: &str, why: &str) -> StoreError {
    StoreError::InvalidKey(format!("{key:?}: {why}"))
}

/// Joins escaped segments with `/`.
pub fn encode(segments: &[&str]) -> String {
    let mut out = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        escape_segment(s, &mut out);
    }
    out
}

/// Splits a key into exactly `expected` decoded segments.
pub fn decode(key: &str, expected: usize) -> Result<Vec<String>, StoreError> {
    let parts: Vec<&str> = key.split(SEPARATOR).collect();
    if parts.len() != expected {
        return Err(invalid(
            key,
            &format!("{} segments, expected {expected}", parts.len()),
        ));
    }
    parts.into_iter().map(unescape_segment).collect()
}

/// The half-open key range `[start, end)` holding every key whose leading segments are
/// `segments` (and at least one more segment after them).
pub fn prefix_range(segments: &[&str]) -> (String, String) {
    let mut start = encode(segments);
    start.push(SEPARATOR);
    let mut end = start.clone();
    end.pop();
    end.push(AFTER_SEPARATOR);
    (start, end)
}

/// The `objects` key of `key`.
pub fn object_key(key: &ObjectKey) -> String {
    object_key_of(&key.component, &key.gvr, &key.namespace, &key.name)
}

/// The leading part (with its trailing `/`) shared by the `objects` keys of one component and
/// resource; [`object_key_in`] completes it.
pub fn objects_prefix(component: &str, gvr: &Gvr) -> String {
    let mut prefix = encode(&[component, &gvr.group, &gvr.version, &gvr.resource]);
    prefix.push(SEPARATOR);
    prefix
}

/// The `objects` key of `namespace`/`name` under a prefix from [`objects_prefix`] (the same key
/// as [`object_key_of`]).
pub fn object_key_in(prefix: &str, namespace: &str, name: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + namespace.len() + name.len() + 1);
    key.push_str(prefix);
    escape_segment(namespace, &mut key);
    key.push(SEPARATOR);
    escape_segment(name, &mut key);
    key
}

/// The `objects` key of an object given by its parts (the same key as [`object_key`], without
/// building an [`ObjectKey`]).
pub fn object_key_of(component: &str, gvr: &Gvr, namespace: &str, name: &str) -> String {
    encode(&[
        component,
        &gvr.group,
        &gvr.version,
        &gvr.resource,
        namespace,
        name,
    ])
}

/// Decodes an `objects` key.
pub fn decode_object_key(key: &str) -> Result<ObjectKey, StoreError> {
    let mut s = decode(key, OBJECT_SEGMENTS)?.into_iter();
    let mut next = || s.next().unwrap_or_default();
    Ok(ObjectKey {
        component: next(),
        gvr: Gvr {
            group: next(),
            version: next(),
            resource: next(),
        },
        namespace: next(),
        name: next(),
    })
}

/// Range of the `objects` keys of one component and resource, in one namespace or, with `None`,
/// in every namespace (cluster-scoped objects included).
pub fn objects_range(component: &str, gvr: &Gvr, namespace: Option<&str>) -> (String, String) {
    match namespace {
        Some(ns) => prefix_range(&[component, &gvr.group, &gvr.version, &gvr.resource, ns]),
        None => prefix_range(&[component, &gvr.group, &gvr.version, &gvr.resource]),
    }
}

/// Range of every key (objects or lists) of one component.
pub fn component_range(component: &str) -> (String, String) {
    prefix_range(&[component])
}

/// The `lists` key of a list scope.
pub fn list_key(scope: &ListScopeKey) -> String {
    encode(&[
        &scope.component,
        &scope.gvr.group,
        &scope.gvr.version,
        &scope.gvr.resource,
        &scope.namespace,
        &scope.label_selector,
        &scope.field_selector,
    ])
}

/// Decodes a `lists` key.
pub fn decode_list_key(key: &str) -> Result<ListScopeKey, StoreError> {
    let mut s = decode(key, LIST_SEGMENTS)?.into_iter();
    let mut next = || s.next().unwrap_or_default();
    Ok(ListScopeKey {
        component: next(),
        gvr: Gvr {
            group: next(),
            version: next(),
            resource: next(),
        },
        namespace: next(),
        label_selector: next(),
        field_selector: next(),
    })
}

/// The `nonresource` key of a request path (`/version`, `/apis/apps/v1`, ...).
pub fn nonresource_key(path: &str) -> String {
    encode(&[path])
}

/// Decodes a `nonresource` key back into its path.
pub fn decode_nonresource_key(key: &str) -> Result<String, StoreError> {
    let mut s = decode(key, 1)?;
    Ok(s.pop().unwrap_or_default())
}

/// The first segment (component) of an `objects` or `lists` key.
pub fn component_of(key: &str) -> Result<String, StoreError> {
    let first = key.split(SEPARATOR).next().unwrap_or_default();
    unescape_segment(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, ns: &str, name: &str) -> ObjectKey {
        ObjectKey {
            component: c.into(),
            gvr: Gvr::new("", "v1", "pods"),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn round_trip_awkward_names() {
        for name in [
            "a/b",
            "a%2Fb",
            "nul\0x",
            "ünïcode",
            "",
            "%",
            "a b",
            "..",
            "%zz",
        ] {
            let k = key("kubelet", "default", name);
            let enc = object_key(&k);
            assert!(enc.is_ascii());
            let prefix = objects_prefix(&k.component, &k.gvr);
            assert_eq!(object_key_in(&prefix, &k.namespace, &k.name), enc);
            assert_eq!(
                object_key_in(&prefix, name, "x"),
                object_key(&key("kubelet", name, "x"))
            );
            assert_eq!(decode_object_key(&enc).unwrap(), k, "{enc}");
        }
    }

    #[test]
    fn slash_cannot_collide() {
        let a = object_key(&key("kubelet", "a/b", "c"));
        let b = object_key(&key("kubelet", "a", "b/c"));
        assert_ne!(a, b);
    }

    #[test]
    fn namespace_range_excludes_neighbour() {
        let (start, end) = objects_range("kubelet", &Gvr::new("", "v1", "pods"), Some("ns"));
        let inside = object_key(&key("kubelet", "ns", "x"));
        let neighbour = object_key(&key("kubelet", "ns2", "x"));
        let neighbour2 = object_key(&key("kubelet", "ns.", "x"));
        assert!(start <= inside && inside < end);
        for n in [neighbour, neighbour2] {
            assert!(!(start <= n && n < end), "{n} in [{start}, {end})");
        }
    }

    #[test]
    fn rejects_non_canonical() {
        assert!(unescape_segment("%2f").is_err());
        assert!(unescape_segment("%41").is_err());
        assert!(unescape_segment("a/b").is_err());
        assert!(unescape_segment("%2").is_err());
        assert!(unescape_segment("%FF").is_err()); // lone byte: not UTF-8
        assert_eq!(unescape_segment("%2F").unwrap(), "/");
    }
}
