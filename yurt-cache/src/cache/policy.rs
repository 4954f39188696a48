//! What the cache layer caches (`CanCacheFor`) and how it negotiates the encoding upstream.

use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, HeaderValue, Method};
use yurt_core::{RequestInfo, Verb};

use crate::store::{Gvr, ListScope};

/// Resources never cached: access reviews and certificate requests (upstream's list, plus the
/// other review kinds and token requests, which are per-call answers, not state).
const NEVER_CACHED: [&str; 8] = [
    "certificatesigningrequests",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "localsubjectaccessreviews",
    "selfsubjectreviews",
    "tokenreviews",
    "tokenrequests",
];

/// What a cacheable request's response is teed into the store as.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// get/create/update/patch: one object.
    Object { component: String, gvr: Gvr },
    /// list: replaces this scope (or, when the answer is a first page, starts a chain of pages).
    List(ListScope),
    /// list as a server-side Table asked with `includeObject=Object`: the rows' objects
    /// replace this scope (a single page only).
    TableList(ListScope),
    /// list with `continue`: the next page of a chain of this scope, continuing the token.
    ListPage { scope: ListScope, token: String },
    /// watch: events of this resource.
    Watch { component: String, gvr: Gvr },
    /// A non-resource document stored under its [key](super::document::key) (path and
    /// form), with the content type it was answered with (set when the answer arrives).
    NonResource { key: String, content_type: String },
}

impl Plan {
    /// The verb label of the metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Plan::Object { .. } => "object",
            Plan::List(_) | Plan::ListPage { .. } | Plan::TableList(_) => "list",
            Plan::Watch { .. } => "watch",
            Plan::NonResource { .. } => "nonresource",
        }
    }
}

/// Decides whether the response to a request may be cached, and as what (`None`: pass it
/// through untouched). `cached` is whether the component is a cache agent.
pub(crate) fn plan(
    method: &Method,
    headers: &HeaderMap,
    info: &RequestInfo,
    component: &str,
    cached: bool,
) -> Option<Plan> {
    if !cached || component.is_empty() || headers.contains_key(UPGRADE) {
        return None;
    }
    if !info.is_resource_request {
        return (*method == Method::GET && is_cached_document(&info.path)).then(|| {
            Plan::NonResource {
                key: super::document::key(&info.path, super::document::form(headers).as_deref()),
                content_type: String::new(),
            }
        });
    }
    if !(info.subresource.is_empty() || info.subresource == "status")
        || NEVER_CACHED.contains(&info.resource.as_str())
    {
        return None;
    }
    let gvr = Gvr::new(&info.api_group, &info.api_version, &info.resource);
    let component = component.to_owned();
    match info.verb {
        Verb::Get | Verb::Create | Verb::Update | Verb::Patch => {
            // `HEAD` answers have no body to store.
            (*method != Method::HEAD).then_some(Plan::Object { component, gvr })
        }
        Verb::List => {
            let o = &info.options;
            let scope = ListScope::parse(
                &component,
                &gvr,
                &info.namespace,
                o.label_selector.as_deref().unwrap_or(""),
                o.field_selector.as_deref().unwrap_or(""),
            )
            .ok()?;
            // A later page of a paginated list is not the whole scope: the tee joins it to its
            // chain, and only a complete chain replaces the scope.
            Some(
                match o.continue_token.as_deref().filter(|c| !c.is_empty()) {
                    Some(token) => Plan::ListPage {
                        scope,
                        token: token.to_owned(),
                    },
                    None => Plan::List(scope),
                },
            )
        }
        Verb::Watch => Some(Plan::Watch { component, gvr }),
        _ => None,
    }
}

/// Whether the query asks for a dry run (`dryRun=All`): the answer is an object that was never
/// persisted, so it must not be cached.
pub(crate) fn is_dry_run(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.split('=').next() == Some("dryRun") && p != "dryRun=")
    })
}

/// The non-resource documents the hub keeps: `/version`, discovery and OpenAPI.
pub(crate) fn is_cached_document(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    let segs: Vec<&str> = p.split('/').skip(1).collect();
    matches!(
        segs.as_slice(),
        ["version"] | ["api"] | ["apis"] | ["api", _] | ["apis", _, _] | ["openapi", "v2"]
    ) || (segs.first() == Some(&"openapi") && segs.get(1) == Some(&"v3"))
}

/// What the client's `Accept` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// JSON is acceptable (absent header, `application/json`, `application/*`, `*/*`): ask
    /// upstream for JSON.
    Json,
    /// Anything else (protobuf or CBOR only, only a `Table` or other `as=` conversion): pass
    /// through.
    Other,
}

/// Reads the `Accept` header(s).
pub(crate) fn accept(headers: &HeaderMap) -> Accept {
    let mut any = false;
    let mut json = false;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else {
            return Accept::Other;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            any = true;
            // A conversion (`as=Table`, `as=PartialObjectMetadata`) is not an object; the
            // client may still offer plain JSON beside it (kubectl get does).
            if parts.any(|p| p.trim().to_ascii_lowercase().starts_with("as=")) {
                continue;
            }
            if matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
                json = true;
            }
        }
    }
    if json || !any {
        Accept::Json
    } else {
        Accept::Other
    }
}

/// Rewrites a document request's headers: no compression (its `Accept` stays the client's).
pub(crate) fn rewrite_document_request(headers: &mut HeaderMap) {
    headers.remove(ACCEPT_ENCODING);
}

/// Whether a Table answer may be teed: 2xx, a `meta.k8s.io` Table, not compressed.
pub(crate) fn table_is_cacheable(status: http::StatusCode, headers: &HeaderMap) -> bool {
    status.is_success()
        && !headers.contains_key(CONTENT_ENCODING)
        && headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(yurt_core::table::wants_table)
}

/// Whether a document answer may be stored: 2xx and not compressed, any content type.
pub(crate) fn document_is_cacheable(status: http::StatusCode, headers: &HeaderMap) -> bool {
    status.is_success() && !headers.contains_key(CONTENT_ENCODING)
}

/// Rewrites a cacheable request's headers: JSON only, no compression.
pub(crate) fn rewrite_request(headers: &mut HeaderMap) {
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.remove(ACCEPT_ENCODING);
}

/// Whether a response may be teed: 2xx, JSON (any parameters but `as=`), not compressed.
pub(crate) fn response_is_cacheable(status: http::StatusCode, headers: &HeaderMap) -> bool {
    if !status.is_success() || headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
        && !parts.any(|p| p.trim().to_ascii_lowercase().starts_with("as="))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(method: &str, path: &str, component: &str) -> Option<Plan> {
        let info = RequestInfo::parse(method, path, None).unwrap();
        plan(
            &method.parse().unwrap(),
            &HeaderMap::new(),
            &info,
            component,
            true,
        )
    }

    #[test]
    fn can_cache_for() {
        assert!(matches!(
            plan_of("GET", "/api/v1/namespaces/d/pods/x", "kubelet"),
            Some(Plan::Object { .. })
        ));
        assert!(matches!(
            plan_of("PATCH", "/api/v1/namespaces/d/pods/x/status", "kubelet"),
            Some(Plan::Object { .. })
        ));
        assert!(matches!(
            plan_of("GET", "/api/v1/pods?labelSelector=a%3D1", "kubelet"),
            Some(Plan::List(s)) if s.label_selector.to_string() == "a=1"
        ));
        assert!(matches!(
            plan_of("GET", "/api/v1/pods?limit=1&continue=abc", "kubelet"),
            Some(Plan::ListPage { token, .. }) if token == "abc"
        ));
        assert!(matches!(
            plan_of("GET", "/api/v1/pods?watch=true", "kubelet"),
            Some(Plan::Watch { .. })
        ));
        assert!(matches!(
            plan_of("GET", "/apis/apps/v1", "kubelet"),
            Some(Plan::NonResource { .. })
        ));
        for (m, p) in [
            ("DELETE", "/api/v1/namespaces/d/pods/x"),
            ("DELETE", "/api/v1/namespaces/d/pods"),
            ("GET", "/api/v1/namespaces/d/pods/x/log"),
            ("POST", "/api/v1/namespaces/d/pods/x/exec"),
            ("GET", "/api/v1/namespaces/d/pods/x/proxy/metrics"),
            (
                "GET",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            ),
            ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
            ("HEAD", "/api/v1/namespaces/d/pods/x"),
            ("GET", "/healthz"),
            ("POST", "/version"),
        ] {
            assert!(plan_of(m, p, "kubelet").is_none(), "{m} {p}");
        }
        assert!(plan_of("GET", "/api/v1/namespaces/d/pods/x", "").is_none());
        let info = RequestInfo::parse("GET", "/api/v1/pods", None).unwrap();
        assert!(plan(&Method::GET, &HeaderMap::new(), &info, "kubectl", false).is_none());
    }

    #[test]
    fn dry_runs() {
        assert!(is_dry_run(Some("dryRun=All")));
        assert!(is_dry_run(Some("fieldManager=x&dryRun=All")));
        assert!(!is_dry_run(Some("dryRun=")));
        assert!(!is_dry_run(Some("fieldManager=dryRun")));
        assert!(!is_dry_run(None));
    }

    #[test]
    fn documents() {
        for p in [
            "/version",
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/api/v1",
        ] {
            assert!(is_cached_document(p), "{p}");
        }
        for p in ["/healthz", "/readyz", "/metrics", "/apis/apps", "/logs/x"] {
            assert!(!is_cached_document(p), "{p}");
        }
    }

    fn acc(values: &[&str]) -> Accept {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, v.parse().unwrap());
        }
        accept(&h)
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(acc(&[]), Accept::Json);
        assert_eq!(acc(&["application/json"]), Accept::Json);
        assert_eq!(
            acc(&["application/vnd.kubernetes.protobuf, */*"]),
            Accept::Json
        );
        assert_eq!(
            acc(&["application/vnd.kubernetes.protobuf", "application/json"]),
            Accept::Json
        );
        assert_eq!(acc(&["application/vnd.kubernetes.protobuf"]), Accept::Other);
        assert_eq!(acc(&["application/cbor"]), Accept::Other);
        // kubectl get offers plain JSON beside the Table: a cache agent gets JSON.
        assert_eq!(
            acc(&["application/json;as=Table;v=v1;g=meta.k8s.io,application/json"]),
            Accept::Json
        );
        assert_eq!(
            acc(&["application/json;as=Table;v=v1;g=meta.k8s.io"]),
            Accept::Other
        );
    }

    #[test]
    fn cacheable_responses() {
        let mut h = HeaderMap::new();
        assert!(!response_is_cacheable(http::StatusCode::OK, &h));
        h.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(response_is_cacheable(http::StatusCode::OK, &h));
        assert!(response_is_cacheable(http::StatusCode::CREATED, &h));
        assert!(!response_is_cacheable(http::StatusCode::NOT_FOUND, &h));
        h.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(!response_is_cacheable(http::StatusCode::OK, &h));
        h.remove(CONTENT_ENCODING);
        h.insert(
            CONTENT_TYPE,
            "application/json;as=Table;g=meta.k8s.io;v=v1"
                .parse()
                .unwrap(),
        );
        assert!(!response_is_cacheable(http::StatusCode::OK, &h));
        h.insert(
            CONTENT_TYPE,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert!(!response_is_cacheable(http::StatusCode::OK, &h));
    }
}
