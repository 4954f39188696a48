//! TLS, client-certificate and bearer-token authentication, service-account tokens, and the
//! CSR signer (issue items 1 and 3).

use base64::Engine as _;
use http::StatusCode;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use yurt_testkit::TestApiServer;
use yurt_testkit::pki::CertifiedKey;

use crate::support::bounded;

async fn client_from(kubeconfig: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn whoami(client: kube::Client) -> (String, Vec<String>) {
    let api: Api<SelfSubjectReview> = Api::all(client);
    let review: SelfSubjectReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}}))
    .unwrap();
    let out = bounded(api.create(&PostParams::default(), &review))
        .await
        .unwrap();
    let info = out.status.unwrap().user_info.unwrap();
    (info.username.unwrap(), info.groups.unwrap_or_default())
}

/// A raw HTTPS request without a client certificate.
async fn anonymous_https(s: &TestApiServer, path: &str) -> (StatusCode, serde_json::Value) {
    let tls = s.ca().client_config(None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let tcp = bounded(tokio::net::TcpStream::connect(s.addr()))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = bounded(connector.connect(name, tcp)).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = bounded(sender.send_request(crate::support::request("GET", path, "", "")))
        .await
        .unwrap();
    let code = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test]
async fn tls_with_client_certificates_and_tokens() {
    let s = TestApiServer::builder()
        .tls()
        .require_auth()
        .token("alice-token", "alice", &["devs"])
        .start()
        .await
        .unwrap();
    assert!(s.url().starts_with("https://127.0.0.1:"));

    // The kubeconfig (CA + admin client certificate) works with kube-rs.
    let admin = client_from(&s.kubeconfig()).await;
    let (user, groups) = whoami(admin).await;
    assert_eq!(user, "admin");
    assert_eq!(groups, ["system:masters", "system:authenticated"]);
    let (user, _) = whoami(s.client()).await;
    assert_eq!(user, "admin");

    // A client certificate names the user (CN) and groups (O).
    let node = client_from(
        &s.kubeconfig_for("system:node:n1", &["system:nodes"])
            .unwrap(),
    )
    .await;
    assert_eq!(
        whoami(node).await,
        (
            "system:node:n1".to_owned(),
            vec!["system:nodes".to_owned(), "system:authenticated".to_owned()]
        )
    );

    // A static bearer token.
    let mut config = s.client_config().unwrap();
    config.auth_info.client_certificate_data = None;
    config.auth_info.client_key_data = None;
    config.auth_info.token = Some("alice-token".to_owned().into());
    let alice = kube::Client::try_from(config.clone()).unwrap();
    assert_eq!(whoami(alice).await.0, "alice");

    // Anonymous and unknown-token requests get 401, on every path.
    for path in ["/api/v1/namespaces", "/healthz", "/version"] {
        let (code, st) = anonymous_https(&s, path).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            (st["kind"].as_str(), st["reason"].as_str()),
            (Some("Status"), Some("Unauthorized"))
        );
    }
    config.auth_info.token = Some("wrong".to_owned().into());
    let wrong = kube::Client::try_from(config).unwrap();
    let err = bounded(Api::<ConfigMap>::namespaced(wrong, "default").list(&Default::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(st) if st.code == 401),
        "{err:?}"
    );
}

#[tokio::test]
async fn anonymous_requests_are_allowed_without_require_auth() {
    let s = TestApiServer::builder().tls().start().await.unwrap();
    let (code, _) = anonymous_https(&s, "/api/v1/namespaces").await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn service_account_tokens_authenticate() {
    let s = TestApiServer::builder()
        .require_auth()
        .start()
        .await
        .unwrap();
    let client = s.client();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("robot".into());
    bounded(sas.create(&PostParams::default(), &sa))
        .await
        .unwrap();
    let token_request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["api"], "expirationSeconds": 3600}});
    let req = http::Request::post("/api/v1/namespaces/default/serviceaccounts/robot/token")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&token_request).unwrap())
        .unwrap();
    let resp: serde_json::Value = bounded(client.request(req)).await.unwrap();
    let token = resp["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    let mut config = s.client_config().unwrap();
    config.auth_info.token = Some(token.into());
    let robot = kube::Client::try_from(config).unwrap();
    let (user, groups) = whoami(robot).await;
    assert_eq!(user, "system:serviceaccount:default:robot");
    assert!(
        groups.contains(&"system:serviceaccounts:default".to_owned()),
        "{groups:?}"
    );
}

#[tokio::test]
async fn approved_csrs_are_signed_by_the_test_ca() {
    let s = TestApiServer::builder()
        .tls()
        .require_auth()
        .start()
        .await
        .unwrap();
    // A kubelet's client certificate request, as TLS bootstrap makes it.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:edge-1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr_pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(s.client());
    let csr: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"name": "node-csr-edge-1"},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(&csr_pem),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"], "expirationSeconds": 3600}}))
    .unwrap();
    let created = bounded(csrs.create(&PostParams::default(), &csr))
        .await
        .unwrap();
    assert_eq!(
        created.spec.username.as_deref(),
        Some("admin"),
        "set from the requester"
    );
    assert!(
        created
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_none()
    );

    // Approve through the approval subresource, as `kubectl certificate approve` does.
    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True",
        "reason": "AutoApproved", "message": "test"}]}});
    bounded(csrs.patch_approval(
        "node-csr-edge-1",
        &PatchParams::default(),
        &Patch::Merge(approval),
    ))
    .await
    .unwrap();
    let signed = bounded(async {
        loop {
            let c = csrs.get("node-csr-edge-1").await.unwrap();
            if let Some(cert) = c.status.and_then(|s| s.certificate) {
                return cert;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let cert_pem = String::from_utf8(signed.0).unwrap();
    assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // The signed certificate authenticates as the node.
    let node = CertifiedKey {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let mut config = s.client_config().unwrap();
    config.auth_info.client_certificate_data =
        Some(base64::engine::general_purpose::STANDARD.encode(&node.cert_pem));
    config.auth_info.client_key_data = Some(
        base64::engine::general_purpose::STANDARD
            .encode(&node.key_pem)
            .into(),
    );
    let (user, groups) = whoami(kube::Client::try_from(config).unwrap()).await;
    assert_eq!(user, "system:node:edge-1");
    assert_eq!(groups[0], "system:nodes");
}
