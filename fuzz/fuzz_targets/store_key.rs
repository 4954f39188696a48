//! Key encoding of the cache store: arbitrary key tuples must round-trip through encode/decode,
//! distinct tuples must give distinct keys, a scope's key range must hold exactly the keys of
//! that scope (never a neighbour sharing a byte prefix), and decoding arbitrary text must never
//! panic and, when it succeeds, re-encode to the same text (the encoding is canonical).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use yurt_cache::store::key;
use yurt_cache::store::{Gvr, ListScopeKey, ObjectKey};

#[derive(Arbitrary, Debug)]
struct Input {
    a: [String; 7],
    b: [String; 7],
    raw: String,
}

fn object(s: &[String; 7]) -> ObjectKey {
    ObjectKey {
        component: s[0].clone(),
        gvr: Gvr {
            group: s[1].clone(),
            version: s[2].clone(),
            resource: s[3].clone(),
        },
        namespace: s[4].clone(),
        name: s[5].clone(),
    }
}

fn list(s: &[String; 7]) -> ListScopeKey {
    ListScopeKey {
        component: s[0].clone(),
        gvr: Gvr {
            group: s[1].clone(),
            version: s[2].clone(),
            resource: s[3].clone(),
        },
        namespace: s[4].clone(),
        label_selector: s[5].clone(),
        field_selector: s[6].clone(),
    }
}

fn in_range(k: &str, (start, end): &(String, String)) -> bool {
    start.as_str() <= k && k < end.as_str()
}

fuzz_target!(|input: Input| {
    let (ka, kb) = (object(&input.a), object(&input.b));
    let (ea, eb) = (key::object_key(&ka), key::object_key(&kb));
    assert!(ea.is_ascii());
    assert_eq!(key::decode_object_key(&ea).expect("own key decodes"), ka);
    assert_eq!(ea == eb, ka == kb, "{ea:?} / {eb:?}");

    // Namespace scope of `a`: holds `b` exactly when b shares component, gvr and namespace.
    let ns_range = key::objects_range(&ka.component, &ka.gvr, Some(&ka.namespace));
    let same_ns = ka.component == kb.component && ka.gvr == kb.gvr && ka.namespace == kb.namespace;
    assert_eq!(in_range(&eb, &ns_range), same_ns);
    assert!(in_range(&ea, &ns_range));
    // Every-namespace scope.
    let all_range = key::objects_range(&ka.component, &ka.gvr, None);
    assert_eq!(
        in_range(&eb, &all_range),
        ka.component == kb.component && ka.gvr == kb.gvr
    );
    // Component range.
    assert_eq!(
        in_range(&eb, &key::component_range(&ka.component)),
        ka.component == kb.component
    );
    assert_eq!(key::component_of(&eb).expect("component"), kb.component);

    let (la, lb) = (list(&input.a), list(&input.b));
    let (ela, elb) = (key::list_key(&la), key::list_key(&lb));
    assert_eq!(
        key::decode_list_key(&ela).expect("own list key decodes"),
        la
    );
    assert_eq!(ela == elb, la == lb);

    let np = key::nonresource_key(&input.raw);
    assert_eq!(key::decode_nonresource_key(&np).expect("path"), input.raw);

    // Arbitrary text: never panics; accepted text is canonical.
    if let Ok(k) = key::decode_object_key(&input.raw) {
        assert_eq!(key::object_key(&k), input.raw);
    }
    if let Ok(k) = key::decode_list_key(&input.raw) {
        assert_eq!(key::list_key(&k), input.raw);
    }
    if let Ok(seg) = key::unescape_segment(&input.raw) {
        let mut again = String::new();
        key::escape_segment(&seg, &mut again);
        assert_eq!(again, input.raw);
    }
});
