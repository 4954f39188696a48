//! The sandbox example: runs, prints its URL and kubeconfig path, serves the OpenYurt CRDs
//! (issue item 8).

use std::path::PathBuf;
use std::process::Stdio;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::bounded;

/// `target/<profile>/examples/sandbox`, next to this test binary's `deps/` directory.
fn sandbox_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("sandbox");
    path.exists().then_some(path)
}

#[tokio::test]
async fn sandbox_serves_until_stopped() {
    let Some(bin) = sandbox_binary() else {
        crate::support::skip_without(
            "the sandbox example is not built (run `cargo test -p yurt-testkit`)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(bin)
        .args(["--port", "0", "--tls", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = bounded(lines.next_line()).await.unwrap().unwrap();
    assert!(
        first.starts_with("test apiserver listening on https://127.0.0.1:"),
        "{first}"
    );
    let second = bounded(lines.next_line()).await.unwrap().unwrap();
    assert_eq!(second, format!("kubeconfig: {}", kubeconfig.display()));
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let np = bounded(crds.get("nodepools.apps.openyurt.io"))
        .await
        .unwrap();
    assert_eq!(np.spec.group, "apps.openyurt.io");
    child.kill().await.unwrap();
}
