//! The csr-approver's recogniser: which OpenYurt certificate a certificate signing request asks
//! for, from its signer, its usages and its PEM request (rules in the `csrapprover` module
//! docs). It reads untrusted bytes (any user may create a CSR), so it has a fuzz target, which
//! compiles this file on its own; it therefore uses nothing of this crate and no Kubernetes
//! types, only `x509-parser`.

use std::collections::BTreeSet;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const NODE_CN_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const HUB_ORG: &str = "openyurt:yurthub";
const TENANT_ORG_PREFIX: &str = "openyurt:tenant:";
const TUNNEL_ORG: &str = "openyurt:yurttunnel";
const TUNNEL_PROXY_CLIENT_CN: &str = "tunnel-proxy-client";
const TUNNEL_AGENT_CN: &str = "tunnel-agent-client";

/// The subject and SANs of a parsed certificate request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestSubject {
    /// The common name (empty when absent).
    pub common_name: String,
    /// Every organization, in order.
    pub organizations: Vec<String>,
    /// Whether the request asks for at least one DNS or IP subject alternative name.
    pub has_dns_or_ip_san: bool,
}

/// Parses a PEM `CERTIFICATE REQUEST`; `None` for anything else or anything malformed.
pub fn parse_request(pem: &[u8]) -> Option<RequestSubject> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    if block.label != "CERTIFICATE REQUEST" {
        return None;
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents).ok()?;
    let info = &csr.certification_request_info;
    let mut subject = RequestSubject {
        common_name: info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_owned(),
        organizations: info
            .subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect(),
        has_dns_or_ip_san: false,
    };
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                subject.has_dns_or_ip_san |= san
                    .general_names
                    .iter()
                    .any(|n| matches!(n, GeneralName::DNSName(_) | GeneralName::IPAddress(_)));
            }
        }
    }
    Some(subject)
}

fn usages_are(usages: &[String], last: &str) -> bool {
    let got: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = ["digital signature", "key encipherment", last].into();
    got == want
}

/// Which OpenYurt certificate a CSR with this `signer`, these `usages` and this PEM `request`
/// asks for (the approval message), or `None` if it is not one the approver approves.
pub fn recognise(signer: &str, usages: &[String], request: &[u8]) -> Option<&'static str> {
    let subject = parse_request(request)?;
    let usages = usages.to_vec();
    let orgs = &subject.organizations;
    let node_cn = subject.common_name.starts_with(NODE_CN_PREFIX);
    let client_usages = usages_are(&usages, "client auth");
    let only_org = |o: &str| orgs.len() == 1 && orgs[0] == o;

    if signer == CLIENT_SIGNER
        && node_cn
        && client_usages
        && orgs.len() >= 2
        && orgs
            .iter()
            .all(|o| o == HUB_ORG || o == NODES_GROUP || o.starts_with(TENANT_ORG_PREFIX))
    {
        return Some("auto-approving yurthub node client certificate");
    }
    if signer == SERVING_SIGNER
        && node_cn
        && only_org(NODES_GROUP)
        && subject.has_dns_or_ip_san
        && usages_are(&usages, "server auth")
    {
        return Some("auto-approving openyurt tls server certificate");
    }
    if signer == CLIENT_SIGNER && client_usages && only_org(TUNNEL_ORG) {
        if subject.common_name == TUNNEL_PROXY_CLIENT_CN {
            return Some("auto-approving tunnel-server proxy client certificate");
        }
        if subject.common_name == TUNNEL_AGENT_CN {
            return Some("auto-approving tunnel-agent client certificate");
        }
    }
    None
}
