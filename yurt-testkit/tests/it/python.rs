//! The Python kubernetes client (Debian's `python3-kubernetes` for `/usr/bin/python3`) against
//! the test apiserver over TLS with a client certificate: create, list and watch (issue item 7).

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use yurt_testkit::TestApiServer;

use crate::support::bounded;

const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="from-python"), data={"k": "v"}))
pods = v1.list_pod_for_all_namespaces()
cms = v1.list_namespaced_config_map("default")
print(json.dumps({"pods": [p.metadata.name for p in pods.items],
                  "configmaps": [c.metadata.name for c in cms.items],
                  "rv": cms.metadata.resource_version}), flush=True)
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, "default",
                   resource_version=cms.metadata.resource_version,
                   allow_watch_bookmarks=True, timeout_seconds=30):
    obj = ev["object"]
    name = obj.metadata.name if hasattr(obj, "metadata") else obj["metadata"].get("name")
    print(json.dumps({"type": ev["type"], "name": name}), flush=True)
    if ev["type"] == "DELETED":
        w.stop()
"#;

fn python_ready() -> bool {
    if !Path::new(PYTHON).exists() {
        crate::support::skip_without(&format!("{PYTHON} is not installed"));
        return false;
    }
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", "import kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        crate::support::skip_without(&format!("python3-kubernetes is not installed for {PYTHON}"));
    }
    ok
}

#[tokio::test]
async fn python_client_lists_and_watches() {
    if !python_ready() {
        return;
    }
    let s = TestApiServer::builder()
        .tls()
        .require_auth()
        .bookmark_interval(std::time::Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    s.create_object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p1", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, s.kubeconfig()).unwrap();
    let mut child = Command::new(PYTHON)
        .args(["-c", SCRIPT])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let first = bounded(lines.next_line()).await.unwrap();
    let Some(first) = first else {
        let mut err = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
            .await
            .unwrap();
        panic!("python failed: {err}");
    };
    let listed: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(listed["pods"], json!(["p1"]));
    assert_eq!(listed["configmaps"], json!(["from-python"]));

    bounded(async {
        while s.open_watches() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    s.create_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "live", "namespace": "default"}}))
        .await
        .unwrap();
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(s.client(), "default");
    bounded(cms.delete("live", &Default::default()))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(line) = bounded(lines.next_line()).await.unwrap() {
        events.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .cloned()
        .collect();
    assert_eq!(
        changes,
        [
            json!({"type": "ADDED", "name": "live"}),
            json!({"type": "DELETED", "name": "live"})
        ],
        "{events:?}"
    );
    let status = bounded(child.wait()).await.unwrap();
    assert!(status.success());
}
