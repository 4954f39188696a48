//! Calling webhooks: how the test apiserver reaches an admission or conversion webhook named by a
//! `clientConfig` (`url`, or `service` plus `caBundle`), posts one JSON review to it and reads
//! the answer, with errors worded as kube-apiserver's webhook client words them (`Post
//! "https://…?timeout=10s": context deadline exceeded`, `dial tcp …: connect: connection
//! refused`, `an error on the server ("…") has prevented the request from succeeding`).
//!
//! A real apiserver reaches `service` references through the cluster network; this one cannot,
//! so a service reference `namespace/name:port` resolves, in order, to
//! - the address set with [`TestApiServer::route_service`](crate::TestApiServer::route_service);
//! - else `127.0.0.1:<targetPort>` of the matching port of that Service object (the port number
//!   itself when `targetPort` is absent or named), as if its endpoints were on this host;
//! - else the call fails with `service "<name>" not found`.
//!
//! TLS is verified as kube-apiserver verifies it: against the certificates in `caBundle` (no
//! bundle: no trusted roots, so only plain-HTTP URLs work), with the server name
//! `<name>.<namespace>.svc` for services and the URL's host for URLs. Plain `http://` URLs are
//! called too (kube-apiserver refuses them when the configuration is created).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::server::Shared;

/// Where and how to call one webhook.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL as kube-apiserver prints it in errors (with `?timeout=`).
    pub display: String,
    /// Where to connect.
    addr: SocketAddr,
    /// TLS server name to verify; `None` for plain HTTP.
    server_name: Option<String>,
    /// The request target (path and query).
    path: String,
    /// Host header.
    host: String,
    /// Trusted roots (PEM) from `caBundle`.
    ca_bundle: Vec<u8>,
}

/// Resolves a `clientConfig` for a call with `timeout`; errors are the reason text of a failed
/// call (without the `failed calling webhook` prefix).
pub(crate) async fn resolve(
    shared: &Shared,
    client_config: &Value,
    timeout: Duration,
) -> Result<Target, String> {
    let ca_bundle = match client_config["caBundle"].as_str() {
        Some(b64) if !b64.is_empty() => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("invalid caBundle: {e}"))?
        }
        _ => Vec::new(),
    };
    let secs = timeout.as_secs().max(1);
    if let Some(url) = client_config["url"].as_str() {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid url {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => {
                return Err(format!(
                    "unsupported protocol scheme {:?}",
                    other.unwrap_or("")
                ));
            }
        };
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let mut path = uri.path().to_owned();
        if path.is_empty() {
            path.push('/');
        }
        let query = match uri.query() {
            Some(q) => format!("{q}&timeout={secs}s"),
            None => format!("timeout={secs}s"),
        };
        let display = format!("{}?{query}", url.split('?').next().unwrap_or(url));
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    format!("Post {display:?}: dial tcp: lookup {host}: no such host")
                })?,
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or(host.clone());
        return Ok(Target {
            display,
            addr,
            server_name: tls.then_some(host),
            path: format!("{path}?{query}"),
            host: authority,
            ca_bundle,
        });
    }
    let svc = &client_config["service"];
    let (Some(namespace), Some(name)) = (svc["namespace"].as_str(), svc["name"].as_str()) else {
        return Err("clientConfig has neither url nor service".into());
    };
    let port = svc["port"].as_u64().unwrap_or(443) as u16;
    let mut path = svc["path"].as_str().unwrap_or("/").to_owned();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let host = format!("{name}.{namespace}.svc");
    let display = format!("https://{host}:{port}{path}?timeout={secs}s");
    let routed = shared.service_route(namespace, name, port);
    let addr = match routed {
        Some(a) => a,
        None => {
            let key = crate::storage::object_key(namespace, name);
            let service = shared.store.read(|t| t.get("/services", &key));
            let Some(service) = service else {
                return Err(format!("service {name:?} not found"));
            };
            let ports = service.value["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let Some(entry) = ports
                .iter()
                .find(|p| p["port"].as_u64() == Some(port.into()))
            else {
                return Err(format!(
                    "Post {display:?}: service {name:?} has no port {port}"
                ));
            };
            let target = entry["targetPort"].as_u64().unwrap_or(port.into()) as u16;
            SocketAddr::from(([127, 0, 0, 1], target))
        }
    };
    Ok(Target {
        display,
        addr,
        server_name: Some(host.clone()),
        path: format!("{path}?timeout={secs}s"),
        host: format!("{host}:{port}"),
        ca_bundle,
    })
}

/// Aborts the connection task when the call ends (the call owns it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// POSTs `body` to `target` and answers the JSON it returns; the whole call (connect, TLS, the
/// request and the answer) is bounded by `timeout`. Errors are the reason text of a failed call.
pub(crate) async fn post(
    target: &Target,
    body: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    let display = &target.display;
    match tokio::time::timeout(timeout, post_inner(target, body)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(CallError::Transport(e))) => Err(format!("Post {display:?}: {e}")),
        Ok(Err(CallError::Answer(e))) => Err(e),
        Err(_) => Err(format!("Post {display:?}: context deadline exceeded")),
    }
}

enum CallError {
    /// Connecting or talking failed (prefixed with `Post "<url>"`).
    Transport(String),
    /// The server answered, but not with a usable document.
    Answer(String),
}

async fn post_inner(target: &Target, body: &Value) -> Result<Value, CallError> {
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(|e| CallError::Transport(dial_error(target.addr, &e)))?;
    let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let req = http::Request::post(target.path.as_str())
        .header(http::header::HOST, target.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Full::new(payload))
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let resp = match &target.server_name {
        Some(server_name) => {
            let config = tls_config(&target.ca_bundle).map_err(CallError::Transport)?;
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|e| CallError::Transport(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| CallError::Transport(tls_error(&e)))?;
            send(stream, req).await?
        }
        None => send(tcp, req).await?,
    };
    let (code, bytes) = resp;
    if code != 200 {
        return Err(CallError::Answer(server_error(code, &bytes)));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        CallError::Answer(format!(
            "unable to decode the response into an AdmissionReview: {e}"
        ))
    })
}

async fn send<S>(stream: S, req: http::Request<Full<Bytes>>) -> Result<(u16, Bytes), CallError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CallError::Transport(e.to_string()))?
        .to_bytes();
    Ok((code, bytes))
}

/// A TLS client configuration trusting the PEM certificates of `ca_bundle`.
fn tls_config(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_bundle[..]) {
        let cert = cert.map_err(|e| format!("invalid caBundle: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("invalid caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Go's wording of a failed dial.
fn dial_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {why}")
}

/// Go's wording of a failed TLS handshake (certificate problems as crypto/x509 names them).
fn tls_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    // A certificate whose issuer name matches a trusted CA but whose signature does not verify
    // is, to Go, signed by an unknown authority too.
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "tls: failed to verify certificate: x509: certificate signed by unknown authority".into()
    } else if text.contains("NotValidForName") {
        "tls: failed to verify certificate: x509: certificate is not valid for the requested name"
            .into()
    } else {
        text
    }
}

/// client-go's message for a non-200 answer: the Status it carries, or a generic text.
fn server_error(code: u16, body: &[u8]) -> String {
    if let Some(st) = yurt_core::status::Status::from_json(body) {
        return st.message;
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    match code {
        404 => "the server could not find the requested resource".into(),
        500..=599 if !text.is_empty() => {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        }
        _ => format!(
            "the server responded with the status code {code} but did not return more information"
        ),
    }
}
