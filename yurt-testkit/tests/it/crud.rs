//! Create, get, list, update and delete semantics over raw HTTP (issue item 3).

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{call, configmap, pod, server};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn create_fills_server_fields_and_refuses_duplicates() {
    let s = server().await;
    let (code, cm) = call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "a", json!({"k": "v"}))),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{cm}");
    let meta = &cm["metadata"];
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let rv: u64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(rv, s.resource_version());
    assert_eq!(cm["kind"], "ConfigMap");

    let (code, st) = call(&s, "POST", CMS, Some(configmap("default", "a", json!({})))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "AlreadyExists");
    assert_eq!(st["message"], r#"configmaps "a" already exists"#);

    let mut gen_cm = configmap("default", "", json!({}));
    gen_cm["metadata"] = json!({"generateName": "web-"});
    let (code, created) = call(&s, "POST", CMS, Some(gen_cm)).await;
    assert_eq!(code, StatusCode::CREATED);
    let name = created["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");

    // Neither name nor generateName: 422; resourceVersion on create: 500; bad name: 422.
    let (code, st) = call(&s, "POST", CMS, Some(json!({"metadata": {}}))).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid"))
    );
    let mut with_rv = configmap("default", "b", json!({}));
    with_rv["metadata"]["resourceVersion"] = json!("5");
    let (code, st) = call(&s, "POST", CMS, Some(with_rv)).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{st}");
    let (code, _) = call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "Bad_Name", json!({}))),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    // Namespace mismatch between body and URL: 400.
    let (code, _) = call(
        &s,
        "POST",
        CMS,
        Some(configmap("kube-system", "c", json!({}))),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    // Missing namespace: NamespaceLifecycle answers 404 for the namespace.
    let (code, st) = call(
        &s,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        Some(configmap("nope", "c", json!({}))),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(st["message"], r#"namespaces "nope" not found"#);
}

#[tokio::test]
async fn get_of_a_missing_object_is_a_not_found_status() {
    let s = server().await;
    let (code, st) = call(&s, "GET", &format!("{CMS}/missing"), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        st,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "configmaps \"missing\" not found", "reason": "NotFound",
            "details": {"name": "missing", "kind": "configmaps"}, "code": 404})
    );
    let (code, st) = call(&s, "GET", "/apis/nope.example.com/v1/things", None).await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
}

async fn names(s: &yurt_testkit::TestApiServer, path: &str) -> (Vec<String>, Value) {
    let (code, list) = call(s, "GET", path, None).await;
    assert_eq!(code, StatusCode::OK, "{path}: {list}");
    let names = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    (names, list)
}

#[tokio::test]
async fn list_selectors_and_resource_versions() {
    let s = server().await;
    for (name, node, app) in [("p1", "n1", "web"), ("p2", "n2", "web"), ("p3", "n1", "db")] {
        let mut p = pod("default", name, node);
        p["metadata"]["labels"]["app"] = json!(app);
        assert_eq!(call(&s, "POST", PODS, Some(p)).await.0, StatusCode::CREATED);
    }
    call(
        &s,
        "POST",
        "/api/v1/namespaces/kube-system/pods",
        Some(pod("kube-system", "p0", "n1")),
    )
    .await;

    let (all, list) = names(&s, "/api/v1/pods").await;
    assert_eq!(
        all,
        ["p1", "p2", "p3", "p0"],
        "etcd key order: default/... before kube-system/..."
    );
    assert_eq!(list["kind"], "PodList");
    assert_eq!(
        list["metadata"]["resourceVersion"],
        s.resource_version().to_string()
    );
    assert!(
        list["items"][0].get("kind").is_none(),
        "typed list items carry no kind"
    );

    assert_eq!(
        names(&s, &format!("{PODS}?labelSelector=app%3Dweb"))
            .await
            .0,
        ["p1", "p2"]
    );
    assert_eq!(
        names(&s, &format!("{PODS}?labelSelector=app+notin+(web)"))
            .await
            .0,
        ["p3"]
    );
    assert_eq!(
        names(&s, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
            .await
            .0,
        ["p1", "p3", "p0"]
    );
    assert_eq!(
        names(
            &s,
            "/api/v1/pods?fieldSelector=metadata.namespace%3Dkube-system"
        )
        .await
        .0,
        ["p0"]
    );
    assert_eq!(
        names(&s, &format!("{PODS}?fieldSelector=metadata.name%3Dp2"))
            .await
            .0,
        ["p2"]
    );
    assert_eq!(
        names(
            &s,
            "/api/v1/pods?fieldSelector=status.phase%3DPending,spec.nodeName!%3Dn1"
        )
        .await
        .0,
        ["p2"]
    );
    let (code, st) = call(
        &s,
        "GET",
        &format!("{PODS}?fieldSelector=spec.image%3Dx"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(st["message"], "field label not supported: spec.image");
    let (code, _) = call(&s, "GET", &format!("{PODS}?labelSelector=a+in+(b"), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);

    // resourceVersion=0 (any) and an exact older revision.
    let rv_before = s.resource_version();
    call(
        &s,
        "DELETE",
        &format!("{PODS}/p3?gracePeriodSeconds=0"),
        None,
    )
    .await;
    assert_eq!(
        names(&s, &format!("{PODS}?resourceVersion=0")).await.0,
        ["p1", "p2"]
    );
    let (old, list) = names(
        &s,
        &format!("{PODS}?resourceVersion={rv_before}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(old, ["p1", "p2", "p3"]);
    assert_eq!(list["metadata"]["resourceVersion"], rv_before.to_string());
    let (code, st) = call(
        &s,
        "GET",
        &format!("{PODS}?resourceVersionMatch=Exact"),
        None,
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid"))
    );
    s.compact();
    let (code, st) = call(
        &s,
        "GET",
        &format!("{PODS}?resourceVersion={rv_before}&resourceVersionMatch=Exact"),
        None,
    )
    .await;
    assert_eq!(
        (code, st["reason"].as_str()),
        (StatusCode::GONE, Some("Expired"))
    );
}

#[tokio::test]
async fn limit_and_continue_page_a_consistent_snapshot() {
    let s = server().await;
    for i in 0..5 {
        call(
            &s,
            "POST",
            CMS,
            Some(configmap("default", &format!("cm{i}"), json!({}))),
        )
        .await;
    }
    let (page1, list) = names(&s, &format!("{CMS}?limit=2")).await;
    assert_eq!(page1, ["cm0", "cm1"]);
    let snapshot_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(list["metadata"]["remainingItemCount"], 3);
    let token = list["metadata"]["continue"].as_str().unwrap().to_owned();
    // Changes after the first page are not seen by the following pages.
    call(&s, "DELETE", &format!("{CMS}/cm3"), None).await;
    call(
        &s,
        "POST",
        CMS,
        Some(configmap("default", "cm2a", json!({}))),
    )
    .await;
    let (page2, list) = names(&s, &format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(page2, ["cm2", "cm3"]);
    assert_eq!(list["metadata"]["resourceVersion"], snapshot_rv);
    let token = list["metadata"]["continue"].as_str().unwrap().to_owned();
    let (page3, list) = names(&s, &format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(page3, ["cm4"]);
    assert!(list["metadata"].get("continue").is_none());
    // resourceVersion=0 ignores limit, as the watch cache does.
    assert_eq!(
        names(&s, &format!("{CMS}?limit=2&resourceVersion=0"))
            .await
            .0
            .len(),
        5
    );
    // A continue token older than the kept history: 410 with a token to go on inconsistently.
    s.compact();
    let (code, st) = call(&s, "GET", &format!("{CMS}?limit=2&continue={token}"), None).await;
    assert_eq!(code, StatusCode::GONE, "{st}");
    assert_eq!(st["reason"], "Expired");
    let inconsistent = st["metadata"]["continue"].as_str().unwrap();
    let (rest, _) = names(&s, &format!("{CMS}?limit=10&continue={inconsistent}")).await;
    assert_eq!(rest, ["cm4"]);
    let (code, _) = call(
        &s,
        "GET",
        &format!("{CMS}?continue={token}&resourceVersion=1"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn update_preconditions_and_the_status_subresource() {
    let s = server().await;
    let (_, created) = call(&s, "POST", PODS, Some(pod("default", "web", ""))).await;
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["metadata"]["generation"], 1);
    let rv = created["metadata"]["resourceVersion"].clone();

    // A stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, st) = call(&s, "PUT", &format!("{PODS}/web"), Some(stale)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(st["reason"], "Conflict");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    // The main resource ignores status; a spec change bumps the generation.
    let mut upd = created.clone();
    upd["status"]["phase"] = json!("Running");
    upd["spec"]["activeDeadlineSeconds"] = json!(60);
    upd["metadata"]["labels"]["v"] = json!("2");
    let (code, updated) = call(&s, "PUT", &format!("{PODS}/web"), Some(upd)).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["status"]["phase"], "Pending");
    assert_eq!(updated["metadata"]["labels"]["v"], "2");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_ne!(updated["metadata"]["resourceVersion"], rv);

    // The status subresource changes only status.
    let mut st_upd = updated.clone();
    st_upd["status"]["phase"] = json!("Running");
    st_upd["metadata"]["labels"]["v"] = json!("3");
    st_upd["spec"]["activeDeadlineSeconds"] = json!(5);
    let (code, after) = call(&s, "PUT", &format!("{PODS}/web/status"), Some(st_upd)).await;
    assert_eq!(code, StatusCode::OK, "{after}");
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(after["metadata"]["labels"]["v"], "2");
    assert_eq!(after["spec"]["activeDeadlineSeconds"], 60);
    assert_eq!(after["metadata"]["generation"], 2);

    // An update that changes nothing writes nothing.
    let rv_now = s.resource_version();
    let (code, same) = call(&s, "PUT", &format!("{PODS}/web"), Some(after.clone())).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert_eq!(s.resource_version(), rv_now);

    // Name mismatch: 400; missing object: 404.
    let (code, _) = call(&s, "PUT", &format!("{PODS}/other"), Some(after.clone())).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let mut ghost = after;
    ghost["metadata"]["name"] = json!("ghost");
    ghost["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, _) = call(&s, "PUT", &format!("{PODS}/ghost"), Some(ghost)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn leases_may_be_created_by_put() {
    let s = server().await;
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1";
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "node1"}});
    let (code, body) = call(&s, "PUT", path, Some(lease)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn delete_with_finalizers_waits_for_them() {
    let s = server().await;
    let mut cm = configmap("default", "f", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    call(&s, "POST", CMS, Some(cm)).await;
    let (code, pending) = call(&s, "DELETE", &format!("{CMS}/f"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        pending["metadata"]["deletionTimestamp"].is_string(),
        "{pending}"
    );
    assert_eq!(pending["metadata"]["deletionGracePeriodSeconds"], 0);
    let (code, still) = call(&s, "GET", &format!("{CMS}/f"), None).await;
    assert_eq!(code, StatusCode::OK);
    // New finalizers cannot be added while deleting.
    let mut more = still.clone();
    more["metadata"]["finalizers"] = json!(["example.com/hold", "example.com/other"]);
    assert_eq!(
        call(&s, "PUT", &format!("{CMS}/f"), Some(more)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Removing the last finalizer deletes it.
    let mut release = still;
    release["metadata"]["finalizers"] = json!([]);
    let (code, _) = call(&s, "PUT", &format!("{CMS}/f"), Some(release)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        call(&s, "GET", &format!("{CMS}/f"), None).await.0,
        StatusCode::NOT_FOUND
    );

    // Without finalizers: gone at once, answered with a Success Status for configmaps.
    call(&s, "POST", CMS, Some(configmap("default", "g", json!({})))).await;
    let (code, st) = call(&s, "DELETE", &format!("{CMS}/g"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (st["kind"].as_str(), st["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(st["details"]["name"], "g");
    // Preconditions.
    let (_, h) = call(&s, "POST", CMS, Some(configmap("default", "h", json!({})))).await;
    let (code, _) = call(
        &s,
        "DELETE",
        &format!("{CMS}/h"),
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "nope"}}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, _) = call(
        &s,
        "DELETE",
        &format!("{CMS}/h"),
        Some(json!({"preconditions": {"uid": h["metadata"]["uid"]}})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn pods_on_a_node_are_deleted_gracefully() {
    let s = server().await;
    call(&s, "POST", PODS, Some(pod("default", "bound", "n1"))).await;
    call(&s, "POST", PODS, Some(pod("default", "loose", ""))).await;
    // An unscheduled pod goes at once (and the deleted pod is returned).
    let (code, gone) = call(&s, "DELETE", &format!("{PODS}/loose"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(gone["kind"], "Pod");
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/loose"), None).await.0,
        StatusCode::NOT_FOUND
    );
    // A bound pod waits for its grace period (a kubelet finishes it with gracePeriodSeconds=0).
    let (code, term) = call(
        &s,
        "DELETE",
        &format!("{PODS}/bound?gracePeriodSeconds=20"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(term["metadata"]["deletionGracePeriodSeconds"], 20);
    assert_eq!(term["metadata"]["generation"], 2);
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/bound"), None).await.0,
        StatusCode::OK
    );
    let (code, _) = call(
        &s,
        "DELETE",
        &format!("{PODS}/bound"),
        Some(json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        call(&s, "GET", &format!("{PODS}/bound"), None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deletecollection_deletes_what_matches() {
    let s = server().await;
    for (n, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut cm = configmap("default", n, json!({}));
        cm["metadata"]["labels"] = json!({"app": app});
        call(&s, "POST", CMS, Some(cm)).await;
    }
    let (code, deleted) = call(&s, "DELETE", &format!("{CMS}?labelSelector=app%3Dx"), None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["items"].as_array().unwrap().len(), 2);
    let (_, list) = call(&s, "GET", CMS, None).await;
    let left: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].clone())
        .collect();
    assert_eq!(left, [json!("c")]);
    // Namespaces do not support deletecollection.
    assert_eq!(
        call(&s, "DELETE", "/api/v1/namespaces", None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn namespaces_terminate_and_take_their_content() {
    let s = server().await;
    let (code, ns) = call(
        &s,
        "POST",
        "/api/v1/namespaces",
        Some(json!({"metadata": {"name": "team"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    call(
        &s,
        "POST",
        "/api/v1/namespaces/team/configmaps",
        Some(configmap("team", "c", json!({}))),
    )
    .await;
    let (code, term) = call(&s, "DELETE", "/api/v1/namespaces/team", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(term["status"]["phase"], "Terminating");
    crate::support::bounded(async {
        while call(&s, "GET", "/api/v1/namespaces/team", None).await.0 != StatusCode::NOT_FOUND {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        call(&s, "GET", "/api/v1/namespaces/team/configmaps/c", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn health_version_and_h2() {
    let s = server().await;
    for p in ["/healthz", "/livez", "/readyz", "/readyz/ping"] {
        let resp = crate::support::send(
            s.addr(),
            crate::support::request("GET", p, "text/plain", ""),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{p}");
    }
    let (code, v) = call(&s, "GET", "/version", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["major"], "1");
    let resp = crate::support::send_h2(
        s.addr(),
        crate::support::request("GET", "http://127.0.0.1/api/v1/namespaces", "", ""),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
}
