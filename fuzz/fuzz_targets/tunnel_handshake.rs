//! Arbitrary bytes -> the tunnel registration handshake decoders (`Hello`, `Ack`), the CONNECT
//! target parser and the certificate common-name extractor. Must never panic; a decoded hello
//! must be valid, re-encode and decode to itself, and "need more" must ask for more bytes than
//! were given (so the stream reader always makes progress).
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_tunnel::handshake::{Ack, Decoded, Hello, MAX_HELLO_LEN};
use yurt_tunnel::routing::Target;

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
});
