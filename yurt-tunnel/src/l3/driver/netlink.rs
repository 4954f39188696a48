//! The netlink driver: the VXLAN device `raven0` (its VNI, UDP port, underlay address,
//! overlay address and MAC, with source-address learning off), its forwarding (FDB) and
//! permanent neighbour entries, and the routes for remote pod subnets (on `raven-wg0` on a
//! gateway node, via the active gateway's overlay address on `raven0` elsewhere).
//!
//! Routes go into the main table marked with the routing protocol number [`ROUTE_PROTOCOL`]
//! (`ip route show proto 0x52` lists them): only routes with that marker are observed and
//! removed, so routes of the CNI or the administrator are never touched. Overlay addresses are
//! `/32` and routes through them are on-link, so no connected route of ours exists either.
//!
//! The driver talks rtnetlink over one socket opened in the network namespace it acts for:
//! the current one ([`NetlinkDriver::connect`]) or a named one ([`NetlinkDriver::connect_in`],
//! used by the data-path tests and by an agent managing a namespace other than its own).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use async_trait::async_trait;
use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::{Driver, DriverError};
use crate::l3::{Change, Cidr, FdbEntry, Item, Mac, Neighbor, Route, VXLAN_DEVICE};

/// Routing protocol number marking our routes (`0x52`, "R"; unassigned in iproute2's
/// `rt_protos`).
pub const ROUTE_PROTOCOL: u8 = 0x52;
/// The main routing table.
const MAIN_TABLE: u32 = 254;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

/// Applies links, FDB and neighbour entries and routes over rtnetlink.
pub struct NetlinkDriver {
    handle: Handle,
    /// The task driving the netlink socket; aborted when the driver is dropped.
    connection: JoinHandle<()>,
}

impl Drop for NetlinkDriver {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn nl(e: rtnetlink::Error) -> DriverError {
    DriverError::Netlink(e.to_string())
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Treats "already gone" as success (removals are idempotent).
fn gone_ok(r: Result<(), rtnetlink::Error>) -> Result<(), DriverError> {
    match r {
        Err(e) if matches!(errno(&e), Some(ENOENT | ESRCH | ENODEV | EADDRNOTAVAIL)) => Ok(()),
        other => other.map_err(nl),
    }
}

impl NetlinkDriver {
    /// Opens a netlink socket in the current network namespace. Must be called within a tokio
    /// runtime (the socket's task is spawned on it).
    pub fn connect() -> Result<Self, DriverError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        Ok(Self {
            handle,
            connection: tokio::spawn(conn),
        })
    }

    /// Opens a netlink socket in the network namespace at `netns` (e.g. `/run/netns/NAME`).
    /// A short-lived thread enters the namespace and opens the socket, which stays bound to
    /// that namespace afterwards.
    pub async fn connect_in(netns: impl Into<PathBuf>) -> Result<Self, DriverError> {
        let netns = netns.into();
        let rt = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("raven-netns".into())
            .spawn(move || {
                let _enter = rt.enter();
                let result = (|| {
                    let f = std::fs::File::open(&netns)?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                    rtnetlink::new_connection()
                })();
                let _ = tx.send(result);
            })?;
        let (conn, handle, _) = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .map_err(|_| DriverError::Netlink("timed out entering the namespace".into()))?
            .map_err(|_| DriverError::Netlink("namespace thread failed".into()))??;
        Ok(Self {
            handle,
            connection: tokio::spawn(conn),
        })
    }

    async fn link_index(&self, name: &str) -> Result<Option<LinkMessage>, DriverError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if matches!(errno(&e), Some(ENODEV | ENOENT)) => Ok(None),
            Err(e) => Err(nl(e)),
        }
    }

    async fn require_index(&self, name: &str) -> Result<u32, DriverError> {
        self.link_index(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| DriverError::Netlink(format!("device {name} does not exist")))
    }

    /// Names of all links by index (to name the output device of observed routes).
    async fn link_names(&self) -> Result<BTreeMap<u32, String>, DriverError> {
        let mut out = BTreeMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(nl)? {
            if let Some(name) = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }) {
                out.insert(l.header.index, name);
            }
        }
        Ok(out)
    }

    async fn observe_vxlan(&self, out: &mut Vec<Item>) -> Result<Option<u32>, DriverError> {
        let Some(link) = self.link_index(VXLAN_DEVICE).await? else {
            return Ok(None);
        };
        let index = link.header.index;
        let mut mac = Mac([0; 6]);
        let (mut vni, mut port, mut underlay, mut is_vxlan) = (0, 0, None, false);
        for a in &link.attributes {
            match a {
                LinkAttribute::Address(b) if b.len() == 6 => {
                    mac.0.copy_from_slice(b);
                }
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(InfoKind::Vxlan) => is_vxlan = true,
                            LinkInfo::Data(InfoData::Vxlan(v)) => {
                                for x in v {
                                    match x {
                                        InfoVxlan::Id(id) => vni = *id,
                                        InfoVxlan::Port(p) => port = *p,
                                        InfoVxlan::Local(l) => underlay = Some(IpAddr::V4(*l)),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let mut address = Ipv4Addr::UNSPECIFIED;
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(a) = addrs.try_next().await.map_err(nl)? {
            for attr in &a.attributes {
                if let AddressAttribute::Local(IpAddr::V4(v4)) = attr
                    && a.header.prefix_len == 32
                {
                    address = *v4;
                }
            }
        }
        out.push(Item::VxlanDevice {
            name: VXLAN_DEVICE.to_owned(),
            // A device of another kind under our name reads as a mismatch, so it is replaced.
            vni: if is_vxlan { vni } else { u32::MAX },
            port,
            underlay: underlay.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            address,
            mac,
        });
        Ok(Some(index))
    }

    async fn observe_neighbours(&self, index: u32, out: &mut Vec<Item>) -> Result<(), DriverError> {
        // FDB entries of raven0 (bridge family) with a remote underlay address.
        let mut req = self.handle.neighbours().get();
        req.message_mut().header.family = AddressFamily::Bridge;
        let mut fdb = req.execute();
        while let Some(n) = fdb.try_next().await.map_err(nl)? {
            if n.header.ifindex != index {
                continue;
            }
            if let (Some(mac), Some(dst)) = (lladdr(&n), dst(&n)) {
                out.push(Item::Fdb(FdbEntry {
                    dev: VXLAN_DEVICE.to_owned(),
                    mac,
                    dst,
                }));
            }
        }
        // Permanent IPv4 neighbours on raven0.
        let mut req = self.handle.neighbours().get();
        req.message_mut().header.family = AddressFamily::Inet;
        let mut neigh = req.execute();
        while let Some(n) = neigh.try_next().await.map_err(nl)? {
            if n.header.ifindex != index || n.header.state != NeighbourState::Permanent {
                continue;
            }
            if let (Some(mac), Some(ip)) = (lladdr(&n), dst(&n)) {
                out.push(Item::Neighbor(Neighbor {
                    dev: VXLAN_DEVICE.to_owned(),
                    ip,
                    mac,
                }));
            }
        }
        Ok(())
    }

    /// Our routes (protocol [`ROUTE_PROTOCOL`], main table), as raw messages keyed by
    /// destination, and as items.
    async fn our_routes(&self) -> Result<Vec<(RouteMessage, Route)>, DriverError> {
        let names = self.link_names().await?;
        let mut out = Vec::new();
        let mut routes = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(r) = routes.try_next().await.map_err(nl)? {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let mut table = u32::from(r.header.table);
            let (mut dst, mut via, mut dev) = (None, None, None);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(IpAddr::V4(*g)),
                    RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                    _ => {}
                }
            }
            if table != MAIN_TABLE {
                continue;
            }
            let Some(dst) =
                dst.and_then(|d| Cidr::new(IpAddr::V4(d), r.header.destination_prefix_length))
            else {
                continue;
            };
            let route = Route {
                dst,
                dev: dev.unwrap_or_default(),
                via,
            };
            out.push((r, route));
        }
        Ok(out)
    }

    async fn create_vxlan(&self, item: &Item) -> Result<(), DriverError> {
        let Item::VxlanDevice {
            name,
            vni,
            port,
            underlay,
            address,
            mac,
        } = item
        else {
            return Ok(());
        };
        if let Some(old) = self.link_index(name).await? {
            gone_ok(self.handle.link().del(old.header.index).execute().await)?;
        }
        let mut b = LinkVxlan::new(name, *vni).port(*port).learning(false);
        if let IpAddr::V4(l) = underlay {
            b = b.local(*l);
        }
        let msg = b.address(mac.0.to_vec()).up().build();
        self.handle.link().add(msg).execute().await.map_err(nl)?;
        let index = self.require_index(name).await?;
        self.set_address(index, *address).await
    }

    async fn set_address(&self, index: u32, address: Ipv4Addr) -> Result<(), DriverError> {
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut stale = Vec::new();
        while let Some(a) = addrs.try_next().await.map_err(nl)? {
            let ours = a.header.prefix_len == 32
                && a.attributes
                    .iter()
                    .any(|x| matches!(x, AddressAttribute::Local(IpAddr::V4(v)) if *v == address));
            if a.header.family == AddressFamily::Inet && !ours {
                stale.push(a);
            }
        }
        for a in stale {
            gone_ok(self.handle.address().del(a).execute().await)?;
        }
        self.handle
            .address()
            .add(index, IpAddr::V4(address), 32)
            .replace()
            .execute()
            .await
            .map_err(nl)
    }

    async fn apply_one(&self, change: &Change) -> Result<(), DriverError> {
        match change {
            Change::Add(item @ Item::VxlanDevice { .. }) => self.create_vxlan(item).await,
            Change::Update {
                old:
                    Item::VxlanDevice {
                        vni: v0,
                        port: p0,
                        underlay: u0,
                        mac: m0,
                        ..
                    },
                new:
                    new @ Item::VxlanDevice {
                        name,
                        vni,
                        port,
                        underlay,
                        address,
                        mac,
                    },
            } => {
                if (v0, p0, u0) != (vni, port, underlay) {
                    // These cannot change in place: recreate (what lived on the device goes
                    // with it and is re-added by the engine's next round).
                    return self.create_vxlan(new).await;
                }
                let index = self.require_index(name).await?;
                if m0 != mac {
                    let msg = LinkUnspec::new_with_index(index)
                        .address(mac.0.to_vec())
                        .up()
                        .build();
                    self.handle.link().set(msg).execute().await.map_err(nl)?;
                }
                self.set_address(index, *address).await
            }
            Change::Remove(Item::VxlanDevice { name, .. }) => {
                if let Some(l) = self.link_index(name).await? {
                    gone_ok(self.handle.link().del(l.header.index).execute().await)?;
                }
                Ok(())
            }
            Change::Add(Item::Fdb(f))
            | Change::Update {
                new: Item::Fdb(f), ..
            } => {
                let index = self.require_index(&f.dev).await?;
                self.handle
                    .neighbours()
                    .add_bridge(index, &f.mac.0)
                    .flags(NeighbourFlags::Own)
                    .destination(f.dst)
                    .replace()
                    .execute()
                    .await
                    .map_err(nl)
            }
            Change::Remove(Item::Fdb(f)) => {
                let Some(l) = self.link_index(&f.dev).await? else {
                    return Ok(());
                };
                let mut msg = NeighbourMessage::default();
                msg.header.family = AddressFamily::Bridge;
                msg.header.ifindex = l.header.index;
                msg.header.flags = NeighbourFlags::Own;
                msg.header.state = NeighbourState::Permanent;
                msg.attributes
                    .push(NeighbourAttribute::LinkLayerAddress(f.mac.0.to_vec()));
                msg.attributes
                    .push(NeighbourAttribute::Destination(neigh_addr(f.dst)));
                gone_ok(self.handle.neighbours().del(msg).execute().await)
            }
            Change::Add(Item::Neighbor(n))
            | Change::Update {
                new: Item::Neighbor(n),
                ..
            } => {
                let index = self.require_index(&n.dev).await?;
                self.handle
                    .neighbours()
                    .add(index, n.ip)
                    .link_layer_address(&n.mac.0)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
                    .map_err(nl)
            }
            Change::Remove(Item::Neighbor(n)) => {
                let Some(l) = self.link_index(&n.dev).await? else {
                    return Ok(());
                };
                let mut msg = NeighbourMessage::default();
                msg.header.family = match n.ip {
                    IpAddr::V4(_) => AddressFamily::Inet,
                    IpAddr::V6(_) => AddressFamily::Inet6,
                };
                msg.header.ifindex = l.header.index;
                msg.attributes
                    .push(NeighbourAttribute::Destination(neigh_addr(n.ip)));
                gone_ok(self.handle.neighbours().del(msg).execute().await)
            }
            Change::Add(Item::Route(r))
            | Change::Update {
                new: Item::Route(r),
                ..
            } => {
                let index = self.require_index(&r.dev).await?;
                let msg = route_message(r, index)?;
                match self.handle.route().add(msg).replace().execute().await {
                    Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
                    other => other.map_err(nl),
                }
            }
            Change::Remove(Item::Route(r)) => {
                for (msg, have) in self.our_routes().await? {
                    if have.dst == r.dst {
                        gone_ok(self.handle.route().del(msg).execute().await)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn route_message(r: &Route, index: u32) -> Result<RouteMessage, DriverError> {
    let IpAddr::V4(dst) = r.dst.addr() else {
        return Err(DriverError::Netlink(format!(
            "IPv6 route {} not supported",
            r.dst
        )));
    };
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, r.dst.prefix())
        .output_interface(index)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .table_id(MAIN_TABLE)
        .kind(RouteType::Unicast);
    match r.via {
        Some(IpAddr::V4(gw)) => b = b.gateway(gw).onlink().scope(RouteScope::Universe),
        Some(IpAddr::V6(_)) => {
            return Err(DriverError::Netlink(format!("IPv6 next hop for {}", r.dst)));
        }
        None => b = b.scope(RouteScope::Link),
    }
    Ok(b.build())
}

fn neigh_addr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v) => NeighbourAddress::Inet(v),
        IpAddr::V6(v) => NeighbourAddress::Inet6(v),
    }
}

fn lladdr(n: &NeighbourMessage) -> Option<Mac> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
            let mut m = [0; 6];
            m.copy_from_slice(b);
            Some(Mac(m))
        }
        _ => None,
    })
}

fn dst(n: &NeighbourMessage) -> Option<IpAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => Some(IpAddr::V4(*v)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
        // Bridge-family (FDB) entries carry the address undecoded.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            if let Ok(v4) = <[u8; 4]>::try_from(b.as_slice()) {
                Some(IpAddr::from(v4))
            } else {
                <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from)
            }
        }
        _ => None,
    })
}

#[async_trait]
impl Driver for NetlinkDriver {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn owns(&self, item: &Item) -> bool {
        matches!(
            item,
            Item::VxlanDevice { .. } | Item::Fdb(_) | Item::Neighbor(_) | Item::Route(_)
        )
    }

    async fn observe(&self) -> Result<Vec<Item>, DriverError> {
        let mut out = Vec::new();
        if let Some(index) = self.observe_vxlan(&mut out).await? {
            self.observe_neighbours(index, &mut out).await?;
        }
        out.extend(
            self.our_routes()
                .await?
                .into_iter()
                .map(|(_, r)| Item::Route(r)),
        );
        Ok(out)
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DriverError> {
        for c in changes {
            self.apply_one(c).await?;
        }
        Ok(())
    }
}
