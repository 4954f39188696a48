//! Arbitrary bytes -> the tunnel registration handshake decoders (`Hello`, `Ack`), the CONNECT
//! target parser, the certificate common-name extractor, the Node `status.addresses` reader and
//! the status-line reason phrase. Must never panic; a decoded hello
//! must be valid, re-encode and decode to itself, and "need more" must ask for more bytes than
//! were given (so the stream reader always makes progress).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_tunnel::NodeAddresses;
use yurt_tunnel::handshake::{Ack, Decoded, Hello, MAX_HELLO_LEN};
use yurt_tunnel::routing::Target;
use yurt_tunnel::server::reason_phrase;

fuzz_target!(|data: &[u8]| {
    match Hello::decode(data) {
        Ok(Decoded::Done(hello, used)) => {
            assert!(used <= data.len() && used <= 9 + MAX_HELLO_LEN);
            assert!(hello.validate().is_ok());
            let again = hello.encode();
            assert_eq!(Hello::decode(&again), Ok(Decoded::Done(hello, again.len())));
        }
        Ok(Decoded::NeedMore(n)) => assert!(n > data.len() && n <= 9 + MAX_HELLO_LEN),
        Err(_) => {}
    }
    match Ack::decode(data) {
        Ok(Decoded::Done(ack, used)) => {
            assert!(used <= data.len());
            if ack == Ack::Accepted {
                assert_eq!(
                    Ack::decode(&ack.encode()),
                    Ok(Decoded::Done(Ack::Accepted, 8))
                );
            }
        }
        Ok(Decoded::NeedMore(n)) => assert!(n > data.len()),
        Err(_) => {}
    }
    let text = String::from_utf8_lossy(data);
    if let Some(t) = Target::parse(&text) {
        assert_eq!(Target::parse(&t.authority()), Some(t.clone()));
    }
    let (host, query) = text.split_once('?').unwrap_or((&text, ""));
    let _ = Target::from_http(Some(host), Some(query), 10250);
    let _ = yurt_tunnel::tls::common_name(&data.to_vec().into());
    // Whatever a message holds, its reason phrase is a valid status-line phrase.
    if let Some(p) = reason_phrase(&text) {
        assert!(!p.is_empty() && p.len() <= 200);
        assert!(
            p.bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        );
    }
    // A Node object never makes the claim check panic, and a node's own addresses pass it.
    if let Ok(node) = serde_json::from_slice::<serde_json::Value>(data) {
        let addresses = NodeAddresses::from_node_json(&node);
        let hello = Hello {
            node: "edge-1".into(),
            hostname: addresses.names.first().cloned(),
            addresses: addresses.ips.clone(),
        };
        assert!(addresses.verify(&hello).is_ok());
    }
});
