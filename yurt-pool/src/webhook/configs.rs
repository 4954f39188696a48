//! Points the cluster at this webhook server: writes the CA into the `caBundle` of the manager's
//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration (upstream's
//! `yurt-manager-mutating-webhook-configuration` / `yurt-manager-validating-webhook-configuration`)
//! and of the conversion stanza of every OpenYurt CRD converted by webhook, as upstream's webhook
//! controller does.
//!
//! Each webhook's Service reference is set to the manager's Service and namespace; with a host
//! override (upstream's `WEBHOOK_HOST`, for a manager running outside the cluster) the Service
//! reference is replaced by the URL `https://<host>:<port><path>`. Objects that already say all
//! this are not written; writes are replaces carrying the resourceVersion just read, so a
//! concurrent writer makes this attempt fail with a conflict rather than be overwritten (the next
//! resync retries). Configurations that do not exist are skipped.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, WebhookClientConfig as CrdClientConfig,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// Name of the manager's MutatingWebhookConfiguration.
pub const MUTATING_CONFIGURATION: &str = "yurt-manager-mutating-webhook-configuration";
/// Name of the manager's ValidatingWebhookConfiguration.
pub const VALIDATING_CONFIGURATION: &str = "yurt-manager-validating-webhook-configuration";

/// Where kube-apiserver should reach the webhook server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The manager's webhook Service namespace.
    pub namespace: String,
    /// The manager's webhook Service name.
    pub service: String,
    /// Host override: when set, webhooks are called at `https://<host>:<port><path>`.
    pub host: Option<String>,
    /// The webhook server's port (used with `host`).
    pub port: u16,
    /// The CA certificate, PEM.
    pub ca_bundle: Vec<u8>,
}

/// What [`ensure`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Names of the objects written (`MutatingWebhookConfiguration/x`, `CustomResourceDefinition/y`).
    pub objects: Vec<String>,
}

fn url(host: &str, port: u16, path: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("https://{host}:{port}{path}")
}

/// The URL a client config should call when `target` names a host: the webhook's path (its
/// service's, else the one in its current URL) on that host; `None` to keep a service reference.
fn target_url(
    target: &Target,
    service_path: Option<String>,
    url_now: Option<&str>,
) -> Option<String> {
    let host = target.host.as_deref()?;
    let path = service_path.or_else(|| {
        let rest = url_now?.split_once("://")?.1;
        rest.find('/').map(|i| rest[i..].to_owned())
    })?;
    Some(url(host, target.port, &path))
}

/// Rewrites an admission webhook's client config for `target`; true when it changed.
fn fix_admission(cfg: &mut WebhookClientConfig, target: &Target) -> bool {
    let before = cfg.clone();
    cfg.ca_bundle = Some(ByteString(target.ca_bundle.clone()));
    let path = cfg.service.as_ref().and_then(|s| s.path.clone());
    if let Some(url) = target_url(target, path, cfg.url.as_deref()) {
        cfg.url = Some(url);
        cfg.service = None;
    } else if let Some(svc) = cfg.service.as_mut() {
        svc.namespace = target.namespace.clone();
        svc.name = target.service.clone();
    }
    *cfg != before
}

/// The same for a CRD conversion webhook's client config.
fn fix_conversion(cfg: &mut CrdClientConfig, target: &Target) -> bool {
    let before = cfg.clone();
    cfg.ca_bundle = Some(ByteString(target.ca_bundle.clone()));
    let path = cfg.service.as_ref().and_then(|s| s.path.clone());
    if let Some(url) = target_url(target, path, cfg.url.as_deref()) {
        cfg.url = Some(url);
        cfg.service = None;
    } else if let Some(svc) = cfg.service.as_mut() {
        svc.namespace = target.namespace.clone();
        svc.name = target.service.clone();
    }
    *cfg != before
}

fn conflict_or_missing(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

/// Writes `target` into the webhook configurations and the OpenYurt CRDs converted by webhook.
/// A conflict (someone else wrote in between) is left for the next call.
pub async fn ensure(client: &Client, target: &Target) -> Result<Written, kube::Error> {
    let mut written = Written::default();
    let pp = PostParams::default();

    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(mut cfg) = mutating.get_opt(MUTATING_CONFIGURATION).await? {
        let mut changed = false;
        for wh in cfg.webhooks.iter_mut().flatten() {
            changed |= fix_admission(&mut wh.client_config, target);
        }
        if changed {
            match mutating.replace(MUTATING_CONFIGURATION, &pp, &cfg).await {
                Ok(_) => written.objects.push(format!(
                    "MutatingWebhookConfiguration/{MUTATING_CONFIGURATION}"
                )),
                Err(e) if conflict_or_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    if let Some(mut cfg) = validating.get_opt(VALIDATING_CONFIGURATION).await? {
        let mut changed = false;
        for wh in cfg.webhooks.iter_mut().flatten() {
            changed |= fix_admission(&mut wh.client_config, target);
        }
        if changed {
            match validating
                .replace(VALIDATING_CONFIGURATION, &pp, &cfg)
                .await
            {
                Ok(_) => written.objects.push(format!(
                    "ValidatingWebhookConfiguration/{VALIDATING_CONFIGURATION}"
                )),
                Err(e) if conflict_or_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for mut crd in crds.list(&Default::default()).await?.items {
        if !crd.spec.group.ends_with("openyurt.io") {
            continue;
        }
        let Some(conversion) = crd.spec.conversion.as_mut() else {
            continue;
        };
        if conversion.strategy != "Webhook" {
            continue;
        }
        let Some(cfg) = conversion
            .webhook
            .as_mut()
            .and_then(|w| w.client_config.as_mut())
        else {
            continue;
        };
        if fix_conversion(cfg, target) {
            let name = crd.metadata.name.clone().unwrap_or_default();
            match crds.replace(&name, &pp, &crd).await {
                Ok(_) => written
                    .objects
                    .push(format!("CustomResourceDefinition/{name}")),
                Err(e) if conflict_or_missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::ServiceReference;

    fn target(host: Option<&str>) -> Target {
        Target {
            namespace: "yurt".into(),
            service: "svc".into(),
            host: host.map(str::to_owned),
            port: 10273,
            ca_bundle: b"CA".to_vec(),
        }
    }

    fn service_config() -> WebhookClientConfig {
        WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: "kube-system".into(),
                name: "yurt-manager-webhook-service".into(),
                path: Some("/validate-core-openyurt-io-v1-node".into()),
                port: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_reference_gets_bundle_and_names() {
        let mut cfg = service_config();
        assert!(fix_admission(&mut cfg, &target(None)));
        assert_eq!(cfg.ca_bundle, Some(ByteString(b"CA".to_vec())));
        let svc = cfg.service.as_ref().unwrap();
        assert_eq!((svc.namespace.as_str(), svc.name.as_str()), ("yurt", "svc"));
        // Already right: nothing to write.
        assert!(!fix_admission(&mut cfg, &target(None)));
    }

    #[test]
    fn host_override_becomes_a_url() {
        let mut cfg = service_config();
        assert!(fix_admission(&mut cfg, &target(Some("127.0.0.1"))));
        assert_eq!(cfg.service, None);
        assert_eq!(
            cfg.url.as_deref(),
            Some("https://127.0.0.1:10273/validate-core-openyurt-io-v1-node")
        );
        // A new port rewrites the URL, keeping the path.
        let mut t = target(Some("::1"));
        t.port = 1;
        assert!(fix_admission(&mut cfg, &t));
        assert_eq!(
            cfg.url.as_deref(),
            Some("https://[::1]:1/validate-core-openyurt-io-v1-node")
        );
    }
}
