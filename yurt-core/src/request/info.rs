//! [`RequestInfo`]: a request line (method, path, query) resolved into verb, API group, version,
//! namespace, resource, subresource and name, as kube-apiserver's request-info resolver does.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use super::options::valid_escapes;
use super::{ListOptions, RequestError, Verb};

/// What a Kubernetes API request asks for, resolved from its method, path and query.
///
/// Resolution follows kube-apiserver's `RequestInfoFactory.NewRequestInfo` (package
/// `k8s.io/apiserver/pkg/endpoints/request`) with the prefixes kube-apiserver configures (`api`
/// without a group, `apis` with one):
///
/// - the path is percent-decoded, trimmed of leading and trailing `/` and split on `/` (so an
///   encoded `%2F` splits too, as in Go, which decodes before splitting);
/// - fewer than three segments, a first segment other than `api`/`apis`, or fewer than four
///   segments under `apis` make a *non-resource* request (`/version`, `/api/v1`,
///   `/apis/apps/v1`, `/openapi/v2`) whose verb is the lower-cased method;
/// - after the version, a legacy `watch` or `proxy` segment sets the verb and is dropped
///   (`/api/v1/watch/namespaces/default/pods`); otherwise the method decides: `POST` create,
///   `GET`/`HEAD` get, `PUT` update, `PATCH` patch, `DELETE` delete;
/// - `namespaces/{ns}/...` sets the namespace and drops those two segments, except for the
///   namespace object itself: `/api/v1/namespaces/{name}` and its `status` and `finalize`
///   subresources keep `parts = ["namespaces", name, ...]`, so `resource` is `namespaces`, and
///   `name` **and** `namespace` are both `{name}`, exactly as Kubernetes sets them;
/// - the remaining [`parts`](RequestInfo::parts) are `resource/name/subresource/...`; anything
///   after the subresource stays in `parts` only (`pods/x/proxy/some/path` has subresource
///   `proxy`); under the legacy `proxy` prefix there is no subresource;
/// - a `get` without a name becomes `list`, or `watch` when the `watch` parameter is true; for
///   those, a field selector requiring `metadata.name=<x>` (a valid path segment) fills `name`
///   while the verb stays list/watch; a `delete` without a name becomes `deletecollection`.
///
/// Deliberate differences from Kubernetes (yurt-rs):
/// - **streaming subresources**: `exec`, `attach` and `portforward` resolve to
///   [`Verb::Connect`] and `proxy` to [`Verb::Proxy`], whatever the method (Kubernetes says
///   create/get/...), because the hub must pass those upgrades through and never cache them.
///   Requests that took their verb from the legacy `/watch/` or `/proxy/` prefix keep it;
/// - **unknown methods** on resource paths resolve to the lower-cased method
///   (`OPTIONS` gives `Other("options")`, `CONNECT` gives [`Verb::Connect`]) instead of
///   Kubernetes' empty verb;
/// - **bad list options are an error**: where Kubernetes' resolver falls back to `list` and lets
///   the list/watch/deletecollection handler answer `400 Bad Request`, [`RequestInfo::parse`]
///   returns the [`RequestError`] itself. Other verbs never fail on the query (their handlers
///   ignore list options); their [`options`](RequestInfo::options) keep what decodes;
/// - [`path`](RequestInfo::path) is the path as sent (undecoded), so it can be forwarded
///   unchanged; Kubernetes keeps the decoded one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// Whether the request is for an API resource (or subresource), rather than a non-resource
    /// path such as `/healthz` or a discovery document.
    pub is_resource_request: bool,
    /// The URL path as given, not percent-decoded, without the query.
    pub path: String,
    /// The Kubernetes verb (the lower-cased method for non-resource requests).
    pub verb: Verb,
    /// `api` or `apis` for resource requests. Like Kubernetes, it is also `apis` for the
    /// group-version discovery path `/apis/{group}/{version}`; otherwise empty for
    /// non-resource requests.
    pub api_prefix: String,
    /// The API group; empty for the core (legacy) group under `/api`.
    pub api_group: String,
    /// The API version, e.g. `v1`.
    pub api_version: String,
    /// The namespace from the path; empty for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// The resource (plural), e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `status`, `log`, `exec`; empty if none.
    pub subresource: String,
    /// The object name from the path or, for list/watch, from a `metadata.name` field selector.
    pub name: String,
    /// The path segments from the resource on (`resource`, `name`, `subresource`, then whatever
    /// follows), after namespace adjustment, as Kubernetes keeps them; empty for non-resource
    /// requests.
    pub parts: Vec<String>,
    /// The list/watch options from the query string.
    pub options: ListOptions,
}

/// Namespace subresources: `/namespaces/{name}/{these}` is the namespace object, not a resource
/// inside the namespace.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl RequestInfo {
    /// Resolves a request line. `path` is the URL path as sent (percent-encoded); if it holds a
    /// `?`, what follows is taken as the query unless `query` is given. `query` excludes the `?`.
    ///
    /// ```
    /// use yurt_core::request::{RequestInfo, Verb};
    ///
    /// let info = RequestInfo::parse(
    ///     "PUT",
    ///     "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1",
    ///     None,
    /// )
    /// .unwrap();
    /// assert_eq!(info.verb, Verb::Update);
    /// assert_eq!(info.gvr_string(), "leases.v1.coordination.k8s.io");
    /// assert_eq!((info.namespace.as_str(), info.name.as_str()), ("kube-node-lease", "node1"));
    /// ```
    pub fn parse(
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<RequestInfo, RequestError> {
        let (path, query) = match path.split_once('?') {
            Some((path, inline)) => (path, query.unwrap_or(inline)),
            None => (path, query.unwrap_or("")),
        };
        let decoded = decode_path(path)?;
        let segments = split_path(&decoded);
        resolve(method, path, &segments, query)
    }

    /// Resolves an [`http::Request`] from its method, URI path and URI query.
    pub fn from_request<B>(req: &http::Request<B>) -> Result<RequestInfo, RequestError> {
        let uri = req.uri();
        RequestInfo::parse(
            req.method().as_str(),
            uri.path(),
            Some(uri.query().unwrap_or("")),
        )
    }

    /// `<resource>.<version>.<group>`, with `core` for the legacy group: the name upstream
    /// YurtHub gives its cache directories (`pods.v1.core`,
    /// `nodepools.v1beta2.apps.openyurt.io`). Empty for non-resource requests.
    pub fn gvr_string(&self) -> String {
        if !self.is_resource_request {
            return String::new();
        }
        let group = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        format!("{}.{}.{}", self.resource, self.api_version, group)
    }

    /// Whether this is a resource request addressed to a collection URL (no object name in the
    /// path): a list, watch, deletecollection, or a create. True even when a `metadata.name`
    /// field selector filled [`name`](RequestInfo::name), since the request still returns a
    /// list or a watch stream.
    pub fn is_collection(&self) -> bool {
        self.is_resource_request && self.parts.len() < 2
    }
}

/// The resolver proper, on the decoded path segments.
fn resolve(
    method: &str,
    raw_path: &str,
    segments: &[&str],
    query: &str,
) -> Result<RequestInfo, RequestError> {
    let (options, query_error) = ListOptions::from_query_lenient(query);
    let mut info = RequestInfo {
        is_resource_request: false,
        path: raw_path.to_owned(),
        verb: Verb::from_method_lowercase(method),
        api_prefix: String::new(),
        api_group: String::new(),
        api_version: String::new(),
        namespace: String::new(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        parts: Vec::new(),
        options,
    };

    // Non-resource unless proven otherwise.
    let [prefix, rest @ ..] = segments else {
        return Ok(info);
    };
    if segments.len() < 3 || !matches!(*prefix, "api" | "apis") {
        return Ok(info);
    }
    info.api_prefix = (*prefix).to_owned();
    let mut rest = rest;
    if *prefix == "apis" {
        // `/apis/{group}/{version}` is discovery; Kubernetes keeps api_prefix set there.
        let [group, tail @ ..] = rest else {
            return Ok(info);
        };
        if rest.len() < 3 {
            return Ok(info);
        }
        info.api_group = (*group).to_owned();
        rest = tail;
    }
    let [version, tail @ ..] = rest else {
        return Ok(info);
    };
    info.is_resource_request = true;
    info.api_version = (*version).to_owned();
    rest = tail;

    // At least one segment follows the version (checked by the length tests above).
    let verb_via_prefix = matches!(rest.first(), Some(&("watch" | "proxy")));
    if verb_via_prefix {
        if rest.len() < 2 {
            return Err(RequestError::path(
                raw_path,
                format!(
                    "unable to determine kind and namespace after the /{}/ prefix",
                    rest[0]
                ),
            ));
        }
        info.verb = Verb::from(rest[0]);
        rest = &rest[1..];
    } else {
        info.verb = match method {
            "POST" => Verb::Create,
            "GET" | "HEAD" => Verb::Get,
            "PUT" => Verb::Update,
            "PATCH" => Verb::Patch,
            "DELETE" => Verb::Delete,
            other => Verb::from_method_lowercase(other),
        };
    }

    // URL forms `namespaces/{namespace}/{resource}/...`: parts become relative to the resource.
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        info.namespace = rest[1].to_owned();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    info.parts = rest.iter().map(|s| (*s).to_owned()).collect();

    // parts: resource/name/subresource/anything/else
    if info.parts.len() >= 3 && info.verb != Verb::Proxy {
        info.subresource = info.parts[2].clone();
    }
    if let Some(name) = info.parts.get(1) {
        info.name = name.clone();
    }
    if let Some(resource) = info.parts.first() {
        info.resource = resource.clone();
    }

    if info.name.is_empty() && info.verb == Verb::Get {
        info.verb = if info.options.watch {
            Verb::Watch
        } else {
            Verb::List
        };
        if query_error.is_none()
            && let Some(name) = info.options.field_selector.as_deref().and_then(exact_name)
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == Verb::Delete {
        info.verb = Verb::DeleteCollection;
    }

    // The list, watch and deletecollection handlers decode list options and refuse bad ones.
    if let Some(error) = query_error
        && matches!(info.verb, Verb::List | Verb::Watch | Verb::DeleteCollection)
    {
        return Err(error);
    }

    // yurt-rs: streaming subresources get their own verbs so the hub never caches them.
    if !verb_via_prefix {
        match info.subresource.as_str() {
            "exec" | "attach" | "portforward" => info.verb = Verb::Connect,
            "proxy" => info.verb = Verb::Proxy,
            _ => {}
        }
    }
    Ok(info)
}

/// Percent-decodes a URL path as Go's `url.Parse` does for `URL.Path`: a `%` must start a
/// two-hex-digit escape, and `+` stays a `+`. The result must be UTF-8.
fn decode_path(path: &str) -> Result<Cow<'_, str>, RequestError> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    if !valid_escapes(path) {
        return Err(RequestError::path(path, "malformed percent-escape"));
    }
    percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| RequestError::path(path, "not UTF-8 once percent-decoded"))
}

/// Trims leading and trailing `/` and splits on `/` (inner empty segments are kept, as Go's
/// `strings.Split` keeps them); an empty path has no segments.
fn split_path(path: &str) -> Vec<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

/// The name a field selector pins with `metadata.name=<x>` (or `==`), as Kubernetes'
/// `fields.Selector.RequiresExactMatch("metadata.name")` finds it, provided the whole selector
/// parses and `<x>` is a valid path segment (not `.` or `..`, no `/` or `%`).
fn exact_name(selector: &str) -> Option<String> {
    let selector = crate::selector::FieldSelector::parse(selector).ok()?;
    let name = selector.requires_exact_match("metadata.name")?;
    let valid_segment = name != "." && name != ".." && !name.contains(['/', '%']);
    valid_segment.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_name_follows_field_selector_rules() {
        assert_eq!(exact_name("metadata.name=x").as_deref(), Some("x"));
        assert_eq!(exact_name("metadata.name==x").as_deref(), Some("x"));
        assert_eq!(exact_name("metadata.name!=x"), None);
        assert_eq!(
            exact_name("spec.nodeName=n,metadata.name=x").as_deref(),
            Some("x")
        );
        assert_eq!(
            exact_name("metadata.name=a,metadata.name=b").as_deref(),
            Some("a")
        );
        assert_eq!(exact_name("metadata.name=a\\=b").as_deref(), Some("a=b"));
        assert_eq!(exact_name("metadata.name=a,garbage"), None);
        assert_eq!(exact_name("metadata.name=a\\x"), None);
        assert_eq!(exact_name("metadata.name=a/b"), None);
        assert_eq!(exact_name("metadata.name=.."), None);
        assert_eq!(exact_name("metadata.name="), Some(String::new()));
        assert_eq!(exact_name(""), None);
        assert_eq!(exact_name("metadata.namespace=x"), None);
    }

    #[test]
    fn split_path_keeps_inner_empty_segments() {
        assert_eq!(split_path("//api//v1/"), vec!["api", "", "v1"]);
        assert!(split_path("/").is_empty());
        assert!(split_path("").is_empty());
    }

    #[test]
    fn decode_path_rejects_bad_escapes() {
        assert!(decode_path("/api/v1/pods/a%2").is_err());
        assert!(decode_path("/api/v1/pods/a%ff").is_err());
        assert_eq!(decode_path("/a%20b+c").unwrap(), "/a b+c");
    }
}
