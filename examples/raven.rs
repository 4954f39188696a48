//! `raven`: the yurt-tunnel reference daemon (OpenYurt Raven L7 proxy / yurt-tunnel equivalent).
//!
//! `raven server` runs in the cloud: it accepts edge agents (mutual TLS, 10262), serves
//! kube-apiserver's egress selector as an HTTP CONNECT proxy on a Unix socket (and optionally
//! over TLS), Raven's 10263 (HTTPS) and 10264 (HTTP) front doors, and `/metrics` + `/healthz`.
//! `raven agent` runs on every edge node: it dials every server it is given and serves CONNECT
//! streams to the node's kubelet (10250/10255) and any other allowlisted targets (layer 7). With
//! cluster credentials (in-cluster or `--kubeconfig`) it also runs the layer 3 network (VXLAN
//! `raven0` inside a Gateway's domain, userspace WireGuard `raven-wg0` between gateway nodes,
//! routes and skip-NAT rules) and follows the switches `enable-l3-tunnel` / `enable-l7-proxy` of
//! ConfigMap `kube-system/raven-cfg`, starting and stopping each part as they change.
//!
//! ```text
//! cargo run --example raven -- server --server-cert tls.crt --server-key tls.key --ca-file ca.crt \
//!     --proxy-client-cert proxy-client.crt --proxy-client-key proxy-client.key \
//!     --front-door-client-ca-file apiserver-kubelet-client-ca.crt
//! cargo run --example raven -- agent --node-name edge-1 --node-ip 10.0.0.7 \
//!     --tunnelserver-addr 203.0.113.10:10262 --cert node.crt --key node.key --ca-file ca.crt
//! cargo run --example raven -- agent --node-name edge-1 --kubeconfig ~/.kube/config   # L3 only
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use yurt::cache::server::shutdown_signal;
use yurt::tunnel::l3::driver as l3d;
use yurt::tunnel::{
    Agent, AgentConfig, DEFAULT_FRONT_DOOR_IDENTITIES, FrontDoorPolicy, HttpDoor, IdentityPolicy,
    Listener, NodeAddresses, NodeDirectory, ServerConfig, SessionConfig, TlsAcceptor, TlsTransport,
    TunnelError, TunnelServer, tls,
};

#[path = "support/flags.rs"]
mod flags;
use flags::duration;

/// Top-level help: what raven is, what it talks to, its ports.
const ABOUT: &str = "raven: cloud-to-edge reverse tunnel (OpenYurt Raven L7 proxy equivalent). \
Edge agents dial out through NAT to the cloud servers; the servers carry kube-apiserver's \
connections to kubelets (logs, exec, attach, port-forward, node proxy, metrics) back through them.";

const LONG_ABOUT: &str = "raven: cloud-to-edge reverse tunnel (OpenYurt Raven L7 proxy equivalent).

Edge nodes sit behind NAT, so kube-apiserver cannot reach their kubelets. `raven agent` runs on \
each edge node and dials out (mutual TLS) to every `raven server`; the servers carry \
kube-apiserver's connections to kubelets (kubectl logs/exec/attach/port-forward, node proxy, \
metrics scrapes) back through those sessions.

With cluster credentials the agent also runs Raven's layer 3 network, so pods in different \
network domains (each behind its own NAT) reach each other by pod IP: VXLAN `raven0` from a \
domain's nodes to its active gateway node, a userspace WireGuard device `raven-wg0` between \
gateway nodes (UDP 4500; public key published in the Gateway endpoint's config[\"publicKey\"], \
preshared key from VPN_CONNECTION_PSK, i.e. Secret raven-agent-secret), routes (protocol 0x52) \
and skip-NAT rules (nftables table `raven` or iptables chain RAVEN-SKIP-NAT). ConfigMap \
kube-system/raven-cfg switches each part: enable-l3-tunnel, enable-l7-proxy (\"true\" = on).

Talks to:
  server: kube-apiserver (its egress selector dials in; the server reads Node objects to verify \
agents), edge agents (dial in), kubelets (through the agents)
  agent:  the tunnel servers (dials out), the node's kubelet and allowlisted local targets; \
kube-apiserver (Gateways, Nodes, raven-cfg) and other gateway nodes (UDP 4500) for layer 3

Ports (server):
  10262  agents (mutual TLS; certificate CN system:node:<node>)
  10263  HTTPS front door (routes by Host: <node>:<port>; needs an apiserver client certificate)
  10264  HTTP front door (kubelet read-only port 10255)
  10265  /metrics and /healthz
  unix   /var/lib/raven/interceptor-proxier.sock: egress-selector HTTP CONNECT proxy
Ports (agent):
  10266  /metrics and /healthz (127.0.0.1)
  4500   WireGuard (UDP, gateway nodes, layer 3)
  4478   VXLAN raven0 (UDP, layer 3)";

/// Cloud-to-edge reverse tunnel (Raven L7 equivalent).
#[derive(Debug, Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cloud tunnel server (agents on 10262, front doors 10263/10264 and a Unix socket
    /// for kube-apiserver, metrics on 10265).
    Server(ServerArgs),
    /// Run the edge tunnel agent (dials every server; serves the node's kubelet through them).
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Where agents connect (Raven `tunnel-bind-addr` / proxy external port).
    #[arg(long, default_value = "0.0.0.0:10262", help_heading = "Listeners")]
    tunnel_bind_addr: SocketAddr,
    /// HTTPS front door routing `Host: <node>:<port>` (Raven `proxy-internal-secure-addr`).
    #[arg(long, default_value = "0.0.0.0:10263", help_heading = "Listeners")]
    proxy_internal_secure_addr: SocketAddr,
    /// HTTP front door (Raven `proxy-internal-insecure-addr`).
    #[arg(long, default_value = "0.0.0.0:10264", help_heading = "Listeners")]
    proxy_internal_insecure_addr: SocketAddr,
    /// Egress-selector CONNECT proxy on a Unix socket (the selector's `uds` transport). Anyone
    /// who can open it reaches every kubelet: keep its directory root-only.
    #[arg(
        long,
        default_value = "/var/lib/raven/interceptor-proxier.sock",
        help_heading = "Listeners"
    )]
    interceptor_server_uds_file: PathBuf,
    /// Also serve the CONNECT proxy over TLS here (the selector's `tcp` transport).
    #[arg(long, help_heading = "Listeners")]
    egress_selector_tls_addr: Option<SocketAddr>,
    /// `/metrics` and `/healthz` (Raven `metric-bind-addr`).
    #[arg(long, default_value = "0.0.0.0:10265", help_heading = "Listeners")]
    metric_bind_addr: SocketAddr,

    /// Server certificate (PEM) presented to agents and on the TLS front doors.
    #[arg(long, help_heading = "Certificates")]
    server_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long, help_heading = "Certificates")]
    server_key: PathBuf,
    /// CA that signs agent certificates.
    #[arg(long, help_heading = "Certificates")]
    ca_file: PathBuf,
    /// Client certificate the 10263 door presents to kubelets (Raven `tunnel-proxy-client`).
    #[arg(long, requires = "proxy_client_key", help_heading = "Certificates")]
    proxy_client_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "proxy_client_cert", help_heading = "Certificates")]
    proxy_client_key: Option<PathBuf>,
    /// CA that signs kubelet serving certificates (defaults to --ca-file).
    #[arg(long, help_heading = "Certificates")]
    kubelet_ca_file: Option<PathBuf>,

    /// CA whose client certificates the TLS front doors (10263, --egress-selector-tls-addr)
    /// verify: the CA of the apiserver's kubelet client certificate. Required unless
    /// --front-door-insecure.
    #[arg(
        long,
        required_unless_present = "front_door_insecure",
        help_heading = "Front doors"
    )]
    front_door_client_ca_file: Option<PathBuf>,
    /// Client certificate common names the TLS front doors serve (repeat or comma separate).
    /// Node certificates (`system:node:*`) are never served.
    #[arg(
        long = "front-door-allowed-identity",
        value_delimiter = ',',
        default_values = DEFAULT_FRONT_DOOR_IDENTITIES,
        help_heading = "Front doors"
    )]
    front_door_allowed_identities: Vec<String>,
    /// Serve the TLS front doors to any client, certificate or not. Whoever reaches them then
    /// reaches every kubelet with the proxy's kubelet client identity: only behind another
    /// authenticating proxy.
    #[arg(long, help_heading = "Front doors")]
    front_door_insecure: bool,

    /// Agent certificate CN pattern; `{node}` is the registering node's name.
    #[arg(long, default_value = "system:node:{node}", help_heading = "Agents")]
    agent_identity_pattern: String,
    /// kubeconfig to read Node objects with (default: in-cluster config or $KUBECONFIG). An
    /// agent's hello may then claim only the hostname and addresses its Node lists in
    /// `status.addresses`; without a readable Node, claims are only checked against other
    /// nodes' sessions.
    #[arg(long, help_heading = "Agents")]
    kubeconfig: Option<PathBuf>,
    /// Do not read Node objects (claims are then only checked for collisions).
    #[arg(long, help_heading = "Agents")]
    no_node_verification: bool,

    /// Deadline of one dial through a tunnel (504 after it).
    #[arg(long, default_value = "10s", value_parser = duration, help_heading = "Dials")]
    dial_timeout: Duration,
    /// Dials in flight per agent before new ones get 503.
    #[arg(long, default_value_t = 64, help_heading = "Dials")]
    max_pending_dials: usize,
    /// When the agent has not answered anything on its session for this long (counting a
    /// pending dial's wait), the dial also pings it, so a frozen agent costs the caller at most
    /// this plus --keepalive-timeout and a 503, instead of the whole --dial-timeout. Lower:
    /// frozen agents answered sooner, more pings on quiet sessions; 0s pings on every dial.
    #[arg(long, default_value = "500ms", value_parser = duration, help_heading = "Dials")]
    dial_ping_after: Duration,

    #[command(flatten)]
    keepalive: KeepaliveArgs,
}

/// HTTP/2 keepalive of the sessions (both roles).
#[derive(Debug, Args)]
struct KeepaliveArgs {
    /// PING the peer after this long without a frame from it. A frozen peer is found at most
    /// interval + timeout after its last frame (3 s by default). Lower: found sooner, more
    /// idle traffic (a 17-byte frame each way per interval per session).
    #[arg(long, default_value = "1s", value_parser = duration, help_heading = "Keepalive")]
    keepalive_interval: Duration,
    /// An unanswered PING this long ends the session. Lower: frozen peers found sooner, but
    /// sessions on congested or high-latency links (satellite, cellular) may be dropped.
    #[arg(long, default_value = "2s", value_parser = duration, help_heading = "Keepalive")]
    keepalive_timeout: Duration,
}

impl KeepaliveArgs {
    fn session(&self) -> SessionConfig {
        SessionConfig {
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            ..SessionConfig::default()
        }
    }
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// This node's name (the certificate CN must match the server's pattern).
    #[arg(long, env = "NODE_NAME", help_heading = "Node")]
    node_name: String,
    /// This node's addresses (repeat; the first is where node-name targets go). Must be in the
    /// Node's `status.addresses` when the server verifies claims. Layer 7 needs it.
    #[arg(
        long = "node-ip",
        env = "NODE_IP",
        value_delimiter = ',',
        help_heading = "Node"
    )]
    node_ips: Vec<IpAddr>,
    /// The node's Hostname address, if it differs from the node name.
    #[arg(long, help_heading = "Node")]
    hostname: Option<String>,
    /// Tunnel servers to connect to, `host:port` (repeat for HA; the agent holds a session
    /// to each).
    #[arg(
        long = "tunnelserver-addr",
        value_delimiter = ',',
        help_heading = "Servers"
    )]
    tunnelserver_addrs: Vec<String>,
    /// TLS name to verify the servers' certificate against (default: each address's host).
    #[arg(long, help_heading = "Servers")]
    server_name: Option<String>,
    /// Agent client certificate (PEM, CN `system:node:<node>`); layer 7 needs it.
    #[arg(long, help_heading = "Certificates")]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, help_heading = "Certificates")]
    key: Option<PathBuf>,
    /// CA that signs the server certificate.
    #[arg(long, help_heading = "Certificates")]
    ca_file: Option<PathBuf>,
    /// Ports allowed on the node's addresses.
    #[arg(long = "allowed-port", value_delimiter = ',', default_values_t = [10250u16, 10255], help_heading = "Targets")]
    allowed_ports: Vec<u16>,
    /// Extra exact targets allowed (`ip:port`, repeatable).
    #[arg(
        long = "allowed-target",
        value_delimiter = ',',
        help_heading = "Targets"
    )]
    allowed_targets: Vec<SocketAddr>,
    /// Deadline to dial a local target.
    #[arg(long, default_value = "10s", value_parser = duration, help_heading = "Targets")]
    dial_timeout: Duration,
    /// `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:10266", help_heading = "Listeners")]
    metric_bind_addr: SocketAddr,

    #[command(flatten)]
    keepalive: KeepaliveArgs,

    #[command(flatten)]
    l3: L3Args,
}

/// Layer 3 and the raven-cfg switches (need cluster credentials).
#[derive(Debug, Args)]
struct L3Args {
    /// Kubeconfig for the cluster (default: in-cluster credentials when running in a pod).
    /// Without credentials the agent runs layer 7 only, always on.
    #[arg(long, help_heading = "Cluster")]
    kubeconfig: Option<PathBuf>,
    /// Full re-sync of routes, VXLAN entries, WireGuard peers and skip-NAT rules (drift repair).
    #[arg(long, default_value = "10m", value_parser = duration, help_heading = "Layer 3")]
    sync_raven_rules_period: Duration,
    /// Build direct tunnels between NATed gateways whose NAT types allow hole punching.
    #[arg(long, help_heading = "Layer 3")]
    nat_traversal: bool,
    /// UDP port of the WireGuard device on gateway nodes.
    #[arg(long, default_value_t = 4500, help_heading = "Layer 3")]
    vpn_bind_port: u16,
    /// The node's WireGuard private key (created on first start, kept across restarts).
    #[arg(long, default_value = yurt::tunnel::l3::wireguard::DEFAULT_KEY_PATH, help_heading = "Layer 3")]
    wireguard_key_file: PathBuf,
}

/// Reads Node objects with a Kubernetes client.
struct KubeNodes(kube::Client);

impl std::fmt::Debug for KubeNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeNodes")
    }
}

// The trait is declared with `async_trait`; this is its expansion, written out.
impl NodeDirectory for KubeNodes {
    fn addresses<'a, 'b, 'f>(
        &'a self,
        node: &'b str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<NodeAddresses>, String>> + Send + 'f>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let req = http::Request::get(format!("/api/v1/nodes/{node}"))
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match self.0.request::<serde_json::Value>(req).await {
                Ok(v) => Ok(Some(NodeAddresses::from_node_json(&v))),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

async fn node_directory(a: &ServerArgs) -> Option<Arc<dyn NodeDirectory>> {
    if a.no_node_verification {
        eprintln!(
            "raven: warning: --no-node-verification: agents' hostname and address claims are only checked for collisions"
        );
        return None;
    }
    let config = match &a.kubeconfig {
        Some(path) => {
            let options = kube::config::KubeConfigOptions::default();
            match kube::config::Kubeconfig::read_from(path) {
                Ok(k) => kube::Config::from_custom_kubeconfig(k, &options)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    match config.and_then(|c| kube::Client::try_from(c).map_err(|e| e.to_string())) {
        Ok(client) => Some(Arc::new(KubeNodes(client))),
        Err(e) => {
            eprintln!(
                "raven: warning: no Kubernetes client ({e}): agents' hostname and address claims are only checked for collisions"
            );
            None
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, TunnelError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| TunnelError::Config(format!("cannot listen on {addr} ({what}): {e}")))
}

async fn server(a: ServerArgs) -> Result<(), TunnelError> {
    let chain = tls::load_certs(&a.server_cert)?;
    let key = tls::load_key(&a.server_key)?;
    let ca = tls::load_certs(&a.ca_file)?;
    let front_door = if a.front_door_insecure {
        eprintln!(
            "raven: warning: --front-door-insecure: the TLS front doors serve any client, with or \
             without a certificate, and hand it every kubelet"
        );
        FrontDoorPolicy::Insecure
    } else {
        if let Some(node) = a
            .front_door_allowed_identities
            .iter()
            .find(|i| i.starts_with("system:node:"))
        {
            return Err(TunnelError::Config(format!(
                "--front-door-allowed-identity {node}: node certificates may not use the front doors"
            )));
        }
        FrontDoorPolicy::Identities(a.front_door_allowed_identities.clone())
    };
    let front_ca = a
        .front_door_client_ca_file
        .as_deref()
        .filter(|_| !a.front_door_insecure)
        .map(tls::load_certs)
        .transpose()?;
    let kubelet_ca = match &a.kubelet_ca_file {
        Some(p) => tls::load_certs(p)?,
        None => ca.clone(),
    };
    let proxy_client = match (&a.proxy_client_cert, &a.proxy_client_key) {
        (Some(c), Some(k)) => Some((tls::load_certs(c)?, tls::load_key(k)?)),
        _ => None,
    };
    let agent_tls = tls::server_config(chain.clone(), key.clone_key(), Some(&ca))?;
    let door_tls = tls::server_config(chain, key, front_ca.as_deref())?;
    let kubelet_tls = tls::client_config(&kubelet_ca, proxy_client)?;

    let config = ServerConfig {
        identity: IdentityPolicy::pattern(a.agent_identity_pattern.clone()),
        dial_timeout: a.dial_timeout,
        max_pending_dials: a.max_pending_dials,
        session: a.keepalive.session(),
        nodes: node_directory(&a).await,
        front_door,
        dial_ping_after: a.dial_ping_after,
        ..ServerConfig::default()
    };
    let srv = TunnelServer::new(config);
    let agents = TlsAcceptor::new(bind(a.tunnel_bind_addr, "agents").await?, agent_tls);
    let secure = bind(a.proxy_internal_secure_addr, "secure front door").await?;
    let insecure = bind(a.proxy_internal_insecure_addr, "insecure front door").await?;
    let admin = bind(a.metric_bind_addr, "metrics").await?;
    let _ = std::fs::remove_file(&a.interceptor_server_uds_file);
    let uds = tokio::net::UnixListener::bind(&a.interceptor_server_uds_file).map_err(|e| {
        TunnelError::Config(format!(
            "cannot listen on {}: {e}",
            a.interceptor_server_uds_file.display()
        ))
    })?;
    let connect_tls = match a.egress_selector_tls_addr {
        Some(addr) => Some(bind(addr, "egress selector TLS").await?),
        None => None,
    };
    let clients = if a.front_door_insecure {
        "any client".to_string()
    } else {
        a.front_door_allowed_identities.join(", ")
    };
    eprintln!("raven server: listening");
    eprintln!(
        "  {}  agents (mutual TLS, CN {})",
        a.tunnel_bind_addr, a.agent_identity_pattern
    );
    eprintln!(
        "  {}  egress-selector CONNECT proxy (Unix socket)",
        a.interceptor_server_uds_file.display()
    );
    if let Some(addr) = a.egress_selector_tls_addr {
        eprintln!("  {addr}  egress-selector CONNECT proxy (TLS; serves {clients})");
    }
    eprintln!(
        "  {}  HTTPS front door to kubelets (serves {clients})",
        a.proxy_internal_secure_addr
    );
    eprintln!(
        "  {}  HTTP front door to kubelet read-only ports",
        a.proxy_internal_insecure_addr
    );
    eprintln!("  {}  /metrics and /healthz", a.metric_bind_addr);
    let connect_tls_fut = async {
        match connect_tls {
            Some(l) => srv.serve_connect(Listener::Tls(l, door_tls.clone())).await,
            None => std::future::pending().await,
        }
    };
    tokio::try_join!(
        srv.serve_agents(agents),
        srv.serve_connect(Listener::Unix(uds)),
        connect_tls_fut,
        srv.serve_http(
            Listener::Tls(secure, door_tls.clone()),
            HttpDoor::secure(kubelet_tls)
        ),
        srv.serve_http(Listener::Tcp(insecure), HttpDoor::insecure()),
        srv.serve_admin(admin),
    )?;
    Ok(())
}

/// The layer 7 agent, when its flags are given.
fn l7_agent(a: &AgentArgs) -> Result<Option<Arc<Agent>>, String> {
    let (Some(cert), Some(key), Some(ca)) = (&a.cert, &a.key, &a.ca_file) else {
        if a.tunnelserver_addrs.is_empty() {
            return Ok(None);
        }
        return Err("--tunnelserver-addr needs --cert, --key and --ca-file".into());
    };
    if a.tunnelserver_addrs.is_empty() {
        return Err("layer 7 needs at least one --tunnelserver-addr".into());
    }
    if a.node_ips.is_empty() {
        return Err("layer 7 needs --node-ip".into());
    }
    let e = |e: TunnelError| e.to_string();
    let chain = tls::load_certs(cert).map_err(e)?;
    let key = tls::load_key(key).map_err(e)?;
    let ca = tls::load_certs(ca).map_err(e)?;
    let mut transport = TlsTransport::new(tls::client_config(&ca, Some((chain, key))).map_err(e)?);
    if let Some(name) = &a.server_name {
        transport = transport.with_server_name(name).map_err(e)?;
    }
    let mut config = AgentConfig::new(
        a.node_name.clone(),
        a.node_ips.clone(),
        a.tunnelserver_addrs.clone(),
    );
    config.hostname = a.hostname.clone();
    config.node_ports = a.allowed_ports.clone();
    config.extra_targets = a.allowed_targets.clone();
    config.dial_timeout = a.dial_timeout;
    config.session = a.keepalive.session();
    Ok(Some(Arc::new(
        Agent::new(config, Arc::new(transport)).map_err(e)?,
    )))
}

/// Cluster credentials: `--kubeconfig`, else in-cluster when running in a pod, else none.
async fn cluster_client(l3: &L3Args) -> Result<Option<kube::Client>, String> {
    let config = match &l3.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().map_err(|e| format!("in-cluster credentials: {e}"))?
        }
        None => return Ok(None),
    };
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| format!("cannot build the API client: {e}"))
}

/// The layer 3 engine of this node: WireGuard first (routes use its device), then links and
/// routes, then skip-NAT rules. Returns it with the node's WireGuard public key.
async fn l3_engine(l3: &L3Args) -> Result<(l3d::Engine, String), String> {
    use yurt::tunnel::l3::wireguard::{WireGuardConfig, WireGuardDriver, WireGuardKey};
    let key = WireGuardKey::load_or_create(&l3.wireguard_key_file)
        .await
        .map_err(|e| {
            format!(
                "--wireguard-key-file {}: {e}",
                l3.wireguard_key_file.display()
            )
        })?;
    let wg = WireGuardDriver::new(WireGuardConfig::new(key));
    let public_key = wg.public_key();
    let links = l3d::netlink::NetlinkDriver::connect().map_err(|e| e.to_string())?;
    let mut drivers: Vec<Box<dyn l3d::Driver>> = vec![Box::new(wg), Box::new(links)];
    match l3d::nat::NatBackend::detect().await {
        Some(backend) => drivers.push(Box::new(l3d::nat::NatDriver::new(backend))),
        None => eprintln!("raven agent: neither nft nor iptables found: no skip-NAT rules"),
    }
    Ok((l3d::Engine::new(drivers), public_key))
}

async fn agent(a: AgentArgs) -> Result<(), String> {
    // Listen for SIGTERM / Ctrl-C from the start; on it layer 3 state is torn down.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let l7 = l7_agent(&a)?;
    let client = cluster_client(&a.l3).await?;
    let admin = match &l7 {
        Some(_) => Some(
            bind(a.metric_bind_addr, "metrics")
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let metrics = l7.as_ref().map(|agent| agent.metrics().clone());
    let admin_task = async move {
        match (admin, metrics) {
            (Some(listener), Some(metrics)) => {
                yurt::tunnel::server::serve_admin(listener, metrics).await
            }
            _ => std::future::pending().await,
        }
    };
    let Some(client) = client else {
        // No cluster credentials: layer 7 only, always on (as before raven-cfg existed).
        let Some(agent) = l7.clone() else {
            return Err(
                "nothing to run: give --tunnelserver-addr/--cert/--key/--ca-file for \
                        layer 7, or cluster credentials (--kubeconfig or in-cluster) for raven-cfg"
                    .into(),
            );
        };
        eprintln!(
            "raven agent {}: layer 7, dialing {}",
            a.node_name,
            a.tunnelserver_addrs.join(", ")
        );
        return tokio::select! {
            () = agent.run() => Ok(()),
            r = admin_task => r.map_err(|e| e.to_string()),
            r = &mut signal => r.map_err(|e| format!("signal handler: {e}")),
        };
    };

    let (engine, public_key) = l3_engine(&a.l3).await?;
    let mut config = l3d::agent::L3AgentConfig::new(a.node_name.clone());
    config.sync_period = a.l3.sync_raven_rules_period;
    config.plan.nat_traversal = a.l3.nat_traversal;
    config.plan.listen_port = a.l3.vpn_bind_port;
    config.public_key = Some(public_key.clone());
    let (stop_l3, l3_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut l3_task = tokio::spawn(l3d::agent::run(
        client.clone(),
        engine,
        config,
        async move {
            let _ = l3_stopped.await;
        },
    ));
    eprintln!(
        "raven agent {}: following kube-system/raven-cfg (WireGuard public key {public_key})",
        a.node_name
    );

    // Layer 7 follows `enable-l7-proxy`.
    let cms: Api<ConfigMap> = Api::namespaced(client, l3d::agent::RAVEN_CONFIG_NAMESPACE);
    let mut events = watcher(
        cms,
        watcher::Config::default()
            .fields(&format!("metadata.name={}", l3d::agent::RAVEN_CONFIG_MAP)),
    )
    .default_backoff()
    .boxed();
    let mut l7_task: Option<tokio::task::JoinHandle<()>> = None;
    tokio::pin!(admin_task);
    let result = loop {
        let cm = tokio::select! {
            r = &mut signal => break r.map_err(|e| format!("signal handler: {e}")),
            r = &mut l3_task => break match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("layer 3: {e}")),
                Err(e) => Err(format!("layer 3 task: {e}")),
            },
            r = &mut admin_task => break r.map_err(|e| e.to_string()),
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => Some(cm),
                Some(Ok(watcher::Event::Delete(_))) => None,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    eprintln!("raven agent: raven-cfg watch: {e}");
                    continue;
                }
                None => break Err("raven-cfg watch ended".into()),
            },
        };
        let value = cm.as_ref().and_then(|c| serde_json::to_value(c).ok());
        let switches = l3d::agent::RavenSwitches::from_config_map(value.as_ref());
        match (&l7, switches.l7, l7_task.is_some()) {
            (Some(agent), true, false) => {
                let agent = agent.clone();
                l7_task = Some(tokio::spawn(async move { agent.run().await }));
                eprintln!("raven agent: layer 7 proxy started");
            }
            (_, false, true) => {
                if let Some(t) = l7_task.take() {
                    t.abort();
                }
                eprintln!("raven agent: layer 7 proxy stopped");
            }
            (None, true, _) => {
                eprintln!(
                    "raven agent: enable-l7-proxy is on but no --tunnelserver-addr/--cert was given"
                )
            }
            _ => {}
        }
    };
    if let Some(t) = l7_task.take() {
        t.abort();
    }
    // Stop layer 3, which tears down what it created.
    let _ = stop_l3.send(());
    if !l3_task.is_finished() {
        match tokio::time::timeout(Duration::from_secs(60), l3_task).await {
            Ok(Ok(Err(e))) => eprintln!("raven agent: layer 3 teardown: {e}"),
            Err(_) => eprintln!("raven agent: layer 3 teardown timed out"),
            _ => {}
        }
    }
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (refused agents and clients with their reasons, sessions) go to stderr; RUST_LOG
    // overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Server(a) => server(a).await.map_err(|e| e.to_string()),
        Command::Agent(a) => {
            if a.tunnelserver_addrs.is_empty()
                && a.l3.kubeconfig.is_none()
                && std::env::var_os("KUBERNETES_SERVICE_HOST").is_none()
            {
                // A usage error like any missing flag (exit 2): nothing to run.
                use clap::CommandFactory;
                let mut cmd = Cli::command().name("raven").bin_name("raven");
                cmd.build();
                let sub = cmd.find_subcommand_mut("agent").expect("agent subcommand");
                sub.error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "the agent needs --tunnelserver-addr (layer 7) or cluster credentials \
                     (--kubeconfig, or in-cluster) for layer 3 and raven-cfg",
                )
                .exit();
            }
            agent(a).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raven: {e}");
            ExitCode::FAILURE
        }
    }
}
