//! The test CA: real TLS handshakes over 127.0.0.1 with its server and client configurations,
//! client-certificate identities, and CSR signing.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use yurt_testkit::pki::{CertifiedKey, ClientAuth, PeerIdentity, PkiError, TestCa, peer_identity};

/// Failure guard for every wait; never a timing assertion.
const GUARD: Duration = Duration::from_secs(10);
const GREETING: &[u8] = b"hello from the server";

/// What the server saw of an accepted connection.
#[derive(Debug)]
struct Accepted {
    alpn: Option<Vec<u8>>,
    peer: Option<CertificateDer<'static>>,
}

/// What the client saw.
#[derive(Debug)]
struct Connected {
    alpn: Option<Vec<u8>>,
    /// What the client read after the handshake: the greeting on success.
    received: std::io::Result<Vec<u8>>,
}

/// Runs one TLS connection over a real loopback socket. The server greets and closes; the
/// client reads to the end. Server and client run concurrently in this task.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: &'static str,
) -> (
    Result<Accepted, std::io::Error>,
    Result<Connected, std::io::Error>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = async {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let (_, conn) = tls.get_ref();
        let accepted = Accepted {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer: conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| cert.clone().into_owned()),
        };
        tls.write_all(GREETING).await?;
        tls.shutdown().await?;
        Ok(accepted)
    };
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name).unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut received = Vec::new();
        let received = tls.read_to_end(&mut received).await.map(|_| received);
        Ok(Connected { alpn, received })
    };
    let (server_result, client_result) =
        timeout(GUARD, async { tokio::join!(server_side, client_side) })
            .await
            .expect("handshake hung");
    (server_result, client_result)
}

fn server_cert(ca: &TestCa) -> CertifiedKey {
    ca.issue_server_cert(&["localhost", "127.0.0.1"]).unwrap()
}

#[tokio::test]
async fn handshake_succeeds_and_negotiates_h2() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::None)
        .unwrap();
    for name in ["localhost", "127.0.0.1"] {
        let (accepted, connected) =
            handshake(server.clone(), ca.client_config(None).unwrap(), name).await;
        let accepted = accepted.expect("server side failed");
        let connected = connected.expect("client side failed");
        assert_eq!(accepted.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(connected.alpn.as_deref(), Some(&b"h2"[..]));
        assert!(accepted.peer.is_none());
        assert_eq!(connected.received.unwrap(), GREETING);
    }
}

#[tokio::test]
async fn http1_only_client_negotiates_http1() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::None)
        .unwrap();
    let mut client = (*ca.client_config(None).unwrap()).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (accepted, connected) = handshake(server, Arc::new(client), "localhost").await;
    assert_eq!(accepted.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(connected.unwrap().received.unwrap(), GREETING);
}

#[tokio::test]
async fn client_rejects_server_not_signed_by_its_ca() {
    let ca = TestCa::new().unwrap();
    let other = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::None)
        .unwrap();
    let (_, connected) = handshake(server, other.client_config(None).unwrap(), "localhost").await;
    assert!(connected.is_err(), "{connected:?}");
}

#[tokio::test]
async fn client_rejects_name_missing_from_sans() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(
            &ca.issue_server_cert(&["localhost"]).unwrap(),
            ClientAuth::None,
        )
        .unwrap();
    let (_, connected) = handshake(server, ca.client_config(None).unwrap(), "127.0.0.1").await;
    assert!(connected.is_err(), "{connected:?}");
}

/// A client that should be refused: the server's accept fails and the client never reads the
/// greeting (with TLS 1.3 the client learns of the rejection only when it reads).
fn assert_refused(
    accepted: Result<Accepted, std::io::Error>,
    connected: Result<Connected, std::io::Error>,
) {
    assert!(accepted.is_err(), "server accepted: {accepted:?}");
    if let Ok(connected) = connected {
        assert!(
            !matches!(&connected.received, Ok(data) if data == GREETING),
            "client got the greeting"
        );
    }
}

#[tokio::test]
async fn required_client_auth_rejects_a_client_without_a_cert() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::Required)
        .unwrap();
    let (accepted, connected) =
        handshake(server, ca.client_config(None).unwrap(), "localhost").await;
    assert_refused(accepted, connected);
}

#[tokio::test]
async fn required_client_auth_accepts_a_cert_and_reads_its_identity() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::Required)
        .unwrap();
    let alice = ca
        .issue_client_cert("alice", &["system:masters", "developers"])
        .unwrap();
    let (accepted, connected) =
        handshake(server, ca.client_config(Some(&alice)).unwrap(), "localhost").await;
    assert_eq!(connected.unwrap().received.unwrap(), GREETING);
    let peer = accepted.unwrap().peer.expect("no client certificate");
    assert_eq!(
        peer_identity(&peer),
        Some(PeerIdentity {
            user: "alice".to_owned(),
            groups: vec!["system:masters".to_owned(), "developers".to_owned()],
        })
    );
}

#[test]
fn client_cert_identities_cover_zero_one_and_many_groups() {
    let ca = TestCa::new().unwrap();
    for groups in [
        &[][..],
        &["system:nodes"][..],
        &["a", "b", "c", "ünïcode grøup"][..],
    ] {
        let cert = ca.issue_client_cert("system:node:edge-1", groups).unwrap();
        let identity = peer_identity(&cert.cert_der().unwrap()).unwrap();
        assert_eq!(identity.user, "system:node:edge-1");
        assert_eq!(identity.groups, groups);
    }
}

#[tokio::test]
async fn required_client_auth_rejects_a_cert_from_another_ca() {
    let ca = TestCa::new().unwrap();
    let other = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::Required)
        .unwrap();
    let mallory = other
        .issue_client_cert("mallory", &["system:masters"])
        .unwrap();
    // Trusts the server's CA, presents a certificate issued by another one.
    let client = ca.client_config(Some(&mallory)).unwrap();
    let (accepted, connected) = handshake(server, client, "localhost").await;
    assert_refused(accepted, connected);
}

#[tokio::test]
async fn optional_client_auth_accepts_with_and_without_a_cert() {
    let ca = TestCa::new().unwrap();
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::Optional)
        .unwrap();
    let (accepted, connected) =
        handshake(server.clone(), ca.client_config(None).unwrap(), "localhost").await;
    assert!(accepted.unwrap().peer.is_none());
    assert_eq!(connected.unwrap().received.unwrap(), GREETING);

    let bob = ca.issue_client_cert("bob", &["viewers"]).unwrap();
    let (accepted, connected) =
        handshake(server, ca.client_config(Some(&bob)).unwrap(), "localhost").await;
    let peer = accepted.unwrap().peer.unwrap();
    assert_eq!(peer_identity(&peer).unwrap().user, "bob");
    assert_eq!(connected.unwrap().received.unwrap(), GREETING);
}

#[test]
fn peer_identity_of_a_cert_without_common_name_is_none() {
    let ca = TestCa::new().unwrap();
    let cert = ca.issue_server_cert(&[]).unwrap();
    // A server cert does have a CN (default name); an empty user must not authenticate.
    assert!(peer_identity(&cert.cert_der().unwrap()).is_some());
    let nameless = ca.issue_client_cert("", &["system:masters"]).unwrap();
    assert_eq!(peer_identity(&nameless.cert_der().unwrap()), None);
    assert_eq!(
        peer_identity(&CertificateDer::from(vec![0x30, 0x03, 1, 2])),
        None
    );
}

/// A kubelet-style CSR and its key.
fn node_csr(sans: &[&str]) -> (String, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(DnType::CommonName, "system:node:edge-1");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (csr, key)
}

#[tokio::test]
async fn signed_client_csr_verifies_against_the_ca_and_keeps_the_subject() {
    let ca = TestCa::new().unwrap();
    let (csr, key) = node_csr(&[]);
    let cert_pem = ca
        .sign_csr(
            &csr,
            &["digital signature", "key encipherment", "client auth"],
            None,
        )
        .unwrap();
    let signed = CertifiedKey {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let der = signed.cert_der().unwrap();

    // Chain verification as a TLS server would do it (including the clientAuth usage).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca_der()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&der, &[], UnixTime::now())
        .expect("signed certificate does not verify against the CA");

    assert_eq!(
        peer_identity(&der),
        Some(PeerIdentity {
            user: "system:node:edge-1".to_owned(),
            groups: vec!["system:nodes".to_owned()],
        })
    );

    // And it works as a client certificate in a real handshake.
    let server = ca
        .server_config(&server_cert(&ca), ClientAuth::Required)
        .unwrap();
    let (accepted, connected) = handshake(
        server,
        ca.client_config(Some(&signed)).unwrap(),
        "localhost",
    )
    .await;
    assert_eq!(connected.unwrap().received.unwrap(), GREETING);
    let peer = accepted.unwrap().peer.unwrap();
    assert_eq!(peer_identity(&peer).unwrap().user, "system:node:edge-1");
}

#[tokio::test]
async fn signed_serving_csr_keeps_its_sans() {
    let ca = TestCa::new().unwrap();
    let (csr, key) = node_csr(&["edge-1", "127.0.0.1"]);
    let cert_pem = ca
        .sign_csr(
            &csr,
            &["digital signature", "key encipherment", "server auth"],
            Some(60), // clamped up to 600 s: still valid now
        )
        .unwrap();
    let serving = CertifiedKey {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let server = ca.server_config(&serving, ClientAuth::None).unwrap();
    for name in ["edge-1", "127.0.0.1"] {
        let (accepted, connected) =
            handshake(server.clone(), ca.client_config(None).unwrap(), name).await;
        accepted.unwrap();
        assert_eq!(connected.unwrap().received.unwrap(), GREETING);
    }
}

#[test]
fn garbage_csrs_are_errors() {
    let ca = TestCa::new().unwrap();
    let usages = ["client auth"];
    for garbage in [
        "",
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n",
        ca.ca_pem(),
    ] {
        assert!(
            matches!(
                ca.sign_csr(garbage, &usages, None),
                Err(PkiError::InvalidCsr(_))
            ),
            "{garbage:?}"
        );
    }

    // A request whose signature does not match its content.
    let (csr, _) = node_csr(&[]);
    let mut der = pem_decode(&csr);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem("CERTIFICATE REQUEST", &der);
    assert!(matches!(
        ca.sign_csr(&tampered, &usages, None),
        Err(PkiError::InvalidCsr(_))
    ));

    // Unknown usage strings are refused, like the Kubernetes signer does.
    assert!(matches!(
        ca.sign_csr(&csr, &["client auth", "world domination"], None),
        Err(PkiError::UnknownUsage(u)) if u == "world domination"
    ));
}

/// Decodes the body of a one-block PEM document.
fn pem_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
