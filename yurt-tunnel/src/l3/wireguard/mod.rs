//! The WireGuard driver of the layer 3 network: it turns the [`Item::WireGuardDevice`] and
//! [`Item::Peer`] entries of a plan's [`Change`] list into a running tunnel between gateway
//! nodes, so pod traffic routed onto `raven-wg0` leaves encrypted to the remote gateway over
//! UDP (port 4500 by default) and arrives decrypted on the other side.
//!
//! # Data path
//!
//! The device is a TUN interface named after the plan (`raven-wg0`) driven from userspace:
//! boringtun's `noise` module does the protocol (handshakes, sessions, cookies, timers), and
//! this module does the I/O on tokio. [`WireGuardDriver`] owns three tasks while the device is
//! up:
//!
//! * TUN to UDP: read an IP packet, pick the peer whose allowed IPs hold its destination
//!   (longest prefix), encrypt, send to the peer's endpoint;
//! * UDP to TUN: check the datagram's MAC (and answer with a cookie when under load), find the
//!   peer (by receiver index, or by opening a handshake initiation with our key), decrypt,
//!   accept the inner packet only if its source is one of that peer's allowed IPs, write it to
//!   the TUN device; every authenticated datagram also updates the peer's endpoint (roaming,
//!   which is how a public gateway learns a NATed one's address);
//! * timers: every 250 ms boringtun's `update_timers` per peer (handshake retries, rekeys,
//!   persistent keepalives that hold NAT mappings open) and once a second the handshake rate
//!   limiter's reset.
//!
//! Peers change live: a new endpoint or new allowed IPs keep the session; only a changed
//! keepalive replaces the peer's protocol state. Routes for the allowed subnets are not made
//! here: they are plan items of their own for the netlink driver, which must run after this
//! one so `raven-wg0` exists. [`WireGuardDriver::shutdown`] (or dropping the driver) stops the
//! tasks and closes the TUN device, which removes the interface; nothing survives the agent.
//!
//! # Kernel WireGuard
//!
//! Not driven: a node whose kernel has the `wireguard` module still gets the userspace device
//! (one log line says so). This build's machines lack the module, so a kernel path could not
//! be tested here.
//!
//! # Keys
//!
//! [`WireGuardKey::load_or_create`] keeps the node's key pair on disk; its
//! [`WireGuardKey::public_key_base64`] goes into the node's Gateway endpoint as
//! `config["publicKey"]`. All gateways share the preshared key [`preshared_key`] derives from
//! the `raven-agent-secret` PSK ([`preshared_key_from_env`] reads `VPN_CONNECTION_PSK`).

mod keys;
mod peers;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tun_rs::AsyncDevice;

pub use keys::{
    DEFAULT_KEY_PATH, KeyError, PSK_ENV, WireGuardKey, decode_key, encode_key, preshared_key,
    preshared_key_from_env,
};
use peers::{PeerSpec, PeerTable};

use super::{Change, Item, Peer};

/// MTU of the TUN device: 1500 less the worst-case WireGuard overhead over IPv6 (80 bytes), as
/// `wg-quick` picks.
pub const DEFAULT_MTU: u16 = 1420;
/// How often boringtun's timers run (as boringtun's own device does).
pub const TIMER_TICK: Duration = Duration::from_millis(250);
/// Handshake initiations per second a device accepts before it asks for cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Largest datagram or packet handled; TUN packets are at most the MTU, so this is slack.
const MAX_PACKET: usize = 65_535;
/// Room for the encrypted form of a [`MAX_PACKET`] (32 bytes of header and tag).
const OUT_BUFFER: usize = MAX_PACKET + 64;

/// What the driver needs besides the plan.
#[derive(Clone, Debug)]
pub struct WireGuardConfig {
    /// The node's key pair.
    pub key: WireGuardKey,
    /// The shared preshared key ([`preshared_key`] of the cluster's PSK), if any.
    pub preshared_key: Option<[u8; 32]>,
    /// Local address the UDP socket binds (the port comes from the plan's device item).
    pub listen_addr: IpAddr,
    /// MTU of the TUN device.
    pub mtu: u16,
}

impl WireGuardConfig {
    /// Defaults: all IPv4 addresses, [`DEFAULT_MTU`], the preshared key from
    /// [`PSK_ENV`] when set.
    pub fn new(key: WireGuardKey) -> Self {
        Self {
            key,
            preshared_key: preshared_key_from_env(),
            listen_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            mtu: DEFAULT_MTU,
        }
    }
}

/// Why the driver could not do what a change asked.
#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {
    /// Creating the TUN device or binding the UDP socket failed.
    #[error("WireGuard device {device}: {what}: {source}")]
    Device {
        /// Device name.
        device: String,
        /// The step that failed.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A peer's public key is not a WireGuard key (the peer was skipped).
    #[error("WireGuard peer {public_key:?}: {source}")]
    PeerKey {
        /// The key as given.
        public_key: String,
        /// Why it was refused.
        source: KeyError,
    },
}

/// State shared by the data-path tasks of a running device.
struct Shared {
    tun: AsyncDevice,
    udp: UdpSocket,
    peers: RwLock<PeerTable>,
    limiter: Arc<RateLimiter>,
}

impl Shared {
    fn peers(&self) -> std::sync::RwLockReadGuard<'_, PeerTable> {
        self.peers.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running device and the tasks that own its I/O.
struct Running {
    name: String,
    listen_port: u16,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

/// Applies the WireGuard part of layer 3 plans on this node. See the module docs. All methods
/// take `&self` (the state sits behind an async mutex), so one driver can be shared.
pub struct WireGuardDriver {
    config: WireGuardConfig,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The peers the applied plan has, by public key (also while the device is down).
    peers: BTreeMap<String, Peer>,
    running: Option<Running>,
}

impl std::fmt::Debug for WireGuardDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireGuardDriver")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl WireGuardDriver {
    /// A driver with nothing created yet; the first plan with a device item brings it up.
    pub fn new(config: WireGuardConfig) -> Self {
        if std::path::Path::new("/sys/module/wireguard").exists() {
            tracing::info!(
                "the kernel has WireGuard, but this agent drives a userspace WireGuard device"
            );
        }
        Self {
            config,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The node's public key (base64), for its Gateway endpoint's `config["publicKey"]`.
    pub fn public_key(&self) -> String {
        self.config.key.public_key_base64()
    }

    /// Whether `item` is one this driver handles (the device and the peers).
    pub fn owns(item: &Item) -> bool {
        matches!(item, Item::WireGuardDevice { .. } | Item::Peer(_))
    }

    /// Whether the device is up.
    pub async fn is_up(&self) -> bool {
        self.state.lock().await.running.is_some()
    }

    /// The UDP address the device listens on, while up (useful with listen port 0).
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        let state = self.state.lock().await;
        state
            .running
            .as_ref()
            .and_then(|r| r.shared.udp.local_addr().ok())
    }

    /// What is in place now: the device item while it is up, and the applied peers. A
    /// restarted agent observes nothing, so `diff(observed, plan)` recreates everything.
    pub async fn observe(&self) -> Vec<Item> {
        let state = self.state.lock().await;
        let device = state.running.as_ref().map(|r| Item::WireGuardDevice {
            name: r.name.clone(),
            listen_port: r.listen_port,
        });
        device
            .into_iter()
            .chain(state.peers.values().cloned().map(Item::Peer))
            .collect()
    }

    /// The endpoint the data path currently sends to for the peer with `public_key`: the
    /// configured one, or the address learned from its last authenticated datagram.
    pub async fn current_endpoint(&self, public_key: &str) -> Option<SocketAddr> {
        let key = decode_key(public_key).ok()?;
        let state = self.state.lock().await;
        let running = state.running.as_ref()?;
        let peers = running.shared.peers();
        peers
            .all()
            .into_iter()
            .find(|p| p.public_key == key)
            .and_then(|p| p.endpoint())
    }

    /// Performs the WireGuard changes of a plan diff, in order, ignoring every other item. A
    /// peer with a malformed key is skipped and reported after the other changes are done; a
    /// device that cannot be created stops at once with the error.
    pub async fn apply(&self, changes: &[Change]) -> Result<(), WireGuardError> {
        let mut first_error = None;
        for change in changes {
            match self.apply_one(change).await {
                Ok(()) => {}
                Err(e @ WireGuardError::Device { .. }) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Performs one change: device add/update/remove, peer add/update/remove; any other item
    /// is ignored.
    pub async fn apply_one(&self, change: &Change) -> Result<(), WireGuardError> {
        let mut state = self.state.lock().await;
        match change {
            Change::Add(Item::WireGuardDevice { name, listen_port })
            | Change::Update {
                new: Item::WireGuardDevice { name, listen_port },
                ..
            } => {
                let same = state
                    .running
                    .as_ref()
                    .is_some_and(|r| r.name == *name && r.listen_port == *listen_port);
                if !same {
                    stop(&mut state).await;
                    let running = self.start(&state.peers, name, *listen_port).await?;
                    state.running = Some(running);
                }
            }
            Change::Remove(Item::WireGuardDevice { name, .. })
                if state.running.as_ref().is_some_and(|r| r.name == *name) =>
            {
                stop(&mut state).await;
            }
            Change::Add(Item::Peer(peer))
            | Change::Update {
                new: Item::Peer(peer),
                ..
            } => {
                let key =
                    decode_key(&peer.public_key).map_err(|source| WireGuardError::PeerKey {
                        public_key: peer.public_key.clone(),
                        source,
                    })?;
                state.peers.insert(peer.public_key.clone(), peer.clone());
                if let Some(running) = &state.running {
                    running
                        .shared
                        .peers
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .upsert(spec(key, peer));
                }
            }
            Change::Remove(Item::Peer(peer)) => {
                state.peers.remove(&peer.public_key);
                if let (Some(running), Ok(key)) =
                    (state.running.as_ref(), decode_key(&peer.public_key))
                {
                    running
                        .shared
                        .peers
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Stops the data path and removes the device (closing the TUN file descriptor deletes
    /// the interface), and forgets the applied peers: the state after a plan's teardown.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        stop(&mut state).await;
        state.peers.clear();
    }

    async fn start(
        &self,
        peers: &BTreeMap<String, Peer>,
        name: &str,
        listen_port: u16,
    ) -> Result<Running, WireGuardError> {
        let err = |what| {
            let device = name.to_owned();
            move |source| WireGuardError::Device {
                device,
                what,
                source,
            }
        };
        let udp = UdpSocket::bind((self.config.listen_addr, listen_port))
            .await
            .map_err(err("binding the UDP socket"))?;
        let tun = tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(self.config.mtu)
            .enable(true)
            .build_async()
            .map_err(err("creating the TUN device"))?;
        let limiter = Arc::new(RateLimiter::new(
            self.config.key.public(),
            HANDSHAKE_RATE_LIMIT,
        ));
        let mut table = PeerTable::new(
            self.config.key.clone(),
            self.config.preshared_key,
            limiter.clone(),
        );
        for peer in peers.values() {
            if let Ok(key) = decode_key(&peer.public_key) {
                table.upsert(spec(key, peer));
            }
        }
        let shared = Arc::new(Shared {
            tun,
            udp,
            peers: RwLock::new(table),
            limiter,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(tun_to_udp(shared.clone()));
        tasks.spawn(udp_to_tun(shared.clone()));
        tasks.spawn(timers(shared.clone()));
        tracing::info!(
            device = name,
            port = listen_port,
            public_key = %self.public_key(),
            "userspace WireGuard device up"
        );
        Ok(Running {
            name: name.to_owned(),
            listen_port,
            shared,
            tasks,
        })
    }
}

/// Stops the device's tasks and closes it (the last handle closes the TUN descriptor).
async fn stop(state: &mut State) {
    if let Some(mut running) = state.running.take() {
        running.tasks.shutdown().await;
        drop(running.shared);
        tracing::info!(device = %running.name, "WireGuard device removed");
    }
}

fn spec(public_key: [u8; 32], peer: &Peer) -> PeerSpec {
    PeerSpec {
        public_key,
        endpoint: peer.endpoint,
        allowed: peer.allowed_ips.clone(),
        keepalive_secs: peer.keepalive_secs,
    }
}

/// Packets the local stack routed onto the device: encrypt and send to their peer.
async fn tun_to_udp(shared: Arc<Shared>) {
    let mut packet = vec![0u8; MAX_PACKET];
    let mut out = vec![0u8; OUT_BUFFER];
    loop {
        let n = match shared.tun.recv(&mut packet).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "WireGuard: reading the TUN device failed; data path stopped");
                return;
            }
        };
        let Some(dst) = Tunn::dst_address(&packet[..n]) else {
            continue;
        };
        let Some(peer) = shared.peers().route(dst) else {
            continue;
        };
        let Some(endpoint) = peer.endpoint() else {
            continue;
        };
        let len = match peer.tunn().encapsulate(&packet[..n], &mut out) {
            TunnResult::WriteToNetwork(p) => p.len(),
            TunnResult::Err(e) => {
                tracing::debug!(error = ?e, "WireGuard: encapsulation failed");
                continue;
            }
            _ => continue,
        };
        if let Err(e) = shared.udp.send_to(&out[..len], endpoint).await {
            tracing::debug!(error = %e, %endpoint, "WireGuard: sending a datagram failed");
        }
    }
}

/// Datagrams from peers: authenticate, decrypt, deliver.
async fn udp_to_tun(shared: Arc<Shared>) {
    let mut datagram = vec![0u8; MAX_PACKET];
    let mut out = vec![0u8; OUT_BUFFER];
    loop {
        let (n, from) = match shared.udp.recv_from(&mut datagram).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors for earlier sends surface here on Linux; keep serving.
                tracing::debug!(error = %e, "WireGuard: receiving a datagram failed");
                continue;
            }
        };
        handle_datagram(&shared, &datagram[..n], from, &mut out);
    }
}

/// One datagram, synchronously (no `.await` while a peer's lock is held: replies and
/// decrypted packets use the non-blocking send calls, dropping on a full buffer like any
/// congested link).
fn handle_datagram(shared: &Shared, datagram: &[u8], from: SocketAddr, out: &mut [u8]) {
    let packet = match shared.limiter.verify_packet(Some(from.ip()), datagram, out) {
        Ok(packet) => packet,
        Err(TunnResult::WriteToNetwork(cookie)) => {
            let _ = shared.udp.try_send_to(cookie, from);
            return;
        }
        Err(_) => return,
    };
    let Some(peer) = shared.peers().peer_for(&packet) else {
        return;
    };
    let mut tunn = peer.tunn();
    let mut result = tunn.decapsulate(Some(from.ip()), datagram, out);
    let mut authenticated = false;
    loop {
        match result {
            TunnResult::Done => {
                authenticated = true;
                break;
            }
            TunnResult::Err(e) => {
                tracing::debug!(error = ?e, %from, "WireGuard: datagram refused");
                break;
            }
            TunnResult::WriteToNetwork(p) => {
                authenticated = true;
                let _ = shared.udp.try_send_to(p, from);
                // Flush what was queued waiting for the handshake.
                result = tunn.decapsulate(None, &[], out);
            }
            TunnResult::WriteToTunnelV4(p, src) => {
                authenticated = true;
                if peer.allows(IpAddr::V4(src)) {
                    let _ = shared.tun.try_send(p);
                }
                break;
            }
            TunnResult::WriteToTunnelV6(p, src) => {
                authenticated = true;
                if peer.allows(IpAddr::V6(src)) {
                    let _ = shared.tun.try_send(p);
                }
                break;
            }
        }
    }
    drop(tunn);
    if authenticated {
        peer.set_endpoint(from);
    }
}

/// boringtun's timers for every peer, and the handshake limiter's once-a-second reset.
async fn timers(shared: Arc<Shared>) {
    let mut out = vec![0u8; OUT_BUFFER];
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_second = (Duration::from_secs(1).as_millis() / TIMER_TICK.as_millis()).max(1);
    let mut ticks: u128 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(per_second) {
            shared.limiter.reset_count();
        }
        let peers = shared.peers().all();
        for peer in peers {
            let endpoint = peer.endpoint();
            let mut tunn = peer.tunn();
            match tunn.update_timers(&mut out) {
                TunnResult::WriteToNetwork(p) => {
                    if let Some(endpoint) = endpoint {
                        let _ = shared.udp.try_send_to(p, endpoint);
                    }
                }
                TunnResult::Err(e) => {
                    tracing::trace!(error = ?e, "WireGuard: timer");
                }
                _ => {}
            }
        }
    }
}
