//! The `yurt-manager` example as a process: flag and connection errors as one clear line; two
//! replicas against the test apiserver (one leads, the other takes over when the leader is
//! killed, no double writes); probes and metrics; the webhook server on `--webhook-port`;
//! SIGTERM releases the Lease and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use yurt::core::crd::NodePool;
use yurt_testkit::TestApiServer;

/// Bound of every wait on a child process or condition.
const WAIT: Duration = Duration::from_secs(30);

fn binary() -> PathBuf {
    crate::example("yurt-manager")
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run yurt-manager")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of `out`'s stderr that the program itself wrote (not log lines).
fn own_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("yurt-manager:"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn bad_flags_are_one_clear_line() {
    let out = run(&["--bogus-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--bogus-flag"));

    let out = run(&["--max-nodes-per-bucket", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-nodes-per-bucket"));

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.conf");
    let out = run(&["--kubeconfig", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(own_lines(&out).len(), 1, "{}", stderr(&out));
    assert!(
        own_lines(&out)[0].contains("--kubeconfig"),
        "{}",
        stderr(&out)
    );

    let out = run(&["--metrics-addr", "not-an-address"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--metrics-addr"), "{}", stderr(&out));
}

#[test]
fn help_says_what_it_is_and_what_it_listens_on() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.starts_with("OpenYurt's cloud-side controller manager"),
        "{help}"
    );
    for needle in [
        ":10271",
        ":10272",
        ":10273",
        "--webhook-port",
        "kube-apiserver",
        "Leader election:",
        "--controllers",
    ] {
        assert!(help.contains(needle), "{needle} missing from --help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_controllers_and_an_unreachable_apiserver_are_one_clear_line() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let kc = kubeconfig.to_str().unwrap().to_owned();

    let k = kc.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "--kubeconfig",
            &k,
            "--controllers",
            "*,-nodepol",
            "--metrics-addr",
            "0",
            "--health-probe-addr",
            "0",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = own_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stderr(&out));
    assert!(lines[0].contains("\"nodepol\""), "{}", lines[0]);

    api.go_down().await;
    let out = tokio::task::spawn_blocking(move || {
        run(&[
            "--kubeconfig",
            &kc,
            "--metrics-addr",
            "0",
            "--health-probe-addr",
            "0",
        ])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = own_lines(&out);
    assert_eq!(lines.len(), 1, "{}", stderr(&out));
    assert!(
        lines[0].contains("cannot reach the apiserver"),
        "{}",
        lines[0]
    );
}

/// A running manager: its stdout lines, its exit, its pid for `kill`.
struct Proc {
    pid: String,
    lines: mpsc::Receiver<String>,
    done: mpsc::Receiver<std::io::Result<Output>>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let mut child = Command::new(binary())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yurt-manager");
        let pid = child.id().to_string();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait_with_output());
        });
        Proc { pid, lines, done }
    }

    fn kill(&self, signal: &str) {
        let _ = Command::new("kill").args([signal, &self.pid]).status();
    }

    /// The rest of the first stdout line starting with `prefix` (blocking, bounded).
    fn line(&self, prefix: &str) -> String {
        loop {
            let Ok(line) = self.lines.recv_timeout(WAIT) else {
                self.kill("-KILL");
                panic!("yurt-manager did not print {prefix:?}");
            };
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Sends `signal` and returns the output once the process exited (bounded).
    fn stop(self, signal: &str) -> Output {
        self.kill(signal);
        match self.done.recv_timeout(WAIT) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                self.kill("-KILL");
                panic!("yurt-manager did not exit after {signal}");
            }
        }
    }
}

/// A plain-HTTP GET: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let code = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn holder(api: &TestApiServer) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(api.client(), "kube-system");
    leases
        .get_opt("yurt-manager")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn node_label(api: &TestApiServer, node: &str, key: &str) -> Option<String> {
    let nodes: Api<Node> = Api::all(api.client());
    nodes
        .get(node)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default()
        .get(key)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leads_and_the_standby_takes_over() {
    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let kc = kubeconfig.to_str().unwrap();
    let args = [
        "--kubeconfig",
        kc,
        "--metrics-addr",
        "127.0.0.1:0",
        "--health-probe-addr",
        "127.0.0.1:0",
        // Two replicas on one host cannot share the webhook port; the webhook server has its
        // own tests.
        "--webhook-port",
        "0",
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    // The first replica installs the CRDs.
    let mut first_args = args.to_vec();
    first_args.push("--install-crds");
    let a = Proc::start(&first_args);
    let a = tokio::task::spawn_blocking(move || {
        let crds = a.line("yurt-manager: applied CRDs ");
        assert!(crds.contains("nodepools.apps.openyurt.io"), "{crds}");
        let metrics = a
            .line("yurt-manager: metrics on http://")
            .trim_end_matches("/metrics")
            .to_owned();
        let health = a.line("yurt-manager: health probes on http://");
        let health = health.split('/').next().unwrap().to_owned();
        let id = a.line("yurt-manager: leader election on Lease kube-system/yurt-manager as ");
        (a, metrics, health, id)
    })
    .await
    .unwrap();
    let (a, a_metrics, a_health, a_id) = a;
    let crds: Api<CustomResourceDefinition> = Api::all(api.client());
    assert!(
        crds.get_opt("nodepools.apps.openyurt.io")
            .await
            .unwrap()
            .is_some()
    );
    eventually("a leads", || async {
        (holder(&api).await.as_deref() == Some(a_id.as_str())).then_some(())
    })
    .await;

    let b = Proc::start(&args);
    let (b, b_id) = tokio::task::spawn_blocking(move || {
        let id = b.line("yurt-manager: leader election on Lease kube-system/yurt-manager as ");
        (b, id)
    })
    .await
    .unwrap();
    assert_ne!(a_id, b_id);

    // The leader reconciles.
    let pools: Api<NodePool> = Api::all(api.client());
    let pool: NodePool = serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
        "kind": "NodePool", "metadata": {"name": "p"}, "spec": {"labels": {"zone": "a"}}}))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();
    let nodes: Api<Node> = Api::all(api.client());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1",
        "labels": {"apps.openyurt.io/nodepool": "p"}}}))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    eventually("n1 synced", || async {
        (node_label(&api, "n1", "zone").await.as_deref() == Some("a")).then_some(())
    })
    .await;

    // With two replicas running, one pool change is one write to the node.
    api.reset_traffic();
    pools
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"labels": {"zone": "b"}}})),
        )
        .await
        .unwrap();
    eventually("n1 resynced", || async {
        (node_label(&api, "n1", "zone").await.as_deref() == Some("b")).then_some(())
    })
    .await;
    // Let any (wrong) second writer catch up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let node_writes = api
        .traffic()
        .records
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == "/api/v1/nodes/n1")
        .count();
    assert_eq!(node_writes, 1, "exactly one replica writes");

    // Probes and metrics of the leader.
    let (h, m) = (a_health.clone(), a_metrics.clone());
    let (health, ready, metrics) = tokio::task::spawn_blocking(move || {
        (
            http_get(&h, "/healthz"),
            http_get(&h, "/readyz"),
            http_get(&m, "/metrics"),
        )
    })
    .await
    .unwrap();
    assert_eq!(health, (200, "ok".to_string()));
    assert_eq!(ready.0, 200);
    assert_eq!(metrics.0, 200);
    assert!(
        metrics.1.contains("controller_runtime_reconcile_total{controller=\"nodepool-controller\",result=\"success\"}"),
        "{}",
        metrics.1
    );
    assert!(
        metrics
            .1
            .contains("leader_election_master_status{name=\"yurt-manager\"} 1")
    );

    // Kill the leader: the standby takes over once the Lease expires, and reconciles.
    let out = tokio::task::spawn_blocking(move || a.stop("-KILL"))
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    eventually("b leads", || async {
        (holder(&api).await.as_deref() == Some(b_id.as_str())).then_some(())
    })
    .await;
    pools
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"labels": {"zone": "c"}}})),
        )
        .await
        .unwrap();
    eventually("n1 synced by b", || async {
        (node_label(&api, "n1", "zone").await.as_deref() == Some("c")).then_some(())
    })
    .await;

    // SIGTERM: the leader releases the Lease and exits 0.
    let out = tokio::task::spawn_blocking(move || b.stop("-TERM"))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(holder(&api).await, None, "the Lease is released");
}

/// The example's webhook server: `--webhook-port`/`--webhook-host` wired, the certificate
/// Secret created, the webhook configuration pointed at it, a NodePool defaulted through it by
/// the test apiserver's admission, its metrics on `/metrics`, and SIGTERM stopping it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_server_serves_on_the_webhook_port_until_sigterm() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;

    let api = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    // The NodePool defaulting webhook as deploy/yurt-manager/webhooks.yaml ships it.
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(api.client());
    let hook = serde_json::from_value(json!({
        "metadata": {"name": "yurt-manager-mutating-webhook-configuration"},
        "webhooks": [{"name": "m.v1beta2.nodepool.kb.io", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "failurePolicy": "Fail",
            "clientConfig": {"service": {"namespace": "kube-system",
                "name": "yurt-manager-webhook-service",
                "path": "/mutate-apps-openyurt-io-v1beta2-nodepool"}},
            "rules": [{"apiGroups": ["apps.openyurt.io"], "apiVersions": ["v1beta2"],
                "resources": ["nodepools"], "operations": ["CREATE"]}]}]
    }))
    .unwrap();
    hooks.create(&PostParams::default(), &hook).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let p = Proc::start(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--metrics-addr",
        "127.0.0.1:0",
        "--health-probe-addr",
        "0",
        "--leader-elect=false",
        "--install-crds",
        "--webhook-port",
        &port,
        "--webhook-host",
        "127.0.0.1",
    ]);
    let metrics = p.line("yurt-manager: metrics on http://");
    let metrics = metrics.trim_end_matches("/metrics").to_owned();
    let webhooks = p.line("yurt-manager: webhooks on https://");
    assert_eq!(
        webhooks,
        format!(
            "0.0.0.0:{port} (certificates created in Secret kube-system/yurt-manager-webhook-certs)"
        )
    );
    let secrets: Api<Secret> = Api::namespaced(api.client(), "kube-system");
    let secret = secrets.get("yurt-manager-webhook-certs").await.unwrap();
    let ca = secret.data.unwrap()["ca-cert.pem"].0.clone();
    let hook = hooks
        .get("yurt-manager-mutating-webhook-configuration")
        .await
        .unwrap();
    let cfg = &hook.webhooks.unwrap()[0].client_config;
    assert_eq!(cfg.ca_bundle.as_ref().map(|b| &b.0), Some(&ca));
    assert_eq!(
        cfg.url.as_deref(),
        Some(format!("https://127.0.0.1:{port}/mutate-apps-openyurt-io-v1beta2-nodepool").as_str())
    );

    // The apiserver calls the example's webhook: the pool is defaulted.
    let pools: Api<NodePool> = Api::all(api.client());
    let pool = serde_json::from_value(json!({"apiVersion": "apps.openyurt.io/v1beta2",
        "kind": "NodePool", "metadata": {"name": "hz"}, "spec": {}}))
    .unwrap();
    let created = pools.create(&PostParams::default(), &pool).await.unwrap();
    assert_eq!(
        created.spec.type_,
        Some(yurt::core::crd::NodePoolType::Edge)
    );
    assert_eq!(created.spec.leader_replicas, Some(1));
    let (code, body) = http_get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains(
            "controller_runtime_webhook_requests_total{webhook=\"/mutate-apps-openyurt-io-v1beta2-nodepool\",code=\"200\"} 1"
        ),
        "{body}"
    );

    // SIGTERM stops the webhook server with the manager.
    let out = p.stop("-TERM");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
}
