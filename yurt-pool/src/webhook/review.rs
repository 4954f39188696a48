//! What a webhook answers: a [`Verdict`] from a handler, turned into the `AdmissionReview`
//! response kube-apiserver expects (`allowed`, a `status` for denials, and for mutations a
//! base64 JSONPatch with `patchType: JSONPatch` computed against the object as received), and the
//! `ConversionReview` response for CRD conversion.

use base64::Engine as _;
use serde_json::{Value, json};
use yurt_core::Status;
use yurt_core::admission::AdmissionReview;

/// A handler's decision on one admission request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Let the request through unchanged.
    Allow,
    /// Let it through with the object replaced by this one (sent as a JSONPatch).
    Mutate(Value),
    /// Refuse it; the Status message reaches the user after
    /// `admission webhook "<name>" denied the request: `.
    Deny(Box<Status>),
}

impl Verdict {
    /// A denial with `status`.
    pub fn deny(status: Status) -> Verdict {
        Verdict::Deny(Box::new(status))
    }
}

/// The JSONPatch turning `original` into `mutated` (empty when they are equal).
pub fn patch_between(original: &Value, mutated: &Value) -> json_patch::Patch {
    json_patch::diff(original, mutated)
}

/// The `AdmissionReview` response body for `review` decided by `verdict`.
pub fn admission_response(review: &AdmissionReview, verdict: Verdict) -> Vec<u8> {
    let mut response = json!({"uid": review.request.uid, "allowed": true});
    match verdict {
        Verdict::Allow => {}
        Verdict::Mutate(mutated) => {
            let empty = Value::Object(Default::default());
            let original = review.request.object.as_ref().unwrap_or(&empty);
            let patch = patch_between(original, &mutated);
            if !patch.0.is_empty() {
                let bytes = serde_json::to_vec(&patch).unwrap_or_default();
                response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                response["patchType"] = json!("JSONPatch");
            }
        }
        Verdict::Deny(status) => {
            response["allowed"] = json!(false);
            response["status"] = status.to_json_value();
        }
    }
    serde_json::to_vec(&json!({
        "apiVersion": review.api_version,
        "kind": "AdmissionReview",
        "response": response,
    }))
    .unwrap_or_default()
}

/// The `ConversionReview` response body: the converted objects, or a failure Status (then no
/// object is returned, as the apiserver requires all or nothing).
pub fn conversion_response(uid: &str, result: Result<Vec<Value>, String>) -> Vec<u8> {
    let response = match result {
        Ok(objects) => json!({
            "uid": uid,
            "convertedObjects": objects,
            "result": {"status": "Success"},
        }),
        Err(message) => json!({
            "uid": uid,
            "convertedObjects": [],
            "result": {"status": "Failure", "message": message},
        }),
    };
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": response,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yurt_core::admission::decode_admission_review;

    fn review() -> AdmissionReview {
        decode_admission_review(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"abc","kind":{"group":"","version":"v1","kind":"Node"},
            "resource":{"group":"","version":"v1","resource":"nodes"},"operation":"CREATE",
            "object":{"metadata":{"name":"n","labels":{"a":"1"}}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn mutation_is_a_base64_json_patch() {
        let r = review();
        let mut mutated = r.request.object.clone().unwrap();
        mutated["metadata"]["labels"]["b"] = json!("2");
        let body: Value =
            serde_json::from_slice(&admission_response(&r, Verdict::Mutate(mutated))).unwrap();
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["response"]["uid"], "abc");
        assert_eq!(body["response"]["allowed"], true);
        assert_eq!(body["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(body["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}])
        );
        // An unchanged object carries no patch.
        let same = r.request.object.clone().unwrap();
        let body: Value =
            serde_json::from_slice(&admission_response(&r, Verdict::Mutate(same))).unwrap();
        assert!(body["response"].get("patch").is_none());
    }

    #[test]
    fn denial_carries_the_status() {
        let status = Status::forbidden("apps.openyurt.io", "nodepools", "p", "no");
        let body: Value =
            serde_json::from_slice(&admission_response(&review(), Verdict::deny(status))).unwrap();
        assert_eq!(body["response"]["allowed"], false);
        assert_eq!(body["response"]["status"]["code"], 403);
        assert_eq!(
            body["response"]["status"]["message"],
            "nodepools.apps.openyurt.io \"p\" is forbidden: no"
        );
    }
}
