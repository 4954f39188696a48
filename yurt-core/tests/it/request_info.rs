//! Request-info resolution against real request lines from kubelet, kube-proxy, coredns,
//! flannel and kubectl, plus discovery/non-resource paths, invalid input, and the `ListOptions`
//! query round trip.

use pretty_assertions::assert_eq;
use yurt_core::request::{ListOptions, RequestError, RequestInfo, Verb};

/// One expected resolution.
struct Case {
    method: &'static str,
    target: &'static str,
    verb: Verb,
    prefix: &'static str,
    group: &'static str,
    version: &'static str,
    namespace: &'static str,
    resource: &'static str,
    subresource: &'static str,
    name: &'static str,
    opts: &'static [(&'static str, &'static str)],
    parts: Option<&'static [&'static str]>,
}

/// A case; `gv` is `v1` for the core group, `group/version` otherwise, `""` for non-resource.
#[allow(clippy::too_many_arguments)]
fn c(
    method: &'static str,
    target: &'static str,
    verb: Verb,
    gv: &'static str,
    namespace: &'static str,
    resource: &'static str,
    subresource: &'static str,
    name: &'static str,
) -> Case {
    let (prefix, group, version) = match gv.split_once('/') {
        Some((group, version)) => ("apis", group, version),
        None if gv.is_empty() => ("", "", ""),
        None => ("api", "", gv),
    };
    Case {
        method,
        target,
        verb,
        prefix,
        group,
        version,
        namespace,
        resource,
        subresource,
        name,
        opts: &[],
        parts: None,
    }
}

/// A non-resource case.
fn nr(method: &'static str, target: &'static str, verb: Verb) -> Case {
    c(method, target, verb, "", "", "", "", "")
}

impl Case {
    /// Expected options, by query parameter name (see [`opt`]).
    fn opts(mut self, opts: &'static [(&'static str, &'static str)]) -> Case {
        self.opts = opts;
        self
    }

    fn parts(mut self, parts: &'static [&'static str]) -> Case {
        self.parts = Some(parts);
        self
    }

    fn prefix(mut self, prefix: &'static str) -> Case {
        self.prefix = prefix;
        self
    }
}

/// An option by its query parameter name, as a string (`None` when unset/false).
fn opt(o: &ListOptions, key: &str) -> Option<String> {
    let flag = |b: bool| b.then(|| "true".to_owned());
    match key {
        "watch" => flag(o.watch),
        "labelSelector" => o.label_selector.clone(),
        "fieldSelector" => o.field_selector.clone(),
        "resourceVersion" => o.resource_version.clone(),
        "resourceVersionMatch" => o.resource_version_match.clone(),
        "timeoutSeconds" => o.timeout_seconds.map(|v| v.to_string()),
        "limit" => o.limit.map(|v| v.to_string()),
        "continue" => o.continue_token.clone(),
        "allowWatchBookmarks" => flag(o.allow_watch_bookmarks),
        "sendInitialEvents" => o.send_initial_events.map(|v| v.to_string()),
        other => panic!("unknown option {other}"),
    }
}

const HEADLESS: &str = "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name";
const HEADLESS_DECODED: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

fn cases() -> Vec<Case> {
    use Verb::*;
    let other = |m: &str| Other(m.to_owned());
    vec![
        // ---- kubelet ----
        c("GET", "/api/v1/nodes/node1?resourceVersion=0&timeout=10s", Get, "v1", "", "nodes", "", "node1")
            .opts(&[("resourceVersion", "0")]),
        c("GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dnode1&limit=500&resourceVersion=0", List, "v1", "", "nodes", "", "node1")
            .opts(&[("fieldSelector", "metadata.name=node1"), ("limit", "500"), ("resourceVersion", "0")])
            .parts(&["nodes"]),
        c("GET", "/api/v1/nodes?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dnode1&resourceVersion=12345&timeoutSeconds=423&watch=true", Watch, "v1", "", "nodes", "", "node1")
            .opts(&[("allowWatchBookmarks", "true"), ("resourceVersion", "12345"), ("timeoutSeconds", "423"), ("watch", "true")]),
        c("PATCH", "/api/v1/nodes/node1/status?timeout=10s", Patch, "v1", "", "nodes", "status", "node1")
            .parts(&["nodes", "node1", "status"]),
        c("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1?timeout=10s", Get, "coordination.k8s.io/v1", "kube-node-lease", "leases", "", "node1")
            .parts(&["leases", "node1"]),
        c("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1?timeout=10s", Update, "coordination.k8s.io/v1", "kube-node-lease", "leases", "", "node1"),
        c("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?timeout=10s", Create, "coordination.k8s.io/v1", "kube-node-lease", "leases", "", ""),
        c("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode1&limit=500&resourceVersion=0", List, "v1", "", "pods", "", "")
            .opts(&[("fieldSelector", "spec.nodeName=node1"), ("limit", "500"), ("resourceVersion", "0")]),
        c("GET", "/api/v1/pods?allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dnode1&resourceVersion=4711&timeoutSeconds=537&watch=true", Watch, "v1", "", "pods", "", "")
            .opts(&[("fieldSelector", "spec.nodeName=node1"), ("resourceVersion", "4711"), ("timeoutSeconds", "537"), ("allowWatchBookmarks", "true")]),
        c("PATCH", "/api/v1/namespaces/kube-system/pods/coredns-5d78c9869d-x7k2p/status", Patch, "v1", "kube-system", "pods", "status", "coredns-5d78c9869d-x7k2p"),
        c("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt&limit=500&resourceVersion=0", List, "v1", "default", "configmaps", "", "kube-root-ca.crt")
            .opts(&[("fieldSelector", "metadata.name=kube-root-ca.crt"), ("limit", "500")]),
        c("GET", "/api/v1/namespaces/default/configmaps?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dkube-root-ca.crt&resourceVersion=1000&timeout=7m45s&timeoutSeconds=465&watch=true", Watch, "v1", "default", "configmaps", "", "kube-root-ca.crt")
            .opts(&[("allowWatchBookmarks", "true"), ("resourceVersion", "1000"), ("timeoutSeconds", "465"), ("watch", "true")])
            .parts(&["configmaps"]),
        c("GET", "/api/v1/namespaces/kube-system/secrets?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dcoredns-token-abcde&resourceVersion=2000&timeoutSeconds=300&watch=true", Watch, "v1", "kube-system", "secrets", "", "coredns-token-abcde")
            .opts(&[("fieldSelector", "metadata.name=coredns-token-abcde"), ("timeoutSeconds", "300")]),
        c("GET", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", Get, "v1", "kube-system", "secrets", "", "bootstrap-token-abcdef"),
        c("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", Create, "certificates.k8s.io/v1", "", "certificatesigningrequests", "", ""),
        c("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=metadata.name%3Dcsr-8vx2k&limit=500&resourceVersion=0", List, "certificates.k8s.io/v1", "", "certificatesigningrequests", "", "csr-8vx2k"),
        c("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests?allowWatchBookmarks=true&fieldSelector=metadata.name%3Dcsr-8vx2k&resourceVersion=9&timeoutSeconds=3600&watch=true", Watch, "certificates.k8s.io/v1", "", "certificatesigningrequests", "", "csr-8vx2k"),
        c("POST", "/api/v1/namespaces/kube-system/serviceaccounts/coredns/token", Create, "v1", "kube-system", "serviceaccounts", "token", "coredns"),
        c("POST", "/api/v1/namespaces/default/events", Create, "v1", "default", "events", "", ""),
        c("PATCH", "/api/v1/namespaces/default/events/node1.17a3b5c2d1e0f", Patch, "v1", "default", "events", "", "node1.17a3b5c2d1e0f"),
        c("POST", "/apis/events.k8s.io/v1/namespaces/default/events", Create, "events.k8s.io/v1", "default", "events", "", ""),
        c("POST", "/api/v1/namespaces/default/pods/web-0/eviction", Create, "v1", "default", "pods", "eviction", "web-0"),
        c("GET", "/api/v1/services?limit=500&resourceVersion=0", List, "v1", "", "services", "", "")
            .opts(&[("limit", "500"), ("resourceVersion", "0")]),
        c("GET", "/apis/node.k8s.io/v1/runtimeclasses?limit=500&resourceVersion=0", List, "node.k8s.io/v1", "", "runtimeclasses", "", ""),
        c("GET", "/apis/storage.k8s.io/v1/csidrivers?allowWatchBookmarks=true&resourceVersion=1&timeoutSeconds=571&watch=true", Watch, "storage.k8s.io/v1", "", "csidrivers", "", ""),
        c("POST", "/api/v1/namespaces/kube-system/pods", Create, "v1", "kube-system", "pods", "", ""),
        c("DELETE", "/api/v1/namespaces/kube-system/pods/kube-apiserver-node1", Delete, "v1", "kube-system", "pods", "", "kube-apiserver-node1"),
        c("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Create, "authentication.k8s.io/v1", "", "tokenreviews", "", ""),
        c("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Create, "authorization.k8s.io/v1", "", "subjectaccessreviews", "", ""),
        // ---- kube-proxy ----
        c("GET", "/api/v1/services?labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&limit=500&resourceVersion=0", List, "v1", "", "services", "", "")
            .opts(&[("labelSelector", HEADLESS_DECODED), ("limit", "500")]),
        c("GET", "/api/v1/services?allowWatchBookmarks=true&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&resourceVersion=811&timeout=8m3s&timeoutSeconds=483&watch=true", Watch, "v1", "", "services", "", "")
            .opts(&[("labelSelector", HEADLESS_DECODED), ("timeoutSeconds", "483")]),
        c("GET", "/apis/discovery.k8s.io/v1/endpointslices?labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&limit=500&resourceVersion=0", List, "discovery.k8s.io/v1", "", "endpointslices", "", "")
            .opts(&[("labelSelector", HEADLESS_DECODED)]),
        c("GET", "/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&resourceVersion=900&timeoutSeconds=356&watch=true", Watch, "discovery.k8s.io/v1", "", "endpointslices", "", "")
            .opts(&[("labelSelector", HEADLESS_DECODED), ("resourceVersion", "900")]),
        // ---- coredns ----
        c("GET", "/api/v1/services?allowWatchBookmarks=true&resourceVersion=555&timeout=6m&timeoutSeconds=360&watch=true", Watch, "v1", "", "services", "", ""),
        c("GET", "/apis/discovery.k8s.io/v1/endpointslices?limit=500&resourceVersion=0", List, "discovery.k8s.io/v1", "", "endpointslices", "", ""),
        c("GET", "/api/v1/namespaces?limit=500&resourceVersion=0", List, "v1", "", "namespaces", "", "")
            .parts(&["namespaces"]),
        c("GET", "/api/v1/namespaces?allowWatchBookmarks=true&resourceVersion=10&timeoutSeconds=400&watch=true", Watch, "v1", "", "namespaces", "", ""),
        // ---- flannel ----
        c("GET", "/api/v1/nodes?allowWatchBookmarks=true&resourceVersion=77&timeoutSeconds=310&watch=true", Watch, "v1", "", "nodes", "", ""),
        c("GET", "/api/v1/nodes?limit=500&resourceVersion=0", List, "v1", "", "nodes", "", ""),
        c("PATCH", "/api/v1/nodes/node1", Patch, "v1", "", "nodes", "", "node1"),
        // ---- kubectl ----
        c("GET", "/api/v1/namespaces/default/pods?limit=500", List, "v1", "default", "pods", "", "")
            .opts(&[("limit", "500")]),
        c("GET", "/api/v1/namespaces/default/pods/web-0", Get, "v1", "default", "pods", "", "web-0"),
        c("HEAD", "/api/v1/namespaces/default/pods/web-0", Get, "v1", "default", "pods", "", "web-0"),
        c("GET", "/api/v1/pods?limit=500", List, "v1", "", "pods", "", ""),
        c("GET", "/apis/apps/v1/namespaces/default/deployments/web", Get, "apps/v1", "default", "deployments", "", "web"),
        c("PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-client-side-apply&fieldValidation=Strict", Patch, "apps/v1", "default", "deployments", "", "web"),
        c("PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl&fieldValidation=Strict&force=true", Patch, "apps/v1", "default", "deployments", "", "web"),
        c("POST", "/apis/apps/v1/namespaces/default/deployments?fieldManager=kubectl-create&fieldValidation=Strict", Create, "apps/v1", "default", "deployments", "", ""),
        c("DELETE", "/apis/apps/v1/namespaces/default/deployments/web", Delete, "apps/v1", "default", "deployments", "", "web"),
        c("DELETE", "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb", DeleteCollection, "v1", "default", "pods", "", "")
            .opts(&[("labelSelector", "app=web")]),
        c("DELETE", "/api/v1/namespaces/default/configmaps", DeleteCollection, "v1", "default", "configmaps", "", ""),
        c("PUT", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", Update, "v1", "default", "configmaps", "", "kube-root-ca.crt"),
        c("GET", "/api/v1/namespaces/default/pods/web-0/log?container=c&follow=true", Get, "v1", "default", "pods", "log", "web-0"),
        c("POST", "/api/v1/namespaces/default/pods/web-0/exec?command=sh&container=c&stdin=true&stdout=true&tty=true", Connect, "v1", "default", "pods", "exec", "web-0"),
        c("GET", "/api/v1/namespaces/default/pods/web-0/exec?command=ls&command=-l&stderr=true&stdout=true", Connect, "v1", "default", "pods", "exec", "web-0"),
        c("POST", "/api/v1/namespaces/default/pods/web-0/attach?container=c&stdin=true&stdout=true&tty=true", Connect, "v1", "default", "pods", "attach", "web-0"),
        c("POST", "/api/v1/namespaces/default/pods/web-0/portforward", Connect, "v1", "default", "pods", "portforward", "web-0"),
        c("GET", "/api/v1/namespaces/default/pods/web-0/portforward?ports=8080", Connect, "v1", "default", "pods", "portforward", "web-0"),
        c("GET", "/api/v1/namespaces/default/services/http:web:80/proxy/healthz?x=1", Proxy, "v1", "default", "services", "proxy", "http:web:80")
            .parts(&["services", "http:web:80", "proxy", "healthz"]),
        c("GET", "/api/v1/nodes/node1/proxy/metrics/cadvisor", Proxy, "v1", "", "nodes", "proxy", "node1")
            .parts(&["nodes", "node1", "proxy", "metrics", "cadvisor"]),
        c("POST", "/api/v1/namespaces/default/pods/web-0:8080/proxy/api/v1/items", Proxy, "v1", "default", "pods", "proxy", "web-0:8080"),
        c("GET", "/api/v1/namespaces/default/pods/web-0/proxy/", Proxy, "v1", "default", "pods", "proxy", "web-0")
            .parts(&["pods", "web-0", "proxy"]),
        c("GET", "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb-0&resourceVersion=123&watch=true", Watch, "v1", "default", "pods", "", "web-0"),
        c("GET", "/api/v1/namespaces/default/pods?resourceVersion=123&watch=true", Watch, "v1", "default", "pods", "", ""),
        c("GET", "/apis/apps/v1/namespaces/default/deployments/web/scale", Get, "apps/v1", "default", "deployments", "scale", "web"),
        c("PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", Update, "apps/v1", "default", "deployments", "scale", "web"),
        c("GET", "/apis/apps/v1/namespaces/default/deployments/web/status", Get, "apps/v1", "default", "deployments", "status", "web"),
        c("GET", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers?limit=500", List, "autoscaling/v2", "default", "horizontalpodautoscalers", "", ""),
        c("GET", "/api/v1/namespaces/default/pods?limit=500&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzfQ%3D%3D", List, "v1", "default", "pods", "", "")
            .opts(&[("limit", "500"), ("continue", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzfQ==")]),
        c("GET", "/api/v1/namespaces/default/pods?watch=1", Watch, "v1", "default", "pods", "", ""),
        c("GET", "/api/v1/namespaces/default/pods?watch=false", List, "v1", "default", "pods", "", ""),
        c("GET", "/api/v1/namespaces/default/pods?watch=0&watch=1", List, "v1", "default", "pods", "", ""),
        c("OPTIONS", "/api/v1/pods", other("options"), "v1", "", "pods", "", ""),
        // ---- legacy /watch/ and /proxy/ prefixes ----
        c("GET", "/api/v1/watch/namespaces/default/pods", Watch, "v1", "default", "pods", "", "")
            .parts(&["pods"]),
        c("GET", "/api/v1/watch/namespaces/default/pods/web-0", Watch, "v1", "default", "pods", "", "web-0"),
        c("GET", "/api/v1/watch/pods?watch=false", Watch, "v1", "", "pods", "", ""),
        c("GET", "/apis/apps/v1/watch/namespaces/default/deployments", Watch, "apps/v1", "default", "deployments", "", ""),
        c("GET", "/api/v1/watch/namespaces", Watch, "v1", "", "namespaces", "", ""),
        c("GET", "/api/v1/watch/namespaces/kube-system", Watch, "v1", "kube-system", "namespaces", "", "kube-system"),
        c("GET", "/api/v1/proxy/namespaces/default/pods/web-0/some/path", Proxy, "v1", "default", "pods", "", "web-0")
            .parts(&["pods", "web-0", "some", "path"]),
        c("GET", "/api/v1/proxy/nodes/node1:10250/metrics", Proxy, "v1", "", "nodes", "", "node1:10250"),
        // ---- watch-list, resourceVersionMatch, pagination ----
        c("GET", "/api/v1/namespaces/default/configmaps?allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&watch=true", Watch, "v1", "default", "configmaps", "", "")
            .opts(&[("resourceVersionMatch", "NotOlderThan"), ("sendInitialEvents", "true"), ("allowWatchBookmarks", "true")]),
        c("GET", "/api/v1/pods?resourceVersion=100&resourceVersionMatch=Exact&limit=10", List, "v1", "", "pods", "", "")
            .opts(&[("resourceVersion", "100"), ("resourceVersionMatch", "Exact"), ("limit", "10")]),
        c("GET", "/api/v1/secrets?limit=100&continue=abc", List, "v1", "", "secrets", "", "")
            .opts(&[("limit", "100"), ("continue", "abc")]),
        // ---- OpenYurt CRDs ----
        c("GET", "/apis/apps.openyurt.io/v1beta2/nodepools", List, "apps.openyurt.io/v1beta2", "", "nodepools", "", ""),
        c("GET", "/apis/apps.openyurt.io/v1beta2/nodepools/hangzhou", Get, "apps.openyurt.io/v1beta2", "", "nodepools", "", "hangzhou"),
        c("PUT", "/apis/apps.openyurt.io/v1beta2/nodepools/hangzhou/status", Update, "apps.openyurt.io/v1beta2", "", "nodepools", "status", "hangzhou"),
        c("GET", "/apis/apps.openyurt.io/v1beta1/namespaces/default/yurtappsets?watch=1", Watch, "apps.openyurt.io/v1beta1", "default", "yurtappsets", "", ""),
        c("PATCH", "/apis/apps.openyurt.io/v1beta1/namespaces/default/yurtappsets/demo", Patch, "apps.openyurt.io/v1beta1", "default", "yurtappsets", "", "demo"),
        c("GET", "/apis/raven.openyurt.io/v1beta1/gateways?labelSelector=raven.openyurt.io%2Fgateway-name", List, "raven.openyurt.io/v1beta1", "", "gateways", "", "")
            .opts(&[("labelSelector", "raven.openyurt.io/gateway-name")]),
        c("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nodepools.apps.openyurt.io", Get, "apiextensions.k8s.io/v1", "", "customresourcedefinitions", "", "nodepools.apps.openyurt.io"),
        c("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?limit=500", List, "apiextensions.k8s.io/v1", "", "customresourcedefinitions", "", ""),
        // ---- namespaces and cluster-scoped status ----
        c("PUT", "/api/v1/namespaces/demo/finalize", Update, "v1", "demo", "namespaces", "finalize", "demo")
            .parts(&["namespaces", "demo", "finalize"]),
        c("GET", "/api/v1/namespaces/demo/status", Get, "v1", "demo", "namespaces", "status", "demo"),
        c("GET", "/api/v1/namespaces/kube-system", Get, "v1", "kube-system", "namespaces", "", "kube-system")
            .parts(&["namespaces", "kube-system"]),
        c("DELETE", "/api/v1/namespaces/demo", Delete, "v1", "demo", "namespaces", "", "demo"),
        c("PUT", "/api/v1/persistentvolumes/pv-1/status", Update, "v1", "", "persistentvolumes", "status", "pv-1"),
        c("GET", "/apis/storage.k8s.io/v1/volumeattachments/csi-0123abcd", Get, "storage.k8s.io/v1", "", "volumeattachments", "", "csi-0123abcd"),
        // ---- names with dots, colons, percent-encoding ----
        c("GET", "/api/v1/nodes/ip-10-0-1-5.ec2.internal", Get, "v1", "", "nodes", "", "ip-10-0-1-5.ec2.internal"),
        c("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system%3Anode-proxier", Get, "rbac.authorization.k8s.io/v1", "", "clusterrolebindings", "", "system:node-proxier"),
        c("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:controller:node-controller", Get, "rbac.authorization.k8s.io/v1", "", "clusterroles", "", "system:controller:node-controller"),
        c("GET", "/api/v1/namespaces/default/services/https%3Aweb%3A443/proxy/", Proxy, "v1", "default", "services", "proxy", "https:web:443"),
        c("GET", "/api/v1/namespaces/kube%2Dsystem/configmaps/kube-proxy", Get, "v1", "kube-system", "configmaps", "", "kube-proxy"),
        c("GET", "/api/v1/namespaces/default/pods/a%2Fb", Get, "v1", "default", "pods", "b", "a")
            .parts(&["pods", "a", "b"]),
        // ---- discovery and non-resource paths ----
        nr("GET", "/version?timeout=32s", Get),
        nr("GET", "/healthz", Get),
        nr("GET", "/readyz?verbose", Get),
        nr("GET", "/livez", Get),
        nr("GET", "/metrics", Get),
        nr("GET", "/", Get),
        nr("GET", "/.well-known/openid-configuration", Get),
        nr("GET", "/api?timeout=32s", Get),
        nr("GET", "/apis", Get),
        nr("GET", "/api/v1", Get),
        nr("GET", "/apis/apps", Get),
        nr("GET", "/apis/apps/v1?timeout=32s", Get).prefix("apis"),
        nr("GET", "/apis/apps.openyurt.io/v1beta2", Get).prefix("apis"),
        nr("GET", "/openapi/v2", Get),
        nr("GET", "/openapi/v3", Get),
        nr("GET", "/openapi/v3/apis/apps/v1?hash=0123ABCD", Get),
        nr("HEAD", "/healthz", other("head")),
        nr("POST", "/logs/x", other("post")),
        nr("PUT", "/debug/flags/v", other("put")),
        nr("DELETE", "/debug/x", Delete),
    ]
}

#[test]
fn resolves_real_request_lines() {
    let cases = cases();
    assert!(cases.len() >= 70, "only {} cases", cases.len());
    for case in &cases {
        let (path, query) = case.target.split_once('?').unwrap_or((case.target, ""));
        let info = RequestInfo::parse(case.method, path, Some(query))
            .unwrap_or_else(|e| panic!("{} {}: {e}", case.method, case.target));
        let line = format!("{} {}", case.method, case.target);
        let got = (
            info.verb.clone(),
            info.is_resource_request,
            info.api_prefix.as_str(),
            info.api_group.as_str(),
            info.api_version.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
        );
        let want = (
            case.verb.clone(),
            !case.version.is_empty(),
            case.prefix,
            case.group,
            case.version,
            case.namespace,
            case.resource,
            case.subresource,
            case.name,
        );
        assert_eq!(got, want, "{line}");
        assert_eq!(info.path, path, "{line}");
        for (key, value) in case.opts {
            assert_eq!(
                opt(&info.options, key).as_deref(),
                Some(*value),
                "{line}: {key}"
            );
        }
        if let Some(parts) = case.parts {
            assert_eq!(info.parts, parts, "{line}");
        }
        if !info.is_resource_request {
            assert!(info.parts.is_empty(), "{line}");
        }
        // The inline `?query` form and from_request agree with the split form.
        assert_eq!(
            RequestInfo::parse(case.method, case.target, None).unwrap(),
            info,
            "{line}"
        );
        let req = http::Request::builder()
            .method(case.method)
            .uri(case.target)
            .body(())
            .unwrap();
        assert_eq!(RequestInfo::from_request(&req).unwrap(), info, "{line}");
    }
}

#[test]
fn gvr_string_and_collection() {
    let info = |m, p| RequestInfo::parse(m, p, None).unwrap();
    let pods = info("GET", "/api/v1/namespaces/default/pods?watch=true");
    assert_eq!(pods.gvr_string(), "pods.v1.core");
    assert!(pods.is_collection());
    let pools = info("GET", "/apis/apps.openyurt.io/v1beta2/nodepools/hangzhou");
    assert_eq!(pools.gvr_string(), "nodepools.v1beta2.apps.openyurt.io");
    assert!(!pools.is_collection());
    let leases = info(
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
    );
    assert_eq!(leases.gvr_string(), "leases.v1.coordination.k8s.io");
    // A metadata.name field selector fills `name`, but the request is still a collection read.
    let cm = info(
        "GET",
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt&watch=true",
    );
    assert_eq!(
        (cm.name.as_str(), cm.is_collection()),
        ("kube-root-ca.crt", true)
    );
    assert!(info("POST", "/api/v1/namespaces/default/events").is_collection());
    assert!(!info("GET", "/api/v1/namespaces/default").is_collection());
    let version = info("GET", "/version");
    assert_eq!(
        (version.gvr_string(), version.is_collection()),
        (String::new(), false)
    );
}

#[test]
fn field_selector_name_rules() {
    let name = |q: &str| {
        RequestInfo::parse("GET", "/api/v1/pods", Some(q))
            .unwrap()
            .name
    };
    assert_eq!(name("fieldSelector=metadata.name%3D%3Dweb-0"), "web-0");
    assert_eq!(
        name("fieldSelector=spec.nodeName%3Dn1%2Cmetadata.name%3Dweb-0"),
        "web-0"
    );
    assert_eq!(name("fieldSelector=metadata.name%21%3Dweb-0"), "");
    assert_eq!(name("fieldSelector=metadata.name%3Da%2Fb"), "");
    assert_eq!(name("fieldSelector=metadata.name%3D.."), "");
    assert_eq!(name("fieldSelector=metadata.name%3Dweb-0%2Cbogus"), "");
    // Only list/watch take a name from the selector; deletecollection stays nameless.
    let del = RequestInfo::parse(
        "DELETE",
        "/api/v1/pods",
        Some("fieldSelector=metadata.name%3Dx"),
    )
    .unwrap();
    assert_eq!((del.verb, del.name.as_str()), (Verb::DeleteCollection, ""));
}

fn bad_query_param(method: &str, target: &str) -> (String, String, String) {
    match RequestInfo::parse(method, target, None) {
        Err(err @ RequestError::InvalidQueryParameter { .. }) => {
            let message = err.to_string();
            let RequestError::InvalidQueryParameter { name, value, .. } = err else {
                unreachable!()
            };
            (name, value, message)
        }
        other => panic!("{method} {target}: expected a query error, got {other:?}"),
    }
}

#[test]
fn invalid_list_options_are_errors() {
    for (method, target, param, value) in [
        (
            "GET",
            "/api/v1/pods?watch=true&timeoutSeconds=abc",
            "timeoutSeconds",
            "abc",
        ),
        ("GET", "/api/v1/pods?timeoutSeconds=", "timeoutSeconds", ""),
        (
            "GET",
            "/api/v1/pods?timeoutSeconds=1.5",
            "timeoutSeconds",
            "1.5",
        ),
        ("GET", "/api/v1/pods?limit=ten", "limit", "ten"),
        (
            "GET",
            "/api/v1/pods?limit=99999999999999999999",
            "limit",
            "99999999999999999999",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods?resourceVersion=1&resourceVersionMatch=Newest",
            "resourceVersionMatch",
            "Newest",
        ),
        (
            "GET",
            "/api/v1/watch/pods?timeoutSeconds=x",
            "timeoutSeconds",
            "x",
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/pods?limit=-",
            "limit",
            "-",
        ),
    ] {
        let (name, got_value, message) = bad_query_param(method, target);
        assert_eq!(
            (name.as_str(), got_value.as_str()),
            (param, value),
            "{target}"
        );
        assert!(
            message.contains(param) && message.contains(value),
            "{message}"
        );
    }
    // ListOptions::from_query itself names the parameter too.
    let err = ListOptions::from_query("limit=5x").unwrap_err();
    assert!(
        err.to_string().contains("\"limit\"") && err.to_string().contains("5x"),
        "{err}"
    );
}

#[test]
fn booleans_never_fail_like_kubernetes() {
    // kube-apiserver reads a query boolean as false only for absent, "0" or "false" (any case);
    // anything else is true, so there is no "bad bool" error.
    let verb = |q: &str| {
        RequestInfo::parse("GET", "/api/v1/pods", Some(q))
            .unwrap()
            .verb
    };
    for q in [
        "watch=true",
        "watch=1",
        "watch=t",
        "watch=TRUE",
        "watch=yes",
        "watch=",
        "watch",
    ] {
        assert_eq!(verb(q), Verb::Watch, "{q}");
    }
    for q in ["watch=false", "watch=FALSE", "watch=False", "watch=0", ""] {
        assert_eq!(verb(q), Verb::List, "{q}");
    }
    let opts =
        ListOptions::from_query("allowWatchBookmarks=maybe&sendInitialEvents=False").unwrap();
    assert!(opts.allow_watch_bookmarks);
    assert_eq!(opts.send_initial_events, Some(false));
}

#[test]
fn other_verbs_ignore_list_options() {
    // Handlers of get/patch/exec never decode list options, so kube-apiserver accepts these.
    for (method, target) in [
        (
            "GET",
            "/api/v1/namespaces/default/pods/web-0?timeoutSeconds=soon",
        ),
        ("PATCH", "/api/v1/namespaces/default/pods/web-0?limit=x"),
        (
            "POST",
            "/api/v1/namespaces/default/pods/web-0/exec?command=sh&limit=x",
        ),
        ("GET", "/healthz?limit=x"),
    ] {
        let info = RequestInfo::parse(method, target, None).unwrap();
        assert_eq!(info.options.limit, None, "{target}");
        assert_eq!(info.options.timeout_seconds, None, "{target}");
    }
    let info =
        RequestInfo::parse("GET", "/api/v1/nodes/n1?limit=x&resourceVersion=5", None).unwrap();
    assert_eq!(info.options.resource_version.as_deref(), Some("5"));
}

#[test]
fn invalid_paths_are_errors() {
    for target in [
        "/api/v1/watch",
        "/apis/apps/v1/proxy",
        "/api/v1/watch/",
        "/api/v1/namespaces/default/pods/a%zz",
        "/api/v1/namespaces/default/pods/a%2",
        "/api/v1/namespaces/default/pods/%ff",
    ] {
        match RequestInfo::parse("GET", target, None) {
            Err(err @ RequestError::InvalidPath { .. }) => {
                assert!(err.to_string().contains(target), "{err}");
            }
            other => panic!("{target}: expected a path error, got {other:?}"),
        }
    }
}

#[test]
fn list_options_round_trip() {
    let full = ListOptions {
        watch: true,
        label_selector: Some(HEADLESS_DECODED.to_owned()),
        field_selector: Some("spec.nodeName=node 1,metadata.name!=a\\,b".to_owned()),
        resource_version: Some("12345".to_owned()),
        resource_version_match: Some("NotOlderThan".to_owned()),
        timeout_seconds: Some(-1),
        limit: Some(500),
        continue_token: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ==+/".to_owned()),
        allow_watch_bookmarks: true,
        send_initial_events: Some(false),
    };
    for opts in [
        full.clone(),
        ListOptions::default(),
        ListOptions {
            label_selector: Some("app in (a,b),tier=ünïcode".into()),
            ..Default::default()
        },
        ListOptions {
            send_initial_events: Some(true),
            timeout_seconds: Some(0),
            ..Default::default()
        },
    ] {
        let query = opts.to_query();
        assert_eq!(ListOptions::from_query(&query).unwrap(), opts, "{query}");
    }
    assert_eq!(
        full.to_query(),
        "allowWatchBookmarks=true&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ%3D%3D%2B%2F\
         &fieldSelector=spec.nodeName%3Dnode+1%2Cmetadata.name%21%3Da%5C%2Cb\
         &labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name\
         &limit=500&resourceVersion=12345&resourceVersionMatch=NotOlderThan\
         &sendInitialEvents=false&timeoutSeconds=-1&watch=true"
    );
    // What client-go sends comes back byte for byte.
    for query in [
        "allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dnode1&resourceVersion=4711&timeoutSeconds=537&watch=true",
        "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&limit=500&resourceVersion=0",
        "allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&watch=true",
    ] {
        assert_eq!(ListOptions::from_query(query).unwrap().to_query(), query);
    }
    assert_eq!(
        ListOptions::from_query(HEADLESS)
            .unwrap()
            .label_selector
            .as_deref(),
        Some(HEADLESS_DECODED)
    );
    // Unknown parameters are dropped; empty strings mean absent.
    assert_eq!(
        ListOptions::from_query("timeout=10s&labelSelector=&pretty=true").unwrap(),
        ListOptions::default()
    );
}

#[test]
fn serializes_as_camel_case_json() {
    let info = RequestInfo::parse(
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        Some("limit=500&continue=tok&watch=false"),
    )
    .unwrap();
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["verb"], "list");
    assert_eq!(json["isResourceRequest"], true);
    assert_eq!(json["apiPrefix"], "apis");
    assert_eq!(json["apiGroup"], "discovery.k8s.io");
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["parts"], serde_json::json!(["endpointslices"]));
    assert_eq!(json["options"]["limit"], 500);
    assert_eq!(json["options"]["continue"], "tok");
    assert_eq!(json["options"]["allowWatchBookmarks"], false);
    let back: RequestInfo = serde_json::from_value(json).unwrap();
    assert_eq!(back, info);
}
