//! kubectl (v1.32, `/usr/bin/kubectl`) against the test apiserver through a generated kubeconfig,
//! over TLS with a client certificate: get, apply, delete and get -w (issue items 3 and 7).

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use yurt_testkit::TestApiServer;

use crate::support::bounded;

const KUBECTL: &str = "/usr/bin/kubectl";

/// A kubeconfig file and a private discovery cache for one server.
pub(crate) struct Kubectl {
    dir: tempfile::TempDir,
}

impl Kubectl {
    pub(crate) fn new(server: &TestApiServer) -> Option<Kubectl> {
        if !Path::new(KUBECTL).exists() {
            crate::support::skip_without(&format!("{KUBECTL} is not installed"));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), server.kubeconfig()).unwrap();
        Some(Kubectl { dir })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to completion; returns (success, stdout, stderr).
    pub(crate) async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = self.command(args).spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt as _;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        } else {
            drop(child.stdin.take());
        }
        let out = bounded(child.wait_with_output()).await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }
}

async fn tls_server_with_crds() -> TestApiServer {
    let s = TestApiServer::builder()
        .tls()
        .require_auth()
        .start()
        .await
        .unwrap();
    for crd in yurt_core::crd::crds() {
        s.create_object(serde_json::to_value(&crd).unwrap())
            .await
            .unwrap();
    }
    s
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  namespace: default
data:
  a: "1"
---
apiVersion: apps.openyurt.io/v1beta2
kind: NodePool
metadata:
  name: hangzhou
spec:
  type: Edge
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx
"#;

#[tokio::test]
async fn kubectl_get_apply_delete() {
    let s = tls_server_with_crds().await;
    let Some(k) = Kubectl::new(&s) else { return };
    s.create_object(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .await
        .unwrap();
    let pods = k.ok(&["get", "pods", "-A"], None).await;
    assert!(
        pods.contains("kube-system") && pods.contains("web-0"),
        "{pods}"
    );
    let (ok, out, err) = k.run(&["get", "nodepools"], None).await;
    assert!(
        ok && out.is_empty() && err.contains("No resources found"),
        "{out}{err}"
    );

    let applied = k.ok(&["apply", "-f", "-"], Some(MANIFEST)).await;
    for line in [
        "configmap/demo created",
        "nodepool.apps.openyurt.io/hangzhou created",
        "deployment.apps/web created",
    ] {
        assert!(applied.contains(line), "{applied}");
    }
    let np: Value =
        serde_json::from_str(&k.ok(&["get", "np", "hangzhou", "-o", "json"], None).await).unwrap();
    assert_eq!(np["spec"]["type"], "Edge");
    let again = k
        .ok(
            &["apply", "-f", "-"],
            Some(&MANIFEST.replace("\"1\"", "\"2\"")),
        )
        .await;
    assert!(again.contains("configmap/demo configured"), "{again}");
    assert!(
        again.contains("nodepool.apps.openyurt.io/hangzhou unchanged"),
        "{again}"
    );
    assert_eq!(
        k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data.a}"], None)
            .await,
        "2"
    );
    let ssa = k
        .ok(&["apply", "--server-side", "-f", "-"], Some(MANIFEST))
        .await;
    assert!(ssa.contains("serverside-applied"), "{ssa}");

    let deleted = k.ok(&["delete", "-f", "-"], Some(MANIFEST)).await;
    assert!(
        deleted.contains("nodepool.apps.openyurt.io \"hangzhou\" deleted"),
        "{deleted}"
    );
    let (ok, _, err) = k.run(&["get", "cm", "demo"], None).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    k.ok(
        &[
            "delete",
            "pod",
            "web-0",
            "-n",
            "kube-system",
            "--timeout=15s",
        ],
        None,
    )
    .await;
}

#[tokio::test]
async fn kubectl_get_watch_follows_changes() {
    let s = tls_server_with_crds().await;
    let Some(k) = Kubectl::new(&s) else { return };
    let mut child = k
        .command(&["get", "nodepools", "--watch", "--output-watch-events"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The watch is open once the server counts it.
    bounded(async {
        while s.open_watches() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let pool = json!({"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool",
        "metadata": {"name": "shanghai"}, "spec": {"type": "Cloud"}});
    s.create_object(pool).await.unwrap();
    let mut seen = Vec::new();
    let mut next_event = async || loop {
        let line = bounded(lines.next_line())
            .await
            .unwrap()
            .expect("kubectl still watching");
        let cols: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        seen.push(line);
        if cols.first().is_some_and(|c| c != "EVENT") {
            return cols;
        }
    };
    let added = next_event().await;
    assert_eq!(added[..2], ["ADDED", "shanghai"]);
    k.ok(&["delete", "np", "shanghai"], None).await;
    let deleted = next_event().await;
    assert_eq!(deleted[..2], ["DELETED", "shanghai"]);
    child.kill().await.unwrap();
}
