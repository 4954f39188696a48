//! Arbitrary bytes -> `yurt_core::protobuf::decode`, both as a whole body and as the object
//! message of a well-formed envelope for each supported kind (so the per-kind decoders see
//! structured input, not only envelope noise). Must never panic, and a decoded object must
//! encode and decode back to itself: `decode(encode(decode(b))) == decode(b)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_core::protobuf::{self, KINDS};

/// A protobuf varint.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field.
fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    field(0x0a, api_version.as_bytes(), &mut type_meta);
    field(0x12, kind.as_bytes(), &mut type_meta);
    let mut body = b"k8s\0".to_vec();
    field(0x0a, &type_meta, &mut body);
    field(0x12, raw, &mut body);
    body
}

fn round_trip(body: &[u8]) {
    if let Ok(object) = protobuf::decode(body) {
        let bytes = protobuf::encode(&object).expect("a decoded object encodes");
        let again = protobuf::decode(&bytes).expect("an encoded object decodes");
        assert_eq!(again, object);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    if let Some((&pick, raw)) = data.split_first() {
        let kind = &KINDS[usize::from(pick) % KINDS.len()];
        round_trip(&envelope(&kind.api_version(), kind.kind, raw));
    }
});
