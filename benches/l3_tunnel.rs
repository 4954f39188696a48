//! Raven's layer 3 tunnel on the wire: two network namespaces ("sites") joined by a veth pair,
//! each running the userspace WireGuard driver (`yurt::tunnel::l3::wireguard`) with the other as
//! its peer. A measured program (not criterion) that prints one table, comparing in one run:
//!
//! - **direct**: TCP and UDP between the two underlay (veth) addresses;
//! - **tunnel**: the same between the sites' pod-subnet addresses, routed onto `raven-wg0`, so
//!   every packet is encrypted by one driver, crosses the same veth as UDP 4500, and is
//!   decrypted by the other.
//!
//! Reported: TCP throughput (one stream, a fixed time, bytes the receiver got), and the round
//! trip of a 64-byte UDP echo (sequential, median and 99th percentile), with tunnel/direct
//! ratios. Both drivers, the sender and the receiver share this machine's cores, so the tunnel's
//! crypto competes with the TCP endpoints for CPU, as on a real gateway.
//!
//! Needs root, `ip` and network namespaces; otherwise it prints a `skipping:` line on stderr
//! and exits 0. Run: `cargo bench --bench l3_tunnel` (`L3_TUNNEL_SECS` sets the seconds per
//! throughput run, default 3).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use yurt::tunnel::l3::wireguard::{WireGuardConfig, WireGuardDriver, WireGuardKey, preshared_key};
use yurt::tunnel::l3::{Change, Cidr, Item, Peer, WIREGUARD_DEVICE};

const UNDERLAY_A: Ipv4Addr = Ipv4Addr::new(192, 168, 91, 1);
const UNDERLAY_B: Ipv4Addr = Ipv4Addr::new(192, 168, 91, 2);
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 246, 1, 1);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 246, 2, 1);
const PORT: u16 = 4500;
const ECHOES: usize = 2000;
const TARGET: f64 = 0.5;

/// A network namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn create(tag: &str) -> Result<Ns, String> {
        let name = format!("yurtbench-{}-{tag}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Ns(name);
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    fn ip(&self, args: &str) -> Result<(), String> {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend(args.split_whitespace());
        ip(&all)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.0)
    }

    /// Runs `f` on a new thread inside the namespace.
    fn thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn enter(path: &Path) {
    let file = std::fs::File::open(path).expect("namespace file");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A site's driver on a tokio runtime whose threads all live in the site's namespace.
struct Site {
    runtime: tokio::runtime::Runtime,
    driver: Arc<WireGuardDriver>,
    key: String,
}

fn site(ns: &Ns, key_dir: &Path) -> Site {
    let path = ns.path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || enter(&path))
        .build()
        .expect("runtime");
    let key_path = key_dir.join(&ns.0).join("private.key");
    let driver = runtime.block_on(async {
        let key = WireGuardKey::load_or_create(key_path).await.expect("key");
        let mut config = WireGuardConfig::new(key);
        config.preshared_key = Some(preshared_key("bench"));
        Arc::new(WireGuardDriver::new(config))
    });
    let key = driver.public_key();
    Site {
        runtime,
        driver,
        key,
    }
}

fn connect(site: &Site, peer_key: &str, endpoint: Ipv4Addr, subnet: &str) {
    let changes = vec![
        Change::Add(Item::WireGuardDevice {
            name: WIREGUARD_DEVICE.into(),
            listen_port: PORT,
        }),
        Change::Add(Item::Peer(Peer {
            public_key: peer_key.into(),
            endpoint: Some(SocketAddr::new(IpAddr::V4(endpoint), PORT)),
            allowed_ips: vec![subnet.parse::<Cidr>().expect("cidr")],
            keepalive_secs: 25,
        })),
    ];
    let driver = site.driver.clone();
    site.runtime
        .block_on(async move {
            // Driver calls run on the runtime's (namespaced) workers.
            tokio::spawn(async move { driver.apply(&changes).await })
                .await
                .expect("apply task")
        })
        .expect("driver applies");
}

/// One TCP stream for `secs`: bytes per second the receiver got.
fn throughput(a: &Ns, b: &Ns, dst: Ipv4Addr, secs: f64) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = b.thread(move || {
        let listener = TcpListener::bind((dst, 5201)).expect("bind");
        tx.send(()).expect("ready");
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        total as f64 / start.elapsed().as_secs_f64()
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    let client = a.thread(move || {
        let mut conn = TcpStream::connect_timeout(
            &SocketAddr::new(IpAddr::V4(dst), 5201),
            Duration::from_secs(10),
        )
        .expect("connect");
        conn.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let buf = vec![0x5au8; 256 << 10];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            conn.write_all(&buf).expect("write");
        }
    });
    client.join().expect("client");
    server.join().expect("server")
}

/// Sequential 64-byte UDP echoes: (median, p99) round trip.
fn latency(a: &Ns, b: &Ns, dst: Ipv4Addr) -> (Duration, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let server = b.thread(move || {
        let sock = UdpSocket::bind((dst, 5202)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if &buf[..n] == b"stop" {
                break;
            }
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    let client = a.thread(move || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        sock.connect((dst, 5202)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut rtts = Vec::with_capacity(ECHOES);
        let mut buf = [0u8; 64];
        for i in 0..ECHOES + 100 {
            let msg = [(i % 251) as u8; 64];
            let start = Instant::now();
            sock.send(&msg).expect("send");
            if sock.recv(&mut buf).is_ok() && buf == msg && i >= 100 {
                rtts.push(start.elapsed());
            }
        }
        let _ = sock.send(b"stop");
        rtts
    });
    let mut rtts = client.join().expect("client");
    server.join().expect("server");
    assert!(!rtts.is_empty(), "no echo came back from {dst}");
    rtts.sort();
    (rtts[rtts.len() / 2], rtts[rtts.len() * 99 / 100])
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let secs: f64 = std::env::var("L3_TUNNEL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let (a, b) = match Ns::create("a").and_then(|a| Ok((a, Ns::create("b")?))) {
        Ok(pair) => pair,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipping: l3_tunnel needs network namespaces (root and `ip`): {e}"
            );
            return;
        }
    };
    a.ip(&format!(
        "link add wgb0 type veth peer name wgb1 netns {}",
        b.0
    ))
    .expect("veth");
    for (ns, dev, addr) in [(&a, "wgb0", UNDERLAY_A), (&b, "wgb1", UNDERLAY_B)] {
        ns.ip(&format!("addr add {addr}/24 dev {dev}"))
            .expect("addr");
        ns.ip(&format!("link set {dev} up")).expect("up");
    }
    let keys = tempfile::tempdir().expect("tempdir");
    let site_a = site(&a, keys.path());
    let site_b = site(&b, keys.path());
    connect(&site_a, &site_b.key, UNDERLAY_B, "10.246.2.0/24");
    connect(&site_b, &site_a.key, UNDERLAY_A, "10.246.1.0/24");
    for (ns, pod, remote) in [(&a, POD_A, "10.246.2.0/24"), (&b, POD_B, "10.246.1.0/24")] {
        ns.ip(&format!("addr add {pod}/32 dev {WIREGUARD_DEVICE}"))
            .expect("pod address");
        ns.ip(&format!("route add {remote} dev {WIREGUARD_DEVICE}"))
            .expect("route");
    }
    // Warm up: the first echoes wait for the handshake.
    let _ = latency(&a, &b, POD_B);

    let direct_tp = throughput(&a, &b, UNDERLAY_B, secs);
    let tunnel_tp = throughput(&a, &b, POD_B, secs);
    let direct_rtt = latency(&a, &b, UNDERLAY_B);
    let tunnel_rtt = latency(&a, &b, POD_B);

    let mbit = |bps: f64| bps * 8.0 / 1e6;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let tp_ratio = tunnel_tp / direct_tp;
    println!("l3_tunnel: two namespaces over veth, userspace WireGuard (raven-wg0) vs direct");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "metric", "direct", "tunnel", "ratio"
    );
    println!(
        "{:<28} {:>14.0} {:>14.0} {:>9.2}x",
        format!("TCP throughput Mbit/s ({secs}s)"),
        mbit(direct_tp),
        mbit(tunnel_tp),
        tp_ratio
    );
    println!(
        "{:<28} {:>14.1} {:>14.1} {:>9.2}x",
        "UDP echo RTT p50 us",
        us(direct_rtt.0),
        us(tunnel_rtt.0),
        us(tunnel_rtt.0) / us(direct_rtt.0)
    );
    println!(
        "{:<28} {:>14.1} {:>14.1} {:>9.2}x",
        "UDP echo RTT p99 us",
        us(direct_rtt.1),
        us(tunnel_rtt.1),
        us(tunnel_rtt.1) / us(direct_rtt.1)
    );
    println!(
        "throughput target >= {TARGET}x of direct: {}",
        if tp_ratio >= TARGET { "met" } else { "NOT met" }
    );

    let driver_a = site_a.driver.clone();
    site_a.runtime.block_on(async move {
        tokio::spawn(async move { driver_a.shutdown().await })
            .await
            .expect("shutdown")
    });
    let driver_b = site_b.driver.clone();
    site_b.runtime.block_on(async move {
        tokio::spawn(async move { driver_b.shutdown().await })
            .await
            .expect("shutdown")
    });
}
