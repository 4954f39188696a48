//! The webhook server's certificates, kept as upstream yurt-manager keeps them: a self-signed CA
//! and a serving certificate signed by it, stored in one Secret
//! (`kube-system/yurt-manager-webhook-certs` by default) under upstream's keys (`ca-cert.pem`,
//! `ca-key.pem`, `cert.pem`/`tls.crt`, `key.pem`/`tls.key`), so every replica serves the same
//! certificate and the webhook configurations carry one `caBundle`.
//!
//! [`ensure_secret`] reads the Secret and reuses what it holds when [`check`] finds it sound: the
//! serving certificate is signed by the CA, covers every wanted name, matches its key, and is
//! valid for more than [`RENEW_BEFORE`]. Otherwise it writes a new pair (keeping a sound CA, so
//! the `caBundle` does not change). Concurrent managers do not fight: a missing Secret is created
//! (a losing creator gets `AlreadyExists` and reads the winner's), and a replacement carries the
//! resourceVersion it was computed from (a losing writer gets `Conflict` and starts over).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Secret key of the CA certificate (PEM).
pub const CA_CERT_KEY: &str = "ca-cert.pem";
/// Secret key of the CA private key (PEM).
pub const CA_KEY_KEY: &str = "ca-key.pem";
/// Secret key of the serving certificate (PEM).
pub const CERT_KEY: &str = "cert.pem";
/// Secret key of the serving private key (PEM).
pub const KEY_KEY: &str = "key.pem";
/// The serving certificate again, under the name `kubernetes.io/tls` tooling expects.
pub const TLS_CRT_KEY: &str = "tls.crt";
/// The serving key again, under the name `kubernetes.io/tls` tooling expects.
pub const TLS_KEY_KEY: &str = "tls.key";

/// How long a new CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a new serving certificate is valid.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate closer than this to its expiry is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why certificates could not be made or stored.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The apiserver refused or failed a read or write of the Secret.
    #[error("Secret {0}: {1}")]
    Kube(String, kube::Error),
    /// Other writers kept changing the Secret.
    #[error("Secret {0} kept changing under us; giving up after {1} attempts")]
    Contended(String, usize),
}

/// A CA and the serving certificate it signed, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    /// CA certificate (the `caBundle` of the webhook configurations).
    pub ca_cert: String,
    /// CA private key.
    pub ca_key: String,
    /// Serving certificate.
    pub cert: String,
    /// Serving private key.
    pub key: String,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle").finish_non_exhaustive()
    }
}

/// The names the serving certificate must cover for Service `service` in `namespace` (the
/// forms kube-apiserver may dial), plus `host` when the webhook is reached by address.
pub fn dns_names(service: &str, namespace: &str, host: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ];
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        names.push(h.to_owned());
    }
    names
}

fn san(name: &str) -> Result<SanType, rcgen::Error> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into()?),
    })
}

fn ca_params(now: SystemTime, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "yurt-manager-webhook-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + validity).into();
    params
}

fn serving(
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
    validity: Duration,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("yurt-manager"),
    );
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + validity).into();
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new CA and a serving certificate for `names`, valid for `validity` from now.
pub fn generate(names: &[String], validity: Duration) -> Result<CertBundle, rcgen::Error> {
    let now = SystemTime::now();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params(now, CA_VALIDITY.max(validity));
    let ca_cert = params.self_signed(&ca_key)?.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(params, ca_key);
    let (cert, key) = serving(names, &issuer, now, validity)?;
    Ok(CertBundle {
        ca_cert,
        ca_key: ca_key_pem,
        cert,
        key,
    })
}

/// A new serving certificate for `names` signed by the CA of `bundle`.
pub fn reissue(
    bundle: &CertBundle,
    names: &[String],
    validity: Duration,
) -> Result<CertBundle, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&bundle.ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&bundle.ca_cert, ca_key)?;
    let (cert, key) = serving(names, &issuer, SystemTime::now(), validity)?;
    Ok(CertBundle {
        cert,
        key,
        ..bundle.clone()
    })
}

fn first_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| "no certificate in PEM".to_owned())?
        .map_err(|e| format!("unreadable certificate PEM: {e}"))
}

fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| format!("unreadable key PEM: {e}"))?
        .ok_or_else(|| "no private key in PEM".to_owned())
}

fn not_after(der: &CertificateDer<'_>) -> Result<SystemTime, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// Whether the CA of `bundle` is itself usable for signing a new serving certificate (parsable,
/// key matching, not close to expiry).
pub fn ca_is_sound(bundle: &CertBundle, now: SystemTime) -> bool {
    let ok = || -> Result<(), String> {
        let der = first_der(&bundle.ca_cert)?;
        if not_after(&der)? < now + 2 * RENEW_BEFORE {
            return Err("CA expiring".into());
        }
        let key = KeyPair::from_pem(&bundle.ca_key).map_err(|e| e.to_string())?;
        Issuer::from_ca_cert_pem(&bundle.ca_cert, key).map_err(|e| e.to_string())?;
        Ok(())
    };
    ok().is_ok()
}

/// Checks that `bundle` can serve `names` at `now`: the serving certificate chains to the CA,
/// is valid now for every name, matches its key, and expires later than [`RENEW_BEFORE`] from
/// now. `Err` says why it cannot (and must be replaced).
pub fn check(bundle: &CertBundle, names: &[String], now: SystemTime) -> Result<(), String> {
    let ca = first_der(&bundle.ca_cert)?;
    let leaf = first_der(&bundle.cert)?;
    let key = key_der(&bundle.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rustls::sign::CertifiedKey::from_der(vec![leaf.clone()], key, &provider)
        .map_err(|e| format!("serving key does not match the certificate: {e}"))?;
    drop(certified);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| format!("unusable CA certificate: {e}"))?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    let unix = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| format!("invalid webhook name {name:?}: {e}"))?;
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], unix)
            .map_err(|e| format!("serving certificate not valid for {name}: {e}"))?;
    }
    for (what, der) in [("serving", &leaf), ("CA", &ca)] {
        if not_after(der)? < now + RENEW_BEFORE {
            return Err(format!("{what} certificate expires within 30 days"));
        }
    }
    Ok(())
}

/// Reads a bundle from a Secret's data; `None` when any of the four PEMs is missing.
pub fn from_secret(secret: &Secret) -> Option<CertBundle> {
    let data = secret.data.as_ref()?;
    let get = |k: &str| {
        data.get(k)
            .filter(|v| !v.0.is_empty())
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    Some(CertBundle {
        ca_cert: get(CA_CERT_KEY)?,
        ca_key: get(CA_KEY_KEY)?,
        cert: get(CERT_KEY)?,
        key: get(KEY_KEY)?,
    })
}

fn secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    let b = |s: &str| ByteString(s.as_bytes().to_vec());
    BTreeMap::from([
        (CA_CERT_KEY.to_owned(), b(&bundle.ca_cert)),
        (CA_KEY_KEY.to_owned(), b(&bundle.ca_key)),
        (CERT_KEY.to_owned(), b(&bundle.cert)),
        (TLS_CRT_KEY.to_owned(), b(&bundle.cert)),
        (KEY_KEY.to_owned(), b(&bundle.key)),
        (TLS_KEY_KEY.to_owned(), b(&bundle.key)),
    ])
}

/// What [`ensure_secret`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretOutcome {
    /// The Secret held sound certificates; they are used as they are.
    Reused,
    /// There was no Secret; this manager created it.
    Created,
    /// The Secret's certificates were unusable (expiring, other names, damaged) and were replaced.
    Replaced,
}

/// Makes sure Secret `namespace/name` holds certificates sound for `names`, and returns them.
pub async fn ensure_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<(CertBundle, SecretOutcome), CertError> {
    const ATTEMPTS: usize = 5;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = format!("{namespace}/{name}");
    for _ in 0..ATTEMPTS {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| CertError::Kube(what.clone(), e))?;
        let Some(mut secret) = existing else {
            let bundle = generate(names, SERVING_VALIDITY)?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    ..Default::default()
                },
                data: Some(secret_data(&bundle)),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    tracing::info!(secret = %what, "created webhook certificates");
                    return Ok((bundle, SecretOutcome::Created));
                }
                // Another manager created it first: read and use theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(CertError::Kube(what, e)),
            }
        };
        let now = SystemTime::now();
        let current = from_secret(&secret);
        let reason = match &current {
            Some(bundle) => match check(bundle, names, now) {
                Ok(()) => return Ok((bundle.clone(), SecretOutcome::Reused)),
                Err(reason) => reason,
            },
            None => "certificates missing".to_owned(),
        };
        let bundle = match current.filter(|b| ca_is_sound(b, now)) {
            Some(b) => reissue(&b, names, SERVING_VALIDITY)?,
            None => generate(names, SERVING_VALIDITY)?,
        };
        tracing::info!(secret = %what, %reason, "replacing webhook certificates");
        // `replace` sends the resourceVersion read above: a concurrent writer makes this a 409.
        secret.data = Some(secret_data(&bundle));
        secret.string_data = None;
        match api.replace(name, &PostParams::default(), &secret).await {
            Ok(_) => return Ok((bundle, SecretOutcome::Replaced)),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(CertError::Kube(what, e)),
        }
    }
    Err(CertError::Contended(what, ATTEMPTS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        dns_names(
            "yurt-manager-webhook-service",
            "kube-system",
            Some("127.0.0.1"),
        )
    }

    #[test]
    fn fresh_certificates_pass_the_check() {
        let b = generate(&names(), SERVING_VALIDITY).unwrap();
        check(&b, &names(), SystemTime::now()).unwrap();
        // Reissuing keeps the CA (and so the caBundle).
        let again = reissue(&b, &names(), SERVING_VALIDITY).unwrap();
        assert_eq!(again.ca_cert, b.ca_cert);
        assert_ne!(again.cert, b.cert);
        check(&again, &names(), SystemTime::now()).unwrap();
        assert!(ca_is_sound(&b, SystemTime::now()));
    }

    #[test]
    fn expiring_certificates_are_replaced() {
        let b = generate(&names(), Duration::from_secs(24 * 3600)).unwrap();
        let err = check(&b, &names(), SystemTime::now()).unwrap_err();
        assert!(err.contains("expires within"), "{err}");
        // Already expired: the chain check refuses it.
        let later = SystemTime::now() + Duration::from_secs(2 * 24 * 3600);
        assert!(check(&b, &names(), later).is_err());
    }

    #[test]
    fn other_names_or_mismatched_parts_are_replaced() {
        let b = generate(&names(), SERVING_VALIDITY).unwrap();
        let mut wanted = names();
        wanted.push("webhook.example.com".into());
        let err = check(&b, &wanted, SystemTime::now()).unwrap_err();
        assert!(err.contains("webhook.example.com"), "{err}");

        let other = generate(&names(), SERVING_VALIDITY).unwrap();
        let wrong_key = CertBundle {
            key: other.key.clone(),
            ..b.clone()
        };
        assert!(
            check(&wrong_key, &names(), SystemTime::now())
                .unwrap_err()
                .contains("does not match")
        );
        let wrong_ca = CertBundle {
            ca_cert: other.ca_cert.clone(),
            ..b.clone()
        };
        assert!(check(&wrong_ca, &names(), SystemTime::now()).is_err());
        let garbage = CertBundle {
            cert: "garbage".into(),
            ..b
        };
        assert!(check(&garbage, &names(), SystemTime::now()).is_err());
    }

    #[test]
    fn secret_round_trip() {
        let b = generate(&names(), SERVING_VALIDITY).unwrap();
        let secret = Secret {
            data: Some(secret_data(&b)),
            ..Default::default()
        };
        assert_eq!(from_secret(&secret), Some(b));
        assert_eq!(from_secret(&Secret::default()), None);
        let data = secret.data.unwrap();
        assert_eq!(data[TLS_CRT_KEY], data[CERT_KEY]);
        assert_eq!(data[TLS_KEY_KEY], data[KEY_KEY]);
    }
}
