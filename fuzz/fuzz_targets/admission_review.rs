//! Arbitrary bytes -> AdmissionReview and ConversionReview decoding, as the yurt-manager webhook
//! server does with every request body. Must never panic; an accepted review must satisfy the
//! decoder's promises (non-empty uid, the objects its operation needs, convertible objects with
//! an apiVersion).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_core::admission::{Operation, decode_admission_review, decode_conversion_review};

fuzz_target!(|data: &[u8]| {
    if let Ok(review) = decode_admission_review(data) {
        let req = &review.request;
        assert!(!req.uid.is_empty());
        if matches!(req.operation, Operation::Create | Operation::Update) {
            assert!(req.object.as_ref().is_some_and(|o| o.is_object()));
        }
        if req.operation == Operation::Update {
            assert!(req.old_object.as_ref().is_some_and(|o| o.is_object()));
        }
    }
    if let Ok(review) = decode_conversion_review(data) {
        assert!(!review.request.uid.is_empty());
        assert!(review.request.desired_api_version.contains('/'));
        for o in &review.request.objects {
            assert!(o.get("apiVersion").and_then(|v| v.as_str()).is_some());
        }
    }
});
