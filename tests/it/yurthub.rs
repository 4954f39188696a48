//! The `yurthub` example as a process: flag and credential errors as one clear line, and the
//! `--sandbox` quick start (kubectl through the proxy, SIGTERM exits 0).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bound of every wait on the child process.
const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn yurthub() -> PathBuf {
    crate::example("yurthub")
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

    /// The first word after `prefix` on the first stdout line starting with it (a listener's
    /// URL, a file's path).
    fn word(&self, prefix: &str) -> String {
        let rest = self.line(prefix);
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
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
    let proxy = hub.word("yurthub: proxy on ");
    let kubeconfig = hub.word("yurthub: kubeconfig for kubectl ");
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
    let proxy = hub.word("yurthub: proxy on ");
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

impl Running {
    /// Every stdout line up to and including the first one starting with `prefix`.
    fn lines_until(&self, prefix: &str, wait: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let Ok(line) = self.lines.recv_timeout(wait) else {
                self.kill("-KILL");
                panic!(
                    "yurthub did not print {prefix:?}; printed:\n{}",
                    seen.join("\n")
                );
            };
            let done = line.starts_with(prefix);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

/// A plain-HTTP GET to the hub as kubelet: (status, body).
fn kubelet_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = addr.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).expect("connect to the hub");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kubelet/v1.36.0\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("the hub's answer");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_and_restarted_offline_serves_its_cache_at_once() {
    let api = yurt_testkit::TestApiServer::builder()
        .tls()
        .start()
        .await
        .unwrap();
    for i in 0..3 {
        api.create_object(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{i}"), "namespace": "default"},
            "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "nginx"}]}}))
            .await
            .unwrap();
    }
    let link = yurt_testkit::chaos::ChaosLink::start(api.addr())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = api
        .ca()
        .issue_client_cert("system:node:edge-1", &["system:nodes"])
        .unwrap();
    let (crt, key, ca) = (
        dir.path().join("hub.crt"),
        dir.path().join("hub.key"),
        dir.path().join("ca.crt"),
    );
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    std::fs::write(&ca, api.ca().ca_pem()).unwrap();
    let server = format!("https://{}", link.local_addr());
    let cache = dir.path().join("cache");
    let args: Vec<std::ffi::OsString> = vec![
        "--server-addr".into(),
        server.into(),
        "--node-name".into(),
        "edge-1".into(),
        "--client-cert".into(),
        crt.into(),
        "--client-key".into(),
        key.into(),
        "--ca-file".into(),
        ca.into(),
        "--proxy-port".into(),
        "0".into(),
        "--serve-port".into(),
        "0".into(),
        "--heartbeat-interval-seconds".into(),
        "1".into(),
        "--heartbeat-timeout-seconds".into(),
        "1".into(),
        "--disk-cache-path".into(),
        cache.into(),
    ];
    let list = "/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1";
    let a = args.clone();
    let (first, proxy, admin) = tokio::task::spawn_blocking(move || {
        let argv: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        let hub = Running::start(&argv);
        let proxy = hub.word("yurthub: proxy on ");
        let admin = hub.word("yurthub: management on ");
        (hub, proxy, admin)
    })
    .await
    .unwrap();
    // Online: kubelet lists its pods through the hub (answered 503 until the first probe),
    // which caches them; /v1/cache then shows the scope.
    let get = |addr: String, path: &'static str| async move {
        tokio::task::spawn_blocking(move || kubelet_get(&addr, path))
            .await
            .unwrap()
    };
    tokio::time::timeout(WAIT, async {
        loop {
            let (status, body) = get(proxy.clone(), list).await;
            if status == 200 && body.contains("web-2") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while !get(admin.clone(), "/v1/cache")
            .await
            .1
            .contains("spec.nodeName=edge-1")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the online list served and cached in time");
    // SIGKILL: no shutdown, no flush beyond what was committed.
    first.kill("-KILL");
    let _ = first.done.recv_timeout(WAIT);
    link.cut();
    let restarted = tokio::task::spawn_blocking(move || {
        let argv: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_os_str()).collect();
        let hub = Running::start(&argv);
        let proxy = hub.word("yurthub: proxy on ");
        let listening = std::time::Instant::now();
        let (status, body) = kubelet_get(&proxy, list);
        let took = listening.elapsed();
        println!("restarted offline after SIGKILL: first pod list served {took:?} after the listener opened");
        assert_eq!(status, 200, "{body}");
        for i in 0..3 {
            assert!(body.contains(&format!("web-{i}")), "{body}");
        }
        // Loose: the target is 100 ms; this only catches a hub that waits for the cloud.
        assert!(took < Duration::from_secs(5), "{took:?}");
        hub.terminate()
    })
    .await
    .unwrap();
    assert_eq!(restarted.status.code(), Some(0), "{}", stderr(&restarted));
    link.shutdown().await;
}

/// The story line that contains `needle` (story lines carry a `[demo  1.23s]` prefix).
fn story_line<'a>(story: &'a [String], needle: &str) -> &'a str {
    let line = story
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("missing {needle:?} in:\n{}", story.join("\n")));
    assert!(
        line.starts_with("[demo "),
        "not marked as a story line: {line}"
    );
    line
}

/// The addresses in a story line's `endpoints [...]` list.
fn endpoints(line: &str) -> Vec<String> {
    let list = line
        .split_once("endpoints [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no endpoint list in {line}"));
    list.split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

/// No log line at WARN or ERROR, and no terminal escape codes (the output is not a terminal).
fn assert_quiet_and_plain(stdout: &str, stderr: &str) {
    for line in stderr.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a warning or error in the demo's output:\n{stderr}"
        );
    }
    assert!(
        !stdout.contains('\x1b'),
        "escape codes on stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "escape codes on stderr:\n{stderr}"
    );
}

#[test]
fn the_demo_tells_its_story_and_exits_0_on_sigterm() {
    // No --node-name: the demo's default node is edge-1.
    let hub = Running::start(&[
        "--demo".as_ref(),
        "--proxy-port".as_ref(),
        "0".as_ref(),
        "--serve-port".as_ref(),
        "0".as_ref(),
    ]);
    let story = hub.lines_until("yurthub: demo done", Duration::from_secs(90));
    let text = story.join("\n");
    println!("{text}");
    // Every claim the story makes, checked against what it printed or against the processes.
    let node = story_line(&story, "hub: node ");
    assert!(node.contains("node edge-1 (the default"), "{node}");
    let url = |needle: &str| {
        story_line(&story, needle)
            .split_once(needle)
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap()
    };
    let (proxy, admin, cache) = (
        url("hub: proxy on "),
        url("hub: management on "),
        url("hub: cache store "),
    );
    assert!(url("cloud: sandbox apiserver on ").starts_with("https://127.0.0.1:"));
    assert!(url("link: fault-injecting link on ").starts_with("127.0.0.1:"));
    assert!(PathBuf::from(&cache).is_file(), "{cache}");
    assert_eq!(kubelet_get(&admin, "/v1/healthz").0, 200);
    story_line(&story, "hub: the cloud is healthy (");

    let online = story_line(&story, "online: kubelet listed");
    for claim in ["listed 3 pods", "1 configmap(s)", "2 service(s)"] {
        assert!(online.contains(claim), "{online}");
    }
    let seen = endpoints(online);
    for ip in ["10.244.1.1", "10.244.1.2", "10.244.1.3"] {
        assert!(seen.iter().any(|a| a == ip), "{online}");
    }
    story_line(&story, "link: cut");
    story_line(&story, "hub: offline detected in ");
    let offline = story_line(&story, "offline: kubelet listed");
    assert!(offline.contains("listed 3 pods"), "{offline}");
    assert!(offline.contains("reflector holds 3 pods"), "{offline}");
    story_line(&story, "cloud: web-3 deleted");
    // The offline patch moved web-1 to 10.244.1.11: kube-proxy's endpoints must say so.
    let patched = story_line(&story, "offline: kubelet patched web-1");
    assert!(patched.contains("1 write(s) journaled"), "{patched}");
    let seen = endpoints(patched);
    assert!(seen.iter().any(|a| a == "10.244.1.11"), "{patched}");
    assert!(!seen.iter().any(|a| a == "10.244.1.1"), "{patched}");
    let restarted = story_line(&story, "hub: restarted offline");
    assert!(restarted.contains("first pod list (3 pods)"), "{restarted}");
    story_line(&story, "link: healed");
    let online_again = story_line(
        &story,
        "offline -> online (link healed -> hub healthy) took ",
    );
    assert!(online_again.ends_with(" ms"), "{online_again}");
    let replayed = story_line(&story, "resync: journal replayed");
    assert!(
        replayed.contains("(1 applied, 0 coalesced, 0 conflict)"),
        "{replayed}"
    );
    assert!(
        replayed.ends_with("the cloud now has web-1 at 10.244.1.11"),
        "{replayed}"
    );
    let dropped = story_line(&story, "dropped web-3");
    assert!(dropped.ends_with("it now holds 2 pods"), "{dropped}");
    // "still serving" through the healed link: the cloud's view, without web-3.
    let last = story.last().unwrap();
    assert!(last.contains(&proxy), "{last}");
    let (status, body) = kubelet_get(&proxy, "/api/v1/pods?fieldSelector=spec.nodeName%3Dedge-1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("web-1") && !body.contains("web-3"), "{body}");

    let out = hub.terminate();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_quiet_and_plain(&text, &stderr(&out));
}

#[test]
fn the_sandbox_defaults_its_node_and_names_its_listeners() {
    let hub = Running::start(&[
        "--sandbox".as_ref(),
        "--proxy-port".as_ref(),
        "0".as_ref(),
        "--serve-port".as_ref(),
        "0".as_ref(),
    ]);
    let node = hub.line("yurthub: node ");
    assert!(
        node.starts_with("edge-1 (the default of --demo and --sandbox"),
        "{node}"
    );
    let proxy = hub.line("yurthub: proxy on ");
    assert!(
        proxy.ends_with("(kubelet, kube-proxy and the node's other clients)"),
        "{proxy}"
    );
    let admin = hub.line("yurthub: management on ");
    assert!(
        admin.contains("(/v1/healthz, /v1/readyz, /metrics, /v1/cache, /v1/journal/rejected)"),
        "{admin}"
    );
    let cache = hub.word("yurthub: cache store ");
    assert!(
        cache.ends_with("cache.redb") && PathBuf::from(&cache).is_file(),
        "{cache}"
    );
    let api = hub.line("yurthub: sandbox apiserver on ");
    assert!(api.starts_with("https://127.0.0.1:"), "{api}");
    let admin = admin.split_whitespace().next().unwrap().to_owned();
    assert_eq!(kubelet_get(&admin, "/v1/healthz").0, 200);
    let out = hub.terminate();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn help_says_what_the_hub_is_and_groups_its_flags() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.starts_with("yurthub: the edge hub (OpenYurt YurtHub) of one node."),
        "{help}"
    );
    assert!(!help.contains("facade crate"), "{help}");
    for opening in [
        "Talks to: the cluster's kube-apiserver(s)",
        "127.0.0.1:10261 (--proxy-port): the proxy",
        "127.0.0.1:10267 (--serve-port): management",
        "yurthub --demo",
    ] {
        assert!(help.contains(opening), "missing {opening:?} in:\n{help}");
    }
    // The flags read as a manual: each group under its heading, in this order.
    let headings = [
        "Upstream (the cloud's kube-apiserver):",
        "Node:",
        "Certificates:",
        "Serving:",
        "Cache and offline behaviour:",
        "Health checks:",
        "Filters and traffic reuse:",
        "Trying it without a cluster:",
    ];
    let at: Vec<usize> = headings
        .iter()
        .map(|h| {
            help.lines()
                .position(|l| l == *h)
                .unwrap_or_else(|| panic!("missing heading {h:?} in:\n{help}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{help}");
    let section = |h: usize| {
        let lines: Vec<&str> = help.lines().collect();
        let end = at.get(h + 1).copied().unwrap_or(lines.len());
        lines[at[h]..end].join("\n")
    };
    assert!(section(0).contains("--server-addr"), "{help}");
    assert!(section(2).contains("--client-cert"), "{help}");
    assert!(section(3).contains("--proxy-port"), "{help}");
    assert!(section(4).contains("--disk-cache-path"), "{help}");
    assert!(section(6).contains("--disabled-resource-filters"), "{help}");
    assert!(section(7).contains("--demo"), "{help}");
    // -h: the first paragraph only.
    let short = String::from_utf8(run(&["-h"]).stdout).unwrap();
    assert!(short.starts_with("yurthub: the edge hub"), "{short}");
}

#[test]
fn server_addresses_are_checked_when_parsed() {
    for (bad, says) in [
        ("https://127.0.0.1:notaport", "port \"notaport\""),
        ("kube-apiserver", "not a server address"),
        ("ftp://10.0.0.10:6443", "scheme \"ftp\""),
        ("https://10.0.0.10:6443/api", "no path"),
        ("https://:6443", "is not a host name"),
        ("https://10.0.0.10:0", "port \"0\""),
    ] {
        let out = run(&["--node-name", "n", "--server-addr", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value")
                && first.contains("--server-addr")
                && first.contains(says),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // Good ones get past parsing (and stop at the missing CA file).
    for good in [
        "10.0.0.10:6443",
        "https://10.0.0.10:6443",
        "https://kube-apiserver.example",
        "http://[::1]:8080/",
        "https://10.0.0.10:6443,https://10.0.0.11:6443",
    ] {
        let out = run(&[
            "--node-name",
            "n",
            "--server-addr",
            good,
            "--ca-file",
            "/nonexistent/yurthub-ca.crt",
        ]);
        assert_eq!(out.status.code(), Some(1), "{good}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--ca-file"),
            "{good}: {}",
            stderr(&out)
        );
    }
}
