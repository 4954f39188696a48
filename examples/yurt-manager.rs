//! `yurt-manager`: the reference cloud-side controller manager (OpenYurt yurt-manager
//! equivalent), composed from `yurt-pool`.
//!
//! It talks to the cluster's kube-apiserver only (in-cluster credentials or `--kubeconfig`),
//! runs the selected controllers while it holds the Lease `kube-system/yurt-manager`, serves
//! `/metrics` on `--metrics-addr` (:10271) and `/healthz`, `/readyz` on `--health-probe-addr`
//! (:10272), and on every replica (leader or not) the admission and conversion webhooks over
//! HTTPS on `--webhook-port` (:10273; certificates in Secret
//! `<working-namespace>/yurt-manager-webhook-certs`, `caBundle`s written into the webhook
//! configurations and the NodePool CRD). SIGTERM or Ctrl-C stops the controllers and the
//! webhook server, releases the Lease and exits 0; a lost Lease exits 1 so the Deployment
//! restarts it as a standby.
//!
//! ```text
//! yurt-manager --kubeconfig ~/.kube/config --install-crds
//! yurt-manager --controllers '*,-nodebucket' --leader-elect=false
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use yurt::cache::server::shutdown_signal;
use yurt::pool::probes::{self, ProbeState};
use yurt::pool::ratelimit::RateLimitLayer;
use yurt::pool::webhook::{SecretOutcome, WebhookConfig, WebhookServer};
use yurt::pool::{Error, LeaseConfig, Manager, ManagerConfig, install_crds};

#[path = "support/flags.rs"]
mod flags;
use flags::duration;

const ABOUT: &str = "OpenYurt's cloud-side controller manager: keeps NodePools, NodeBuckets, \
hub/tunnel certificate requests and service topology in order.";

const LONG_ABOUT: &str = "OpenYurt's cloud-side controller manager: keeps NodePools, \
NodeBuckets, hub/tunnel certificate requests and service topology in order.

It talks only to the cluster's kube-apiserver (in-cluster credentials, or --kubeconfig), runs \
its controllers while it holds the Lease <working-namespace>/yurt-manager (so several replicas \
can run; one works), and listens on:
  :10271  /metrics               (--metrics-addr)
  :10272  /healthz, /readyz      (--health-probe-addr)
  :10273  HTTPS admission and conversion webhooks (--webhook-port, every replica)

SIGTERM stops the controllers, releases the Lease and exits 0.";

/// Command line, with upstream yurt-manager's flag names.
#[derive(Debug, Parser)]
#[command(name = "yurt-manager", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Controllers to run: `*` (all on by default), `name` or `-name` (upstream names or
    /// aliases such as nodepool, nodebucket, csrapprover), comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "*",
        help_heading = "Controllers"
    )]
    controllers: Vec<String>,
    /// Push NodePool labels, annotations and taints onto the pool's nodes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, help_heading = "Controllers")]
    enable_sync_nodepool_configurations: bool,
    /// Largest NodeBucket the node-bucket controller writes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Controllers")]
    max_nodes_per_bucket: u32,
    /// Namespace of the manager's own objects (its Lease).
    #[arg(long, default_value = "kube-system", help_heading = "Controllers")]
    working_namespace: String,

    /// Kubeconfig to use (default: in-cluster credentials, then $KUBECONFIG / ~/.kube/config).
    #[arg(long, help_heading = "Cluster")]
    kubeconfig: Option<PathBuf>,
    /// Requests per second to the apiserver (client-side token bucket, as client-go).
    #[arg(long, default_value_t = 50.0, help_heading = "Cluster")]
    rest_config_qps: f32,
    /// Requests allowed at once above the steady rate.
    #[arg(long, default_value_t = 100, help_heading = "Cluster")]
    rest_config_burst: u32,
    /// Apply the OpenYurt CRDs (the definitions in deploy/crds) before starting.
    #[arg(long, help_heading = "Cluster")]
    install_crds: bool,

    /// Run controllers only while holding the Lease (needed with more than one replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, help_heading = "Leader election")]
    leader_elect: bool,
    /// How long a Lease stays valid for the other replicas without renewal.
    #[arg(long, default_value = "15s", value_parser = duration, help_heading = "Leader election")]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops its controllers.
    #[arg(long, default_value = "10s", value_parser = duration, help_heading = "Leader election")]
    leader_elect_renew_deadline: Duration,
    /// Pause between acquire/renew attempts.
    #[arg(long, default_value = "2s", value_parser = duration, help_heading = "Leader election")]
    leader_elect_retry_period: Duration,
    /// Name of the Lease.
    #[arg(long, default_value = "yurt-manager", help_heading = "Leader election")]
    leader_elect_resource_name: String,
    /// Namespace of the Lease (default: --working-namespace).
    #[arg(long, help_heading = "Leader election")]
    leader_elect_resource_namespace: Option<String>,

    /// Address of /metrics (`:port` listens on every interface; `0` disables).
    #[arg(long, default_value = ":10271", help_heading = "Listeners")]
    metrics_addr: String,
    /// Address of /healthz and /readyz (`0` disables).
    #[arg(long, default_value = ":10272", help_heading = "Listeners")]
    health_probe_addr: String,

    /// Port of the HTTPS admission and conversion webhooks (`0` disables the webhook server).
    #[arg(
        long,
        env = "WEBHOOK_PORT",
        default_value_t = 10273,
        help_heading = "Webhooks"
    )]
    webhook_port: u16,
    /// Host (DNS name or IP) kube-apiserver should call the webhooks at instead of the webhook
    /// Service, e.g. when the manager runs outside the cluster; the certificate covers it too.
    #[arg(long, env = "WEBHOOK_HOST", help_heading = "Webhooks")]
    webhook_host: Option<String>,
    /// Secret (in --working-namespace) holding the webhook CA and serving certificate.
    #[arg(
        long,
        env = "SECRET_NAME",
        default_value = "yurt-manager-webhook-certs",
        help_heading = "Webhooks"
    )]
    webhook_secret_name: String,
    /// Service (in --working-namespace) kube-apiserver calls the webhooks through.
    #[arg(
        long,
        env = "SERVICE_NAME",
        default_value = "yurt-manager-webhook-service",
        help_heading = "Webhooks"
    )]
    webhook_service_name: String,
}

/// Parses `:port`, `host:port` or `0` (disabled).
fn listen_addr(flag: &str, s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "0" || s.is_empty() {
        return Ok(None);
    }
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map(Some)
        .map_err(|_| format!("--{flag}: invalid address {s:?} (use :port or host:port)"))
}

async fn client(cli: &Cli) -> Result<kube::Client, String> {
    let config = match &cli.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster credentials (in-cluster or kubeconfig): {e}"))?,
    };
    if cli.rest_config_qps <= 0.0 {
        return Err("--rest-config-qps must be positive".into());
    }
    let limit = RateLimitLayer::new(cli.rest_config_qps, cli.rest_config_burst);
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build the API client: {e}"))?
        .with_layer(&limit)
        .build())
}

fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "yurt-manager".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}_{}{nanos:09}", std::process::id())
}

async fn run(cli: Cli) -> Result<(), String> {
    // Listen for SIGTERM / Ctrl-C from the start so a signal during start-up is not lost.
    let mut signal = Box::pin(shutdown_signal());
    if let Some(r) = futures::FutureExt::now_or_never(&mut signal) {
        return r.map_err(|e| format!("signal handler: {e}"));
    }
    let metrics_addr = listen_addr("metrics-addr", &cli.metrics_addr)?;
    let health_addr = listen_addr("health-probe-addr", &cli.health_probe_addr)?;
    let client = client(&cli).await?;

    if cli.install_crds {
        let names = install_crds(&client)
            .await
            .map_err(|e| format!("--install-crds: {e}"))?;
        println!("yurt-manager: applied CRDs {}", names.join(", "));
    }

    let config = ManagerConfig {
        working_namespace: cli.working_namespace.clone(),
        enable_sync_nodepool_configurations: cli.enable_sync_nodepool_configurations,
        max_nodes_per_bucket: cli.max_nodes_per_bucket as usize,
    };
    let mut builder = Manager::builder(client)
        .controllers(&cli.controllers)
        .config(config);
    let lease = cli.leader_elect.then(|| LeaseConfig {
        lease_duration: cli.leader_elect_lease_duration,
        renew_deadline: cli.leader_elect_renew_deadline,
        retry_period: cli.leader_elect_retry_period,
        ..LeaseConfig::new(
            cli.leader_elect_resource_namespace
                .as_deref()
                .unwrap_or(&cli.working_namespace),
            &cli.leader_elect_resource_name,
            &identity(),
        )
    });
    if let Some(lease) = &lease {
        builder = builder.leader_election(lease.clone());
    }
    let manager = builder.build().map_err(|e| e.to_string())?;

    let webhooks = if cli.webhook_port == 0 {
        None
    } else {
        // The webhook server needs the apiserver for its certificates: say so plainly if it is
        // not there, as the manager would.
        manager
            .context()
            .client
            .apiserver_version()
            .await
            .map_err(|e| format!("cannot reach the apiserver: {e}"))?;
        let config = WebhookConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], cli.webhook_port)),
            namespace: cli.working_namespace.clone(),
            service_name: cli.webhook_service_name.clone(),
            secret_name: cli.webhook_secret_name.clone(),
            host: cli.webhook_host.clone().filter(|h| !h.is_empty()),
            ..WebhookConfig::default()
        };
        let server = WebhookServer::bind(
            manager.context().client.clone(),
            config,
            manager.context().metrics.clone(),
        )
        .await
        .map_err(|e| format!("--webhook-port {}: {e}", cli.webhook_port))?;
        Some(server)
    };
    let state = ProbeState {
        metrics: manager.context().metrics.clone(),
        phase: manager.phase(),
    };

    let mut servers = tokio::task::JoinSet::new();
    if let Some(addr) = metrics_addr {
        let (local, serve) = probes::bind(addr, state.clone(), true)
            .await
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        servers.spawn(serve);
        println!("yurt-manager: metrics on http://{local}/metrics");
    }
    if let Some(addr) = health_addr {
        let (local, serve) = probes::bind(addr, state, false)
            .await
            .map_err(|e| format!("--health-probe-addr {addr}: {e}"))?;
        servers.spawn(serve);
        println!("yurt-manager: health probes on http://{local}/healthz and /readyz");
    }
    if let Some(server) = webhooks {
        let secret = match server.secret_outcome() {
            SecretOutcome::Reused => "reused",
            SecretOutcome::Created => "created",
            SecretOutcome::Replaced => "renewed",
        };
        println!(
            "yurt-manager: webhooks on https://{} (certificates {secret} in Secret {}/{})",
            server.local_addr(),
            cli.working_namespace,
            cli.webhook_secret_name
        );
        servers.spawn(server.serve());
    }
    println!("yurt-manager: controllers {}", manager.enabled().join(", "));
    match &lease {
        Some(l) => println!(
            "yurt-manager: leader election on Lease {}/{} as {}",
            l.namespace, l.name, l.identity
        ),
        None => println!("yurt-manager: leader election off"),
    }

    let stopped = async {
        let _ = (&mut signal).await;
        eprintln!("yurt-manager: shutting down");
    };
    let result = manager.run(stopped).await;
    servers.shutdown().await;
    match result {
        Ok(()) => {
            eprintln!("yurt-manager: stopped");
            Ok(())
        }
        Err(e @ Error::LeadershipLost(_)) => Err(format!("{e}; exiting to restart as a standby")),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("yurt-manager: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yurt-manager: {e}");
            ExitCode::FAILURE
        }
    }
}
