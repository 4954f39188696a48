//! Crash consistency under SIGKILL.
//!
//! The parent re-executes this test binary in child mode (`crash_child`, selected by an env
//! var). The child writes continuously through the public async API (single puts, pipelined
//! group-committed watch events, deletes, list replaces) and prints one line per acknowledged
//! write. The parent kills it with SIGKILL at a random moment (sometimes during the open
//! itself), reopens the file and checks:
//!
//! * the open succeeds without quarantine (a crash is not corruption);
//! * every acknowledged object is present with its newest acknowledged resourceVersion, or a
//!   newer version the child wrote after it (committed, not yet acknowledged);
//! * every acknowledged delete holds, unless a newer version was written after it;
//! * every stored object is valid JSON whose resourceVersion and content match what the child
//!   wrote for that version (no torn or mixed values).
//!
//! The state carries over from iteration to iteration, so recovery after recovery is tested.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use yurt_cache::store::{
    EventKind, ListMeta, ListScope, Object, ObjectKey, RedbStore, Store, StoreConfig, StoreMetrics,
    WatchEvent,
};

use crate::util::{Rng, pods};

const ENV_DIR: &str = "YURT_CACHE_CRASH_DIR";
const ENV_BASE: &str = "YURT_CACHE_CRASH_BASE";
const ENV_SEED: &str = "YURT_CACHE_CRASH_SEED";
/// Guard against a hung child or parent; not a performance threshold.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn object(ns: &str, name: &str, rv: u64, pad: usize) -> Object {
    Object::from_value(&serde_json::json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string()},
        "data": {"check": format!("{ns}/{name}@{rv}"), "pad": "x".repeat(pad)},
    }))
    .unwrap()
}

fn ack(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[test]
#[ignore = "child process of the crash test"]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let base: u64 = std::env::var(ENV_BASE).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut cfg = StoreConfig::new(Path::new(&dir).join("cache.redb"));
        cfg.group_commit_events = 16;
        cfg.group_commit_window = Duration::from_millis(2);
        let store = RedbStore::open_async(cfg).await.unwrap();
        ack("READY");
        let g = pods();
        let mut rng = Rng(seed);
        let mut rv = base;
        loop {
            match rng.below(10) {
                0..=3 => {
                    let name = format!("o{}", rng.below(40));
                    rv += 1;
                    let obj = object("w", &name, rv, rng.below(3000) as usize);
                    store.put("crash", &g, obj).await.unwrap();
                    ack(&format!("PUT w {name} {rv}"));
                }
                4..=6 => {
                    // Pipelined: submit every event first, then wait for each ticket.
                    let mut tickets = Vec::new();
                    for _ in 0..1 + rng.below(8) {
                        let name = format!("o{}", rng.below(40));
                        rv += 1;
                        let ev = WatchEvent {
                            kind: EventKind::Modified,
                            object: object("w", &name, rv, rng.below(3000) as usize),
                        };
                        let t = store
                            .submit_watch_events("crash", &g, vec![ev])
                            .await
                            .unwrap();
                        tickets.push((name, rv, t));
                    }
                    for (name, rv, t) in tickets {
                        t.durable().await.unwrap();
                        ack(&format!("PUT w {name} {rv}"));
                    }
                }
                7 => {
                    let name = format!("o{}", rng.below(40));
                    rv += 1;
                    let key = ObjectKey::new("crash", &g, "w", &name);
                    // Announce deletes before they start: if the kill comes before the
                    // acknowledgement, the parent must allow for the delete having committed.
                    ack(&format!("TRY DEL w {name} {rv}"));
                    store.delete(&key, Some(&rv.to_string())).await.unwrap();
                    ack(&format!("DEL w {name} {rv}"));
                }
                _ => {
                    let mut items = Vec::new();
                    let mut listed = Vec::new();
                    for i in 0..16 {
                        if rng.below(2) == 0 {
                            rv += 1;
                            let name = format!("l{i}");
                            items.push(object("l", &name, rv, rng.below(500) as usize));
                            listed.push(format!("{name}:{rv}"));
                        }
                    }
                    rv += 1;
                    let scope = ListScope::parse("crash", &g, "l", "", "").unwrap();
                    let meta = ListMeta {
                        resource_version: rv.to_string(),
                        kind: "ConfigMapList".into(),
                        api_version: "v1".into(),
                        completed_at_ms: 0,
                    };
                    ack(&format!("TRY LIST l {rv} {}", listed.join(",")));
                    store.replace_list(&scope, meta, items).await.unwrap();
                    ack(&format!("LIST l {rv} {}", listed.join(",")));
                }
            }
        }
    });
}

/// Last acknowledged state of one object.
#[derive(Clone, Copy, Debug)]
enum Acked {
    Present(u64),
    Deleted(u64),
}

/// Kills the child on drop, so a failing parent never leaves it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the parent knows: the last acknowledged state of each object, and the highest
/// resourceVersion of a delete that was started (acknowledged or not) on it.
#[derive(Default)]
struct Model {
    acked: BTreeMap<(String, String), Acked>,
    attempted_delete: BTreeMap<(String, String), u64>,
}

fn list_items(items: &[&str]) -> BTreeMap<String, u64> {
    let mut present = BTreeMap::new();
    for item in items.first().map(|s| s.split(',')).into_iter().flatten() {
        if let Some((name, rv)) = item.split_once(':') {
            present.insert(name.to_owned(), rv.parse::<u64>().unwrap());
        }
    }
    present
}

fn apply_line(m: &mut Model, line: &str) {
    let parts: Vec<&str> = line.split(' ').collect();
    let model = &mut m.acked;
    match parts.as_slice() {
        ["TRY", "DEL", ns, name, rv] => {
            let e = m
                .attempted_delete
                .entry(((*ns).into(), (*name).into()))
                .or_default();
            *e = (*e).max(rv.parse().unwrap());
        }
        ["TRY", "LIST", ns, rv, items @ ..] => {
            let present = list_items(items);
            for i in 0..16 {
                let name = format!("l{i}");
                if !present.contains_key(&name) {
                    let e = m.attempted_delete.entry(((*ns).into(), name)).or_default();
                    *e = (*e).max(rv.parse().unwrap());
                }
            }
        }
        ["PUT", ns, name, rv] => {
            model.insert(
                ((*ns).into(), (*name).into()),
                Acked::Present(rv.parse().unwrap()),
            );
        }
        ["DEL", ns, name, rv] => {
            model.insert(
                ((*ns).into(), (*name).into()),
                Acked::Deleted(rv.parse().unwrap()),
            );
        }
        ["LIST", ns, rv, items @ ..] => {
            let list_rv: u64 = rv.parse().unwrap();
            let present = list_items(items);
            for i in 0..16 {
                let name = format!("l{i}");
                let state = match present.get(&name) {
                    Some(rv) => Acked::Present(*rv),
                    None => Acked::Deleted(list_rv),
                };
                model.insert(((*ns).into(), name), state);
            }
        }
        _ => {}
    }
}

fn verify(dir: &Path, m: &Model, limit: u64, ctx: &str) {
    let metrics = StoreMetrics::default();
    let mut cfg = StoreConfig::new(dir.join("cache.redb"));
    cfg.metrics = metrics.clone();
    let store = RedbStore::open(cfg).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    assert_eq!(
        metrics.quarantined_total(),
        0,
        "{ctx}: a crash must not look like corruption"
    );
    let snap = store.snapshot().unwrap();
    let mut stored = BTreeMap::new();
    for (key, obj) in snap.all_objects().unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&obj.json)
            .unwrap_or_else(|e| panic!("{ctx}: {key:?} is not JSON: {e}"));
        let rv: u64 = obj.resource_version.parse().unwrap();
        assert_eq!(
            v["metadata"]["resourceVersion"], obj.resource_version,
            "{ctx}: {key:?}"
        );
        assert_eq!(v["metadata"]["name"], key.name.as_str(), "{ctx}");
        assert_eq!(
            v["data"]["check"],
            format!("{}/{}@{rv}", key.namespace, key.name),
            "{ctx}: content of {key:?} does not match its version"
        );
        assert!(rv < limit, "{ctx}: {key:?} has a version never written");
        stored.insert((key.namespace.clone(), key.name.clone()), rv);
    }
    for ((ns, name), state) in &m.acked {
        let got = stored.get(&(ns.clone(), name.clone())).copied();
        match (*state, got) {
            (Acked::Present(want), Some(rv)) => assert!(
                rv >= want,
                "{ctx}: {ns}/{name} regressed: acked {want}, stored {rv}"
            ),
            (Acked::Present(want), None) => {
                // Only a delete started after the acknowledged write may have removed it.
                let deleted_after = m
                    .attempted_delete
                    .get(&(ns.clone(), name.clone()))
                    .is_some_and(|at| *at > want);
                assert!(
                    deleted_after,
                    "{ctx}: acknowledged {ns}/{name}@{want} is missing"
                );
            }
            (Acked::Deleted(at), Some(rv)) => assert!(
                rv > at,
                "{ctx}: {ns}/{name} deleted at {at} but stored at {rv}"
            ),
            (Acked::Deleted(_), None) => {}
        }
    }
}

fn run_iterations(iterations: u64) {
    let seed = Rng::seed_from_time();
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::default();
    let mut total_acks = 0u64;
    for iteration in 0..iterations {
        let base = (iteration + 1) * 1_000_000_000;
        let ctx = format!("iteration {iteration}, seed {seed}");
        let child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ENV_DIR, dir.path())
            .env(ENV_BASE, base.to_string())
            .env(ENV_SEED, rng.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    // Only complete lines: a line cut by the kill was not acknowledged.
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_owned()).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        // Sometimes kill during start-up (open, integrity check, recovery); usually after a
        // random number of acknowledged writes.
        let early = rng.below(8) == 0;
        let kill_after = if early { 0 } else { 1 + rng.below(150) };
        if early {
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        } else {
            let mut acks = 0;
            while acks < kill_after {
                let line = rx
                    .recv_timeout(HANG_GUARD)
                    .unwrap_or_else(|_| panic!("{ctx}: child stopped answering"));
                if line.starts_with("PUT") || line.starts_with("DEL") || line.starts_with("LIST") {
                    acks += 1;
                }
                apply_line(&mut model, &line);
            }
        }
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        // Lines the child completed before it died are acknowledged writes too.
        for line in rx.iter() {
            if line.starts_with("PUT") || line.starts_with("DEL") || line.starts_with("LIST") {
                total_acks += 1;
            }
            apply_line(&mut model, &line);
        }
        reader.join().unwrap();
        total_acks += kill_after;
        verify(dir.path(), &model, base + 1_000_000_000, &ctx);
    }
    println!("{iterations} SIGKILLs, {total_acks} acknowledged writes checked");
}

#[test]
fn sigkill_50_iterations() {
    run_iterations(50);
}

#[test]
#[ignore = "1,000 SIGKILL iterations take several minutes; run with `cargo test -p yurt-cache --test it -- --ignored sigkill_1000`"]
fn sigkill_1000_iterations() {
    run_iterations(1000);
}
