//! [`Verb`]: the Kubernetes API verb of a request (`get`, `list`, `watch`, ...), as opposed to its
//! HTTP method.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The Kubernetes verb of a request: what authorization, caching and filtering key on.
///
/// For resource requests this is the verb kube-apiserver resolves (a `GET` of a collection is
/// [`List`](Verb::List) or [`Watch`](Verb::Watch), a `DELETE` of one is
/// [`DeleteCollection`](Verb::DeleteCollection)); for non-resource requests it is the lower-cased
/// HTTP method, as Kubernetes records it (`GET /healthz` is [`Get`](Verb::Get), `HEAD /healthz`
/// is `Other("head")`, `POST /foo` is `Other("post")`).
///
/// [`Connect`](Verb::Connect) is a yurt-rs addition: Kubernetes' resolver reports `create`/`get`
/// for the `exec`, `attach` and `portforward` subresources; the hub needs to know those are
/// streaming upgrades it must pass through and never cache.
///
/// A verb is serialized as its string ([`Verb::as_str`]). Strings are canonical: parsing (via
/// [`FromStr`]/[`From<&str>`]) maps the name of a known verb to its variant, so
/// `Other` never holds `"get"`, `"list"`, ... when built that way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// Read one named object (`GET`/`HEAD` of an object URL; also non-resource `GET`).
    Get,
    /// Read a collection (`GET` of a collection URL without `watch`).
    List,
    /// Stream changes of a collection or object (`watch=true`, or the legacy `/watch/` prefix).
    Watch,
    /// Create an object (`POST` to a resource URL).
    Create,
    /// Replace an object (`PUT`).
    Update,
    /// Patch an object (`PATCH`; also non-resource `PATCH`).
    Patch,
    /// Delete one object (`DELETE` of an object URL; also non-resource `DELETE`).
    Delete,
    /// Delete every object of a collection matching the selectors (`DELETE` of a collection URL).
    DeleteCollection,
    /// Proxy to a pod, service or node: the legacy `/proxy/` prefix, or (yurt-rs) the `proxy`
    /// subresource.
    Proxy,
    /// (yurt-rs) A streaming upgrade: the `exec`, `attach` and `portforward` subresources.
    Connect,
    /// Anything else, holding the lower-cased HTTP method (`"post"`, `"put"`, `"head"`,
    /// `"options"`, ...).
    Other(String),
}

impl Verb {
    /// The verb as Kubernetes spells it (`"get"`, `"deletecollection"`, ...; `Other` gives its
    /// string).
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Proxy => "proxy",
            Verb::Connect => "connect",
            Verb::Other(other) => other,
        }
    }

    /// True for the verbs that only read (`get`, `list`, `watch`): what a cache may answer.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }

    /// The canonical verb for a string: a known verb name maps to its variant, anything else to
    /// `Other` holding the string unchanged.
    fn from_name(name: &str) -> Verb {
        match name {
            "get" => Verb::Get,
            "list" => Verb::List,
            "watch" => Verb::Watch,
            "create" => Verb::Create,
            "update" => Verb::Update,
            "patch" => Verb::Patch,
            "delete" => Verb::Delete,
            "deletecollection" => Verb::DeleteCollection,
            "proxy" => Verb::Proxy,
            "connect" => Verb::Connect,
            other => Verb::Other(other.to_owned()),
        }
    }

    /// The verb Kubernetes records for a non-resource request (or a resource request with a
    /// method it does not map): the lower-cased method, canonicalized.
    pub(crate) fn from_method_lowercase(method: &str) -> Verb {
        Verb::from_name(&method.to_ascii_lowercase())
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = Infallible;

    /// Parses a verb name exactly (case-sensitive, as Kubernetes verbs are lower case);
    /// unknown names become [`Verb::Other`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Verb::from_name(s))
    }
}

impl From<&str> for Verb {
    fn from(s: &str) -> Self {
        Verb::from_name(s)
    }
}

impl AsRef<str> for Verb {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Verb {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Verb {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Verb::from_name(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for verb in [
            Verb::Get,
            Verb::List,
            Verb::Watch,
            Verb::Create,
            Verb::Update,
            Verb::Patch,
            Verb::Delete,
            Verb::DeleteCollection,
            Verb::Proxy,
            Verb::Connect,
            Verb::Other("post".into()),
        ] {
            assert_eq!(Verb::from(verb.as_str()), verb);
            assert_eq!(verb.to_string(), verb.as_str());
            let json = serde_json::to_string(&verb).unwrap();
            assert_eq!(json, format!("\"{}\"", verb.as_str()));
            assert_eq!(serde_json::from_str::<Verb>(&json).unwrap(), verb);
        }
    }

    #[test]
    fn methods_are_lower_cased_and_canonical() {
        assert_eq!(Verb::from_method_lowercase("GET"), Verb::Get);
        assert_eq!(
            Verb::from_method_lowercase("HEAD"),
            Verb::Other("head".into())
        );
        assert_eq!(Verb::from_method_lowercase("DELETE"), Verb::Delete);
        assert_eq!(
            Verb::from_method_lowercase("POST"),
            Verb::Other("post".into())
        );
    }
}
