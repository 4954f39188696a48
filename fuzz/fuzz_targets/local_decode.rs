//! Arbitrary bytes -> the decoders of the hub's offline serving (`yurt_cache::local`): a
//! journal entry read back from the store, and the endpoint rewrite of #2809 over arbitrary
//! EndpointSlice / Endpoints / Pod JSON. Must never panic; a decoded journal entry must encode
//! back to an equal entry; a rewrite must produce JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_cache::local::JournalEntry;
use yurt_cache::local::endpoints::{self, PodState, PodView};
use yurt_cache::store::Gvr;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = JournalEntry::from_bytes(data) {
        let again = JournalEntry::from_bytes(&entry.to_bytes()).expect("re-decodes");
        assert_eq!(again, entry);
    }
    let _ = endpoints::pod_state(data, "edge-1");
    let _ = endpoints::pod_key(data);
    let _ = endpoints::refers_to(data, "default", "web-1");
    let pods = PodView::from_pods([(
        ("default".to_owned(), "web-1".to_owned()),
        PodState {
            ips: vec!["10.1.0.9".into(), "fd00::9".into()],
            ready: Some(false),
        },
    )]);
    for gvr in [
        Gvr::new("discovery.k8s.io", "v1", "endpointslices"),
        Gvr::new("", "v1", "endpoints"),
    ] {
        if let Some(out) = endpoints::rewrite(&gvr, data, &pods) {
            serde_json::from_slice::<serde_json::Value>(&out).expect("a rewrite is JSON");
        }
    }
});
