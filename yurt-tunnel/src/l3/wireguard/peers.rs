//! The peer table of the userspace data path: one boringtun [`Tunn`] per remote gateway, found
//! by destination address for packets leaving through the TUN device (longest matching allowed
//! IP wins) and by receiver index or handshake identity for datagrams arriving on the UDP
//! socket. Locks are `std` locks held only for the synchronous protocol step, never across an
//! `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn};
use boringtun::x25519::PublicKey;

use super::keys::WireGuardKey;
use crate::l3::Cidr;

/// boringtun's local index is 24 bits of peer index followed by 8 bits of session counter.
pub(crate) const PEER_INDEX_SHIFT: u32 = 8;
const PEER_INDEX_LIMIT: u32 = 1 << 24;

/// One remote gateway.
pub(crate) struct PeerState {
    pub(crate) public_key: [u8; 32],
    pub(crate) index: u32,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    allowed: RwLock<Vec<Cidr>>,
}

impl PeerState {
    /// The protocol state; the guard must be dropped before any `.await`.
    pub(crate) fn tunn(&self) -> MutexGuard<'_, Tunn> {
        self.tunn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where datagrams for this peer go: configured, or learned from its last authenticated
    /// datagram (WireGuard roaming).
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_endpoint(&self, addr: SocketAddr) {
        let mut ep = self.endpoint.lock().unwrap_or_else(PoisonError::into_inner);
        if *ep != Some(addr) {
            *ep = Some(addr);
        }
    }

    /// Whether a decrypted packet from this peer may carry source address `ip`
    /// (cryptokey routing: only its allowed IPs).
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.allowed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|c| c.contains(ip))
    }
}

/// What [`PeerTable::upsert`] needs to know about a peer.
pub(crate) struct PeerSpec {
    pub(crate) public_key: [u8; 32],
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) allowed: Vec<Cidr>,
    pub(crate) keepalive_secs: u16,
}

/// All peers, indexed three ways.
pub(crate) struct PeerTable {
    key: WireGuardKey,
    preshared: Option<[u8; 32]>,
    limiter: Arc<RateLimiter>,
    by_key: HashMap<[u8; 32], (Arc<PeerState>, u16)>,
    by_index: HashMap<u32, Arc<PeerState>>,
    /// Allowed IPs, longest prefix first.
    routes: Vec<(Cidr, Arc<PeerState>)>,
    next_index: u32,
}

impl PeerTable {
    pub(crate) fn new(
        key: WireGuardKey,
        preshared: Option<[u8; 32]>,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        Self {
            key,
            preshared,
            limiter,
            by_key: HashMap::new(),
            by_index: HashMap::new(),
            routes: Vec::new(),
            next_index: 1,
        }
    }

    /// Adds a peer or changes one in place. Endpoint and allowed IPs change without touching
    /// the session; a different keepalive needs a new protocol state (boringtun fixes it at
    /// creation), which re-handshakes on the next packet.
    pub(crate) fn upsert(&mut self, spec: PeerSpec) {
        if let Some((peer, keepalive)) = self.by_key.get(&spec.public_key)
            && *keepalive == spec.keepalive_secs
        {
            if let Some(ep) = spec.endpoint {
                peer.set_endpoint(ep);
            }
            *peer.allowed.write().unwrap_or_else(PoisonError::into_inner) = spec.allowed;
            self.rebuild_routes();
            return;
        }
        self.remove(&spec.public_key);
        let index = self.allocate_index();
        let tunn = Tunn::new(
            self.key.secret().clone(),
            PublicKey::from(spec.public_key),
            self.preshared,
            (spec.keepalive_secs > 0).then_some(spec.keepalive_secs),
            index,
            Some(self.limiter.clone()),
        );
        let peer = Arc::new(PeerState {
            public_key: spec.public_key,
            index,
            tunn: Mutex::new(tunn),
            endpoint: Mutex::new(spec.endpoint),
            allowed: RwLock::new(spec.allowed),
        });
        self.by_index.insert(index, peer.clone());
        self.by_key
            .insert(spec.public_key, (peer, spec.keepalive_secs));
        self.rebuild_routes();
    }

    /// Drops a peer (its sessions go with it).
    pub(crate) fn remove(&mut self, public_key: &[u8; 32]) {
        if let Some((peer, _)) = self.by_key.remove(public_key) {
            self.by_index.remove(&peer.index);
            self.rebuild_routes();
        }
    }

    /// Every peer, for the timer sweep.
    pub(crate) fn all(&self) -> Vec<Arc<PeerState>> {
        self.by_key.values().map(|(p, _)| p.clone()).collect()
    }

    /// The peer whose allowed IPs hold `dst` most specifically.
    pub(crate) fn route(&self, dst: IpAddr) -> Option<Arc<PeerState>> {
        self.routes
            .iter()
            .find(|(c, _)| c.contains(dst))
            .map(|(_, p)| p.clone())
    }

    /// The peer a (MAC-checked) datagram belongs to: a handshake initiation names its sender
    /// only inside the encrypted static key, so it is opened with our private key; every other
    /// message carries our receiver index.
    pub(crate) fn peer_for(&self, packet: &Packet<'_>) -> Option<Arc<PeerState>> {
        let index = match packet {
            Packet::HandshakeInit(init) => {
                let half = parse_handshake_anon(self.key.secret(), self.key.public(), init).ok()?;
                return self
                    .by_key
                    .get(&half.peer_static_public)
                    .map(|(p, _)| p.clone());
            }
            Packet::HandshakeResponse(p) => p.receiver_idx,
            Packet::PacketCookieReply(p) => p.receiver_idx,
            Packet::PacketData(p) => p.receiver_idx,
        };
        self.by_index.get(&(index >> PEER_INDEX_SHIFT)).cloned()
    }

    fn allocate_index(&mut self) -> u32 {
        loop {
            let index = self.next_index;
            self.next_index = (self.next_index + 1) % PEER_INDEX_LIMIT;
            if index != 0 && !self.by_index.contains_key(&index) {
                return index;
            }
        }
    }

    fn rebuild_routes(&mut self) {
        let mut routes: Vec<(Cidr, Arc<PeerState>)> = self
            .by_key
            .values()
            .flat_map(|(p, _)| {
                let allowed = p.allowed.read().unwrap_or_else(PoisonError::into_inner);
                allowed.iter().map(|c| (*c, p.clone())).collect::<Vec<_>>()
            })
            .collect();
        routes.sort_by(|a, b| b.0.prefix().cmp(&a.0.prefix()).then(a.0.cmp(&b.0)));
        self.routes = routes;
    }
}
