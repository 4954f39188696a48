//! Checking what an agent's hello claims against the cluster's view of its node.
//!
//! The certificate proves only the node *name*. The hostname and addresses in a [`Hello`] decide
//! which traffic the session receives (kube-apiserver dials nodes by address or hostname too),
//! so an agent for `edge-1` that claimed `edge-2`'s addresses would receive `edge-2`'s kubelet
//! traffic. When the server can read Node objects, every claim must appear in the node's
//! `status.addresses`; [`NodeDirectory`] is how it reads them (the `raven` daemon implements it
//! with a Kubernetes client), and [`NodeAddresses`] is the I/O-free check. When the Node cannot
//! be read (no directory configured, apiserver unreachable), the registry still refuses claims
//! that collide with another node's (see [`crate::routing::Registry`]).

use std::net::IpAddr;

use async_trait::async_trait;

use crate::handshake::Hello;

/// The names and addresses a Node object reports in `status.addresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    /// `Hostname`, `InternalDNS` and `ExternalDNS` entries, lowercased.
    pub names: Vec<String>,
    /// `InternalIP` and `ExternalIP` entries.
    pub ips: Vec<IpAddr>,
}

impl NodeAddresses {
    /// Reads `status.addresses` of a Node object in its JSON form. Entries of unknown types and
    /// IP entries that do not parse are ignored.
    pub fn from_node_json(node: &serde_json::Value) -> Self {
        let mut out = Self::default();
        let entries = node
            .pointer("/status/addresses")
            .and_then(|a| a.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for entry in entries {
            let (Some(kind), Some(address)) = (
                entry.get("type").and_then(|t| t.as_str()),
                entry.get("address").and_then(|a| a.as_str()),
            ) else {
                continue;
            };
            match kind {
                "Hostname" | "InternalDNS" | "ExternalDNS" => {
                    out.names.push(address.to_ascii_lowercase());
                }
                "InternalIP" | "ExternalIP" => {
                    if let Ok(ip) = address.parse() {
                        out.ips.push(ip);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Checks that every hostname and address `hello` claims is one of the node's.
    pub fn verify(&self, hello: &Hello) -> Result<(), String> {
        if let Some(h) = &hello.hostname
            && !h.eq_ignore_ascii_case(&hello.node)
            && !self.names.iter().any(|n| n.eq_ignore_ascii_case(h))
        {
            return Err(format!(
                "hello claims hostname {h:?}, which Node {:?} does not report in status.addresses",
                hello.node
            ));
        }
        if let Some(ip) = hello.addresses.iter().find(|ip| !self.ips.contains(ip)) {
            return Err(format!(
                "hello claims address {ip}, which Node {:?} does not report in status.addresses",
                hello.node
            ));
        }
        Ok(())
    }
}

/// Reads a node's addresses from the cluster.
#[async_trait]
pub trait NodeDirectory: Send + Sync + std::fmt::Debug + 'static {
    /// `Ok(Some(_))`: the Node exists; `Ok(None)`: there is no such Node (the registration is
    /// refused); `Err(_)`: it cannot be read now (the server falls back to collision checks).
    async fn addresses(&self, node: &str) -> Result<Option<NodeAddresses>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_addresses_and_verifies_claims() {
        let node = serde_json::json!({"status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "ExternalIP", "address": "fd00::1"},
            {"type": "Hostname", "address": "Edge-1.lan"},
            {"type": "InternalIP", "address": "not-an-ip"},
            {"type": "Weird", "address": "10.9.9.9"},
            {"address": "10.8.8.8"}
        ]}});
        let a = NodeAddresses::from_node_json(&node);
        assert_eq!(a.names, vec!["edge-1.lan".to_string()]);
        assert_eq!(a.ips.len(), 2);
        let mut hello = Hello {
            node: "edge-1".into(),
            hostname: Some("edge-1.lan".into()),
            addresses: vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        };
        assert_eq!(a.verify(&hello), Ok(()));
        hello.hostname = Some("edge-1".into());
        assert_eq!(
            a.verify(&hello),
            Ok(()),
            "the node name itself needs no entry"
        );
        hello.hostname = Some("edge-2".into());
        assert!(
            a.verify(&hello)
                .unwrap_err()
                .contains("hostname \"edge-2\"")
        );
        hello.hostname = None;
        hello.addresses.push("10.9.9.9".parse().unwrap());
        assert!(a.verify(&hello).unwrap_err().contains("address 10.9.9.9"));
        assert_eq!(
            NodeAddresses::from_node_json(&serde_json::json!({})),
            NodeAddresses::default()
        );
    }
}
