//! Label and field selectors: grammar, validation, error messages, matching against object JSON,
//! canonical `Display` round trips, and conversion from `metav1.LabelSelector`, each checked
//! against what Kubernetes apimachinery does with the same input.

use std::collections::BTreeMap;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use yurt_core::selector::{
    FieldOperator, FieldSelector, LabelOperator, LabelRequirement, LabelSelector, SelectorError,
    SelectorKind,
};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn obj_with_labels(pairs: &[(&str, &str)]) -> Value {
    json!({"metadata": {"name": "x", "labels": labels(pairs)}})
}

fn lsel(s: &str) -> LabelSelector {
    LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn fsel(s: &str) -> FieldSelector {
    FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// Parses, expects an error at `position` naming `token`, and checks the message names both.
fn label_err(s: &str, token: &str, position: usize) -> SelectorError {
    let err = LabelSelector::parse(s).expect_err(s);
    check_err(&err, SelectorKind::Label, s, token, position);
    err
}

fn field_err(s: &str, token: &str, position: usize) -> SelectorError {
    let err = FieldSelector::parse(s).expect_err(s);
    check_err(&err, SelectorKind::Field, s, token, position);
    err
}

fn check_err(err: &SelectorError, kind: SelectorKind, s: &str, token: &str, position: usize) {
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(err.input(), Some(s), "{err}");
    assert_eq!(err.token(), token, "{err}");
    assert_eq!(err.position(), Some(position), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("invalid {kind} selector {s:?}: ")),
        "{msg}"
    );
    assert!(msg.ends_with(&format!(" at byte {position}")), "{msg}");
    if token.is_empty() {
        assert!(
            msg.contains("end of string") || msg.contains("no value"),
            "{msg}"
        );
    } else {
        assert!(
            msg.contains(&format!("{token:?}")),
            "{msg} should name {token:?}"
        );
    }
}

/// `parse(display(x)) == x` and display is a fixed point.
fn assert_label_round_trip(s: &str, canonical: &str) {
    let sel = lsel(s);
    assert_eq!(sel.to_string(), canonical, "display of {s:?}");
    let again = lsel(canonical);
    assert_eq!(again, sel, "re-parse of {canonical:?}");
    assert_eq!(again.to_string(), canonical);
}

fn assert_field_round_trip(s: &str, canonical: &str) {
    let sel = fsel(s);
    assert_eq!(sel.to_string(), canonical, "display of {s:?}");
    let again = fsel(canonical);
    assert_eq!(again, sel, "re-parse of {canonical:?}");
    assert_eq!(again.to_string(), canonical);
}

// ---------------------------------------------------------------------------------------------
// Label selectors: valid input
// ---------------------------------------------------------------------------------------------

#[test]
fn label_equals_forms() {
    let sel = lsel("app=web");
    assert_eq!(
        sel.requirements(),
        [LabelRequirement {
            key: "app".into(),
            operator: LabelOperator::Equals,
            values: vec!["web".into()],
        }]
    );
    assert!(sel.matches(&labels(&[("app", "web")])));
    assert!(!sel.matches(&labels(&[("app", "db")])));
    assert!(!sel.matches(&labels(&[])));

    let double = lsel("app==web");
    assert_eq!(
        double.requirements()[0].operator,
        LabelOperator::DoubleEquals
    );
    assert_eq!(double.to_string(), "app==web");
    assert!(double.matches(&labels(&[("app", "web")])));
}

#[test]
fn label_not_equals_matches_absent_key() {
    let sel = lsel("app!=web");
    assert_eq!(sel.requirements()[0].operator, LabelOperator::NotEquals);
    assert!(sel.matches(&labels(&[])));
    assert!(sel.matches(&labels(&[("app", "db")])));
    assert!(!sel.matches(&labels(&[("app", "web")])));
}

#[test]
fn label_in_and_notin() {
    let sel = lsel("tier in (b, a)");
    assert_eq!(sel.requirements()[0].operator, LabelOperator::In);
    assert_eq!(sel.requirements()[0].values, ["a", "b"]);
    assert!(sel.matches(&labels(&[("tier", "a")])));
    assert!(!sel.matches(&labels(&[("tier", "c")])));
    assert!(!sel.matches(&labels(&[])));

    let not = lsel("tier notin (a,b)");
    assert_eq!(not.requirements()[0].operator, LabelOperator::NotIn);
    assert!(
        not.matches(&labels(&[])),
        "notin holds when the key is absent"
    );
    assert!(not.matches(&labels(&[("tier", "c")])));
    assert!(!not.matches(&labels(&[("tier", "b")])));
}

#[test]
fn label_exists_and_does_not_exist() {
    let sel = lsel("app");
    assert_eq!(sel.requirements()[0].operator, LabelOperator::Exists);
    assert!(sel.matches(&labels(&[("app", "")])));
    assert!(!sel.matches(&labels(&[("other", "x")])));

    let not = lsel("!app");
    assert_eq!(not.requirements()[0].operator, LabelOperator::DoesNotExist);
    assert!(not.matches(&labels(&[])));
    assert!(!not.matches(&labels(&[("app", "")])));
}

#[test]
fn label_greater_and_less_than_are_integer_comparisons() {
    let gt = lsel("replicas>3");
    assert_eq!(gt.requirements()[0].operator, LabelOperator::GreaterThan);
    assert!(
        gt.matches(&labels(&[("replicas", "10")])),
        "10 > 3 numerically"
    );
    assert!(!gt.matches(&labels(&[("replicas", "3")])));
    assert!(
        !gt.matches(&labels(&[("replicas", "many")])),
        "non-integer label"
    );
    assert!(!gt.matches(&labels(&[])), "> needs the key present");

    let lt = lsel("replicas < 10");
    assert_eq!(lt.requirements()[0].operator, LabelOperator::LessThan);
    assert!(lt.matches(&labels(&[("replicas", "9")])));
    assert!(!lt.matches(&labels(&[("replicas", "10")])));
    assert!(!lt.matches(&labels(&[])));
}

#[test]
fn label_whitespace_is_tolerated_everywhere() {
    let a = lsel("  app = web ,\ttier  in(a ,b)\n,\r!legacy  ");
    let b = lsel("app=web,tier in (a,b),!legacy");
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "app=web,!legacy,tier in (a,b)");
}

#[test]
fn label_requirements_are_anded_and_sorted_by_key() {
    let sel = lsel("zone=z1,app=web,env notin (dev)");
    let keys: Vec<_> = sel.requirements().iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["app", "env", "zone"]);
    assert!(sel.matches(&labels(&[("app", "web"), ("zone", "z1")])));
    assert!(!sel.matches(&labels(&[("app", "web"), ("zone", "z1"), ("env", "dev")])));
    assert!(!sel.matches(&labels(&[("app", "web")])));
}

#[test]
fn label_prefixed_keys() {
    let sel = lsel("app.kubernetes.io/name=web,apps.openyurt.io/nodepool in (hangzhou)");
    assert!(sel.matches(&labels(&[
        ("app.kubernetes.io/name", "web"),
        ("apps.openyurt.io/nodepool", "hangzhou"),
    ])));
    assert_eq!(
        sel.to_string(),
        "app.kubernetes.io/name=web,apps.openyurt.io/nodepool in (hangzhou)"
    );
}

#[test]
fn label_kube_proxy_service_selector() {
    let s = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";
    let sel = lsel(s);
    assert_eq!(sel.to_string(), s);
    assert!(sel.matches_object(&obj_with_labels(&[("app", "web")])));
    assert!(sel.matches_object(&json!({"metadata": {"name": "kubernetes"}})));
    assert!(!sel.matches_object(&obj_with_labels(&[("service.kubernetes.io/headless", "")])));
}

#[test]
fn label_empty_selects_everything() {
    for s in ["", "   ", "\t\n"] {
        let sel = lsel(s);
        assert!(sel.is_empty());
        assert_eq!(sel, LabelSelector::everything());
        assert_eq!(sel.to_string(), "");
        assert!(sel.matches(&labels(&[])));
        assert!(sel.matches_object(&json!(null)));
    }
    assert!(!lsel("a").is_empty());
}

#[test]
fn label_in_and_notin_are_words_outside_operator_position() {
    // Kubernetes' parser reads `in`/`notin` as identifiers wherever a key or value is expected.
    let sel = lsel("in in (in, notin),notin,x=in");
    assert_eq!(sel.to_string(), "in in (in,notin),notin,x=in");
    assert!(sel.matches(&labels(&[("in", "notin"), ("notin", ""), ("x", "in")])));
}

#[test]
fn label_empty_values_are_values() {
    // `()` is the set {""}, not an error; empty slots between commas are "" too.
    let sel = lsel("k in ()");
    assert_eq!(sel.requirements()[0].values, [""]);
    assert!(sel.matches(&labels(&[("k", "")])));
    assert!(!sel.matches(&labels(&[("k", "a")])));
    assert_eq!(sel.to_string(), "k in ()");

    assert_eq!(lsel("k in (a,,b)").requirements()[0].values, ["", "a", "b"]);
    assert_eq!(lsel("k in (a,)").requirements()[0].values, ["", "a"]);
    assert_eq!(lsel("k in (,a)").requirements()[0].values, ["", "a"]);
    assert_eq!(lsel("k notin (b,a,b)").requirements()[0].values, ["a", "b"]);

    let eq = lsel("k=");
    assert_eq!(eq.requirements()[0].values, [""]);
    assert!(eq.matches(&labels(&[("k", "")])));
    assert!(!eq.matches(&labels(&[])));
    assert!(lsel("k!=").matches(&labels(&[])));
}

#[test]
fn label_matches_object_reads_metadata_labels() {
    let sel = lsel("app=web,!legacy");
    assert!(sel.matches_object(&obj_with_labels(&[("app", "web")])));
    assert!(!sel.matches_object(&obj_with_labels(&[("app", "web"), ("legacy", "1")])));
    // No labels at all: behaves as an empty label set.
    assert!(!sel.matches_object(&json!({"metadata": {"name": "x"}})));
    assert!(lsel("!app").matches_object(&json!({"metadata": {"name": "x"}})));
    assert!(lsel("!app").matches_object(&json!({"kind": "Pod"})));
    assert!(lsel("app notin (web)").matches_object(&json!("not an object")));
    // A non-string label value counts as absent.
    let odd = json!({"metadata": {"labels": {"app": 1}}});
    assert!(!lsel("app").matches_object(&odd));
    assert!(lsel("!app").matches_object(&odd));
}

#[test]
fn label_requires_exact_match() {
    let sel = lsel("app=web,tier in (a),env in (a,b),x!=y");
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("tier"), Some("a"));
    assert_eq!(sel.requires_exact_match("env"), None);
    assert_eq!(sel.requires_exact_match("x"), None);
    assert_eq!(sel.requires_exact_match("missing"), None);
}

#[test]
fn label_nul_ends_input_like_go() {
    // Go's lexer uses NUL as its end marker: at a token start it ends the selector.
    assert_eq!(lsel("app=web \0 ignored garbage ((("), lsel("app=web"));
    // ... so after a comma and a blank it leaves a trailing comma; right after a token
    // (even a comma) it only separates.
    label_err("app=web, \0x", "", 9);
    assert_eq!(lsel("app=web,\0x"), lsel("app=web,x"));
    label_err("app\0web", "web", 4);
}

#[test]
fn label_display_round_trips() {
    for (s, canonical) in [
        ("b=1,a=2", "a=2,b=1"),
        ("x in (c,a,b), y notin (z)", "x in (a,b,c),y notin (z)"),
        ("k in (,a)", "k in (,a)"),
        ("k in ()", "k in ()"),
        ("k=,j!=,i==", "i==,j!=,k="),
        ("n>5,n<10", "n>5,n<10"),
        ("!a,a", "!a,a"),
        ("a.b/c-d_e.F", "a.b/c-d_e.F"),
        ("in notin (in)", "in notin (in)"),
    ] {
        assert_label_round_trip(s, canonical);
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors: invalid input (each error names the token and its offset)
// ---------------------------------------------------------------------------------------------

#[test]
fn label_err_unbalanced_paren() {
    let err = label_err("a in (b", "", 7);
    assert_eq!(
        err.to_string(),
        r#"invalid label selector "a in (b": expected ',' or ')' after "b", found end of string at byte 7"#
    );
    label_err("a in (b,", "", 8);
    label_err("a in (b))", ")", 8);
    label_err("a in (", "", 6);
    label_err("a in b)", "b", 5);
}

#[test]
fn label_err_in_without_parens() {
    let err = label_err("env in dev", "dev", 7);
    assert!(
        err.to_string().contains("expected '(' after \"in\""),
        "{err}"
    );
    label_err("env notin", "", 9);
}

#[test]
fn label_err_bad_key() {
    let err = label_err("-app=web", "-app", 0);
    assert!(err.to_string().contains("invalid key"), "{err}");
    label_err("x=1, a/b/c", "a/b/c", 5);
    label_err("Example.com/name", "Example.com/name", 0);
    label_err("/name", "/name", 0);
    label_err("prefix/", "prefix/", 0);
    let long = "k".repeat(64);
    label_err(&long, &long, 0);
    label_err("!bad$key", "bad$key", 1);
    label_err("café=1", "café", 0);
}

#[test]
fn label_err_value_too_long_or_malformed() {
    let long = "v".repeat(64);
    let err = label_err(&format!("app={long}"), &long, 4);
    assert!(err.to_string().contains("no more than 63 bytes"), "{err}");
    label_err("app in (ok, b@d)", "b@d", 12);
    label_err("app=-web", "-web", 4);
    label_err("app in (ok,w$b)", "w$b", 11);
}

#[test]
fn label_err_extra_equals() {
    // `a=b=c`: the requirement `a=b` ends, then `=` is neither `,` nor the end.
    let err = label_err("a=b=c", "=", 3);
    assert!(
        err.to_string().contains("expected ',' or end of string"),
        "{err}"
    );
}

#[test]
fn label_err_missing_key() {
    label_err("=b", "=", 0);
    label_err("!", "", 1);
    label_err("!=x", "!=", 0);
    label_err("a,!(", "(", 3);
}

#[test]
fn label_err_non_integer_comparisons() {
    let err = label_err("a>b", "b", 2);
    assert!(
        err.to_string().contains("expected a 64-bit integer"),
        "{err}"
    );
    label_err("a>", "", 2);
    label_err("a<1.5", "1.5", 2);
    label_err("a>99999999999999999999", "99999999999999999999", 2);
    // Go's ParseInt accepts a sign, but a label value cannot start with one.
    let err = label_err("a>-1", "-1", 2);
    assert!(err.to_string().contains("invalid value"), "{err}");
    label_err("a<+1", "+1", 2);
}

#[test]
fn label_err_commas() {
    label_err("a=b,", "", 4);
    label_err(",a", ",", 0);
    label_err("a,,b", ",", 2);
    label_err(",", ",", 0);
}

#[test]
fn label_err_missing_operator_and_trailing_tokens() {
    let err = label_err("a b", "b", 2);
    assert!(err.to_string().contains("expected an operator"), "{err}");
    label_err("!a=b", "=", 2);
    label_err("a in (b c)", "c", 8);
    label_err("a in (=)", "=", 6);
    label_err("a=(b)", "(", 2);
    label_err("a in (b,=)", "=", 8);
}

#[test]
fn label_err_is_clipped_for_huge_input() {
    let huge = format!("a={}", "x".repeat(100_000));
    let err = LabelSelector::parse(&huge).unwrap_err();
    assert_eq!(err.position(), Some(2));
    assert!(
        err.to_string().len() < 1_000,
        "message length {}",
        err.to_string().len()
    );
}

#[test]
fn label_from_str_matches_parse() {
    let a: LabelSelector = "app=web".parse().unwrap();
    assert_eq!(a, lsel("app=web"));
    assert!("a in (".parse::<LabelSelector>().is_err());
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

fn pod(node: Option<&str>, phase: &str, ns: &str) -> Value {
    let mut pod = json!({
        "metadata": {"name": "web-0", "namespace": ns},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": phase}
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

#[test]
fn field_kubelet_node_name() {
    let sel = fsel("spec.nodeName=node1");
    assert_eq!(sel.requirements()[0].field, "spec.nodeName");
    assert_eq!(sel.requirements()[0].operator, FieldOperator::Equals);
    assert_eq!(sel.requirements()[0].value, "node1");
    assert!(sel.matches(&pod(Some("node1"), "Running", "default")));
    assert!(!sel.matches(&pod(Some("node2"), "Running", "default")));
    assert!(!sel.matches(&pod(None, "Pending", "default")));
}

#[test]
fn field_name_and_namespace() {
    let sel = fsel("metadata.name=x,metadata.namespace!=kube-system");
    let mut x = pod(None, "Running", "default");
    x["metadata"]["name"] = json!("x");
    assert!(sel.matches(&x));
    x["metadata"]["namespace"] = json!("kube-system");
    assert!(!sel.matches(&x));
    assert_eq!(
        sel.to_string(),
        "metadata.name=x,metadata.namespace!=kube-system"
    );
}

#[test]
fn field_kubectl_phase_filter() {
    let sel = fsel("status.phase!=Succeeded,status.phase!=Failed");
    assert!(sel.matches(&pod(Some("n"), "Running", "default")));
    assert!(sel.matches(&pod(Some("n"), "Pending", "default")));
    assert!(!sel.matches(&pod(Some("n"), "Failed", "default")));
    assert!(!sel.matches(&pod(Some("n"), "Succeeded", "default")));
    assert_eq!(
        sel.to_string(),
        "status.phase!=Failed,status.phase!=Succeeded"
    );
}

#[test]
fn field_missing_field_reads_empty() {
    let unscheduled = fsel("spec.nodeName=");
    assert!(unscheduled.matches(&pod(None, "Pending", "default")));
    assert!(!unscheduled.matches(&pod(Some("n"), "Running", "default")));
    let scheduled = fsel("spec.nodeName!=");
    assert!(scheduled.matches(&pod(Some("n"), "Running", "default")));
    assert!(!scheduled.matches(&pod(None, "Pending", "default")));
    assert!(fsel("spec.nodeName=").matches(&json!({"spec": {"nodeName": null}})));
    assert!(fsel("a.b.c!=x").matches(&json!({"a": "not an object"})));
}

#[test]
fn field_booleans_and_numbers_compare_as_json_text() {
    let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
    assert!(fsel("spec.unschedulable=true").matches(&node));
    assert!(!fsel("spec.unschedulable=false").matches(&node));
    let rs = json!({"spec": {"replicas": 3}, "status": {"replicas": 2}});
    assert!(fsel("spec.replicas=3").matches(&rs));
    assert!(fsel("status.replicas!=3").matches(&rs));
}

#[test]
fn field_computed_fields_use_apiserver_zero_values() {
    // The apiserver formats Go bools/ints, so an unset field reads "false"/"0", not "".
    let schedulable = json!({"metadata": {"name": "n1"}, "spec": {}});
    assert!(fsel("spec.unschedulable=false").matches(&schedulable));
    assert!(!fsel("spec.unschedulable=").matches(&schedulable));
    assert!(
        fsel("spec.nodeName=n,spec.hostNetwork=false").matches(&json!({"spec": {"nodeName": "n"}}))
    );
    assert!(fsel("status.replicas=0").matches(&json!({"status": {}})));
    let job = json!({"status": {"succeeded": 2}});
    assert!(fsel("status.successful=2").matches(&job));
    assert!(fsel("status.successful=0").matches(&json!({"status": {}})));
    let event = json!({"source": {"component": "kubelet", "host": "n1"}});
    assert!(fsel("source=kubelet").matches(&event));
    let new_event = json!({"source": {}, "reportingComponent": "scheduler"});
    assert!(fsel("source=scheduler").matches(&new_event));
}

#[test]
fn field_objects_and_arrays_never_equal() {
    let p = pod(Some("n"), "Running", "default");
    assert!(!fsel("spec.containers=x").matches(&p));
    assert!(fsel("spec.containers!=x").matches(&p));
    assert!(!fsel("metadata=").matches(&p));
    assert!(fsel("metadata!=").matches(&p));
}

#[test]
fn field_escaped_values() {
    let sel = fsel(r"metadata.name=a\,b\=c\\d,spec.nodeName=n");
    assert_eq!(sel.requirements()[0].value, r"a,b=c\d");
    assert!(sel.matches(&json!({"metadata": {"name": r"a,b=c\d"}, "spec": {"nodeName": "n"}})));
    assert_eq!(sel.to_string(), r"metadata.name=a\,b\=c\\d,spec.nodeName=n");
}

#[test]
fn field_err_invalid_escape() {
    let err = field_err(r"metadata.name=a\xb", r"\x", 15);
    assert!(err.to_string().contains("invalid escape sequence"), "{err}");
    field_err(r"metadata.name=ab\", r"\", 16);
    field_err(r"a=1,b=\n", r"\n", 6);
}

#[test]
fn field_err_unescaped_equals() {
    let err = field_err("a=b=c", "=", 3);
    assert!(err.to_string().contains("unescaped"), "{err}");
}

#[test]
fn field_err_missing_operator_names_the_term() {
    let err = field_err("spec.nodeName", "spec.nodeName", 0);
    assert!(err.to_string().contains("no operator"), "{err}");
    field_err("metadata.name=x,status.phase", "status.phase", 16);
    field_err("a!b", "a!b", 0);
    // Kubernetes sorts the raw terms first, so the first error is the smallest bad term.
    field_err("zz,aa", "aa", 3);
}

#[test]
fn field_empty_terms_and_empty_selectors() {
    for s in ["", ",", ",,", "=", "==", "!=", "=,,"] {
        let sel = fsel(s);
        assert!(sel.is_empty(), "{s:?}");
        assert_eq!(sel, FieldSelector::everything());
        assert!(sel.matches(&json!({})));
    }
    let sel = fsel(",spec.nodeName=n,");
    assert_eq!(sel.to_string(), "spec.nodeName=n");
    // An empty field with a value is kept (the apiserver's field conversion would refuse it).
    assert_eq!(fsel("=x").requirements()[0].field, "");
}

#[test]
fn field_double_equals_is_equality() {
    let sel = fsel("metadata.name==x");
    assert_eq!(sel.requirements()[0].operator, FieldOperator::Equals);
    assert_eq!(sel.to_string(), "metadata.name=x");
    assert_eq!(sel, fsel("metadata.name=x"));
}

#[test]
fn field_no_whitespace_trimming() {
    let sel = fsel("a = b");
    assert_eq!(sel.requirements()[0].field, "a ");
    assert_eq!(sel.requirements()[0].value, " b");
    assert!(sel.matches(&json!({"a ": " b"})));
}

#[test]
fn field_requires_exact_match() {
    let sel = fsel("metadata.namespace!=a,metadata.name=x,spec.nodeName!=n");
    assert_eq!(sel.requires_exact_match("metadata.name"), Some("x"));
    assert_eq!(sel.requires_exact_match("metadata.namespace"), None);
    assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
    assert_eq!(
        fsel("metadata.name==y").requires_exact_match("metadata.name"),
        Some("y")
    );
    assert_eq!(
        FieldSelector::everything().requires_exact_match("metadata.name"),
        None
    );
}

#[test]
fn field_display_round_trips() {
    for (s, canonical) in [
        ("spec.nodeName=node1", "spec.nodeName=node1"),
        ("b=1,a!=2", "a!=2,b=1"),
        ("a=x,a.b=y", "a.b=y,a=x"),
        (r"x=\,\=\\", r"x=\,\=\\"),
        ("a==b,a=c", "a=b,a=c"),
        (r"we\,ird=1", r"we\,ird=1"),
        (r"f\=x", r"f\=x"),
        ("=v", "=v"),
        ("a!b=c", "a!b=c"),
        ("x=é", "x=é"),
    ] {
        assert_field_round_trip(s, canonical);
    }
}

#[test]
fn field_from_str_matches_parse() {
    let a: FieldSelector = "spec.nodeName=n".parse().unwrap();
    assert_eq!(a, fsel("spec.nodeName=n"));
    assert!("nope".parse::<FieldSelector>().is_err());
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[test]
fn never_panics_and_round_trips_on_odd_input() {
    let inputs = [
        "",
        "(",
        ")",
        "!",
        "!!",
        "!!a",
        "a!",
        "=",
        "==",
        "===",
        "!==",
        "<",
        ">",
        "<>",
        "a<>b",
        "a in",
        "a in (",
        "a in ()",
        "a in (,)",
        "a in (,,)",
        "a notin ((",
        "a,",
        ",,",
        "\\",
        "a=\\",
        "\0",
        "a\0b",
        "a\0",
        "é",
        "a=é",
        "a in (é)",
        "x=y\u{7f}",
        "in",
        "notin",
        "!in",
        "in in in",
        "a (",
        "a=)",
        "k\t=\tv",
        "a>0",
        "a<0",
        "a>00",
        "a=b,c!=d,e in (f),!g,h",
        "a\\,b=c",
        "a=b\\,c",
        "a=b\\",
        "\\\\=\\\\",
        "a!!=b",
        "a=!=b",
        "a\n=b",
    ];
    for s in inputs {
        if let Ok(sel) = LabelSelector::parse(s) {
            let canonical = sel.to_string();
            assert_eq!(
                LabelSelector::parse(&canonical).as_ref(),
                Ok(&sel),
                "label {s:?}"
            );
            let _ = sel.matches_object(&json!({"metadata": {"labels": {"a": "1"}}}));
        }
        if let Ok(sel) = FieldSelector::parse(s) {
            let canonical = sel.to_string();
            assert_eq!(
                FieldSelector::parse(&canonical).as_ref(),
                Ok(&sel),
                "field {s:?}"
            );
            let _ = sel.matches(&json!({"a": {"b": [1]}}));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// metav1.LabelSelector conversion
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "crd")]
mod structured {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector as K8sSelector, LabelSelectorRequirement,
    };
    use pretty_assertions::assert_eq;

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn converts_match_labels_and_expressions() {
        let k = K8sSelector {
            match_labels: Some(BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                ("apps.openyurt.io/nodepool".to_owned(), "hz".to_owned()),
            ])),
            match_expressions: Some(vec![
                expr("tier", "In", Some(&["b", "a", "b"])),
                expr("env", "NotIn", Some(&["dev"])),
                expr("gpu", "Exists", None),
                expr("legacy", "DoesNotExist", Some(&[])),
            ]),
        };
        let sel = LabelSelector::try_from(&k).unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,apps.openyurt.io/nodepool=hz,env notin (dev),gpu,!legacy,tier in (a,b)"
        );
        assert_eq!(sel, lsel(&sel.to_string()));
        assert!(sel.matches(&labels(&[
            ("app", "web"),
            ("apps.openyurt.io/nodepool", "hz"),
            ("gpu", "1"),
            ("tier", "a"),
        ])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn empty_structured_selector_selects_everything() {
        let sel = LabelSelector::try_from(&K8sSelector::default()).unwrap();
        assert!(sel.is_empty());
        let sel = LabelSelector::try_from(&K8sSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        })
        .unwrap();
        assert!(sel.matches(&labels(&[])));
    }

    fn structured_err(k: &K8sSelector, token: &str, fragment: &str) {
        let err = LabelSelector::try_from(k).expect_err(fragment);
        assert_eq!(err.kind(), SelectorKind::Label);
        assert_eq!(err.token(), token, "{err}");
        assert_eq!(err.position(), None);
        assert_eq!(err.input(), None);
        let msg = err.to_string();
        assert!(msg.starts_with("invalid label selector: "), "{msg}");
        assert!(msg.contains(fragment), "{msg} should contain {fragment:?}");
    }

    #[test]
    fn refuses_what_label_selector_as_selector_refuses() {
        let one = |e| K8sSelector {
            match_labels: None,
            match_expressions: Some(vec![e]),
        };
        structured_err(
            &one(expr("a", "Equals", Some(&["x"]))),
            "Equals",
            r#"matchExpressions[0].operator: "Equals" is not a valid label selector operator"#,
        );
        structured_err(&one(expr("a", "In", Some(&[]))), "In", "must be non-empty");
        structured_err(&one(expr("a", "NotIn", None)), "NotIn", "must be non-empty");
        structured_err(
            &one(expr("a", "Exists", Some(&["x"]))),
            "x",
            "must be empty",
        );
        structured_err(
            &one(expr("a/b/c", "Exists", None)),
            "a/b/c",
            "matchExpressions[0].key",
        );
        structured_err(
            &one(expr("a", "In", Some(&["ok", "not ok"]))),
            "not ok",
            "values[1]",
        );
        structured_err(
            &K8sSelector {
                match_labels: Some(BTreeMap::from([("-bad".to_owned(), "v".to_owned())])),
                match_expressions: None,
            },
            "-bad",
            "matchLabels: invalid key",
        );
        structured_err(
            &K8sSelector {
                match_labels: Some(BTreeMap::from([("app".to_owned(), "x".repeat(64))])),
                match_expressions: None,
            },
            &"x".repeat(64),
            "no more than 63 bytes",
        );
    }
}
