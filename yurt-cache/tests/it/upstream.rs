//! The upstream client against a TLS TestApiServer: the hub's identity, bearer pass-through,
//! CA pinning, connect errors, streamed watches.

use bytes::BytesMut;
use http::{Request, Version};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use yurt_cache::body::Body;
use yurt_cache::upstream::UpstreamConfig;
use yurt_testkit::TestApiServer;

use crate::net::{WAIT, get, hub_client, json, send, uri, whoami};

#[tokio::test]
async fn requests_carry_the_hubs_client_certificate_over_h2() {
    let server = TestApiServer::builder().tls().start().await.unwrap();
    let client = hub_client(&server, "system:node:edge-1", &["system:nodes"]);
    let resp = send(&client, &uri(&server), whoami()).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.version(), Version::HTTP_2, "h2 negotiated by ALPN");
    let review = json(resp).await;
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:node:edge-1"
    );

    let resp = send(&client, &uri(&server), get("/api/v1/namespaces"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["kind"], "NamespaceList");
    let seen: Vec<_> = server
        .traffic()
        .records
        .iter()
        .map(|r| r.verb.clone())
        .collect();
    assert_eq!(seen, ["create", "list"]);
}

#[tokio::test]
async fn a_bearer_token_is_passed_through_instead_of_the_hub_identity() {
    let server = TestApiServer::builder()
        .tls()
        .token("alice-token", "alice", &["devs"])
        .start()
        .await
        .unwrap();
    let client = hub_client(&server, "system:node:edge-1", &["system:nodes"]);
    let (mut parts, body) = whoami().into_parts();
    parts
        .headers
        .insert("authorization", "Bearer alice-token".parse().unwrap());
    let resp = send(&client, &uri(&server), Request::from_parts(parts, body))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let review = json(resp).await;
    assert_eq!(review["status"]["userInfo"]["username"], "alice");
    assert_eq!(review["status"]["userInfo"]["groups"][0], "devs");

    // The hub's own requests still carry the node identity.
    let review = json(send(&client, &uri(&server), whoami()).await.unwrap()).await;
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:node:edge-1"
    );
}

#[tokio::test]
async fn only_the_given_ca_is_trusted() {
    let server = TestApiServer::builder().tls().start().await.unwrap();
    let other = TestApiServer::builder().tls().start().await.unwrap();
    let client = yurt_cache::upstream::UpstreamClient::new(
        UpstreamConfig::from_ca_pem(other.ca().ca_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let err = send(&client, &uri(&server), get("/version"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert!(server.traffic().records.is_empty());
    let ok = send(&client, &uri(&other), get("/version")).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connect_error_mapped_to_503() {
    let server = TestApiServer::builder().tls().start().await.unwrap();
    let client = hub_client(&server, "system:node:edge-1", &[]);
    server.go_down().await;
    let err = send(&client, &uri(&server), get("/version"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert_eq!(err.to_status().code, 503);
}

#[tokio::test]
async fn a_watch_is_streamed_while_it_is_open() {
    let server = TestApiServer::builder().tls().start().await.unwrap();
    let client = hub_client(&server, "system:node:edge-1", &["system:nodes"]);
    // Through the tower Service bound to the server.
    let upstream = client.to(uri(&server));
    let resp = tokio::time::timeout(
        WAIT,
        upstream.oneshot(get(
            "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=60",
        )),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200);

    // The object is created only after the watch's headers arrived.
    server
        .create_object(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "late", "namespace": "default"},
            "data": {"k": "v"}
        }))
        .await
        .unwrap();

    let mut body: Body = resp.into_body();
    let mut buf = BytesMut::new();
    let event = tokio::time::timeout(WAIT, async {
        loop {
            let frame = body.frame().await.expect("stream open").unwrap();
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
            }
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(end + 1);
                return serde_json::from_slice::<serde_json::Value>(&line).unwrap();
            }
        }
    })
    .await
    .expect("the event arrives while the watch is open");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "late");
    assert_eq!(server.open_watches(), 1, "the watch is still open");
}

/// A one-shot HTTP/1.1 TLS server issued by `ca` that reports, per connection, the user of the
/// client certificate presented (`None` without one) and answers 200.
async fn cert_reporting_server(
    ca: &yurt_testkit::pki::TestCa,
) -> (
    http::Uri,
    tokio::sync::mpsc::Receiver<Option<String>>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cert = ca.issue_server_cert(&["127.0.0.1"]).unwrap();
    let mut config = (*ca
        .server_config(&cert, yurt_testkit::pki::ClientAuth::Optional)
        .unwrap())
    .clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(yurt_testkit::pki::peer_identity)
                .map(|id| id.user);
            let _ = tx.send(user).await;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let _ = tls.shutdown().await;
        }
    });
    (url.parse().unwrap(), rx, task)
}

#[tokio::test]
async fn bearer_requests_use_connections_without_the_hub_certificate() {
    let ca = yurt_testkit::pki::TestCa::new().unwrap();
    let (server, mut seen, task) = cert_reporting_server(&ca).await;
    let cert = ca
        .issue_client_cert("system:node:edge-1", &["system:nodes"])
        .unwrap();
    let client = yurt_cache::upstream::UpstreamClient::new(
        UpstreamConfig::from_ca_pem(ca.ca_pem().as_bytes())
            .unwrap()
            .client_cert_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap(),
    )
    .unwrap();

    let mut bearer = get("/api/v1/pods");
    bearer
        .headers_mut()
        .insert("authorization", "Bearer alice-token".parse().unwrap());
    let resp = send(&client, &server, bearer).await.unwrap();
    assert_eq!(resp.status(), 200);
    let user = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, None, "no client certificate on the bearer connection");

    let resp = send(&client, &server, get("/api/v1/pods")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let user = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.as_deref(), Some("system:node:edge-1"));
    task.abort();
}

/// Signs a client certificate with a fresh CA using the openssl CLI, as an operator would:
/// plain `openssl x509 -req` (X.509 v1), or with `-extfile` extensions (v3). Returns
/// `(cert PEM, key PEM)`, or `None` when openssl is not installed.
pub(crate) fn openssl_client_cert(dir: &std::path::Path, v3: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    run(&["version"])?;
    std::fs::write(dir.join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ];
    run(&[&ec[..], &["ca.key"]].concat())?;
    run(&[
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ca", "-days", "1", "-out", "ca.crt",
    ])?;
    run(&[&ec[..], &["c.key"]].concat())?;
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "c.key", "-out", "c.pk8",
    ])?;
    run(&[
        "req",
        "-new",
        "-key",
        "c.key",
        "-subj",
        "/O=system:nodes/CN=system:node:edge-1",
        "-out",
        "c.csr",
    ])?;
    let mut sign = vec![
        "x509",
        "-req",
        "-in",
        "c.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "c.crt",
    ];
    if v3 {
        sign.extend(["-extfile", "ext.cnf"]);
    }
    run(&sign)?;
    Some((
        std::fs::read(dir.join("c.crt")).unwrap(),
        std::fs::read(dir.join("c.pk8")).unwrap(),
    ))
}

#[test]
fn an_x509_v1_client_certificate_is_refused_at_once_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = openssl_client_cert(dir.path(), false) else {
        eprintln!("openssl is not installed; skipped");
        return;
    };
    let ca = yurt_testkit::pki::TestCa::new()
        .unwrap()
        .ca_pem()
        .to_owned();
    let err = UpstreamConfig::from_ca_pem(ca.as_bytes())
        .unwrap()
        .client_cert_pem(&cert, &key)
        .expect_err("rustls cannot use an X.509 v1 certificate");
    let text = err.to_string();
    assert!(
        matches!(err, yurt_cache::upstream::Error::ClientCert(_)),
        "{err:?}"
    );
    assert!(text.contains("X.509 v1"), "{text}");
    assert!(text.contains("openssl x509 -req"), "{text}");

    // The same request signed with v3 extensions, as the message advises, is accepted.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_client_cert(dir.path(), true).unwrap();
    let config = UpstreamConfig::from_ca_pem(ca.as_bytes())
        .unwrap()
        .client_cert_pem(&cert, &key)
        .unwrap();
    yurt_cache::upstream::UpstreamClient::new(config).unwrap();

    // A key that is not the certificate's is named as such.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = openssl_client_cert(other.path(), true).unwrap();
    let err = UpstreamConfig::from_ca_pem(ca.as_bytes())
        .unwrap()
        .client_cert_pem(&cert, &other_key)
        .unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}
