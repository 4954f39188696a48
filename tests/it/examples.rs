//! The example binaries: clear one-line errors and non-zero exits on bad input, the documented
//! output on good input. `cargo test` builds the examples next to this test binary.

use std::process::{Command, Output};

use crate::example;

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .env_remove("NODE_NAME")
        .output()
        .expect("run example")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn request_info_prints_the_resolved_request() {
    let out = run(
        "request-info",
        &[
            "GET",
            "/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3Dweb",
            "--user-agent",
            "kubelet/v1.36.0 (linux/amd64)",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["component"], "kubelet");
    assert_eq!(v["requestInfo"]["verb"], "watch");
    assert_eq!(v["requestInfo"]["namespace"], "default");
    assert_eq!(v["labelSelector"], "app=web");
}

#[test]
fn request_info_answers_a_bad_request_with_a_status() {
    let out = run("request-info", &["GET", "/api/v1/pods?timeoutSeconds=soon"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["kind"], "Status");
    assert_eq!(v["status"]["code"], 400);
    assert!(
        v["status"]["message"]
            .as_str()
            .unwrap()
            .contains("timeoutSeconds")
    );
}

#[test]
fn request_info_help_says_what_it_is() {
    let out = run("request-info", &["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.starts_with("request-info: resolves one Kubernetes API request line"),
        "{help}"
    );
    assert!(help.contains("Talks to: nothing"), "{help}");
    assert!(!help.contains("facade crate"), "{help}");
}

#[test]
fn raven_rejects_unknown_flags() {
    let out = run("raven", &["server", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-such-flag"), "{}", stderr(&out));
}

#[test]
fn raven_agent_requires_its_servers() {
    let out = run("raven", &["agent", "--node-name", "edge-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tunnelserver-addr"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn raven_names_an_unreadable_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let missing = missing.to_str().unwrap();
    let out = run(
        "raven",
        &[
            "agent",
            "--node-name",
            "edge-1",
            "--node-ip",
            "127.0.0.1",
            "--tunnelserver-addr",
            "127.0.0.1:1",
            "--cert",
            missing,
            "--key",
            missing,
            "--ca-file",
            missing,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("missing.crt"), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "one clear line: {err}"
    );
}
