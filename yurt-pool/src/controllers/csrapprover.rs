//! `csr-approver-controller`: approves exactly the certificate signing requests of OpenYurt's
//! own components, and nothing else.
//!
//! A pending CSR (neither approved nor denied) is approved with reason `AutoApproved` when its
//! PEM request parses and it is one of:
//!
//! | what | signer | subject | usages |
//! | --- | --- | --- | --- |
//! | hub node client | `kubernetes.io/kube-apiserver-client` | CN `system:node:*`; two or more O, each `openyurt:yurthub`, `system:nodes` or `openyurt:tenant:*` | digital signature, key encipherment, client auth |
//! | hub / tunnel TLS server | `kubernetes.io/kubelet-serving` | CN `system:node:*`; O exactly `system:nodes`; at least one DNS or IP SAN | digital signature, key encipherment, server auth |
//! | tunnel proxy client | `kubernetes.io/kube-apiserver-client` | CN `tunnel-proxy-client`; O exactly `openyurt:yurttunnel` | client usages as above |
//! | tunnel agent client | `kubernetes.io/kube-apiserver-client` | CN `tunnel-agent-client`; O exactly `openyurt:yurttunnel` | client usages as above |
//!
//! Usages must match exactly (as sets). Everything else is left for a human or another
//! approver: this controller never denies.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::queue::WorkQueue;
use super::{ReconcileError, drive};
use crate::context::Context;
use crate::names::CSR_APPROVER;

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

/// Which OpenYurt certificate `csr` asks for (the approval message), or `None` if it is not
/// one this controller approves (see the module docs).
pub fn recognize(csr: &CertificateSigningRequest) -> Option<&'static str> {
    let subject = parse_request(&csr.spec.request.0)?;
    let signer = csr.spec.signer_name.as_str();
    let usages = csr.spec.usages.clone().unwrap_or_default();
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

/// Whether the CSR already has an `Approved` or `Denied` condition.
fn decided(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Approved" || c.type_ == "Denied")
        })
}

/// Subscribes to CertificateSigningRequests and returns the future running the controller.
pub fn setup(ctx: &Arc<Context>) -> BoxFuture<'static, ()> {
    let (csrs, changes) = ctx.informers.subscribe::<CertificateSigningRequest>();
    let queue = WorkQueue::new(ctx, CSR_APPROVER);
    let changes = queue.track_changes(changes, csrs.clone());
    let controller = Controller::for_shared_stream(changes, csrs);
    drive(CSR_APPROVER, controller, ctx.clone(), queue, reconcile)
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if decided(&csr) {
        return Ok(Action::await_change());
    }
    let Some(message) = recognize(&csr) else {
        tracing::debug!(csr = %csr.name_any(), "not an openyurt csr; left alone");
        return Ok(Action::await_change());
    };
    let mut approved = (*csr).clone();
    let status = approved.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.into()),
            ..Default::default()
        });
    // The object carries its resourceVersion, so a concurrent change is a conflict (retried).
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    api.replace_subresource(
        "approval",
        &csr.name_any(),
        &PostParams::default(),
        &approved,
    )
    .await?;
    tracing::info!(csr = %csr.name_any(), "{message}");
    Ok(Action::await_change())
}
