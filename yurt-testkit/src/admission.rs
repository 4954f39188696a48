//! Dynamic admission: the mutating and validating webhooks registered by
//! `admissionregistration.k8s.io/v1` MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration objects, called as kube-apiserver calls them.
//!
//! On create, update (PUT and PATCH, also of subresources) and delete, the write path first runs
//! every matching mutating webhook, in configuration-name order and then in list order, each
//! seeing the previous one's result (webhooks with `reinvocationPolicy: IfNeeded` are called once
//! more if a later webhook changed the object); then, after the server's own defaulting and
//! validation, every matching validating webhook, in parallel. A webhook matches when one of its
//! `rules` names the operation, group, version, resource (`*`, `*/*`, `pods/status`, `pods/*`,
//! `*/status`) and scope, and its `namespaceSelector` (the namespace's labels; the object's own
//! for Namespaces; cluster-scoped objects always match) and `objectSelector` (the new or the old
//! object's labels) select the request. With `matchPolicy: Equivalent` (the default) a rule
//! naming another served version of the same resource matches too, and that webhook sees the
//! object in the version it named.
//!
//! Each call posts an `admission.k8s.io/v1` AdmissionReview (uid, kind, resource, subResource,
//! requestKind/Resource/SubResource, name, namespace, operation, userInfo, object, oldObject,
//! dryRun, options) and waits at most `timeoutSeconds` (default 10). A denial answers the
//! client with the webhook's Status (`admission webhook "<name>" denied the request: <message>`,
//! its code or 400); a failed call (unreachable, timed out, not 200, malformed answer) answers
//! 500 `Internal error occurred: failed calling webhook "<name>": …` when `failurePolicy` is
//! `Fail` (the default) and is ignored when it is `Ignore`. Mutations arrive as base64 JSONPatch
//! (`patchType: JSONPatch`) and are applied in order. A dry-run request reaches only webhooks
//! whose `sideEffects` is `None` or `NoneOnDryRun`; others fail it with 400. `warnings` become
//! `Warning` response headers. Requests for the webhook configuration kinds themselves are never
//! sent to webhooks (as kube-apiserver exempts them). How webhooks are reached (`url`, `service`,
//! `caBundle`) is described in the webhook client module.

use std::time::Duration;

use serde_json::{Value, json};
use yurt_core::status::Status;

use crate::convert::set_type;
use crate::handlers::{Ctx, Fail};
use crate::meta::{meta_str, metadata};
use crate::registry::{ResourceDef, Special};

/// The admission operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One request under admission: the objects in the served version of the request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub op: Operation,
    /// The new object (absent for DELETE).
    pub object: Option<Value>,
    /// The current object (UPDATE and DELETE).
    pub old_object: Option<Value>,
    /// The operation's options (`CreateOptions`, `UpdateOptions`, `PatchOptions`,
    /// `DeleteOptions`).
    pub options: Value,
}

impl Request {
    /// A request of `op` with the options kube-apiserver sends for it.
    pub(crate) fn new(
        ctx: &Ctx<'_>,
        op: Operation,
        object: Option<Value>,
        old_object: Option<Value>,
    ) -> Request {
        let options = options_for(ctx, op);
        Request {
            op,
            object,
            old_object,
            options,
        }
    }
}

/// The options object of the request, as the AdmissionReview carries it.
fn options_for(ctx: &Ctx<'_>, op: Operation) -> Value {
    let kind = match (op, ctx.parts.method.as_str()) {
        (Operation::Create, "PATCH") | (Operation::Update, "PATCH") => "PatchOptions",
        (Operation::Create, _) => "CreateOptions",
        (Operation::Update, _) => "UpdateOptions",
        (Operation::Delete, _) => "DeleteOptions",
    };
    let mut opts = json!({"apiVersion": "meta.k8s.io/v1", "kind": kind});
    if op == Operation::Delete {
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&ctx.body) {
            for (k, v) in body {
                if k != "apiVersion" && k != "kind" {
                    opts[k] = v;
                }
            }
        }
        if let Some(g) = ctx
            .query("gracePeriodSeconds")
            .and_then(|g| g.parse::<i64>().ok())
        {
            opts["gracePeriodSeconds"] = json!(g);
        }
        if let Some(p) = ctx.query("propagationPolicy") {
            opts["propagationPolicy"] = json!(p);
        }
    } else {
        if let Some(fm) = ctx.query("fieldManager") {
            opts["fieldManager"] = json!(fm);
        }
        if kind == "PatchOptions" && ctx.query("force").is_some_and(|f| f == "true") {
            opts["force"] = json!(true);
        }
    }
    if ctx.dry_run() {
        opts["dryRun"] = json!(["All"]);
    }
    opts
}

/// One webhook of a configuration, as read from the stored configuration object.
#[derive(Debug, Clone)]
struct Hook {
    name: String,
    client_config: Value,
    rules: Vec<Value>,
    fail: bool,
    equivalent: bool,
    namespace_selector: Value,
    object_selector: Value,
    side_effects: String,
    timeout: Duration,
    reinvoke: bool,
}

/// The webhooks of every configuration of `plural` (sorted by configuration name, then in
/// list order).
fn hooks(ctx: &Ctx<'_>, plural: &str) -> Vec<Hook> {
    let storage = format!("admissionregistration.k8s.io/{plural}");
    let mut configs = ctx.shared.store.read(|t| t.list(&storage, None));
    configs.sort_by(|a, b| meta_str(&a.1.value, "name").cmp(meta_str(&b.1.value, "name")));
    let mut out = Vec::new();
    for (_, config) in configs {
        if crate::meta::is_terminating(&config.value) {
            continue;
        }
        for w in config.value["webhooks"].as_array().into_iter().flatten() {
            out.push(Hook {
                name: w["name"].as_str().unwrap_or_default().to_owned(),
                client_config: w["clientConfig"].clone(),
                rules: w["rules"].as_array().cloned().unwrap_or_default(),
                fail: w["failurePolicy"].as_str() != Some("Ignore"),
                equivalent: w["matchPolicy"].as_str() != Some("Exact"),
                namespace_selector: w["namespaceSelector"].clone(),
                object_selector: w["objectSelector"].clone(),
                side_effects: w["sideEffects"].as_str().unwrap_or("Unknown").to_owned(),
                timeout: Duration::from_secs(w["timeoutSeconds"].as_u64().unwrap_or(10).max(1)),
                reinvoke: w["reinvocationPolicy"].as_str() == Some("IfNeeded"),
            });
        }
    }
    out
}

/// Whether one rule names the request.
fn rule_matches(rule: &Value, op: Operation, def: &ResourceDef, sub: &str) -> bool {
    let has = |field: &str, want: &str| {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|v| v == "*" || v == want)
    };
    if !has("operations", op.as_str())
        || !has("apiGroups", &def.group)
        || !has("apiVersions", &def.version)
    {
        return false;
    }
    let resource = &def.plural;
    let resource_ok = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| {
            if r == "*/*" {
                return true;
            }
            if sub.is_empty() {
                r == "*" || r == resource
            } else {
                let (rr, rs) = r.split_once('/').unwrap_or((r, ""));
                (rr == "*" || rr == resource) && (rs == "*" || rs == sub)
            }
        });
    if !resource_ok {
        return false;
    }
    match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !def.namespaced,
        "Namespaced" => def.namespaced,
        _ => true,
    }
}

/// The definition a hook sees the request as: the request's own when a rule names it, else
/// (`matchPolicy: Equivalent`) another served version of the same resource a rule names.
fn matched_def(ctx: &Ctx<'_>, hook: &Hook, op: Operation) -> Option<std::sync::Arc<ResourceDef>> {
    let sub = ctx.info.subresource.as_str();
    if hook
        .rules
        .iter()
        .any(|r| rule_matches(r, op, &ctx.def, sub))
    {
        return Some(ctx.def.clone());
    }
    if !hook.equivalent {
        return None;
    }
    let mut others: Vec<_> = ctx
        .shared
        .registry()
        .all()
        .filter(|d| {
            d.behaviour.storage_key == ctx.def.behaviour.storage_key
                && d.group == ctx.def.group
                && d.version != ctx.def.version
        })
        .cloned()
        .collect();
    others.sort_by(|a, b| a.version.cmp(&b.version));
    others
        .into_iter()
        .find(|d| hook.rules.iter().any(|r| rule_matches(r, op, d, sub)))
}

/// Whether a `metav1.LabelSelector` (JSON) selects `labels`; an absent selector selects all.
pub(crate) fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(ml) = selector["matchLabels"].as_object() {
        for (k, v) in ml {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let have = label(key);
        let ok = match expr["operator"].as_str().unwrap_or_default() {
            "In" => have.is_some_and(|h| values.contains(&h)),
            "NotIn" => have.is_none_or(|h| !values.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn labels_of(obj: Option<&Value>) -> Value {
    obj.and_then(metadata)
        .and_then(|m| m.get("labels"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Whether the hook's namespace and object selectors select the request.
fn selectors_match(ctx: &Ctx<'_>, hook: &Hook, req: &Request) -> bool {
    if !hook.namespace_selector.is_null() {
        let ns_labels = if ctx.def.behaviour.special == Special::Namespace {
            Some(labels_of(req.object.as_ref().or(req.old_object.as_ref())))
        } else if ctx.def.namespaced {
            let ns = ctx
                .shared
                .store
                .read(|t| t.get("/namespaces", &ctx.namespace));
            Some(labels_of(ns.as_ref().map(|o| &o.value)))
        } else {
            None
        };
        if let Some(labels) = ns_labels
            && !selector_matches(&hook.namespace_selector, &labels)
        {
            return false;
        }
    }
    if !hook.object_selector.is_null() {
        let new = selector_matches(&hook.object_selector, &labels_of(req.object.as_ref()));
        let old = req.old_object.is_some()
            && selector_matches(&hook.object_selector, &labels_of(req.old_object.as_ref()));
        if !(new || old) {
            return false;
        }
    }
    true
}

fn gvk(def: &ResourceDef, sub: &str) -> Value {
    match def.subresource(sub) {
        Some(s) if !s.kind.is_empty() => json!({
            "group": s.group.clone().unwrap_or_else(|| def.group.clone()),
            "version": s.version.clone().unwrap_or_else(|| def.version.clone()),
            "kind": s.kind,
        }),
        _ => json!({"group": def.group, "version": def.version, "kind": def.kind}),
    }
}

fn gvr(def: &ResourceDef) -> Value {
    json!({"group": def.group, "version": def.version, "resource": def.plural})
}

/// The AdmissionReview sent to a hook that matched as `seen` (the objects converted to its
/// version).
async fn review(
    ctx: &Ctx<'_>,
    seen: &ResourceDef,
    req: &Request,
    uid: &str,
) -> Result<Value, Fail> {
    let sub = ctx.info.subresource.as_str();
    let mut objects = [Value::Null, Value::Null];
    for (slot, o) in objects.iter_mut().zip([&req.object, &req.old_object]) {
        if let Some(v) = o {
            *slot = crate::conversion::between(ctx.shared, &ctx.def, seen, v).await?;
        }
    }
    let [object, old_object] = objects;
    let name = req
        .object
        .as_ref()
        .or(req.old_object.as_ref())
        .map(|o| meta_str(o, "name").to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ctx.info.name.clone());
    let mut r = json!({
        "uid": uid,
        "kind": gvk(seen, sub),
        "resource": gvr(seen),
        "requestKind": gvk(&ctx.def, sub),
        "requestResource": gvr(&ctx.def),
        "operation": req.op.as_str(),
        "userInfo": {"username": ctx.user.user, "groups": ctx.user.groups},
        "object": object,
        "oldObject": old_object,
        "dryRun": ctx.dry_run(),
        "options": req.options,
    });
    if !sub.is_empty() {
        r["subResource"] = json!(sub);
        r["requestSubResource"] = json!(sub);
    }
    if !name.is_empty() {
        r["name"] = json!(name);
    }
    if !ctx.namespace.is_empty() {
        r["namespace"] = json!(ctx.namespace);
    }
    Ok(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r}))
}

/// The hooks of `plural` that apply to the request, each with the definition it sees.
fn applicable(
    ctx: &Ctx<'_>,
    plural: &str,
    req: &Request,
) -> Vec<(Hook, std::sync::Arc<ResourceDef>)> {
    if ctx.def.group == "admissionregistration.k8s.io" {
        return Vec::new();
    }
    hooks(ctx, plural)
        .into_iter()
        .filter_map(|h| {
            let seen = matched_def(ctx, &h, req.op)?;
            selectors_match(ctx, &h, req).then_some((h, seen))
        })
        .collect()
}

/// Calls one hook; `Ok(None)` when the failure is ignored, `Ok(Some(response))` otherwise.
async fn call(
    ctx: &Ctx<'_>,
    hook: &Hook,
    seen: &ResourceDef,
    req: &Request,
) -> Result<Option<Value>, Fail> {
    if ctx.dry_run() && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(Status::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))
        .into());
    }
    let uid = crate::meta::new_uid();
    let body = review(ctx, seen, req, &uid).await?;
    let outcome = async {
        let target = crate::webhook::resolve(ctx.shared, &hook.client_config, hook.timeout)
            .await
            .map_err(|e| format!("failed to call webhook: {e}"))?;
        let answer = crate::webhook::post(&target, &body, hook.timeout)
            .await
            .map_err(|e| format!("failed to call webhook: {e}"))?;
        check_answer(&answer, &uid).map_err(|e| format!("received invalid webhook response: {e}"))
    }
    .await;
    match outcome {
        Ok(resp) => {
            for w in resp["warnings"].as_array().into_iter().flatten() {
                if let Some(w) = w.as_str() {
                    ctx.warn(w);
                }
            }
            Ok(Some(resp))
        }
        Err(why) if hook.fail => {
            Err(Status::internal(format!("failed calling webhook {:?}: {why}", hook.name)).into())
        }
        Err(why) => {
            tracing::warn!(webhook = %hook.name, "failed calling webhook, failing open: {why}");
            Ok(None)
        }
    }
}

/// Checks the AdmissionReview a webhook answered with; returns its `response`.
fn check_answer(answer: &Value, uid: &str) -> Result<Value, String> {
    let av = answer["apiVersion"].as_str().unwrap_or("");
    let kind = answer["kind"].as_str().unwrap_or("");
    if av != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {av}, Kind={kind}"
        ));
    }
    let resp = answer
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got = resp["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let has_patch = resp["patch"].as_str().is_some_and(|p| !p.is_empty());
    match (has_patch, resp["patchType"].as_str()) {
        (true, None) => {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        (false, Some(_)) => {
            return Err("webhook returned response.patchType but not response.patch".into());
        }
        (_, Some(pt)) if pt != "JSONPatch" => {
            return Err(format!(
                "webhook returned invalid response.patchType of {pt:?}"
            ));
        }
        _ => {}
    }
    Ok(resp.clone())
}

/// The error a denial answers with: the webhook's Status, code at least 400, message prefixed.
fn denial(hook: &str, result: &Value) -> Box<Status> {
    let mut st = match result {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    st["kind"] = json!("Status");
    st["apiVersion"] = json!("v1");
    st["metadata"] = json!({});
    let code = st["code"].as_u64().unwrap_or(0);
    if code < 400 {
        st["code"] = json!(400);
    }
    if matches!(st["status"].as_str(), None | Some("") | Some("Success")) {
        st["status"] = json!("Failure");
    }
    let denied = format!("admission webhook {hook:?} denied the request");
    let message = st["message"].as_str().unwrap_or("").to_owned();
    let reason = st["reason"].as_str().unwrap_or("").to_owned();
    st["message"] = json!(if !message.is_empty() {
        format!("{denied}: {message}")
    } else if !reason.is_empty() {
        format!("{denied}: {reason}")
    } else {
        format!("{denied} without explanation")
    });
    if reason.is_empty()
        && let Some(m) = st.as_object_mut()
    {
        m.remove("reason");
    }
    match serde_json::from_value::<Status>(st) {
        Ok(s) => Box::new(s),
        Err(e) => Box::new(Status::internal(e)),
    }
}

/// Runs the mutating webhooks on `req`; answers the changed object, or `None` when no webhook
/// changed it.
pub(crate) async fn mutate(ctx: &Ctx<'_>, mut req: Request) -> Result<Option<Value>, Fail> {
    let hooks = applicable(ctx, "mutatingwebhookconfigurations", &req);
    if hooks.is_empty() {
        return Ok(None);
    }
    let first = req.object.clone();
    // The object after each hook's call, to find IfNeeded hooks to call again.
    let mut after: Vec<Option<Value>> = Vec::with_capacity(hooks.len());
    for (hook, seen) in &hooks {
        apply_hook(ctx, hook, seen, &mut req).await?;
        after.push(req.object.clone());
    }
    let last = req.object.clone();
    for ((hook, seen), state) in hooks.iter().zip(after) {
        if hook.reinvoke && state != last {
            apply_hook(ctx, hook, seen, &mut req).await?;
        }
    }
    Ok((req.object != first).then_some(req.object).flatten())
}

/// Calls one mutating hook and applies its patch.
async fn apply_hook(
    ctx: &Ctx<'_>,
    hook: &Hook,
    seen: &ResourceDef,
    req: &mut Request,
) -> Result<(), Fail> {
    let Some(resp) = call(ctx, hook, seen, req).await? else {
        return Ok(());
    };
    if resp["allowed"] != Value::Bool(true) {
        return Err(denial(&hook.name, &resp["status"]));
    }
    let Some(patch_b64) = resp["patch"].as_str().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let Some(object) = req.object.take() else {
        return Ok(());
    };
    use base64::Engine as _;
    let mut doc = crate::conversion::between(ctx.shared, &ctx.def, seen, &object).await?;
    base64::engine::general_purpose::STANDARD
        .decode(patch_b64)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            serde_json::from_slice::<json_patch::Patch>(&raw).map_err(|e| e.to_string())
        })
        .and_then(|patch| json_patch::patch(&mut doc, &patch).map_err(|e| e.to_string()))
        .map_err(|e| Box::new(Status::internal(e)))?;
    if !doc.is_object() {
        return Err(Status::internal("the patched object is not a JSON object").into());
    }
    let mut back = crate::conversion::between(ctx.shared, seen, &ctx.def, &doc).await?;
    set_type(&mut back, &ctx.def);
    req.object = Some(back);
    Ok(())
}

/// Runs the validating webhooks on `req` (in parallel); the first denial or failure, in
/// webhook order, fails the request.
pub(crate) async fn validate(ctx: &Ctx<'_>, req: &Request) -> Result<(), Fail> {
    let hooks = applicable(ctx, "validatingwebhookconfigurations", req);
    if hooks.is_empty() {
        return Ok(());
    }
    let calls = hooks.iter().map(|(hook, seen)| async move {
        match call(ctx, hook, seen, req).await? {
            Some(resp) if resp["allowed"] != Value::Bool(true) => {
                Err(denial(&hook.name, &resp["status"]))
            }
            _ => Ok(()),
        }
    });
    for outcome in futures::future::join_all(calls).await {
        outcome?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn rules_match_resources_and_subresources() {
        let reg = Registry::builtin();
        let pods = reg.get("", "v1", "pods").unwrap();
        let nodes = reg.get("", "v1", "nodes").unwrap();
        let rule = |res: &[&str], scope: &str| {
            json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": res, "scope": scope})
        };
        let c = Operation::Create;
        assert!(rule_matches(&rule(&["pods"], "*"), c, &pods, ""));
        assert!(!rule_matches(&rule(&["pods"], "*"), c, &pods, "status"));
        assert!(rule_matches(
            &rule(&["pods/status"], "*"),
            c,
            &pods,
            "status"
        ));
        assert!(rule_matches(&rule(&["pods/*"], "*"), c, &pods, "status"));
        assert!(!rule_matches(&rule(&["pods/*"], "*"), c, &pods, ""));
        assert!(rule_matches(&rule(&["*/status"], "*"), c, &pods, "status"));
        assert!(rule_matches(&rule(&["*"], "*"), c, &nodes, ""));
        assert!(!rule_matches(&rule(&["*"], "*"), c, &nodes, "status"));
        assert!(rule_matches(&rule(&["*/*"], "*"), c, &nodes, "status"));
        assert!(!rule_matches(&rule(&["*"], "Namespaced"), c, &nodes, ""));
        assert!(rule_matches(&rule(&["*"], "Cluster"), c, &nodes, ""));
        assert!(!rule_matches(
            &rule(&["pods"], "*"),
            Operation::Delete,
            &pods,
            ""
        ));
    }

    #[test]
    fn label_selectors() {
        let labels = json!({"a": "1", "b": "2"});
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(
            &json!({"matchLabels": {"a": "1"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"a": "2"}}),
            &labels
        ));
        let expr = |op: &str, vals: &[&str]| json!({"matchExpressions": [{"key": "b", "operator": op, "values": vals}]});
        assert!(selector_matches(&expr("In", &["2", "3"]), &labels));
        assert!(!selector_matches(&expr("NotIn", &["2"]), &labels));
        assert!(selector_matches(&expr("Exists", &[]), &labels));
        assert!(!selector_matches(&expr("DoesNotExist", &[]), &labels));
        assert!(selector_matches(&expr("DoesNotExist", &[]), &Value::Null));
    }

    #[test]
    fn denials_are_worded_as_the_apiserver_words_them() {
        let st = denial(
            "v.example.com",
            &json!({"message": "no", "code": 403, "reason": "Forbidden"}),
        );
        assert_eq!(st.code, 403);
        assert_eq!(
            st.message,
            r#"admission webhook "v.example.com" denied the request: no"#
        );
        let st = denial("v.example.com", &Value::Null);
        assert_eq!(st.code, 400);
        assert!(st.reason.is_none());
        assert_eq!(
            st.message,
            r#"admission webhook "v.example.com" denied the request without explanation"#
        );
    }
}
