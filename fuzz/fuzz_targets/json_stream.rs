//! Arbitrary bytes, cut into arbitrary chunks -> the cache tee's streaming JSON splitters
//! (`yurt_cache::cache::json_stream`). Must never panic; the output must not depend on where
//! the chunks are cut; and whatever serde_json accepts, the splitters must split the same way:
//! for a list object whose items are all objects, serde's items end the splitter's (they are
//! all of them unless `items` appears twice, where serde keeps the last), and a
//! whitespace-separated sequence of objects gives exactly serde's stream of values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use yurt_cache::cache::json_stream::{ListStream, ObjectStream};

const LIMIT: usize = 1 << 20;

/// Chunk boundaries from the first byte (a stride), so every input is also cut differently.
fn chunks(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (usize::from(first % 17) + 1, rest),
        None => (1, data),
    }
}

/// The raw pieces (the splitters track structure only: a piece of invalid input need not be
/// JSON).
fn list(data: &[u8], stride: usize) -> Option<Vec<Vec<u8>>> {
    let mut s = ListStream::new(LIMIT);
    let mut items = Vec::new();
    for c in data.chunks(stride) {
        items.extend(s.feed(c).ok()?.iter().map(|b| b.to_vec()));
    }
    s.finish().ok()?;
    Some(items)
}

fn objects(data: &[u8], stride: usize) -> Option<Vec<Vec<u8>>> {
    let mut s = ObjectStream::new(LIMIT);
    let mut out = Vec::new();
    for c in data.chunks(stride) {
        out.extend(s.feed(c).ok()?.iter().map(|b| b.to_vec()));
    }
    s.finish().ok()?;
    Some(out)
}

/// Pieces of a document serde_json accepted are JSON themselves.
fn parse(pieces: &[Vec<u8>]) -> Vec<Value> {
    pieces
        .iter()
        .map(|p| serde_json::from_slice(p).expect("a piece of valid JSON is JSON"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (stride, data) = chunks(data);

    let split = list(data, stride);
    let whole = list(data, data.len().max(1));
    // Items are only compared when both succeed: a cut may not change the outcome.
    assert_eq!(split.is_some(), whole.is_some());
    if let (Some(a), Some(b)) = (&split, &whole) {
        assert_eq!(a, b);
    }
    if let Ok(Value::Object(list)) = serde_json::from_slice::<Value>(data) {
        let items = match list.get("items") {
            None | Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) => Some(items.clone()),
            Some(_) => None,
        };
        if let Some(items) = items.filter(|i| i.iter().all(Value::is_object)) {
            // One plain `items` key: exactly serde's items. With duplicates (possibly spelled
            // with escapes) serde keeps the last, which must end what the splitter found.
            let plain = !data.contains(&b'\\');
            if plain && data.windows(7).filter(|w| w == b"\"items\"").count() <= 1 {
                let split = split.expect("serde accepted the list");
                assert_eq!(parse(&split), items);
            } else if let Some(split) = split {
                assert!(
                    parse(&split).ends_with(&items),
                    "serde's items end the split"
                );
            }
        }
    }

    let split = objects(data, stride);
    assert_eq!(split, objects(data, data.len().max(1)));
    let serde: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .collect();
    if let Ok(values) = serde
        && values.iter().all(Value::is_object)
    {
        let split = split.expect("serde accepted the stream");
        assert_eq!(parse(&split), values);
    }
});
