//! `csr-approver-controller`: OpenYurt's hub and tunnel CSRs are approved (and then signed by
//! the test apiserver); every other CSR is left pending. Requests are made with the `openssl`
//! tool, which (unlike rcgen) can put several organizations in one subject.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use serde_json::json;
use yurt_pool::Manager;
use yurt_testkit::TestApiServer;

use crate::support::*;

/// A PEM certificate request for `subject` (openssl `-subj` syntax), with `san` if given.
async fn request(subject: &str, san: Option<&str>) -> String {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args([
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        subject,
    ]);
    if let Some(san) = san {
        cmd.args(["-addext", &format!("subjectAltName={san}")]);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("openssl in time")
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn submit(s: &TestApiServer, name: &str, pem: &str, signer: &str, usages: &[&str]) {
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "request": STANDARD.encode(pem.as_bytes()),
            "signerName": signer,
            "usages": usages,
        }
    }))
    .unwrap();
    let api: Api<CertificateSigningRequest> = Api::all(s.client());
    bounded(api.create(&PostParams::default(), &csr))
        .await
        .expect("create csr");
}

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const SERVING: &str = "kubernetes.io/kubelet-serving";
const CLIENT_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];
const SERVER_USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

fn conditions(csr: &CertificateSigningRequest) -> Vec<(String, Option<String>)> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.reason))
        .collect()
}

#[tokio::test]
async fn openyurt_csrs_are_approved_and_others_left_pending() {
    if which_openssl().is_none() {
        return skip("openssl");
    }
    let s = TestApiServer::start().await.unwrap();
    let m = Running::start(Manager::builder(s.client()).controllers(&["csrapprover"]));
    let api: Api<CertificateSigningRequest> = Api::all(s.client());

    // Not ours: each misses one rule.
    let ignored = [
        // A kubelet's own client certificate: only system:nodes.
        (
            "kubelet-client",
            request("/O=system:nodes/CN=system:node:n1", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        // Hub orgs but an extra, foreign organization.
        (
            "foreign-org",
            request("/O=openyurt:yurthub/O=evil/CN=system:node:n1", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        // Hub orgs but not a node name.
        (
            "not-a-node",
            request("/O=openyurt:yurthub/O=system:nodes/CN=admin", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        // Hub client asking for server auth too.
        (
            "extra-usage",
            request("/O=openyurt:yurthub/O=system:nodes/CN=system:node:n1", None).await,
            CLIENT,
            &[
                "digital signature",
                "key encipherment",
                "client auth",
                "server auth",
            ],
        ),
        // A serving certificate without any SAN.
        (
            "server-no-san",
            request("/O=system:nodes/CN=system:node:n1", None).await,
            SERVING,
            SERVER_USAGES,
        ),
        // Tunnel org with an unknown common name.
        (
            "tunnel-other",
            request("/O=openyurt:yurttunnel/CN=tunnel-admin", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        // Tunnel agent on the wrong signer.
        (
            "tunnel-wrong-signer",
            request("/O=openyurt:yurttunnel/CN=tunnel-agent-client", None).await,
            SERVING,
            CLIENT_USAGES,
        ),
    ];
    for (name, pem, signer, usages) in &ignored {
        submit(&s, name, pem, signer, usages).await;
    }
    // Every ignored CSR was looked at once (nothing else exists to reconcile)...
    eventually("ignored csrs reconciled", || async {
        (m.ctx.metrics.reconcile_count("csr-approver-controller") >= ignored.len() as u64)
            .then_some(())
    })
    .await;
    // ...and left pending.
    for (name, ..) in &ignored {
        let csr = bounded(api.get(name)).await.unwrap();
        assert!(
            conditions(&csr).is_empty(),
            "{name}: {:?}",
            conditions(&csr)
        );
    }

    let approved = [
        (
            "hub-client",
            request("/O=openyurt:yurthub/O=system:nodes/CN=system:node:n1", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        (
            "hub-tenant",
            request(
                "/O=system:nodes/O=openyurt:tenant:acme/CN=system:node:n2",
                None,
            )
            .await,
            CLIENT,
            CLIENT_USAGES,
        ),
        (
            "hub-server",
            request(
                "/O=system:nodes/CN=system:node:n1",
                Some("DNS:n1,IP:10.0.0.1"),
            )
            .await,
            SERVING,
            SERVER_USAGES,
        ),
        (
            "tunnel-proxy",
            request("/O=openyurt:yurttunnel/CN=tunnel-proxy-client", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
        (
            "tunnel-agent",
            request("/O=openyurt:yurttunnel/CN=tunnel-agent-client", None).await,
            CLIENT,
            CLIENT_USAGES,
        ),
    ];
    for (name, pem, signer, usages) in &approved {
        submit(&s, name, pem, signer, usages).await;
    }
    for (name, ..) in &approved {
        let csr = eventually(&format!("{name} approved and signed"), || async {
            let csr = bounded(api.get(name)).await.unwrap();
            csr.status
                .as_ref()
                .and_then(|st| st.certificate.as_ref())
                .is_some()
                .then_some(csr)
        })
        .await;
        assert_eq!(
            conditions(&csr),
            vec![("Approved".to_string(), Some("AutoApproved".to_string()))],
            "{name}"
        );
    }
    for (name, ..) in &ignored {
        let csr = bounded(api.get(name)).await.unwrap();
        assert!(conditions(&csr).is_empty(), "{name}");
    }
    m.stop().await.unwrap();
}

fn which_openssl() -> Option<()> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .any(|dir| std::path::Path::new(dir).join("openssl").exists())
        .then_some(())
}

fn skip(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} is required in CI");
    // Directly to stderr: libtest captures `eprintln!`, and the skip must show.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "skipping: {what} not installed");
}
