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

/// Edge hub: proxies the node's kube-apiserver traffic, caches it, keeps the node autonomous.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// kube-apiserver addresses, comma separated (`https://host:port`; `https://` is added
    /// when missing). Default: the server of `--kubeconfig`.
    #[arg(long, value_delimiter = ',')]
    server_addr: Vec<String>,
    /// This node's name (its Lease is the heartbeat).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The node's pool (for the response filters; default: the pool whose members include the
    /// node).
    #[arg(long)]
    nodepool_name: Option<String>,
    /// Rewrite responses with the resource filters (servicetopology, masterservice, ...).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_resource_filter: bool,
    /// Filters to switch off, comma separated (`*`: all).
    #[arg(long, value_delimiter = ',', value_parser = filter_name)]
    disabled_resource_filters: Vec<String>,
    /// Pool membership for the filters from NodePool `status.nodes`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_node_pool: bool,
    /// Pool membership for the filters from NodeBuckets (takes precedence over NodePools).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    enable_pool_service_topology: bool,
    /// The address the filters point in-cluster apiserver clients at.
    #[arg(long, default_value = "169.254.2.1")]
    dummy_if_ip: String,
    /// The port the filters point in-cluster apiserver clients at.
    #[arg(long, default_value_t = 10268)]
    proxy_secure_port: u16,
    /// Resources whose list/watch requests all local clients share through one upstream
    /// list+watch each (`group/version/resource`, comma separated; empty: none).
    #[arg(long, default_value = DEFAULT_POOL_SCOPE_RESOURCES)]
    pool_scope_resources: PoolScopeResources,
    /// Address of the management server.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port of the management server (`/v1/healthz`, `/v1/readyz`, `/metrics`, `/v1/cache`).
    #[arg(long, default_value_t = 10267)]
    serve_port: u16,
    /// Address of the proxy.
    #[arg(long, default_value = "127.0.0.1")]
    bind_proxy_address: IpAddr,
    /// Port of the proxy (kubelet's kubeconfig points here).
    #[arg(long, default_value_t = 10261)]
    proxy_port: u16,
    /// Directory of the cache store (file `cache.redb` inside). With `--sandbox` and no value:
    /// the sandbox's temporary directory.
    #[arg(long)]
    disk_cache_path: Option<PathBuf>,
    /// How to choose among healthy servers: rr or priority.
    #[arg(long, default_value = "rr")]
    lb_mode: Strategy,
    /// Re-reads of the Lease after a conflict before a heartbeat fails.
    #[arg(long, default_value_t = 3)]
    heartbeat_failed_retry: u32,
    /// Consecutive successful heartbeats before a server is healthy again.
    #[arg(long, default_value_t = 2)]
    heartbeat_healthy_threshold: u32,
    /// Timeout of one heartbeat, seconds.
    #[arg(long, default_value_t = 2)]
    heartbeat_timeout_seconds: u64,
    /// Interval between heartbeats, seconds.
    #[arg(long, default_value_t = 10)]
    heartbeat_interval_seconds: u64,
    /// The node Lease's duration (e.g. 40s); in edge mode also the grace period within which
    /// kubelet must renew its lease through the hub, or the hub stops renewing the node Lease
    /// (it keeps probing `/readyz` and proxying).
    #[arg(long, default_value = "40s", value_parser = duration)]
    kubelet_health_grace_period: Duration,
    /// Base timeout of watches served while offline (e.g. 1800s): without `timeoutSeconds`
    /// such a watch ends after this times a random factor in [1, 2).
    #[arg(long, default_value = "1800s", value_parser = duration)]
    min_request_timeout: Duration,
    /// edge (cache) or cloud (proxy only).
    #[arg(long, value_enum, default_value = "edge")]
    working_mode: WorkingMode,
    /// Namespace of ConfigMap yurt-hub-cfg.
    #[arg(long, default_value = "kube-system")]
    namespace: String,
    /// A kubeconfig whose cluster CA and client certificate/key (data or files) the hub uses.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The hub's client certificate (PEM), instead of `--kubeconfig`.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The hub's client key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The cluster CA (PEM) that signed the kube-apiserver's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = duration)]
    shutdown_drain_timeout: Duration,
    /// Start an in-process test kube-apiserver (TLS, a node certificate for this node) and
    /// put the hub in front of it; prints the proxy URL and a kubeconfig for kubectl.
    #[arg(long, conflicts_with_all = ["server_addr", "kubeconfig", "client_cert", "ca_file"])]
    sandbox: bool,
    /// The offline-autonomy demo: a sandbox cloud behind a fault-injecting link, the hub, and
    /// a kubelet-like client; cuts the link, restarts the hub offline, heals the link, prints
    /// what happened, then keeps serving until Ctrl-C.
    #[arg(long, conflicts_with_all = ["server_addr", "kubeconfig", "client_cert", "ca_file", "sandbox"])]
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

fn server_uri(s: &str) -> Result<http::Uri, String> {
    let s = s.trim();
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    with_scheme
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.host().is_some())
        .ok_or_else(|| format!("invalid --server-addr {s:?}"))
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
    let mut servers = cli
        .server_addr
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| server_uri(s))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        servers.push(server_uri(
            &kc_server.ok_or("no kube-apiserver: pass --server-addr")?,
        )?);
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
        servers: vec![server_uri(&api.url())?],
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
    config.mode = match cli.working_mode {
        WorkingMode::Edge => HubMode::Edge,
        WorkingMode::Cloud => HubMode::Cloud,
    };
    config.hubconfig_namespace = cli.namespace.clone();
    config.server = ServerConfig::default().drain_timeout(cli.shutdown_drain_timeout);
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
            .hub(&cli.dummy_if_ip, cli.proxy_secure_port),
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
    let node = cli.node_name.trim().to_owned();
    if node.is_empty() {
        return Err("--node-name must not be empty".into());
    }
    if cli.demo {
        return demo::run(&cli, &node, signal).await;
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
    std::fs::create_dir_all(&cache_dir).map_err(|e| {
        format!(
            "cannot create --disk-cache-path {}: {e}",
            cache_dir.display()
        )
    })?;
    let config = hub_config(&cli, &node, creds.servers.clone(), &cache_dir)?;
    let hub = EdgeHub::start(config, client)
        .await
        .map_err(|e| e.to_string())?;

    println!(
        "yurthub: node {node} ({:?} mode), servers {:?}",
        cli.working_mode, creds.servers
    );
    println!("yurthub: proxy on http://{}", hub.proxy_addr());
    println!("yurthub: management on http://{}", hub.admin_addr());
    println!("yurthub: cache store {}", hub.store().path().display());
    if let Some(pool) = &cli.nodepool_name {
        println!("yurthub: node pool {pool}");
    }
    if let Some(s) = &sandbox {
        let path = s.dir.path().join("kubeconfig");
        std::fs::write(&path, kubectl_kubeconfig(hub.proxy_addr()))
            .map_err(|e| format!("sandbox kubeconfig: {e}"))?;
        println!("yurthub: sandbox apiserver {}", s.api.url());
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG overrides (the demo keeps them quiet beside its story).
    let default = if cli.demo { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
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
