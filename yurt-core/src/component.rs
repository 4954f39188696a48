//! Which client sent a request: the *component*, from its `User-Agent`.
//!
//! The hub caches and filters per component: kubelet's view of pods is cached apart from
//! kube-proxy's, and the service-topology filter applies to kube-proxy and coredns only. Like
//! upstream YurtHub, the component is the `User-Agent` lower-cased and cut at the first `/`, so
//! `kubelet/v1.36.0 (linux/amd64) kubernetes/abc` and `Kubelet/v1.35` are both `kubelet`. Clients
//! that send a generic agent share one component (calico sends `Go-http-client/2.0`, which
//! becomes `go-http-client`, OpenYurt issue #937); a request without a `User-Agent` has the empty
//! component, which the hub never caches.
//!
//! ```
//! use yurt_core::component::Component;
//!
//! let c = Component::from_user_agent(Some("kube-proxy/v1.36.0 (linux/arm64) kubernetes/4a3b2c1"));
//! assert_eq!(c.as_str(), "kube-proxy");
//! assert!(Component::from_user_agent(None).is_empty());
//! ```

use std::fmt;

/// A client identity derived from the `User-Agent` header (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Component(String);

impl Component {
    /// Lower-cases `user_agent` and keeps what precedes the first `/`.
    pub fn from_user_agent(user_agent: Option<&str>) -> Self {
        let ua = user_agent.unwrap_or("");
        let head = ua.split('/').next().unwrap_or("");
        Self(head.to_lowercase())
    }

    /// The component of a request, from its `User-Agent` header (non-UTF-8 values count as absent).
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        let ua = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Self::from_user_agent(ua)
    }

    /// A component with an explicit name (lower-cased, cut at `/` like a `User-Agent`).
    pub fn new(name: &str) -> Self {
        Self::from_user_agent(Some(name))
    }

    /// The component name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for requests without a `User-Agent`; such requests are never cached.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Component {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_user_agents() {
        let cases = [
            (
                "kubelet/v1.36.0 (linux/amd64) kubernetes/0a1b2c3",
                "kubelet",
            ),
            (
                "kube-proxy/v1.36.0 (linux/arm64) kubernetes/0a1b2c3",
                "kube-proxy",
            ),
            ("coredns/v0.0.0 (linux/amd64) kubernetes/$Format", "coredns"),
            ("flanneld/v0.26.0", "flanneld"),
            ("Go-http-client/2.0", "go-http-client"),
            (
                "kubectl/v1.36.0 (linux/amd64) kubernetes/0a1b2c3",
                "kubectl",
            ),
            ("OpenAPI-Generator/35.0.0/python", "openapi-generator"),
            ("yurthub/v1.6.0-abcdef", "yurthub"),
            ("multiplexer-proxy-node-1", "multiplexer-proxy-node-1"),
            ("raven-agent-ds/v0.4.1", "raven-agent-ds"),
            ("UPPER", "upper"),
            ("/leading-slash", ""),
            ("", ""),
        ];
        for (ua, want) in cases {
            assert_eq!(Component::from_user_agent(Some(ua)).as_str(), want, "{ua}");
        }
    }

    #[test]
    fn from_request_reads_the_header() {
        let req = http::Request::builder()
            .header("user-agent", "Kubelet/v1.35.2")
            .body(())
            .unwrap();
        assert_eq!(Component::from_request(&req).as_str(), "kubelet");
        let bare = http::Request::new(());
        assert!(Component::from_request(&bare).is_empty());
    }
}
