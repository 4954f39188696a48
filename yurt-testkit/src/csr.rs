//! The CSR signer: what kube-controller-manager's `csrsigning` controller does. An approved
//! CertificateSigningRequest for one of the `kubernetes.io/*` signers gets `status.certificate`
//! signed by the test CA as soon as the approval is written; a request the CA cannot sign gets a
//! `Failed` condition.
//!
//! The signer does not check that the requested usages and subject fit the signer (the real
//! signers refuse, e.g., a kubelet client CSR whose CN is not `system:node:<name>`).

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::handlers::delete::set_condition;
use crate::server::Shared;
use crate::storage::{Event, EventKind};

/// The storage key of CSRs.
pub(crate) const CSR_STORAGE: &str = "certificates.k8s.io/certificatesigningrequests";

/// Signers kube-controller-manager handles.
const KNOWN_SIGNERS: [&str; 4] = [
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/legacy-unknown",
];

/// Runs the signer until its subscription ends (the server is dropped).
pub(crate) async fn run(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Arc<Event>>) {
    while let Some(ev) = events.recv().await {
        if ev.kind == EventKind::Deleted || !needs_signing(&ev.object.value) {
            continue;
        }
        let key = ev.key.clone();
        shared.store.write(|t| {
            let Some(current) = t.get(CSR_STORAGE, &key) else {
                return;
            };
            if !needs_signing(&current.value) {
                return;
            }
            let mut csr = current.value.clone();
            match sign(&shared, &csr) {
                Ok(cert_pem) => {
                    let st = csr
                        .as_object_mut()
                        .expect("object")
                        .entry("status")
                        .or_insert_with(|| json!({}));
                    if let Some(s) = st.as_object_mut() {
                        s.insert(
                            "certificate".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(cert_pem)),
                        );
                    }
                }
                Err(why) => {
                    set_condition(&mut csr, "Failed", "True", "SignerValidationFailure", &why)
                }
            }
            t.put(CSR_STORAGE, &key, csr);
        });
    }
}

/// Approved, not denied or failed, not yet signed, for a signer this controller handles.
fn needs_signing(csr: &Value) -> bool {
    let status = &csr["status"];
    if status["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        return false;
    }
    let signer = csr["spec"]["signerName"].as_str().unwrap_or("");
    if !KNOWN_SIGNERS.contains(&signer) {
        return false;
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let has = |ty: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == ty && c["status"] != "False")
    };
    has("Approved") && !has("Denied") && !has("Failed")
}

/// Signs the CSR's request with the test CA.
fn sign(shared: &Shared, csr: &Value) -> Result<String, String> {
    let request = csr["spec"]["request"]
        .as_str()
        .ok_or("spec.request is missing")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "spec.request is not a PEM document")?;
    let usages: Vec<&str> = csr["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let expiration = csr["spec"]["expirationSeconds"]
        .as_u64()
        .map(|s| s.min(u64::from(u32::MAX)) as u32);
    shared
        .ca
        .sign_csr(&pem, &usages, expiration)
        .map_err(|e| e.to_string())
}
