//! Controller names and the `--controllers` selection.
//!
//! Controllers are named as in upstream yurt-manager (`nodepool-controller`, ...) and can also be
//! addressed by upstream's short aliases (`nodepool`, `nodebucket`, ...), so existing command
//! lines and Helm values keep working. A selection is a list of entries: `*` enables every
//! controller that is on by default, `name` enables one, `-name` disables one; an explicit entry
//! wins over `*` whatever the order. An unknown name is an error naming it, never silently
//! ignored.

use std::collections::BTreeSet;

/// `nodepool-controller`: pool status and attribute sync onto member nodes.
pub const NODEPOOL: &str = "nodepool-controller";
/// `node-bucket-controller`: splits pool membership into NodeBuckets.
pub const NODE_BUCKET: &str = "node-bucket-controller";
/// `csr-approver-controller`: approves the hub and tunnel certificate signing requests.
pub const CSR_APPROVER: &str = "csr-approver-controller";
/// `service-topology-endpoints-controller`: re-delivers Endpoints when a Service's topology
/// annotation changes.
pub const SERVICE_TOPOLOGY_ENDPOINTS: &str = "service-topology-endpoints-controller";
/// `service-topology-endpointslice-controller`: re-delivers EndpointSlices when a Service's
/// topology annotation changes.
pub const SERVICE_TOPOLOGY_ENDPOINTSLICE: &str = "service-topology-endpointslice-controller";

/// Upstream's short aliases and the controller each stands for.
pub const ALIASES: &[(&str, &str)] = &[
    ("nodepool", NODEPOOL),
    ("nodebucket", NODE_BUCKET),
    ("csrapprover", CSR_APPROVER),
    ("servicetopologyendpoints", SERVICE_TOPOLOGY_ENDPOINTS),
    (
        "servicetopologyendpointslices",
        SERVICE_TOPOLOGY_ENDPOINTSLICE,
    ),
];

/// Resolves a controller name or alias to the canonical name, if `known` has it.
pub fn canonical<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    if let Some(k) = known.iter().find(|k| **k == name) {
        return Some(k);
    }
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .and_then(|(_, target)| known.iter().find(|k| *k == target).copied())
}

/// A `--controllers` entry that names no known controller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--controllers: unknown controller {name:?} (known: {known})")]
pub struct UnknownController {
    /// The entry as given, without a leading `-`.
    pub name: String,
    /// The known controller names, comma-separated.
    pub known: String,
}

/// Which of `known` controllers run for the selection `entries` (see the module docs).
/// `disabled_by_default` controllers run only when named explicitly. The result is in `known`'s
/// order.
pub fn select<'a>(
    entries: &[String],
    known: &[&'a str],
    disabled_by_default: &[&str],
) -> Result<Vec<&'a str>, UnknownController> {
    let unknown = |name: &str| UnknownController {
        name: name.to_owned(),
        known: known.join(","),
    };
    let mut star = false;
    let mut on = BTreeSet::new();
    let mut off = BTreeSet::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if entry == "*" {
            star = true;
        } else if let Some(name) = entry.strip_prefix('-') {
            off.insert(canonical(name, known).ok_or_else(|| unknown(name))?);
        } else {
            on.insert(canonical(entry, known).ok_or_else(|| unknown(entry))?);
        }
    }
    Ok(known
        .iter()
        .copied()
        .filter(|name| {
            if off.contains(name) {
                false
            } else if on.contains(name) {
                true
            } else {
                star && !disabled_by_default.contains(name)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[NODEPOOL, NODE_BUCKET, CSR_APPROVER];

    fn sel(entries: &[&str]) -> Result<Vec<&'static str>, UnknownController> {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        select(&entries, KNOWN, &[CSR_APPROVER])
    }

    #[test]
    fn star_enables_defaults_and_explicit_entries_win() {
        assert_eq!(sel(&["*"]).unwrap(), vec![NODEPOOL, NODE_BUCKET]);
        assert_eq!(
            sel(&["*", "csrapprover"]).unwrap(),
            vec![NODEPOOL, NODE_BUCKET, CSR_APPROVER]
        );
        assert_eq!(sel(&["-nodepool", "*"]).unwrap(), vec![NODE_BUCKET]);
        assert_eq!(sel(&["node-bucket-controller"]).unwrap(), vec![NODE_BUCKET]);
        assert!(sel(&[]).unwrap().is_empty());
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = sel(&["*", "-nodepol"]).unwrap_err();
        assert_eq!(err.name, "nodepol");
        assert!(err.to_string().contains("nodepool-controller"), "{err}");
        assert!(sel(&["gateway-dns-controller"]).is_err());
    }
}
