//! The planner: [`plan`] turns a [`ClusterView`] and the local node's name into the [`Plan`]
//! of WireGuard peers, routes, VXLAN entries and skip-NAT subnets that node should have. The
//! rules are listed in the module docs of [`crate::l3`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::cidr::{Cidr, Mac};
use super::view::{ClusterView, NatType, NodeView, TunnelEndpoint};

/// Name of the WireGuard device on gateway nodes (as upstream).
pub const WIREGUARD_DEVICE: &str = "raven-wg0";
/// Name of the VXLAN device inside a domain (as upstream).
pub const VXLAN_DEVICE: &str = "raven0";
/// Name of the skip-NAT set (as upstream's ipset).
pub const SKIP_NAT_SET: &str = "raven-skip-nat-set";
/// First two bytes of every VXLAN device MAC address (as upstream).
pub const VXLAN_MAC_PREFIX: [u8; 2] = [0xaa, 0x0f];
/// First octet of the VXLAN overlay addresses: a node `a.b.c.d` is `240.b.c.d` on `raven0`.
pub const VXLAN_ADDRESS_OCTET: u8 = 240;

/// Knobs of the planner; [`PlanConfig::default`] is what the agent uses unless told otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanConfig {
    /// UDP port the local WireGuard device listens on (4500).
    pub listen_port: u16,
    /// Persistent keepalive of every peer, seconds (25: below common NAT UDP timeouts).
    pub keepalive_secs: u16,
    /// Build direct edge-to-edge tunnels between NATed gateways when their NAT types allow it
    /// (the agent's `--nat-traversal`, off by default as upstream).
    pub nat_traversal: bool,
    /// VXLAN network identifier of `raven0`.
    pub vxlan_vni: u32,
    /// UDP port of `raven0`.
    pub vxlan_port: u16,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            listen_port: 4500,
            keepalive_secs: 25,
            nat_traversal: false,
            vxlan_vni: 1,
            vxlan_port: 4478,
        }
    }
}

/// What the local node is in the layer 3 network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Role {
    /// Not in any domain with an elected tunnel endpoint: nothing to set up.
    #[default]
    None,
    /// The active tunnel endpoint of `gateway`.
    Gateway {
        /// The Gateway's name.
        gateway: String,
    },
    /// Another node of `gateway`'s domain, reaching remote sites through `via_node`.
    Member {
        /// The Gateway's name.
        gateway: String,
        /// The domain's active tunnel endpoint node.
        via_node: String,
    },
}

/// A WireGuard peer: one remote gateway node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// The remote node's public key (base64).
    pub public_key: String,
    /// Where to send; `None` when the remote is behind NAT and dials us (WireGuard learns its
    /// address from the first authenticated packet).
    pub endpoint: Option<SocketAddr>,
    /// Destinations routed to this peer, sorted.
    pub allowed_ips: Vec<Cidr>,
    /// Persistent keepalive, seconds.
    pub keepalive_secs: u16,
}

/// A route for a remote pod subnet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The remote pod subnet.
    pub dst: Cidr,
    /// Output device (`raven-wg0` or `raven0`).
    pub dev: String,
    /// Next hop on `dev` (on-link), if any: the active gateway's VXLAN address on members.
    pub via: Option<IpAddr>,
}

/// A VXLAN forwarding entry: frames for `mac` are sent to the underlay address `dst`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    /// The VXLAN device.
    pub dev: String,
    /// Remote device MAC address.
    pub mac: Mac,
    /// Remote node's underlay (internal) address.
    pub dst: IpAddr,
}

/// A permanent neighbour entry on the VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbor {
    /// The VXLAN device.
    pub dev: String,
    /// Remote overlay address.
    pub ip: IpAddr,
    /// Its MAC address.
    pub mac: Mac,
}

/// One piece of desired state. The variant order is the order a driver creates things in
/// (devices before what lives on them, routes after their next hops).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// The WireGuard device.
    WireGuardDevice {
        /// Device name.
        name: String,
        /// UDP listen port.
        listen_port: u16,
    },
    /// The VXLAN device.
    VxlanDevice {
        /// Device name.
        name: String,
        /// VXLAN network identifier.
        vni: u32,
        /// UDP port.
        port: u16,
        /// Underlay address the device sends from.
        underlay: IpAddr,
        /// Overlay address (in `240.0.0.0/8`, see [`vxlan_address`]).
        address: Ipv4Addr,
        /// The device MAC address.
        mac: Mac,
    },
    /// A WireGuard peer.
    Peer(Peer),
    /// A VXLAN forwarding entry.
    Fdb(FdbEntry),
    /// A VXLAN neighbour entry.
    Neighbor(Neighbor),
    /// A route.
    Route(Route),
    /// A destination subnet traffic to which leaves without masquerading.
    SkipNat(Cidr),
}

/// What identifies an [`Item`]: two items with the same key are one object changed in place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKey {
    /// A device, by name.
    WireGuardDevice(String),
    /// A device, by name.
    VxlanDevice(String),
    /// A peer, by public key.
    Peer(String),
    /// A forwarding entry, by device and MAC.
    Fdb(String, Mac),
    /// A neighbour entry, by device and address.
    Neighbor(String, IpAddr),
    /// A route, by destination.
    Route(Cidr),
    /// A skip-NAT entry.
    SkipNat(Cidr),
}

impl Item {
    /// The item's identity.
    pub fn key(&self) -> ItemKey {
        match self {
            Item::WireGuardDevice { name, .. } => ItemKey::WireGuardDevice(name.clone()),
            Item::VxlanDevice { name, .. } => ItemKey::VxlanDevice(name.clone()),
            Item::Peer(p) => ItemKey::Peer(p.public_key.clone()),
            Item::Fdb(f) => ItemKey::Fdb(f.dev.clone(), f.mac),
            Item::Neighbor(n) => ItemKey::Neighbor(n.dev.clone(), n.ip),
            Item::Route(r) => ItemKey::Route(r.dst),
            Item::SkipNat(c) => ItemKey::SkipNat(*c),
        }
    }
}

/// The desired layer 3 state of one node, sorted by [`ItemKey`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// What the node is.
    pub role: Role,
    items: BTreeMap<ItemKey, Item>,
}

impl Plan {
    /// A plan with nothing in it (the state after teardown).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a plan from items; a later item with the same key replaces an earlier one.
    pub fn from_items(role: Role, items: impl IntoIterator<Item = Item>) -> Self {
        Self {
            role,
            items: items.into_iter().map(|i| (i.key(), i)).collect(),
        }
    }

    /// Every item, in key order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// The item with `key`, if planned.
    pub fn get(&self, key: &ItemKey) -> Option<&Item> {
        self.items.get(key)
    }

    /// Whether nothing is planned.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The WireGuard peers, by public key.
    pub fn peers(&self) -> Vec<&Peer> {
        self.items()
            .filter_map(|i| match i {
                Item::Peer(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The routes, by destination.
    pub fn routes(&self) -> Vec<&Route> {
        self.items()
            .filter_map(|i| match i {
                Item::Route(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The VXLAN forwarding entries.
    pub fn fdb(&self) -> Vec<&FdbEntry> {
        self.items()
            .filter_map(|i| match i {
                Item::Fdb(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// The VXLAN neighbour entries.
    pub fn neighbors(&self) -> Vec<&Neighbor> {
        self.items()
            .filter_map(|i| match i {
                Item::Neighbor(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The skip-NAT destination subnets, sorted.
    pub fn skip_nat(&self) -> Vec<Cidr> {
        self.items()
            .filter_map(|i| match i {
                Item::SkipNat(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn into_items(self) -> BTreeMap<ItemKey, Item> {
        self.items
    }
}

/// The VXLAN overlay address of a node with underlay IPv4 address `a.b.c.d`: `240.b.c.d`.
pub fn vxlan_address(underlay: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, d] = underlay.octets();
    Ipv4Addr::new(VXLAN_ADDRESS_OCTET, b, c, d)
}

/// The `raven0` MAC address of a node with overlay address `a`: `aa:0f` + the four octets.
pub fn vxlan_mac(overlay: Ipv4Addr) -> Mac {
    let [a, b, c, d] = overlay.octets();
    Mac([VXLAN_MAC_PREFIX[0], VXLAN_MAC_PREFIX[1], a, b, c, d])
}

/// One network domain, resolved from the view.
#[derive(Debug)]
struct Site<'a> {
    name: &'a str,
    endpoint: &'a TunnelEndpoint,
    subnets: BTreeSet<Cidr>,
}

/// Computes the desired state of node `local` (see the rules in [`crate::l3`]).
pub fn plan(view: &ClusterView, local: &str, config: &PlanConfig) -> Plan {
    let nodes = index_nodes(&view.nodes);
    let sites = sites(view, &nodes);

    if let Some(site) = sites.values().find(|s| s.endpoint.node_name == local) {
        let peers = gateway_peers(&sites, site, config);
        if peers.is_empty() {
            return Plan::empty();
        }
        let mut items = vec![Item::WireGuardDevice {
            name: WIREGUARD_DEVICE.to_owned(),
            listen_port: config.listen_port,
        }];
        if let Some(IpAddr::V4(underlay)) = nodes.get(local).and_then(|n| n.internal_ip) {
            // Members of the domain send their cross-site traffic here over VXLAN.
            items.push(vxlan_device(config, underlay));
        }
        for peer in &peers {
            for dst in &peer.allowed_ips {
                items.push(Item::Route(Route {
                    dst: *dst,
                    dev: WIREGUARD_DEVICE.to_owned(),
                    via: None,
                }));
                items.push(Item::SkipNat(*dst));
            }
        }
        items.extend(peers.into_iter().map(Item::Peer));
        let role = Role::Gateway {
            gateway: site.name.to_owned(),
        };
        return Plan::from_items(role, items);
    }

    let Some(me) = nodes.get(local) else {
        return Plan::empty();
    };
    let Some(site) = me.gateway.as_deref().and_then(|g| sites.get(g)) else {
        return Plan::empty();
    };
    let gw_node = &site.endpoint.node_name;
    let (Some(IpAddr::V4(underlay)), Some(IpAddr::V4(gw_underlay))) = (
        me.internal_ip,
        nodes.get(gw_node.as_str()).and_then(|n| n.internal_ip),
    ) else {
        return Plan::empty();
    };
    // Exactly the subnets the active gateway itself routes into the tunnel.
    let remote: BTreeSet<Cidr> = gateway_peers(&sites, site, config)
        .into_iter()
        .flat_map(|p| p.allowed_ips)
        .collect();
    if remote.is_empty() {
        return Plan::empty();
    }
    let gw_overlay = vxlan_address(gw_underlay);
    let gw_mac = vxlan_mac(gw_overlay);
    let mut items = vec![
        vxlan_device(config, underlay),
        Item::Fdb(FdbEntry {
            dev: VXLAN_DEVICE.to_owned(),
            mac: gw_mac,
            dst: IpAddr::V4(gw_underlay),
        }),
        Item::Neighbor(Neighbor {
            dev: VXLAN_DEVICE.to_owned(),
            ip: IpAddr::V4(gw_overlay),
            mac: gw_mac,
        }),
    ];
    for dst in remote {
        items.push(Item::Route(Route {
            dst,
            dev: VXLAN_DEVICE.to_owned(),
            via: Some(IpAddr::V4(gw_overlay)),
        }));
        items.push(Item::SkipNat(dst));
    }
    let role = Role::Member {
        gateway: site.name.to_owned(),
        via_node: gw_node.clone(),
    };
    Plan::from_items(role, items)
}

fn vxlan_device(config: &PlanConfig, underlay: Ipv4Addr) -> Item {
    let address = vxlan_address(underlay);
    Item::VxlanDevice {
        name: VXLAN_DEVICE.to_owned(),
        vni: config.vxlan_vni,
        port: config.vxlan_port,
        underlay: IpAddr::V4(underlay),
        address,
        mac: vxlan_mac(address),
    }
}

/// Nodes by name; the first of a duplicated name (in input order) wins.
fn index_nodes(nodes: &[NodeView]) -> BTreeMap<&str, &NodeView> {
    let mut out = BTreeMap::new();
    for n in nodes {
        out.entry(n.name.as_str()).or_insert(n);
    }
    out
}

/// Domains with an elected tunnel endpoint, by Gateway name. A site's subnets are the
/// Gateway's `status.nodes` subnets plus the pod CIDRs of the nodes labelled into it.
fn sites<'a>(
    view: &'a ClusterView,
    nodes: &BTreeMap<&'a str, &'a NodeView>,
) -> BTreeMap<&'a str, Site<'a>> {
    let mut out: BTreeMap<&str, Site<'_>> = BTreeMap::new();
    let mut gateways: Vec<_> = view.gateways.iter().collect();
    gateways.sort_by(|a, b| a.name.cmp(&b.name));
    for gw in gateways {
        let Some(endpoint) = gw.active.as_ref() else {
            continue;
        };
        if gw.name.is_empty() || out.contains_key(gw.name.as_str()) {
            continue;
        }
        let mut subnets = gw.subnets.clone();
        for n in nodes.values() {
            if n.gateway.as_deref() == Some(gw.name.as_str()) {
                subnets.extend(n.pod_cidrs.iter().copied());
            }
        }
        out.insert(
            &gw.name,
            Site {
                name: &gw.name,
                endpoint,
                subnets,
            },
        );
    }
    // A node can be the active endpoint of one gateway only: keep the first by name.
    let mut seen = BTreeSet::new();
    out.retain(|_, s| seen.insert(s.endpoint.node_name.clone()));
    out
}

/// The central gateway: among all active endpoints sorted by node name, the last one not
/// behind NAT (as upstream).
fn central<'a>(sites: &BTreeMap<&'a str, Site<'a>>) -> Option<&'a TunnelEndpoint> {
    sites
        .values()
        .map(|s| s.endpoint)
        .filter(|e| !e.under_nat)
        .max_by(|a, b| a.node_name.cmp(&b.node_name))
}

/// Whether two NATed gateways may build a tunnel straight to each other (hole punching with
/// `publicIP`/`publicPort`), as upstream decides: NAT traversal on, both behind NAT, both NAT
/// types known, and not one of the pairs that cannot punch through (symmetric with symmetric,
/// symmetric with port-restricted). In addition both public addresses and ports must be known,
/// so the answer is the same from either side (otherwise one side would go direct and the other
/// through the central gateway).
pub fn edge_to_edge(local: &TunnelEndpoint, remote: &TunnelEndpoint, config: &PlanConfig) -> bool {
    use NatType::{PortRestricted, Symmetric, Undefined};
    if !config.nat_traversal || !local.under_nat || !remote.under_nat {
        return false;
    }
    if local.nat_type == Undefined || remote.nat_type == Undefined {
        return false;
    }
    let known = |e: &TunnelEndpoint| e.public_ip.is_some() && e.public_port.is_some();
    if !known(local) || !known(remote) {
        return false;
    }
    !matches!(
        (local.nat_type, remote.nat_type),
        (Symmetric, Symmetric) | (Symmetric, PortRestricted) | (PortRestricted, Symmetric)
    )
}

/// The WireGuard peers of `local`'s active endpoint, sorted by public key.
fn gateway_peers(
    sites: &BTreeMap<&str, Site<'_>>,
    local: &Site<'_>,
    config: &PlanConfig,
) -> Vec<Peer> {
    let me = local.endpoint;
    let central = central(sites);
    // Each subnet goes to one peer only (WireGuard cannot route one prefix to two peers):
    // local subnets are never claimed, then remote sites in Gateway name order.
    let mut claimed: BTreeSet<Cidr> = local.subnets.clone();
    let mut peers: BTreeMap<String, Peer> = BTreeMap::new();
    let mut relayed: Vec<Cidr> = Vec::new();
    for remote in sites.values().filter(|s| s.name != local.name) {
        let ep = remote.endpoint;
        let Some(key) = ep.public_key.clone() else {
            continue;
        };
        let endpoint = if edge_to_edge(me, ep, config) {
            // A symmetric NAT maps a new port per destination: aim at the listen port instead.
            let port = if ep.nat_type == NatType::Symmetric {
                config.listen_port
            } else {
                ep.public_port.unwrap_or(ep.port)
            };
            ep.public_ip.map(|ip| SocketAddr::new(ip, port))
        } else if me.under_nat && ep.under_nat {
            // Neither side reachable: the central gateway relays.
            relayed.extend(remote.subnets.iter().copied());
            continue;
        } else if ep.under_nat {
            None
        } else {
            ep.public_ip.map(|ip| SocketAddr::new(ip, ep.port))
        };
        if peers.contains_key(&key) {
            continue;
        }
        let allowed: Vec<Cidr> = remote
            .subnets
            .iter()
            .copied()
            .filter(|c| claimed.insert(*c))
            .collect();
        peers.insert(
            key.clone(),
            Peer {
                public_key: key,
                endpoint,
                allowed_ips: allowed,
                keepalive_secs: config.keepalive_secs,
            },
        );
    }
    if let Some(central) = central.filter(|c| c.node_name != me.node_name)
        && let Some(peer) = central.public_key.as_ref().and_then(|k| peers.get_mut(k))
    {
        peer.allowed_ips
            .extend(relayed.into_iter().filter(|c| claimed.insert(*c)));
        peer.allowed_ips.sort();
    }
    peers
        .into_values()
        .filter(|p| !p.allowed_ips.is_empty())
        .collect()
}
