//! The `raven` tunnel daemon as a process: `--help` says what it is and where it listens, the
//! TLS front doors cannot be left open by accident, and refused agents are logged with their
//! reason and counted on `/metrics`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yurt::tunnel::{Agent, AgentConfig, TlsTransport, tls};
use yurt_testkit::pki::TestCa;

/// Bound of every wait on the child process.
const WAIT: Duration = Duration::from_secs(30);

fn raven() -> PathBuf {
    crate::example("raven")
}

fn run(args: &[&str]) -> Output {
    Command::new(raven())
        .args(args)
        .env_remove("NODE_NAME")
        .output()
        .expect("run raven")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_opens_with_what_raven_is_and_its_ports() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    assert!(
        help.starts_with("raven: cloud-to-edge reverse tunnel"),
        "{help}"
    );
    for needle in [
        "Talks to:",
        "10262",
        "10263",
        "10264",
        "10265",
        "10266",
        "interceptor-proxier.sock",
    ] {
        assert!(help.contains(needle), "missing {needle} in\n{help}");
    }
    let out = run(&["server", "--help"]);
    let help = stdout(&out);
    for heading in [
        "Listeners:",
        "Certificates:",
        "Front doors:",
        "Agents:",
        "Dials:",
        "Keepalive:",
    ] {
        assert!(help.contains(heading), "missing {heading} in\n{help}");
    }
    // The keepalive flags say what they trade.
    assert!(help.contains("found sooner"), "{help}");
}

/// Certificates for a server on 127.0.0.1, written to `dir`.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn write_pki(ca: &TestCa, dir: &Path) -> Files {
    let server = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
    let files = Files {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::write(&files.ca, ca.ca_pem()).unwrap();
    std::fs::write(&files.cert, &server.cert_pem).unwrap();
    std::fs::write(&files.key, &server.key_pem).unwrap();
    files
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_tls_front_doors_need_a_client_ca_or_an_explicit_opt_out() {
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_pki(&ca, dir.path());
    let base = [
        "server",
        "--server-cert",
        s(&f.cert),
        "--server-key",
        s(&f.key),
        "--ca-file",
        s(&f.ca),
    ];
    let out = run(&base);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--front-door-client-ca-file"),
        "{}",
        stderr(&out)
    );
    let mut args = base.to_vec();
    args.extend([
        "--front-door-client-ca-file",
        s(&f.ca),
        "--front-door-allowed-identity",
        "system:node:edge-1",
    ]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node certificates may not use the front doors"),
        "{}",
        stderr(&out)
    );
}

/// A free loopback port (bound and released; the daemon binds it right after).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Kills the daemon when the test ends, however it ends.
struct Daemon {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Waits for a stderr line containing every needle; returns it.
    async fn line_with(&mut self, needles: &[&str]) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self.lines.recv().await.expect("raven exited");
                if needles.iter().all(|n| line.contains(n)) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line with {needles:?}"))
    }
}

async fn get_metrics(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: raven\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_agents_are_logged_with_the_reason_and_counted() {
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write_pki(&ca, dir.path());
    let (agents, secure, insecure, metrics) = (free_port(), free_port(), free_port(), free_port());
    let sock = dir.path().join("proxier.sock");
    let mut child = Command::new(raven())
        .args([
            "server",
            "--tunnel-bind-addr",
            &agents.to_string(),
            "--proxy-internal-secure-addr",
            &secure.to_string(),
            "--proxy-internal-insecure-addr",
            &insecure.to_string(),
            "--metric-bind-addr",
            &metrics.to_string(),
            "--interceptor-server-uds-file",
            s(&sock),
            "--server-cert",
            s(&f.cert),
            "--server-key",
            s(&f.key),
            "--ca-file",
            s(&f.ca),
            "--front-door-client-ca-file",
            s(&f.ca),
            "--no-node-verification",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start raven");
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    let pipe = child.stderr.take().unwrap();
    // Owned by the pipe: ends when the daemon does.
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut daemon = Daemon { child, lines };
    // One line per listener.
    daemon.line_with(&[&agents.to_string(), "agents"]).await;
    daemon.line_with(&["proxier.sock", "CONNECT"]).await;
    daemon
        .line_with(&[&secure.to_string(), "HTTPS front door"])
        .await;
    daemon
        .line_with(&[&insecure.to_string(), "HTTP front door"])
        .await;
    daemon.line_with(&[&metrics.to_string(), "/metrics"]).await;

    // edge-2's certificate registering edge-1.
    let cert = ca
        .issue_client_cert("system:node:edge-2", &["system:nodes"])
        .unwrap();
    let client = tls::client_config(
        &[ca.ca_der()],
        Some((vec![cert.cert_der().unwrap()], cert.key_der().unwrap())),
    )
    .unwrap();
    let config = AgentConfig::new(
        "edge-1",
        vec!["127.0.0.1".parse().unwrap()],
        vec![agents.to_string()],
    );
    let agent = Agent::new(config, Arc::new(TlsTransport::new(client))).unwrap();
    let run = tokio::spawn(async move { agent.run().await });
    let line = daemon
        .line_with(&["agent registration refused", "identity"])
        .await;
    assert!(line.contains("system:node:edge-2"), "{line}");
    run.abort();
    let text = get_metrics(metrics).await;
    assert!(
        text.contains("yurt_tunnel_registrations_rejected_total{reason=\"identity\"}"),
        "{text}"
    );
}

/// With cluster credentials the agent runs layer 3: it creates its WireGuard key, publishes the
/// public key in its own tunnel endpoint of its Gateway (and nowhere else), and exits cleanly on
/// SIGTERM. The node is in no domain with an active endpoint, so its plan is empty and nothing
/// is created on this machine's network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_with_credentials_publishes_its_wireguard_key() {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
    use serde_json::json;
    use yurt::tunnel::l3::wireguard::WireGuardKey;
    use yurt_testkit::{ResourceDef, TestApiServer};

    let out = run(&["agent", "--help"]);
    let help = stdout(&out);
    for flag in [
        "--kubeconfig",
        "--sync-raven-rules-period",
        "--nat-traversal",
        "--vpn-bind-port",
        "--wireguard-key-file",
    ] {
        assert!(help.contains(flag), "missing {flag} in\n{help}");
    }

    let api = TestApiServer::start().await.unwrap();
    api.register(
        ResourceDef::new("raven.openyurt.io", "v1beta1", "gateways", "Gateway")
            .cluster_scoped()
            .status_subresource(),
    );
    let client = api.client();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("raven.openyurt.io", "v1beta1", "Gateway"),
        "gateways",
    );
    let gws: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let other_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let gw: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "raven.openyurt.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw-l3"},
        "spec": {"endpoints": [
            {"nodeName": "edge-other", "type": "tunnel", "port": 4500,
             "config": {"publicKey": other_key}},
            {"nodeName": "edge-l3", "type": "proxy", "port": 10262},
            {"nodeName": "edge-l3", "type": "tunnel", "port": 4500},
        ]},
    }))
    .unwrap();
    gws.create(&Default::default(), &gw).await.unwrap();
    let cms: Api<DynamicObject> = Api::namespaced_with(
        client,
        "kube-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let cm: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "raven-cfg", "namespace": "kube-system"},
        "data": {"enable-l3-tunnel": "true", "enable-l7-proxy": "false"},
    }))
    .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let key_file = dir.path().join("wg/private.key");
    let mut child = tokio::process::Command::new(raven())
        .args(["agent", "--node-name", "edge-l3", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--wireguard-key-file")
        .arg(&key_file)
        .env_remove("NODE_NAME")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start raven agent");

    let deadline = tokio::time::Instant::now() + WAIT;
    let published = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent did not publish its key"
        );
        if let Ok(text) = std::fs::read_to_string(&key_file) {
            let public = WireGuardKey::from_key_file(&text)
                .expect("key file")
                .public_key_base64();
            let eps = gws.get("gw-l3").await.unwrap().data["spec"]["endpoints"].clone();
            if eps[2]["config"]["publicKey"] == public.as_str() {
                break eps;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(published[0]["config"]["publicKey"], other_key);
    assert!(published[1].get("config").is_none(), "{published}");

    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("agent exits on SIGTERM")
        .unwrap();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("following kube-system/raven-cfg"), "{err}");
}
