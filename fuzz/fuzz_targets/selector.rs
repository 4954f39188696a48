//! Arbitrary bytes -> label and field selector parse -> match against a JSON object -> canonical
//! `Display` -> re-parse. Must never panic; a parsed selector's canonical form must re-parse to
//! an equal selector and match the same object the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_core::{FieldSelector, LabelSelector};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Split the input: the selector, then (after a NUL) an optional JSON object to match.
    let (selector, object) = text.split_once('\0').unwrap_or((&text, ""));
    let object: serde_json::Value = serde_json::from_str(object).unwrap_or_else(|_| {
        serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "default",
                         "labels": {"app": "web", "tier": "1", "a.b/c": ""}},
            "spec": {"nodeName": "edge-1", "unschedulable": true},
            "status": {"phase": "Running"}
        })
    });
    if let Ok(sel) = LabelSelector::parse(selector) {
        let canonical = sel.to_string();
        let again = LabelSelector::parse(&canonical).expect("canonical label selector re-parses");
        assert_eq!(again, sel);
        assert_eq!(again.matches_object(&object), sel.matches_object(&object));
    }
    if let Ok(sel) = FieldSelector::parse(selector) {
        let canonical = sel.to_string();
        let again = FieldSelector::parse(&canonical).expect("canonical field selector re-parses");
        assert_eq!(again, sel);
        assert_eq!(again.matches(&object), sel.matches(&object));
        let _ = sel.requires_exact_match("metadata.name");
    }
});
