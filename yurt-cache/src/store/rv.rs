//! resourceVersion ordering.
//!
//! Kubernetes documents resourceVersion as an opaque string that clients may only compare for
//! equality. Every apiserver backed by etcd (and kine, and the yurt-testkit apiserver) emits the
//! decimal form of a `uint64` revision, and upstream OpenYurt already parses it as one (openyurt.md
//! §1.7). The rule here:
//!
//! 1. If both versions are decimal `u64` (ASCII digits only, no sign, fits in 64 bits), they
//!    compare numerically (`"9" < "10"`).
//! 2. Otherwise, if the strings are equal, they are equal.
//! 3. Otherwise the order is unknown ([`None`]). The store then lets the write win: it trusts
//!    arrival order, which is what a plain cache would do. An empty or missing version is always
//!    "unknown".
//!
//! A write is refused only when it is known to be older: [`is_older`].

use std::cmp::Ordering;

/// Parses a resourceVersion as a decimal `u64`, rejecting signs, spaces and empty strings.
pub fn parse(rv: &str) -> Option<u64> {
    if rv.is_empty() || !rv.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rv.parse().ok()
}

/// Orders two resourceVersions by the rule in the module docs; `None` when unknown.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ if !a.is_empty() && a == b => Some(Ordering::Equal),
        _ => None,
    }
}

/// True when `candidate` is known to be older than `stored`; only then is a write refused.
pub fn is_older(candidate: &str, stored: &str) -> bool {
    compare(candidate, stored) == Some(Ordering::Less)
}

/// The highest of several resourceVersions under the numeric rule; non-numeric ones are ignored
/// unless nothing numeric is present, in which case the last non-empty one is returned.
pub fn max<'a>(versions: impl IntoIterator<Item = &'a str>) -> String {
    let mut best: Option<u64> = None;
    let mut fallback = "";
    for v in versions {
        match parse(v) {
            Some(n) => best = Some(best.map_or(n, |b| b.max(n))),
            None if !v.is_empty() => fallback = v,
            None => {}
        }
    }
    best.map_or_else(|| fallback.to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_not_lexicographic() {
        assert_eq!(compare("9", "10"), Some(Ordering::Less));
        assert_eq!(compare("010", "10"), Some(Ordering::Equal));
        assert!(is_older("9", "10"));
        assert!(!is_older("10", "10"));
    }

    #[test]
    fn opaque_fallback() {
        assert_eq!(compare("abc", "abc"), Some(Ordering::Equal));
        assert_eq!(compare("abc", "abd"), None);
        assert_eq!(compare("", ""), None);
        assert_eq!(compare("+5", "4"), None);
        assert_eq!(compare("18446744073709551616", "1"), None); // > u64::MAX
        assert!(!is_older("1", "x"));
    }

    #[test]
    fn max_prefers_numeric() {
        assert_eq!(max(["5", "x", "12", ""]), "12");
        assert_eq!(max(["x", ""]), "x");
        assert_eq!(max([]), "");
    }
}
