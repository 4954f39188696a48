//! The planner's input: a small, validated picture of the cluster built from Gateway and Node
//! objects in their JSON form (as the tunnel reads Nodes elsewhere, so this crate needs no
//! Kubernetes type crate), or, with the `crd` feature, from yurt-core's Gateway type. Values that do not parse (a subnet that is not a CIDR, a public key that is not
//! 32 bytes of base64, an unknown NAT type) are dropped or read as "unknown" here, so the planner
//! only ever sees well-formed data and a bad field on one object cannot stop the rest of the
//! cluster from being planned.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;
use yurt_core::wellknown::node::RAVEN_GATEWAY_LABEL;

use super::cidr::Cidr;

/// Key of a tunnel endpoint's `config` map holding the node's WireGuard public key.
pub const PUBLIC_KEY_CONFIG: &str = "publicKey";

/// Port a tunnel endpoint is exposed on when its `port` is unset (as upstream).
pub const DEFAULT_TUNNEL_PORT: u16 = 4500;

/// The kind of NAT a gateway node sits behind, as the Raven agent's STUN probe reports it in
/// `natType`. Only `Symmetric` and `PortRestricted` change what the planner does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NatType {
    /// Not detected or not understood: no direct edge-to-edge tunnel is attempted.
    #[default]
    Undefined,
    /// No NAT: the address is public.
    None,
    /// Full-cone NAT.
    FullCone,
    /// Address-restricted cone NAT.
    Restricted,
    /// Port-restricted cone NAT.
    PortRestricted,
    /// Symmetric NAT (a new mapping per destination).
    Symmetric,
}

impl NatType {
    /// Reads the `natType` field. Case, `-`, `_` and spaces are ignored (`Port-Restricted`,
    /// `port_restricted` and `PortRestricted` are the same); anything else is `Undefined`.
    pub fn parse(s: &str) -> Self {
        let norm: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        match norm.as_str() {
            "none" | "public" | "opennetwork" => NatType::None,
            "fullcone" => NatType::FullCone,
            "restricted" | "restrictedcone" => NatType::Restricted,
            "portrestricted" | "portrestrictedcone" => NatType::PortRestricted,
            "symmetric" => NatType::Symmetric,
            _ => NatType::Undefined,
        }
    }
}

/// Whether `s` looks like a WireGuard public key: 32 bytes in standard padded base64 (44
/// characters, the last one `=`, the one before drawn from the values whose low two bits are 0).
pub fn is_wireguard_key(s: &str) -> bool {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    b.len() == 44
        && b[43] == b'='
        && b[..43].iter().all(|c| B64.contains(c))
        && B64
            .iter()
            .position(|c| *c == b[42])
            .is_some_and(|v| v & 0b11 == 0)
}

/// A gateway's elected layer 3 tunnel endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelEndpoint {
    /// Node terminating the tunnel.
    pub node_name: String,
    /// The node is behind NAT (`underNAT`).
    pub under_nat: bool,
    /// The NAT kind detected on the node (`natType`).
    pub nat_type: NatType,
    /// Address other gateways send to (`publicIP`), when known and valid.
    pub public_ip: Option<IpAddr>,
    /// Port the NAT maps the tunnel to (`publicPort`), when known; used by edge-to-edge tunnels.
    pub public_port: Option<u16>,
    /// Port the endpoint is exposed on (`port`, default 4500).
    pub port: u16,
    /// The node's WireGuard public key (`config["publicKey"]`), when published and well formed.
    pub public_key: Option<String>,
}

impl TunnelEndpoint {
    /// Reads one entry of a Gateway's `spec.endpoints` or `status.activeEndpoints` (JSON);
    /// `None` unless it is of type `tunnel` and names a node. Ports out of range fall back to
    /// the default (4500) or read as absent, a bad public IP or key reads as absent.
    pub fn from_endpoint_json(ep: &Value) -> Option<Self> {
        if ep.get("type").and_then(Value::as_str) != Some("tunnel") {
            return None;
        }
        let node_name = ep.get("nodeName").and_then(Value::as_str)?;
        if node_name.is_empty() {
            return None;
        }
        let port_of = |k: &str| {
            ep.get(k)
                .and_then(Value::as_i64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
        };
        Some(Self {
            node_name: node_name.to_owned(),
            under_nat: ep.get("underNAT").and_then(Value::as_bool).unwrap_or(false),
            nat_type: ep
                .get("natType")
                .and_then(Value::as_str)
                .map(NatType::parse)
                .unwrap_or_default(),
            public_ip: ep
                .get("publicIP")
                .and_then(Value::as_str)
                .and_then(|s| s.trim().parse().ok()),
            public_port: port_of("publicPort"),
            port: port_of("port").unwrap_or(DEFAULT_TUNNEL_PORT),
            public_key: ep
                .pointer("/config/publicKey")
                .and_then(Value::as_str)
                .filter(|k| is_wireguard_key(k))
                .map(str::to_owned),
        })
    }
}

/// One Gateway (one network domain) as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayView {
    /// The Gateway's name; nodes join it with the `raven.openyurt.io/gateway` label.
    pub name: String,
    /// The active tunnel endpoint (`status.activeEndpoints` entry of type `tunnel`), if elected.
    pub active: Option<TunnelEndpoint>,
    /// Pod subnets the Gateway's status lists for its nodes (`status.nodes[].subnets`).
    pub subnets: BTreeSet<Cidr>,
}

impl GatewayView {
    /// Reads a Gateway object (JSON): the first active endpoint of type `tunnel` (at most one
    /// is allowed) and the subnets of `status.nodes`; unparsable subnets are skipped.
    pub fn from_gateway_json(gw: &Value) -> Self {
        let list = |p: &str| {
            gw.pointer(p)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        let active = list("/status/activeEndpoints")
            .iter()
            .find_map(TunnelEndpoint::from_endpoint_json);
        let subnets = list("/status/nodes")
            .iter()
            .filter_map(|n| n.get("subnets")?.as_array())
            .flatten()
            .filter_map(|s| s.as_str()?.trim().parse().ok())
            .collect();
        Self {
            name: gw
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            active,
            subnets,
        }
    }

    /// Reads a Gateway object of yurt-core's CRD type (feature `crd`).
    #[cfg(feature = "crd")]
    pub fn from_gateway(gw: &yurt_core::crd::gateway::Gateway) -> Self {
        Self::from_gateway_json(&serde_json::to_value(gw).unwrap_or_default())
    }
}

/// One Node as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// First `InternalIP` of `status.addresses`: the VXLAN underlay address inside a domain.
    pub internal_ip: Option<IpAddr>,
    /// `spec.podCIDRs` (or `spec.podCIDR` when the list is absent).
    pub pod_cidrs: BTreeSet<Cidr>,
    /// The Gateway the node belongs to (label `raven.openyurt.io/gateway`).
    pub gateway: Option<String>,
}

impl NodeView {
    /// Reads a Node object in its JSON form. Fields that are missing or do not parse are left
    /// empty.
    pub fn from_node_json(node: &Value) -> Self {
        let str_at = |p: &str| node.pointer(p).and_then(|v| v.as_str());
        let internal_ip = node
            .pointer("/status/addresses")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter(|e| e.get("type").and_then(|t| t.as_str()) == Some("InternalIP"))
            .find_map(|e| e.get("address")?.as_str()?.parse().ok());
        let mut pod_cidrs: BTreeSet<Cidr> = node
            .pointer("/spec/podCIDRs")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str()?.parse().ok())
            .collect();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(str_at("/spec/podCIDR").and_then(|c| c.parse::<Cidr>().ok()));
        }
        let gateway = node
            .pointer("/metadata/labels")
            .and_then(|l| l.get(RAVEN_GATEWAY_LABEL))
            .and_then(|g| g.as_str())
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        Self {
            name: str_at("/metadata/name").unwrap_or_default().to_owned(),
            internal_ip,
            pod_cidrs,
            gateway,
        }
    }
}

/// Everything the planner reads: all Gateways and all Nodes. Order does not matter; a name
/// that appears twice keeps its first entry in name order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClusterView {
    /// The Gateways.
    pub gateways: Vec<GatewayView>,
    /// The Nodes.
    pub nodes: Vec<NodeView>,
}

impl ClusterView {
    /// Builds the view from Gateway and Node objects in their JSON form.
    pub fn from_json<'a>(
        gateways: impl IntoIterator<Item = &'a Value>,
        nodes: impl IntoIterator<Item = &'a Value>,
    ) -> Self {
        Self {
            gateways: gateways
                .into_iter()
                .map(GatewayView::from_gateway_json)
                .collect(),
            nodes: nodes.into_iter().map(NodeView::from_node_json).collect(),
        }
    }

    /// Builds the view from yurt-core's Gateway objects and Node JSON objects (feature `crd`).
    #[cfg(feature = "crd")]
    pub fn from_objects<'a>(
        gateways: impl IntoIterator<Item = &'a yurt_core::crd::gateway::Gateway>,
        nodes: impl IntoIterator<Item = &'a Value>,
    ) -> Self {
        Self {
            gateways: gateways
                .into_iter()
                .map(GatewayView::from_gateway)
                .collect(),
            nodes: nodes.into_iter().map(NodeView::from_node_json).collect(),
        }
    }
}
