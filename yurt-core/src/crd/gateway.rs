//! Gateway (`raven.openyurt.io/v1beta1`, cluster-scoped): the Raven gateway of one network
//! domain (usually one NodePool): which nodes it serves, and the endpoints through which other
//! domains reach it by layer 7 proxy or layer 3 tunnel.
//!
//! Upstream quirk kept for compatibility: the replica count in `proxyConfig` and `tunnelConfig`
//! is spelled `Replicas` (capital R) in JSON.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Port the Raven proxy server serves TLS on, on gateway nodes.
pub const DEFAULT_PROXY_SERVER_SECURE_PORT: u16 = 10263;
/// Port the Raven proxy server serves plain HTTP on, on gateway nodes.
pub const DEFAULT_PROXY_SERVER_INSECURE_PORT: u16 = 10264;
/// Port a `proxy` endpoint is exposed on when its `port` is unset.
pub const DEFAULT_PROXY_SERVER_EXPOSED_PORT: u16 = 10262;
/// Port a `tunnel` endpoint is exposed on when its `port` is unset (IPsec NAT traversal).
pub const DEFAULT_TUNNEL_SERVER_EXPOSED_PORT: u16 = 4500;

/// Desired state of a Gateway.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "raven.openyurt.io",
    version = "v1beta1",
    kind = "Gateway",
    plural = "gateways",
    shortname = "gw",
    category = "yurt",
    status = "GatewayStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Raven Gateway connects one network domain (usually a NodePool) to the others, through layer 7 proxy and layer 3 tunnel endpoints on some of its nodes."
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Selects the nodes this gateway serves; they must share one layer 3 network. Defaults to
    /// nodes labelled `raven.openyurt.io/gateway=<gateway name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Layer 7 proxy settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<ProxyConfiguration>,

    /// Layer 3 tunnel settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_config: Option<TunnelConfiguration>,

    /// Nodes that may serve as this gateway's proxy or tunnel endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,

    /// How the gateway is exposed to other domains: `PublicIP`, `LoadBalancer`, or empty (not
    /// exposed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_type: Option<ExposeType>,
}

/// Layer 7 proxy settings of a gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyConfiguration {
    /// Number of endpoints that run the proxy at the same time.
    #[serde(rename = "Replicas")]
    pub replicas: i32,

    /// Ports reached over plain HTTP through the proxy, comma separated (such as `10255,9445`).
    #[serde(rename = "proxyHTTPPort", skip_serializing_if = "Option::is_none")]
    pub proxy_http_port: Option<String>,

    /// Ports reached over HTTPS through the proxy, comma separated (such as `10250,9100`).
    #[serde(rename = "proxyHTTPSPort", skip_serializing_if = "Option::is_none")]
    pub proxy_https_port: Option<String>,
}

/// Layer 3 tunnel settings of a gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TunnelConfiguration {
    /// Number of endpoints that run the tunnel at the same time (at most 1).
    #[serde(rename = "Replicas")]
    pub replicas: i32,
}

/// A node that can terminate the gateway's proxy or tunnel traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Name of the node hosting the endpoint.
    pub node_name: String,

    /// Whether the endpoint serves the layer 7 proxy or the layer 3 tunnel.
    #[serde(rename = "type")]
    pub type_: EndpointType,

    /// Port the endpoint is exposed on. Defaults to 10262 for `proxy` and 4500 for `tunnel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,

    /// The node is behind NAT.
    #[serde(rename = "underNAT", skip_serializing_if = "Option::is_none")]
    pub under_nat: Option<bool>,

    /// The kind of NAT the node is behind, as detected by the Raven agent.
    #[serde(rename = "natType", skip_serializing_if = "Option::is_none")]
    pub nat_type: Option<String>,

    /// The node's public IP address.
    #[serde(rename = "publicIP", skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,

    /// Public port used for NAT traversal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_port: Option<i32>,

    /// Settings passed to the node's Raven agent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Endpoint {
    /// The endpoint's port, or its type's default when `port` is unset or zero.
    pub fn port_or_default(&self) -> i32 {
        match self.port {
            Some(port) if port != 0 => port,
            _ => i32::from(self.type_.default_port()),
        }
    }
}

/// What an endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = super::drop_description)]
pub enum EndpointType {
    /// The layer 7 proxy (kubectl logs/exec, metrics scraping across domains).
    Proxy,
    /// The layer 3 tunnel (pod-to-pod traffic across domains).
    Tunnel,
}

impl EndpointType {
    /// The value as written in the API (`proxy` or `tunnel`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointType::Proxy => "proxy",
            EndpointType::Tunnel => "tunnel",
        }
    }

    /// The port an endpoint of this type is exposed on when its `port` is unset.
    pub fn default_port(self) -> u16 {
        match self {
            EndpointType::Proxy => DEFAULT_PROXY_SERVER_EXPOSED_PORT,
            EndpointType::Tunnel => DEFAULT_TUNNEL_SERVER_EXPOSED_PORT,
        }
    }
}

/// How a gateway is exposed to other network domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = super::drop_description)]
pub enum ExposeType {
    /// Not exposed through a Service (written as the empty string).
    #[serde(rename = "")]
    Unexposed,
    /// Exposed on the endpoint nodes' public IP addresses.
    #[serde(rename = "PublicIP")]
    PublicIp,
    /// Exposed through a Service of type LoadBalancer.
    LoadBalancer,
}

impl ExposeType {
    /// The value as written in the API (``, `PublicIP` or `LoadBalancer`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExposeType::Unexposed => "",
            ExposeType::PublicIp => "PublicIP",
            ExposeType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Observed state of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// The nodes the gateway serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeInfo>,

    /// The endpoints currently elected to serve the proxy and the tunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_endpoints: Vec<Endpoint>,
}

/// A node served by a gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// Name of the node.
    pub node_name: String,
    /// The node's private IP address.
    #[serde(rename = "privateIP")]
    pub private_ip: String,
    /// The node's pod CIDRs.
    pub subnets: Vec<String>,
}
