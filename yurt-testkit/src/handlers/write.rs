//! `create`, `update` and `patch` (including server-side apply), with the per-kind strategies
//! kube-apiserver's registry applies.
//!
//! Common rules: the body's `apiVersion`/`kind` must match the endpoint (defaulted when absent);
//! the namespace must match the URL's (defaulted when absent, cleared for cluster-scoped
//! resources); the server owns `uid`, `creationTimestamp`, `resourceVersion`, `generation` and
//! `deletionTimestamp`. An update or patch that changes nothing writes nothing (same
//! resourceVersion, no watch event), as etcd3's guaranteed update skips identical bytes. Removing
//! the last finalizer of an object being deleted deletes it.

use http::StatusCode;
use serde_json::{Map, Value, json};
use yurt_core::patch::{PatchType, apply_patch};
use yurt_core::status::Status;

use super::{Ctx, Fail, Reply};
use crate::admission::{self, Operation};
use crate::convert::set_type;
use crate::meta::{self, meta_str, metadata, metadata_mut};
use crate::registry::{ResourceDef, Special, defs_from_crd};
use crate::storage::{Obj, Txn, object_key};

/// How many names `generateName` tries before giving up (kube-apiserver's limit).
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// POST of a new object.
pub(crate) async fn create(ctx: &Ctx<'_>) -> Reply {
    if ctx.def.behaviour.special == Special::Virtual {
        return super::subresources::virtual_create(ctx);
    }
    let body = ctx.body_object()?;
    let outcome = create_value(ctx, body).await?;
    outcome.response(ctx, StatusCode::CREATED).await
}

/// The result of a write: the stored object, or (dry run / deleted) a value.
pub(crate) enum Written {
    Stored(std::sync::Arc<Obj>),
    Value(Value),
}

impl Written {
    /// The response: the object as the request's version serves it.
    pub(crate) async fn response(&self, ctx: &Ctx<'_>, code: StatusCode) -> Reply {
        match self {
            Written::Stored(obj) => super::object_response(ctx, code, obj).await,
            Written::Value(v) => super::value_response(ctx, code, v).await,
        }
    }
}

/// Checks (and defaults) `apiVersion` and `kind` against the endpoint.
pub(crate) fn check_type(def: &ResourceDef, obj: &mut Value) -> Result<(), Fail> {
    let want_av = def.api_version();
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != want_av
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        ))
        .into());
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != def.kind
    {
        return Err(Status::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            def.kind
        ))
        .into());
    }
    set_type(obj, def);
    Ok(())
}

/// Applies the URL's namespace to the object (kube-apiserver's
/// `EnsureObjectNamespaceMatchesRequestNamespace`).
fn ensure_namespace(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), Fail> {
    let want = if ctx.def.namespaced {
        ctx.namespace.as_str()
    } else {
        ""
    };
    let have = meta_str(obj, "namespace").to_owned();
    if have == want {
        return Ok(());
    }
    if have.is_empty() || want.is_empty() {
        let m = metadata_mut(obj);
        if want.is_empty() {
            m.remove("namespace");
        } else {
            m.insert("namespace".into(), json!(want));
        }
        return Ok(());
    }
    Err(Status::bad_request(
        "the namespace of the provided object does not match the namespace sent on the request",
    )
    .into())
}

/// 422 naming the object and a field problem.
pub(crate) fn invalid(def: &ResourceDef, name: &str, field: &str, why: &str) -> Status {
    Status::invalid(&def.group, &def.kind, name, &format!("{field}: {why}")).with_cause(
        "FieldValueInvalid",
        field,
        why,
    )
}

/// Creates an object from its served form: mutating admission, the kind's defaults and checks,
/// validating admission, then the write.
pub(crate) async fn create_value(ctx: &Ctx<'_>, mut obj: Value) -> Result<Written, Fail> {
    check_type(&ctx.def, &mut obj)?;
    ensure_namespace(ctx, &mut obj)?;
    decode_custom(&ctx.def, &mut obj);
    let request = admission::Request::new(ctx, Operation::Create, Some(obj.clone()), None);
    if let Some(mut mutated) = admission::mutate(ctx, request).await? {
        check_type(&ctx.def, &mut mutated)?;
        ensure_namespace(ctx, &mut mutated)?;
        obj = mutated;
    }
    let mut name = meta_str(&obj, "name").to_owned();
    let generate = meta_str(&obj, "generateName").to_owned();
    if name.is_empty() && generate.is_empty() {
        return Err(invalid(
            &ctx.def,
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        )
        .into());
    }
    if !name.is_empty()
        && let Some(why) = meta::validate_name(&name, ctx.def.behaviour.name_rule)
    {
        return Err(invalid(
            &ctx.def,
            &name,
            "metadata.name",
            &format!("Invalid value: {name:?}: {why}"),
        )
        .into());
    }
    prepare_create(ctx, &mut obj)?;
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(
            Status::internal("resourceVersion should not be set on objects to be created").into(),
        );
    }
    // The name is generated before validating admission, which sees it (as in
    // kube-apiserver, where BeforeCreate generates it).
    let generated = name.is_empty();
    if generated {
        name = meta::generate_name(&generate);
        metadata_mut(&mut obj).insert("name".into(), json!(name));
    }
    admission::validate(
        ctx,
        &admission::Request::new(ctx, Operation::Create, Some(obj.clone()), None),
    )
    .await?;
    let mut obj = crate::conversion::to_storage(ctx.shared, &ctx.def, obj).await?;
    let dry_run = ctx.dry_run();
    let written = ctx.shared.store.write(|t| -> Result<Written, Fail> {
        admit_namespace(ctx, t)?;
        let mut name = name.clone();
        for attempt in 0.. {
            if attempt > 0 {
                name = meta::generate_name(&generate);
                metadata_mut(&mut obj).insert("name".into(), json!(name));
            }
            let key = object_key(&ctx.namespace, &name);
            if t.get(ctx.storage(), &key).is_none() {
                if dry_run {
                    return Ok(Written::Value(obj.clone()));
                }
                return Ok(Written::Stored(t.put(ctx.storage(), &key, obj.clone())));
            }
            if !generated || attempt + 1 >= GENERATE_NAME_ATTEMPTS {
                break;
            }
        }
        Err(Status::already_exists(&ctx.def.group, &ctx.def.plural, &name).into())
    })?;
    if !dry_run && let (Special::Crd, Written::Stored(crd)) = (&ctx.def.behaviour.special, &written)
    {
        register_crd(ctx.shared, &crd.value);
    }
    Ok(written)
}

/// NamespaceLifecycle admission: no new objects in missing or terminating namespaces.
fn admit_namespace(ctx: &Ctx<'_>, t: &Txn<'_>) -> Result<(), Fail> {
    if !ctx.def.namespaced || !ctx.shared.settings.namespace_lifecycle {
        return Ok(());
    }
    match t.get("/namespaces", &ctx.namespace) {
        None => Err(Status::not_found("", "namespaces", &ctx.namespace).into()),
        Some(ns) if meta::is_terminating(&ns.value) => Err(Status::forbidden(
            &ctx.def.group,
            &ctx.def.plural,
            "",
            &format!(
                "unable to create new content in namespace {} because it is being terminated",
                ctx.namespace
            ),
        )
        .with_cause(
            "NamespaceTerminating",
            "metadata.namespace",
            &format!("namespace {} is being terminated", ctx.namespace),
        )
        .into()),
        Some(_) => Ok(()),
    }
}

/// Server-set metadata and per-kind defaults on create.
fn prepare_create(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), Fail> {
    let def = &ctx.def;
    {
        let m = metadata_mut(obj);
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        if def.behaviour.generation {
            m.insert("generation".into(), json!(1));
        }
    }
    let name = meta_str(obj, "name").to_owned();
    let map = obj.as_object_mut().expect("object");
    match &def.behaviour.special {
        Special::Pod => {
            let qos = qos_class(map.get("spec"));
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
        Special::Namespace => {
            map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            map.insert("status".into(), json!({"phase": "Active"}));
            let m = map
                .get_mut("metadata")
                .and_then(Value::as_object_mut)
                .expect("metadata");
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        Special::Service => prepare_service(ctx, map),
        Special::Csr => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                s.insert("username".into(), json!(ctx.user.user));
                s.insert("groups".into(), json!(ctx.user.groups));
                s.remove("uid");
                s.remove("extra");
            }
            map.insert("status".into(), json!({}));
        }
        Special::Crd => {
            let group = map["spec"]["group"].as_str().unwrap_or("");
            let plural = map["spec"]["names"]["plural"].as_str().unwrap_or("");
            if name != format!("{plural}.{group}") {
                return Err(invalid(
                    def,
                    &name,
                    "metadata.name",
                    &format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
                )
                .into());
            }
            defs_from_crd(&Value::Object(map.clone()))
                .map_err(|why| Status::invalid(&def.group, &def.kind, &name, &why))?;
            map.insert("status".into(), json!({}));
        }
        Special::CustomResource(_) => {
            if def.has_subresource("status") {
                map.remove("status");
            }
            structural(def, obj, &name)?;
        }
        Special::None if def.group.is_empty() && def.plural == "secrets" => default_secret(map),
        Special::None
            if def.has_subresource("status")
                && !(def.group.is_empty() && def.plural == "nodes") =>
        {
            map.insert("status".into(), json!({}));
        }
        _ => {}
    }
    Ok(())
}

/// A Secret as the apiserver stores it: `type` defaults to `Opaque`, and the write-only
/// `stringData` is merged into `data` (base64), winning over the same key there.
fn default_secret(map: &mut serde_json::Map<String, Value>) {
    use base64::Engine as _;
    if map
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        map.insert("type".into(), json!("Opaque"));
    }
    if let Some(Value::Object(plain)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in plain {
                let text = v.as_str().unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(k, json!(encoded));
            }
        }
    }
}

/// The fields of each container status the apiserver always writes (Go fields without
/// `omitempty`): a status written without `restartCount`, `ready`, `image`, `imageID`, `state`
/// or `lastState` reads back with `0`, `false`, `""` and `{}`, as kubelet and clients expect.
fn default_container_statuses(pod: &mut Value) {
    let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    for list in [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ] {
        let Some(items) = status.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for (field, zero) in [
                ("restartCount", json!(0)),
                ("ready", json!(false)),
                ("image", json!("")),
                ("imageID", json!("")),
                ("state", json!({})),
                ("lastState", json!({})),
            ] {
                if item.get(field).is_none_or(Value::is_null) {
                    item.insert(field.into(), zero);
                }
            }
        }
    }
}

/// A Pod's QoS class from its containers' requests and limits.
fn qos_class(spec: Option<&Value>) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (rq, li) = (req.get(r), lim.get(r));
            if rq.is_some() || li.is_some() {
                any = true;
            }
            match (rq, li) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Service defaults and ClusterIP/NodePort allocation.
fn prepare_service(ctx: &Ctx<'_>, map: &mut Map<String, Value>) {
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    let ty = s
        .entry("type")
        .or_insert_with(|| json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    s.entry("sessionAffinity").or_insert_with(|| json!("None"));
    if ty != "ExternalName" {
        let ip = s
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let ip = if ip.is_empty() {
            let n = ctx
                .shared
                .next_cluster_ip
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff)
        } else {
            ip
        };
        s.insert("clusterIP".into(), json!(ip));
        s.insert("clusterIPs".into(), json!([ip]));
        s.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        s.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
        s.entry("internalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    let node_ports = ty == "NodePort" || ty == "LoadBalancer";
    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert_with(|| json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    p.entry("targetPort").or_insert(port);
                }
                if node_ports {
                    let n = 30000 + meta::random_u64() % 2700 + i as u64;
                    p.entry("nodePort").or_insert_with(|| json!(n));
                }
            }
        }
    }
    map.insert("status".into(), json!({"loadBalancer": {}}));
}

/// Registers (or re-registers) the resources a CRD object declares.
pub(crate) fn register_crd(shared: &crate::server::Shared, crd: &Value) {
    if let Ok(defs) = defs_from_crd(crd) {
        let mut reg = shared.registry_mut();
        if let Some(first) = defs.first() {
            reg.unregister_storage(&first.behaviour.storage_key.clone());
        }
        for def in defs {
            reg.register(def);
        }
    }
}

/// PUT of an object (or of a subresource, `sub`).
pub(crate) async fn update(ctx: &Ctx<'_>, sub: Option<&str>) -> Reply {
    let mut body = ctx.body_object()?;
    if sub.is_none()
        || matches!(
            sub,
            Some("status" | "approval" | "finalize" | "ephemeralcontainers" | "resize")
        )
    {
        check_type(&ctx.def, &mut body)?;
    }
    let name = ctx.info.name.clone();
    let body_name = meta_str(&body, "name").to_owned();
    if body_name != name {
        return Err(Status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        ))
        .into());
    }
    ensure_namespace(ctx, &mut body)?;
    let new = body;
    let key = object_key(&ctx.namespace, &name);
    let current = ctx.shared.store.read(|t| t.get(ctx.storage(), &key));
    let Some(old) = current else {
        if ctx.def.behaviour.create_on_update && sub.is_none() {
            if !meta_str(&new, "resourceVersion").is_empty() {
                return Err(ctx.not_found(&name).into());
            }
            return create_value(ctx, new)
                .await?
                .response(ctx, StatusCode::CREATED)
                .await;
        }
        return Err(ctx.not_found(&name).into());
    };
    drop(old);
    let written = write_update(
        ctx,
        &key,
        |_old| {
            if meta_str(&new, "resourceVersion").is_empty()
                && !ctx.def.behaviour.unconditional_update
            {
                return Err(Status::invalid(
                    &ctx.def.group,
                    &ctx.def.plural,
                    &name,
                    "metadata.resourceVersion: Invalid value: 0: must be specified for an update",
                )
                .into());
            }
            Ok(new.clone())
        },
        sub,
    )
    .await?;
    written.response(ctx, StatusCode::OK).await
}

/// How often an update is retried when the object changed while admission ran.
const UPDATE_ATTEMPTS: usize = 16;

/// Runs an update of the object at `key`: `make_new(old)` builds the requested object (both in
/// the request's version; they are converted to the storage version last), mutating admission
/// may change it, the strategy merges it with the old one, validating
/// admission checks the result, then it is written (or nothing happens when it is unchanged, or
/// it is deleted when its last finalizer went). Admission calls webhooks, so it runs outside the
/// store's lock; the write happens only if the object is still the one read, else the whole
/// sequence runs again on the newer object (as kube-apiserver's guaranteed update retries).
pub(crate) async fn write_update(
    ctx: &Ctx<'_>,
    key: &str,
    make_new: impl Fn(&Value) -> Result<Value, Fail>,
    sub: Option<&str>,
) -> Result<Written, Fail> {
    let dry_run = ctx.dry_run();
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        let old = ctx
            .shared
            .store
            .read(|t| t.get(ctx.storage(), key))
            .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
        let old_served = crate::conversion::served(ctx.shared, &ctx.def, &old.value).await?;
        let mut new = make_new(&old_served)?;
        decode_custom(&ctx.def, &mut new);
        let request = admission::Request::new(
            ctx,
            Operation::Update,
            Some(new.clone()),
            Some(old_served.clone()),
        );
        if let Some(mut mutated) = admission::mutate(ctx, request).await? {
            check_type(&ctx.def, &mut mutated)?;
            new = mutated;
        }
        let merged = merge_update(ctx, &old_served, new, sub)?;
        let request = admission::Request::new(
            ctx,
            Operation::Update,
            Some(merged.clone()),
            Some(old_served),
        );
        admission::validate(ctx, &request).await?;
        let merged = crate::conversion::to_storage(ctx.shared, &ctx.def, merged).await?;
        if merged == old.value {
            break Written::Stored(old);
        }
        if dry_run {
            break Written::Value(merged);
        }
        let old_rv = meta_str(&old.value, "resourceVersion").to_owned();
        let outcome = ctx
            .shared
            .store
            .write(|t| -> Result<Option<Written>, Fail> {
                let current = t
                    .get(ctx.storage(), key)
                    .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
                if meta_str(&current.value, "resourceVersion") != old_rv {
                    return Ok(None);
                }
                if meta::is_terminating(&merged)
                    && meta::finalizers(&merged).is_empty()
                    && metadata(&merged)
                        .and_then(|m| m.get("deletionGracePeriodSeconds"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        == 0
                {
                    let last = t.delete(ctx.storage(), key, Some(merged.clone()));
                    return Ok(Some(match last {
                        Some(o) => Written::Stored(o),
                        None => Written::Value(Value::Null),
                    }));
                }
                Ok(Some(Written::Stored(t.put(
                    ctx.storage(),
                    key,
                    merged.clone(),
                ))))
            })?;
        match outcome {
            Some(w) => break w,
            None if attempt < UPDATE_ATTEMPTS => continue,
            None => {
                return Err(Status::conflict(
                    &ctx.def.group,
                    &ctx.def.plural,
                    &ctx.info.name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
                .into());
            }
        }
    };
    if !dry_run
        && let (Special::Crd, Written::Stored(crd), None) =
            (&ctx.def.behaviour.special, &written, sub)
        && !meta::is_terminating(&crd.value)
    {
        register_crd(ctx.shared, &crd.value);
    }
    Ok(written)
}

/// The strategy: preconditions, then what the client may change (`sub` selects a subresource).
pub(crate) fn merge_update(
    ctx: &Ctx<'_>,
    old: &Value,
    mut new: Value,
    sub: Option<&str>,
) -> Result<Value, Fail> {
    let def = &ctx.def;
    let name = meta_str(old, "name").to_owned();
    let old_rv = meta_str(old, "resourceVersion");
    let new_rv = meta_str(&new, "resourceVersion");
    if !new_rv.is_empty() && new_rv != old_rv {
        return Err(Status::conflict(
            &def.group,
            &def.plural,
            &name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ).into());
    }
    let old_uid = meta_str(old, "uid");
    let new_uid = meta_str(&new, "uid");
    if !new_uid.is_empty() && new_uid != old_uid {
        return Err(Status::conflict(
            &def.group,
            &def.plural,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {old_uid}"
            ),
        )
        .into());
    }
    let mut result = match sub {
        None => {
            copy_system_meta(old, &mut new);
            if def.has_subresource("status") || def.behaviour.special == Special::Pod {
                copy_field(old, &mut new, "status");
            }
            match def.behaviour.special {
                Special::Namespace => {
                    let fins = old["spec"]["finalizers"].clone();
                    let spec = new
                        .as_object_mut()
                        .expect("object")
                        .entry("spec")
                        .or_insert_with(|| json!({}));
                    if let Some(s) = spec.as_object_mut() {
                        s.insert("finalizers".into(), fins);
                    }
                    copy_field(old, &mut new, "status");
                }
                Special::Csr => {
                    copy_field(old, &mut new, "spec");
                    copy_field(old, &mut new, "status");
                }
                Special::Service => {
                    let ip = old["spec"]["clusterIP"].clone();
                    if new["spec"]["clusterIP"].as_str().unwrap_or("").is_empty()
                        && let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut)
                    {
                        s.insert("clusterIP".into(), ip);
                        s.insert("clusterIPs".into(), old["spec"]["clusterIPs"].clone());
                    }
                }
                _ => {}
            }
            if meta::is_terminating(old) {
                let before = meta::finalizers(old);
                let added: Vec<String> = meta::finalizers(&new)
                    .into_iter()
                    .filter(|f| !before.contains(f))
                    .collect();
                if !added.is_empty() {
                    return Err(invalid(
                        def,
                        &name,
                        "metadata.finalizers",
                        &format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
                    ).into());
                }
            }
            new
        }
        Some("status") => {
            let mut r = old.clone();
            copy_field(&new, &mut r, "status");
            r
        }
        Some("approval") => {
            let mut r = old.clone();
            let conditions = new["status"]["conditions"].clone();
            let status = r
                .as_object_mut()
                .expect("object")
                .entry("status")
                .or_insert_with(|| json!({}));
            if let Some(s) = status.as_object_mut() {
                if conditions.is_null() {
                    s.remove("conditions");
                } else {
                    s.insert("conditions".into(), conditions);
                }
            }
            r
        }
        Some("finalize") => {
            let mut r = old.clone();
            let fins = new["spec"]["finalizers"].clone();
            if let Some(s) = r.get_mut("spec").and_then(Value::as_object_mut) {
                s.insert("finalizers".into(), fins);
            }
            r
        }
        Some("ephemeralcontainers") => {
            let mut r = old.clone();
            let ec = new["spec"]["ephemeralContainers"].clone();
            if let Some(s) = r.get_mut("spec").and_then(Value::as_object_mut) {
                s.insert("ephemeralContainers".into(), ec);
            }
            r
        }
        Some("resize") => {
            let mut r = old.clone();
            for list in ["containers", "initContainers"] {
                let new_list = new["spec"][list].as_array().cloned().unwrap_or_default();
                if let Some(cs) = r
                    .get_mut("spec")
                    .and_then(|s| s.get_mut(list))
                    .and_then(Value::as_array_mut)
                {
                    for c in cs.iter_mut() {
                        let cname = c["name"].clone();
                        if let Some(nc) = new_list.iter().find(|n| n["name"] == cname)
                            && let Some(co) = c.as_object_mut()
                        {
                            co.insert("resources".into(), nc["resources"].clone());
                        }
                    }
                }
            }
            r
        }
        Some(other) => {
            return Err(Status::method_not_supported(
                &def.group,
                &format!("{}/{other}", def.plural),
                "update",
            )
            .into());
        }
    };
    if let Special::CustomResource(_) = def.behaviour.special {
        structural(def, &mut result, &name)?;
    }
    metadata_mut(&mut result).insert("resourceVersion".into(), json!(old_rv));
    if def.behaviour.special == Special::Pod {
        default_container_statuses(&mut result);
    }
    if def.behaviour.generation && spec_changed(def, old, &result) {
        let generation = metadata(old)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut result).insert("generation".into(), json!(generation + 1));
    }
    Ok(result)
}

/// What the apiextensions server does to a custom resource as it decodes it: fields the
/// version's structural schema does not specify are pruned and its defaults applied.
fn decode_custom(def: &ResourceDef, obj: &mut Value) {
    if let (Special::CustomResource(_), Some(schema)) =
        (&def.behaviour.special, &def.behaviour.schema)
    {
        crate::prune::prune(obj, schema);
        crate::schema::apply_defaults(obj, schema);
    }
}

/// Prunes, defaults and validates a custom resource against its version's schema; 422 Invalid
/// listing every field error, as kube-apiserver answers.
fn structural(def: &ResourceDef, obj: &mut Value, name: &str) -> Result<(), Fail> {
    let Some(schema) = &def.behaviour.schema else {
        return Ok(());
    };
    crate::prune::prune(obj, schema);
    crate::schema::apply_defaults(obj, schema);
    let errs = crate::schema::validate(obj, schema);
    if errs.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let why = if texts.len() == 1 {
        texts[0].clone()
    } else {
        format!("[{}]", texts.join(", "))
    };
    let mut st = Status::invalid(&def.group, &def.kind, name, &why);
    for e in &errs {
        st = st.with_cause(e.reason, &e.field, &e.body);
    }
    Err(st.into())
}

/// Copies the fields the server owns from `old` into `new`.
fn copy_system_meta(old: &Value, new: &mut Value) {
    let old_meta = metadata(old).cloned().unwrap_or_default();
    let m = metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                m.insert(field.into(), v.clone());
            }
            None => {
                m.remove(field);
            }
        }
    }
}

/// Sets `to[field] = from[field]` (removing it when `from` lacks it).
fn copy_field(from: &Value, to: &mut Value, field: &str) {
    let Some(map) = to.as_object_mut() else {
        return;
    };
    match from.get(field) {
        Some(v) => {
            map.insert(field.into(), v.clone());
        }
        None => {
            map.remove(field);
        }
    }
}

/// Whether anything the generation tracks changed: the spec for Pods, otherwise everything but
/// metadata (and status, when it has its own subresource).
fn spec_changed(def: &ResourceDef, old: &Value, new: &Value) -> bool {
    if def.behaviour.special == Special::Pod {
        return old.get("spec") != new.get("spec");
    }
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if def.has_subresource("status") {
                m.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// PATCH of an object (or of a subresource, `sub`).
pub(crate) async fn patch(ctx: &Ctx<'_>, sub: Option<&str>) -> Reply {
    let ct = ctx
        .parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(patch_type) = PatchType::from_content_type(ct) else {
        return Err(
            Status::unsupported_media_type(&PatchType::ALL.map(|p| p.content_type())).into(),
        );
    };
    let name = ctx.info.name.clone();
    let key = object_key(&ctx.namespace, &name);
    let body = normalize_apply_body(patch_type, &ctx.body);
    if patch_type == PatchType::Apply {
        if ctx.query("fieldManager").unwrap_or_default().is_empty() {
            return Err(Status::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                "fieldManager: Required value: is required for apply patch",
            )
            .into());
        }
        let exists = ctx
            .shared
            .store
            .read(|t| t.get(ctx.storage(), &key))
            .is_some();
        if !exists && sub.is_none() {
            let gvk = (
                ctx.def.group.as_str(),
                ctx.def.version.as_str(),
                ctx.def.kind.as_str(),
            );
            let obj = apply_patch(patch_type, &Value::Null, &body, gvk).map_err(|e| e.status())?;
            let mut obj = obj;
            if meta_str(&obj, "name").is_empty() {
                metadata_mut(&mut obj).insert("name".into(), json!(name));
            }
            if meta_str(&obj, "name") != name {
                return Err(Status::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&obj, "name")
                ))
                .into());
            }
            return create_value(ctx, obj)
                .await?
                .response(ctx, StatusCode::CREATED)
                .await;
        }
    }
    let def = ctx.def.clone();
    let written = write_update(
        ctx,
        &key,
        |current| {
            let gvk = (def.group.as_str(), def.version.as_str(), def.kind.as_str());
            let mut patched =
                apply_patch(patch_type, current, &body, gvk).map_err(|e| e.status())?;
            if !patched.is_object() {
                return Err(Status::bad_request("the patched object is not a JSON object").into());
            }
            if meta_str(&patched, "name") != name {
                return Err(Status::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta_str(&patched, "name")
                ))
                .into());
            }
            check_type(&def, &mut patched)?;
            Ok(patched)
        },
        sub,
    )
    .await?;
    written.response(ctx, StatusCode::OK).await
}

/// Apply bodies in YAML syntax are converted to JSON for the patch engine (JSON passes as is).
fn normalize_apply_body(patch_type: PatchType, body: &bytes::Bytes) -> bytes::Bytes {
    if patch_type != PatchType::Apply || serde_json::from_slice::<Value>(body).is_ok() {
        return body.clone();
    }
    match serde_yaml::from_slice::<Value>(body) {
        Ok(v) => bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        Err(_) => body.clone(),
    }
}
