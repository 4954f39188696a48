//! OpenYurt's well-known labels, annotations, object names, condition types and ports.
//!
//! An operator migrating from OpenYurt keeps their nodes, pools and manifests, so every key here
//! is spelled exactly as upstream spells it (see `reference/openyurt.md` §1.2, §1.4, §2.5 and §3).
//! Code anywhere in yurt-rs refers to these constants rather than string literals, so a reader
//! can find every place that honours, say, the autonomy annotation with one search.

/// Node labels.
pub mod node {
    /// Node label: the NodePool this node belongs to (`apps.openyurt.io/nodepool=<pool>`).
    pub const NODEPOOL_LABEL: &str = "apps.openyurt.io/nodepool";
    /// Node label (legacy): the pool a node asked to join; copied into [`NODEPOOL_LABEL`].
    pub const DESIRED_NODEPOOL_LABEL: &str = "apps.openyurt.io/desired-nodepool";
    /// Node label: `"true"` on edge workers, `"false"` on cloud nodes.
    pub const IS_EDGE_WORKER_LABEL: &str = "openyurt.io/is-edge-worker";
    /// Node label: the node's pool is host-network (immutable once set).
    pub const HOST_NETWORK_LABEL: &str = "nodepool.openyurt.io/hostnetwork";
    /// Node label (legacy yurt-tunnel): nodes that run the reverse-tunnel agent.
    pub const ENABLE_REVERSE_TUNNEL_CLIENT_LABEL: &str =
        "openyurt.io/edge-enable-reverseTunnel-client";
    /// Node label: the raven Gateway this node belongs to.
    pub const RAVEN_GATEWAY_LABEL: &str = "raven.openyurt.io/gateway";

    /// Node annotation (deprecated): `"true"` enables autonomy forever.
    pub const AUTONOMY_ANNOTATION: &str = "node.beta.openyurt.io/autonomy";
    /// Node annotation: a Go duration (`"10m"`) for which pods tolerate NotReady/Unreachable;
    /// `"0"` means forever.
    pub const AUTONOMY_DURATION_ANNOTATION: &str = "node.openyurt.io/autonomy-duration";
    /// Node annotation: `"true"` binds pods to the node forever (highest precedence).
    pub const BINDING_ANNOTATION: &str = "apps.openyurt.io/binding";
    /// Node annotation: JSON of the pool labels/annotations/taints last synced onto the node, so
    /// removed keys can be removed.
    pub const PREVIOUS_ATTRIBUTES_ANNOTATION: &str = "nodepool.openyurt.io/previous-attributes";

    /// Node condition set by the hub: whether the node can run autonomously.
    pub const AUTONOMY_CONDITION: &str = "Autonomy";
    /// Node condition set during label-driven node conversion.
    pub const CONVERSION_FAILED_CONDITION: &str = "YurtNodeConversionFailed";
}

/// NodePool, NodeBucket and pool-workload keys.
pub mod pool {
    /// NodePool label: the pool type lower-cased (`edge` / `cloud`).
    pub const TYPE_LABEL: &str = "nodepool.openyurt.io/type";
    /// Label on NodeBuckets and PoolServices: the pool they belong to.
    pub const POOL_NAME_LABEL: &str = "openyurt.io/pool-name";
    /// Workload label set by the YurtAppSet controller: the pool the workload serves.
    pub const APPS_POOL_NAME_LABEL: &str = "apps.openyurt.io/pool-name";
    /// Workload label: the YurtAppSet revision hash.
    pub const CONTROLLER_REVISION_HASH_LABEL: &str = "apps.openyurt.io/controller-revision-hash";
    /// Workload label: the owning YurtAppSet.
    pub const REF_YURTAPPSET_LABEL: &str = "apps.openyurt.io/ref-yurtappset";
    /// Workload annotation: the NodePool the workload was rendered for.
    pub const REF_NODEPOOL_ANNOTATION: &str = "apps.openyurt.io/ref-nodepool";
    /// Workload annotation: the patch applied for the pool.
    pub const PATCH_ANNOTATION: &str = "apps.openyurt.io/patch";
    /// Placeholder substituted with the pool name in YurtAppSet tweak patches.
    pub const NODEPOOL_NAME_PLACEHOLDER: &str = "{{nodepool-name}}";
    /// Pod annotation: `"true"` keeps the pod off host-network pools.
    pub const EXCLUDE_HOST_NETWORK_POOL_ANNOTATION: &str =
        "apps.openyurt.io/exclude-host-network-pool";
    /// Pod annotation: the `node.kubernetes.io/not-ready` tolerationSeconds saved before autonomy.
    pub const ORIGINAL_NOT_READY_TOLERATION_ANNOTATION: &str =
        "apps.openyurt.io/original-not-ready-toleration-duration";
    /// Pod annotation: the `node.kubernetes.io/unreachable` tolerationSeconds saved before autonomy.
    pub const ORIGINAL_UNREACHABLE_TOLERATION_ANNOTATION: &str =
        "apps.openyurt.io/original-unreachable-toleration-duration";
    /// DaemonSet annotation: `OTA` or `AdvancedRollingUpdate`.
    pub const UPDATE_STRATEGY_ANNOTATION: &str = "apps.openyurt.io/update-strategy";
    /// DaemonSet annotation: max unavailable pods for AdvancedRollingUpdate (default `10%`).
    pub const MAX_UNAVAILABLE_ANNOTATION: &str = "apps.openyurt.io/max-unavailable";
    /// ConfigMap/pod annotation: the YurtStaticSet manifest hash.
    pub const STATIC_POD_HASH_ANNOTATION: &str = "openyurt.io/static-pod-hash";
    /// Pod condition: the pod's template is outdated and waits for an OTA upgrade.
    pub const POD_NEED_UPGRADE_CONDITION: &str = "PodNeedUpgrade";
    /// Pod condition: the images of the pending upgrade are pre-pulled.
    pub const POD_IMAGE_READY_CONDITION: &str = "PodImageReady";
    /// Job label: node-conversion jobs.
    pub const CONVERSION_NODE_LABEL: &str = "openyurt.io/conversion-node";
}

/// Service and endpoint keys used by the hub's response filters.
pub mod service {
    /// Service annotation: topology scope of endpoints (`kubernetes.io/hostname`,
    /// `openyurt.io/nodepool` or `kubernetes.io/zone`).
    pub const TOPOLOGY_KEYS_ANNOTATION: &str = "openyurt.io/topologyKeys";
    /// Endpoints/EndpointSlice annotation: a timestamp written to force re-delivery to watchers.
    pub const UPDATE_TRIGGER_ANNOTATION: &str = "openyurt.io/update-trigger";
    /// LoadBalancer Service annotation: `"true"` hides the service from edge kube-proxy.
    pub const DISCARD_ANNOTATION: &str = "svc.openyurt.io/discard";
    /// Service annotation: pools where the NodePort is listened (`pool`, `-pool`, `*`).
    pub const NODEPORT_LISTEN_ANNOTATION: &str = "nodeport.openyurt.io/listen";
    /// LoadBalancer Service annotation: NodePools selected for per-pool load balancers.
    pub const NODEPOOL_LABELSELECTOR_ANNOTATION: &str =
        "service.openyurt.io/nodepool-labelselector";
    /// PoolService label: the Service it was made for.
    pub const POOLSERVICE_SERVICE_NAME_LABEL: &str = "openyurt.io/service-name";
    /// PoolService label: the controller that manages it.
    pub const POOLSERVICE_MANAGED_BY_LABEL: &str = "poolservice.openyurt.io/managed-by";
    /// Value of [`TOPOLOGY_KEYS_ANNOTATION`]: endpoints on the same node only.
    pub const TOPOLOGY_HOSTNAME: &str = "kubernetes.io/hostname";
    /// Value of [`TOPOLOGY_KEYS_ANNOTATION`]: endpoints in the same NodePool only.
    pub const TOPOLOGY_NODEPOOL: &str = "openyurt.io/nodepool";
    /// Value of [`TOPOLOGY_KEYS_ANNOTATION`]: endpoints in the same zone (treated as the pool).
    pub const TOPOLOGY_ZONE: &str = "kubernetes.io/zone";
}

/// Raven (tunnel/gateway) keys and ports.
pub mod raven {
    /// Service label on raven public services: the gateway.
    pub const GATEWAY_LABEL: &str = "raven.openyurt.io/gateway";
    /// Service label: `proxy` or `tunnel`.
    pub const GATEWAY_TYPE_LABEL: &str = "raven.openyurt.io/gateway-type";
    /// Service label: the endpoints object name.
    pub const ENDPOINTS_NAME_LABEL: &str = "raven.openyurt.io/endpoints-name";
    /// Gateway annotation: extra subnets routed via the gateway.
    pub const EXTRA_ALLOWED_SOURCE_CIDRS_ANNOTATION: &str =
        "raven.openyurt.io/extra-allowed-source-cidrs";
    /// ConfigMap (kube-system) with `enable-l7-proxy` / `enable-l3-tunnel`.
    pub const RAVEN_CONFIGMAP: &str = "raven-cfg";
    /// ConfigMap with agent settings (`proxy-internal-secure-addr`, ...).
    pub const RAVEN_AGENT_CONFIGMAP: &str = "raven-agent-config";
    /// ConfigMap (kube-system) whose key `tunnel-nodes` feeds CoreDNS `hosts`.
    pub const EDGE_TUNNEL_NODES_CONFIGMAP: &str = "edge-tunnel-nodes";
    /// Key of [`EDGE_TUNNEL_NODES_CONFIGMAP`].
    pub const TUNNEL_NODES_KEY: &str = "tunnel-nodes";
    /// ClusterIP Service in front of the active proxy servers.
    pub const PROXY_INTERNAL_SERVICE: &str = "x-raven-proxy-internal-svc";
    /// Port agents dial on the exposed proxy server.
    pub const PROXY_EXPOSED_PORT: u16 = 10262;
    /// Secure (HTTPS) listener of the proxy server for cloud clients.
    pub const PROXY_SECURE_PORT: u16 = 10263;
    /// Insecure (HTTP) listener of the proxy server for cloud clients.
    pub const PROXY_INSECURE_PORT: u16 = 10264;
    /// Exposed L3 tunnel port (UDP).
    pub const TUNNEL_EXPOSED_PORT: u16 = 4500;
    /// Tunnel agent metrics port.
    pub const TUNNEL_METRICS_PORT: u16 = 10265;
    /// Proxy agent metrics port.
    pub const PROXY_METRICS_PORT: u16 = 10266;
    /// Agent health port.
    pub const HEALTH_PORT: u16 = 10275;
}

/// YurtHub names, ports and cached components.
pub mod hub {
    /// Insecure proxy port kubelet and friends talk to (`--proxy-port`).
    pub const PROXY_PORT: u16 = 10261;
    /// Secure proxy port for in-cluster clients (`--proxy-secure-port`).
    pub const PROXY_SECURE_PORT: u16 = 10268;
    /// Hub management port: healthz, readyz, metrics (`--serve-port`).
    pub const SERVE_PORT: u16 = 10267;
    /// Pool leader port followers reach (`--multiplexer-port`).
    pub const MULTIPLEXER_PORT: u16 = 10269;
    /// Default dummy interface address (`--dummy-if-ip`).
    pub const DUMMY_IF_IP: &str = "169.254.2.1";
    /// Default dummy interface name (`--dummy-if-name`).
    pub const DUMMY_IF_NAME: &str = "hub-dummy0";
    /// ConfigMap (kube-system) that configures cache agents and filters.
    pub const HUB_CONFIGMAP: &str = "yurt-hub-cfg";
    /// Label every hub ConfigMap must carry (value = the ConfigMap name).
    pub const CONFIGMAP_NAME_LABEL: &str = "openyurt.io/configmap-name";
    /// Key of [`HUB_CONFIGMAP`]: extra cached components, comma-separated, or `*`.
    pub const CACHE_AGENTS_KEY: &str = "cache_agents";
    /// Components cached by default (`multiplexer-proxy-<node>` is added per node).
    pub const DEFAULT_CACHE_AGENTS: &[&str] = &[
        "kubelet",
        "kube-proxy",
        "flanneld",
        "coredns",
        "raven-agent-ds",
        "yurttunnel-agent",
        "yurthub",
    ];
    /// User-Agent prefix of the hub's own multiplexer: `multiplexer-proxy-<node>`.
    pub const MULTIPLEXER_AGENT_PREFIX: &str = "multiplexer-proxy-";
    /// Lease annotation (legacy coordinator): heartbeats delegated by the pool.
    pub const DELEGATE_HEARTBEAT_ANNOTATION: &str = "openyurt.io/delegate-heartbeat";
    /// Default cache directory of upstream YurtHub (`--disk-cache-path`).
    pub const DEFAULT_DISK_CACHE_PATH: &str = "/etc/kubernetes/cache/";
}

/// yurt-manager ports and names.
pub mod manager {
    /// Metrics endpoint (`--metrics-addr :10271`).
    pub const METRICS_PORT: u16 = 10271;
    /// Health probes (`--health-probe-addr :10272`).
    pub const HEALTH_PROBE_PORT: u16 = 10272;
    /// Webhook server (`--webhook-port`).
    pub const WEBHOOK_PORT: u16 = 10273;
    /// Leader-election Lease name (in `--working-namespace`, default `kube-system`).
    pub const LEADER_ELECTION_LEASE: &str = "yurt-manager";
    /// Default working namespace.
    pub const WORKING_NAMESPACE: &str = "kube-system";
}

/// API groups of the OpenYurt CRDs.
pub mod group {
    /// NodePool, NodeBucket, YurtAppSet, YurtStaticSet.
    pub const APPS: &str = "apps.openyurt.io";
    /// Gateway.
    pub const RAVEN: &str = "raven.openyurt.io";
    /// PoolService.
    pub const NETWORK: &str = "network.openyurt.io";
    /// PlatformAdmin, Device, DeviceService, DeviceProfile.
    pub const IOT: &str = "iot.openyurt.io";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_are_valid_qualified_names() {
        // prefix (DNS subdomain) + '/' + name (<= 63 chars, alphanumeric ends), as Kubernetes
        // validates label and annotation keys.
        let keys = [
            node::NODEPOOL_LABEL,
            node::DESIRED_NODEPOOL_LABEL,
            node::IS_EDGE_WORKER_LABEL,
            node::HOST_NETWORK_LABEL,
            node::ENABLE_REVERSE_TUNNEL_CLIENT_LABEL,
            node::AUTONOMY_ANNOTATION,
            node::AUTONOMY_DURATION_ANNOTATION,
            node::BINDING_ANNOTATION,
            node::PREVIOUS_ATTRIBUTES_ANNOTATION,
            pool::TYPE_LABEL,
            pool::POOL_NAME_LABEL,
            pool::CONTROLLER_REVISION_HASH_LABEL,
            pool::ORIGINAL_UNREACHABLE_TOLERATION_ANNOTATION,
            service::TOPOLOGY_KEYS_ANNOTATION,
            service::NODEPOOL_LABELSELECTOR_ANNOTATION,
            raven::EXTRA_ALLOWED_SOURCE_CIDRS_ANNOTATION,
            hub::CONFIGMAP_NAME_LABEL,
        ];
        for key in keys {
            let (prefix, name) = key.split_once('/').expect(key);
            assert!(prefix.len() <= 253 && prefix.contains('.'), "{key}");
            assert!(!name.is_empty() && name.len() <= 63, "{key}");
            let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            assert!(
                alnum(name.chars().next()) && alnum(name.chars().last()),
                "{key}"
            );
        }
    }
}
