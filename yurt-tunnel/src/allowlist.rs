//! The agent's allowlist: which local targets a CONNECT stream may reach.
//!
//! By default only the kubelet ports (10250 secure, 10255 read-only) on the node's own
//! addresses; operators add more `ip:port` targets or ports via flags. The cloud names targets
//! the way kube-apiserver does (`edge-1:10250` or `10.0.0.7:10250`); the agent resolves its own
//! node name and hostname to its first address and refuses everything else, so a compromised or
//! misrouted cloud request cannot use the agent as an open relay into the edge network.
//! I/O-free: `resolve` only decides.

use std::net::{IpAddr, SocketAddr};

use crate::routing::Target;

/// Why the agent refused a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not in the allowlist.
    #[error("target {0} is not allowed by the agent allowlist")]
    NotAllowed(String),
    /// A name that is not this node's.
    #[error("target host {0:?} is not this node (agent only dials its own addresses)")]
    UnknownHost(String),
}

/// The set of local targets an agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    node: String,
    hostname: Option<String>,
    addresses: Vec<IpAddr>,
    node_ports: Vec<u16>,
    extra: Vec<SocketAddr>,
}

/// Kubelet's secure and read-only ports.
pub const DEFAULT_NODE_PORTS: [u16; 2] = [10250, 10255];

impl Allowlist {
    /// Kubelet ports on the node's addresses.
    pub fn new(node: &str, hostname: Option<&str>, addresses: Vec<IpAddr>) -> Self {
        Self {
            node: node.to_ascii_lowercase(),
            hostname: hostname.map(str::to_ascii_lowercase),
            addresses,
            node_ports: DEFAULT_NODE_PORTS.to_vec(),
            extra: Vec::new(),
        }
    }

    /// Replaces the ports allowed on every node address.
    pub fn with_node_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.node_ports = ports.into_iter().collect();
        self
    }

    /// Also allows one exact `ip:port`.
    pub fn allow(mut self, target: SocketAddr) -> Self {
        self.extra.push(target);
        self
    }

    /// The socket address to dial for `target`, or why not.
    pub fn resolve(&self, target: &Target) -> Result<SocketAddr, Refusal> {
        let ip = match target.host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if target.host == self.node || Some(&target.host) == self.hostname.as_ref() => {
                *self
                    .addresses
                    .first()
                    .ok_or_else(|| Refusal::UnknownHost(target.host.clone()))?
            }
            Err(_) => return Err(Refusal::UnknownHost(target.host.clone())),
        };
        let addr = SocketAddr::new(ip, target.port);
        let on_node = self.addresses.contains(&ip) && self.node_ports.contains(&target.port);
        if on_node || self.extra.contains(&addr) {
            Ok(addr)
        } else {
            Err(Refusal::NotAllowed(target.authority()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    #[test]
    fn kubelet_ports_on_node_addresses_only() {
        let a = Allowlist::new(
            "edge-1",
            Some("edge-1.lan"),
            vec!["10.0.0.7".parse().unwrap()],
        );
        assert_eq!(
            a.resolve(&t("edge-1:10250")),
            Ok("10.0.0.7:10250".parse().unwrap())
        );
        assert_eq!(
            a.resolve(&t("edge-1.lan:10255")),
            Ok("10.0.0.7:10255".parse().unwrap())
        );
        assert_eq!(
            a.resolve(&t("10.0.0.7:10250")),
            Ok("10.0.0.7:10250".parse().unwrap())
        );
        assert!(matches!(
            a.resolve(&t("10.0.0.7:22")),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            a.resolve(&t("10.0.0.8:10250")),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            a.resolve(&t("edge-2:10250")),
            Err(Refusal::UnknownHost(_))
        ));
        assert!(matches!(
            a.resolve(&t("169.254.169.254:80")),
            Err(Refusal::NotAllowed(_))
        ));
    }

    #[test]
    fn extras_and_custom_ports() {
        let a = Allowlist::new("edge-1", None, vec!["127.0.0.1".parse().unwrap()])
            .with_node_ports([9100])
            .allow("127.0.0.2:8080".parse().unwrap());
        assert!(a.resolve(&t("edge-1:9100")).is_ok());
        assert!(a.resolve(&t("edge-1:10250")).is_err());
        assert!(a.resolve(&t("127.0.0.2:8080")).is_ok());
        let none = Allowlist::new("edge-1", None, vec![]);
        assert!(matches!(
            none.resolve(&t("edge-1:10250")),
            Err(Refusal::UnknownHost(_))
        ));
    }
}
