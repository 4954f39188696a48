//! The I/O-free core of the cloud server: the session registry, target parsing, the agent
//! identity policy and dial admission.
//!
//! Nothing here touches a socket or a clock: the server feeds it events (a session registered,
//! a session ended, a front door wants `edge-1:10250`) and acts on the answers, in the spirit of
//! boringtun's sans-IO protocol core. That makes the invariants that matter (a newer session
//! replaces an older one; an ended older session never evicts its replacement; every reported
//! name and address routes; pending dials are bounded) plain unit tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::handshake::Hello;

/// Splits `host:port` (`[v6]:port` for IPv6). `None` without a valid port, or when the host is
/// neither an IP address nor a DNS-style name.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, rest.strip_prefix(':')?)
    } else {
        let (host, port) = s.rsplit_once(':')?;
        if !valid_host(host) {
            return None;
        }
        (host, port)
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// True for an IPv4 address or a DNS-style name (ASCII letters, digits, `-`, `.`, `_`).
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Where a dial goes: a node's name, hostname or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host as the caller named it (lowercased).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Target {
    /// Parses a CONNECT authority (`edge-1:10250`, `10.0.0.7:10250`, `[fd00::7]:10250`).
    pub fn parse(authority: &str) -> Option<Target> {
        let (host, port) = split_host_port(authority)?;
        if port == 0 {
            return None;
        }
        Some(Target {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The target of a request to the HTTP(S) front doors, as Raven derives it: the node from
    /// `?nodeName=` when present (metrics scrapers dialing the proxy's address), else from the
    /// `Host` header; the port from `Host` when it has one, else `default_port`.
    pub fn from_http(
        host_header: Option<&str>,
        query: Option<&str>,
        default_port: u16,
    ) -> Option<Target> {
        let from_query = query.and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == "nodeName" && !v.is_empty()).then_some(v)
            })
        });
        let (host_part, port) = match host_header {
            Some(h) => match split_host_port(h) {
                Some((host, port)) => (Some(host), port),
                None => (
                    Some(h.trim_start_matches('[').trim_end_matches(']')),
                    default_port,
                ),
            },
            None => (None, default_port),
        };
        let host = from_query.or(host_part)?;
        let ok = valid_host(host) || host.parse::<std::net::Ipv6Addr>().is_ok();
        if !ok || port == 0 {
            return None;
        }
        Some(Target {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `host:port` with IPv6 bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Identifies one registered session inside a [`Registry`].
pub type SessionId = u64;

#[derive(Debug)]
struct Entry<S> {
    hello: Hello,
    handle: S,
}

/// Why a registration was refused by the [`Registry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Collision {
    /// The hello claims a hostname another node's session routes.
    #[error("hostname {name:?} already routes to node {owner:?}")]
    Name {
        /// The contested name.
        name: String,
        /// The node whose session holds it.
        owner: String,
    },
    /// The hello claims an address another node's session routes.
    #[error("address {addr} already routes to node {owner:?}")]
    Address {
        /// The contested address.
        addr: IpAddr,
        /// The node whose session holds it.
        owner: String,
    },
}

/// Node name / hostname / address -> session.
///
/// Ownership rules (they stop one node's agent from taking another node's traffic):
/// * A node name (verified against the agent's certificate by the server) always routes to the
///   newest session of that node; a newer registration replaces the older one, which is
///   returned so the caller can close it.
/// * A hostname or address may be claimed only when no session of *another* node holds it;
///   otherwise the registration is refused with a [`Collision`] and nothing changes.
/// * A session whose hostname claim is another node's name is an impostor: when that node
///   registers, the impostor is evicted (returned for closing) along with all its claims.
/// * Removing a session only removes the keys that point at it, so it never takes another
///   session's routes with it.
#[derive(Debug)]
pub struct Registry<S> {
    next_id: SessionId,
    sessions: HashMap<SessionId, Entry<S>>,
    by_name: HashMap<String, SessionId>,
    by_ip: HashMap<IpAddr, SessionId>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self {
            next_id: 1,
            sessions: HashMap::new(),
            by_name: HashMap::new(),
            by_ip: HashMap::new(),
        }
    }
}

impl<S: Clone> Registry<S> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn owner_node(&self, id: SessionId) -> &str {
        self.sessions.get(&id).map_or("", |e| e.hello.node.as_str())
    }

    /// Checks `hello`'s claims against the other nodes' sessions without registering (the
    /// server asks before it accepts an agent; [`Registry::register`] checks again).
    pub fn check(&self, hello: &Hello) -> Result<(), Collision> {
        let node = hello.node.to_ascii_lowercase();
        if let Some(h) = &hello.hostname
            && !h.eq_ignore_ascii_case(&node)
            && let Some(&owner) = self.by_name.get(&h.to_ascii_lowercase())
            && !self.owner_node(owner).eq_ignore_ascii_case(&node)
        {
            return Err(Collision::Name {
                name: h.to_ascii_lowercase(),
                owner: self.owner_node(owner).to_owned(),
            });
        }
        for ip in &hello.addresses {
            if let Some(&owner) = self.by_ip.get(ip)
                && !self.owner_node(owner).eq_ignore_ascii_case(&node)
            {
                return Err(Collision::Address {
                    addr: *ip,
                    owner: self.owner_node(owner).to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Registers a session; returns its id and the sessions it displaced (an older session of
    /// the same node, or a session of another node claiming this node's name as its hostname),
    /// or the [`Collision`] that refuses it.
    pub fn register(&mut self, hello: Hello, handle: S) -> Result<(SessionId, Vec<S>), Collision> {
        self.check(&hello)?;
        let node = hello.node.to_ascii_lowercase();
        let hostname = hello
            .hostname
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|h| *h != node);
        let id = self.next_id;
        self.next_id += 1;
        let mut displaced = Vec::new();
        // The node name's current holder: an older session of this node, or an impostor that
        // claimed it as a hostname. Either way it goes, with everything it claimed.
        if let Some(old) = self.by_name.get(&node).copied()
            && let Some(entry) = self.remove(old)
        {
            displaced.push(entry);
        }
        // Older sessions of the same node holding other keys (e.g. a hostname it no longer
        // reports) are replaced too.
        let same_node: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.hello.node.eq_ignore_ascii_case(&node))
            .map(|(id, _)| *id)
            .collect();
        for old in same_node {
            if let Some(entry) = self.remove(old) {
                displaced.push(entry);
            }
        }
        self.by_name.insert(node, id);
        if let Some(h) = hostname {
            self.by_name.insert(h, id);
        }
        for ip in &hello.addresses {
            self.by_ip.insert(*ip, id);
        }
        self.sessions.insert(id, Entry { hello, handle });
        Ok((id, displaced))
    }

    /// Removes a session (no-op if it was already replaced); returns its handle. Only the keys
    /// that point at this session are removed.
    pub fn remove(&mut self, id: SessionId) -> Option<S> {
        let entry = self.sessions.remove(&id)?;
        self.by_name.retain(|_, v| *v != id);
        self.by_ip.retain(|_, v| *v != id);
        Some(entry.handle)
    }

    /// The session serving `host` (node name, hostname or any reported address).
    pub fn lookup(&self, host: &str) -> Option<(SessionId, &S)> {
        let id = match host.parse::<IpAddr>() {
            Ok(ip) => self.by_ip.get(&ip),
            Err(_) => self.by_name.get(&host.to_ascii_lowercase()),
        }?;
        self.sessions.get(id).map(|e| (*id, &e.handle))
    }

    /// The node name of a session.
    pub fn node_of(&self, id: SessionId) -> Option<&str> {
        self.sessions.get(&id).map(|e| e.hello.node.as_str())
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no agent is registered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Registered node names, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .sessions
            .values()
            .map(|e| e.hello.node.clone())
            .collect();
        v.sort();
        v
    }
}

/// Which certificate common name an agent for a node must present: a pattern with a `{node}`
/// placeholder, `system:node:{node}` by default (the kubelet's client identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPolicy {
    pattern: Option<String>,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        Self {
            pattern: Some("system:node:{node}".into()),
        }
    }
}

impl IdentityPolicy {
    /// A policy with a custom pattern (must contain `{node}` or be a fixed name).
    pub fn pattern(pattern: impl Into<String>) -> Self {
        Self {
            pattern: Some(pattern.into()),
        }
    }

    /// Accepts any (or no) identity. For transports authenticated by other means only.
    pub fn any() -> Self {
        Self { pattern: None }
    }

    /// Checks that `common_name` may register `node`.
    pub fn check(&self, common_name: Option<&str>, node: &str) -> Result<(), String> {
        let Some(pattern) = &self.pattern else {
            return Ok(());
        };
        let expected = pattern.replace("{node}", node);
        match common_name {
            Some(cn) if cn == expected => Ok(()),
            Some(cn) => Err(format!(
                "certificate CN {cn:?} may not register node {node:?} (expected {expected:?})"
            )),
            None => Err(format!(
                "no client certificate; node {node:?} needs CN {expected:?}"
            )),
        }
    }
}

/// Bounds the dials in flight on one session (ANP's piled-up dials, peers B#25).
#[derive(Debug, Clone)]
pub struct DialGate {
    max: usize,
    pending: Arc<AtomicUsize>,
}

/// Holds one pending-dial slot; released on drop.
#[derive(Debug)]
pub struct DialTicket {
    pending: Arc<AtomicUsize>,
}

impl Drop for DialTicket {
    fn drop(&mut self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DialGate {
    /// A gate admitting at most `max` concurrent dials.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` when `max` dials are already pending.
    pub fn try_admit(&self) -> Option<DialTicket> {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| DialTicket {
                pending: self.pending.clone(),
            })
    }

    /// Dials currently pending.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: &str, ips: &[&str]) -> Hello {
        Hello {
            node: node.into(),
            hostname: Some(format!("{node}.lan")),
            addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn routes_by_name_hostname_and_every_ip() {
        let mut r = Registry::new();
        let (a, _) = r
            .register(hello("edge-1", &["10.0.0.1", "fd00::1"]), "a")
            .unwrap();
        assert_eq!(r.lookup("edge-1"), Some((a, &"a")));
        assert_eq!(r.lookup("EDGE-1.lan"), Some((a, &"a")));
        assert_eq!(r.lookup("10.0.0.1"), Some((a, &"a")));
        assert_eq!(r.lookup("fd00::1"), Some((a, &"a")));
        assert_eq!(r.lookup("edge-2"), None);
        assert_eq!(r.lookup("10.0.0.2"), None);
    }

    #[test]
    fn newer_session_replaces_and_old_removal_is_harmless() {
        let mut r = Registry::new();
        let (old, _) = r.register(hello("edge-1", &["10.0.0.1"]), "old").unwrap();
        let (new, replaced) = r.register(hello("edge-1", &["10.0.0.9"]), "new").unwrap();
        assert_eq!(replaced, vec!["old"]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove(old), None);
        assert_eq!(r.lookup("edge-1"), Some((new, &"new")));
        assert_eq!(
            r.lookup("10.0.0.1"),
            None,
            "stale address of the replaced session"
        );
        assert_eq!(r.remove(new), Some("new"));
        assert!(r.is_empty() && r.lookup("edge-1").is_none() && r.lookup("10.0.0.9").is_none());
    }

    #[test]
    fn another_nodes_names_and_addresses_are_refused_and_survive_the_impostor() {
        let mut r = Registry::new();
        let (b, _) = r
            .register(hello("edge-2", &["10.0.0.2"]), "edge-2")
            .unwrap();
        // edge-1 claiming edge-2's address.
        assert_eq!(
            r.register(hello("edge-1", &["10.0.0.2"]), "impostor"),
            Err(Collision::Address {
                addr: "10.0.0.2".parse().unwrap(),
                owner: "edge-2".into()
            })
        );
        // edge-1 claiming edge-2's name as its hostname.
        let mut h = hello("edge-1", &["10.0.0.1"]);
        h.hostname = Some("edge-2".into());
        assert!(matches!(
            r.register(h.clone(), "impostor"),
            Err(Collision::Name { .. })
        ));
        // ... and edge-2's hostname.
        h.hostname = Some("edge-2.lan".into());
        assert!(matches!(
            r.register(h, "impostor"),
            Err(Collision::Name { .. })
        ));
        // Refusals changed nothing; an honest edge-1 registers and leaves without harm.
        let (a, _) = r
            .register(hello("edge-1", &["10.0.0.1"]), "edge-1")
            .unwrap();
        assert_eq!(r.lookup("edge-2"), Some((b, &"edge-2")));
        r.remove(a);
        assert_eq!(r.lookup("edge-2"), Some((b, &"edge-2")));
        assert_eq!(r.lookup("10.0.0.2"), Some((b, &"edge-2")));
        assert_eq!(r.lookup("edge-2.lan"), Some((b, &"edge-2")));
        assert_eq!(r.nodes(), vec!["edge-2".to_string()]);
        assert_eq!(r.node_of(b), Some("edge-2"));
    }

    #[test]
    fn a_node_evicts_an_impostor_that_claimed_its_name_first() {
        let mut r = Registry::new();
        let mut h = hello("edge-1", &["10.0.0.1"]);
        h.hostname = Some("edge-2".into());
        let (imp, _) = r.register(h, "impostor").unwrap();
        let (b, displaced) = r
            .register(hello("edge-2", &["10.0.0.2"]), "edge-2")
            .unwrap();
        assert_eq!(displaced, vec!["impostor"]);
        assert_eq!(r.remove(imp), None);
        assert_eq!(r.lookup("edge-2"), Some((b, &"edge-2")));
        assert_eq!(r.lookup("10.0.0.1"), None);
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("edge-1:10250"),
            Some(Target {
                host: "edge-1".into(),
                port: 10250
            })
        );
        assert_eq!(
            Target::parse("[fd00::1]:10250").unwrap().authority(),
            "[fd00::1]:10250"
        );
        assert_eq!(Target::parse("fd00::1:10250"), None);
        assert_eq!(Target::parse("edge-1"), None);
        assert_eq!(Target::parse("edge-1:0"), None);
        assert_eq!(Target::parse("edge-1:99999"), None);
        assert_eq!(Target::parse(":10250"), None);
        // Found by the fuzzer: a host that is neither a name nor an IP must not parse.
        assert_eq!(Target::parse("[[\u{d5}a]:2"), None);
        assert_eq!(Target::parse("[not-v6]:2"), None);
        assert_eq!(Target::parse("a b:2"), None);
        assert_eq!(Target::parse("edge-1:010250"), None);
        assert_eq!(
            Target::from_http(Some("edge-1:1"), Some("nodeName=a/b"), 1),
            None
        );
        assert_eq!(
            Target::from_http(Some("[fd00::1]"), None, 10250)
                .unwrap()
                .authority(),
            "[fd00::1]:10250"
        );
        let t = Target::from_http(Some("Edge-1:10250"), None, 10250).unwrap();
        assert_eq!(t.authority(), "edge-1:10250");
        let t =
            Target::from_http(Some("10.96.0.5:9100"), Some("a=b&nodeName=edge-2"), 10250).unwrap();
        assert_eq!(t.authority(), "edge-2:9100");
        assert_eq!(
            Target::from_http(Some("edge-3"), None, 10255)
                .unwrap()
                .authority(),
            "edge-3:10255"
        );
        assert_eq!(Target::from_http(None, None, 10255), None);
    }

    #[test]
    fn identity_policy() {
        let p = IdentityPolicy::default();
        assert!(p.check(Some("system:node:edge-1"), "edge-1").is_ok());
        assert!(
            p.check(Some("system:node:edge-2"), "edge-1")
                .unwrap_err()
                .contains("may not register")
        );
        assert!(p.check(None, "edge-1").is_err());
        assert!(
            IdentityPolicy::pattern("tunnel-agent-client")
                .check(Some("tunnel-agent-client"), "x")
                .is_ok()
        );
        assert!(IdentityPolicy::any().check(None, "x").is_ok());
    }

    #[test]
    fn dial_gate_bounds_and_releases() {
        let g = DialGate::new(2);
        let a = g.try_admit().unwrap();
        let _b = g.try_admit().unwrap();
        assert!(g.try_admit().is_none());
        drop(a);
        assert_eq!(g.pending(), 1);
        assert!(g.try_admit().is_some());
    }
}
