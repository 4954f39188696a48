//! `raven`: the yurt-tunnel reference daemon (OpenYurt Raven L7 proxy / yurt-tunnel equivalent).
//!
//! `raven server` runs in the cloud: it accepts edge agents (mutual TLS, 10262), serves
//! kube-apiserver's egress selector as an HTTP CONNECT proxy on a Unix socket (and optionally
//! over TLS), Raven's 10263 (HTTPS) and 10264 (HTTP) front doors, and `/metrics` + `/healthz`.
//! `raven agent` runs on every edge node: it dials every server it is given and serves CONNECT
//! streams to the node's kubelet (10250/10255) and any other allowlisted targets.
//!
//! ```text
//! cargo run --example raven -- server --server-cert tls.crt --server-key tls.key --ca-file ca.crt \
//!     --proxy-client-cert proxy-client.crt --proxy-client-key proxy-client.key
//! cargo run --example raven -- agent --node-name edge-1 --node-ip 10.0.0.7 \
//!     --tunnelserver-addr 203.0.113.10:10262 --cert node.crt --key node.key --ca-file ca.crt
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use yurt::tunnel::{
    Agent, AgentConfig, HttpDoor, IdentityPolicy, Listener, ServerConfig, SessionConfig,
    TlsAcceptor, TlsTransport, TunnelError, TunnelServer, tls,
};

#[path = "support/flags.rs"]
mod flags;
use flags::duration;

/// Cloud-to-edge reverse tunnel (Raven L7 equivalent).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the cloud tunnel server.
    Server(ServerArgs),
    /// Run the edge tunnel agent.
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Where agents connect (Raven `tunnel-bind-addr` / proxy external port).
    #[arg(long, default_value = "0.0.0.0:10262")]
    tunnel_bind_addr: SocketAddr,
    /// HTTPS front door routing `Host: <node>:<port>` (Raven `proxy-internal-secure-addr`).
    #[arg(long, default_value = "0.0.0.0:10263")]
    proxy_internal_secure_addr: SocketAddr,
    /// HTTP front door (Raven `proxy-internal-insecure-addr`).
    #[arg(long, default_value = "0.0.0.0:10264")]
    proxy_internal_insecure_addr: SocketAddr,
    /// Egress-selector CONNECT proxy on a Unix socket (the selector's `uds` transport).
    #[arg(long, default_value = "/var/lib/raven/interceptor-proxier.sock")]
    interceptor_server_uds_file: PathBuf,
    /// Also serve the CONNECT proxy over TLS here (the selector's `tcp` transport).
    #[arg(long)]
    egress_selector_tls_addr: Option<SocketAddr>,
    /// `/metrics` and `/healthz` (Raven `metric-bind-addr`).
    #[arg(long, default_value = "0.0.0.0:10265")]
    metric_bind_addr: SocketAddr,
    /// Server certificate (PEM) presented to agents and on the TLS front doors.
    #[arg(long)]
    server_cert: PathBuf,
    /// Server private key (PEM).
    #[arg(long)]
    server_key: PathBuf,
    /// CA that signs agent certificates.
    #[arg(long)]
    ca_file: PathBuf,
    /// CA whose client certificates the TLS front doors require (the apiserver's
    /// kubelet-client CA). Without it the TLS front doors accept any TLS client.
    #[arg(long)]
    front_door_client_ca_file: Option<PathBuf>,
    /// Client certificate the 10263 door presents to kubelets (Raven `tunnel-proxy-client`).
    #[arg(long, requires = "proxy_client_key")]
    proxy_client_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "proxy_client_cert")]
    proxy_client_key: Option<PathBuf>,
    /// CA that signs kubelet serving certificates (defaults to --ca-file).
    #[arg(long)]
    kubelet_ca_file: Option<PathBuf>,
    /// Agent certificate CN pattern; `{node}` is the registering node's name.
    #[arg(long, default_value = "system:node:{node}")]
    agent_identity_pattern: String,
    /// Deadline of one dial through a tunnel.
    #[arg(long, default_value = "10s", value_parser = duration)]
    dial_timeout: Duration,
    /// Dials in flight per agent before new ones get 503.
    #[arg(long, default_value_t = 64)]
    max_pending_dials: usize,
    /// HTTP/2 keepalive PING interval.
    #[arg(long, default_value = "10s", value_parser = duration)]
    keepalive_interval: Duration,
    /// An unanswered PING this long ends the session.
    #[arg(long, default_value = "5s", value_parser = duration)]
    keepalive_timeout: Duration,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// This node's name (the certificate CN must match the server's pattern).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// This node's addresses (repeat; the first is where node-name targets go).
    #[arg(
        long = "node-ip",
        env = "NODE_IP",
        value_delimiter = ',',
        required = true
    )]
    node_ips: Vec<IpAddr>,
    /// The node's Hostname address, if it differs from the node name.
    #[arg(long)]
    hostname: Option<String>,
    /// Tunnel servers to connect to, `host:port` (repeat for HA; the agent holds a session
    /// to each).
    #[arg(long = "tunnelserver-addr", value_delimiter = ',', required = true)]
    tunnelserver_addrs: Vec<String>,
    /// TLS name to verify the servers' certificate against (default: each address's host).
    #[arg(long)]
    server_name: Option<String>,
    /// Agent client certificate (PEM, CN `system:node:<node>`).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key.
    #[arg(long)]
    key: PathBuf,
    /// CA that signs the server certificate.
    #[arg(long)]
    ca_file: PathBuf,
    /// Ports allowed on the node's addresses.
    #[arg(long = "allowed-port", value_delimiter = ',', default_values_t = [10250u16, 10255])]
    allowed_ports: Vec<u16>,
    /// Extra exact targets allowed (`ip:port`, repeatable).
    #[arg(long = "allowed-target", value_delimiter = ',')]
    allowed_targets: Vec<SocketAddr>,
    /// `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:10266")]
    metric_bind_addr: SocketAddr,
    /// Deadline to dial a local target.
    #[arg(long, default_value = "10s", value_parser = duration)]
    dial_timeout: Duration,
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
    let front_ca = a
        .front_door_client_ca_file
        .as_deref()
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
        identity: IdentityPolicy::pattern(a.agent_identity_pattern),
        dial_timeout: a.dial_timeout,
        max_pending_dials: a.max_pending_dials,
        session: SessionConfig {
            keepalive_interval: a.keepalive_interval,
            keepalive_timeout: a.keepalive_timeout,
            ..SessionConfig::default()
        },
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
    eprintln!(
        "raven server: agents on {}, CONNECT on {}, doors {} / {}, metrics {}",
        a.tunnel_bind_addr,
        a.interceptor_server_uds_file.display(),
        a.proxy_internal_secure_addr,
        a.proxy_internal_insecure_addr,
        a.metric_bind_addr
    );
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

async fn agent(a: AgentArgs) -> Result<(), TunnelError> {
    let chain = tls::load_certs(&a.cert)?;
    let key = tls::load_key(&a.key)?;
    let ca = tls::load_certs(&a.ca_file)?;
    let mut transport = TlsTransport::new(tls::client_config(&ca, Some((chain, key)))?);
    if let Some(name) = &a.server_name {
        transport = transport.with_server_name(name)?;
    }
    let mut config = AgentConfig::new(a.node_name, a.node_ips, a.tunnelserver_addrs);
    config.hostname = a.hostname;
    config.node_ports = a.allowed_ports;
    config.extra_targets = a.allowed_targets;
    config.dial_timeout = a.dial_timeout;
    let agent = Agent::new(config, Arc::new(transport))?;
    let admin = bind(a.metric_bind_addr, "metrics").await?;
    eprintln!("raven agent: {agent:?}");
    tokio::select! {
        () = agent.run() => Ok(()),
        r = yurt::tunnel::server::serve_admin(admin, agent.metrics().clone()) => r,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(a) => server(a).await,
        Command::Agent(a) => agent(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raven: {e}");
            ExitCode::FAILURE
        }
    }
}
