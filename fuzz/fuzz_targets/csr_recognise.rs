//! Arbitrary bytes -> the csr-approver's recogniser (yurt-pool's
//! `controllers::csrapprover::recognise`, compiled here on its own): a request that is the raw
//! bytes, or the bytes wrapped as the DER inside a `CERTIFICATE REQUEST` PEM block (so the
//! ASN.1 parser, not only the PEM reader, sees arbitrary input), with a signer and usages picked
//! by the input. Must never panic; anything recognised must have parsed, a foreign signer is
//! never recognised, and the verdict is deterministic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../yurt-pool/src/controllers/csrapprover/recognise.rs"]
mod recognise;

use recognise::{parse_request, recognise};

const SIGNERS: [&str; 3] = [
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
    "example.com/other",
];
const USAGES: [&str; 5] = [
    "digital signature",
    "key encipherment",
    "client auth",
    "server auth",
    "signing",
];

#[derive(Arbitrary, Debug)]
struct Input {
    wrap_in_pem: bool,
    signer: u8,
    usages: Vec<u8>,
    request: Vec<u8>,
}

/// Standard base64 with padding, wrapped at 64 columns as PEM writers do.
fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n").into_bytes();
    for line in b64.chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

fuzz_target!(|input: Input| {
    let request = if input.wrap_in_pem {
        pem("CERTIFICATE REQUEST", &input.request)
    } else {
        input.request
    };
    let usages: Vec<String> = input
        .usages
        .iter()
        .take(8)
        .map(|u| USAGES[usize::from(*u) % USAGES.len()].to_owned())
        .collect();
    let signer = SIGNERS[usize::from(input.signer) % SIGNERS.len()];
    let parsed = parse_request(&request);
    let verdict = recognise(signer, &usages, &request);
    if verdict.is_some() {
        assert!(parsed.is_some(), "recognised a request that does not parse");
        assert_ne!(signer, SIGNERS[2], "recognised a foreign signer");
    }
    assert_eq!(
        recognise(signer, &usages, &request),
        verdict,
        "the verdict is deterministic"
    );
});
