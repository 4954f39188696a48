//! The cache file holds Secrets in clear text: it is created 0600 in a 0700 directory whatever
//! the umask, and looser modes of an existing directory, file and quarantined copies are fixed
//! at open.
//!
//! The umask is process-wide, so the store is opened in a child process (this test binary
//! again, in child mode `modes_child`) started by `sh` with the umask under test; the parent
//! checks the modes with `stat`.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use yurt_cache::store::{Gvr, Object, ObjectKey, RedbStore, Store, StoreConfig};

const ENV_FILE: &str = "YURT_CACHE_MODES_FILE";

fn gvr() -> Gvr {
    Gvr::new("", "v1", "secrets")
}

fn secret() -> Object {
    Object::from_value(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token", "namespace": "default", "resourceVersion": "5"},
        "data": {"token": "c2VjcmV0"},
    }))
    .unwrap()
}

#[test]
#[ignore = "child process of the file mode tests"]
fn modes_child() {
    let Ok(file) = std::env::var(ENV_FILE) else {
        return;
    };
    let store = RedbStore::open(StoreConfig::new(file)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        store.put("kubelet", &gvr(), secret()).await.unwrap();
        store.shutdown().await;
    });
}

/// Opens the store at `file` in a child process whose umask is `umask`.
fn open_with_umask(file: &Path, umask: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([
            "--exact",
            "modes::modes_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(ENV_FILE, file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The permission bits, in octal.
fn mode(path: &Path) -> String {
    format!(
        "{:o}",
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn quarantined(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cache.redb.")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_new_store_is_private_whatever_the_umask() {
    for umask in ["000", "022"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/kubernetes/cache");
        let file = dir.join("cache.redb");
        open_with_umask(&file, umask);
        assert_eq!(mode(&file), "600", "file, umask {umask}");
        assert_eq!(mode(&dir), "700", "directory, umask {umask}");
        // Ancestors the store created are ordinary directories, not world-writable ones.
        assert_eq!(
            mode(&root.path().join("etc/kubernetes")),
            "755",
            "ancestor, umask {umask}"
        );
    }
}

#[test]
fn loose_modes_of_an_existing_store_are_fixed_at_open() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let file = dir.join("cache.redb");
    // A store written by an earlier build, made world-readable, with an old quarantined copy.
    open_with_umask(&file, "022");
    chmod(&file, 0o644);
    chmod(&dir, 0o755);
    let old_copy = dir.join("cache.redb.corrupt-1700000000");
    std::fs::write(&old_copy, b"old damaged cache").unwrap();
    chmod(&old_copy, 0o644);

    open_with_umask(&file, "022");
    assert_eq!(mode(&file), "600");
    assert_eq!(mode(&dir), "700");
    assert_eq!(mode(&old_copy), "600");

    // Nothing was lost on the way.
    let store = RedbStore::open(StoreConfig::new(&file)).unwrap();
    let key = ObjectKey::new("kubelet", &gvr(), "default", "token");
    let got = store.snapshot().unwrap().get(&key).unwrap();
    assert_eq!(got.unwrap().resource_version, "5");
}

#[test]
fn a_quarantined_copy_stays_private() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o755);
    let file = dir.join("cache.redb");
    std::fs::write(&file, vec![0xA5; 64 * 1024]).unwrap();
    chmod(&file, 0o644);

    open_with_umask(&file, "000");
    let copies = quarantined(&dir);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0].to_string_lossy().contains(".corrupt-"),
        "{copies:?}"
    );
    assert_eq!(mode(&copies[0]), "600");
    assert_eq!(mode(&file), "600");
    assert_eq!(mode(&dir), "700");
}
