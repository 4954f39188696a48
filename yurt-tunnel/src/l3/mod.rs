//! The sans-IO core of Raven's layer 3 network: which WireGuard peers, routes, VXLAN entries and
//! skip-NAT subnets one node should have so that pods in different network domains (each behind
//! its own NAT, with no route to the others) reach each other by pod IP.
//!
//! Like boringtun's protocol core, nothing here opens a socket, reads a clock or spawns a task:
//! the caller builds a [`ClusterView`] from Gateway and Node objects ([`ClusterView::from_json`];
//! with the `crd` feature also from yurt-core's Gateway type), calls [`plan`] for its node, and hands [`diff`]`(applied, new)`
//! to a driver (netlink, a userspace WireGuard, nftables/iptables), which then performs only the
//! changes. [`teardown`] removes everything a plan created. [`wireguard`] is the driver for the
//! WireGuard peers (a userspace device on TUN). Output is sorted, so the same view
//! always gives the same plan and the same change list.
//!
//! # Model
//!
//! Every Gateway is one network domain: the nodes labelled `raven.openyurt.io/gateway=<name>`.
//! A domain takes part once its Gateway has an active endpoint of type `tunnel`
//! (`status.activeEndpoints`, elected by the gateway-pickup controller); that node is the
//! domain's *gateway node*. A domain's *subnets* are the Gateway's `status.nodes[].subnets`
//! plus the pod CIDRs of the nodes labelled into it.
//!
//! # Rules
//!
//! * **Gateway node.** It gets the WireGuard device `raven-wg0` (listen port 4500 by default) with
//!   one peer per other domain it talks to: the remote gateway node's public key
//!   (`config["publicKey"]` of its endpoint; a remote without a well-formed key is left out),
//!   allowed IPs = that domain's subnets, and a persistent keepalive. Every allowed subnet gets a
//!   route on `raven-wg0` and a skip-NAT entry. It also gets `raven0`, so the domain's other
//!   nodes can reach it over VXLAN.
//! * **Who talks to whom.** The *central gateway* is, among all active tunnel endpoints sorted by
//!   node name, the last one not behind NAT (as upstream). Two gateways peer directly when at
//!   least one of them is not behind NAT; the side behind NAT sends to the other's
//!   `publicIP:port`, while the public side's peer has no endpoint (WireGuard learns the NATed
//!   side's address from its first packet, and the keepalive holds the NAT mapping open). Two
//!   gateways both behind NAT do not peer; each adds the other's subnets to its peer for the
//!   central gateway, which relays (it peers with everyone). Without a central gateway such
//!   domains cannot reach each other and get no routes for each other.
//! * **Edge to edge.** With NAT traversal on ([`PlanConfig::nat_traversal`], the agent's
//!   `--nat-traversal`), two NATed gateways whose NAT types are known and compatible (not
//!   symmetric with symmetric, not symmetric with port-restricted) peer directly at
//!   `publicIP:publicPort` (the listen port when the remote NAT is symmetric), as upstream.
//!   *Chosen here:* both sides' public address and port must be known, so both ends make the
//!   same decision.
//! * **Other nodes of a domain.** A node that is not the active endpoint gets `raven0` (VXLAN,
//!   overlay address `240.b.c.d` for underlay `a.b.c.d`, MAC `aa:0f` + the overlay octets), a
//!   forwarding entry and a neighbour entry for the gateway node, and, for every subnet the
//!   gateway node routes into the tunnel, a route via the gateway's overlay address on `raven0`
//!   and a skip-NAT entry. *Chosen here:* the VXLAN underlay is IPv4 (the node's first
//!   `InternalIP`); a node or gateway without one gets an empty plan. VNI 1 and UDP 4478 are
//!   defaults of [`PlanConfig`].
//! * **Failover.** A different active endpoint is simply a different view: the new gateway node
//!   plans the peers, the old one plans nothing (its [`diff`] removes everything), the members'
//!   routes change their next hop in place, and other domains replace one peer.
//! * **Conflicts.** *Chosen here:* a subnet is routed to one peer only (WireGuard cannot route a
//!   prefix to two peers): the local domain's subnets are never routed away, then remote domains
//!   claim subnets in Gateway name order. A node that is the active endpoint of two Gateways
//!   serves the first by name; duplicate Gateway or Node names keep the first.
//! * **Nothing to do.** A node in no domain, in a domain without an active endpoint, or whose
//!   gateway has no peer gets the empty plan, so [`diff`] from what it had tears everything down.

mod cidr;
mod diff;
pub mod driver;
mod plan;
mod view;
pub mod wireguard;

#[cfg(test)]
mod tests;

pub use cidr::{Cidr, CidrError, Mac};
pub use diff::{Change, apply, diff, teardown};
pub use plan::{
    FdbEntry, Item, ItemKey, Neighbor, Peer, Plan, PlanConfig, Role, Route, SKIP_NAT_SET,
    VXLAN_ADDRESS_OCTET, VXLAN_DEVICE, VXLAN_MAC_PREFIX, WIREGUARD_DEVICE, edge_to_edge, plan,
    vxlan_address, vxlan_mac,
};
pub use view::{
    ClusterView, DEFAULT_TUNNEL_PORT, GatewayView, NatType, NodeView, PUBLIC_KEY_CONFIG,
    TunnelEndpoint, is_wireguard_key,
};
