//! Arbitrary bytes -> `yurt_core::validation` as the hub's offline write path calls it: decode,
//! identity and metadata checks of an arbitrary JSON object against each kind the checks know
//! (and one they do not), and the Status built from the findings. Must never panic; a finding
//! must render as a 4xx Status naming its field, and an object without findings must still
//! pass when checked again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_core::validation::{self, NameRule};

const KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Node", "nodes"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "Event", "events"),
    ("", "v1", "Service", "services"),
    ("events.k8s.io", "v1", "Event", "events"),
    ("coordination.k8s.io", "v1", "Lease", "leases"),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ("apps.openyurt.io", "v1beta1", "NodePool", "nodepools"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = serde_json::from_slice::<serde_json::Value>(data) else {
        // Plain strings exercise the name, label and base64 rules directly.
        let text = String::from_utf8_lossy(data);
        let _ = validation::qualified_name(&text);
        let _ = validation::label_value(&text);
        let _ = validation::dns1123_label(&text);
        for rule in [NameRule::Subdomain, NameRule::Label, NameRule::PathSegment] {
            let _ = rule.check(&text);
        }
        let _ = yurt_core::request::resource_version_error(&text);
        return;
    };
    for (group, version, kind, resource) in KINDS {
        if let Some(reason) = validation::decode_error(&obj, group, version, kind) {
            let st = validation::body_decode_status(&obj, version, kind, &reason);
            assert_eq!(st.code, 400);
            let st = validation::patch_decode_status(&validation::go_map_text(&obj), &reason);
            assert_eq!(st.code, 422);
        }
        let _ = validation::check_patched_identity(&obj, group, resource, "default", "x", "u");
        for creating in [false, true] {
            let errors =
                validation::validate_metadata(&obj, NameRule::of(group, resource), creating);
            if errors.is_empty() {
                assert!(
                    validation::validate_metadata(&obj, NameRule::of(group, resource), creating)
                        .is_empty()
                );
            } else {
                let st = validation::invalid_status(group, kind, "x", &errors);
                assert_eq!(st.code, 422);
                assert_eq!(st.details.causes.len(), errors.len());
                assert!(errors.iter().all(|e| st.message.contains(&e.field)));
            }
        }
    }
});
