//! Arbitrary text -> the WireGuard key readers (peer public keys from Gateway endpoint configs,
//! the private key file) and the preshared-key derivation. Must never panic; a key that decodes
//! must be exactly what the planner accepts as a key and re-encode to the same text; a parsed
//! private key must give a well-formed public key, stable across a write and re-read of the key
//! file; the preshared key must not depend on anything but the secret text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use yurt_tunnel::l3::is_wireguard_key;
use yurt_tunnel::l3::wireguard::{WireGuardKey, decode_key, encode_key, preshared_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode_key(text) {
        Ok(bytes) => {
            assert!(
                is_wireguard_key(text),
                "{text:?} decoded but the planner refuses it"
            );
            assert_eq!(encode_key(&bytes), text);
        }
        Err(_) => assert!(
            !is_wireguard_key(text),
            "{text:?} refused but the planner accepts it"
        ),
    }
    if let Ok(key) = WireGuardKey::from_key_file(text) {
        let public = key.public_key_base64();
        assert!(is_wireguard_key(&public));
        let file = format!("{}\n", key.private_base64());
        let again = WireGuardKey::from_key_file(&file).expect("a written key file reads back");
        assert_eq!(again.public_key_base64(), public);
    }
    assert_eq!(preshared_key(text), preshared_key(text));
});
