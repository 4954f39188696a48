//! Subresources and create-only resources.
//!
//! - `status` (every resource that declares it), `approval` (CSRs), `finalize` (namespaces),
//!   `ephemeralcontainers` and `resize` (pods): get, update and patch of the parent object,
//!   where only the subresource's part of the object may change (see [`super::write`]);
//! - `scale`: the `autoscaling/v1` Scale view of workloads and of custom resources that declare
//!   a scale subresource (replicas and selector read from, and written to, the configured paths);
//! - `pods/binding`, the `bindings` resource, and `pods/eviction` (without disruption budgets);
//! - `serviceaccounts/token`: issues a token the server then accepts as that service account;
//! - reviews (`selfsubjectreviews`, `tokenreviews`, `*subjectaccessreviews`,
//!   `selfsubjectrulesreviews`): answered from the authenticator, and "allowed" for everything,
//!   since the test apiserver does not authorize;
//! - `log` (after the same checks on the pod and node as the others): the pod's canned text
//!   (`TestApiServer::set_pod_log`), empty without one; `follow=true` keeps the stream open;
//! - `exec`, `attach`, `portforward`, `proxy`: kube-apiserver forwards these to a kubelet or a
//!   pod; the test apiserver has none to reach, so it answers as a real apiserver does when the
//!   backend cannot be dialed (after the same checks on the pod and node).

use futures::StreamExt as _;
use http::StatusCode;
use serde_json::{Value, json};
use yurt_core::patch::{PatchType, apply_patch};
use yurt_core::request::Verb;
use yurt_core::status::Status;

use super::delete::{DeleteOpts, Deleted, delete_one};
use super::{Ctx, Fail, Reply};
use crate::body;
use crate::meta::{self, meta_str, metadata_mut};
use crate::registry::Special;
use crate::storage::object_key;

/// Routes a subresource request.
pub(crate) async fn dispatch(ctx: &Ctx<'_>, sub: &str, verb: &Verb) -> Reply {
    let def = &ctx.def;
    let Some(s) = def.subresource(sub) else {
        return Err(Status::path_not_found().into());
    };
    if matches!(sub, "log" | "exec" | "attach" | "portforward" | "proxy") {
        return kubelet(ctx, sub);
    }
    let verb_name = verb.as_str();
    if !s.verbs.iter().any(|v| v == verb_name) {
        return Err(Status::method_not_supported(
            &def.group,
            &format!("{}/{sub}", def.plural),
            verb_name,
        )
        .into());
    }
    match (sub, verb) {
        ("scale", Verb::Get | Verb::Update | Verb::Patch) => scale(ctx, verb).await,
        (_, Verb::Get) => super::read::get(ctx).await,
        (_, Verb::Update) => super::write::update(ctx, Some(sub)).await,
        (_, Verb::Patch) => super::write::patch(ctx, Some(sub)).await,
        ("binding", Verb::Create) => {
            let body = ctx.body_object()?;
            bind(ctx, &ctx.info.name, &body)
        }
        ("eviction", Verb::Create) => evict(ctx),
        ("token", Verb::Create) => token(ctx),
        _ => Err(Status::method_not_supported(
            &def.group,
            &format!("{}/{sub}", def.plural),
            verb_name,
        )
        .into()),
    }
}

/// POST to a create-only resource.
pub(crate) fn virtual_create(ctx: &Ctx<'_>) -> Reply {
    let mut body = ctx.body_object()?;
    super::write::check_type(&ctx.def, &mut body)?;
    if ctx.def.plural == "bindings" {
        let pod = meta_str(&body, "name").to_owned();
        return bind(ctx, &pod, &body);
    }
    let user = &ctx.user;
    let status = match ctx.def.plural.as_str() {
        "selfsubjectreviews" => json!({"userInfo": {"username": user.user, "groups": user.groups}}),
        "tokenreviews" => {
            let token = body["spec"]["token"].as_str().unwrap_or("");
            let tokens = ctx.shared.tokens.read().unwrap_or_else(|e| e.into_inner());
            match tokens.get(token) {
                Some(id) => {
                    let id = id.clone().authenticated();
                    json!({"authenticated": true, "user": {"username": id.user, "groups": id.groups},
                        "audiences": body["spec"]["audiences"].as_array().cloned().unwrap_or_default()})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false
        }),
        _ => {
            json!({"allowed": true, "reason": "the yurt-testkit apiserver authorizes every request"})
        }
    };
    let map = body.as_object_mut().expect("object");
    map.insert("status".into(), status);
    let m = metadata_mut(&mut body);
    m.entry("creationTimestamp").or_insert(Value::Null);
    Ok(body::json_value(StatusCode::CREATED, &body))
}

/// Binds a pod to the node named in `binding.target`.
fn bind(ctx: &Ctx<'_>, pod: &str, binding: &Value) -> Reply {
    let node = binding["target"]["name"].as_str().unwrap_or("").to_owned();
    if node.is_empty() {
        return Err(Status::invalid("", "Binding", pod, "target.name: Required value").into());
    }
    let storage = crate::registry::storage_key("", "pods");
    let key = object_key(&ctx.namespace, pod);
    ctx.shared.store.write(|t| -> Result<(), Fail> {
        let obj = t
            .get(&storage, &key)
            .ok_or_else(|| Status::not_found("", "pods", pod))?;
        if meta::is_terminating(&obj.value) {
            return Err(Status::conflict(
                "",
                "pods/binding",
                pod,
                &format!("pod {pod} is being deleted, cannot be assigned to a host"),
            )
            .into());
        }
        let current = obj.value["spec"]["nodeName"].as_str().unwrap_or("");
        if !current.is_empty() {
            return Err(Status::conflict(
                "",
                "pods/binding",
                pod,
                &format!("pod {pod} is already assigned to node \"{current}\""),
            )
            .into());
        }
        let mut v = obj.value.clone();
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        for field in ["annotations", "labels"] {
            if let Some(extra) = binding["metadata"][field].as_object() {
                let m = metadata_mut(&mut v);
                let target = m.entry(field).or_insert_with(|| json!({}));
                if let Some(tm) = target.as_object_mut() {
                    for (k, val) in extra {
                        tm.insert(k.clone(), val.clone());
                    }
                }
            }
        }
        super::delete::set_condition(&mut v, "PodScheduled", "True", "", "");
        if let Some(c) = v["status"]["conditions"]
            .as_array_mut()
            .and_then(|cs| cs.iter_mut().find(|c| c["type"] == "PodScheduled"))
            && let Some(co) = c.as_object_mut()
        {
            co.remove("reason");
            co.remove("message");
        }
        if !ctx.dry_run() {
            t.put(&storage, &key, v);
        }
        Ok(())
    })?;
    let mut st = Status::success();
    st.code = 201;
    Ok(body::json(StatusCode::CREATED, st.to_json()))
}

/// Evicts a pod: deletes it with the eviction's delete options (no disruption budgets).
fn evict(ctx: &Ctx<'_>) -> Reply {
    let body = ctx.body_object()?;
    let mut opts = DeleteOpts::default();
    let dopts = &body["deleteOptions"];
    opts.grace = dopts["gracePeriodSeconds"].as_i64();
    opts.uid = dopts["preconditions"]["uid"].as_str().map(str::to_owned);
    opts.resource_version = dopts["preconditions"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);
    let key = object_key(&ctx.namespace, &ctx.info.name);
    let dry_run = ctx.dry_run();
    let outcome = ctx
        .shared
        .store
        .write(|t| delete_one(&ctx.def, t, &key, &opts, dry_run))?;
    let _: &Deleted = &outcome;
    let mut st = Status::success();
    st.code = 201;
    Ok(body::json(StatusCode::CREATED, st.to_json()))
}

/// Issues a service account token.
fn token(ctx: &Ctx<'_>) -> Reply {
    use base64::Engine as _;
    let mut body = ctx.body_object()?;
    let name = ctx.info.name.clone();
    let key = object_key(&ctx.namespace, &name);
    let sa = ctx
        .shared
        .store
        .read(|t| t.get(ctx.storage(), &key))
        .ok_or_else(|| ctx.not_found(&name))?;
    let expiration = body["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(3600)
        .max(600);
    let audiences = body["spec"]["audiences"]
        .as_array()
        .filter(|a| !a.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!("https://kubernetes.default.svc.cluster.local")]);
    let now = meta::unix_now();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let sub = format!("system:serviceaccount:{}:{name}", ctx.namespace);
    let claims = json!({
        "aud": audiences, "exp": now + expiration, "iat": now, "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local", "sub": sub,
        "kubernetes.io": {"namespace": ctx.namespace,
            "serviceaccount": {"name": name, "uid": meta_str(&sa.value, "uid")}}
    });
    let token = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "RS256", "kid": "yurt-testkit"})),
        b64(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{:016x}{:016x}",
            meta::random_u64(),
            meta::random_u64()
        ))
    );
    let ns_group = format!("system:serviceaccounts:{}", ctx.namespace);
    ctx.shared
        .tokens
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            token.clone(),
            crate::server::Identity::new(&sub, &["system:serviceaccounts", &ns_group]),
        );
    let map = body.as_object_mut().expect("object");
    map.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    map.insert("kind".into(), json!("TokenRequest"));
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    if let Some(s) = spec.as_object_mut() {
        s.insert("audiences".into(), json!(audiences));
        s.insert("expirationSeconds".into(), json!(expiration));
    }
    map.insert(
        "status".into(),
        json!({"token": token, "expirationTimestamp": meta::rfc3339(now + expiration)}),
    );
    let m = metadata_mut(&mut body);
    m.insert("name".into(), json!(name));
    m.insert("namespace".into(), json!(ctx.namespace));
    m.insert("creationTimestamp".into(), json!(meta::rfc3339(now)));
    Ok(body::json_value(StatusCode::CREATED, &body))
}

/// JSON paths (dotted, without the leading `.`) of a scalable resource's replicas and selector.
struct ScalePaths {
    spec_replicas: String,
    status_replicas: String,
    selector: Option<String>,
    /// Whether the selector is a `metav1.LabelSelector` (built-ins) rather than a string.
    structured_selector: bool,
}

fn scale_paths(ctx: &Ctx<'_>) -> ScalePaths {
    if let Special::CustomResource(crd_name) = &ctx.def.behaviour.special {
        let crd = ctx
            .shared
            .store
            .read(|t| t.get("apiextensions.k8s.io/customresourcedefinitions", crd_name));
        let scale = crd.and_then(|c| {
            c.value["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == ctx.def.version.as_str())
                .map(|v| v["subresources"]["scale"].clone())
        });
        let path = |v: &Value, k: &str, d: &str| {
            v[k].as_str()
                .unwrap_or(d)
                .trim_start_matches('.')
                .to_owned()
        };
        let scale = scale.unwrap_or(Value::Null);
        return ScalePaths {
            spec_replicas: path(&scale, "specReplicasPath", ".spec.replicas"),
            status_replicas: path(&scale, "statusReplicasPath", ".status.replicas"),
            selector: scale["labelSelectorPath"]
                .as_str()
                .map(|s| s.trim_start_matches('.').to_owned()),
            structured_selector: false,
        };
    }
    ScalePaths {
        spec_replicas: "spec.replicas".into(),
        status_replicas: "status.replicas".into(),
        selector: Some("spec.selector".into()),
        structured_selector: true,
    }
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, seg| cur.get(seg))
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            map.insert((*seg).to_owned(), value);
            return;
        }
        cur = map.entry(*seg).or_insert_with(|| json!({}));
    }
}

/// A label selector object as its string form (`a=b,c in (d)`).
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel["matchLabels"].as_object() {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// The Scale view of an object.
fn scale_of(ctx: &Ctx<'_>, obj: &Value, paths: &ScalePaths) -> Value {
    let m = crate::meta::metadata(obj).cloned().unwrap_or_default();
    let selector = paths
        .selector
        .as_deref()
        .and_then(|p| get_path(obj, p))
        .map(|s| {
            if paths.structured_selector {
                json!(selector_string(s))
            } else {
                s.clone()
            }
        });
    let mut status =
        json!({"replicas": get_path(obj, &paths.status_replicas).cloned().unwrap_or(json!(0))});
    if let Some(sel) = selector {
        status["selector"] = sel;
    }
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp")},
        "spec": {"replicas": get_path(obj, &paths.spec_replicas).cloned().unwrap_or(json!(if ctx.def.behaviour.special == Special::None { 1 } else { 0 }))},
        "status": status,
    })
}

/// GET, PUT and PATCH of `scale`.
async fn scale(ctx: &Ctx<'_>, verb: &Verb) -> Reply {
    let paths = scale_paths(ctx);
    let key = object_key(&ctx.namespace, &ctx.info.name);
    if *verb == Verb::Get {
        let obj = ctx
            .shared
            .store
            .read(|t| t.get(ctx.storage(), &key))
            .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
        return Ok(body::json_value(
            StatusCode::OK,
            &scale_of(ctx, &obj.value, &paths),
        ));
    }
    let ct = ctx
        .parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = ctx.body.clone();
    let is_patch = *verb == Verb::Patch;
    let written = super::write::write_update(
        ctx,
        &key,
        |old| {
            let current = scale_of(ctx, old, &paths);
            let new_scale = if is_patch {
                let pt = PatchType::from_content_type(&ct).ok_or_else(|| {
                    Status::unsupported_media_type(&PatchType::ALL.map(|p| p.content_type()))
                })?;
                apply_patch(pt, &current, &body, ("autoscaling", "v1", "Scale"))
                    .map_err(|e| e.status())?
            } else {
                super::decode_object(&ctx.parts.headers, &body)?
            };
            let rv = meta_str(&new_scale, "resourceVersion");
            if !rv.is_empty() && rv != meta_str(old, "resourceVersion") {
                return Err(Status::conflict(&ctx.def.group, &ctx.def.plural, &ctx.info.name,
                    "the object has been modified; please apply your changes to the latest version and try again").into());
            }
            let replicas = new_scale["spec"]["replicas"].clone();
            let mut v = old.clone();
            set_path(
                &mut v,
                &paths.spec_replicas,
                if replicas.is_null() {
                    json!(0)
                } else {
                    replicas
                },
            );
            Ok(v)
        },
        None,
    )
    .await?;
    let value = match &written {
        super::write::Written::Stored(o) => o.value.clone(),
        super::write::Written::Value(v) => v.clone(),
    };
    Ok(body::json_value(
        StatusCode::OK,
        &scale_of(ctx, &value, &paths),
    ))
}

/// The kubelet-proxied subresources: checked as kube-apiserver checks them, then answered as
/// when the kubelet cannot be dialed.
fn kubelet(ctx: &Ctx<'_>, sub: &str) -> Reply {
    let key = object_key(&ctx.namespace, &ctx.info.name);
    let obj = ctx
        .shared
        .store
        .read(|t| t.get(ctx.storage(), &key))
        .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
    if ctx.def.behaviour.special == Special::Pod {
        let node = obj.value["spec"]["nodeName"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if node.is_empty() {
            if sub == "log" {
                return Ok(body::text(StatusCode::OK, ""));
            }
            return Err(Status::bad_request(format!(
                "pod {} does not have a host assigned",
                ctx.info.name
            ))
            .into());
        }
        if ctx.shared.store.read(|t| t.get("/nodes", &node)).is_none() {
            return Err(Status::not_found("", "nodes", &node).into());
        }
        if sub == "log" {
            return pod_log(ctx, &obj.value);
        }
    }
    Err(Status::internal(format!(
        "error dialing backend: the yurt-testkit apiserver does not connect to kubelets or pods ({}/{sub})",
        ctx.def.plural
    )).into())
}

/// `pods/log` of an existing pod on an existing node. The container is checked as the
/// apiserver checks it (`container` may be omitted only for a single-container pod). The text
/// is the one set with [`set_pod_log`](crate::TestApiServer::set_pod_log), else a few
/// deterministic lines naming the pod, container and node (no container runs here, but
/// `kubectl logs` should show something); `tailLines` keeps the last lines, `timestamps`
/// prefixes the pod's creation time. With `follow=true` the stream then stays open until the
/// client goes away, the watches are cut, or the minimum request timeout.
fn pod_log(ctx: &Ctx<'_>, pod: &Value) -> Reply {
    let name = &ctx.info.name;
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (containers, init) = (names("containers"), names("initContainers"));
    let container = match ctx.query("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.contains(&c)
                && !init.contains(&c)
                && !names("ephemeralContainers").contains(&c)
            {
                return Err(Status::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                ))
                .into());
            }
            c
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            return Err(Status::bad_request(msg).into());
        }
    };
    let tail = match ctx.query("tailLines") {
        None => None,
        Some(t) => Some(t.parse::<usize>().map_err(|_| {
            Status::bad_request(format!(
                "tailLines: invalid value {t:?}: must be a non-negative integer"
            ))
        })?),
    };
    let canned = ctx
        .shared
        .pod_logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(ctx.namespace.clone(), name.clone()))
        .cloned();
    let text = canned.unwrap_or_else(|| {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        format!(
            "yurt-testkit canned log: pod {}/{name}, container {container}, node {node}\n\
             {container}: started (no container runs in the test apiserver)\n\
             {container}: ready\n",
            ctx.namespace
        )
    });
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let text: String = if ctx
        .query("timestamps")
        .is_some_and(|v| v == "true" || v == "1")
    {
        let created = pod["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("1970-01-01T00:00:00Z");
        let stamp = format!("{}.000000000Z", created.trim_end_matches('Z'));
        lines.iter().map(|l| format!("{stamp} {l}")).collect()
    } else {
        lines.concat()
    };
    let first = futures::stream::iter((!text.is_empty()).then(|| bytes::Bytes::from(text)));
    let follow = ctx.query("follow").is_some_and(|v| v == "true" || v == "1");
    let stream: body::Body = if follow {
        let mut cut = ctx.shared.watch_cut.subscribe();
        cut.borrow_and_update();
        let timeout = ctx.shared.settings.min_request_timeout;
        let open = futures::stream::once(async move {
            tokio::select! {
                _ = cut.changed() => {}
                () = tokio::time::sleep(timeout) => {}
            }
        })
        .filter_map(|()| std::future::ready(None::<bytes::Bytes>));
        body::stream(first.chain(open))
    } else {
        body::stream(first)
    };
    Ok(body::response(StatusCode::OK, "text/plain", stream))
}
