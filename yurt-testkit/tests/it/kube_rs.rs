//! kube-rs against the test apiserver: typed CRUD, every patch type, and `kube_runtime::watcher`
//! with bookmarks, streaming lists and a forced 410 re-list (issue item 7).

use std::collections::BTreeMap;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::mpsc;
use yurt_testkit::TestApiServer;

use crate::support::bounded;

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    );
    cm
}

#[tokio::test]
async fn typed_crud_and_patches() {
    let s = TestApiServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let created = bounded(cms.create(&PostParams::default(), &cm("a", &[("k", "1")])))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let got = bounded(cms.get("a")).await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    let err = bounded(cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(st) if st.code == 409 && st.reason == "AlreadyExists"),
        "{err:?}"
    );
    let err = bounded(cms.get("missing")).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(st) if st.code == 404),
        "{err:?}"
    );

    let mut next = got.clone();
    next.data.as_mut().unwrap().insert("k".into(), "2".into());
    let replaced = bounded(cms.replace("a", &PostParams::default(), &next))
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "2");
    // Replacing with the old resourceVersion conflicts.
    let err = bounded(cms.replace("a", &PostParams::default(), &next))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(st) if st.code == 409),
        "{err:?}"
    );

    let pp = PatchParams::default();
    let merged = bounded(cms.patch("a", &pp, &Patch::Merge(json!({"data": {"m": "1"}}))))
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["m"], "1");
    let strategic = bounded(cms.patch("a", &pp, &Patch::Strategic(json!({"data": {"s": "1"}}))))
        .await
        .unwrap();
    assert_eq!(strategic.data.as_ref().unwrap()["s"], "1");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/m"}])).unwrap();
    let jsoned = bounded(cms.patch("a", &pp, &Patch::Json::<()>(jp)))
        .await
        .unwrap();
    assert!(!jsoned.data.as_ref().unwrap().contains_key("m"));
    let applied = bounded(cms.patch(
        "b",
        &PatchParams::apply("testkit").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"x": "1"}})),
    ))
    .await
    .unwrap();
    assert_eq!(applied.data.unwrap()["x"], "1");

    let list = bounded(cms.list(&ListParams::default())).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let page = bounded(cms.list(&ListParams::default().limit(1)))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.metadata.continue_.is_some());

    bounded(cms.delete("a", &DeleteParams::default()))
        .await
        .unwrap();
    assert!(bounded(cms.get_opt("a")).await.unwrap().is_none());
}

/// Runs a watcher in a task, forwarding its items (errors as their Display) to a channel.
fn spawn_watcher(
    api: Api<ConfigMap>,
    config: watcher::Config,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<Result<Event<ConfigMap>, String>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).boxed();
        while let Some(item) = stream.next().await {
            if tx.send(item.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    });
    (task, rx)
}

/// Receives until an event satisfies `want` (bounded).
async fn until(
    rx: &mut mpsc::UnboundedReceiver<Result<Event<ConfigMap>, String>>,
    mut want: impl FnMut(&Result<Event<ConfigMap>, String>) -> bool,
) -> Vec<Result<Event<ConfigMap>, String>> {
    bounded(async {
        let mut seen = Vec::new();
        loop {
            let item = rx.recv().await.expect("watcher ended");
            let done = want(&item);
            seen.push(item);
            if done {
                return seen;
            }
        }
    })
    .await
}

fn applied_name(item: &Result<Event<ConfigMap>, String>) -> Option<String> {
    match item {
        Ok(Event::Apply(o) | Event::InitApply(o)) => o.metadata.name.clone(),
        _ => None,
    }
}

#[tokio::test]
async fn watcher_follows_bookmarks_and_relists_after_410() {
    let s = TestApiServer::builder()
        .bookmark_interval(std::time::Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let client = s.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    bounded(cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .unwrap();
    let (task, mut rx) = spawn_watcher(cms.clone(), watcher::Config::default());
    let init = until(&mut rx, |i| matches!(i, Ok(Event::InitDone))).await;
    assert!(init.iter().any(|i| applied_name(i).as_deref() == Some("a")));

    bounded(cms.create(&PostParams::default(), &cm("b", &[])))
        .await
        .unwrap();
    until(&mut rx, |i| applied_name(i).as_deref() == Some("b")).await;

    // Writes elsewhere only reach this watcher as bookmarks: once it re-watches from a
    // resourceVersion past them, bookmarks have carried it forward.
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let mut secret = Secret::default();
    secret.metadata.name = Some("s".into());
    let secret = bounded(secrets.create(&PostParams::default(), &secret))
        .await
        .unwrap();
    let target: u64 = secret.metadata.resource_version.unwrap().parse().unwrap();
    bounded(async {
        loop {
            s.cut_watches();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let resumed_past = s.traffic().with_verb("watch").any(|r| {
                r.query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("resourceVersion="))
                    .any(|v| v.parse::<u64>().is_ok_and(|v| v >= target))
            });
            if resumed_past {
                break;
            }
        }
    })
    .await;

    // Force a 410: while the server is down, history moves on and is compacted away.
    s.go_down().await;
    s.create_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}))
        .await
        .unwrap();
    s.compact();
    s.come_up().await.unwrap();
    let after = until(&mut rx, |i| matches!(i, Ok(Event::InitDone))).await;
    assert!(
        after.iter().any(
            |i| matches!(i, Err(e) if e.contains("410") || e.to_lowercase().contains("expired"))
        ),
        "a 410 before the re-list: {after:?}"
    );
    let relisted: Vec<_> = after.iter().filter_map(applied_name).collect();
    assert!(relisted.contains(&"c".to_owned()), "{relisted:?}");
    let lists = s.traffic().count_verb("list");
    assert!(lists >= 2, "re-listed ({lists} lists)");
    task.abort();
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    let s = TestApiServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    bounded(cms.create(&PostParams::default(), &cm("a", &[])))
        .await
        .unwrap();
    let (task, mut rx) = spawn_watcher(cms.clone(), watcher::Config::default().streaming_lists());
    let init = until(&mut rx, |i| matches!(i, Ok(Event::InitDone))).await;
    assert!(
        init.iter().any(|i| applied_name(i).as_deref() == Some("a")),
        "{init:?}"
    );
    assert_eq!(
        s.traffic().count_verb("list"),
        0,
        "no list with streaming lists"
    );
    bounded(cms.create(&PostParams::default(), &cm("b", &[])))
        .await
        .unwrap();
    until(&mut rx, |i| applied_name(i).as_deref() == Some("b")).await;
    task.abort();
}

#[tokio::test]
async fn pods_with_typed_client() {
    let s = TestApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}))
    .unwrap();
    let created = bounded(pods.create(&PostParams::default(), &pod))
        .await
        .unwrap();
    assert_eq!(
        created.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let mut st = created.clone();
    st.status = Some(
        serde_json::from_value(
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
        )
        .unwrap(),
    );
    let updated = bounded(pods.replace_status("p", &PostParams::default(), &st))
        .await
        .unwrap();
    assert_eq!(updated.status.unwrap().phase.as_deref(), Some("Running"));
    let on_n1 = bounded(pods.list(&ListParams::default().fields("spec.nodeName=n1")))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 1);
}
