//! The server: [`TestApiServer`], its builder, the listener and connection handling, and the
//! per-request pipeline (traffic record, fault gate, body limit, authentication, handler).
//!
//! The listener serves HTTP/1.1 and h2 on one port (h2 by ALPN over TLS, or prior knowledge in
//! clear text), optionally over TLS with client certificates verified against the test CA.
//! Every task the server starts is owned by it: the accept loop owns its connections, each
//! connection owns the h2 stream tasks it spawns, and dropping the [`TestApiServer`] (or
//! [`TestApiServer::go_down`]) aborts them all.

mod auth;
mod conn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use auth::Identity;
pub(crate) use conn::IsWatch;

use crate::faults::Faults;
use crate::kubeconfig::KubeconfigBuilder;
use crate::pki::{CertifiedKey, ClientAuth, PkiError, TestCa};
use crate::registry::{Registry, ResourceDef};
use crate::storage::Store;
use crate::traffic::{Traffic, TrafficLog};

/// Errors from starting or controlling a [`TestApiServer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or re-binding the listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// Generating certificates or the TLS configuration failed.
    #[error("pki: {0}")]
    Pki(#[from] PkiError),
    /// Building a kube client failed.
    #[error("kube client: {0}")]
    Kube(String),
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub tls: bool,
    pub require_auth: bool,
    pub bookmark_interval: Duration,
    pub min_request_timeout: Duration,
    pub namespace_lifecycle: bool,
    /// How often history is compacted (zero: never).
    pub compaction_interval: Duration,
}

/// State shared by the listener, the handlers and the controllers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Store,
    pub registry: RwLock<Registry>,
    pub faults: Faults,
    pub traffic: Traffic,
    /// Bumped to end every open watch stream.
    pub watch_cut: watch::Sender<u64>,
    /// Bumped to drop every open connection.
    pub conn_cut: watch::Sender<u64>,
    pub ca: TestCa,
    pub settings: Settings,
    /// Bearer tokens: static ones and issued service-account tokens.
    pub tokens: RwLock<HashMap<String, Identity>>,
    pub addr: SocketAddr,
    /// Next ClusterIP host part (10.96.0.0/12).
    pub next_cluster_ip: AtomicU32,
    /// Canned `pods/log` texts by (namespace, pod name); see [`TestApiServer::set_pod_log`].
    pub pod_logs: std::sync::Mutex<HashMap<(String, String), String>>,
    /// Where webhook service references go, by (namespace, name, port); see
    /// [`TestApiServer::route_service`].
    pub service_routes: std::sync::Mutex<HashMap<(String, String, u16), SocketAddr>>,
}

impl Shared {
    /// The registry, for reading.
    pub(crate) fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The registry, for changing.
    pub(crate) fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The address a webhook `service` reference is routed to, if one was set.
    pub(crate) fn service_route(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Option<SocketAddr> {
        self.service_routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned(), port))
            .copied()
    }

    /// Ends every open watch.
    pub(crate) fn cut_watches(&self) {
        self.store.write(|t| t.drop_watchers());
        self.watch_cut.send_modify(|n| *n += 1);
    }
}

/// Configures and starts a [`TestApiServer`].
#[derive(Debug, Clone)]
pub struct TestApiServerBuilder {
    port: u16,
    tls: bool,
    require_auth: bool,
    tokens: Vec<(String, Identity)>,
    history_limit: usize,
    watch_buffer: usize,
    bookmark_interval: Duration,
    min_request_timeout: Duration,
    namespace_lifecycle: bool,
    compaction_interval: Duration,
}

impl Default for TestApiServerBuilder {
    fn default() -> Self {
        TestApiServerBuilder {
            port: 0,
            tls: false,
            require_auth: false,
            tokens: Vec::new(),
            history_limit: 10_000,
            watch_buffer: 1_000,
            bookmark_interval: Duration::from_secs(1),
            min_request_timeout: Duration::from_secs(1800),
            namespace_lifecycle: true,
            compaction_interval: Duration::from_secs(300),
        }
    }
}

impl TestApiServerBuilder {
    /// Listens on this port of 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves HTTPS with a certificate from the server's generated CA, accepting (optional)
    /// client certificates signed by it.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Requires authentication: requests with no credentials get 401 on every path (as
    /// kube-apiserver with `--anonymous-auth=false`).
    pub fn require_auth(mut self) -> Self {
        self.require_auth = true;
        self
    }

    /// Accepts `token` as a bearer token for `user` in `groups`.
    pub fn token(mut self, token: &str, user: &str, groups: &[&str]) -> Self {
        self.tokens
            .push((token.to_owned(), Identity::new(user, groups)));
        self
    }

    /// How many changes each resource keeps for watches to resume from (default 10,000); a
    /// watch from an older resourceVersion gets 410 Expired.
    pub fn history_limit(mut self, n: usize) -> Self {
        self.history_limit = n;
        self
    }

    /// How many events a watch may have queued before it is considered unresponsive and
    /// terminated (default 1,000).
    pub fn watch_buffer(mut self, n: usize) -> Self {
        self.watch_buffer = n;
        self
    }

    /// How often watches that allow bookmarks get a BOOKMARK (default 1 s; kube-apiserver
    /// sends them about once a minute, and clients must not rely on either).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }

    /// The shortest default watch timeout: a watch without `timeoutSeconds` ends after a random
    /// time between this and twice this (kube-apiserver's `--min-request-timeout`, 1800 s).
    pub fn min_request_timeout(mut self, d: Duration) -> Self {
        self.min_request_timeout = d;
        self
    }

    /// How often history is compacted, as kube-apiserver compacts etcd
    /// (`--etcd-compaction-interval`, default 5 minutes): each tick forgets every revision
    /// older than the one current at the previous tick, so a watch or an exact list from a
    /// resourceVersion more than one to two intervals old gets 410 Expired. Zero turns periodic
    /// compaction off; [`TestApiServer::compact`] compacts on demand either way.
    pub fn compaction_interval(mut self, d: Duration) -> Self {
        self.compaction_interval = d;
        self
    }

    /// Whether creating an object in a missing namespace is refused (404) and in a terminating
    /// one forbidden (403), as kube-apiserver's NamespaceLifecycle admission does (default on).
    pub fn namespace_lifecycle(mut self, on: bool) -> Self {
        self.namespace_lifecycle = on;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> Result<TestApiServer, Error> {
        let ca = TestCa::new()?;
        let listener = bind(self.port).await?;
        let addr = listener.local_addr()?;
        let tls = if self.tls {
            let cert = ca.issue_server_cert(&[
                "127.0.0.1",
                "localhost",
                "::1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ])?;
            Some(ca.server_config(&cert, ClientAuth::Optional)?)
        } else {
            None
        };
        let admin_token = format!("testkit-admin-{:016x}", crate::meta::random_u64());
        let mut tokens: HashMap<String, Identity> = self.tokens.into_iter().collect();
        tokens.insert(
            admin_token.clone(),
            Identity::new("admin", &["system:masters"]),
        );
        let admin_cert = ca.issue_client_cert("admin", &["system:masters"])?;
        let shared = Arc::new(Shared {
            store: Store::new(self.history_limit, self.watch_buffer),
            registry: RwLock::new(Registry::builtin()),
            faults: Faults::default(),
            traffic: Traffic::default(),
            watch_cut: watch::channel(0).0,
            conn_cut: watch::channel(0).0,
            ca,
            settings: Settings {
                tls: self.tls,
                require_auth: self.require_auth,
                bookmark_interval: self.bookmark_interval,
                min_request_timeout: self.min_request_timeout,
                namespace_lifecycle: self.namespace_lifecycle,
                compaction_interval: self.compaction_interval,
            },
            tokens: RwLock::new(tokens),
            addr,
            next_cluster_ip: AtomicU32::new(2),
            pod_logs: std::sync::Mutex::new(HashMap::new()),
            service_routes: std::sync::Mutex::new(HashMap::new()),
        });
        crate::handlers::bootstrap(&shared);
        let controllers = crate::controllers::spawn(&shared);
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let accept = tokio::spawn(conn::accept_loop(
            listener,
            shared.clone(),
            acceptor.clone(),
        ));
        Ok(TestApiServer {
            shared,
            acceptor,
            accept: Mutex::new(Some(accept)),
            controllers,
            admin_cert,
            admin_token,
        })
    }
}

/// Binds 127.0.0.1:`port` with `SO_REUSEADDR`, so the same port can be bound again right after
/// the listener closes.
async fn bind(port: u16) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

/// An in-process kube-apiserver for tests. See the [crate documentation](crate) for what it
/// does and how it differs from a real one.
///
/// Dropping it stops it: the listener closes and every connection and task ends.
pub struct TestApiServer {
    shared: Arc<Shared>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    accept: Mutex<Option<JoinHandle<()>>>,
    controllers: Vec<JoinHandle<()>>,
    admin_cert: CertifiedKey,
    admin_token: String,
}

impl std::fmt::Debug for TestApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApiServer")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(h) = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
        for h in &self.controllers {
            h.abort();
        }
    }
}

impl TestApiServer {
    /// Starts a server with the defaults: plain HTTP on a free port of 127.0.0.1, no
    /// authentication.
    pub async fn start() -> Result<TestApiServer, Error> {
        TestApiServer::builder().start().await
    }

    /// A builder for other settings (TLS, authentication, history size, ...).
    pub fn builder() -> TestApiServerBuilder {
        TestApiServerBuilder::default()
    }

    /// The base URL, e.g. `http://127.0.0.1:40123` or `https://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        let scheme = if self.shared.settings.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.shared.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The CA that issued the serving certificate, client certificates and signs CSRs.
    pub fn ca(&self) -> &TestCa {
        &self.shared.ca
    }

    /// A kubeconfig for an administrator (`admin` in `system:masters`): the CA and a client
    /// certificate over TLS, a bearer token over plain HTTP.
    pub fn kubeconfig(&self) -> String {
        let b = KubeconfigBuilder::new(&self.url());
        if self.shared.settings.tls {
            b.ca_pem(self.shared.ca.ca_pem())
                .client_cert(&self.admin_cert.cert_pem, &self.admin_cert.key_pem)
                .build()
        } else {
            b.token(&self.admin_token).build()
        }
    }

    /// A kubeconfig authenticating as `user` in `groups`: a client certificate over TLS, a newly
    /// registered bearer token over plain HTTP.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> Result<String, Error> {
        let b = KubeconfigBuilder::new(&self.url());
        if self.shared.settings.tls {
            let cert = self.shared.ca.issue_client_cert(user, groups)?;
            Ok(b.ca_pem(self.shared.ca.ca_pem())
                .client_cert(&cert.cert_pem, &cert.key_pem)
                .build())
        } else {
            let token = format!("testkit-{:016x}", crate::meta::random_u64());
            self.add_token(&token, user, groups);
            Ok(b.token(&token).build())
        }
    }

    /// Accepts `token` as a bearer token for `user` in `groups` from now on.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), Identity::new(user, groups));
    }

    /// A kube client configuration for the administrator.
    pub fn client_config(&self) -> Result<kube::Config, Error> {
        let mut config = kube::Config::new(
            self.url()
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::Kube(e.to_string()))?,
        );
        if self.shared.settings.tls {
            config.root_cert = Some(vec![self.shared.ca.ca_der().to_vec()]);
            config.auth_info.client_certificate_data = Some(base64_std(&self.admin_cert.cert_pem));
            config.auth_info.client_key_data = Some(base64_std(&self.admin_cert.key_pem).into());
        } else {
            config.auth_info.token = Some(self.admin_token.clone().into());
        }
        Ok(config)
    }

    /// A kube client for the administrator. Call from within a Tokio runtime.
    pub fn try_client(&self) -> Result<kube::Client, Error> {
        kube::Client::try_from(self.client_config()?).map_err(|e| Error::Kube(e.to_string()))
    }

    /// A kube client for the administrator. Call from within a Tokio runtime.
    ///
    /// # Panics
    /// If the client cannot be built (it always can for this server's own configuration).
    pub fn client(&self) -> kube::Client {
        self.try_client()
            .expect("a kube client for the test apiserver")
    }

    /// Serves another resource (e.g. a custom resource without creating its definition).
    pub fn register(&self, def: ResourceDef) {
        self.shared.registry_mut().register(def);
    }

    /// The current resourceVersion (the last revision written).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// Stops serving: the listener closes (connects are refused) and every open connection is
    /// dropped. Data is kept; [`come_up`](Self::come_up) serves it again on the same port.
    pub async fn go_down(&self) {
        let handle = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.abort();
            // Wait (bounded) until the task, and with it the listener and connections, is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        self.shared.cut_watches();
        self.shared.conn_cut.send_modify(|n| *n += 1);
    }

    /// Serves again on the same port after [`go_down`](Self::go_down). Does nothing if already up.
    pub async fn come_up(&self) -> Result<(), Error> {
        if self
            .accept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = bind(self.shared.addr.port()).await?;
        let task = tokio::spawn(conn::accept_loop(
            listener,
            self.shared.clone(),
            self.acceptor.clone(),
        ));
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    /// Restarts: every connection is dropped and the port re-bound; data and history are kept
    /// (as after a kube-apiserver restart against the same etcd).
    pub async fn restart(&self) -> Result<(), Error> {
        self.go_down().await;
        self.come_up().await
    }

    /// Accepts connections and requests but never answers, until [`heal`](Self::heal).
    pub fn blackhole(&self) {
        self.shared.faults.set_blackhole(true);
    }

    /// Delays every request by `d` before it is handled (`Duration::ZERO` to stop).
    pub fn delay(&self, d: Duration) {
        self.shared.faults.set_delay(d);
    }

    /// Answers the next `n` requests with HTTP `code` and a Status body of the matching reason.
    pub fn fail_next(&self, n: u32, code: u16) {
        self.shared.faults.fail_next(n, code);
    }

    /// Clears the blackhole, the delay and pending failures (held requests are then answered).
    pub fn heal(&self) {
        self.shared.faults.clear();
    }

    /// Ends every open watch stream cleanly (clients see the stream end and re-watch).
    pub fn cut_watches(&self) {
        self.shared.cut_watches();
    }

    /// Drops the change history: a watch or exact-revision list from any earlier
    /// resourceVersion gets 410 Expired, as after an etcd compaction.
    pub fn compact(&self) {
        self.shared.store.write(|t| t.compact());
    }

    /// Every request seen since the last [`reset_traffic`](Self::reset_traffic).
    pub fn traffic(&self) -> TrafficLog {
        TrafficLog {
            records: self.shared.traffic.snapshot(),
        }
    }

    /// Forgets the traffic seen so far.
    pub fn reset_traffic(&self) {
        self.shared.traffic.reset();
    }

    /// Number of watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.traffic.open_watches()
    }

    /// The stored object (in its storage version), read directly without HTTP.
    pub fn get_object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let (group, version) = split_api_version(api_version);
        let def = self.shared.registry().get(group, version, plural)?;
        let key = crate::storage::object_key(namespace, name);
        self.shared
            .store
            .read(|t| t.get(&def.behaviour.storage_key, &key))
            .map(|o| o.value.clone())
    }

    /// Sets the text `GET .../namespaces/{namespace}/pods/{name}/log` answers (`text/plain`)
    /// while the pod exists on an existing node, for every container; without one it answers
    /// three deterministic lines naming the pod, container and node. With `follow=true` the text is
    /// sent, then the stream stays open (as a running container's would) until the client goes
    /// away, [`cut_watches`](Self::cut_watches), or the server's minimum request timeout.
    pub fn set_pod_log(&self, namespace: &str, name: &str, text: &str) {
        self.shared
            .pod_logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_owned(), name.to_owned()), text.to_owned());
    }

    /// Routes webhook calls for the Service `namespace/name` on `port` (a `clientConfig.service`
    /// of an admission webhook or a CRD conversion webhook) to `addr`, typically a loopback
    /// address where the test runs the webhook server. The server cannot reach cluster
    /// Services; without a route a service reference goes to `127.0.0.1:<targetPort>` of the
    /// Service object's matching port (see the crate docs). TLS is still verified against the
    /// configuration's `caBundle` with the server name `<name>.<namespace>.svc`.
    pub fn route_service(&self, namespace: &str, name: &str, port: u16, addr: SocketAddr) {
        self.shared
            .service_routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_owned(), name.to_owned(), port), addr);
    }

    /// Creates an object directly, as a POST would (admin identity), and returns it or the
    /// error Status as JSON.
    pub async fn create_object(&self, object: Value) -> Result<Value, Value> {
        crate::handlers::create_direct(&self.shared, object).await
    }
}

/// `group/version` into its parts (`v1` is the core group).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

fn base64_std(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The `/version` document.
pub(crate) fn version_doc(shared: &Shared) -> Value {
    let v = shared.registry().version.clone();
    if v.is_null() {
        json!({"major": "1", "minor": "36", "gitVersion": "v1.36.0"})
    } else {
        v
    }
}
