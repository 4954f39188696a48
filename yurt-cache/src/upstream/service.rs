use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::{self, HeaderMap, HeaderName};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::Service;

use super::Error;
use super::connect::Connector;
use crate::body::Body;

/// How [`UpstreamClient`] connects: the pinned CA, the hub's client certificate, timeouts.
pub struct UpstreamConfig {
    ca: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("ca_certs", &self.ca.len())
            .field("client_cert", &self.identity.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .finish()
    }
}

impl UpstreamConfig {
    /// Trusts exactly these CA certificates (DER; none at all: only plain `http` servers are
    /// reachable); no client certificate yet. Defaults: connect timeout 5 s (TCP and TLS
    /// handshake), idle pooled connections closed after 90 s.
    pub fn new(ca: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        UpstreamConfig {
            ca: ca.into_iter().collect(),
            identity: None,
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }

    /// Trusts exactly the CA certificates in a PEM bundle.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(Error::Pem("no CERTIFICATE block in the CA bundle".into()));
        }
        Ok(UpstreamConfig::new(certs))
    }

    /// Presents this certificate chain and key (the hub's node identity) on requests that do
    /// not carry a bearer token.
    pub fn client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.identity = Some((chain, key));
        self
    }

    /// [`client_cert`](Self::client_cert) from PEM documents. The pair is checked at once
    /// the way the TLS stack will use it, so an unusable certificate (an X.509 v1 one, a key
    /// that is not the certificate's) is an [`Error::ClientCert`] saying why, at start-up.
    pub fn client_cert_pem(self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(Error::ClientCert(
                "no CERTIFICATE block in the client certificate".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Pem(e.to_string()))?;
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
            .map_err(client_cert_error)?;
        Ok(self.client_cert(chain, key))
    }

    /// Bounds establishing a connection (TCP connect plus TLS handshake).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Closes pooled connections idle for this long.
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    fn tls(&self, with_identity: bool) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.ca {
            roots.add(ca.clone())?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (&self.identity, with_identity) {
            (Some((chain, key)), true) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(client_cert_error)?,
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The TLS crypto provider of every upstream connection.
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Why rustls refuses a client certificate and key, in words an operator can act on.
fn client_cert_error(e: rustls::Error) -> Error {
    use rustls::{CertificateError, Error as E, InconsistentKeys};
    let why = match &e {
        E::InvalidCertificate(CertificateError::Other(other))
            if format!("{other:?}").contains("UnsupportedCertVersion") =>
        {
            "it is an X.509 v1 certificate (no version and extensions), and the hub's TLS stack \
             (rustls) accepts only v3 ones; a plain `openssl x509 -req` makes v1: sign it again \
             with v3 extensions, e.g. `-extfile` with `extendedKeyUsage=clientAuth`"
                .to_owned()
        }
        E::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "the private key does not belong to the certificate".to_owned()
        }
        E::InvalidCertificate(CertificateError::BadEncoding) => {
            "the certificate is not valid DER X.509".to_owned()
        }
        other => format!("rustls refuses it: {other}"),
    };
    Error::ClientCert(why)
}

type PooledClient = Client<Connector, Body>;

/// The pooled upstream client; cheap to clone (clones share the pools). See the
/// [module docs](super).
#[derive(Clone)]
pub struct UpstreamClient {
    /// Connections presenting the hub's client certificate.
    hub: PooledClient,
    /// Connections without a client certificate, for requests with the caller's bearer token.
    bearer: PooledClient,
    #[cfg(test)]
    tls: (Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient").finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Builds the client (no connection is made yet).
    pub fn new(config: UpstreamConfig) -> Result<Self, Error> {
        let hub_tls = config.tls(true)?;
        let bearer_tls = config.tls(false)?;
        let build = |tls: Arc<rustls::ClientConfig>| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(config.pool_idle_timeout)
                .build(Connector::new(tls, config.connect_timeout))
        };
        Ok(UpstreamClient {
            hub: build(hub_tls.clone()),
            bearer: build(bearer_tls.clone()),
            #[cfg(test)]
            tls: (hub_tls, bearer_tls),
        })
    }

    /// This client bound to one server, as a tower `Service`.
    pub fn to(&self, server: Uri) -> Upstream {
        Upstream {
            client: self.clone(),
            server,
        }
    }

    /// Sends `req` to `server` (`https://host:port`; a path in it is ignored), choosing the
    /// credential as the [module docs](super) describe, and returns the streamed response.
    pub fn send(&self, server: &Uri, mut req: Request<Body>) -> ResponseFuture {
        let name = server.to_string();
        if let Err(e) = rewrite(server, &mut req) {
            return ResponseFuture(Box::pin(async move { Err(e) }));
        }
        let client = if has_bearer_token(req.headers()) {
            &self.bearer
        } else {
            &self.hub
        };
        // Remember a failure of the client's body: the transport reports it only as a reset
        // stream or a closed connection.
        let body_error = Arc::new(std::sync::Mutex::new(None));
        let req = if req.body().is_end_stream() {
            req
        } else {
            let error = body_error.clone();
            req.map(|inner| Body::new(WatchedBody { inner, error }))
        };
        let fut = client.request(req);
        ResponseFuture(Box::pin(async move {
            match fut.await {
                Ok(resp) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(parts, Body::new(body)))
                }
                Err(e) if let Some(source) = take_body_error(&body_error) => {
                    tracing::debug!(error = %e, "the request body failed while it was sent");
                    Err(Error::RequestBody {
                        server: name,
                        source,
                    })
                }
                Err(e) if e.is_connect() => Err(Error::Connect {
                    server: name,
                    source: Box::new(e),
                }),
                Err(e) => Err(Error::Upstream {
                    server: name,
                    source: Box::new(e),
                }),
            }
        }))
    }
}

/// Where a request body's failure is kept for [`UpstreamClient::send`].
type BodyErrorSlot = Arc<std::sync::Mutex<Option<String>>>;

/// The recorded body failure, if any, as an error.
fn take_body_error(slot: &BodyErrorSlot) -> Option<crate::body::BoxError> {
    let taken = slot.lock().ok()?.take()?;
    Some(taken.into())
}

/// A request body that records its first error in a slot before passing it on.
struct WatchedBody {
    inner: Body,
    error: BodyErrorSlot,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled
            && let Ok(mut slot) = self.error.lock()
        {
            slot.get_or_insert_with(|| e.to_string());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response future of [`UpstreamClient::send`] and [`Upstream`].
pub struct ResponseFuture(BoxFuture<'static, Result<Response<Body>, Error>>);

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// [`UpstreamClient`] bound to one server: a `Service` that is always ready (see the
/// [module docs](super)).
#[derive(Clone, Debug)]
pub struct Upstream {
    client: UpstreamClient,
    server: Uri,
}

impl Upstream {
    /// The server requests go to.
    pub fn server(&self) -> &Uri {
        &self.server
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> ResponseFuture {
        self.client.send(&self.server, req)
    }
}

/// True if the request authenticates with `Authorization: Bearer …`.
fn has_bearer_token(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
}

/// Points the request at `server`, keeping its path and query; drops `Host` (hyper derives it
/// from the new URI) and hop-by-hop headers; lets ALPN pick the HTTP version.
fn rewrite(server: &Uri, req: &mut Request<Body>) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidServer {
        server: server.to_string(),
        reason: reason.to_owned(),
    };
    match server.scheme_str() {
        Some("https" | "http") => {}
        _ => return Err(invalid("the scheme must be https (or http)")),
    }
    if server.authority().is_none() {
        return Err(invalid("no host"));
    }
    let path = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = server.clone().into_parts();
    parts.path_and_query = Some(path);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| invalid(&e.to_string()))?;
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut().remove(header::HOST);
    strip_hop_by_hop(req.headers_mut());
    Ok(())
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1, and those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_connections_present_no_client_certificate() {
        let ca = yurt_testkit::pki::TestCa::new().unwrap();
        let hub = ca
            .issue_client_cert("system:node:edge-1", &["system:nodes"])
            .unwrap();
        let config = UpstreamConfig::from_ca_pem(ca.ca_pem().as_bytes())
            .unwrap()
            .client_cert_pem(hub.cert_pem.as_bytes(), hub.key_pem.as_bytes())
            .unwrap();
        let client = UpstreamClient::new(config).unwrap();
        assert!(client.tls.0.client_auth_cert_resolver.has_certs());
        assert!(!client.tls.1.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn bearer_detection() {
        let mut h = HeaderMap::new();
        assert!(!has_bearer_token(&h));
        h.insert(header::AUTHORIZATION, "Basic dXNlcg==".parse().unwrap());
        assert!(!has_bearer_token(&h));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert!(has_bearer_token(&h));
    }

    #[test]
    fn rewrite_keeps_path_and_query_and_drops_host_and_hop_by_hop() {
        let mut req = Request::get("http://127.0.0.1:10261/api/v1/pods?watch=1")
            .header("host", "127.0.0.1:10261")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "1")
            .header("accept", "application/json")
            .version(Version::HTTP_2)
            .body(Body::empty())
            .unwrap();
        rewrite(&"https://10.0.0.1:6443".parse().unwrap(), &mut req).unwrap();
        assert_eq!(req.uri(), "https://10.0.0.1:6443/api/v1/pods?watch=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert!(req.headers().get("host").is_none());
        assert!(req.headers().get("connection").is_none());
        assert!(req.headers().get("x-private").is_none());
        assert_eq!(req.headers()["accept"], "application/json");
        let err = rewrite(&"ftp://10.0.0.1".parse().unwrap(), &mut req).unwrap_err();
        assert!(matches!(err, Error::InvalidServer { .. }));
    }
}
