//! The layer 3 agent loop: watches Gateways, Nodes and the `kube-system/raven-cfg` ConfigMap,
//! and keeps the node's state equal to the plan for it.
//!
//! A sync (observe, diff, apply through the [`Engine`]) runs when any watched object changes,
//! every [`L3AgentConfig::sync_period`] (upstream's `--sync-raven-rules-period`, 10 minutes) so
//! that drift such as a deleted route is repaired, and again after
//! [`L3AgentConfig::retry_after`] when a sync failed. Nothing is applied before every watch has
//! listed its objects once, so a restarting agent never tears down state because its caches are
//! still empty. The switch `enable-l3-tunnel: "true"` in `raven-cfg` turns layer 3 on; with the
//! ConfigMap or the key absent, or any other value, the desired plan is empty (as upstream, the
//! gateway-pickup controller elects no tunnel endpoint then either).
//!
//! When the agent has a WireGuard public key ([`L3AgentConfig::public_key`]) it publishes it in
//! `config["publicKey"]` of every tunnel endpoint of its node in a Gateway's `spec.endpoints`,
//! with a merge patch that carries the Gateway's resourceVersion (a concurrent change makes it
//! fail with a conflict; the watch then delivers the new version and the patch is redone).
//!
//! On shutdown the loop tears down everything of ours.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::{DriverError, Engine};
use crate::l3::{ClusterView, PUBLIC_KEY_CONFIG, Plan, PlanConfig, plan};

/// Namespace and name of Raven's switches ConfigMap.
pub const RAVEN_CONFIG_NAMESPACE: &str = "kube-system";
/// Name of Raven's switches ConfigMap.
pub const RAVEN_CONFIG_MAP: &str = "raven-cfg";
/// Key turning the layer 3 tunnel on (`"true"`).
pub const ENABLE_L3_KEY: &str = "enable-l3-tunnel";
/// Key turning the layer 7 proxy on (`"true"`).
pub const ENABLE_L7_KEY: &str = "enable-l7-proxy";

/// Raven's feature switches, read from `raven-cfg`'s data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RavenSwitches {
    /// `enable-l3-tunnel`.
    pub l3: bool,
    /// `enable-l7-proxy`.
    pub l7: bool,
}

impl RavenSwitches {
    /// The switches of a ConfigMap (JSON), or all off without one. A key is on only when its
    /// value is `"true"` (case-insensitive, surrounding spaces ignored).
    pub fn from_config_map(cm: Option<&Value>) -> Self {
        let on = |k: &str| {
            cm.and_then(|c| c.pointer(&format!("/data/{k}")))
                .and_then(Value::as_str)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        Self {
            l3: on(ENABLE_L3_KEY),
            l7: on(ENABLE_L7_KEY),
        }
    }
}

/// How the layer 3 agent runs.
#[derive(Clone, Debug)]
pub struct L3AgentConfig {
    /// The local node's name.
    pub node_name: String,
    /// Planner knobs.
    pub plan: PlanConfig,
    /// Full re-sync period (drift repair).
    pub sync_period: Duration,
    /// Delay before retrying a failed sync.
    pub retry_after: Duration,
    /// This node's WireGuard public key (base64), published in its Gateway endpoints.
    pub public_key: Option<String>,
    /// Deadline of the teardown on shutdown.
    pub teardown_timeout: Duration,
}

impl L3AgentConfig {
    /// Defaults for `node_name`: the upstream 10-minute sync period, 5 s retry.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            plan: PlanConfig::default(),
            sync_period: Duration::from_secs(600),
            retry_after: Duration::from_secs(5),
            public_key: None,
            teardown_timeout: Duration::from_secs(30),
        }
    }
}

/// The `raven.openyurt.io/v1beta1` Gateway resource.
pub fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("raven.openyurt.io", "v1beta1", "Gateway"),
        "gateways",
    )
}

fn node_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Node"), "nodes")
}

fn config_map_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps")
}

/// Objects of one watch, by name, with a flag for "listed at least once".
#[derive(Default)]
struct Cache {
    objects: BTreeMap<String, Value>,
    pending: Option<BTreeMap<String, Value>>,
    ready: bool,
}

impl Cache {
    /// Folds one watch event in; returns whether the cache changed in a way worth a sync.
    fn apply(&mut self, event: watcher::Event<DynamicObject>) -> bool {
        let entry = |o: DynamicObject| {
            let name = o.metadata.name.clone().unwrap_or_default();
            (name, serde_json::to_value(o).unwrap_or_default())
        };
        match event {
            watcher::Event::Apply(o) => {
                let (k, v) = entry(o);
                self.objects.insert(k, v);
                self.ready
            }
            watcher::Event::Delete(o) => {
                let (k, _) = entry(o);
                self.objects.remove(&k);
                self.ready
            }
            watcher::Event::Init => {
                self.pending = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                let (k, v) = entry(o);
                self.pending.get_or_insert_with(BTreeMap::new).insert(k, v);
                false
            }
            watcher::Event::InitDone => {
                self.objects = self.pending.take().unwrap_or_default();
                self.ready = true;
                true
            }
        }
    }
}

type EventStream = std::pin::Pin<
    Box<dyn Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send>,
>;

fn watch(api: Api<DynamicObject>, config: watcher::Config) -> EventStream {
    watcher(api, config).default_backoff().boxed()
}

/// Runs the layer 3 agent until `shutdown` completes, then tears down its state. Returns the
/// teardown's error, if any; sync errors while running are logged and retried.
pub async fn run(
    client: kube::Client,
    engine: Engine,
    config: L3AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DriverError> {
    let gateways_api = Api::<DynamicObject>::all_with(client.clone(), &gateway_resource());
    let mut gateways_watch = watch(gateways_api.clone(), watcher::Config::default());
    let mut nodes_watch = watch(
        Api::all_with(client.clone(), &node_resource()),
        watcher::Config::default(),
    );
    let mut cm_watch = watch(
        Api::namespaced_with(client, RAVEN_CONFIG_NAMESPACE, &config_map_resource()),
        watcher::Config::default().fields(&format!("metadata.name={RAVEN_CONFIG_MAP}")),
    );
    let (mut gateways, mut nodes, mut cms) = (Cache::default(), Cache::default(), Cache::default());
    let mut period = tokio::time::interval(config.sync_period);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(retry, shutdown);
    let mut retry_armed = false;
    let mut dirty = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ev) = gateways_watch.next() => dirty |= fold(&mut gateways, ev, "gateways"),
            Some(ev) = nodes_watch.next() => dirty |= fold(&mut nodes, ev, "nodes"),
            Some(ev) = cm_watch.next() => dirty |= fold(&mut cms, ev, "raven-cfg"),
            _ = period.tick() => dirty = true,
            () = &mut retry, if retry_armed => {
                retry_armed = false;
                dirty = true;
            }
        }
        if !(dirty && gateways.ready && nodes.ready && cms.ready) {
            continue;
        }
        dirty = false;
        if let Some(key) = &config.public_key {
            publish_key(&gateways_api, &gateways, &config.node_name, key).await;
        }
        let switches = RavenSwitches::from_config_map(cms.objects.get(RAVEN_CONFIG_MAP));
        let desired = if switches.l3 {
            let view = ClusterView::from_json(gateways.objects.values(), nodes.objects.values());
            plan(&view, &config.node_name, &config.plan)
        } else {
            Plan::empty()
        };
        match engine.sync(&desired).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(changes = n, role = ?desired.role, "l3 state synced"),
            Err(e) => {
                tracing::warn!(error = %e, "l3 sync failed; retrying");
                retry
                    .as_mut()
                    .reset(tokio::time::Instant::now() + config.retry_after);
                retry_armed = true;
            }
        }
    }
    match tokio::time::timeout(config.teardown_timeout, engine.teardown()).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(DriverError::Netlink("teardown timed out".into())),
    }
}

fn fold(
    cache: &mut Cache,
    ev: Result<watcher::Event<DynamicObject>, watcher::Error>,
    what: &str,
) -> bool {
    match ev {
        Ok(ev) => cache.apply(ev),
        Err(e) => {
            tracing::warn!(error = %e, what, "l3 watch error");
            false
        }
    }
}

/// Sets `config["publicKey"]` on this node's tunnel endpoints where it is missing or stale.
async fn publish_key(api: &Api<DynamicObject>, gateways: &Cache, node: &str, key: &str) {
    for (name, gw) in &gateways.objects {
        let Some(mut endpoints) = gw
            .pointer("/spec/endpoints")
            .and_then(Value::as_array)
            .cloned()
        else {
            continue;
        };
        let mut changed = false;
        for ep in &mut endpoints {
            let mine = ep.get("nodeName").and_then(Value::as_str) == Some(node)
                && ep.get("type").and_then(Value::as_str) == Some("tunnel");
            let current = ep
                .pointer(&format!("/config/{PUBLIC_KEY_CONFIG}"))
                .and_then(Value::as_str);
            if mine && current != Some(key) {
                let Some(obj) = ep.as_object_mut() else {
                    continue;
                };
                let config = obj.entry("config").or_insert_with(|| json!({}));
                if !config.is_object() {
                    *config = json!({});
                }
                config[PUBLIC_KEY_CONFIG] = Value::String(key.to_owned());
                changed = true;
            }
        }
        if !changed {
            continue;
        }
        let rv = gw.pointer("/metadata/resourceVersion").cloned();
        let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"endpoints": endpoints}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(gateway = %name, "published the WireGuard public key"),
            Err(e) => tracing::warn!(gateway = %name, error = %e, "publishing the public key"),
        }
    }
}
