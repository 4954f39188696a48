//! A throwaway certificate authority for tests.
//!
//! [`TestCa`] plays the roles a real cluster's PKI plays: it issues the test apiserver's serving
//! certificate, client certificates whose subject carries a Kubernetes identity (CN = user, one
//! O per group, exactly what kube-apiserver's x509 authenticator reads back with
//! [`peer_identity`]), and signs approved CertificateSigningRequests the way
//! kube-controller-manager's signer does. It also builds the rustls server and client
//! configurations that trust it. Everything uses ECDSA P-256 and the *ring* provider explicitly,
//! so nothing depends on a process-wide default crypto provider.
//!
//! rcgen keeps one value per attribute type in a distinguished name, while Kubernetes identities
//! need several `O` attributes. Certificates whose subject rcgen cannot express are therefore
//! issued by rcgen with a placeholder subject, then the subject is replaced in the DER and the
//! certificate re-signed with the CA key (a small DER reader and writer below).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    SigningKey as _,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Common name of the CA certificate.
const CA_COMMON_NAME: &str = "yurt-testkit-ca";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default validity of issued certificates (kube-controller-manager's `--cluster-signing-duration`).
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Smallest `expirationSeconds` Kubernetes accepts for a CSR.
const MIN_EXPIRATION_SECONDS: u32 = 600;
/// How far notBefore is backdated, to absorb clock skew (the Kubernetes signer does the same).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Errors from issuing certificates or building TLS configurations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen failed to generate a key or certificate.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls rejected a certificate, key or configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A PEM document could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// A certificate signing request was malformed or its signature invalid.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    /// A CSR usage string that Kubernetes does not define.
    #[error("unknown key usage {0:?}")]
    UnknownUsage(String),
    /// A DER structure could not be parsed.
    #[error("malformed DER: {0}")]
    Der(&'static str),
}

/// A certificate and its private key, both PEM encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate (one `CERTIFICATE` block).
    pub cert_pem: String,
    /// The private key (PKCS#8 `PRIVATE KEY` block).
    pub key_pem: String,
}

impl CertifiedKey {
    /// The certificate as DER, for rustls.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        Ok(CertificateDer::from_pem_slice(self.cert_pem.as_bytes())?)
    }

    /// The private key as DER, for rustls.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        Ok(PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())?)
    }
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// Whether a TLS server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A client certificate is requested; if presented it must chain to the CA.
    Optional,
    /// A client certificate chaining to the CA is mandatory.
    Required,
}

/// The Kubernetes identity carried by a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name.
    pub user: String,
    /// The subject's organizations, in certificate order.
    pub groups: Vec<String>,
}

/// A self-signed test certificate authority. Cheap to clone.
#[derive(Clone)]
pub struct TestCa {
    inner: Arc<CaInner>,
}

struct CaInner {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    not_after: SystemTime,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("subject", &CA_COMMON_NAME)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// Creates a fresh self-signed CA named `yurt-testkit-ca` with an ECDSA P-256 key.
    pub fn new() -> Result<TestCa, PkiError> {
        let key = new_key()?;
        let now = SystemTime::now();
        let not_after = now + CA_VALIDITY;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, CA_COMMON_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = not_after.into();
        params.serial_number = Some(new_serial());
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(TestCa {
            inner: Arc::new(CaInner {
                issuer: Issuer::new(params, key),
                cert_der,
                cert_pem,
                not_after,
            }),
        })
    }

    /// The CA certificate, PEM encoded.
    pub fn ca_pem(&self) -> &str {
        &self.inner.cert_pem
    }

    /// The CA certificate, DER encoded.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.inner.cert_der.clone()
    }

    /// Issues a serving certificate for `sans`, each a DNS name or an IP address.
    ///
    /// The common name is the first SAN; extended key usage is serverAuth.
    pub fn issue_server_cert(&self, sans: &[&str]) -> Result<CertifiedKey, PkiError> {
        let key = new_key()?;
        let mut params = self.leaf_params(LEAF_VALIDITY);
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*san).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name.push(
            DnType::CommonName,
            sans.first().copied().unwrap_or("yurt-testkit-server"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.inner.issuer)?;
        Ok(CertifiedKey {
            cert_pem: pem_encode("CERTIFICATE", cert.der()),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a client certificate for a Kubernetes user: CN = `user`, one O per group, in order,
    /// extended key usage clientAuth.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, PkiError> {
        let key = new_key()?;
        let mut params = self.leaf_params(LEAF_VALIDITY);
        params.distinguished_name.push(DnType::CommonName, user);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.inner.issuer)?;
        let mut attributes: Vec<(&[u8], &str)> = groups
            .iter()
            .map(|group| (OID_ORGANIZATION, *group))
            .collect();
        attributes.push((OID_COMMON_NAME, user));
        let der = self.replace_subject(cert.der(), &name_der(&attributes))?;
        Ok(CertifiedKey {
            cert_pem: pem_encode("CERTIFICATE", &der),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM `CERTIFICATE REQUEST` as kube-controller-manager's signer does for an approved
    /// CSR, returning the certificate PEM.
    ///
    /// The certificate carries the request's subject (byte for byte) and SANs; other requested
    /// extensions are ignored. `usages` are Kubernetes key usage strings ("client auth",
    /// "server auth", "digital signature", "key encipherment", ...), mapped to key usage and
    /// extended key usage; an unknown string is an error. Validity is one year, or
    /// `expiration_seconds` (at least 600 s, at most one year), never beyond the CA's.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        usages: &[&str],
        expiration_seconds: Option<u32>,
    ) -> Result<String, PkiError> {
        let csr_der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        let request = CertificateSigningRequestParams::from_der(&csr_der)
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        let subject = csr_subject(&csr_der)?;

        let validity = expiration_seconds.map_or(LEAF_VALIDITY, |secs| {
            Duration::from_secs(u64::from(secs.max(MIN_EXPIRATION_SECONDS))).min(LEAF_VALIDITY)
        });
        let mut params = self.leaf_params(validity);
        params.distinguished_name = request.params.distinguished_name.clone();
        params.subject_alt_names = request.params.subject_alt_names.clone();
        for usage in usages {
            match parse_usage(usage)? {
                Usage::Key(ku) if !params.key_usages.contains(&ku) => params.key_usages.push(ku),
                Usage::Extended(eku) if !params.extended_key_usages.contains(&eku) => {
                    params.extended_key_usages.push(eku)
                }
                _ => {}
            }
        }
        let cert = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.inner.issuer)?;
        let der = self.replace_subject(cert.der(), subject)?;
        Ok(pem_encode("CERTIFICATE", &der))
    }

    /// A rustls server configuration presenting `server`, offering ALPN `h2` and `http/1.1`, and
    /// verifying client certificates against this CA as `client_auth` says.
    pub fn server_config(
        &self,
        server: &CertifiedKey,
        client_auth: ClientAuth,
    ) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Required => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider);
                let verifier = if client_auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated().build()?
                } else {
                    verifier.build()?
                };
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(vec![server.cert_der()?], server.key_der()?)?;
        config.alpn_protocols = alpn();
        Ok(Arc::new(config))
    }

    /// A rustls client configuration trusting only this CA, presenting `client` if given, and
    /// offering ALPN `h2` and `http/1.1`.
    pub fn client_config(
        &self,
        client: Option<&CertifiedKey>,
    ) -> Result<Arc<ClientConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?);
        let mut config = match client {
            Some(client) => {
                builder.with_client_auth_cert(vec![client.cert_der()?], client.key_der()?)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn();
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, PkiError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der())?;
        Ok(roots)
    }

    /// Parameters shared by every issued leaf: backdated notBefore, `validity` from now capped at
    /// the CA's expiry, explicit CA:false, a fresh serial, and an authority key identifier.
    fn leaf_params(&self, validity: Duration) -> CertificateParams {
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + validity).min(self.inner.not_after).into();
        params.serial_number = Some(new_serial());
        params.use_authority_key_identifier_extension = true;
        params
    }

    /// Replaces the subject of `cert` (issued by this CA) with `subject` and re-signs it.
    fn replace_subject(&self, cert: &[u8], subject: &[u8]) -> Result<Vec<u8>, PkiError> {
        let outer = der::single(cert, der::SEQUENCE)?;
        let [tbs, algorithm, _signature] = der::children(outer.content)?[..] else {
            return Err(PkiError::Der(
                "certificate is not tbs, algorithm, signature",
            ));
        };
        if tbs.tag != der::SEQUENCE {
            return Err(PkiError::Der("tbsCertificate is not a SEQUENCE"));
        }
        let fields = der::children(tbs.content)?;
        let subject_index = subject_index(&fields)?;
        let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject.len());
        for (i, field) in fields.iter().enumerate() {
            tbs_content.extend_from_slice(if i == subject_index {
                subject
            } else {
                field.raw
            });
        }
        let new_tbs = der::write(der::SEQUENCE, &tbs_content);
        let mut signature = vec![0u8]; // BIT STRING: no unused bits
        signature.extend(self.inner.issuer.key().sign(&new_tbs)?);
        let mut content = new_tbs;
        content.extend_from_slice(algorithm.raw);
        content.extend(der::write(der::BIT_STRING, &signature));
        Ok(der::write(der::SEQUENCE, &content))
    }
}

/// Reads the Kubernetes identity from a client certificate as kube-apiserver's x509 authenticator
/// does: the common name is the user (the last CN if several), every O is a group. `None` if the
/// certificate cannot be parsed or has no (or an empty) common name.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
    let outer = der::single(cert.as_ref(), der::SEQUENCE).ok()?;
    let tbs = *der::children(outer.content).ok()?.first()?;
    let fields = der::children(tbs.content).ok()?;
    let subject = fields[subject_index(&fields).ok()?];
    let mut user = None;
    let mut groups = Vec::new();
    for rdn in der::children(subject.content).ok()? {
        for attribute in der::children(rdn.content).ok()? {
            let [oid, value] = der::children(attribute.content).ok()?[..] else {
                return None;
            };
            if oid.tag != der::OID {
                return None;
            }
            if oid.content == OID_COMMON_NAME {
                user = Some(der::string(value)?);
            } else if oid.content == OID_ORGANIZATION {
                groups.push(der::string(value)?);
            }
        }
    }
    let user = user.filter(|user| !user.is_empty())?;
    Some(PeerIdentity { user, groups })
}

/// Position of the subject in a TBSCertificate's fields: after the optional `[0]` version,
/// serialNumber, signature, issuer and validity.
fn subject_index(fields: &[der::Tlv<'_>]) -> Result<usize, PkiError> {
    let index = match fields.first() {
        Some(first) if first.tag == der::CONTEXT_0 => 5,
        _ => 4,
    };
    match fields.get(index) {
        Some(subject) if subject.tag == der::SEQUENCE => Ok(index),
        _ => Err(PkiError::Der("tbsCertificate has no subject")),
    }
}

/// The raw subject Name of a CertificationRequest, and a check that every RDN is well formed.
fn csr_subject<'a>(csr: &'a CertificateSigningRequestDer<'_>) -> Result<&'a [u8], PkiError> {
    let invalid = |what: &str| PkiError::InvalidCsr(what.to_owned());
    let outer = der::single(csr.as_ref(), der::SEQUENCE).map_err(|_| invalid("not a SEQUENCE"))?;
    let info = *der::children(outer.content)
        .map_err(|_| invalid("malformed request"))?
        .first()
        .ok_or_else(|| invalid("empty request"))?;
    let info_fields = der::children(info.content).map_err(|_| invalid("malformed request info"))?;
    match info_fields.get(1) {
        Some(subject) if subject.tag == der::SEQUENCE => Ok(subject.raw),
        _ => Err(invalid("request has no subject")),
    }
}

/// A CSR usage, mapped as Kubernetes' signer maps `certificates.k8s.io/v1` KeyUsage strings.
enum Usage {
    Key(KeyUsagePurpose),
    Extended(ExtendedKeyUsagePurpose),
}

fn parse_usage(usage: &str) -> Result<Usage, PkiError> {
    use ExtendedKeyUsagePurpose as E;
    use KeyUsagePurpose as K;
    let other = |oid: &[u64]| Usage::Extended(E::Other(oid.to_vec()));
    Ok(match usage {
        "signing" | "digital signature" => Usage::Key(K::DigitalSignature),
        "content commitment" => Usage::Key(K::ContentCommitment),
        "key encipherment" => Usage::Key(K::KeyEncipherment),
        "key agreement" => Usage::Key(K::KeyAgreement),
        "data encipherment" => Usage::Key(K::DataEncipherment),
        "cert sign" => Usage::Key(K::KeyCertSign),
        "crl sign" => Usage::Key(K::CrlSign),
        "encipher only" => Usage::Key(K::EncipherOnly),
        "decipher only" => Usage::Key(K::DecipherOnly),
        "any" => Usage::Extended(E::Any),
        "server auth" => Usage::Extended(E::ServerAuth),
        "client auth" => Usage::Extended(E::ClientAuth),
        "code signing" => Usage::Extended(E::CodeSigning),
        "email protection" | "s/mime" => Usage::Extended(E::EmailProtection),
        "timestamping" => Usage::Extended(E::TimeStamping),
        "ocsp signing" => Usage::Extended(E::OcspSigning),
        "ipsec end system" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 5]),
        "ipsec tunnel" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 6]),
        "ipsec user" => other(&[1, 3, 6, 1, 5, 5, 7, 3, 7]),
        "microsoft sgc" => other(&[1, 3, 6, 1, 4, 1, 311, 10, 3, 3]),
        "netscape sgc" => other(&[2, 16, 840, 1, 113730, 4, 1]),
        unknown => return Err(PkiError::UnknownUsage(unknown.to_owned())),
    })
}

/// DER content of the OID 2.5.4.3 (commonName).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// DER content of the OID 2.5.4.10 (organizationName).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// A Name with one single-valued RDN per attribute, values as UTF8String.
fn name_der(attributes: &[(&[u8], &str)]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for (oid, value) in attributes {
        let mut attribute = der::write(der::OID, oid);
        attribute.extend(der::write(der::UTF8_STRING, value.as_bytes()));
        rdns.extend(der::write(der::SET, &der::write(der::SEQUENCE, &attribute)));
    }
    der::write(der::SEQUENCE, &rdns)
}

fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// A positive 128-bit serial, unique within the process and unpredictable across processes.
fn new_serial() -> SerialNumber {
    use std::hash::{BuildHasher as _, Hasher as _};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(count);
    hasher.write_u128(nanos);
    let mut bytes = hasher.finish().to_be_bytes().to_vec();
    bytes.extend(count.to_be_bytes());
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from(bytes)
}

fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// Just enough DER to walk certificates and requests and to rebuild them.
mod der {
    use super::PkiError;

    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OID: u8 = 0x06;
    pub(super) const UTF8_STRING: u8 = 0x0c;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const SET: u8 = 0x31;
    pub(super) const CONTEXT_0: u8 = 0xa0;

    /// One tag-length-value element.
    #[derive(Clone, Copy)]
    pub(super) struct Tlv<'a> {
        pub(super) tag: u8,
        pub(super) content: &'a [u8],
        /// The whole element, header included.
        pub(super) raw: &'a [u8],
    }

    /// Reads one element from the front of `input`, returning it and the rest.
    fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), PkiError> {
        let [tag, first, rest @ ..] = input else {
            return Err(PkiError::Der("truncated header"));
        };
        if tag & 0x1f == 0x1f {
            return Err(PkiError::Der("high tag numbers are not supported"));
        }
        let (len, rest) = match *first {
            short @ 0..=0x7f => (usize::from(short), rest),
            long @ 0x81..=0x84 => {
                let n = usize::from(long & 0x7f);
                if rest.len() < n {
                    return Err(PkiError::Der("truncated length"));
                }
                let len = rest[..n]
                    .iter()
                    .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
                (len, &rest[n..])
            }
            _ => return Err(PkiError::Der("unsupported length encoding")),
        };
        if rest.len() < len {
            return Err(PkiError::Der("truncated content"));
        }
        let header = input.len() - rest.len();
        Ok((
            Tlv {
                tag: *tag,
                content: &rest[..len],
                raw: &input[..header + len],
            },
            &rest[len..],
        ))
    }

    /// Parses `input` as exactly one element with tag `tag`.
    pub(super) fn single(input: &[u8], tag: u8) -> Result<Tlv<'_>, PkiError> {
        match read(input)? {
            (tlv, []) if tlv.tag == tag => Ok(tlv),
            (_, []) => Err(PkiError::Der("unexpected tag")),
            _ => Err(PkiError::Der("trailing data")),
        }
    }

    /// Parses the elements of a constructed value's content.
    pub(super) fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>, PkiError> {
        let mut out = Vec::new();
        while !content.is_empty() {
            let (tlv, rest) = read(content)?;
            out.push(tlv);
            content = rest;
        }
        Ok(out)
    }

    /// Encodes one element.
    pub(super) fn write(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// Decodes a directory string as Go's crypto/x509 does.
    pub(super) fn string(value: Tlv<'_>) -> Option<String> {
        match value.tag {
            // UTF8String, PrintableString, IA5String, NumericString
            0x0c | 0x13 | 0x16 | 0x12 => String::from_utf8(value.content.to_vec()).ok(),
            // T61String: Go reads it as ISO 8859-1
            0x14 => Some(value.content.iter().map(|b| char::from(*b)).collect()),
            // BMPString: UTF-16BE
            0x1e => {
                if !value.content.len().is_multiple_of(2) {
                    return None;
                }
                let units: Vec<u16> = value
                    .content
                    .chunks_exact(2)
                    .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                    .collect();
                String::from_utf16(&units).ok()
            }
            _ => None,
        }
    }
}
