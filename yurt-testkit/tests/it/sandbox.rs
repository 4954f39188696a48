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

/// Runs the sandbox example to its exit (bounded): (exit code, stdout, stderr).
async fn sandbox_exit(bin: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let child = tokio::process::Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = bounded(child.wait_with_output()).await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sandbox_on_a_port_in_use_is_one_line_naming_the_port() {
    let Some(bin) = sandbox_binary() else {
        crate::support::skip_without(
            "the sandbox example is not built (run `cargo test -p yurt-testkit`)",
        );
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stdout, stderr) = sandbox_exit(&bin, &["--port", &port, "--no-crds"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("sandbox: cannot listen on 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("pick another --port"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[tokio::test]
async fn sandbox_help_says_what_it_is_and_where_its_state_lives() {
    let Some(bin) = sandbox_binary() else {
        crate::support::skip_without(
            "the sandbox example is not built (run `cargo test -p yurt-testkit`)",
        );
        return;
    };
    let (code, help, _) = sandbox_exit(&bin, &["--help"]).await;
    assert_eq!(code, Some(0));
    assert!(
        help.starts_with("sandbox: a standalone test kube-apiserver"),
        "{help}"
    );
    for part in [
        "Talks to: nothing",
        "Listens on: 127.0.0.1:6443 (--port",
        "State: in memory",
    ] {
        assert!(help.contains(part), "missing {part:?} in:\n{help}");
    }
    let serving = help.lines().position(|l| l == "Serving:");
    let contents = help.lines().position(|l| l == "Contents and output:");
    assert!(serving.is_some() && contents.is_some(), "{help}");

    // At start: its listener, its kubeconfig, then where its state lives.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(bin)
        .args(["--port", "0", "--no-crds", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(bounded(lines.next_line()).await.unwrap().unwrap());
    }
    assert!(first[0].starts_with("test apiserver listening on http://127.0.0.1:"));
    assert_eq!(first[1], format!("kubeconfig: {}", kubeconfig.display()));
    assert_eq!(
        first[2],
        "state: in memory (the objects are gone when the sandbox stops)"
    );
    child.kill().await.unwrap();
}
