//! The userspace WireGuard driver between two network namespaces made by the test, joined by a
//! veth pair (the "underlay"). Each namespace runs a [`WireGuardDriver`] fed with the planner's
//! diff for two public Gateways; the test adds the pod-subnet routes on `raven-wg0` with `ip` (the
//! netlink driver's job), then pings and streams TCP from a pod-subnet address in site A to one
//! in site B. Also: a changed Gateway public IP moves the peer and traffic resumes, shutdown
//! removes the device, and a restarted driver reuses its key file.
//!
//! Code runs inside a namespace on a dedicated OS thread that entered it with `setns` (network
//! namespaces are per thread), so sockets and the TUN device are created there. Needs root and
//! `ip`; without network namespaces the tests print a `skipping:` line, and fail under `CI`.

use std::future::Future;
use std::io::{Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use yurt_tunnel::l3::wireguard::{WireGuardConfig, WireGuardDriver, WireGuardKey, preshared_key};
use yurt_tunnel::l3::{ClusterView, Item, Plan, PlanConfig, WIREGUARD_DEVICE, diff, plan};

use crate::support;

const STEP: Duration = Duration::from_secs(20);

/// A network namespace, deleted on drop.
struct Ns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Ns {
    async fn create(tag: &str) -> Result<Ns, String> {
        let name = format!(
            "yurtwg-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]).await?;
        let ns = Ns { name };
        ns.ip("link set lo up").await?;
        Ok(ns)
    }

    /// `ip -n <ns> <args>`.
    async fn ip(&self, args: &str) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all).await
    }

    /// Runs blocking `f` on a new thread inside the namespace.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let path = self.path();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let r = enter(&path).map(|()| f());
            let _ = tx.send(r);
        });
        tokio::time::timeout(STEP, rx)
            .await
            .map_err(|_| "namespace thread timed out".to_owned())?
            .map_err(|_| "namespace thread died".to_owned())?
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn enter(path: &PathBuf) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {}: {e}", path.display()))
}

async fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(STEP, tokio::process::Command::new(cmd).args(args).output())
        .await
        .map_err(|_| format!("{cmd} {args:?} timed out"))?
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A tokio runtime on a thread inside a namespace: what it spawns (the driver's tasks, its
/// sockets, the TUN device) lives there. Dropping it ends the thread and everything on it.
struct NsRuntime {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    async fn start(ns: &Ns) -> Result<NsRuntime, String> {
        let path = ns.path();
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = match enter(&path).and_then(|()| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            }) {
                Ok(rt) => {
                    let _ = ready_tx.send(Ok(()));
                    rt
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    tokio::spawn(job());
                }
            });
        });
        tokio::time::timeout(STEP, ready)
            .await
            .map_err(|_| "namespace runtime timed out".to_owned())?
            .map_err(|_| "namespace runtime died".to_owned())??;
        Ok(NsRuntime {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f()` on the namespace's runtime and returns its output.
    async fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(f().await);
            })
        });
        self.jobs
            .as_ref()
            .expect("runtime running")
            .send(job)
            .expect("namespace runtime alive");
        tokio::time::timeout(STEP, rx)
            .await
            .expect("namespace job finished in time")
            .expect("namespace job completed")
    }

    /// Stops the runtime (dropping every task on it) and waits for its thread.
    async fn stop(mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let (tx, rx) = oneshot::channel();
            std::thread::spawn(move || {
                let _ = tx.send(t.join());
            });
            let _ = tokio::time::timeout(STEP, rx).await;
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        self.jobs.take();
    }
}

/// One site: a namespace with the gateway node's driver.
struct Site {
    name: &'static str,
    ns: Ns,
    rt: Option<NsRuntime>,
    driver: Arc<WireGuardDriver>,
    key_path: PathBuf,
    applied: Plan,
    pod: Ipv4Addr,
}

struct Pair {
    a: Site,
    b: Site,
    public_b: Ipv4Addr,
    _keys: tempfile::TempDir,
}

fn gateway(name: &str, node: &str, public_ip: Ipv4Addr, key: &str, subnet: &str) -> Value {
    json!({
        "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"endpoints": [{"nodeName": node, "type": "tunnel", "port": 4500,
                                 "underNAT": false, "publicIP": public_ip.to_string()}]},
        "status": {
            "activeEndpoints": [{"nodeName": node, "type": "tunnel", "port": 4500,
                                 "underNAT": false, "publicIP": public_ip.to_string(),
                                 "config": {"publicKey": key}}],
            "nodes": [{"nodeName": node, "privateIP": public_ip.to_string(), "subnets": [subnet]}]
        }
    })
}

fn node(name: &str, ip: Ipv4Addr, pod_cidr: &str, gw: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"raven.openyurt.io/gateway": gw}},
        "spec": {"podCIDR": pod_cidr},
        "status": {"addresses": [{"type": "InternalIP", "address": ip.to_string()}]}
    })
}

/// The two-Gateway cluster as the planner sees it.
fn view(key_a: &str, key_b: &str, public_a: Ipv4Addr, public_b: Ipv4Addr) -> ClusterView {
    let gws = [
        gateway("gw-a", "node-a", public_a, key_a, "10.244.1.0/24"),
        gateway("gw-b", "node-b", public_b, key_b, "10.244.2.0/24"),
    ];
    let nodes = [
        node("node-a", public_a, "10.244.1.0/24", "gw-a"),
        node("node-b", public_b, "10.244.2.0/24", "gw-b"),
    ];
    ClusterView::from_json(&gws, &nodes)
}

const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const MOVED_A: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 1);
const MOVED_B: Ipv4Addr = Ipv4Addr::new(192, 168, 78, 2);

/// Two namespaces joined by veth, each with a driver that applied its planned diff and the
/// plan's `raven-wg0` routes. `None` when the machine cannot make namespaces (reported).
async fn pair() -> Option<Pair> {
    let ns_a = match Ns::create("a").await {
        Ok(ns) => ns,
        Err(e) => {
            let what =
                format!("WireGuard namespace tests: cannot create a network namespace ({e})");
            assert!(std::env::var_os("CI").is_none(), "{what}");
            let _ = writeln!(std::io::stderr().lock(), "skipping: {what}");
            return None;
        }
    };
    let ns_b = Ns::create("b").await.expect("second namespace");
    ns_a.ip(&format!(
        "link add wgv0 type veth peer name wgv1 netns {}",
        ns_b.name
    ))
    .await
    .expect("veth pair");
    for (ns, dev, addr) in [(&ns_a, "wgv0", UNDERLAY_A), (&ns_b, "wgv1", UNDERLAY_B)] {
        ns.ip(&format!("addr add {addr}/24 dev {dev}"))
            .await
            .unwrap();
        ns.ip(&format!("link set {dev} up")).await.unwrap();
    }
    let keys = tempfile::tempdir().unwrap();
    let mut sites = Vec::new();
    for (name, ns, pod) in [
        ("node-a", ns_a, Ipv4Addr::new(10, 244, 1, 1)),
        ("node-b", ns_b, Ipv4Addr::new(10, 244, 2, 1)),
    ] {
        let key_path = keys.path().join(name).join("private.key");
        let rt = NsRuntime::start(&ns).await.expect("namespace runtime");
        let driver = start_driver(&rt, &key_path).await;
        sites.push(Site {
            name,
            ns,
            rt: Some(rt),
            driver,
            key_path,
            applied: Plan::empty(),
            pod,
        });
    }
    let b = sites.pop().unwrap();
    let a = sites.pop().unwrap();
    let mut pair = Pair {
        a,
        b,
        public_b: UNDERLAY_B,
        _keys: keys,
    };
    pair.sync().await;
    for site in [&pair.a, &pair.b] {
        site.ns
            .ip(&format!("addr add {}/32 dev {WIREGUARD_DEVICE}", site.pod))
            .await
            .unwrap();
        for item in site.applied.items() {
            if let Item::Route(r) = item {
                assert_eq!(
                    r.dev, WIREGUARD_DEVICE,
                    "gateways route remote subnets on the tunnel"
                );
                site.ns
                    .ip(&format!("route replace {} dev {}", r.dst, r.dev))
                    .await
                    .unwrap();
            }
        }
    }
    Some(pair)
}

async fn start_driver(rt: &NsRuntime, key_path: &std::path::Path) -> Arc<WireGuardDriver> {
    let key_path = key_path.to_owned();
    rt.run(move || async move {
        let key = WireGuardKey::load_or_create(key_path).await.expect("key");
        let mut config = WireGuardConfig::new(key);
        config.preshared_key = Some(preshared_key("test-cluster-psk"));
        Arc::new(WireGuardDriver::new(config))
    })
    .await
}

impl Pair {
    /// Plans both nodes from the current view and applies the WireGuard part of each diff.
    async fn sync(&mut self) {
        let view = view(
            &self.a.driver.public_key(),
            &self.b.driver.public_key(),
            UNDERLAY_A,
            self.public_b,
        );
        for site in [&mut self.a, &mut self.b] {
            let next = plan(&view, site.name, &PlanConfig::default());
            assert!(
                !next.peers().is_empty(),
                "{}: the planner gives a peer: {next:?}",
                site.name
            );
            let changes = diff(&site.applied, &next);
            let driver = site.driver.clone();
            site.rt
                .as_ref()
                .unwrap()
                .run(move || async move { driver.apply(&changes).await })
                .await
                .expect("driver applies the diff");
            site.applied = next;
        }
    }
}

/// One ICMP echo from inside `ns` (a raw socket: the machine has no `ping` binary).
async fn ping(ns: &Ns, dst: Ipv4Addr, timeout: Duration) -> Result<(), String> {
    ns.blocking(move || icmp_echo(dst, timeout).map_err(|e| e.to_string()))
        .await?
}

fn icmp_echo(dst: Ipv4Addr, timeout: Duration) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq = (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff) as u16;
    let mut pkt = vec![8u8, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"yurt-wireguard-ping");
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    sock.send_to(&pkt, &SocketAddr::new(IpAddr::V4(dst), 0).into())?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        sock.set_read_timeout(Some(left))?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            Err(e) => return Err(e),
        };
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if n < ihl + 8 || buf[12..16] != dst.octets() {
            continue;
        }
        let icmp = &buf[ihl..n];
        if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(());
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Pings until one echo comes back (the first packets wait for the handshake), up to 10 tries.
async fn ping_until_ok(ns: &Ns, dst: Ipv4Addr) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..10 {
        match ping(ns, dst, Duration::from_secs(1)).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!("no echo reply from {dst}: {last}"))
}

/// Streams `len` bytes from site A's pod address to a listener on site B's and checks that B
/// received exactly them (length and checksum echoed back).
async fn tcp_stream(a: &Site, b: &Site, len: usize) {
    let listen = SocketAddr::new(IpAddr::V4(b.pod), 7001);
    let (bound_tx, bound) = oneshot::channel();
    let server = b.rt.as_ref().unwrap().run(move || async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .expect("bind on pod address");
        let _ = bound_tx.send(());
        let (mut conn, peer) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.expect("read");
        let digest = ring_digest(&got);
        conn.write_all(&(got.len() as u64).to_be_bytes())
            .await
            .unwrap();
        conn.write_all(&digest).await.unwrap();
        conn.shutdown().await.unwrap();
        peer
    });
    let client = async {
        bound.await.expect("listener bound");
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let want = ring_digest(&data);
        let reply =
            a.rt.as_ref()
                .unwrap()
                .run(move || async move {
                    let mut conn = tokio::net::TcpStream::connect(listen)
                        .await
                        .expect("connect");
                    conn.write_all(&data).await.unwrap();
                    conn.shutdown().await.unwrap();
                    let mut reply = Vec::new();
                    conn.read_to_end(&mut reply).await.unwrap();
                    reply
                })
                .await;
        (reply, want)
    };
    let (peer, (reply, want)) = tokio::join!(server, client);
    assert_eq!(
        peer.ip(),
        IpAddr::V4(a.pod),
        "B sees A's pod address, not the underlay"
    );
    assert_eq!(
        &reply[..8],
        &(len as u64).to_be_bytes(),
        "all bytes arrived"
    );
    assert_eq!(&reply[8..], &want[..], "and unchanged");
}

fn ring_digest(data: &[u8]) -> Vec<u8> {
    // A simple position-weighted sum: enough to catch lost, duplicated or reordered bytes.
    let mut a: u64 = 1;
    let mut b: u64 = 0;
    for &x in data {
        a = (a + u64::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

async fn link_exists(ns: &Ns, dev: &str) -> bool {
    ns.ip(&format!("link show {dev}")).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_tcp_cross_the_tunnel() {
    let _gate = support::shared().await;
    let Some(pair) = pair().await else { return };
    // Before any packet: B's peer for A has the planned endpoint.
    ping_until_ok(&pair.a.ns, pair.b.pod).await.unwrap();
    ping_until_ok(&pair.b.ns, pair.a.pod).await.unwrap();
    tcp_stream(&pair.a, &pair.b, 4 << 20).await;
    // The pod addresses exist only on raven-wg0: the underlay has no route to them.
    let routes = pair.a.ns.ip("route show 10.244.2.0/24").await.unwrap();
    assert!(routes.contains(WIREGUARD_DEVICE), "{routes}");
    // Without the driver there is no path: A's tunnel down, B's pod address unreachable.
    let driver = pair.a.driver.clone();
    pair.a
        .rt
        .as_ref()
        .unwrap()
        .run(move || async move { driver.shutdown().await })
        .await;
    assert!(
        ping(&pair.a.ns, pair.b.pod, Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_change_resumes_traffic() {
    let _gate = support::shared().await;
    let Some(mut pair) = pair().await else { return };
    ping_until_ok(&pair.a.ns, pair.b.pod).await.unwrap();
    let key_a = pair.a.driver.public_key();
    let key_b = pair.b.driver.public_key();
    assert_eq!(
        pair.a.driver.current_endpoint(&key_b).await,
        Some(SocketAddr::new(IpAddr::V4(UNDERLAY_B), 4500))
    );

    // Site B moves to a new underlay address; the old one disappears.
    pair.a
        .ns
        .ip(&format!("addr add {MOVED_A}/24 dev wgv0"))
        .await
        .unwrap();
    pair.b
        .ns
        .ip(&format!("addr add {MOVED_B}/24 dev wgv1"))
        .await
        .unwrap();
    pair.b
        .ns
        .ip(&format!("addr del {UNDERLAY_B}/24 dev wgv1"))
        .await
        .unwrap();
    assert!(
        ping(&pair.a.ns, pair.b.pod, Duration::from_secs(1))
            .await
            .is_err(),
        "the old endpoint is gone"
    );

    // The Gateway's public IP changes; the diff updates the peer in place.
    pair.public_b = MOVED_B;
    pair.sync().await;
    assert_eq!(
        pair.a.driver.current_endpoint(&key_b).await,
        Some(SocketAddr::new(IpAddr::V4(MOVED_B), 4500))
    );
    ping_until_ok(&pair.a.ns, pair.b.pod).await.unwrap();
    // B learned A's new source address from the authenticated packets (roaming).
    assert_eq!(
        pair.b.driver.current_endpoint(&key_a).await.map(|a| a.ip()),
        Some(IpAddr::V4(MOVED_A))
    );
    tcp_stream(&pair.a, &pair.b, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_removes_the_device_and_restart_reuses_the_key() {
    let _gate = support::shared().await;
    let Some(mut pair) = pair().await else { return };
    ping_until_ok(&pair.b.ns, pair.a.pod).await.unwrap();
    let published = pair.b.driver.public_key();
    assert!(link_exists(&pair.b.ns, WIREGUARD_DEVICE).await);

    // Teardown: the diff to the empty plan removes the peer and then the device.
    let driver = pair.b.driver.clone();
    let changes = yurt_tunnel::l3::teardown(&pair.b.applied);
    pair.b
        .rt
        .as_ref()
        .unwrap()
        .run(move || async move { driver.apply(&changes).await })
        .await
        .unwrap();
    assert!(!pair.b.driver.is_up().await);
    assert!(pair.b.driver.observe().await.is_empty());
    assert!(
        !link_exists(&pair.b.ns, WIREGUARD_DEVICE).await,
        "raven-wg0 is gone after teardown"
    );
    pair.b.applied = Plan::empty();

    // The agent restarts: a new process-equivalent (runtime and driver) with the same key file.
    pair.b.rt.take().unwrap().stop().await;
    let mode = std::fs::metadata(&pair.b.key_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(pair.b.key_path.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let rt = NsRuntime::start(&pair.b.ns).await.unwrap();
    pair.b.driver = start_driver(&rt, &pair.b.key_path).await;
    pair.b.rt = Some(rt);
    assert_eq!(
        pair.b.driver.public_key(),
        published,
        "the key survives a restart"
    );

    // A's peer config (the published key) is unchanged, so replanning B alone restores traffic.
    pair.sync().await;
    pair.b
        .ns
        .ip(&format!(
            "addr add {}/32 dev {WIREGUARD_DEVICE}",
            pair.b.pod
        ))
        .await
        .unwrap();
    pair.b
        .ns
        .ip(&format!(
            "route replace 10.244.1.0/24 dev {WIREGUARD_DEVICE}"
        ))
        .await
        .unwrap();
    ping_until_ok(&pair.b.ns, pair.a.pod).await.unwrap();

    // Dropping the driver (without shutdown) also removes the device once its tasks are gone.
    let Pair { b, .. } = pair;
    let Site { ns, rt, driver, .. } = b;
    drop(driver);
    rt.unwrap().stop().await;
    assert!(!link_exists(&ns, WIREGUARD_DEVICE).await);
}

/// Sends one UDP datagram from `src` to `dst` inside `from`, and reports whether a socket on
/// `dst` inside `to` received it within a second.
async fn udp_arrives(from: &Site, to: &Site, src: Ipv4Addr, dst: SocketAddr) -> bool {
    let (bound_tx, bound) = oneshot::channel();
    let receiver = to.rt.as_ref().unwrap().run(move || async move {
        let sock = tokio::net::UdpSocket::bind(dst).await.expect("bind");
        let _ = bound_tx.send(());
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await,
            Ok(Ok((n, _))) if &buf[..n] == b"hello"
        )
    });
    let sender = async {
        bound.await.expect("receiver bound");
        from.rt
            .as_ref()
            .unwrap()
            .run(move || async move {
                let sock = tokio::net::UdpSocket::bind((src, 0))
                    .await
                    .expect("bind source");
                sock.send_to(b"hello", dst).await.expect("send");
            })
            .await;
    };
    let (arrived, ()) = tokio::join!(receiver, sender);
    arrived
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_send_from_outside_its_allowed_ips() {
    let _gate = support::shared().await;
    let Some(pair) = pair().await else { return };
    ping_until_ok(&pair.a.ns, pair.b.pod).await.unwrap();
    // A holds an address outside its Gateway's subnets; B has a route back for it, so only
    // the driver's cryptokey routing can refuse what A sends from it.
    let outside = Ipv4Addr::new(10, 99, 0, 1);
    pair.a
        .ns
        .ip(&format!("addr add {outside}/32 dev {WIREGUARD_DEVICE}"))
        .await
        .unwrap();
    pair.b
        .ns
        .ip(&format!("route add 10.99.0.0/16 dev {WIREGUARD_DEVICE}"))
        .await
        .unwrap();
    let dst = SocketAddr::new(IpAddr::V4(pair.b.pod), 7002);
    assert!(
        udp_arrives(&pair.a, &pair.b, pair.a.pod, dst).await,
        "allowed source"
    );
    assert!(
        !udp_arrives(&pair.a, &pair.b, outside, dst).await,
        "a source outside A's allowed IPs is dropped by B"
    );
}
