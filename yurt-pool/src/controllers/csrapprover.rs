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

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};

pub mod recognise;
pub use recognise::{RequestSubject, parse_request, recognise};

use super::queue::WorkQueue;
use super::{ReconcileError, drive};
use crate::context::Context;
use crate::names::CSR_APPROVER;

/// Which OpenYurt certificate `csr` asks for (the approval message), or `None` if it is not
/// one this controller approves (see the module docs).
pub fn recognize(csr: &CertificateSigningRequest) -> Option<&'static str> {
    recognise(
        &csr.spec.signer_name,
        csr.spec.usages.as_deref().unwrap_or_default(),
        &csr.spec.request.0,
    )
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
