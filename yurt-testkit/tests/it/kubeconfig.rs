//! Kubeconfig text: parsed by kube-rs into the right client configuration, and read by kubectl.

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use yurt_testkit::kubeconfig::KubeconfigBuilder;
use yurt_testkit::pki::TestCa;

const URL: &str = "https://127.0.0.1:6443";
/// Failure guard for the kubectl process.
const GUARD: Duration = Duration::from_secs(30);

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn client_cert_kubeconfig_loads_in_kube_rs() {
    let ca = TestCa::new().unwrap();
    let client = ca.issue_client_cert("alice", &["system:masters"]).unwrap();
    let text = KubeconfigBuilder::new(URL)
        .ca_pem(ca.ca_pem())
        .client_cert(&client.cert_pem, &client.key_pem)
        .namespace("edge")
        .build();

    let kubeconfig = Kubeconfig::from_yaml(&text).unwrap();
    assert_eq!(kubeconfig.current_context.as_deref(), Some("yurt-testkit"));
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some(URL));
    assert_eq!(
        cluster.certificate_authority_data.as_deref(),
        Some(b64(ca.ca_pem()).as_str())
    );

    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{URL}/"));
    assert_eq!(config.default_namespace, "edge");
    assert_eq!(config.root_cert, Some(vec![ca.ca_der().to_vec()]));
    assert!(!config.accept_invalid_certs);
    assert_eq!(
        config.auth_info.client_certificate_data.as_deref(),
        Some(b64(&client.cert_pem).as_str())
    );
    assert!(config.auth_info.client_key_data.is_some());
    assert!(config.auth_info.token.is_none());
}

#[tokio::test]
async fn token_kubeconfig_loads_in_kube_rs() {
    let text = KubeconfigBuilder::new(URL)
        .insecure_skip_tls_verify()
        .token("s3cr3t-token")
        .build();
    let kubeconfig = Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{URL}/"));
    assert!(config.accept_invalid_certs);
    assert_eq!(config.root_cert, None);
    assert_eq!(config.default_namespace, "default");
    assert!(config.auth_info.token.is_some());
    assert!(config.auth_info.client_certificate_data.is_none());
}

#[test]
fn ca_and_insecure_are_mutually_exclusive_last_wins() {
    let ca = TestCa::new().unwrap();
    let insecure = KubeconfigBuilder::new(URL)
        .ca_pem(ca.ca_pem())
        .insecure_skip_tls_verify()
        .build();
    let kubeconfig = Kubeconfig::from_yaml(&insecure).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
    assert_eq!(cluster.certificate_authority_data, None);

    let verified = KubeconfigBuilder::new(URL)
        .insecure_skip_tls_verify()
        .ca_pem(ca.ca_pem())
        .build();
    let kubeconfig = Kubeconfig::from_yaml(&verified).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.insecure_skip_tls_verify, None);
    assert!(cluster.certificate_authority_data.is_some());
}

/// Runs `kubectl config view` on `text` with a JSONPath template, returning stdout.
async fn kubectl_view(text: &str, jsonpath: &str) -> String {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
    let output = tokio::time::timeout(
        GUARD,
        tokio::process::Command::new("/usr/bin/kubectl")
            .arg("config")
            .arg("view")
            .arg("--raw")
            .arg("--kubeconfig")
            .arg(file.path())
            .arg("-o")
            .arg(format!("jsonpath={jsonpath}"))
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl hung")
    .expect("kubectl did not run");
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn kubectl_reads_the_kubeconfig() {
    let ca = TestCa::new().unwrap();
    let text = KubeconfigBuilder::new(URL)
        .ca_pem(ca.ca_pem())
        .token("s3cr3t-token")
        .namespace("kube-system")
        .build();
    assert_eq!(
        kubectl_view(&text, "{.clusters[0].cluster.server}").await,
        URL
    );
    assert_eq!(
        kubectl_view(&text, "{.current-context}").await,
        "yurt-testkit"
    );
    assert_eq!(
        kubectl_view(&text, "{.contexts[0].context.namespace}").await,
        "kube-system"
    );
    assert_eq!(
        kubectl_view(&text, "{.users[0].user.token}").await,
        "s3cr3t-token"
    );
    assert_eq!(
        kubectl_view(&text, "{.clusters[0].cluster.certificate-authority-data}").await,
        b64(ca.ca_pem())
    );
}
