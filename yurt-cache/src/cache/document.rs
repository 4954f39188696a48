//! Non-resource documents (`/version`, discovery, OpenAPI) as the store keeps them.
//!
//! One path can have several forms: `/apis` is legacy discovery for `Accept: application/json`
//! and aggregated discovery (`apidiscovery.k8s.io/v2`) for kubectl's
//! `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...`. Each form is
//! its own entry: the key is the path for the plain form (a client taking JSON or anything),
//! and `<path>#<media range>` for the form asked by the first range of a more specific
//! `Accept`. The request goes upstream with the client's `Accept` untouched, and the answer is
//! stored as sent, whatever its content type (the OpenAPI v3 root comes as `text/plain`):
//! a JSON answer as its bytes (readable by every earlier version of the store), anything else
//! behind a small envelope, a NUL byte, the content type and a newline, which no JSON body can
//! start with. Offline, the form the client asks for is served with its stored content type,
//! falling back to the plain form when the client also takes JSON.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header::ACCEPT;

/// The content type of a stored document without an envelope.
pub(crate) const JSON: &str = "application/json";

/// The specific form the client's `Accept` asks for: its first media range, whitespace and
/// `q` removed; `None` for the plain form (no `Accept`, or a first range of `*/*`,
/// `application/*` or bare `application/json`).
pub(crate) fn form(headers: &HeaderMap) -> Option<String> {
    form_of(headers.get(ACCEPT)?.to_str().ok()?)
}

/// [`form`] of one `Accept` value.
pub(crate) fn form_of(value: &str) -> Option<String> {
    let first = value.split(',').map(str::trim).find(|r| !r.is_empty())?;
    let mut parts = first.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    let params: Vec<&str> = parts
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("q="))
        .collect();
    if params.is_empty() && matches!(media.as_str(), "*/*" | "application/*" | JSON) {
        return None;
    }
    let mut out = media;
    for p in params {
        out.push(';');
        out.push_str(p);
    }
    Some(out)
}

/// Whether the client's `Accept` also takes plain JSON (or has none).
pub(crate) fn takes_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            any = true;
            let converted = parts.any(|p| p.to_ascii_lowercase().starts_with("as="));
            if !converted && matches!(media.as_str(), "*/*" | "application/*" | JSON) {
                return true;
            }
        }
    }
    !any
}

/// The store key of `path` in `form`.
pub(crate) fn key(path: &str, form: Option<&str>) -> String {
    match form {
        None => path.to_owned(),
        Some(f) => format!("{path}#{f}"),
    }
}

/// A key's path and form.
pub(crate) fn split_key(key: &str) -> (&str, Option<&str>) {
    match key.split_once('#') {
        Some((path, form)) => (path, Some(form)),
        None => (key, None),
    }
}

/// Whether a content type is plain JSON (stored without an envelope).
fn is_plain_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    parts.next().is_some_and(|m| m.eq_ignore_ascii_case(JSON))
        && parts.all(|p| p.is_empty() || p.to_ascii_lowercase().starts_with("charset="))
}

/// The stored value of a document answered with `content_type`.
pub(crate) fn encode(content_type: &str, body: Bytes) -> Bytes {
    if is_plain_json(content_type) && body.first() != Some(&0) {
        return body;
    }
    let mut out = BytesMut::with_capacity(body.len() + content_type.len() + 2);
    out.put_u8(0);
    out.put_slice(content_type.replace(['\n', '\r'], " ").as_bytes());
    out.put_u8(b'\n');
    out.put_slice(&body);
    out.freeze()
}

/// A stored value's content type and body.
pub(crate) fn decode(stored: Bytes) -> (String, Bytes) {
    if stored.first() != Some(&0) {
        return (JSON.to_owned(), stored);
    }
    match stored.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let content_type = String::from_utf8_lossy(&stored[1..end]).into_owned();
            (content_type, stored.slice(end + 1..))
        }
        // A truncated envelope: no body.
        None => (
            String::from_utf8_lossy(&stored[1..]).into_owned(),
            Bytes::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn forms_follow_the_first_media_range() {
        assert_eq!(form(&HeaderMap::new()), None);
        assert_eq!(form(&accept("application/json, */*")), None);
        assert_eq!(form(&accept("*/*")), None);
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                       application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                       application/json";
        assert_eq!(
            form(&accept(kubectl)).as_deref(),
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        );
        assert!(takes_json(&accept(kubectl)));
        assert!(!takes_json(&accept("application/vnd.kubernetes.protobuf")));
        assert!(takes_json(&HeaderMap::new()));
        assert_eq!(key("/apis", None), "/apis");
        assert_eq!(
            split_key(&key("/apis", Some("a;b=c"))),
            ("/apis", Some("a;b=c"))
        );
    }

    #[test]
    fn envelopes_round_trip_and_json_stays_bare() {
        let json = Bytes::from_static(b"{\"major\":\"1\"}");
        assert_eq!(encode("application/json", json.clone()), json);
        assert_eq!(decode(json.clone()), (JSON.to_owned(), json.clone()));
        let stored = encode("text/plain; charset=utf-8", json.clone());
        assert_eq!(stored[0], 0);
        assert_eq!(
            decode(stored),
            ("text/plain; charset=utf-8".to_owned(), json.clone())
        );
        let agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        assert_eq!(decode(encode(agg, json.clone())).0, agg);
        assert_eq!(
            decode(Bytes::from_static(b"\0x")),
            ("x".to_owned(), Bytes::new())
        );
    }
}
