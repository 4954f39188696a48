//! Kubeconfig text pointing at a test apiserver.
//!
//! [`KubeconfigBuilder`] renders a self-contained kubeconfig (one cluster, one user, one context,
//! all named `yurt-testkit`, credentials inlined as `*-data` fields) that kube-rs's
//! `Kubeconfig::from_yaml` and `kubectl --kubeconfig` both accept. It is rendered with serde_yaml
//! from typed structs, so values are always quoted correctly.

use std::fmt;

use base64::Engine as _;
use serde::Serialize;

/// Name of the cluster, user and context in the generated kubeconfig.
const NAME: &str = "yurt-testkit";

/// Builds kubeconfig YAML for one server.
#[derive(Clone)]
pub struct KubeconfigBuilder {
    server: String,
    ca_pem: Option<String>,
    insecure: bool,
    client_cert: Option<(String, String)>,
    token: Option<String>,
    namespace: Option<String>,
}

impl fmt::Debug for KubeconfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeconfigBuilder")
            .field("server", &self.server)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("insecure", &self.insecure)
            .field("client_cert", &self.client_cert.is_some())
            .field("token", &self.token.is_some())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl KubeconfigBuilder {
    /// Starts a kubeconfig whose cluster, context and user are named `yurt-testkit`, for the
    /// apiserver at `server_url` (e.g. `https://127.0.0.1:6443`).
    pub fn new(server_url: &str) -> Self {
        KubeconfigBuilder {
            server: server_url.to_owned(),
            ca_pem: None,
            insecure: false,
            client_cert: None,
            token: None,
            namespace: None,
        }
    }

    /// Trusts this CA (PEM) for the server, as `certificate-authority-data`. Clears
    /// [`insecure_skip_tls_verify`](Self::insecure_skip_tls_verify): kubectl rejects both at once.
    pub fn ca_pem(mut self, pem: &str) -> Self {
        self.ca_pem = Some(pem.to_owned());
        self.insecure = false;
        self
    }

    /// Skips server certificate verification. Clears [`ca_pem`](Self::ca_pem).
    pub fn insecure_skip_tls_verify(mut self) -> Self {
        self.insecure = true;
        self.ca_pem = None;
        self
    }

    /// Authenticates with this client certificate and key (PEM), as `client-certificate-data`
    /// and `client-key-data`.
    pub fn client_cert(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.client_cert = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Authenticates with this bearer token.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Sets the context's default namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_owned());
        self
    }

    /// Renders the kubeconfig as YAML.
    pub fn build(&self) -> String {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let config = Config {
            api_version: "v1",
            kind: "Config",
            clusters: vec![Named {
                name: NAME,
                cluster: Some(Cluster {
                    server: &self.server,
                    certificate_authority_data: self.ca_pem.as_deref().map(b64),
                    insecure_skip_tls_verify: self.insecure.then_some(true),
                }),
                context: None,
                user: None,
            }],
            contexts: vec![Named {
                name: NAME,
                cluster: None,
                context: Some(Context {
                    cluster: NAME,
                    user: NAME,
                    namespace: self.namespace.as_deref(),
                }),
                user: None,
            }],
            users: vec![Named {
                name: NAME,
                cluster: None,
                context: None,
                user: Some(User {
                    client_certificate_data: self.client_cert.as_ref().map(|(c, _)| b64(c)),
                    client_key_data: self.client_cert.as_ref().map(|(_, k)| b64(k)),
                    token: self.token.as_deref(),
                }),
            }],
            current_context: NAME,
            preferences: Preferences {},
        };
        // Plain structs of strings and bools always serialize.
        serde_yaml::to_string(&config).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Config<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<'a>>,
    contexts: Vec<Named<'a>>,
    users: Vec<Named<'a>>,
    current_context: &'a str,
    preferences: Preferences,
}

#[derive(Serialize)]
struct Preferences {}

/// A named entry; exactly one of the payload fields is set.
#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cluster<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster<'a> {
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Serialize)]
struct Context<'a> {
    cluster: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}
