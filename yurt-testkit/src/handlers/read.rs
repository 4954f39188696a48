//! `get` and `list`, with kube-apiserver's resourceVersion semantics.
//!
//! List reads (see "Semantics for get and list" in the Kubernetes API concepts):
//! - `resourceVersion` unset: the latest state (a consistent read);
//! - `resourceVersion=0`: any state (the latest here), served as the watch cache serves it, so
//!   `limit` is ignored and the whole list comes back in one page;
//! - `resourceVersion=N` with `resourceVersionMatch=NotOlderThan`, or without a match and
//!   without `limit`: a state at least as new as N (waiting up to 3 s for N, then 504);
//! - `resourceVersion=N` with `resourceVersionMatch=Exact`, or with `limit` and no match: the
//!   state exactly at N, rebuilt from history (410 Expired if N is older than the kept window);
//! - `limit`/`continue`: pages of one consistent snapshot (the first page's revision), in key
//!   order; a continue token older than the window gets 410 with a token to continue
//!   inconsistently, exactly as etcd-backed lists do.

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use http::StatusCode;
use serde_json::{Value, json};
use yurt_core::request::ListOptions;
use yurt_core::selector::{FieldSelector, LabelSelector};
use yurt_core::status::Status;

use super::{Ctx, Fail, Reply};
use crate::body;
use crate::registry::ResourceDef;
use crate::storage::{Obj, object_key};

/// How long a read waits for a resourceVersion the store has not reached.
pub(crate) const TOO_LARGE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Parsed label and field selectors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors {
    label: LabelSelector,
    field: FieldSelector,
}

impl Selectors {
    /// Parses the request's selectors, refusing field labels the resource does not support.
    pub(crate) fn parse(def: &ResourceDef, opts: &ListOptions) -> Result<Selectors, Fail> {
        let label = match opts.label_selector.as_deref() {
            Some(s) => LabelSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let field = match opts.field_selector.as_deref() {
            Some(s) => FieldSelector::parse(s).map_err(|e| Status::bad_request(e.to_string()))?,
            None => FieldSelector::everything(),
        };
        for req in field.requirements() {
            if !def.field_selectors.iter().any(|f| f == &req.field) {
                return Err(Status::bad_request(format!(
                    "field label not supported: {}",
                    req.field
                ))
                .into());
            }
        }
        Ok(Selectors { label, field })
    }

    /// Whether both selectors are empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.label.is_empty() && self.field.is_empty()
    }

    /// Whether a stored object matches.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.label.matches_object(obj) && self.field.matches(obj)
    }
}

/// Parses a resourceVersion parameter.
pub(crate) fn parse_rv(s: &str) -> Result<u64, Fail> {
    s.parse::<u64>()
        .map_err(|_| Status::bad_request(format!("invalid resource version: {s:?}")).into())
}

/// Waits (up to 3 s) until the store reaches `rv`; 504 "Too large resource version" if not.
pub(crate) async fn wait_for_rv(ctx: &Ctx<'_>, rv: u64) -> Result<(), Fail> {
    if ctx.shared.store.wait_for_rv(rv, TOO_LARGE_WAIT).await {
        Ok(())
    } else {
        Err(too_large(rv, ctx.shared.store.current_rv()).into())
    }
}

/// kube-apiserver's "Too large resource version" error.
pub(crate) fn too_large(rv: u64, current: u64) -> Status {
    Status::timeout(format!(
        "Too large resource version: {rv}, current: {current}"
    ))
    .with_cause("ResourceVersionTooLarge", "", "Too large resource version")
    .with_retry_after(1)
}

/// 422 for list options kube-apiserver's validation refuses.
pub(crate) fn invalid_options(errors: &[(&str, String)]) -> Status {
    let why = errors
        .iter()
        .map(|(field, msg)| format!("{field}: {msg}"))
        .collect::<Vec<_>>();
    let text = if why.len() == 1 {
        why[0].clone()
    } else {
        format!("[{}]", why.join(", "))
    };
    let mut st = Status::invalid("meta.k8s.io", "ListOptions", "", &text);
    for (field, msg) in errors {
        st = st.with_cause("FieldValueForbidden", field, msg);
    }
    st
}

/// GET of one object.
pub(crate) async fn get(ctx: &Ctx<'_>) -> Reply {
    if let Some(rv) = ctx.info.options.resource_version.as_deref() {
        wait_for_rv(ctx, parse_rv(rv)?).await?;
    }
    let key = object_key(&ctx.namespace, &ctx.info.name);
    let obj = ctx
        .shared
        .store
        .read(|t| t.get(ctx.storage(), &key))
        .ok_or_else(|| ctx.not_found(&ctx.info.name))?;
    if let Some(include) = table_request(ctx) {
        let rv = obj.value["metadata"]["resourceVersion"].clone();
        let metadata = json!({ "resourceVersion": rv });
        return Ok(table_response(
            ctx,
            std::slice::from_ref(&obj),
            include,
            metadata,
        ));
    }
    super::object_response(ctx, StatusCode::OK, &obj).await
}

/// Which state a list reads.
enum ReadAt {
    Latest,
    AtLeast(u64),
    Exact(u64),
}

/// A decoded continue token.
struct Continue {
    start: String,
    rv: i64,
}

/// LIST of a collection.
pub(crate) async fn list(ctx: &Ctx<'_>) -> Reply {
    let opts = &ctx.info.options;
    validate_list(opts)?;
    let selectors = Selectors::parse(&ctx.def, opts)?;
    let rv_param = opts.resource_version.as_deref().unwrap_or("");
    if !rv_param.is_empty() && opts.continue_token.is_some() {
        return Err(Status::bad_request(
            "specifying resource version is not allowed when using continue",
        )
        .into());
    }
    let mut limit = opts.limit.filter(|l| *l > 0).map(|l| l as usize);
    let prefix = if ctx.namespace.is_empty() {
        String::new()
    } else {
        format!("{}/", ctx.namespace)
    };
    let cont = opts
        .continue_token
        .as_deref()
        .map(|t| decode_continue(t, &prefix))
        .transpose()?;
    let at = match (&cont, rv_param, opts.resource_version_match.as_deref()) {
        (Some(c), _, _) if c.rv < 0 => ReadAt::Latest,
        (Some(c), _, _) => ReadAt::Exact(c.rv as u64),
        (None, "", _) => ReadAt::Latest,
        (None, "0", _) => {
            limit = None;
            ReadAt::Latest
        }
        (None, n, Some("Exact")) => ReadAt::Exact(parse_rv(n)?),
        (None, n, Some(_)) => ReadAt::AtLeast(parse_rv(n)?),
        (None, n, None) if limit.is_some() => ReadAt::Exact(parse_rv(n)?),
        (None, n, None) => ReadAt::AtLeast(parse_rv(n)?),
    };
    match at {
        ReadAt::AtLeast(n) | ReadAt::Exact(n) => wait_for_rv(ctx, n).await?,
        ReadAt::Latest => {}
    }
    let ns = (!ctx.namespace.is_empty()).then_some(ctx.namespace.as_str());
    let storage = ctx.storage().to_owned();
    let snapshot = ctx.shared.store.read(|t| match at {
        ReadAt::Latest | ReadAt::AtLeast(_) => Ok((t.list(&storage, ns), t.rv())),
        ReadAt::Exact(n) => t.list_at(&storage, ns, n).map(|items| (items, n)),
    });
    let (items, list_rv) = match snapshot {
        Ok(s) => s,
        Err(_) => {
            return Err(match &cont {
                Some(c) => {
                    let token = encode_continue(&c.start, -1);
                    let mut st = Status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.");
                    st.metadata.insert("continue".into(), Value::String(token));
                    st
                }
                None => Status::expired("The resourceVersion for the provided list is too old."),
            }.into());
        }
    };
    let start_full = cont
        .as_ref()
        .map(|c| format!("{prefix}{}", c.start))
        .unwrap_or_default();
    let from = items.partition_point(|(k, _)| k.as_str() < start_full.as_str());
    let candidates = &items[from..];
    let mut selected: Vec<Arc<Obj>> = Vec::new();
    let mut last_key = None;
    let mut has_more = false;
    for (i, (key, obj)) in candidates.iter().enumerate() {
        if selectors.matches(&obj.value) {
            selected.push(obj.clone());
            last_key = Some(key.as_str());
        }
        if limit.is_some_and(|l| selected.len() >= l) {
            has_more = i + 1 < candidates.len();
            break;
        }
    }
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if has_more && let Some(last) = last_key {
        let rel = last.strip_prefix(&prefix).unwrap_or(last);
        metadata["continue"] = json!(encode_continue(&format!("{rel}\u{0}"), list_rv as i64));
        if selectors.is_empty() {
            metadata["remainingItemCount"] = json!(candidates.len() - selected.len());
        }
    }
    if let Some(include) = table_request(ctx) {
        return Ok(table_response(ctx, &selected, include, metadata));
    }
    let selected = super::served_items(ctx, selected).await?;
    Ok(list_response(&ctx.def, metadata, selected))
}

/// `includeObject` of a request whose `Accept` asks for a server-side Table first.
fn table_request(ctx: &Ctx<'_>) -> Option<yurt_core::table::IncludeObject> {
    ctx.parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(yurt_core::table::wants_table)
        .then(|| yurt_core::table::IncludeObject::from_query(ctx.parts.uri.query()))
}

/// The objects as a `meta.k8s.io/v1` Table, rendered by [`yurt_core::table`] as the hub
/// renders its offline Tables.
fn table_response(
    ctx: &Ctx<'_>,
    objects: &[Arc<Obj>],
    include: yurt_core::table::IncludeObject,
    metadata: Value,
) -> http::Response<body::Body> {
    let values: Vec<Value> = objects
        .iter()
        .map(|o| crate::convert::to_served(&ctx.def, &o.value))
        .collect();
    let mut table = yurt_core::table::table(
        &ctx.info.api_group,
        &ctx.info.resource,
        &values,
        include,
        "",
        std::time::SystemTime::now(),
    );
    // The list's metadata (resourceVersion, continue), as the apiserver keeps it.
    table["metadata"] = metadata;
    let mut resp = body::json_value(StatusCode::OK, &table);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(yurt_core::table::TABLE_CONTENT_TYPE),
    );
    resp
}

/// kube-apiserver's list option validation for a (non-watch) list.
fn validate_list(opts: &ListOptions) -> Result<(), Fail> {
    let mut errs: Vec<(&str, String)> = Vec::new();
    if let Some(m) = opts.resource_version_match.as_deref() {
        if opts.resource_version.is_none() {
            errs.push((
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
                    .into(),
            ));
        }
        if opts.continue_token.is_some() {
            errs.push((
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden when continue is provided".into(),
            ));
        }
        if m == "Exact" && opts.resource_version.as_deref() == Some("0") {
            errs.push((
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
                    .into(),
            ));
        }
    }
    if opts.send_initial_events.is_some() {
        errs.push((
            "sendInitialEvents",
            "Forbidden: sendInitialEvents is forbidden for list".into(),
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid_options(&errs).into())
    }
}

/// Encodes a continue token as etcd-backed lists do.
fn encode_continue(start: &str, rv: i64) -> String {
    use base64::Engine as _;
    let json = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

/// Decodes a continue token; `prefix` is the request's key prefix (`ns/` or empty).
fn decode_continue(token: &str, _prefix: &str) -> Result<Continue, Fail> {
    use base64::Engine as _;
    let bad = |why: &str| {
        Status::bad_request(format!(
            "invalid continue token: continue key is not valid: {why}"
        ))
    };
    let data = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| bad(&e.to_string()))?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| bad(&e.to_string()))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad("server does not recognize this encoded version").into());
    }
    let rv = v["rv"].as_i64().unwrap_or(0);
    if rv == 0 {
        return Err(bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)").into());
    }
    let start = v["start"].as_str().unwrap_or("");
    if start.is_empty() {
        return Err(bad("encoded start key empty (version meta.k8s.io/v1)").into());
    }
    if start.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(bad(start).into());
    }
    Ok(Continue {
        start: start.to_owned(),
        rv,
    })
}

/// A list response, streamed in chunks of about 64 KiB.
pub(crate) fn list_response(
    def: &ResourceDef,
    metadata: Value,
    items: Vec<Arc<Obj>>,
) -> http::Response<body::Body> {
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        Value::String(def.list_kind.clone()),
        Value::String(def.api_version()),
        metadata
    );
    // Built-in lists are typed: their items carry no apiVersion/kind. Custom resource lists
    // are unstructured, and their items keep them.
    let strip = !matches!(
        def.behaviour.special,
        crate::registry::Special::CustomResource(_)
    );
    let def = def.clone();
    let mut head = Some(Bytes::from(head));
    let mut idx = 0usize;
    let mut done = false;
    let chunks = futures::stream::poll_fn(move |_| {
        if done {
            return std::task::Poll::Ready(None);
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        if let Some(h) = head.take() {
            buf.put(h);
        }
        while idx < items.len() && buf.len() < 64 * 1024 {
            if idx > 0 {
                buf.put_u8(b',');
            }
            buf.put(crate::convert::served_json(&def, &items[idx], strip));
            idx += 1;
        }
        if idx >= items.len() {
            buf.put_slice(b"]}");
            done = true;
        }
        std::task::Poll::Ready(Some(buf.freeze()))
    });
    body::response(StatusCode::OK, "application/json", body::stream(chunks))
}
