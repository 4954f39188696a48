//! Request-info resolution cost: `yurt_core::request::RequestInfo::parse` over representative
//! request lines (kubelet, kube-proxy, kubectl, CRDs, exec), against a naive baseline measured
//! in the same run that only splits the path on `/` (no percent-decoding, no query parsing, no
//! Kubernetes rules), to show what the full resolver costs on top of the unavoidable split.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use yurt_core::request::RequestInfo;

/// (method, path, query) as the hub sees them.
const LINES: [(&str, &str, &str); 10] = [
    // kubelet: watch of its node's pods
    (
        "GET",
        "/api/v1/pods",
        "allowWatchBookmarks=true&fieldSelector=spec.nodeName%3Dnode1&resourceVersion=4711&timeoutSeconds=537&watch=true",
    ),
    // kubelet: node lease renewal
    (
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1",
        "timeout=10s",
    ),
    // kubelet: configmap watch by name
    (
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "allowWatchBookmarks=true&fieldSelector=metadata.name%3Dkube-root-ca.crt&resourceVersion=1000&timeout=7m45s&timeoutSeconds=465&watch=true",
    ),
    // kubelet: pod status patch
    (
        "PATCH",
        "/api/v1/namespaces/kube-system/pods/coredns-5d78c9869d-x7k2p/status",
        "",
    ),
    // kube-proxy: endpointslice list
    (
        "GET",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&limit=500&resourceVersion=0",
    ),
    // kubectl get
    (
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/web",
        "",
    ),
    // kubectl get pods (list)
    ("GET", "/api/v1/namespaces/default/pods", "limit=500"),
    // CRD list
    (
        "GET",
        "/apis/apps.openyurt.io/v1beta2/nodepools",
        "limit=500&resourceVersion=0",
    ),
    // kubectl exec
    (
        "POST",
        "/api/v1/namespaces/default/pods/web-0/exec",
        "command=sh&container=c&stdin=true&stdout=true&tty=true",
    ),
    // discovery
    ("GET", "/apis/apps/v1", "timeout=32s"),
];

/// The baseline: positional split of the path, nothing else.
#[derive(Default)]
struct Naive<'a> {
    group: &'a str,
    version: &'a str,
    namespace: &'a str,
    resource: &'a str,
    name: &'a str,
    subresource: &'a str,
}

fn naive(path: &str) -> Naive<'_> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", version, rest @ ..] => (("", *version), rest),
        ["apis", group, version, rest @ ..] => ((*group, *version), rest),
        _ => return Naive::default(),
    };
    let ((group, version), mut rest) = rest;
    let mut namespace = "";
    if let ["namespaces", ns, tail @ ..] = rest
        && !tail.is_empty()
    {
        namespace = ns;
        rest = tail;
    }
    Naive {
        group,
        version,
        namespace,
        resource: rest.first().copied().unwrap_or(""),
        name: rest.get(1).copied().unwrap_or(""),
        subresource: rest.get(2).copied().unwrap_or(""),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_info");
    group.throughput(Throughput::Elements(LINES.len() as u64));
    group.bench_function("yurt_core_parse", |b| {
        b.iter(|| {
            for (method, path, query) in LINES {
                let info = RequestInfo::parse(black_box(method), black_box(path), Some(query));
                black_box(info.expect("bench lines resolve"));
            }
        })
    });
    group.bench_function("naive_split_baseline", |b| {
        b.iter(|| {
            for (_, path, _) in LINES {
                let n = naive(black_box(path));
                black_box((
                    n.group,
                    n.version,
                    n.namespace,
                    n.resource,
                    n.name,
                    n.subresource,
                ));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
