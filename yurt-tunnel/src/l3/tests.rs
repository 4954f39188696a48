//! Topology tests of the planner: Gateway and Node objects in, plans and diffs out, no sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde_json::json;
use yurt_core::crd::gateway::{
    Endpoint, EndpointType, Gateway, GatewaySpec, GatewayStatus, NodeInfo,
};

use super::*;

/// A well-formed WireGuard public key distinct per `seed`.
fn key(seed: u8) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let c = B64[usize::from(seed) % 64] as char;
    format!("{}A=", c.to_string().repeat(42))
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| cidr(s)).collect()
}

struct Ep {
    node: &'static str,
    nat: bool,
    nat_type: Option<&'static str>,
    public_ip: Option<&'static str>,
    public_port: Option<i32>,
    key: Option<String>,
}

fn ep(node: &'static str, nat: bool, public_ip: Option<&'static str>, key: Option<String>) -> Ep {
    Ep {
        node,
        nat,
        nat_type: None,
        public_ip,
        public_port: None,
        key,
    }
}

fn endpoint(e: &Ep) -> Endpoint {
    Endpoint {
        node_name: e.node.to_owned(),
        type_: EndpointType::Tunnel,
        port: None,
        under_nat: Some(e.nat),
        nat_type: e.nat_type.map(str::to_owned),
        public_ip: e.public_ip.map(str::to_owned),
        public_port: e.public_port,
        config: e
            .key
            .iter()
            .map(|k| (PUBLIC_KEY_CONFIG.to_owned(), k.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn gateway(name: &str, active: Option<&Ep>) -> Gateway {
    let mut gw = Gateway::new(name, GatewaySpec::default());
    let mut status = GatewayStatus::default();
    // A proxy endpoint must never be taken for the tunnel one.
    status.active_endpoints.push(Endpoint {
        node_name: "proxy-node".into(),
        type_: EndpointType::Proxy,
        port: None,
        under_nat: Some(false),
        nat_type: None,
        public_ip: Some("9.9.9.9".into()),
        public_port: None,
        config: BTreeMap::new(),
    });
    status.active_endpoints.extend(active.map(endpoint));
    gw.status = Some(status);
    gw
}

fn node(name: &str, ip: &str, pod_cidr: &str, gw: Option<&str>) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    if let Some(gw) = gw {
        labels.insert("raven.openyurt.io/gateway".into(), json!(gw));
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [
            {"type": "Hostname", "address": name},
            {"type": "InternalIP", "address": ip}
        ]}
    })
}

/// One public cloud gateway and two edge sites behind NAT, each with a worker.
struct Cluster {
    gateways: Vec<Gateway>,
    nodes: Vec<serde_json::Value>,
}

impl Cluster {
    fn central_and_two_nated() -> Self {
        let cloud = ep("cloud-gw", false, Some("1.1.1.1"), Some(key(1)));
        let a = ep("a-gw", true, Some("2.2.2.2"), Some(key(2)));
        let b = ep("b-gw", true, Some("3.3.3.3"), Some(key(3)));
        Self {
            gateways: vec![
                gateway("cloud", Some(&cloud)),
                gateway("edge-a", Some(&a)),
                gateway("edge-b", Some(&b)),
            ],
            nodes: vec![
                node("cloud-gw", "192.168.0.10", "10.0.0.0/24", Some("cloud")),
                node("cloud-w1", "192.168.0.11", "10.0.1.0/24", Some("cloud")),
                node("a-gw", "172.16.1.10", "10.1.0.0/24", Some("edge-a")),
                node("a-w1", "172.16.1.11", "10.1.1.0/24", Some("edge-a")),
                node("a-w2", "172.16.1.12", "10.1.2.0/24", Some("edge-a")),
                node("b-gw", "172.16.2.10", "10.2.0.0/24", Some("edge-b")),
                node("lonely", "172.16.9.9", "10.9.0.0/24", None),
            ],
        }
    }

    fn view(&self) -> ClusterView {
        ClusterView::from_objects(&self.gateways, &self.nodes)
    }

    fn plan(&self, local: &str) -> Plan {
        plan(&self.view(), local, &PlanConfig::default())
    }

    fn set_active(&mut self, gw: &str, e: Option<&Ep>) {
        let i = self
            .gateways
            .iter()
            .position(|g| g.metadata.name.as_deref() == Some(gw))
            .unwrap();
        self.gateways[i] = gateway(gw, e);
    }
}

fn peer<'a>(plan: &'a Plan, key: &str) -> &'a Peer {
    plan.peers()
        .into_iter()
        .find(|p| p.public_key == key)
        .unwrap_or_else(|| panic!("no peer {key} in {plan:#?}"))
}

fn route_dsts(plan: &Plan) -> Vec<Cidr> {
    plan.routes().iter().map(|r| r.dst).collect()
}

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn central_gateway_relays_between_two_nated_sites() {
    let c = Cluster::central_and_two_nated();

    let cloud = c.plan("cloud-gw");
    assert_eq!(
        cloud.role,
        Role::Gateway {
            gateway: "cloud".into()
        }
    );
    assert_eq!(cloud.peers().len(), 2);
    // The NATed sides dial in: no endpoint on the central side.
    let to_a = peer(&cloud, &key(2));
    assert_eq!(to_a.endpoint, None);
    assert_eq!(
        to_a.allowed_ips,
        cidrs(&["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24"])
    );
    assert_eq!(to_a.keepalive_secs, 25);
    assert_eq!(peer(&cloud, &key(3)).allowed_ips, cidrs(&["10.2.0.0/24"]));
    let remote = cidrs(&["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24", "10.2.0.0/24"]);
    assert_eq!(route_dsts(&cloud), remote);
    assert!(
        cloud
            .routes()
            .iter()
            .all(|r| r.dev == WIREGUARD_DEVICE && r.via.is_none())
    );
    assert_eq!(cloud.skip_nat(), remote);
    assert_eq!(
        cloud.get(&ItemKey::WireGuardDevice(WIREGUARD_DEVICE.into())),
        Some(&Item::WireGuardDevice {
            name: WIREGUARD_DEVICE.into(),
            listen_port: 4500
        })
    );

    // Site A: one peer, the central gateway, carrying site B's subnet too (relay).
    let a = c.plan("a-gw");
    assert_eq!(a.peers().len(), 1);
    let to_cloud = peer(&a, &key(1));
    assert_eq!(to_cloud.endpoint, sa("1.1.1.1:4500"));
    assert_eq!(
        to_cloud.allowed_ips,
        cidrs(&["10.0.0.0/24", "10.0.1.0/24", "10.2.0.0/24"])
    );
    assert_eq!(route_dsts(&a), to_cloud.allowed_ips);

    let b = c.plan("b-gw");
    assert_eq!(b.peers().len(), 1);
    assert_eq!(
        peer(&b, &key(1)).allowed_ips,
        cidrs(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.1.0.0/24",
            "10.1.1.0/24",
            "10.1.2.0/24"
        ])
    );

    // A node in no domain has nothing to do.
    assert!(c.plan("lonely").is_empty());
    assert!(c.plan("no-such-node").is_empty());
}

#[test]
fn non_gateway_node_routes_through_vxlan_to_its_gateway() {
    let c = Cluster::central_and_two_nated();
    let w = c.plan("a-w1");
    assert_eq!(
        w.role,
        Role::Member {
            gateway: "edge-a".into(),
            via_node: "a-gw".into()
        }
    );
    let gw_overlay: IpAddr = "240.16.1.10".parse().unwrap();
    let gw_mac = Mac([0xaa, 0x0f, 240, 16, 1, 10]);
    assert_eq!(
        w.get(&ItemKey::VxlanDevice(VXLAN_DEVICE.into())),
        Some(&Item::VxlanDevice {
            name: VXLAN_DEVICE.into(),
            vni: 1,
            port: 4478,
            underlay: "172.16.1.11".parse().unwrap(),
            address: "240.16.1.11".parse().unwrap(),
            mac: Mac([0xaa, 0x0f, 240, 16, 1, 11]),
        })
    );
    assert_eq!(
        w.fdb(),
        vec![&FdbEntry {
            dev: VXLAN_DEVICE.into(),
            mac: gw_mac,
            dst: "172.16.1.10".parse().unwrap()
        }]
    );
    assert_eq!(
        w.neighbors(),
        vec![&Neighbor {
            dev: VXLAN_DEVICE.into(),
            ip: gw_overlay,
            mac: gw_mac
        }]
    );
    // Exactly what its gateway sends into the tunnel, via the gateway on raven0.
    let expected = cidrs(&["10.0.0.0/24", "10.0.1.0/24", "10.2.0.0/24"]);
    assert_eq!(route_dsts(&w), expected);
    assert!(
        w.routes()
            .iter()
            .all(|r| r.dev == VXLAN_DEVICE && r.via == Some(gw_overlay))
    );
    assert_eq!(w.skip_nat(), expected);
    assert!(w.peers().is_empty());
    assert!(
        w.get(&ItemKey::WireGuardDevice(WIREGUARD_DEVICE.into()))
            .is_none()
    );

    // The gateway node terminates raven0 itself.
    assert!(matches!(
        c.plan("a-gw").get(&ItemKey::VxlanDevice(VXLAN_DEVICE.into())),
        Some(Item::VxlanDevice { address, .. }) if address.to_string() == "240.16.1.10"
    ));

    // A domain whose gateway has no Node (no underlay address) gives its members nothing.
    let mut c2 = Cluster::central_and_two_nated();
    c2.nodes.retain(|n| n["metadata"]["name"] != "a-gw");
    assert!(c2.plan("a-w1").is_empty());
}

#[test]
fn two_reachable_gateways_talk_directly() {
    let x = ep("x-gw", false, Some("5.5.5.5"), Some(key(5)));
    let y = ep("y-gw", false, Some("6.6.6.6"), Some(key(6)));
    let c = Cluster {
        gateways: vec![gateway("site-x", Some(&x)), gateway("site-y", Some(&y))],
        nodes: vec![
            node("x-gw", "10.10.0.1", "10.20.0.0/24", Some("site-x")),
            node("y-gw", "10.11.0.1", "10.21.0.0/24", Some("site-y")),
        ],
    };
    let px = c.plan("x-gw");
    assert_eq!(px.peers().len(), 1);
    assert_eq!(peer(&px, &key(6)).endpoint, sa("6.6.6.6:4500"));
    assert_eq!(peer(&px, &key(6)).allowed_ips, cidrs(&["10.21.0.0/24"]));
    let py = c.plan("y-gw");
    assert_eq!(peer(&py, &key(5)).endpoint, sa("5.5.5.5:4500"));
    assert_eq!(peer(&py, &key(5)).allowed_ips, cidrs(&["10.20.0.0/24"]));
}

/// Three sites behind NAT with known NAT types and a public cloud gateway.
fn nat_traversal_cluster(a_type: &'static str, b_type: &'static str) -> Cluster {
    let mut c = Cluster::central_and_two_nated();
    let a = Ep {
        nat_type: Some(a_type),
        public_port: Some(40001),
        ..ep("a-gw", true, Some("2.2.2.2"), Some(key(2)))
    };
    let b = Ep {
        nat_type: Some(b_type),
        public_port: Some(40002),
        ..ep("b-gw", true, Some("3.3.3.3"), Some(key(3)))
    };
    c.set_active("edge-a", Some(&a));
    c.set_active("edge-b", Some(&b));
    c
}

#[test]
fn nated_sites_go_edge_to_edge_when_nat_types_allow() {
    let traversal = PlanConfig {
        nat_traversal: true,
        ..PlanConfig::default()
    };
    let c = nat_traversal_cluster("FullCone", "PortRestricted");
    let a = plan(&c.view(), "a-gw", &traversal);
    assert_eq!(a.peers().len(), 2);
    let to_b = peer(&a, &key(3));
    assert_eq!(to_b.endpoint, sa("3.3.3.3:40002"));
    assert_eq!(to_b.allowed_ips, cidrs(&["10.2.0.0/24"]));
    // The central peer no longer carries site B.
    assert_eq!(
        peer(&a, &key(1)).allowed_ips,
        cidrs(&["10.0.0.0/24", "10.0.1.0/24"])
    );
    // Symmetric in both directions.
    let b = plan(&c.view(), "b-gw", &traversal);
    assert_eq!(peer(&b, &key(2)).endpoint, sa("2.2.2.2:40001"));

    // A symmetric remote NAT: aim at the listen port.
    let c = nat_traversal_cluster("FullCone", "Symmetric");
    let a = plan(&c.view(), "a-gw", &traversal);
    assert_eq!(peer(&a, &key(3)).endpoint, sa("3.3.3.3:4500"));

    // Incompatible pairs, unknown types, or traversal off: through the central gateway.
    for (ta, tb, cfg) in [
        ("Symmetric", "PortRestricted", &traversal),
        ("Symmetric", "Symmetric", &traversal),
        ("Undefined", "FullCone", &traversal),
        ("FullCone", "FullCone", &PlanConfig::default()),
    ] {
        let c = nat_traversal_cluster(ta, tb);
        let a = plan(&c.view(), "a-gw", cfg);
        assert_eq!(a.peers().len(), 1, "{ta}/{tb}");
        assert!(
            peer(&a, &key(1)).allowed_ips.contains(&cidr("10.2.0.0/24")),
            "{ta}/{tb}"
        );
    }
}

#[test]
fn no_central_gateway_means_nated_sites_stay_apart() {
    let mut c = Cluster::central_and_two_nated();
    c.set_active("cloud", None);
    assert!(c.plan("a-gw").is_empty());
    assert!(c.plan("a-w1").is_empty());
    assert!(c.plan("cloud-gw").is_empty());
}

#[test]
fn central_gateway_is_the_last_public_endpoint_by_node_name() {
    let mut c = Cluster::central_and_two_nated();
    let other = ep("zz-gw", false, Some("7.7.7.7"), Some(key(7)));
    c.gateways.push(gateway("other-cloud", Some(&other)));
    c.nodes.push(node(
        "zz-gw",
        "192.168.7.1",
        "10.7.0.0/24",
        Some("other-cloud"),
    ));
    let a = c.plan("a-gw");
    // Site B's subnet is relayed by zz-gw now, not by cloud-gw.
    assert_eq!(
        peer(&a, &key(7)).allowed_ips,
        cidrs(&["10.2.0.0/24", "10.7.0.0/24"])
    );
    assert_eq!(
        peer(&a, &key(1)).allowed_ips,
        cidrs(&["10.0.0.0/24", "10.0.1.0/24"])
    );
    // The two public gateways peer with each other directly.
    assert_eq!(
        peer(&c.plan("cloud-gw"), &key(7)).endpoint,
        sa("7.7.7.7:4500")
    );
}

#[test]
fn gateway_failover_moves_peers_and_routes_with_a_minimal_diff() {
    let mut c = Cluster::central_and_two_nated();
    let before: BTreeMap<&str, Plan> = ["cloud-gw", "a-gw", "a-w1", "a-w2", "b-gw"]
        .into_iter()
        .map(|n| (n, c.plan(n)))
        .collect();

    // Site A's tunnel endpoint moves to a-w1 (its own key).
    let moved = ep("a-w1", true, Some("2.2.2.3"), Some(key(12)));
    c.set_active("edge-a", Some(&moved));
    let after: BTreeMap<&str, Plan> = before.keys().map(|n| (*n, c.plan(n))).collect();

    // Central: exactly one peer swapped; routes and skip-NAT untouched.
    let d = diff(&before["cloud-gw"], &after["cloud-gw"]);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(matches!(&d[0], Change::Remove(Item::Peer(p)) if p.public_key == key(2)));
    assert!(matches!(&d[1], Change::Add(Item::Peer(p))
        if p.public_key == key(12) && p.allowed_ips.len() == 3));

    // Site B relays through the central gateway: nothing changes at all.
    assert!(diff(&before["b-gw"], &after["b-gw"]).is_empty());

    // The new gateway node becomes a gateway; the old one becomes a member of its domain.
    assert_eq!(
        after["a-w1"].role,
        Role::Gateway {
            gateway: "edge-a".into()
        }
    );
    assert_eq!(peer(&after["a-w1"], &key(1)).endpoint, sa("1.1.1.1:4500"));
    assert_eq!(
        after["a-gw"].role,
        Role::Member {
            gateway: "edge-a".into(),
            via_node: "a-w1".into()
        }
    );
    assert!(after["a-gw"].peers().is_empty());
    let d = diff(&before["a-gw"], &after["a-gw"]);
    assert!(
        d.iter()
            .any(|ch| matches!(ch, Change::Remove(Item::WireGuardDevice { .. })))
    );
    assert!(
        d.iter()
            .any(|ch| matches!(ch, Change::Remove(Item::Peer(_))))
    );

    // Another member: forwarding and neighbour entries swap, routes change next hop in place,
    // the VXLAN device and the skip-NAT set stay.
    let d = diff(&before["a-w2"], &after["a-w2"]);
    let new_hop: IpAddr = "240.16.1.11".parse().unwrap();
    let (mut removes, mut adds, mut updates) = (0, 0, 0);
    for ch in &d {
        match ch {
            Change::Remove(Item::Fdb(_) | Item::Neighbor(_)) => removes += 1,
            Change::Add(Item::Fdb(f)) => {
                adds += 1;
                assert_eq!(f.dst, "172.16.1.11".parse::<IpAddr>().unwrap());
            }
            Change::Add(Item::Neighbor(n)) => {
                adds += 1;
                assert_eq!(n.ip, new_hop);
            }
            Change::Update {
                old: Item::Route(o),
                new: Item::Route(n),
            } => {
                updates += 1;
                assert_eq!(o.dst, n.dst);
                assert_eq!(n.via, Some(new_hop));
            }
            other => panic!("unexpected change {other:?}"),
        }
    }
    assert_eq!((removes, adds, updates), (2, 2, 3));

    // Every diff leads exactly to its target.
    for n in before.keys() {
        let applied = apply(&before[n], &diff(&before[n], &after[n]));
        assert!(applied.items().eq(after[n].items()), "{n}");
    }
}

#[test]
fn a_node_that_stops_being_a_gateway_tears_everything_down() {
    let mut c = Cluster::central_and_two_nated();
    let old = c.plan("b-gw");
    assert!(!old.is_empty());
    // Site B loses its elected tunnel endpoint (b-gw stays labelled into the domain).
    c.set_active("edge-b", None);
    let new = c.plan("b-gw");
    assert_eq!(new, Plan::empty());
    let d = diff(&old, &new);
    assert_eq!(d, teardown(&old));
    assert_eq!(d.len(), old.items().count());
    assert!(d.iter().all(|ch| matches!(ch, Change::Remove(_))));
    // Dependents first, devices last.
    assert!(matches!(d.first(), Some(Change::Remove(Item::SkipNat(_)))));
    assert!(matches!(
        d.last(),
        Some(Change::Remove(Item::WireGuardDevice { .. }))
    ));
    assert!(apply(&old, &d).is_empty());
    // The others forget site B.
    assert!(!route_dsts(&c.plan("a-gw")).contains(&cidr("10.2.0.0/24")));
    assert!(
        c.plan("cloud-gw")
            .peers()
            .iter()
            .all(|p| p.public_key != key(3))
    );
}

#[test]
fn output_is_deterministic_whatever_the_input_order() {
    let c = Cluster::central_and_two_nated();
    let mut shuffled = c.view();
    shuffled.gateways.reverse();
    shuffled.nodes.reverse();
    shuffled.nodes.rotate_left(2);
    let cfg = PlanConfig::default();
    for n in ["cloud-gw", "cloud-w1", "a-gw", "a-w1", "b-gw"] {
        let p = plan(&c.view(), n, &cfg);
        assert_eq!(p, plan(&shuffled, n, &cfg), "{n}");
        // Items are sorted by kind then key; allowed IPs are sorted.
        let keys: Vec<ItemKey> = p.items().map(Item::key).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{n}");
        assert!(
            p.peers()
                .iter()
                .all(|p| p.allowed_ips.windows(2).all(|w| w[0] < w[1]))
        );
        assert_eq!(teardown(&p), teardown(&plan(&shuffled, n, &cfg)));
    }
    assert_eq!(
        diff(
            &plan(&c.view(), "a-w1", &cfg),
            &plan(&c.view(), "a-gw", &cfg)
        ),
        diff(
            &plan(&shuffled, "a-w1", &cfg),
            &plan(&shuffled, "a-gw", &cfg)
        ),
    );
}

#[test]
fn overlapping_subnets_are_routed_to_one_peer_only() {
    let mut c = Cluster::central_and_two_nated();
    // Site B's status also claims site A's first subnet and the cloud's subnet.
    let i = c
        .gateways
        .iter()
        .position(|g| g.metadata.name.as_deref() == Some("edge-b"))
        .unwrap();
    c.gateways[i].status.as_mut().unwrap().nodes.push(NodeInfo {
        node_name: "b-gw".into(),
        private_ip: "172.16.2.10".into(),
        subnets: vec![
            "10.1.0.0/24".into(),
            "10.0.0.0/24".into(),
            "not-a-cidr".into(),
        ],
    });
    let cloud = c.plan("cloud-gw");
    assert_eq!(peer(&cloud, &key(3)).allowed_ips, cidrs(&["10.2.0.0/24"]));
    assert!(
        peer(&cloud, &key(2))
            .allowed_ips
            .contains(&cidr("10.1.0.0/24"))
    );
}

#[test]
fn remotes_without_a_valid_public_key_are_left_out() {
    let mut c = Cluster::central_and_two_nated();
    let b = ep("b-gw", true, Some("3.3.3.3"), Some("not a key".into()));
    c.set_active("edge-b", Some(&b));
    let cloud = c.plan("cloud-gw");
    assert_eq!(cloud.peers().len(), 1);
    assert!(!route_dsts(&cloud).contains(&cidr("10.2.0.0/24")));
    assert!(!route_dsts(&c.plan("a-w1")).contains(&cidr("10.2.0.0/24")));
}

#[test]
fn inputs_are_read_from_objects() {
    assert!(is_wireguard_key(&key(9)));
    assert!(!is_wireguard_key(&format!("{}B=", "A".repeat(42))));
    assert!(!is_wireguard_key(&"A".repeat(44)));
    assert_eq!(NatType::parse("Port-Restricted"), NatType::PortRestricted);
    assert_eq!(NatType::parse("symmetric"), NatType::Symmetric);
    assert_eq!(NatType::parse("Full Cone"), NatType::FullCone);
    assert_eq!(NatType::parse("weird"), NatType::Undefined);

    let n = NodeView::from_node_json(&json!({
        "metadata": {"name": "n1", "labels": {"raven.openyurt.io/gateway": "gw"}},
        "spec": {"podCIDR": "10.5.0.7/24"},
        "status": {"addresses": [
            {"type": "ExternalIP", "address": "8.8.8.8"},
            {"type": "InternalIP", "address": "bogus"},
            {"type": "InternalIP", "address": "10.0.0.5"}
        ]}
    }));
    assert_eq!(n.name, "n1");
    assert_eq!(n.gateway.as_deref(), Some("gw"));
    assert_eq!(n.internal_ip, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(
        n.pod_cidrs.iter().copied().collect::<Vec<_>>(),
        cidrs(&["10.5.0.0/24"])
    );

    let mut e = endpoint(&ep("g", true, Some("not-an-ip"), Some(key(4))));
    e.port = Some(70000);
    e.public_port = Some(-1);
    let read = |e: &Endpoint| TunnelEndpoint::from_endpoint_json(&serde_json::to_value(e).unwrap());
    let t = read(&e).unwrap();
    assert_eq!((t.port, t.public_ip, t.public_port), (4500, None, None));
    assert_eq!((t.under_nat, t.public_key), (true, Some(key(4))));
    e.port = Some(4600);
    e.public_port = Some(31000);
    e.nat_type = Some("FullCone".into());
    let t = read(&e).unwrap();
    assert_eq!(
        (t.port, t.public_port, t.nat_type),
        (4600, Some(31000), NatType::FullCone)
    );
    e.type_ = EndpointType::Proxy;
    assert!(read(&e).is_none());

    let gw = gateway("gw", None);
    assert_eq!(GatewayView::from_gateway(&gw).active, None);
    // The typed and the JSON readers agree.
    let c = Cluster::central_and_two_nated();
    let json: Vec<serde_json::Value> = c
        .gateways
        .iter()
        .map(|g| serde_json::to_value(g).unwrap())
        .collect();
    assert_eq!(ClusterView::from_json(&json, &c.nodes), c.view());
    assert!(c.view().gateways.iter().all(|g| g.active.is_some()));
}

#[test]
fn vxlan_addresses_derive_from_the_underlay() {
    let a = vxlan_address("172.16.1.10".parse().unwrap());
    assert_eq!(a.to_string(), "240.16.1.10");
    assert_eq!(vxlan_mac(a).to_string(), "aa:0f:f0:10:01:0a");
}
