//! Authentication, as kube-apiserver's x509 and token authenticators do it: a client certificate
//! chaining to the test CA names the user (CN) and groups (O); a bearer token is looked up among
//! the static tokens and the service-account tokens the server issued. Authenticated users also
//! get the `system:authenticated` group. With authentication required (the equivalent of
//! `--anonymous-auth=false`), a request with neither gets 401, on every path.
//!
//! There is no authorization: every authenticated user may do everything.

use http::HeaderMap;

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (`system:anonymous` for anonymous requests).
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl Identity {
    /// A user with groups (as given; `system:authenticated` is added when it authenticates).
    pub fn new(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The anonymous user.
    pub fn anonymous() -> Identity {
        Identity::new("system:anonymous", &["system:unauthenticated"])
    }

    /// The identity as the authenticator reports it: with `system:authenticated` added.
    pub(crate) fn authenticated(mut self) -> Identity {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// The outcome of authenticating a request.
#[derive(Debug)]
pub(crate) enum Authn {
    /// Authenticated.
    User(Identity),
    /// No credentials.
    Anonymous,
    /// Credentials that do not authenticate (an unknown bearer token).
    Invalid,
}

/// Authenticates from the `Authorization` header, then the TLS client certificate.
pub(crate) fn authenticate(
    shared: &super::Shared,
    headers: &HeaderMap,
    cert: Option<&Identity>,
) -> Authn {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            let tokens = shared.tokens.read().unwrap_or_else(|e| e.into_inner());
            return match tokens.get(token.trim()) {
                Some(id) => Authn::User(id.clone().authenticated()),
                None => Authn::Invalid,
            };
        }
    }
    match cert {
        Some(id) => Authn::User(id.clone().authenticated()),
        None => Authn::Anonymous,
    }
}
