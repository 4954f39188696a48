//! The `yurthub` example as a process: flag and credential errors as one clear line, and the
//! `--sandbox` quick start (kubectl through the proxy, SIGTERM exits 0).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bound of every wait on the child process.
const WAIT: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/yurthub`, next to this test binary's `deps/` directory.
fn yurthub() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join("yurthub");
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (which builds examples)",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(yurthub())
        .args(args)
        .env_remove("NODE_NAME")
        .output()
        .expect("run yurthub")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_flag_exits_2_naming_it() {
    let out = run(&["--node-name", "n", "--bogus-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--bogus-flag"), "{}", stderr(&out));

    let out = run(&["--node-name", "n", "--lb-mode", "random"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--lb-mode"), "{}", stderr(&out));

    let out = run(&[
        "--node-name",
        "n",
        "--disabled-resource-filters",
        "masterservice,nope",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--disabled-resource-filters"),
        "{}",
        stderr(&out)
    );

    let out = run(&["--server-addr", "https://127.0.0.1:6443"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--node-name"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_ca_file_is_one_clear_line() {
    let out = run(&[
        "--node-name",
        "n",
        "--server-addr",
        "https://127.0.0.1:6443",
        "--ca-file",
        "/nonexistent/yurthub-ca.crt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("yurthub: cannot read --ca-file /nonexistent/yurthub-ca.crt:"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// A running `yurthub` process: its stdout lines, its exit, its pid for `kill`.
struct Running {
    pid: String,
    lines: mpsc::Receiver<String>,
    done: mpsc::Receiver<std::io::Result<Output>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(args: &[&std::ffi::OsStr]) -> Running {
        let mut child = Command::new(yurthub())
            .args(args)
            .env_remove("NODE_NAME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yurthub");
        let pid = child.id().to_string();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (done_tx, done) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = done_tx.send(child.wait_with_output());
        });
        Running {
            pid,
            lines,
            done,
            threads: vec![reader, waiter],
        }
    }

    fn kill(&self, signal: &str) {
        let _ = Command::new("kill").args([signal, &self.pid]).status();
    }

    /// The rest of the first stdout line starting with `prefix`.
    fn line(&self, prefix: &str) -> String {
        loop {
            let Ok(line) = self.lines.recv_timeout(WAIT) else {
                self.kill("-KILL");
                panic!("yurthub did not print {prefix:?}");
            };
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// SIGTERM, then the process's output once it exited.
    fn terminate(self) -> Output {
        self.kill("-TERM");
        let out = match self.done.recv_timeout(WAIT) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                self.kill("-KILL");
                panic!("yurthub did not exit after SIGTERM");
            }
        };
        for t in self.threads {
            t.join().unwrap();
        }
        out
    }
}

/// `kubectl get --raw /version` through the hub, if kubectl is installed.
fn kubectl_version(args: &[&str]) {
    let mut all = vec!["--request-timeout=20s"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["get", "--raw", "/version"]);
    match Command::new("kubectl").args(&all).output() {
        Ok(out) => {
            assert!(out.status.success(), "{}", stderr(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v["gitVersion"].is_string(), "{v}");
        }
        Err(e) => eprintln!("kubectl not runnable ({e}); skipped the kubectl step"),
    }
}

#[test]
fn sandbox_serves_kubectl_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let hub = Running::start(&[
        "--sandbox".as_ref(),
        "--node-name".as_ref(),
        "edge-1".as_ref(),
        "--proxy-port".as_ref(),
        "0".as_ref(),
        "--serve-port".as_ref(),
        "0".as_ref(),
        "--disk-cache-path".as_ref(),
        cache.as_os_str(),
    ]);
    let proxy = hub.line("yurthub: proxy on ");
    let kubeconfig = hub.line("yurthub: kubeconfig for kubectl ");
    assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("server: {proxy}"))
    );
    kubectl_version(&["--server", &proxy]);
    kubectl_version(&["--kubeconfig", &kubeconfig]);

    let out = hub.terminate();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("shutting down"), "{}", stderr(&out));
    assert!(cache.join("cache.redb").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn takes_its_credentials_from_a_kubeconfig() {
    let api = yurt_testkit::TestApiServer::builder()
        .tls()
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.conf");
    std::fs::write(
        &kubeconfig,
        api.kubeconfig_for("system:node:edge-1", &["system:nodes"])
            .unwrap(),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let hub = Running::start(&[
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--node-name".as_ref(),
        "edge-1".as_ref(),
        "--proxy-port".as_ref(),
        "0".as_ref(),
        "--serve-port".as_ref(),
        "0".as_ref(),
        "--disk-cache-path".as_ref(),
        cache.as_os_str(),
    ]);
    let proxy = hub.line("yurthub: proxy on ");
    // kubectl blocks this thread; the test apiserver runs on the worker thread.
    let p = proxy.clone();
    tokio::task::spawn_blocking(move || kubectl_version(&["--server", &p]))
        .await
        .unwrap();
    // The hub presented the kubeconfig's client certificate: the TLS apiserver answered it.
    assert!(
        api.traffic()
            .under("/version")
            .any(|r| r.user_agent.starts_with("kubectl") && r.status == 200)
            || Command::new("kubectl").arg("version").output().is_err()
    );

    let out = tokio::task::spawn_blocking(move || hub.terminate())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
