//! Arbitrary Gateways and Nodes -> the L3 planner's JSON readers -> a plan for every node ->
//! diffs between them; arbitrary text -> the CIDR, NAT type and WireGuard key readers. Must
//! never panic; a parsed CIDR must print and re-parse to itself; planning must not depend on
//! input order; `diff(p, p)` must be empty and every diff must lead exactly to its target;
//! teardown must remove everything.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use yurt_tunnel::l3::{
    Change, Cidr, ClusterView, NatType, Plan, PlanConfig, apply, diff, is_wireguard_key, plan,
    teardown,
};

#[derive(Arbitrary, Debug)]
struct Gw {
    name: u8,
    node: u8,
    nat: Option<bool>,
    nat_type: Option<String>,
    public_ip: Option<String>,
    public_port: Option<i64>,
    port: Option<i64>,
    key: Option<u8>,
    subnets: Vec<String>,
    proxy_first: bool,
}

#[derive(Arbitrary, Debug)]
struct Node {
    name: u8,
    ip: Option<String>,
    pod_cidrs: Vec<String>,
    gateway: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    text: String,
    gateways: Vec<Gw>,
    nodes: Vec<Node>,
    nat_traversal: bool,
}

fn key(seed: u8) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    format!(
        "{}A=",
        (B64[usize::from(seed) % 64] as char).to_string().repeat(42)
    )
}

fn gateway(g: &Gw) -> Value {
    let mut config = serde_json::Map::new();
    if let Some(k) = g.key {
        // Odd seeds give malformed keys.
        let k = if k % 2 == 0 {
            key(k / 2)
        } else {
            format!("bad{k}")
        };
        config.insert("publicKey".into(), json!(k));
    }
    let tunnel = json!({
        "nodeName": format!("n{}", g.node % 8), "type": "tunnel",
        "port": g.port, "underNAT": g.nat, "natType": g.nat_type,
        "publicIP": g.public_ip, "publicPort": g.public_port, "config": config,
    });
    let proxy = json!({"nodeName": "p", "type": "proxy"});
    let active = if g.proxy_first {
        vec![proxy, tunnel]
    } else {
        vec![tunnel]
    };
    json!({
        "metadata": {"name": format!("g{}", g.name % 4)},
        "status": {"activeEndpoints": active,
                   "nodes": [{"nodeName": "x", "privateIP": "", "subnets": g.subnets}]},
    })
}

fn node(n: &Node) -> Value {
    let mut labels = serde_json::Map::new();
    if let Some(g) = n.gateway {
        labels.insert(
            "raven.openyurt.io/gateway".into(),
            json!(format!("g{}", g % 4)),
        );
    }
    json!({
        "metadata": {"name": format!("n{}", n.name % 8), "labels": labels},
        "spec": {"podCIDRs": n.pod_cidrs},
        "status": {"addresses": [{"type": "InternalIP", "address": n.ip}]},
    })
}

fuzz_target!(|input: Input| {
    if let Ok(c) = input.text.parse::<Cidr>() {
        assert_eq!(c.to_string().parse::<Cidr>(), Ok(c));
        assert!(c.contains(c.addr()));
    }
    let _ = NatType::parse(&input.text);
    if is_wireguard_key(&input.text) {
        assert_eq!(input.text.len(), 44);
    }

    let gws: Vec<Value> = input.gateways.iter().take(8).map(gateway).collect();
    let nodes: Vec<Value> = input.nodes.iter().take(12).map(node).collect();
    let view = ClusterView::from_json(&gws, &nodes);
    let mut reversed = view.clone();
    reversed.gateways.reverse();
    reversed.nodes.reverse();
    let config = PlanConfig {
        nat_traversal: input.nat_traversal,
        ..PlanConfig::default()
    };

    let plans: Vec<Plan> = (0..8)
        .map(|i| plan(&view, &format!("n{i}"), &config))
        .collect();
    for (i, p) in plans.iter().enumerate() {
        // Duplicated names keep their first entry, so only duplicate-free inputs are
        // order-independent.
        let unique = |names: Vec<&str>| {
            let mut s = names.clone();
            s.sort();
            s.dedup();
            s.len() == names.len()
        };
        if unique(view.gateways.iter().map(|g| g.name.as_str()).collect())
            && unique(view.nodes.iter().map(|n| n.name.as_str()).collect())
        {
            assert_eq!(p, &plan(&reversed, &format!("n{i}"), &config));
        }
        assert!(diff(p, p).is_empty());
        let down = teardown(p);
        assert!(down.iter().all(|c| matches!(c, Change::Remove(_))));
        assert!(apply(p, &down).is_empty());
        for q in &plans {
            assert!(apply(p, &diff(p, q)).items().eq(q.items()));
        }
    }
});
