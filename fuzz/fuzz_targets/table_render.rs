//! Arbitrary bytes -> a JSON object (or a pod with arbitrary time strings) -> a server-side
//! Table for every resource with its own columns. Must never panic, and every row has one
//! cell per column.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use yurt_core::table::{IncludeObject, table};

const RESOURCES: [(&str, &str); 10] = [
    ("", "pods"),
    ("", "nodes"),
    ("", "services"),
    ("", "endpoints"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("example.com", "widgets"),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let object: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| {
        serde_json::json!({
            "metadata": {"name": "x", "creationTimestamp": text, "deletionTimestamp": null},
            "lastTimestamp": text,
            "status": {"containerStatuses": [{"restartCount": -1, "state": {"waiting": {"reason": text}}}]}
        })
    });
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(data.first().copied().unwrap_or(0)) << 28);
    for (group, resource) in RESOURCES {
        let t = table(
            group,
            resource,
            std::slice::from_ref(&object),
            IncludeObject::Object,
            "1",
            now,
        );
        let columns = t["columnDefinitions"].as_array().map_or(0, Vec::len);
        assert_eq!(
            t["rows"][0]["cells"].as_array().map_or(0, Vec::len),
            columns
        );
    }
});
