//! rustls configuration helpers (ring provider only) and certificate identity extraction.
//!
//! Every config is built with `builder_with_provider(ring)`, never the process default, so the
//! crate works whatever other providers the binary links. Servers that must require client
//! certificates (the agent port always; front doors when configured) get a
//! `WebPkiClientVerifier` over the given CA.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::TunnelError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(what: &'static str, path: &Path, reason: impl ToString) -> TunnelError {
    TunnelError::Pem {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TunnelError> {
    let data = std::fs::read(path).map_err(|e| pem_err("certificate", path, e))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", path, e))?;
    if certs.is_empty() {
        return Err(pem_err(
            "certificate",
            path,
            "no PEM CERTIFICATE block found",
        ));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TunnelError> {
    let data = std::fs::read(path).map_err(|e| pem_err("private key", path, e))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| pem_err("private key", path, e))?
        .ok_or_else(|| pem_err("private key", path, "no PEM PRIVATE KEY block found"))
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<RootCertStore, TunnelError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store
            .add(cert.clone())
            .map_err(|e| TunnelError::Tls(format!("bad CA certificate: {e}")))?;
    }
    Ok(store)
}

/// A server config presenting `chain`/`key`; when `client_ca` is given, clients must present a
/// certificate signed by it (mutual TLS). ALPN is left empty: tunnel sessions and front doors
/// negotiate HTTP themselves.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<rustls::ServerConfig>, TunnelError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TunnelError::Tls(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TunnelError::Tls(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TunnelError::Tls(format!("server certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// A client config trusting `ca` and, when given, presenting a client certificate.
pub fn client_config(
    ca: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, TunnelError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TunnelError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TunnelError::Tls(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The subject common name of a DER X.509 certificate (`None` if absent or malformed).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, cert_body, _) = der_tlv(cert.as_ref())?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_tlv(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    // Fields: [0] version (optional), serial, signature, issuer, validity, subject.
    let mut rest = tbs;
    let mut fields = Vec::with_capacity(6);
    while fields.len() < 6 && !rest.is_empty() {
        let (tag, body, next) = der_tlv(rest)?;
        fields.push((tag, body));
        rest = next;
    }
    let skip = if fields.first()?.0 == 0xa0 { 5 } else { 4 };
    let (tag, mut subject) = *fields.get(skip)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, next) = der_tlv(subject)?;
        subject = next;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, attr, next) = der_tlv(rdn)?;
            rdn = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = der_tlv(attr)?;
            if tag == OID && oid == CN {
                let (_, value, _) = der_tlv(value)?;
                return std::str::from_utf8(value).ok().map(str::to_owned);
            }
        }
    }
    None
}

/// One DER tag-length-value: (tag, content, rest). Single-byte tags, definite lengths only.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_tlv_rejects_truncation() {
        assert!(der_tlv(&[0x30]).is_none());
        assert!(der_tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(der_tlv(&[0x30, 0x81]).is_none());
        assert_eq!(
            der_tlv(&[0x04, 0x01, 9, 7]),
            Some((0x04, &[9u8][..], &[7u8][..]))
        );
        assert!(common_name(&CertificateDer::from(vec![0u8; 3])).is_none());
    }

    #[test]
    fn reads_common_names_and_reports_bad_files() {
        let ca = yurt_testkit::pki::TestCa::new().unwrap();
        let node = ca
            .issue_client_cert("system:node:edge-1", &["system:nodes"])
            .unwrap();
        assert_eq!(
            common_name(&node.cert_der().unwrap()).as_deref(),
            Some("system:node:edge-1")
        );
        let server = ca
            .issue_server_cert(&["tunnel.example", "127.0.0.1"])
            .unwrap();
        assert_eq!(
            common_name(&server.cert_der().unwrap()).as_deref(),
            Some("tunnel.example")
        );

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("node.pem");
        std::fs::write(&good, format!("{}{}", node.cert_pem, node.key_pem)).unwrap();
        assert_eq!(load_certs(&good).unwrap().len(), 1);
        assert!(load_key(&good).is_ok());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = load_certs(&empty).unwrap_err().to_string();
        assert!(err.contains("no PEM CERTIFICATE block"), "{err}");
        let err = load_key(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot load private key from"), "{err}");
        let chain = load_certs(&good).unwrap();
        let key = load_key(&good).unwrap();
        assert!(server_config(chain.clone(), key.clone_key(), Some(&[ca.ca_der()])).is_ok());
        assert!(client_config(&[ca.ca_der()], Some((chain, key))).is_ok());
    }
}
