//! The HTTPS server: TLS (rustls, h2 and HTTP/1.1) with the certificate from the Secret, one
//! POST endpoint per webhook plus `/convert`, request metrics per webhook, and a resync loop that
//! re-checks the Secret and the webhook configurations (as upstream's webhook controller does
//! every minute) and swaps in a renewed certificate without a restart.
//!
//! A body that is not a review (wrong method, media type, size, JSON or shape) is answered with
//! an HTTP error and a `Status` saying what is wrong (400 for a bad review), so kube-apiserver
//! treats it as a failed call and applies the webhook's `failurePolicy`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use yurt_core::Status;
use yurt_core::admission::{
    AdmissionReview, Operation, decode_admission_review, decode_conversion_review,
};
use yurt_core::crd::NodePool;
use yurt_core::crd::nodepool_v1beta1::convert_nodepool;
use yurt_core::wellknown::node;

use super::certs::{self, CertBundle};
use super::configs::{self, Target};
use super::handlers::{
    self, NODE_MUTATE_PATH, NODE_VALIDATE_PATH, NODEPOOL_MUTATE_PATH, NODEPOOL_VALIDATE_PATH,
    POD_MUTATE_PATH,
};
use super::review::{Verdict, admission_response, conversion_response};
use super::{CONVERSION_PATH, WebhookConfig, WebhookError};
use crate::metrics::{Metrics, WebhookCodeLabels, WebhookLabel};

/// Largest request body accepted (an UPDATE review carries two objects of up to ~3 MiB).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Bound of a lookup a webhook makes against the apiserver (the apiserver's own default
/// webhook timeout is 10 s).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(8);
/// Bound of a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every path served, in the order documented.
pub const PATHS: [&str; 6] = [
    NODE_MUTATE_PATH,
    NODE_VALIDATE_PATH,
    NODEPOOL_MUTATE_PATH,
    NODEPOOL_VALIDATE_PATH,
    POD_MUTATE_PATH,
    CONVERSION_PATH,
];

/// Hands rustls whichever certificate is current.
#[derive(Debug)]
pub(super) struct Resolver(RwLock<Arc<CertifiedKey>>);

impl Resolver {
    pub(super) fn new(bundle: &CertBundle) -> Result<Resolver, WebhookError> {
        Ok(Resolver(RwLock::new(Arc::new(certified(bundle)?))))
    }

    fn set(&self, bundle: &CertBundle) -> Result<(), WebhookError> {
        let key = Arc::new(certified(bundle)?);
        if let Ok(mut slot) = self.0.write() {
            *slot = key;
        }
        Ok(())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| Arc::clone(&k))
    }
}

fn certified(bundle: &CertBundle) -> Result<CertifiedKey, WebhookError> {
    let bad = |what: &str| WebhookError::Tls(format!("webhook {what} in the Secret is unusable"));
    let chain: Vec<_> = rustls_pemfile::certs(&mut bundle.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("certificate"))?;
    let key = rustls_pemfile::private_key(&mut bundle.key.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| bad("key"))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| WebhookError::Tls(e.to_string()))
}

pub(super) fn tls_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What request handling needs.
pub(super) struct State {
    pub(super) client: Client,
    pub(super) namespace: String,
    pub(super) metrics: Metrics,
}

fn status_response(status: &Status) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(status.to_json())));
    *resp.status_mut() = status.http_status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_response(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn with_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    what: &str,
) -> Result<T, Status> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Status::internal(format!("{what}: {e}"))),
        Err(_) => Err(Status::internal(format!("{what}: timed out"))),
    }
}

/// Decides one admission review at `path`, making the lookups the handler needs.
async fn decide(state: &State, path: &str, review: &AdmissionReview) -> Verdict {
    let req = &review.request;
    let object = req.object.as_ref();
    let result: Result<Verdict, Status> = async {
        Ok(match path {
            NODE_MUTATE_PATH => match (req.operation, object) {
                (Operation::Create | Operation::Update, Some(obj)) => {
                    match handlers::node_pool_to_look_up(obj) {
                        None => Verdict::Allow,
                        Some(pool) => {
                            let api: Api<NodePool> = Api::all(state.client.clone());
                            let found =
                                with_timeout(api.get_opt(&pool), "reading the node's pool").await?;
                            handlers::default_node(obj, found.as_ref())
                        }
                    }
                }
                _ => Verdict::Allow,
            },
            NODE_VALIDATE_PATH => handlers::validate_node(req, &state.namespace),
            NODEPOOL_MUTATE_PATH => match (req.operation, object) {
                (Operation::Create, Some(obj)) => handlers::default_nodepool(obj),
                _ => Verdict::Allow,
            },
            NODEPOOL_VALIDATE_PATH => {
                let has_members = if req.operation == Operation::Delete {
                    let api: Api<Node> = Api::all(state.client.clone());
                    let lp = ListParams::default()
                        .labels(&format!("{}={}", node::NODEPOOL_LABEL, req.name))
                        .limit(1);
                    let nodes =
                        with_timeout(api.list_metadata(&lp), "listing the pool's nodes").await?;
                    !nodes.items.is_empty()
                } else {
                    false
                };
                handlers::validate_nodepool(req, has_members)
            }
            POD_MUTATE_PATH => match (req.operation, object) {
                (Operation::Create, Some(obj)) => handlers::default_pod(obj),
                _ => Verdict::Allow,
            },
            _ => Verdict::Allow,
        })
    }
    .await;
    result.unwrap_or_else(Verdict::deny)
}

fn convert(body: &[u8]) -> Result<Vec<u8>, Box<Status>> {
    let review = decode_conversion_review(body).map_err(|e| Box::new(Status::bad_request(e.0)))?;
    let desired = &review.request.desired_api_version;
    let converted: Result<Vec<_>, String> = review
        .request
        .objects
        .iter()
        .map(|o| convert_nodepool(o, desired).map_err(|e| e.0))
        .collect();
    Ok(conversion_response(&review.request.uid, converted))
}

async fn answer(state: &State, path: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !PATHS.contains(&path) {
        return status_response(&Status::path_not_found());
    }
    if req.method() != Method::POST {
        return status_response(&Status::method_not_supported(
            "",
            path.trim_start_matches('/'),
            req.method().as_str(),
        ));
    }
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/json") {
        return status_response(&Status::unsupported_media_type(&["application/json"]));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let status = if too_large {
                Status::failure(
                    yurt_core::StatusReason::RequestEntityTooLarge,
                    format!("request body larger than {MAX_BODY} bytes"),
                )
            } else {
                Status::bad_request(format!("reading the request body: {e}"))
            };
            return status_response(&status);
        }
    };
    if path == CONVERSION_PATH {
        return match convert(&body) {
            Ok(out) => json_response(out),
            Err(status) => status_response(&status),
        };
    }
    let review = match decode_admission_review(&body) {
        Ok(r) => r,
        Err(e) => return status_response(&Status::bad_request(e.0)),
    };
    let verdict = decide(state, path, &review).await;
    json_response(admission_response(&review, verdict))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let label = WebhookLabel {
        webhook: path.clone(),
    };
    let known = PATHS.contains(&path.as_str());
    let start = Instant::now();
    if known {
        state.metrics.webhook_in_flight.get_or_create(&label).inc();
    }
    let resp = answer(&state, &path, req).await;
    if known {
        state.metrics.webhook_in_flight.get_or_create(&label).dec();
        state
            .metrics
            .webhook_latency
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
        state
            .metrics
            .webhook_requests
            .get_or_create(&WebhookCodeLabels {
                webhook: path,
                code: resp.status().as_u16().to_string(),
            })
            .inc();
    }
    resp
}

/// Serves connections from `listener` until dropped.
pub(super) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req: Request<Incoming>| {
                handle(Arc::clone(&state), req).map(Ok::<_, Infallible>)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Re-checks the Secret and the configurations every `config.resync`, swapping in renewed
/// certificates, until dropped.
pub(super) async fn resync(
    client: Client,
    config: WebhookConfig,
    port: u16,
    resolver: Arc<Resolver>,
    mut current: CertBundle,
) {
    let names = config.dns_names();
    loop {
        tokio::time::sleep(config.resync).await;
        match certs::ensure_secret(&client, &config.namespace, &config.secret_name, &names).await {
            Ok((bundle, _)) => {
                if bundle != current {
                    match resolver.set(&bundle) {
                        Ok(()) => {
                            tracing::info!("webhook serving certificate renewed");
                            current = bundle;
                        }
                        Err(e) => tracing::warn!(error = %e, "renewed certificate unusable"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook certificates not checked");
                continue;
            }
        }
        let target = config.target(port, &current);
        if let Err(e) = configs::ensure(&client, &target).await {
            tracing::warn!(error = %e, "webhook configurations not updated");
        }
    }
}

/// Binds the webhook port (the first step of [`super::WebhookServer::bind`]).
pub(super) async fn bind_listener(addr: SocketAddr) -> Result<TcpListener, WebhookError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| WebhookError::Bind(addr, e))
}

impl WebhookConfig {
    pub(super) fn target(&self, port: u16, bundle: &CertBundle) -> Target {
        Target {
            namespace: self.namespace.clone(),
            service: self.service_name.clone(),
            host: self.host.clone(),
            port,
            ca_bundle: bundle.ca_cert.as_bytes().to_vec(),
        }
    }
}
