//! Arbitrary bytes -> an original JSON document and a patch body (split at the first NUL) -> every
//! patch type through `yurt_core::patch::apply_patch`, for a kind picked by the first byte (Pod,
//! Node, Deployment, ConfigMap, or a custom resource without patch metadata). Must never panic.
//! Also checked: a merge patch of `{}` leaves an object unchanged, an empty JSON patch changes
//! nothing, strategic merge is refused exactly for the unknown kind, the body-level entry points
//! agree with the value-level ones, and every error maps to a Status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use yurt_core::patch::{
    PatchError, PatchType, apply_patch, json_patch, merge_patch, schema_for, strategic_merge_patch,
};

const GVKS: [(&str, &str, &str); 5] = [
    ("", "v1", "Pod"),
    ("", "v1", "Node"),
    ("apps", "v1", "Deployment"),
    ("", "v1", "ConfigMap"),
    ("example.com", "v1", "Widget"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let gvk = GVKS[usize::from(selector) % GVKS.len()];
    let (original, patch) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b"{}"[..]),
    };
    // An original that is not JSON is skipped; the patch goes in as raw bytes, since validating
    // the body is part of what is fuzzed.
    let Ok(original) = serde_json::from_slice::<Value>(original) else {
        return;
    };
    let parsed_patch = serde_json::from_slice::<Value>(patch).ok();

    for patch_type in PatchType::ALL {
        let result = apply_patch(patch_type, &original, patch, gvk);
        if let Err(err) = &result {
            let status = err.status();
            assert!(status.code >= 400, "{err}: {status}");
        }
        let known_kind = schema_for(gvk.0, gvk.1, gvk.2).is_some();
        if patch_type == PatchType::Strategic {
            assert_eq!(
                matches!(result, Err(PatchError::UnsupportedForKind { .. })),
                !known_kind,
                "strategic merge must be refused exactly for kinds without metadata"
            );
        }
        // The body-level entry points agree with the value-level ones.
        if let Some(parsed) = &parsed_patch {
            match patch_type {
                PatchType::Merge if parsed.is_object() => {
                    assert_eq!(result.as_ref().ok(), Some(&merge_patch(&original, parsed)));
                }
                PatchType::Strategic if known_kind => {
                    if let Some(schema) = schema_for(gvk.0, gvk.1, gvk.2) {
                        assert_eq!(result, strategic_merge_patch(&original, parsed, schema));
                    }
                }
                _ => {}
            }
        }
    }

    if original.is_object() {
        assert_eq!(merge_patch(&original, &json!({})), original);
    }
    assert_eq!(json_patch(&original, b"[]").as_ref(), Ok(&original));
});
