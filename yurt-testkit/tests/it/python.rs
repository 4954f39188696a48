//! The Python kubernetes client (Debian's `python3-kubernetes` for `/usr/bin/python3`) against
//! the test apiserver over TLS with a client certificate: create, list and watch (issue item 7).
//!
//! Without the module the test skips, saying so in the ordinary `cargo test` output (in CI, which
//! installs it, a missing module fails the test). `YURT_TEST_PYTHON` names another interpreter.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use yurt_testkit::TestApiServer;

use crate::support::bounded;

const PYTHON: &str = "/usr/bin/python3";

/// The interpreter: `YURT_TEST_PYTHON`, else [`PYTHON`].
fn python() -> PathBuf {
    std::env::var_os("YURT_TEST_PYTHON").map_or_else(|| PathBuf::from(PYTHON), PathBuf::from)
}

/// The line a skipped test prints; `.ci/run` counts these in its closing summary.
const SKIP_PREFIX: &str = "skipping:";

/// Skips for a missing client: a failure in CI (which installs it), else one line on stderr.
///
/// The line is written to `std::io::stderr()` directly, not with `eprintln!`: libtest captures
/// what the `print!`/`eprint!` macros write in a passing test and shows it only with
/// `--nocapture`, while direct writes to the stream go straight to the terminal (or to the log
/// `.ci/run` reads), so a skip is visible in the ordinary `cargo test` output.
fn skip(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: required in CI (.ci/run installs it)");
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{SKIP_PREFIX} python client test: {what}");
}

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
    let python = python();
    if !Path::new(&python).exists() {
        skip(&format!("{} is not installed", python.display()));
        return false;
    }
    let ok = std::process::Command::new(&python)
        .args(["-c", "import kubernetes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(&format!(
            "python3-kubernetes is not installed for {}",
            python.display()
        ));
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
    let mut child = Command::new(python())
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

/// The skip line shows in normal (captured) test output: this runs the test above in a child
/// test process with a missing interpreter and reads what a developer would see.
#[test]
fn a_skip_is_visible_without_nocapture() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["python::python_client_lists_and_watches", "--exact"])
        .env("YURT_TEST_PYTHON", "/nonexistent/python3")
        .env_remove("CI")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    let skips: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(SKIP_PREFIX))
        .collect();
    assert_eq!(
        skips,
        ["skipping: python client test: /nonexistent/python3 is not installed"],
        "{stderr}"
    );
}
