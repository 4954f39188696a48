//! Data-path tests of the Raven L3 drivers in network namespaces made by the test.
//!
//! Design: the planner runs in the test process (the cluster view is built in memory, as the
//! agent builds it from Gateway and Node objects) and the real drivers act inside each node's
//! namespace: the netlink driver over a netlink socket opened in that namespace, the NAT
//! driver through `nsenter --net=`. So no apiserver has to be reachable from the namespaces.
//!
//! Topology of one site: a LAN namespace holding a bridge, and one namespace per node with a
//! veth into it (underlay `192.168.10.0/24`). The worker owns pod address `10.244.1.1` (pod
//! CIDR `10.244.1.0/24`) on its loopback device and masquerades everything it sends (standing in
//! for a CNI's masquerade rule). The remote site's pod subnet `10.245.0.0/24` is announced by
//! a second Gateway; inside this site its address `10.245.0.1` lives on the gateway nodes (each
//! answers with its own name), so the member's path `pod -> raven0 (VXLAN) -> active gateway`
//! is exercised for real, and the gateway sees the connection's source address. On gateway
//! nodes a blank device `raven-wg0` stands in for the WireGuard device (its driver is tested apart).
//!
//! Needs root and network namespaces; without them the tests print `skipping:` and pass,
//! except under CI (`CI` set), where that is a failure.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yurt_tunnel::l3::driver::nat::{NatBackend, NatDriver};
use yurt_tunnel::l3::driver::netlink::NetlinkDriver;
use yurt_tunnel::l3::driver::{Driver, Engine};
use yurt_tunnel::l3::{
    Cidr, ClusterView, GatewayView, Item, NodeView, Plan, PlanConfig, Role, TunnelEndpoint,
    WIREGUARD_DEVICE, plan,
};

const STEP: Duration = Duration::from_secs(20);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 245, 0, 1);
const PORT: u16 = 7070;
const KEY_B: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Runs a command, failing the test with its output when it fails.
async fn sh(argv: &[&str]) -> String {
    let out = tokio::time::timeout(
        STEP,
        tokio::process::Command::new(argv[0])
            .args(&argv[1..])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{argv:?} timed out"))
    .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a command succeeds.
async fn ok(argv: &[&str]) -> bool {
    matches!(
        tokio::time::timeout(
            STEP,
            tokio::process::Command::new(argv[0])
                .args(&argv[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status(),
        )
        .await,
        Ok(Ok(s)) if s.success()
    )
}

/// The namespaces of one test; deleted by [`Lab::destroy`], or on drop if the test panicked.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Lab {
    /// Creates `<prefix>lan` with a bridge, or says why the machine cannot.
    async fn new(tag: &str) -> Option<Self> {
        let prefix = format!("l3{}{tag}", std::process::id() % 100_000);
        let lan = format!("{prefix}lan");
        let _ = ok(&["ip", "netns", "del", &lan]).await;
        if !ok(&["ip", "netns", "add", &lan]).await {
            let why = "cannot create network namespaces (needs root and `ip netns`)";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("skipping: l3_datapath: {why}");
            return None;
        }
        let lab = Self {
            prefix,
            namespaces: vec![lan.clone()],
        };
        sh(&["ip", "-n", &lan, "link", "add", "br0", "type", "bridge"]).await;
        sh(&["ip", "-n", &lan, "link", "set", "br0", "up"]).await;
        Some(lab)
    }

    fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    fn path(&self, node: &str) -> String {
        format!("/run/netns/{}", self.ns(node))
    }

    /// A node namespace on the LAN with underlay address `192.168.10.<host>`.
    async fn node(&mut self, node: &str, host: u8) {
        self.node_on("lan", "192.168.10", node, host).await;
    }

    /// A bridge namespace `name` (another site's LAN, or the internet).
    async fn bridge(&mut self, name: &str) {
        let ns = self.ns(name);
        let _ = ok(&["ip", "netns", "del", &ns]).await;
        sh(&["ip", "netns", "add", &ns]).await;
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]).await;
        sh(&["ip", "-n", &ns, "link", "set", "br0", "up"]).await;
    }

    /// Plugs `node` (created if missing) into bridge namespace `lan` as `dev` with `addr/24`.
    async fn plug(&mut self, lan: &str, node: &str, dev: &str, addr: &str) {
        let ns = self.ns(node);
        if !self.namespaces.contains(&ns) {
            let _ = ok(&["ip", "netns", "del", &ns]).await;
            sh(&["ip", "netns", "add", &ns]).await;
            self.namespaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]).await;
            for key in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ] {
                sh(&["ip", "netns", "exec", &ns, "sysctl", "-qw", key]).await;
            }
        }
        let lan_ns = self.ns(lan);
        let port = format!("{node}{dev}");
        sh(&[
            "ip", "link", "add", dev, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &lan_ns,
        ])
        .await;
        sh(&[
            "ip", "-n", &lan_ns, "link", "set", &port, "master", "br0", "up",
        ])
        .await;
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            dev,
        ])
        .await;
        sh(&["ip", "-n", &ns, "link", "set", dev, "up"]).await;
    }

    async fn node_on(&mut self, lan: &str, net: &str, node: &str, host: u8) {
        let ns = self.ns(node);
        let lan = self.ns(lan);
        let _ = ok(&["ip", "netns", "del", &ns]).await;
        sh(&["ip", "netns", "add", &ns]).await;
        self.namespaces.push(ns.clone());
        let port = format!("p{}{host}", net.rsplit('.').next().unwrap_or_default());
        sh(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &lan,
        ])
        .await;
        sh(&[
            "ip", "-n", &lan, "link", "set", &port, "master", "br0", "up",
        ])
        .await;
        let addr = format!("{net}.{host}/24");
        sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"]).await;
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]).await;
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]).await;
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ] {
            sh(&["ip", "netns", "exec", &ns, "sysctl", "-qw", key]).await;
        }
    }

    /// Adds `addr/32` on the loopback device of `node`'s namespace.
    async fn local_address(&self, node: &str, addr: Ipv4Addr) {
        let a = format!("{addr}/32");
        sh(&["ip", "-n", &self.ns(node), "addr", "add", &a, "dev", "lo"]).await;
    }

    /// A device `name` that is up and carries nothing (a port-less bridge: this kernel may
    /// lack the dummy driver).
    async fn blank_device(&self, node: &str, name: &str) {
        let ns = self.ns(node);
        sh(&["ip", "-n", &ns, "link", "add", name, "type", "bridge"]).await;
        sh(&["ip", "-n", &ns, "link", "set", name, "up"]).await;
    }

    async fn destroy(mut self) {
        for ns in std::mem::take(&mut self.namespaces) {
            let _ = ok(&["ip", "netns", "del", &ns]).await;
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Only reached with namespaces left when the test failed before `destroy`.
        for ns in &self.namespaces {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// Runs `f` on a short-lived thread inside the network namespace at `path` (sockets created
/// there stay in that namespace).
async fn in_netns<T: Send + 'static>(
    path: String,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let file = std::fs::File::open(&path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            f()
        })();
        let _ = tx.send(r);
    });
    tokio::time::timeout(STEP, rx)
        .await
        .expect("namespace thread timed out")
        .expect("namespace thread died")
}

/// A TCP server on `REMOTE:PORT` in `node`'s namespace answering each connection with
/// `"<node> <peer address>"`. Aborted on drop.
struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(lab: &Lab, node: &str) -> Server {
    let std_listener = in_netns(lab.path(node), || {
        let l = std::net::TcpListener::bind(SocketAddr::from((REMOTE, PORT)))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .await
    .expect("listener");
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
    let name = node.to_owned();
    Server(tokio::spawn(async move {
        while let Ok((mut s, peer)) = listener.accept().await {
            let reply = format!("{name} {}", peer.ip());
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    }))
}

/// Connects from the worker's pod address to `REMOTE:PORT`; returns the server's reply.
async fn call(lab: &Lab) -> String {
    let socket = in_netns(lab.path("w"), || {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::from((POD, 0)))?;
        Ok(s)
    })
    .await
    .expect("socket");
    let mut stream = tokio::time::timeout(STEP, socket.connect(SocketAddr::from((REMOTE, PORT))))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut reply = String::new();
    tokio::time::timeout(STEP, stream.read_to_string(&mut reply))
        .await
        .expect("read timed out")
        .expect("read");
    reply
}

async fn ping(lab: &Lab) -> bool {
    ok(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("w"),
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        "-I",
        &POD.to_string(),
        &REMOTE.to_string(),
    ])
    .await
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn node(name: &str, host: u8, pod_cidr: &str, gateway: &str) -> NodeView {
    NodeView {
        name: name.into(),
        internal_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 10, host))),
        pod_cidrs: BTreeSet::from([cidr(pod_cidr)]),
        gateway: Some(gateway.into()),
    }
}

fn endpoint(node: &str, key: Option<&str>, public_ip: &str) -> TunnelEndpoint {
    TunnelEndpoint {
        node_name: node.into(),
        under_nat: false,
        nat_type: Default::default(),
        public_ip: public_ip.parse().ok(),
        public_port: None,
        port: 4500,
        public_key: key.map(str::to_owned),
    }
}

/// Site A (gateway nodes `g1`, `g2`, worker `w`) with `active` as its tunnel endpoint, and a
/// remote site B whose pod subnet is `10.245.0.0/24`.
fn view(active: &str) -> ClusterView {
    let key_a = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    ClusterView {
        gateways: vec![
            GatewayView {
                name: "gw-a".into(),
                active: Some(endpoint(active, Some(key_a), "203.0.113.1")),
                subnets: BTreeSet::new(),
            },
            GatewayView {
                name: "gw-b".into(),
                active: Some(endpoint("b1", Some(KEY_B), "203.0.113.2")),
                subnets: BTreeSet::new(),
            },
        ],
        nodes: vec![
            node("g1", 1, "10.244.0.0/24", "gw-a"),
            node("w", 2, "10.244.1.0/24", "gw-a"),
            node("g2", 3, "10.244.2.0/24", "gw-a"),
            NodeView {
                name: "b1".into(),
                internal_ip: Some(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1))),
                pod_cidrs: BTreeSet::from([cidr("10.245.0.0/24")]),
                gateway: Some("gw-b".into()),
            },
        ],
    }
}

/// `node`'s plan without the WireGuard items (a blank `raven-wg0` stands in for the device).
fn plan_for(view: &ClusterView, node: &str) -> Plan {
    let p = plan(view, node, &PlanConfig::default());
    let items: Vec<Item> = p
        .items()
        .filter(|i| !matches!(i, Item::WireGuardDevice { .. } | Item::Peer(_)))
        .cloned()
        .collect();
    Plan::from_items(p.role.clone(), items)
}

/// An engine acting in `node`'s namespace: netlink, plus skip-NAT rules with `nat` (the
/// node's detected backend when `None` inside).
async fn engine(lab: &Lab, node: &str, nat: Option<Option<NatBackend>>) -> Engine {
    let mut drivers: Vec<Box<dyn Driver>> = vec![Box::new(
        NetlinkDriver::connect_in(lab.path(node))
            .await
            .expect("netlink socket in namespace"),
    )];
    if let Some(backend) = nat {
        let backend = match backend {
            Some(b) => b,
            None => NatBackend::detect().await.expect("nft or iptables"),
        };
        drivers.push(Box::new(NatDriver::in_netns(backend, lab.path(node))));
    }
    Engine::new(drivers)
}

/// What of ours is on `node`: raven0, routes marked with our protocol, our NAT table/chain.
async fn leftovers(lab: &Lab, node: &str) -> Vec<String> {
    let ns = lab.ns(node);
    let mut out = Vec::new();
    if ok(&["ip", "-n", &ns, "link", "show", "raven0"]).await {
        out.push("raven0".to_owned());
    }
    let routes = sh(&["ip", "-n", &ns, "route", "show", "proto", "0x52"]).await;
    out.extend(routes.lines().map(|l| format!("route {l}")));
    if ok(&[
        "ip", "netns", "exec", &ns, "nft", "list", "table", "ip", "raven",
    ])
    .await
    {
        out.push("nft table raven".to_owned());
    }
    if ok(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "iptables",
        "-t",
        "nat",
        "-S",
        "RAVEN-SKIP-NAT",
    ])
    .await
    {
        out.push("iptables chain RAVEN-SKIP-NAT".to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_reaches_active_gateway_over_vxlan_keeps_pod_source_and_follows_failover() {
    let _g = crate::support::shared().await;
    let Some(mut lab) = Lab::new("a").await else {
        return;
    };
    lab.node("g1", 1).await;
    lab.node("w", 2).await;
    lab.node("g2", 3).await;
    lab.local_address("w", POD).await;
    for g in ["g1", "g2"] {
        lab.local_address(g, REMOTE).await;
        lab.blank_device(g, WIREGUARD_DEVICE).await;
        // The CNI's route back to the worker's pod CIDR.
        sh(&[
            "ip",
            "-n",
            &lab.ns(g),
            "route",
            "add",
            "10.244.1.0/24",
            "via",
            "192.168.10.2",
        ])
        .await;
    }
    // The worker masquerades everything it sends, as a CNI would for pod egress.
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("w"),
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "!",
        "-o",
        "lo",
        "-j",
        "MASQUERADE",
    ])
    .await;
    let _s1 = serve(&lab, "g1").await;
    let _s2 = serve(&lab, "g2").await;

    // Without our state the worker has no route to the remote subnet.
    assert!(!ping(&lab).await, "remote subnet reachable before any plan");

    let v1 = view("g1");
    let g1 = engine(&lab, "g1", Some(None)).await;
    let g2 = engine(&lab, "g2", Some(None)).await;
    let w_links_only = engine(&lab, "w", None).await;
    assert!(g1.sync(&plan_for(&v1, "g1")).await.unwrap() > 0);
    // The standby gateway node is an ordinary member while g1 is active.
    let g2_plan = plan_for(&v1, "g2");
    assert!(
        matches!(g2_plan.role, Role::Member { .. }),
        "{:?}",
        g2_plan.role
    );
    assert!(g2.sync(&g2_plan).await.unwrap() > 0);

    // VXLAN and routes only: packets reach g1 but leave the worker masqueraded to its overlay
    // address, which the gateway has no route back to, so nothing answers.
    let w_plan = plan_for(&v1, "w");
    assert!(w_links_only.sync(&w_plan).await.unwrap() > 0);
    assert!(!ping(&lab).await, "masqueraded traffic must not come back");
    drop(w_links_only);

    // With the skip-NAT rule the gateway sees the pod address.
    let w = engine(&lab, "w", Some(None)).await;
    assert!(w.sync(&w_plan).await.unwrap() > 0);
    assert_eq!(call(&lab).await, format!("g1 {POD}"));
    assert!(ping(&lab).await, "ping over raven0");
    assert_eq!(w.sync(&w_plan).await.unwrap(), 0, "sync is idempotent");

    // Drift: someone deletes our route and our NAT rules; the next sync repairs both.
    let ns = lab.ns("w");
    sh(&["ip", "-n", &ns, "route", "del", "10.245.0.0/24"]).await;
    let _ = ok(&[
        "ip", "netns", "exec", &ns, "nft", "delete", "table", "ip", "raven",
    ])
    .await;
    let _ = ok(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "iptables",
        "-t",
        "nat",
        "-F",
        "RAVEN-SKIP-NAT",
    ])
    .await;
    assert!(!ping(&lab).await, "route deleted");
    assert!(
        w.sync(&w_plan).await.unwrap() >= 2,
        "route and skip-NAT entry re-added"
    );
    assert_eq!(call(&lab).await, format!("g1 {POD}"));

    // Failover: g2 becomes the active endpoint. g1 tears its state down, g2 builds it, and the
    // worker's route, forwarding and neighbour entries move to g2.
    let v2 = view("g2");
    g1.sync(&plan_for(&v2, "g1")).await.unwrap();
    // g1 is now an ordinary member: its tunnel route is gone, it goes through g2 instead.
    let g1_routes = sh(&["ip", "-n", &lab.ns("g1"), "route", "show", "proto", "0x52"]).await;
    assert_eq!(
        g1_routes.trim(),
        "10.245.0.0/24 via 240.168.10.3 dev raven0 onlink"
    );
    g2.sync(&plan_for(&v2, "g2")).await.unwrap();
    w.sync(&plan_for(&v2, "w")).await.unwrap();
    assert_eq!(call(&lab).await, format!("g2 {POD}"));
    assert!(ping(&lab).await, "ping after failover");

    // Agent restart: a fresh engine (no memory of what was applied) converges and, on
    // shutdown, removes everything of ours.
    drop(w);
    let w = engine(&lab, "w", Some(None)).await;
    assert_eq!(
        w.sync(&plan_for(&v2, "w")).await.unwrap(),
        0,
        "restart finds its own state"
    );
    w.teardown().await.unwrap();
    g2.teardown().await.unwrap();
    g1.teardown().await.unwrap();
    for n in ["w", "g1", "g2"] {
        assert_eq!(
            leftovers(&lab, n).await,
            Vec::<String>::new(),
            "{n} left state behind"
        );
    }
    // Routes of others survive: the CNI route on g2 is still there.
    let kept = sh(&["ip", "-n", &lab.ns("g2"), "route", "show", "10.244.1.0/24"]).await;
    assert!(kept.contains("via 192.168.10.2"), "{kept}");
    assert!(!ping(&lab).await, "no path after teardown");
    lab.destroy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_device_and_routes_are_replaced_and_iptables_backend_works() {
    let _g = crate::support::shared().await;
    let Some(mut lab) = Lab::new("b").await else {
        return;
    };
    lab.node("w", 2).await;
    lab.node("g1", 1).await;
    let ns = lab.ns("w");
    // A stale raven0 from an older configuration (other VNI, learning on) and a stale route.
    sh(&[
        "ip",
        "-n",
        &ns,
        "link",
        "add",
        "raven0",
        "type",
        "vxlan",
        "id",
        "7",
        "dstport",
        "4789",
        "local",
        "192.168.10.2",
    ])
    .await;
    sh(&["ip", "-n", &ns, "link", "set", "raven0", "up"]).await;
    sh(&[
        "ip",
        "-n",
        &ns,
        "route",
        "add",
        "10.99.0.0/16",
        "dev",
        "raven0",
        "proto",
        "0x52",
    ])
    .await;
    let w = engine(&lab, "w", Some(Some(NatBackend::Iptables))).await;
    w.sync(&plan_for(&view("g1"), "w")).await.unwrap();
    let link = sh(&["ip", "-d", "-n", &ns, "link", "show", "raven0"]).await;
    assert!(link.contains("id 1 "), "{link}");
    assert!(link.contains("dstport 4478"), "{link}");
    assert!(link.contains("nolearning"), "{link}");
    assert!(link.contains("aa:0f:f0:a8:0a:02"), "{link}");
    let routes = sh(&["ip", "-n", &ns, "route", "show", "proto", "0x52"]).await;
    assert_eq!(
        routes.trim(),
        "10.245.0.0/24 via 240.168.10.1 dev raven0 onlink",
        "stale route removed, ours added"
    );
    // The iptables backend: our chain, jumped to first from POSTROUTING.
    let nat = sh(&["ip", "netns", "exec", &ns, "iptables", "-t", "nat", "-S"]).await;
    assert!(
        nat.contains("-A RAVEN-SKIP-NAT -d 10.245.0.0/24 -j ACCEPT"),
        "{nat}"
    );
    let post = sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "iptables",
        "-t",
        "nat",
        "-S",
        "POSTROUTING",
    ])
    .await;
    assert_eq!(
        post.lines().nth(1),
        Some("-A POSTROUTING -j RAVEN-SKIP-NAT"),
        "{post}"
    );
    let fdb = sh(&["bridge", "-n", &ns, "fdb", "show", "dev", "raven0"]).await;
    assert!(fdb.contains("dst 192.168.10.1"), "{fdb}");
    w.teardown().await.unwrap();
    assert_eq!(leftovers(&lab, "w").await, Vec::<String>::new());
    lab.destroy().await;
}

mod agent {
    //! The agent loop against the test apiserver: two agents (active gateway `g1` and worker
    //! `w`) watch Gateways, Nodes and `raven-cfg`, each driving the drivers in its namespace.

    use super::*;
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
    use serde_json::{Value, json};
    use yurt_testkit::{ResourceDef, TestApiServer};
    use yurt_tunnel::l3::driver::agent::{L3AgentConfig, gateway_resource, run};

    const KEY_W: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

    fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural);
        match kind {
            "ConfigMap" => Api::namespaced_with(client.clone(), "kube-system", &ar),
            _ => Api::all_with(client.clone(), &ar),
        }
    }

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    async fn create_node(nodes: &Api<DynamicObject>, name: &str, ip: &str, cidr: &str, gw: &str) {
        let pp = Default::default();
        nodes
            .create(
                &pp,
                &obj(json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"raven.openyurt.io/gateway": gw}},
                    "spec": {"podCIDR": cidr},
                })),
            )
            .await
            .unwrap();
        let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    async fn create_gateway(gws: &Api<DynamicObject>, name: &str, endpoints: Value, active: Value) {
        gws.create(
            &Default::default(),
            &obj(json!({
                "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
                "metadata": {"name": name},
                "spec": {"endpoints": endpoints},
            })),
        )
        .await
        .unwrap();
        let status = json!({"status": {"activeEndpoints": active}});
        gws.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    async fn switch(cms: &Api<DynamicObject>, on: bool) {
        let patch = json!({"data": {"enable-l3-tunnel": on.to_string()}});
        cms.patch("raven-cfg", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Polls `cond` every 100 ms until it holds or `STEP` passes.
    async fn eventually<F: std::future::Future<Output = bool>>(
        what: &str,
        mut cond: impl FnMut() -> F,
    ) {
        let deadline = tokio::time::Instant::now() + STEP;
        while !cond().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn our_routes(lab: &Lab, node: &str) -> String {
        sh(&["ip", "-n", &lab.ns(node), "route", "show", "proto", "0x52"]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn agent_follows_the_cluster_and_the_switch_repairs_drift_and_cleans_up() {
        let _g = crate::support::shared().await;
        let Some(mut lab) = Lab::new("c").await else {
            return;
        };
        lab.node("g1", 1).await;
        lab.node("w", 2).await;
        lab.local_address("w", POD).await;
        lab.local_address("g1", REMOTE).await;
        lab.blank_device("g1", WIREGUARD_DEVICE).await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("g1"),
            "route",
            "add",
            "10.244.1.0/24",
            "via",
            "192.168.10.2",
        ])
        .await;
        let _server = serve(&lab, "g1").await;

        let apiserver = TestApiServer::start().await.unwrap();
        apiserver.register(
            ResourceDef::new("raven.openyurt.io", "v1beta1", "gateways", "Gateway")
                .cluster_scoped()
                .status_subresource(),
        );
        let client = apiserver.client();
        let nodes = api(&client, "Node", "nodes");
        let cms = api(&client, "ConfigMap", "configmaps");
        let gws = Api::<DynamicObject>::all_with(client.clone(), &gateway_resource());
        create_node(&nodes, "g1", "192.168.10.1", "10.244.0.0/24", "gw-a").await;
        create_node(&nodes, "w", "192.168.10.2", "10.244.1.0/24", "gw-a").await;
        create_node(&nodes, "b1", "172.16.0.1", "10.245.0.0/24", "gw-b").await;
        let key_a = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
        let ep = |node: &str, key: Option<&str>, ip: &str| {
            let mut e = json!({"nodeName": node, "type": "tunnel", "port": 4500, "publicIP": ip});
            if let Some(k) = key {
                e["config"] = json!({"publicKey": k});
            }
            e
        };
        create_gateway(
            &gws,
            "gw-a",
            json!([
                ep("g1", Some(key_a), "203.0.113.1"),
                ep("w", None, "203.0.113.9")
            ]),
            json!([ep("g1", Some(key_a), "203.0.113.1")]),
        )
        .await;
        create_gateway(
            &gws,
            "gw-b",
            json!([ep("b1", Some(KEY_B), "203.0.113.2")]),
            json!([ep("b1", Some(KEY_B), "203.0.113.2")]),
        )
        .await;
        cms.create(
            &Default::default(),
            &obj(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
                "data": {"enable-l3-tunnel": "true", "enable-l7-proxy": "true"},
            })),
        )
        .await
        .unwrap();

        let mut agents = Vec::new();
        for (node, key) in [("g1", None), ("w", Some(KEY_W))] {
            let mut cfg = L3AgentConfig::new(node);
            cfg.sync_period = Duration::from_millis(500);
            cfg.retry_after = Duration::from_millis(200);
            cfg.public_key = key.map(str::to_owned);
            let eng = engine(&lab, node, Some(None)).await;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(run(client.clone(), eng, cfg, async move {
                let _ = stopped.await;
            }));
            agents.push((stop, task));
        }

        // The worker routes the remote subnet to g1 over raven0, without NAT.
        eventually("worker route via g1", || async {
            our_routes(&lab, "w")
                .await
                .contains("10.245.0.0/24 via 240.168.10.1 dev raven0")
        })
        .await;
        eventually("g1 raven0", || async {
            leftovers(&lab, "g1").await.contains(&"raven0".to_owned())
        })
        .await;
        assert_eq!(call(&lab).await, format!("g1 {POD}"));

        // The worker published its public key in its own endpoint, and only there.
        eventually("public key published", || async {
            let gw = gws.get("gw-a").await.unwrap();
            let eps = gw.data["spec"]["endpoints"].clone();
            eps[1]["config"]["publicKey"] == KEY_W && eps[0]["config"]["publicKey"] == key_a
        })
        .await;

        // Drift is repaired by the periodic sync.
        sh(&["ip", "-n", &lab.ns("w"), "route", "del", "10.245.0.0/24"]).await;
        eventually("route repaired", || async {
            our_routes(&lab, "w").await.contains("10.245.0.0/24")
        })
        .await;

        // The raven-cfg switch off removes everything; on brings it back.
        switch(&cms, false).await;
        for n in ["w", "g1"] {
            eventually("l3 off", || async { leftovers(&lab, n).await.is_empty() }).await;
        }
        switch(&cms, true).await;
        eventually("l3 on again", || async {
            our_routes(&lab, "w").await.contains("10.245.0.0/24")
        })
        .await;
        eventually("traffic again", || async { ping(&lab).await }).await;

        // Shutdown tears down what each agent created.
        for (stop, task) in agents {
            let _ = stop.send(());
            tokio::time::timeout(STEP, task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        for n in ["w", "g1"] {
            assert_eq!(
                leftovers(&lab, n).await,
                Vec::<String>::new(),
                "{n} left state behind"
            );
        }
        lab.destroy().await;
    }
}

mod cross_site {
    //! Two sites through the tunnel. Site A's gateway `g1` has a public address on the
    //! "internet" bridge; site B sits behind a NAT namespace `rb` that masquerades its LAN
    //! (`192.168.20.0/24`) and has no route into site A's LAN. Pods: `10.244.1.1` on A's worker
    //! `w`, `10.245.1.1` on B's worker `wb`. Gateway nodes run the whole engine (userspace
    //! WireGuard, netlink, skip-NAT) on a thread inside their namespace, so the TUN device is
    //! created there; workers run netlink and skip-NAT from the test process. Then site B's
    //! active gateway moves to `gb2` and traffic resumes; shutdown leaves nothing behind.

    use super::*;
    use yurt_tunnel::l3::wireguard::{WireGuardConfig, WireGuardDriver, WireGuardKey};

    const POD_B: Ipv4Addr = Ipv4Addr::new(10, 245, 1, 1);

    type Request = (Plan, tokio::sync::oneshot::Sender<Result<usize, String>>);

    /// An engine living on a thread inside a namespace; syncs the plans it is sent, tears down
    /// when the sender is dropped.
    struct NsEngine {
        tx: Option<tokio::sync::mpsc::Sender<Request>>,
        done: Option<tokio::sync::oneshot::Receiver<Result<usize, String>>>,
    }

    impl NsEngine {
        fn start(path: String, key: WireGuardKey) -> Self {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Request>(4);
            let (done_tx, done) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let result = (|| -> Result<usize, String> {
                    let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| e.to_string())?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(async move {
                        let mut config = WireGuardConfig::new(key);
                        config.preshared_key = Some([7; 32]);
                        let drivers: Vec<Box<dyn Driver>> = vec![
                            Box::new(WireGuardDriver::new(config)),
                            Box::new(NetlinkDriver::connect().map_err(|e| e.to_string())?),
                            Box::new(NatDriver::new(
                                NatBackend::detect().await.ok_or("no nft/iptables")?,
                            )),
                        ];
                        let engine = Engine::new(drivers);
                        while let Some((plan, reply)) = rx.recv().await {
                            let _ = reply.send(engine.sync(&plan).await.map_err(|e| e.to_string()));
                        }
                        engine.teardown().await.map_err(|e| e.to_string())
                    })
                })();
                let _ = done_tx.send(result);
            });
            Self {
                tx: Some(tx),
                done: Some(done),
            }
        }

        async fn sync(&self, plan: Plan) -> usize {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.tx.as_ref().unwrap().send((plan, reply)).await.unwrap();
            tokio::time::timeout(STEP, answer)
                .await
                .expect("sync timed out")
                .unwrap()
                .expect("sync")
        }

        async fn stop(mut self) {
            drop(self.tx.take());
            let done = self.done.take().unwrap();
            tokio::time::timeout(STEP, done)
                .await
                .expect("teardown timed out")
                .unwrap()
                .expect("teardown");
        }
    }

    /// Site B's active endpoint is `b_node` with key `key_b`.
    fn view(key_a: &str, b_node: &str, key_b: &str) -> ClusterView {
        let mut a = endpoint("g1", Some(key_a), "203.0.113.1");
        a.port = 4500;
        let mut b = endpoint(b_node, Some(key_b), "203.0.113.2");
        b.under_nat = true;
        let node_b = |name: &str, host: u8, cidr: &str| NodeView {
            name: name.into(),
            internal_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 20, host))),
            pod_cidrs: BTreeSet::from([super::cidr(cidr)]),
            gateway: Some("gw-b".into()),
        };
        ClusterView {
            gateways: vec![
                GatewayView {
                    name: "gw-a".into(),
                    active: Some(a),
                    subnets: BTreeSet::new(),
                },
                GatewayView {
                    name: "gw-b".into(),
                    active: Some(b),
                    subnets: BTreeSet::new(),
                },
            ],
            nodes: vec![
                node("g1", 1, "10.244.0.0/24", "gw-a"),
                node("w", 2, "10.244.1.0/24", "gw-a"),
                node_b("gb", 1, "10.245.0.0/24"),
                node_b("wb", 2, "10.245.1.0/24"),
                node_b("gb2", 3, "10.245.2.0/24"),
            ],
        }
    }

    async fn ping_from(lab: &Lab, node: &str, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        ok(&[
            "ip",
            "netns",
            "exec",
            &lab.ns(node),
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            &src.to_string(),
            &dst.to_string(),
        ])
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pods_of_two_sites_reach_each_other_through_the_tunnel_and_after_failover() {
        let _g = crate::support::shared().await;
        let Some(mut lab) = Lab::new("d").await else {
            return;
        };
        // Site A: LAN 192.168.10.0/24; g1 also on the internet as 203.0.113.1.
        lab.node("g1", 1).await;
        lab.node("w", 2).await;
        lab.bridge("net").await;
        lab.plug("net", "g1", "up0", "203.0.113.1").await;
        // Site B: LAN 192.168.20.0/24 behind the masquerading router rb (203.0.113.2).
        lab.bridge("lanb").await;
        lab.plug("lanb", "rb", "in0", "192.168.20.254").await;
        lab.plug("net", "rb", "up0", "203.0.113.2").await;
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.ns("rb"),
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "up0",
            "-j",
            "MASQUERADE",
        ])
        .await;
        lab.plug("lanb", "gb", "eth0", "192.168.20.1").await;
        lab.plug("lanb", "wb", "eth0", "192.168.20.2").await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("gb"),
            "route",
            "add",
            "default",
            "via",
            "192.168.20.254",
        ])
        .await;
        lab.local_address("w", POD).await;
        lab.local_address("wb", POD_B).await;
        // The CNI's routes from each gateway to its worker's pod CIDR.
        sh(&[
            "ip",
            "-n",
            &lab.ns("g1"),
            "route",
            "add",
            "10.244.1.0/24",
            "via",
            "192.168.10.2",
        ])
        .await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("gb"),
            "route",
            "add",
            "10.245.1.0/24",
            "via",
            "192.168.20.2",
        ])
        .await;
        // No path between the sites without the tunnel.
        assert!(!ping_from(&lab, "w", POD, POD_B).await);

        let key_a = WireGuardKey::generate().unwrap();
        let key_b = WireGuardKey::generate().unwrap();
        let ga_key_pub = key_a.public_key_base64();
        let v = view(&key_a.public_key_base64(), "gb", &key_b.public_key_base64());
        let cfg = PlanConfig::default();
        let ga = NsEngine::start(lab.path("g1"), key_a);
        let gb = NsEngine::start(lab.path("gb"), key_b);
        assert!(ga.sync(plan(&v, "g1", &cfg)).await > 0);
        assert!(gb.sync(plan(&v, "gb", &cfg)).await > 0);
        let wa = engine(&lab, "w", Some(None)).await;
        let wb = engine(&lab, "wb", Some(None)).await;
        assert!(wa.sync(&plan(&v, "w", &cfg)).await.unwrap() > 0);
        assert!(wb.sync(&plan(&v, "wb", &cfg)).await.unwrap() > 0);

        // The NATed side dials first (its peer has the public endpoint); then both directions.
        let deadline = tokio::time::Instant::now() + STEP;
        while !ping_from(&lab, "wb", POD_B, POD).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "site B cannot reach site A"
            );
        }
        assert!(
            ping_from(&lab, "w", POD, POD_B).await,
            "site A cannot reach site B"
        );

        // A TCP stream from A's pod to B's pod keeps the pod source address end to end.
        let listener = in_netns(lab.path("wb"), || {
            let l = std::net::TcpListener::bind(SocketAddr::from((POD_B, PORT)))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, peer) = listener.accept().await.unwrap();
            let mut buf = vec![0; 1 << 20];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(peer.ip().to_string().as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let socket = in_netns(lab.path("w"), || {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::from((POD, 0)))?;
            Ok(s)
        })
        .await
        .unwrap();
        let mut stream =
            tokio::time::timeout(STEP, socket.connect(SocketAddr::from((POD_B, PORT))))
                .await
                .unwrap()
                .unwrap();
        tokio::time::timeout(STEP, stream.write_all(&vec![0x5a; 1 << 20]))
            .await
            .unwrap()
            .unwrap();
        let mut reply = String::new();
        tokio::time::timeout(STEP, stream.read_to_string(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, POD.to_string());
        tokio::time::timeout(STEP, server).await.unwrap().unwrap();

        // Failover in site B: gb2 becomes the active endpoint (new key, same NAT). gb turns
        // into an ordinary member, g1 replaces its peer, wb's route moves to gb2.
        lab.plug("lanb", "gb2", "eth0", "192.168.20.3").await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("gb2"),
            "route",
            "add",
            "default",
            "via",
            "192.168.20.254",
        ])
        .await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("gb2"),
            "route",
            "add",
            "10.245.1.0/24",
            "via",
            "192.168.20.2",
        ])
        .await;
        let key_b2 = WireGuardKey::generate().unwrap();
        let key_a_pub = ga_key_pub;
        let v2 = view(&key_a_pub, "gb2", &key_b2.public_key_base64());
        let gb2 = NsEngine::start(lab.path("gb2"), key_b2);
        assert!(gb2.sync(plan(&v2, "gb2", &cfg)).await > 0);
        assert!(ga.sync(plan(&v2, "g1", &cfg)).await > 0);
        assert!(gb.sync(plan(&v2, "gb", &cfg)).await > 0);
        assert!(wb.sync(&plan(&v2, "wb", &cfg)).await.unwrap() > 0);
        assert!(!ok(&["ip", "-n", &lab.ns("gb"), "link", "show", WIREGUARD_DEVICE]).await);
        let deadline = tokio::time::Instant::now() + STEP;
        while !ping_from(&lab, "wb", POD_B, POD).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no traffic after failover"
            );
        }
        assert!(
            ping_from(&lab, "w", POD, POD_B).await,
            "A -> B after failover"
        );

        // Shutdown leaves nothing behind anywhere.
        ga.stop().await;
        gb.stop().await;
        gb2.stop().await;
        wa.teardown().await.unwrap();
        wb.teardown().await.unwrap();
        for n in ["g1", "w", "gb", "wb", "gb2"] {
            assert_eq!(
                leftovers(&lab, n).await,
                Vec::<String>::new(),
                "{n} left state behind"
            );
            assert!(!ok(&["ip", "-n", &lab.ns(n), "link", "show", WIREGUARD_DEVICE]).await);
        }
        lab.destroy().await;
    }

    /// A site behind the masquerading router `r<x>` (`203.0.113.<public>`), LAN
    /// `192.168.<net>.0/24` with gateway `g<x>` (.1) and worker `w<x>` (.2, pod `pod`).
    async fn natted_site(lab: &mut Lab, x: &str, net: u8, public: u8, pod: Ipv4Addr) {
        let (lan, r, g, w) = (
            format!("lan{x}"),
            format!("r{x}"),
            format!("g{x}"),
            format!("w{x}"),
        );
        lab.bridge(&lan).await;
        lab.plug(&lan, &r, "in0", &format!("192.168.{net}.254"))
            .await;
        lab.plug("net", &r, "up0", &format!("203.0.113.{public}"))
            .await;
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.ns(&r),
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "up0",
            "-j",
            "MASQUERADE",
        ])
        .await;
        lab.plug(&lan, &g, "eth0", &format!("192.168.{net}.1"))
            .await;
        lab.plug(&lan, &w, "eth0", &format!("192.168.{net}.2"))
            .await;
        let gw = format!("192.168.{net}.254");
        sh(&[
            "ip",
            "-n",
            &lab.ns(&g),
            "route",
            "add",
            "default",
            "via",
            &gw,
        ])
        .await;
        let cni = format!("{}.0/24", pod.to_string().rsplit_once('.').unwrap().0);
        let wip = format!("192.168.{net}.2");
        sh(&["ip", "-n", &lab.ns(&g), "route", "add", &cni, "via", &wip]).await;
        lab.local_address(&w, pod).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_natted_sites_reach_each_other_through_the_central_gateway() {
        let _g = crate::support::shared().await;
        let Some(mut lab) = Lab::new("e").await else {
            return;
        };
        const POD_C: Ipv4Addr = Ipv4Addr::new(10, 246, 1, 1);
        lab.node("g1", 1).await;
        lab.node("w", 2).await;
        lab.bridge("net").await;
        lab.plug("net", "g1", "up0", "203.0.113.1").await;
        sh(&[
            "ip",
            "-n",
            &lab.ns("g1"),
            "route",
            "add",
            "10.244.1.0/24",
            "via",
            "192.168.10.2",
        ])
        .await;
        lab.local_address("w", POD).await;
        natted_site(&mut lab, "b", 20, 2, POD_B).await;
        natted_site(&mut lab, "c", 30, 3, POD_C).await;

        let keys: Vec<WireGuardKey> = (0..3).map(|_| WireGuardKey::generate().unwrap()).collect();
        let pubs: Vec<String> = keys.iter().map(WireGuardKey::public_key_base64).collect();
        let mut v = view(&pubs[0], "gb", &pubs[1]);
        let mut c = endpoint("gc", Some(&pubs[2]), "203.0.113.3");
        c.under_nat = true;
        v.gateways.push(GatewayView {
            name: "gw-c".into(),
            active: Some(c),
            subnets: BTreeSet::new(),
        });
        for (name, host, cidr) in [("gc", 1, "10.246.0.0/24"), ("wc", 2, "10.246.1.0/24")] {
            v.nodes.push(NodeView {
                name: name.into(),
                internal_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 30, host))),
                pod_cidrs: BTreeSet::from([super::cidr(cidr)]),
                gateway: Some("gw-c".into()),
            });
        }
        let cfg = PlanConfig::default();
        // B and C are both behind NAT: they do not peer; each routes the other through g1.
        let gb_plan = plan(&v, "gb", &cfg);
        assert_eq!(gb_plan.peers().len(), 1, "{gb_plan:?}");
        let mut gateways = Vec::new();
        for (node, key) in ["g1", "gb", "gc"].into_iter().zip(keys) {
            let e = NsEngine::start(lab.path(node), key);
            assert!(e.sync(plan(&v, node, &cfg)).await > 0);
            gateways.push(e);
        }
        let mut workers = Vec::new();
        for node in ["w", "wb", "wc"] {
            let e = engine(&lab, node, Some(None)).await;
            assert!(e.sync(&plan(&v, node, &cfg)).await.unwrap() > 0);
            workers.push(e);
        }
        // Both NATed sites dial the central gateway first, then every pair talks.
        for (node, src) in [("wb", POD_B), ("wc", POD_C)] {
            let deadline = tokio::time::Instant::now() + STEP;
            while !ping_from(&lab, node, src, POD).await {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{node} cannot reach site A"
                );
            }
        }
        assert!(
            ping_from(&lab, "wb", POD_B, POD_C).await,
            "B -> C through g1"
        );
        assert!(
            ping_from(&lab, "wc", POD_C, POD_B).await,
            "C -> B through g1"
        );
        assert!(ping_from(&lab, "w", POD, POD_C).await, "A -> C");

        for e in gateways {
            e.stop().await;
        }
        for e in &workers {
            e.teardown().await.unwrap();
        }
        for n in ["g1", "w", "gb", "wb", "gc", "wc"] {
            assert_eq!(
                leftovers(&lab, n).await,
                Vec::<String>::new(),
                "{n} left state behind"
            );
        }
        lab.destroy().await;
    }
}
