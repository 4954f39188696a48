//! The `yurthub` example's credentials at start-up: a client certificate the hub's TLS stack
//! cannot use stops it with one line naming the file and why.

use std::path::Path;
use std::process::Command;

/// A CA and a client certificate signed by it with a plain `openssl x509 -req` (X.509 v1),
/// written to `dir`; `false` when openssl is not installed.
fn openssl_v1_client_cert(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ];
    run(&["version"])
        && run(&[&ec[..], &["ca.key"]].concat())
        && run(&[
            "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ca", "-days", "1", "-out",
            "ca.crt",
        ])
        && run(&[&ec[..], &["c.key"]].concat())
        && run(&[
            "req",
            "-new",
            "-key",
            "c.key",
            "-subj",
            "/CN=system:node:edge-1",
            "-out",
            "c.csr",
        ])
        && run(&[
            "x509",
            "-req",
            "-in",
            "c.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "c.crt",
        ])
}

#[test]
fn an_x509_v1_client_certificate_stops_the_hub_naming_the_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    if !openssl_v1_client_cert(dir.path()) {
        eprintln!("openssl is not installed; skipped");
        return;
    }
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let out = Command::new(crate::yurthub::yurthub())
        .args([
            "--node-name",
            "edge-1",
            "--server-addr",
            "https://127.0.0.1:6443",
            "--ca-file",
            &path("ca.crt"),
            "--client-cert",
            &path("c.crt"),
            "--client-key",
            &path("c.key"),
        ])
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("--client-cert {}", path("c.crt"))),
        "{err}"
    );
    assert!(err.contains("X.509 v1"), "{err}");
}
