//! `yurthub`: the reference edge-hub daemon (OpenYurt YurtHub equivalent), composed from
//! `yurt-cache`'s layers.
//!
//! It serves the proxy (kubelet and every other client, `--proxy-port` 10261) with the hub's
//! tower — request info, metrics, the cache tee (edge mode), the balancer over the
//! `--server-addr` servers with the node-Lease health checker — and the management server
//! (`--serve-port` 10267: `/v1/healthz`, `/v1/readyz`, `/metrics`, `/v1/cache`). It follows
//! ConfigMap `kube-system/yurt-hub-cfg` through its own stack for the cached components.
//! SIGTERM or Ctrl-C: stop accepting, let in-flight requests finish (bounded by
//! `--shutdown-drain-timeout`), flush and close the store, exit 0.
//!
//! ```text
//! # Try it without a cluster: an in-process test apiserver behind the hub.
//! cargo run --example yurthub -- --sandbox --node-name edge-1
//! kubectl --server http://127.0.0.1:10261 get --raw /version
//!
//! # A real node (see deploy/yurthub/ for the systemd unit and the kubelet kubeconfig).
//! yurthub --server-addr https://10.0.0.10:6443 --node-name edge-1 --nodepool-name pool-a \
//!     --kubeconfig /etc/kubernetes/kubelet.conf
//! ```

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use yurt::cache::balancer::Strategy;
use yurt::cache::filter::{FilterConfig, FilterName, FilterSwitches, PoolSource};
use yurt::cache::health::{HealthConfig, Probe};
use yurt::cache::hub::{EdgeHub, EdgeHubConfig, FilterSettings, WorkingMode as HubMode};
use yurt::cache::multiplex::{DEFAULT_POOL_SCOPE_RESOURCES, PoolScopeResources};
use yurt::cache::server::{ServerConfig, shutdown_signal};
use yurt::cache::upstream::{UpstreamClient, UpstreamConfig};

#[path = "support/flags.rs"]
mod flags;
use flags::duration;

#[path = "support/demo.rs"]
mod demo;

/// Where the edge hub runs (`--working-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkingMode {
    /// Proxy and cache: the node keeps working while the cloud is unreachable.
    Edge,
    /// Proxy only (nodes in the cloud): nothing is cached.
    Cloud,
}

/// What `yurthub --help` opens with (`-h` shows the first paragraph).
const ABOUT: &str = "yurthub: the edge hub (OpenYurt YurtHub) of one node. It proxies the node's \
kube-apiserver traffic (kubelet, kube-proxy, CNI, ...) to the cloud, caches what it proxies, and \
serves it from the cache while the cloud is unreachable, so the node keeps working offline.";

/// The rest of `yurthub --help`'s opening: what it talks to, its ports, how to try it.
const LONG_ABOUT: &str = "yurthub: the edge hub (OpenYurt YurtHub) of one node. It proxies the \
node's kube-apiserver traffic (kubelet, kube-proxy, CNI, ...) to the cloud, caches what it \
proxies, and serves it from the cache while the cloud is unreachable, so the node keeps working \
offline.

Talks to: the cluster's kube-apiserver(s) (--server-addr, or the server of --kubeconfig) over \
TLS with the node's client certificate; its health checks of those servers decide when it \
answers from the cache instead.

Listens on: 127.0.0.1:10261 (--proxy-port): the proxy, where kubelet's kubeconfig points; \
127.0.0.1:10267 (--serve-port): management (/v1/healthz, /v1/readyz, /metrics, /v1/cache, /v1/journal/rejected). \
Cache: /etc/kubernetes/cache/cache.redb (--disk-cache-path).

Try it without a cluster: `yurthub --demo` (offline autonomy, end to end) or `yurthub \
--sandbox` (a test kube-apiserver behind the hub); both use node name edge-1 unless \
--node-name says otherwise.";

/// Help headings: the flags grouped as a manual.
const NODE: &str = "Node";
const UPSTREAM: &str = "Upstream (the cloud's kube-apiserver)";
const CERTS: &str = "Certificates";
const SERVING: &str = "Serving";
const CACHE: &str = "Cache and offline behaviour";
const HEALTH: &str = "Health checks";
const FILTERS: &str = "Filters and traffic reuse";
const TRY: &str = "Trying it without a cluster";

/// The node name `--demo` and `--sandbox` use when `--node-name` is not given.
const DEFAULT_TRY_NODE: &str = "edge-1";

#[derive(Debug, Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// kube-apiserver addresses, comma separated: `https://host:port` (or `host:port`, which
    /// gets `https://`). Default: the server of `--kubeconfig`.
    #[arg(long, value_delimiter = ',', value_parser = server_addr, help_heading = UPSTREAM)]
    server_addr: Vec<http::Uri>,
    /// How to choose among healthy servers: rr or priority.
    #[arg(long, default_value = "rr", help_heading = UPSTREAM)]
    lb_mode: Strategy,
    /// This node's name (its Lease is the heartbeat). Required, except with `--demo` and
    /// `--sandbox` (default edge-1).
    #[arg(long, env = "NODE_NAME", required_unless_present_any = ["demo", "sandbox"], help_heading = NODE)]
    node_name: Option<String>,
    /// The node's pool (for the response filters; default: the pool whose members include the
    /// node).
    #[arg(long, help_heading = NODE)]
    nodepool_name: Option<String>,
    /// edge (cache) or cloud (proxy only).
    #[arg(long, value_enum, default_value = "edge", help_heading = NODE)]
    working_mode: WorkingMode,
    /// Namespace of ConfigMap yurt-hub-cfg.
    #[arg(long, default_value = "kube-system", help_heading = NODE)]
    namespace: String,
    /// A kubeconfig whose cluster CA and client certificate/key (data or files) the hub uses.
    #[arg(long, help_heading = CERTS)]
    kubeconfig: Option<PathBuf>,
    /// The hub's client certificate (PEM), instead of `--kubeconfig`.
    #[arg(long, requires = "client_key", help_heading = CERTS)]
    client_cert: Option<PathBuf>,
    /// The hub's client key (PEM).
    #[arg(long, requires = "client_cert", help_heading = CERTS)]
    client_key: Option<PathBuf>,
    /// The cluster CA (PEM) that signed the kube-apiserver's certificate.
    #[arg(long, help_heading = CERTS)]
    ca_file: Option<PathBuf>,
    /// Address of the proxy.
    #[arg(long, default_value = "127.0.0.1", help_heading = SERVING)]
    bind_proxy_address: IpAddr,
    /// Port of the proxy (kubelet's kubeconfig points here).
    #[arg(long, default_value_t = 10261, help_heading = SERVING)]
    proxy_port: u16,
    /// Address of the management server.
    #[arg(long, default_value = "127.0.0.1", help_heading = SERVING)]
    bind_address: IpAddr,
    /// Port of the management server (`/v1/healthz`, `/v1/readyz`, `/metrics`, `/v1/cache`).
    #[arg(long, default_value_t = 10267, help_heading = SERVING)]
    serve_port: u16,
    /// How long shutdown waits for in-flight requests (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = SERVING)]
    shutdown_drain_timeout: Duration,
    /// How long a client of the proxy or management port may take to send the first bytes of
    /// a connection and each request head (also the idle limit of a kept-alive connection);
    /// a connection that sends nothing is closed (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = SERVING)]
    read_header_timeout: Duration,
    /// Connections the proxy port, and the management port, each serve at once; one more is
    /// answered 429 TooManyRequests (Retry-After: 1) and closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), help_heading = SERVING)]
    max_connections: u32,
    /// Directory of the cache store (file `cache.redb` inside). With `--sandbox` or `--demo`
    /// and no value: a temporary directory. [default: /etc/kubernetes/cache/]
    #[arg(long, help_heading = CACHE)]
    disk_cache_path: Option<PathBuf>,
    /// Base timeout of watches served while offline (e.g. 1800s): without `timeoutSeconds`
    /// such a watch ends after this times a random factor in [1, 2).
    #[arg(long, default_value = "1800s", value_parser = duration, help_heading = CACHE)]
    min_request_timeout: Duration,
    /// Cap on the bytes of offline writes waiting in the journal for replay (default 64 MiB);
    /// an offline write past it is answered 507 Insufficient Storage and not applied.
    #[arg(long, default_value_t = 64 << 20, help_heading = CACHE)]
    max_offline_journal_bytes: u64,
    /// The node Lease's duration (e.g. 40s); in edge mode also the grace period within which
    /// kubelet must renew its lease through the hub, or the hub stops renewing the node Lease
    /// (it keeps probing `/readyz` and proxying).
    #[arg(long, default_value = "40s", value_parser = duration, help_heading = HEALTH)]
    kubelet_health_grace_period: Duration,
    /// Re-reads of the Lease after a conflict before a heartbeat fails.
    #[arg(long, default_value_t = 3, help_heading = HEALTH)]
    heartbeat_failed_retry: u32,
    /// Consecutive successful heartbeats before a server is healthy again.
    #[arg(long, default_value_t = 2, help_heading = HEALTH)]
    heartbeat_healthy_threshold: u32,
    /// Timeout of one heartbeat, seconds.
    #[arg(long, default_value_t = 2, help_heading = HEALTH)]
    heartbeat_timeout_seconds: u64,
    /// Interval between heartbeats, seconds.
    #[arg(long, default_value_t = 10, help_heading = HEALTH)]
    heartbeat_interval_seconds: u64,
    /// Rewrite responses with the resource filters (servicetopology, masterservice, ...).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, help_heading = FILTERS)]
    enable_resource_filter: bool,
    /// Filters to switch off, comma separated (`*`: all).
    #[arg(long, value_delimiter = ',', value_parser = filter_name, help_heading = FILTERS)]
    disabled_resource_filters: Vec<String>,
    /// Pool membership for the filters from NodePool `status.nodes`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, help_heading = FILTERS)]
    enable_node_pool: bool,
    /// Pool membership for the filters from NodeBuckets (takes precedence over NodePools).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, help_heading = FILTERS)]
    enable_pool_service_topology: bool,
    /// The address the filters point in-cluster apiserver clients at.
    #[arg(long, default_value = "169.254.2.1", help_heading = FILTERS)]
    dummy_if_ip: IpAddr,
    /// The port the filters point in-cluster apiserver clients at.
    #[arg(long, default_value_t = 10268, help_heading = FILTERS)]
    proxy_secure_port: u16,
    /// Resources whose list/watch requests all local clients share through one upstream
    /// list+watch each (`group/version/resource`, comma separated; empty: none).
    #[arg(long, default_value = DEFAULT_POOL_SCOPE_RESOURCES, help_heading = FILTERS)]
    pool_scope_resources: PoolScopeResources,
    /// Start an in-process test kube-apiserver (TLS, a node certificate for this node) and
    /// put the hub in front of it; prints the proxy URL and a kubeconfig for kubectl.
    #[arg(long, conflicts_with_all = ["server_addr", "kubeconfig", "client_cert", "ca_file"], help_heading = TRY)]
    sandbox: bool,
    /// The offline-autonomy demo: a sandbox cloud behind a fault-injecting link, the hub, and
    /// a kubelet-like client; cuts the link, restarts the hub offline, heals the link, prints
    /// what happened, then keeps serving until Ctrl-C.
    #[arg(long, conflicts_with_all = ["server_addr", "kubeconfig", "client_cert", "ca_file", "sandbox"], help_heading = TRY)]
    demo: bool,
}

/// The hub's credentials and servers.
struct Credentials {
    servers: Vec<http::Uri>,
    ca_pem: Vec<u8>,
    identity: Option<Identity>,
    /// Where the identity came from, to name it in errors.
    identity_from: String,
}

/// A client certificate chain and its key, PEM.
type Identity = (Vec<u8>, Vec<u8>);

/// What a kubeconfig's current context says: the server, the cluster CA, the client identity.
type FromKubeconfig = (Option<String>, Vec<u8>, Option<Identity>);

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
}

/// Standard base64 (kubeconfig `*-data` fields), whitespace tolerated.
fn base64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("kubeconfig {field} is not base64: {e}"))
}

/// The current context's cluster CA and server, and its user's client certificate and key.
fn from_kubeconfig(path: &Path) -> Result<FromKubeconfig, String> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("cannot read --kubeconfig {}: {e}", path.display()))?;
    let v =
        serde_json::to_value(&kc).map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let current = v["current-context"].as_str().unwrap_or_default();
    let named = |list: &str, name: &str, key: &str| -> serde_json::Value {
        v[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| name.is_empty() || e["name"].as_str() == Some(name))
            .map(|e| e[key].clone())
            .unwrap_or_default()
    };
    let context = named("contexts", current, "context");
    let cluster = named(
        "clusters",
        context["cluster"].as_str().unwrap_or_default(),
        "cluster",
    );
    let user = named(
        "users",
        context["user"].as_str().unwrap_or_default(),
        "user",
    );
    let bad = |what: &str| format!("--kubeconfig {}: {what}", path.display());
    let data_or_file =
        |obj: &serde_json::Value, data: &str, file: &str| -> Result<Option<Vec<u8>>, String> {
            if let Some(d) = obj[data].as_str() {
                return base64(data, d).map(Some);
            }
            match obj[file].as_str() {
                Some(f) => read(&format!("--kubeconfig {file}"), &base.join(f)).map(Some),
                None => Ok(None),
            }
        };
    let ca = data_or_file(
        &cluster,
        "certificate-authority-data",
        "certificate-authority",
    )?
    .ok_or_else(|| bad("the cluster has no certificate-authority(-data)"))?;
    let cert = data_or_file(&user, "client-certificate-data", "client-certificate")?;
    let key = data_or_file(&user, "client-key-data", "client-key")?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(bad("the user needs both a client certificate and a key")),
    };
    Ok((cluster["server"].as_str().map(str::to_owned), ca, identity))
}

/// A kube-apiserver address (`--server-addr`, or a kubeconfig's `server`): `https://host:port`,
/// `http://host:port`, or `host:port` (which gets `https://`). Bare words, other schemes, bad
/// ports, paths and user info are refused with one line saying what is wrong.
fn server_addr(s: &str) -> Result<http::Uri, String> {
    const EXPECTED: &str = "expected https://host:port, e.g. https://10.0.0.10:6443";
    let s = s.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), s),
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!(
            "scheme {scheme:?} is not https or http ({EXPECTED})"
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(format!("no host ({EXPECTED})"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "a server address has no path or query ({EXPECTED})"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "user info does not belong in a server address ({EXPECTED})"
        ));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("an unclosed IPv6 bracket ({EXPECTED})"))?;
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{ip:?} is not an IPv6 address ({EXPECTED})"));
            }
            match after.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None if after.is_empty() => (ip, None),
                None => return Err(format!("not a server address ({EXPECTED})")),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let valid_host = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !authority.starts_with('[') && !valid_host {
        return Err(format!(
            "{host:?} is not a host name or address ({EXPECTED})"
        ));
    }
    match port {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("port {p:?} is not a port number 1-65535")),
        },
        // Without a scheme a bare word would silently become `https://word`: refuse it.
        None if !s.contains("://") => {
            return Err(format!("not a server address ({EXPECTED})"));
        }
        None => {}
    }
    format!("{scheme}://{authority}")
        .parse::<http::Uri>()
        .map_err(|e| format!("{e} ({EXPECTED})"))
}

fn credentials(cli: &Cli) -> Result<Credentials, String> {
    let (kc_server, mut ca_pem, mut identity) = match &cli.kubeconfig {
        Some(path) => {
            let (server, ca, id) = from_kubeconfig(path)?;
            (server, Some(ca), id)
        }
        None => (None, None, None),
    };
    if let Some(ca) = &cli.ca_file {
        ca_pem = Some(read("--ca-file", ca)?);
    }
    let mut identity_from = cli
        .kubeconfig
        .as_ref()
        .map(|p| {
            format!(
                "the user's client-certificate in --kubeconfig {}",
                p.display()
            )
        })
        .unwrap_or_default();
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        identity = Some((read("--client-cert", cert)?, read("--client-key", key)?));
        identity_from = format!("--client-cert {}", cert.display());
    }
    let ca_pem = ca_pem.ok_or("no cluster CA: pass --kubeconfig or --ca-file")?;
    let mut servers = cli.server_addr.clone();
    if servers.is_empty() {
        let server = kc_server.ok_or("no kube-apiserver: pass --server-addr")?;
        servers.push(
            server_addr(&server).map_err(|e| format!("--kubeconfig server {server:?}: {e}"))?,
        );
    }
    Ok(Credentials {
        servers,
        ca_pem,
        identity,
        identity_from,
    })
}

fn upstream(creds: &Credentials) -> Result<UpstreamClient, String> {
    let mut config =
        UpstreamConfig::from_ca_pem(&creds.ca_pem).map_err(|e| format!("cluster CA: {e}"))?;
    if let Some((cert, key)) = &creds.identity {
        config = config
            .client_cert_pem(cert, key)
            .map_err(|e| format!("client certificate ({}): {e}", creds.identity_from))?;
    }
    UpstreamClient::new(config).map_err(|e| format!("upstream client: {e}"))
}

/// The sandbox: a TLS test apiserver, the node's certificate, and a kubeconfig for kubectl.
struct Sandbox {
    api: yurt_testkit::TestApiServer,
    dir: tempfile::TempDir,
}

async fn sandbox(node: &str) -> Result<(Sandbox, Credentials), String> {
    let api = yurt_testkit::TestApiServer::builder()
        .tls()
        .start()
        .await
        .map_err(|e| format!("sandbox apiserver: {e}"))?;
    let cert = api
        .ca()
        .issue_client_cert(&format!("system:node:{node}"), &["system:nodes"])
        .map_err(|e| format!("sandbox certificate: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("yurthub-sandbox-")
        .tempdir()
        .map_err(|e| format!("sandbox directory: {e}"))?;
    let creds = Credentials {
        servers: vec![server_addr(&api.url())?],
        ca_pem: api.ca().ca_pem().as_bytes().to_vec(),
        identity: Some((cert.cert_pem.into_bytes(), cert.key_pem.into_bytes())),
        identity_from: "the sandbox's node certificate".to_owned(),
    };
    Ok((Sandbox { api, dir }, creds))
}

fn kubectl_kubeconfig(proxy: SocketAddr) -> String {
    [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: yurthub",
        "  cluster:",
        &format!("    server: http://{proxy}"),
        "contexts:",
        "- name: yurthub",
        "  context:",
        "    cluster: yurthub",
        "    user: yurthub",
        "current-context: yurthub",
        "users:",
        "- name: yurthub",
        "  user: {}",
        "",
    ]
    .join("\n")
}

/// The hub's configuration from the flags.
fn hub_config(
    cli: &Cli,
    node: &str,
    servers: Vec<http::Uri>,
    cache_dir: &Path,
) -> Result<EdgeHubConfig, String> {
    let mut config = EdgeHubConfig::new(node, servers, cache_dir.join("cache.redb"));
    config.proxy_addr = SocketAddr::new(cli.bind_proxy_address, cli.proxy_port);
    config.admin_addr = SocketAddr::new(cli.bind_address, cli.serve_port);
    config.strategy = cli.lb_mode;
    config.health = HealthConfig::lease(node)
        .interval(Duration::from_secs(cli.heartbeat_interval_seconds.max(1)))
        .timeout(Duration::from_secs(cli.heartbeat_timeout_seconds.max(1)))
        .thresholds(cli.heartbeat_healthy_threshold.max(1), 1);
    if let Probe::Lease(lease) = &mut config.health.probe {
        lease.retries = cli.heartbeat_failed_retry;
        lease.lease_duration_seconds =
            i32::try_from(cli.kubelet_health_grace_period.as_secs()).unwrap_or(i32::MAX);
    }
    config.kubelet_grace = Some(cli.kubelet_health_grace_period);
    config.local.min_request_timeout = cli.min_request_timeout;
    config.local.journal.max_bytes = cli.max_offline_journal_bytes;
    config.mode = match cli.working_mode {
        WorkingMode::Edge => HubMode::Edge,
        WorkingMode::Cloud => HubMode::Cloud,
    };
    config.hubconfig_namespace = cli.namespace.clone();
    config.server = ServerConfig::default()
        .drain_timeout(cli.shutdown_drain_timeout)
        .header_read_timeout(cli.read_header_timeout)
        .max_connections(usize::try_from(cli.max_connections).unwrap_or(usize::MAX));
    config.multiplex = cli.pool_scope_resources.clone();
    let mut disabled = cli.disabled_resource_filters.clone();
    if cli.working_mode == WorkingMode::Cloud {
        // As upstream: these make no sense on a node in the cloud.
        disabled.extend(
            [
                "discardcloudservice",
                "forwardkubesvctraffic",
                "serviceenvupdater",
            ]
            .map(String::from),
        );
    }
    let switches = FilterSwitches::new(cli.enable_resource_filter, &disabled)
        .map_err(|e| format!("--disabled-resource-filters: {e}"))?;
    config.filters = Some(FilterSettings {
        switches,
        config: FilterConfig::new(node)
            .nodepool_name(cli.nodepool_name.as_deref())
            .hub(&cli.dummy_if_ip.to_string(), cli.proxy_secure_port),
        pools: match (cli.enable_pool_service_topology, cli.enable_node_pool) {
            (true, _) => PoolSource::NodeBucket,
            (false, true) => PoolSource::NodePool,
            (false, false) => PoolSource::None,
        },
    });
    Ok(config)
}

/// A `--disabled-resource-filters` entry: a filter name or `*`.
fn filter_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" || s.is_empty() {
        return Ok(s.to_owned());
    }
    s.parse::<FilterName>()
        .map(|f| f.as_str().to_owned())
        .map_err(|e| e.to_string())
}

async fn run(cli: Cli) -> Result<(), String> {
    // Listen for SIGTERM / Ctrl-C from the start: one polled once has its handlers installed,
    // so a signal during startup is not lost (and does not kill the process mid-write).
    let mut signal = Box::pin(shutdown_signal());
    if let Some(r) = futures::FutureExt::now_or_never(&mut signal) {
        return r.map_err(|e| format!("signal handler: {e}"));
    }
    let node = match &cli.node_name {
        Some(n) => n.trim().to_owned(),
        None => DEFAULT_TRY_NODE.to_owned(),
    };
    if node.is_empty() {
        return Err("--node-name must not be empty".into());
    }
    let node_line = match &cli.node_name {
        Some(_) => format!("node {node}"),
        None => format!("node {node} (the default of --demo and --sandbox; set --node-name)"),
    };
    if cli.demo {
        return demo::run(&cli, &node, &node_line, signal).await;
    }
    let (sandbox, creds) = if cli.sandbox {
        let (s, c) = sandbox(&node).await?;
        (Some(s), c)
    } else {
        (None, credentials(&cli)?)
    };
    let client = upstream(&creds)?;

    let cache_dir = match (&cli.disk_cache_path, &sandbox) {
        (Some(p), _) => p.clone(),
        (None, Some(s)) => s.dir.path().join("cache"),
        (None, None) => PathBuf::from("/etc/kubernetes/cache/"),
    };
    // The store creates the directory itself, 0700 (it holds Secrets in clear text).
    let config = hub_config(&cli, &node, creds.servers.clone(), &cache_dir)?;
    let hub = EdgeHub::start(config, client)
        .await
        .map_err(|e| e.to_string())?;

    let servers: Vec<String> = creds.servers.iter().map(ToString::to_string).collect();
    println!(
        "yurthub: {node_line}, {} mode, servers {}",
        match cli.working_mode {
            WorkingMode::Edge => "edge",
            WorkingMode::Cloud => "cloud",
        },
        servers.join(", ")
    );
    for line in listener_lines(&hub) {
        println!("yurthub: {line}");
    }
    if let Some(pool) = &cli.nodepool_name {
        println!("yurthub: node pool {pool}");
    }
    if let Some(s) = &sandbox {
        let path = s.dir.path().join("kubeconfig");
        std::fs::write(&path, kubectl_kubeconfig(hub.proxy_addr()))
            .map_err(|e| format!("sandbox kubeconfig: {e}"))?;
        println!(
            "yurthub: sandbox apiserver on {} (the test kube-apiserver behind the hub)",
            s.api.url()
        );
        println!("yurthub: kubeconfig for kubectl {}", path.display());
        println!(
            "yurthub: try `kubectl --server http://{} get --raw /version`",
            hub.proxy_addr()
        );
    }

    let signal = signal.await;
    eprintln!("yurthub: shutting down");
    hub.shutdown().await;
    eprintln!("yurthub: drained, store closed");
    drop(sandbox);
    signal.map_err(|e| format!("signal handler: {e}"))
}

/// One line per listener of `hub` (address and purpose) and one for where its cache lives;
/// the daemon and the demo print them at start.
fn listener_lines(hub: &EdgeHub) -> [String; 3] {
    [
        format!(
            "proxy on http://{} (kubelet, kube-proxy and the node's other clients)",
            hub.proxy_addr()
        ),
        format!(
            "management on http://{} (/v1/healthz, /v1/readyz, /metrics, /v1/cache, /v1/journal/rejected)",
            hub.admin_addr()
        ),
        format!("cache store {}", hub.store().path().display()),
    ]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG overrides (the demo keeps them quiet beside its story). Colour
    // only on a terminal: escape codes in a log file or a pipe are noise.
    // The demo's kubelet-like clients are kube-rs clients: their own request failures while the
    // link is cut are part of the story (they retry as kubelet does), not the hub's problems.
    let default = if cli.demo {
        "warn,kube_client=off,kube_runtime=off"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("yurthub: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yurthub: {e}");
            ExitCode::FAILURE
        }
    }
}
