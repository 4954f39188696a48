//! Arbitrary bytes -> method, path and query -> `RequestInfo`: must never panic, and a resolved
//! request's options must survive a `to_query` / `from_query` round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_core::{ListOptions, RequestInfo};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // "METHOD path?query": the first space splits the method off, the first '?' the query.
    let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    if let Ok(info) = RequestInfo::parse(method, path, query) {
        let _ = info.gvr_string();
        let _ = info.verb.as_str();
        let again = ListOptions::from_query(&info.options.to_query())
            .expect("options produced by the parser must re-parse");
        assert_eq!(again, info.options);
    }
});
