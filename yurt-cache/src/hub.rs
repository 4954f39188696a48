//! [`EdgeHub`]: the whole hub composed and running, for daemons, demos and tests that want
//! YurtHub's behaviour without wiring each part.
//!
//! [`EdgeHub::start`] opens the store, starts the health checker over the servers, composes
//! the [`ProxyStack`] (request info, metrics, response filters, multiplexer, kubelet lease, autonomy
//! condition, cache with offline serving, balancer) in edge mode, or a plain proxy (with the
//! filters) in cloud mode, follows ConfigMap `yurt-hub-cfg` and the filters' cluster view
//! through that stack, starts the reconnect task ([`Resync`]) and serves the
//! proxy and the management endpoints on their listeners. [`EdgeHub::shutdown`] stops
//! everything in the reverse order: listeners first (in-flight requests finish within
//! [`ServerConfig::drain_timeout`]), then the tasks, then the store (queued writes commit).
//!
//! A vendor with other needs composes the same parts itself; the `yurthub` example is flags
//! around this type.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use crate::admin::{AdminService, ProxyMetrics, Registry};
use crate::autonomy::AutonomyLayer;
use crate::balancer::{Balancer, Strategy};
use crate::cache::{CacheAgents, CacheLayer, CacheMetrics};
use crate::filter::{
    ClusterView, ExtraComponents, FilterConfig, FilterLayer, FilterSwitches, PoolSource,
    ViewWatcher, ViewWatcherConfig,
};
use crate::health::{HealthChecker, HealthConfig, HealthMetrics, HealthSnapshot, Probe};
use crate::hubconfig::{HubConfig, HubConfigWatcher};
use crate::lease::{KubeletLeaseLayer, KubeletLiveness};
use crate::local::{LocalConfig, LocalServer};
use crate::multiplex::{MultiplexLayer, PoolScopeResources};
use crate::resync::{Resync, ResyncConfig, ResyncMetrics};
use crate::server::{ProxyStack, Server, ServerConfig, ServerMetrics};
use crate::store::{RedbStore, StoreConfig, StoreError};
use crate::upstream::UpstreamClient;

/// Where the hub runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkingMode {
    /// Proxy, cache, offline serving, autonomy.
    Edge,
    /// Proxy only (nodes in the cloud): nothing is cached.
    Cloud,
}

/// The response filters of an [`EdgeHub`].
#[derive(Debug, Clone)]
pub struct FilterSettings {
    /// Which filters run (`--enable-resource-filter`, `--disabled-resource-filters`).
    pub switches: FilterSwitches,
    /// The node, its pool and the hub's address the filters use.
    pub config: FilterConfig,
    /// Where pool membership comes from (NodePools, NodeBuckets or nowhere).
    pub pools: PoolSource,
}

/// Everything [`EdgeHub::start`] needs.
#[derive(Debug, Clone)]
pub struct EdgeHubConfig {
    /// This node's name.
    pub node_name: String,
    /// The kube-apiservers, in flag order.
    pub servers: Vec<Uri>,
    /// The store (its `node_name` is set from [`node_name`](Self::node_name) when empty).
    pub store: StoreConfig,
    /// Where the proxy listens (`127.0.0.1:10261`).
    pub proxy_addr: SocketAddr,
    /// Where the management server listens (`127.0.0.1:10267`).
    pub admin_addr: SocketAddr,
    /// Balancing among healthy servers.
    pub strategy: Strategy,
    /// The health checker (probe, interval, thresholds).
    pub health: HealthConfig,
    /// Kubelet's lease grace period; `None` disables the kubelet liveness coupling (the
    /// heartbeat then never depends on kubelet).
    pub kubelet_grace: Option<Duration>,
    /// Offline serving settings (`--min-request-timeout`, ...).
    pub local: LocalConfig,
    /// Reconnect settings.
    pub resync: ResyncConfig,
    /// Edge or cloud.
    pub mode: WorkingMode,
    /// Namespace of ConfigMap `yurt-hub-cfg`.
    pub hubconfig_namespace: String,
    /// Settings of both listeners (drain timeout, header read timeout, connection cap); their
    /// metrics are set per listener (`proxy`, `management`) by [`EdgeHub::start`].
    pub server: ServerConfig,
    /// The response filters; `None`, or every filter switched off, runs none.
    pub filters: Option<FilterSettings>,
    /// Resources every local client's list/watch shares one upstream feed of
    /// (`--pool-scope-resources`); empty runs no multiplexer.
    pub multiplex: PoolScopeResources,
}

impl EdgeHubConfig {
    /// Upstream YurtHub's defaults for `node_name`, `servers` and a store file.
    pub fn new(
        node_name: &str,
        servers: Vec<Uri>,
        store_path: impl Into<std::path::PathBuf>,
    ) -> Self {
        let mut store = StoreConfig::new(store_path);
        store.node_name = Some(node_name.to_owned());
        EdgeHubConfig {
            node_name: node_name.to_owned(),
            servers,
            store,
            proxy_addr: SocketAddr::from(([127, 0, 0, 1], 10261)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 10267)),
            strategy: Strategy::RoundRobin,
            health: HealthConfig::lease(node_name),
            kubelet_grace: Some(Duration::from_secs(40)),
            local: LocalConfig::new(node_name),
            resync: ResyncConfig::new(node_name),
            mode: WorkingMode::Edge,
            hubconfig_namespace: "kube-system".to_owned(),
            server: ServerConfig::default(),
            filters: None,
            multiplex: PoolScopeResources::default(),
        }
    }
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cache store {path}: {source}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Listen {
        /// Which one.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The running hub; see the [module docs](self).
#[derive(Debug)]
pub struct EdgeHub {
    proxy: Server,
    admin: Server,
    hubconfig: HubConfigWatcher,
    view_watcher: Option<ViewWatcher>,
    multiplex: Option<MultiplexLayer>,
    checker: HealthChecker,
    resync: Option<Resync>,
    store: RedbStore,
    stack: ProxyStack,
    local: Option<LocalServer>,
    cache_metrics: Option<CacheMetrics>,
    liveness: Option<KubeletLiveness>,
}

impl EdgeHub {
    /// Starts the hub; `upstream` is the client with the hub's credentials.
    pub async fn start(
        config: EdgeHubConfig,
        upstream: UpstreamClient,
    ) -> Result<EdgeHub, StartError> {
        let node = config.node_name.clone();
        let mut store_config = config.store.clone();
        if store_config.node_name.is_none() {
            store_config.node_name = Some(node.clone());
        }
        let path = store_config.path.display().to_string();
        let store = RedbStore::open_async(store_config)
            .await
            .map_err(|source| StartError::Store { path, source })?;

        let mut registry = Registry::default();
        let health_metrics = HealthMetrics::default();
        health_metrics.register(&mut registry);
        store.metrics().register(&mut registry);
        let proxy_metrics = ProxyMetrics::new();
        proxy_metrics.register(&mut registry);
        let server_metrics = ServerMetrics::default();
        server_metrics.register(&mut registry);

        let edge = config.mode == WorkingMode::Edge;
        let mut health_config = config.health.clone().metrics(health_metrics);
        let liveness = match (edge, config.kubelet_grace) {
            (true, Some(grace)) => {
                let l = KubeletLiveness::new(grace);
                health_config = health_config.kubelet_liveness(l.clone());
                Some(l)
            }
            _ => None,
        };
        let kubelet_lease = match (edge, &liveness) {
            (true, Some(l)) => Some(KubeletLeaseLayer::new(node.clone(), l.clone())),
            (true, None) => Some(KubeletLeaseLayer::new(
                node.clone(),
                KubeletLiveness::new(Duration::from_secs(u32::MAX as u64)),
            )),
            (false, _) => None,
        };
        if let Probe::Lease(lease) = &mut health_config.probe {
            lease.node_name = node.clone();
        }
        let checker = HealthChecker::spawn(upstream.clone(), config.servers.clone(), health_config);
        let balancer = Balancer::new(upstream, checker.subscribe(), config.strategy);

        let (agents_tx, agents_rx) = tokio::sync::watch::channel(CacheAgents::defaults(&node));
        let mut cache_metrics = None;
        let (cache, local, autonomy) = if edge {
            let local = LocalServer::new(store.clone(), checker.subscribe(), config.local.clone());
            local.metrics().register(&mut registry);
            let layer = CacheLayer::new(store.clone(), agents_rx).serve_offline(local.clone());
            layer.metrics().register(&mut registry);
            let store_metrics = store.metrics().clone();
            let layer_metrics = layer.metrics().clone();
            let autonomy = AutonomyLayer::new(&node)
                .cache_errors(move || {
                    store_metrics.failed_commits.get() + layer_metrics.failure_count("store")
                })
                .health(checker.subscribe());
            cache_metrics = Some(layer.metrics().clone());
            (Some(layer), Some(local), Some(autonomy))
        } else {
            (None, None, None)
        };
        let resync = edge.then(|| {
            let r = Resync::spawn(
                balancer.clone(),
                store.clone(),
                checker.subscribe(),
                config.resync.clone(),
            );
            r.metrics().register(&mut registry);
            r
        });
        // The filters read the cluster view, followed through the stack itself.
        let (extra_tx, extra_rx) = tokio::sync::watch::channel(ExtraComponents::default());
        let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(ClusterView::new()));
        let filters = config.filters.clone().filter(|f| f.switches.any_enabled());
        let filter = filters
            .as_ref()
            .map(|f| FilterLayer::new(f.config.clone(), f.switches.clone(), extra_rx, view_rx));
        let multiplex = (config.multiplex.iter().next().is_some()).then(|| {
            let layer = MultiplexLayer::new(node.clone(), config.multiplex.clone());
            layer.metrics().register(&mut registry);
            layer
        });
        let stack = ProxyStack::builder(balancer, proxy_metrics)
            .filter(filter)
            .multiplex(multiplex.clone())
            .kubelet_lease(kubelet_lease)
            .autonomy(autonomy)
            .cache(cache)
            .build();
        let hubconfig = HubConfigWatcher::spawn_with_filters(
            stack.clone(),
            agents_tx,
            extra_tx,
            HubConfig::new(&node).namespace(&config.hubconfig_namespace),
        );
        let view_watcher = filters.as_ref().map(|f| {
            ViewWatcher::spawn(
                stack.clone(),
                view_tx,
                ViewWatcherConfig::default().pools(f.pools),
            )
        });
        let mut admin = AdminService::new(store.clone(), checker.subscribe(), registry)
            .ready_gate("yurt-hub-cfg", hubconfig.synced());
        if let Some(w) = &view_watcher {
            admin = admin.ready_gate("resource filters", w.synced());
        }
        if let Some(r) = &resync {
            admin = admin.ready_gate("offline journal replay", r.replay_ok());
        }
        let proxy_server = config
            .server
            .clone()
            .metrics(server_metrics.listener("proxy"));
        let admin_server = config
            .server
            .clone()
            .metrics(server_metrics.listener("management"));
        let proxy = Server::bind(config.proxy_addr, stack.clone(), proxy_server)
            .await
            .map_err(|source| StartError::Listen {
                what: "the proxy address",
                addr: config.proxy_addr,
                source,
            })?;
        let admin = Server::bind(config.admin_addr, admin, admin_server)
            .await
            .map_err(|source| StartError::Listen {
                what: "the management address",
                addr: config.admin_addr,
                source,
            })?;
        Ok(EdgeHub {
            proxy,
            admin,
            hubconfig,
            view_watcher,
            multiplex,
            checker,
            resync,
            store,
            stack,
            local,
            cache_metrics,
            liveness,
        })
    }

    /// Where the proxy listens.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Where the management server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The store.
    pub fn store(&self) -> &RedbStore {
        &self.store
    }

    /// The proxy stack (to send requests through the hub without a socket).
    pub fn stack(&self) -> ProxyStack {
        self.stack.clone()
    }

    /// The servers' health.
    pub fn health(&self) -> tokio::sync::watch::Receiver<HealthSnapshot> {
        self.checker.subscribe()
    }

    /// Asks the health checker to probe now instead of at its next interval.
    pub fn probe_now(&self) {
        self.checker.probe_now();
    }

    /// The cache agents in force (defaults plus ConfigMap `yurt-hub-cfg`).
    pub fn agents(&self) -> tokio::sync::watch::Receiver<CacheAgents> {
        self.hubconfig.agents()
    }

    /// Offline serving (edge mode).
    pub fn local(&self) -> Option<&LocalServer> {
        self.local.as_ref()
    }

    /// The cache layer's counters (edge mode).
    pub fn cache_metrics(&self) -> Option<&CacheMetrics> {
        self.cache_metrics.as_ref()
    }

    /// The reconnect task's counters (edge mode).
    pub fn resync_metrics(&self) -> Option<&ResyncMetrics> {
        self.resync.as_ref().map(|r| r.metrics())
    }

    /// Kubelet's liveness, when coupled.
    pub fn kubelet_liveness(&self) -> Option<&KubeletLiveness> {
        self.liveness.as_ref()
    }

    /// Stops listening (in-flight requests finish within the drain timeout), stops the
    /// tasks and closes the store.
    pub async fn shutdown(self) {
        // Long-lived watches would hold the drain open: end them first.
        if let Some(local) = &self.local {
            local.close_watches();
        }
        if let Some(m) = &self.multiplex {
            m.shutdown();
        }
        let (p, a) = tokio::join!(self.proxy.shutdown(), self.admin.shutdown());
        tracing::info!(proxy = ?p, management = ?a, "hub listeners drained");
        if let Some(r) = self.resync {
            r.shutdown().await;
        }
        self.hubconfig.shutdown().await;
        if let Some(w) = self.view_watcher {
            w.shutdown().await;
        }
        self.checker.shutdown().await;
        self.store.shutdown().await;
    }
}
