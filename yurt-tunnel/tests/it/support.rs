//! Test harness: PKI, a stub kubelet (HTTPS: streaming logs, exec/port-forward echo over an HTTP
//! upgrade), a plain echo target, and helpers to run a cloud server and an edge agent whose
//! background tasks end when their owners drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;
use yurt_testkit::chaos::ChaosLink;
use yurt_testkit::pki::TestCa;
use yurt_tunnel::{
    Agent, AgentConfig, BackoffConfig, Listener, ServerConfig, SessionConfig, TlsAcceptor,
    TlsTransport, TunnelServer, tls,
};

pub(crate) const NODE: &str = "edge-1";
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Process-wide measurements (open fds, RSS) need the process to themselves: every test holds
/// this gate shared, the leak test holds it exclusively.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by ordinary tests.
pub(crate) async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    GATE.read().await
}

/// Held by the test that measures the whole process.
pub(crate) async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// Aborts its task on drop.
pub(crate) struct Bg(pub JoinHandle<()>);

impl Drop for Bg {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Bg {
    pub(crate) fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(f: F) -> Self {
        Bg(tokio::spawn(f))
    }

    /// Aborts and waits until the task (and everything it owned) is gone.
    pub(crate) async fn stop(mut self) {
        let h = std::mem::replace(&mut self.0, tokio::spawn(async {}));
        h.abort();
        let _ = tokio::time::timeout(WAIT, h).await;
    }
}

pub(crate) struct Pki {
    pub(crate) ca: TestCa,
    pub(crate) ca_der: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let ca = TestCa::new().unwrap();
        let ca_der = vec![ca.ca_der()];
        Self { ca, ca_der }
    }

    /// The agent port's TLS: server cert for 127.0.0.1, client certs required.
    pub(crate) fn agent_port_tls(&self) -> Arc<rustls::ServerConfig> {
        let cert = self
            .ca
            .issue_server_cert(&["127.0.0.1", "localhost"])
            .unwrap();
        tls::server_config(
            vec![cert.cert_der().unwrap()],
            cert.key_der().unwrap(),
            Some(&self.ca_der),
        )
        .unwrap()
    }

    /// A client TLS config presenting `cn`.
    pub(crate) fn client(&self, cn: &str) -> Arc<rustls::ClientConfig> {
        let cert = self.ca.issue_client_cert(cn, &["system:nodes"]).unwrap();
        tls::client_config(
            &self.ca_der,
            Some((vec![cert.cert_der().unwrap()], cert.key_der().unwrap())),
        )
        .unwrap()
    }

    /// Plain server TLS for front doors / kubelet (no client auth).
    pub(crate) fn serving(&self, sans: &[&str], client_auth: bool) -> Arc<rustls::ServerConfig> {
        let cert = self.ca.issue_server_cert(sans).unwrap();
        let ca = client_auth.then_some(&self.ca_der[..]);
        tls::server_config(vec![cert.cert_der().unwrap()], cert.key_der().unwrap(), ca).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Stub kubelet.

/// Deterministic log content: byte `i` of the stream.
pub(crate) fn log_byte(i: u64) -> u8 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i >> 7);
    b"abcdefghijklmnopqrstuvwxyz0123456789 \n"[(x % 38) as usize]
}

/// FNV-1a 64 over a running stream.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(pub u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

pub(crate) fn expected_log_hash(len: u64) -> u64 {
    let mut h = Fnv::new();
    let mut chunk = Vec::with_capacity(65536);
    let mut i = 0;
    while i < len {
        chunk.clear();
        let end = (i + 65536).min(len);
        chunk.extend((i..end).map(log_byte));
        h.update(&chunk);
        i = end;
    }
    h.0
}

type StubBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn log_body(len: u64, delay_every: Option<Duration>) -> StubBody {
    let stream = futures::stream::unfold(0u64, move |i| async move {
        if i >= len {
            return None;
        }
        if let Some(d) = delay_every {
            tokio::time::sleep(d).await;
        }
        let end = (i + 65536).min(len);
        let chunk: Vec<u8> = (i..end).map(log_byte).collect();
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(chunk))),
            end,
        ))
    });
    StreamBody::new(stream).boxed()
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

async fn kubelet_handle(
    mut req: Request<Incoming>,
) -> Result<Response<StubBody>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/containerLogs/") {
        let len = query_u64(&req, "limitBytes").unwrap_or(1024);
        let slow = query_u64(&req, "slowMs").map(Duration::from_millis);
        return Ok(Response::new(log_body(len, slow)));
    }
    if path.starts_with("/exec/")
        || path.starts_with("/portForward/")
        || path.starts_with("/attach/")
    {
        let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() else {
            let mut r = Response::new(
                http_body_util::Full::new(Bytes::from_static(b"upgrade required")).boxed(),
            );
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = vec![0u8; 16384];
                loop {
                    match tokio::time::timeout(WAIT, io.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(n)) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = io.shutdown().await;
            }
        });
        let mut r = Response::new(Empty::new().boxed());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        r.headers_mut().insert(http::header::UPGRADE, proto);
        return Ok(r);
    }
    if path == "/metrics" {
        let body = format!(
            "kubelet_up 1\nhost {:?}\n",
            req.headers().get(http::header::HOST)
        );
        return Ok(Response::new(
            http_body_util::Full::new(Bytes::from(body)).boxed(),
        ));
    }
    let mut r = Response::new(http_body_util::Full::new(Bytes::from_static(b"not found")).boxed());
    *r.status_mut() = StatusCode::NOT_FOUND;
    Ok(r)
}

/// A stub kubelet on 127.0.0.1 (HTTPS when `tls` is given). Returns its address.
pub(crate) async fn stub_kubelet(tls: Option<Arc<rustls::ServerConfig>>) -> (SocketAddr, Bg) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bg = Bg::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            let tls = tls.clone();
            conns.spawn(async move {
                let io: Box<dyn yurt_tunnel::transport::Io> = match tls {
                    None => Box::new(s),
                    Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(s).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service_fn(kubelet_handle))
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, bg)
}

/// A plain TCP echo server (the port-forward data plane).
pub(crate) async fn echo_server() -> (SocketAddr, Bg) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bg = Bg::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            conns.spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::time::timeout(WAIT, tokio::io::copy(&mut r, &mut w)).await;
            });
        }
    });
    (addr, bg)
}

// ---------------------------------------------------------------------------------------------
// Cloud and edge.

pub(crate) fn fast_session() -> SessionConfig {
    SessionConfig {
        keepalive_interval: Duration::from_millis(500),
        keepalive_timeout: Duration::from_millis(1000),
        ..SessionConfig::default()
    }
}

pub(crate) fn server_config() -> ServerConfig {
    ServerConfig {
        dial_timeout: Duration::from_secs(3),
        session: fast_session(),
        ..ServerConfig::default()
    }
}

pub(crate) struct Cloud {
    pub(crate) server: TunnelServer,
    pub(crate) agent_addr: SocketAddr,
    pub(crate) uds: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) tasks: Vec<Bg>,
}

impl Cloud {
    pub(crate) async fn start(pki: &Pki, config: ServerConfig) -> Cloud {
        Self::start_on(pki, config, "127.0.0.1:0".parse().unwrap()).await
    }

    pub(crate) async fn start_on(pki: &Pki, config: ServerConfig, addr: SocketAddr) -> Cloud {
        let server = TunnelServer::new(config);
        let listener = TcpListener::bind(addr).await.unwrap();
        let agent_addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::new(listener, pki.agent_port_tls());
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("tunnel.sock");
        let uds_listener = tokio::net::UnixListener::bind(&uds).unwrap();
        let s1 = server.clone();
        let s2 = server.clone();
        let tasks = vec![
            Bg::spawn(async move {
                let _ = s1.serve_agents(acceptor).await;
            }),
            Bg::spawn(async move {
                let _ = s2.serve_connect(Listener::Unix(uds_listener)).await;
            }),
        ];
        Cloud {
            server,
            agent_addr,
            uds,
            _dir: dir,
            tasks,
        }
    }

    /// Waits until `node` has a session.
    pub(crate) async fn wait_node(&self, node: &str) {
        let server = self.server.clone();
        let node = node.to_owned();
        tokio::time::timeout(WAIT, async move {
            while !server.nodes().contains(&node) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("agent did not register in time");
    }

    pub(crate) async fn stop(self) {
        for t in self.tasks {
            t.stop().await;
        }
    }
}

pub(crate) fn agent_config(servers: Vec<String>, ports: &[u16]) -> AgentConfig {
    let mut c = AgentConfig::new(NODE, vec!["127.0.0.1".parse().unwrap()], servers);
    c.node_ports = ports.to_vec();
    c.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: 0.0,
    };
    c.session = fast_session();
    c.dial_timeout = Duration::from_secs(2);
    c
}

pub(crate) fn start_agent(pki: &Pki, cn: &str, config: AgentConfig) -> (Agent, Bg) {
    run_agent(config, TlsTransport::new(pki.client(cn)))
}

/// Like [`start_agent`], but verifying every server against `tls_name` instead of the dialed
/// host (for agents dialing through a [`ChaosLink`]).
pub(crate) fn start_agent_with_tls_name(
    pki: &Pki,
    cn: &str,
    config: AgentConfig,
    tls_name: &str,
) -> (Agent, Bg) {
    let transport = TlsTransport::new(pki.client(cn))
        .with_server_name(tls_name)
        .unwrap();
    run_agent(config, transport)
}

fn run_agent(config: AgentConfig, transport: TlsTransport) -> (Agent, Bg) {
    let agent = Agent::new(config, Arc::new(transport)).unwrap();
    let a = agent.clone();
    (agent, Bg::spawn(async move { a.run().await }))
}

// ---------------------------------------------------------------------------------------------
// The common rig: gate, PKI, targets, one cloud and one registered agent.

/// The process gate a rig holds (see [`shared`] and [`exclusive`]).
enum Gate {
    Shared {
        _guard: tokio::sync::RwLockReadGuard<'static, ()>,
    },
    Exclusive {
        _guard: tokio::sync::RwLockWriteGuard<'static, ()>,
    },
}

/// What the agent may reach on the edge.
enum Target {
    Echo,
    /// The stub kubelet over HTTPS.
    Kubelet,
    /// The stub kubelet over HTTPS, requiring a client certificate from the test CA (as a
    /// kubelet with `--client-ca-file` does).
    KubeletMtls,
    /// The stub kubelet over plain HTTP.
    PlainKubelet,
}

/// A cloud server and an agent for [`NODE`] (certificate `system:node:edge-1`) that has
/// registered with it, allowed to reach exactly the rig's targets.
///
/// Fields drop in declaration order, which is the reverse of setup (as locals would), so the
/// gate is released last.
pub(crate) struct Rig {
    _agent_task: Bg,
    pub(crate) agent: Agent,
    /// Between agent and cloud when built with [`RigBuilder::through_link`].
    pub(crate) link: Option<ChaosLink>,
    pub(crate) cloud: Cloud,
    /// Target addresses, in the order they were added to the builder.
    pub(crate) targets: Vec<SocketAddr>,
    _target_tasks: Vec<Bg>,
    pub(crate) pki: Pki,
    _gate: Gate,
}

impl Rig {
    pub(crate) fn builder() -> RigBuilder {
        RigBuilder {
            exclusive: false,
            targets: Vec::new(),
            server: server_config(),
            through_link: false,
            agent: Box::new(|_| {}),
            tls_name: None,
        }
    }

    /// Shared gate, an echo server as the only target, default configs.
    pub(crate) async fn with_echo() -> Rig {
        Self::builder().echo().start().await
    }

    /// Shared gate, the HTTPS stub kubelet as the only target, default configs.
    pub(crate) async fn with_kubelet() -> Rig {
        Self::builder().kubelet().start().await
    }

    /// The first target.
    pub(crate) fn target(&self) -> SocketAddr {
        self.targets[0]
    }

    /// `edge-1:<port of the first target>`.
    pub(crate) fn authority(&self) -> String {
        format!("{NODE}:{}", self.target().port())
    }

    /// The chaos link (built with [`RigBuilder::through_link`]).
    pub(crate) fn link(&self) -> &ChaosLink {
        self.link
            .as_ref()
            .expect("rig built without through_link()")
    }
}

pub(crate) struct RigBuilder {
    exclusive: bool,
    targets: Vec<Target>,
    server: ServerConfig,
    through_link: bool,
    agent: Box<dyn FnOnce(&mut AgentConfig) + Send>,
    tls_name: Option<&'static str>,
}

impl RigBuilder {
    /// Hold the gate exclusively (tests measuring the whole process).
    pub(crate) fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    pub(crate) fn echo(mut self) -> Self {
        self.targets.push(Target::Echo);
        self
    }

    pub(crate) fn kubelet(mut self) -> Self {
        self.targets.push(Target::Kubelet);
        self
    }

    pub(crate) fn kubelet_mtls(mut self) -> Self {
        self.targets.push(Target::KubeletMtls);
        self
    }

    pub(crate) fn plain_kubelet(mut self) -> Self {
        self.targets.push(Target::PlainKubelet);
        self
    }

    /// Adjusts the cloud's config (starting from [`server_config`]).
    pub(crate) fn server(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.server);
        self
    }

    /// Puts a [`ChaosLink`] between agent and cloud.
    pub(crate) fn through_link(mut self) -> Self {
        self.through_link = true;
        self
    }

    /// Adjusts the agent's config (starting from [`agent_config`]).
    pub(crate) fn agent(mut self, f: impl FnOnce(&mut AgentConfig) + Send + 'static) -> Self {
        self.agent = Box::new(f);
        self
    }

    /// The agent verifies servers against this name (see [`start_agent_with_tls_name`]).
    pub(crate) fn tls_name(mut self, name: &'static str) -> Self {
        self.tls_name = Some(name);
        self
    }

    /// Takes the gate, starts targets, cloud, link and agent, and waits for the agent to
    /// register.
    pub(crate) async fn start(self) -> Rig {
        let gate = if self.exclusive {
            Gate::Exclusive {
                _guard: exclusive().await,
            }
        } else {
            Gate::Shared {
                _guard: shared().await,
            }
        };
        let pki = Pki::new();
        let mut targets = Vec::new();
        let mut target_tasks = Vec::new();
        for target in &self.targets {
            let (addr, task) = match target {
                Target::Echo => echo_server().await,
                Target::Kubelet => {
                    stub_kubelet(Some(pki.serving(&["127.0.0.1", "localhost", NODE], false))).await
                }
                Target::KubeletMtls => {
                    stub_kubelet(Some(pki.serving(&["127.0.0.1", "localhost", NODE], true))).await
                }
                Target::PlainKubelet => stub_kubelet(None).await,
            };
            targets.push(addr);
            target_tasks.push(task);
        }
        let cloud = Cloud::start(&pki, self.server).await;
        let link = match self.through_link {
            true => Some(ChaosLink::start(cloud.agent_addr).await.unwrap()),
            false => None,
        };
        let server = link.as_ref().map_or(cloud.agent_addr, |l| l.local_addr());
        let ports: Vec<u16> = targets.iter().map(|t| t.port()).collect();
        let mut config = agent_config(vec![server.to_string()], &ports);
        (self.agent)(&mut config);
        let cn = "system:node:edge-1";
        let (agent, agent_task) = match self.tls_name {
            Some(name) => start_agent_with_tls_name(&pki, cn, config, name),
            None => start_agent(&pki, cn, config),
        };
        cloud.wait_node(NODE).await;
        Rig {
            _agent_task: agent_task,
            agent,
            link,
            cloud,
            targets,
            _target_tasks: target_tasks,
            pki,
            _gate: gate,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients (what kube-apiserver does).

/// CONNECT over the Unix socket; `Ok(stream)` on 200, `Err((status, body))` otherwise.
pub(crate) async fn uds_connect(
    path: &std::path::Path,
    authority: &str,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, (StatusCode, String)> {
    let io = UnixStream::connect(path).await.unwrap();
    http_connect(io, authority).await
}

pub(crate) async fn http_connect<I: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    io: I,
    authority: &str,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, (StatusCode, String)> {
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = Request::connect(authority)
        .header(http::header::HOST, authority)
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("CONNECT hung")
        .unwrap();
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        return Err((status, String::from_utf8_lossy(&body).into_owned()));
    }
    Ok(TokioIo::new(hyper::upgrade::on(resp).await.unwrap()))
}

/// TLS to the stub kubelet over a tunneled stream, then an HTTP/1 client.
pub(crate) async fn kubelet_client<I: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    pki: &Pki,
    io: I,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    kubelet_client_as(pki, io, None).await
}

/// Like [`kubelet_client`], presenting a client certificate for `cn` when given.
pub(crate) async fn kubelet_client_as<I: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    pki: &Pki,
    io: I,
    cn: Option<&str>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let cfg = match cn {
        Some(cn) => pki.client(cn),
        None => tls::client_config(&pki.ca_der, None).unwrap(),
    };
    let name = rustls::pki_types::ServerName::try_from(NODE).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, io)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    send
}

/// Open fds of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size in KiB.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn tcp(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}
