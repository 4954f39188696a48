//! yurt-manager's webhook server (port 10273, `--webhook-port`): the admission webhooks for
//! Node, NodePool and Pod, and the conversion webhook that serves NodePool as both v1beta1 and
//! v1beta2.
//!
//! It runs on every replica, independent of leader election (kube-apiserver may call any
//! replica behind the webhook Service). [`WebhookServer::bind`] prepares everything before it
//! returns, so a manager that reports itself up is callable:
//!
//! 1. binds the port (a port in use is an error at once);
//! 2. makes sure the Secret (`<namespace>/yurt-manager-webhook-certs`) holds a CA and a serving
//!    certificate for the Service's DNS names ([`certs`]: created if missing, reused if sound,
//!    renewed when expiring or when the wanted names changed; replicas starting together agree
//!    on one Secret);
//! 3. writes the CA into the `caBundle` of the manager's Mutating/ValidatingWebhookConfigurations
//!    and of the NodePool CRD's conversion stanza ([`configs`]).
//!
//! [`WebhookServer::serve`] then answers reviews (TLS via rustls, h2 and HTTP/1.1) and re-runs
//! steps 2 and 3 every [`WebhookConfig::resync`], picking up a renewed certificate without a
//! restart. Requests are counted and timed per webhook path in the manager's metrics
//! (`controller_runtime_webhook_*`). The webhooks' decisions are pure functions in
//! [`handlers`]; the review wire format is in `yurt_core::admission` and [`review`].
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), yurt_pool::webhook::WebhookError> {
//! use yurt_pool::webhook::{WebhookConfig, WebhookServer};
//!
//! let server = WebhookServer::bind(client, WebhookConfig::default(), Default::default()).await?;
//! println!("webhooks on {}", server.local_addr());
//! server.serve().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

pub mod certs;
pub mod configs;
pub mod handlers;
pub mod review;
mod server;

pub use certs::SecretOutcome;
pub use server::PATHS;
pub use yurt_core::crd::CONVERSION_PATH;

/// Default name of the Secret holding the webhook certificates.
pub const SECRET_NAME: &str = "yurt-manager-webhook-certs";

/// Why the webhook server could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The certificates could not be read, made or stored.
    #[error("webhook certificates: {0}")]
    Certs(#[from] certs::CertError),
    /// The certificate could not be loaded into TLS.
    #[error("webhook TLS: {0}")]
    Tls(String),
    /// The webhook configurations or CRDs could not be updated.
    #[error("webhook configurations: {0}")]
    Configs(kube::Error),
}

/// Settings of the webhook server, with upstream's names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Address to listen on (default `0.0.0.0:10273`).
    pub bind: SocketAddr,
    /// Namespace of the Secret and the Service (the manager's `--working-namespace`).
    pub namespace: String,
    /// Name of the webhook Service (`yurt-manager-webhook-service`).
    pub service_name: String,
    /// Name of the certificate Secret (`yurt-manager-webhook-certs`).
    pub secret_name: String,
    /// Host (name or IP) kube-apiserver should dial instead of the Service (upstream's
    /// `WEBHOOK_HOST`): webhooks then point at `https://<host>:<port><path>` and the
    /// certificate covers `host` too.
    pub host: Option<String>,
    /// How often the Secret and configurations are re-checked (upstream: one minute).
    pub resync: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], yurt_core::wellknown::manager::WEBHOOK_PORT)),
            namespace: yurt_core::wellknown::manager::WORKING_NAMESPACE.to_owned(),
            service_name: yurt_core::crd::WEBHOOK_SERVICE_NAME.to_owned(),
            secret_name: SECRET_NAME.to_owned(),
            host: None,
            resync: Duration::from_secs(60),
        }
    }
}

impl WebhookConfig {
    /// The names the serving certificate covers.
    pub fn dns_names(&self) -> Vec<String> {
        certs::dns_names(&self.service_name, &self.namespace, self.host.as_deref())
    }
}

/// A bound, configured webhook server; [`WebhookServer::serve`] runs it.
pub struct WebhookServer {
    local_addr: SocketAddr,
    ca_bundle: String,
    secret: SecretOutcome,
    written: Vec<String>,
    serve: futures::future::BoxFuture<'static, ()>,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("local_addr", &self.local_addr)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl WebhookServer {
    /// Binds `config.bind`, ensures the certificate Secret and writes the `caBundle`s (see the
    /// module docs). Request metrics go to `metrics`.
    pub async fn bind(
        client: Client,
        config: WebhookConfig,
        metrics: Metrics,
    ) -> Result<WebhookServer, WebhookError> {
        let listener = server::bind_listener(config.bind).await?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| WebhookError::Bind(config.bind, e))?;
        let (bundle, secret) = certs::ensure_secret(
            &client,
            &config.namespace,
            &config.secret_name,
            &config.dns_names(),
        )
        .await?;
        let target = config.target(local_addr.port(), &bundle);
        let written = configs::ensure(&client, &target)
            .await
            .map_err(WebhookError::Configs)?
            .objects;
        let resolver = Arc::new(server::Resolver::new(&bundle)?);
        let acceptor = TlsAcceptor::from(server::tls_config(Arc::clone(&resolver))?);
        let state = Arc::new(server::State {
            client: client.clone(),
            namespace: config.namespace.clone(),
            metrics,
        });
        let ca_bundle = bundle.ca_cert.clone();
        let port = local_addr.port();
        let serve = async move {
            tokio::select! {
                () = server::serve(listener, acceptor, state) => {}
                () = server::resync(client, config, port, resolver, bundle) => {}
            }
        };
        Ok(WebhookServer {
            local_addr,
            ca_bundle,
            secret,
            written,
            serve: Box::pin(serve),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The CA certificate (PEM) clients must trust; the `caBundle` written to the configurations.
    pub fn ca_bundle(&self) -> &str {
        &self.ca_bundle
    }

    /// Whether the certificate Secret was reused, created or replaced at start-up.
    pub fn secret_outcome(&self) -> SecretOutcome {
        self.secret
    }

    /// The configurations and CRDs written at start-up (`Kind/name`).
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// Serves until the returned future is dropped (connections in progress are dropped with
    /// it).
    pub async fn serve(self) {
        self.serve.await
    }
}
