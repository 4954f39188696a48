//! Opening a cache file: integrity check, quarantine of a bad file, fresh start.
//!
//! The open runs redb's full integrity check (every page checksum of the committed trees is
//! verified, the allocator state rebuilt) and then our schema check (tables, schema version, node
//! identity). A file that fails is renamed to `<file>.<reason>-<unix-ts>` and a fresh, empty store
//! is created in its place, so a bad cache costs a re-list, never a crash loop. Panics inside
//! redb while reading a damaged file are caught and treated as corruption too.
//!
//! Not everything is corruption: a file another process holds open, or a permission error, is
//! returned as an error, because moving it aside would not help (and could hurt the holder).
//! A file left by a crash (SIGKILL, power loss) is not corrupt: redb rolls it back to its last
//! durable commit during the same check, and the open succeeds with that state.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Builder, Database, DatabaseError, StorageError};

use super::engine::{SchemaCheck, check_schema};
use super::error::StoreError;
use super::metrics::{QuarantineLabels, StoreMetrics};

/// What opening one file gave.
enum Attempt {
    Ok(Database),
    /// Move the file aside: (reason label, detail).
    Bad(&'static str, String),
    /// Give up with this error.
    Fatal(StoreError),
}

/// Options of [`open_or_rebuild`] (a subset of `StoreConfig`).
pub(crate) struct OpenOptions<'a> {
    pub(crate) path: &'a Path,
    pub(crate) node_name: Option<&'a str>,
    pub(crate) cache_size_bytes: usize,
    pub(crate) verify_on_open: bool,
    pub(crate) keep_quarantined: usize,
    pub(crate) metrics: &'a StoreMetrics,
}

/// Opens (or creates) the file, moving it aside and starting fresh if it is unusable.
pub(crate) fn open_or_rebuild(opts: &OpenOptions<'_>) -> Result<Database, StoreError> {
    if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    match try_open(opts) {
        Attempt::Ok(db) => Ok(db),
        Attempt::Fatal(e) => Err(e),
        Attempt::Bad(reason, detail) => {
            let moved = quarantine(opts.path, reason, &detail)?;
            opts.metrics
                .quarantined
                .get_or_create(&QuarantineLabels {
                    reason: reason.to_owned(),
                })
                .inc();
            tracing::error!(
                path = %opts.path.display(),
                moved_to = %moved.display(),
                reason,
                detail = %detail,
                "cache file failed its open check; moved aside, starting with an empty cache"
            );
            prune_quarantined(opts.path, opts.keep_quarantined);
            match try_open(opts) {
                Attempt::Ok(db) => Ok(db),
                Attempt::Fatal(e) => Err(e),
                Attempt::Bad(_, detail) => Err(StoreError::Malformed(format!(
                    "fresh cache file unusable: {detail}"
                ))),
            }
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

fn classify(path: &Path, e: DatabaseError) -> Attempt {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            Attempt::Fatal(StoreError::AlreadyOpen(path.to_owned()))
        }
        DatabaseError::Storage(StorageError::Corrupted(d)) => Attempt::Bad("corrupt", d),
        DatabaseError::UpgradeRequired(v) => {
            Attempt::Bad("schema", format!("redb file format {v} needs an upgrade"))
        }
        DatabaseError::RepairAborted => Attempt::Bad("corrupt", "repair aborted".into()),
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Attempt::Bad("corrupt", io.to_string())
        }
        other => Attempt::Fatal(other.into()),
    }
}

fn classify_store(e: StoreError) -> Attempt {
    match e {
        StoreError::Storage(redb::Error::Corrupted(d)) => Attempt::Bad("corrupt", d),
        other => Attempt::Fatal(other),
    }
}

fn try_open(opts: &OpenOptions<'_>) -> Attempt {
    let mut builder = Builder::new();
    builder
        .set_cache_size(opts.cache_size_bytes)
        .set_check_integrity_on_open(opts.verify_on_open);
    let db = match catch_unwind(AssertUnwindSafe(|| builder.create(opts.path))) {
        Err(p) => return Attempt::Bad("corrupt", format!("open panicked: {}", panic_text(&*p))),
        Ok(Err(e)) => return classify(opts.path, e),
        Ok(Ok(db)) => db,
    };
    let checked = catch_unwind(AssertUnwindSafe(|| check_schema(&db, opts.node_name)));
    let verdict = match checked {
        Err(p) => Attempt::Bad(
            "corrupt",
            format!("schema check panicked: {}", panic_text(&*p)),
        ),
        Ok(Err(e)) => classify_store(e),
        Ok(Ok(SchemaCheck::Mismatch(reason, detail))) => Attempt::Bad(reason, detail),
        Ok(Ok(SchemaCheck::Ok)) => return Attempt::Ok(db),
    };
    // Close before the rename; a damaged file may panic on close too.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(db)));
    verdict
}

fn quarantine(path: &Path, reason: &str, _detail: &str) -> Result<PathBuf, StoreError> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache.redb".to_owned());
    let mut target = path.with_file_name(format!("{name}.{reason}-{ts}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.{reason}-{ts}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(target)
}

/// Keeps the newest `keep` quarantined copies of `path` and deletes older ones, so repeated
/// corruption cannot fill the disk. Best effort: failures are logged and ignored.
fn prune_quarantined(path: &Path, keep: usize) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix).is_some_and(|rest| {
                ["corrupt-", "schema-", "foreign-"]
                    .iter()
                    .any(|r| rest.starts_with(r))
            })
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep);
    for (_, old) in found.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "could not prune old quarantined cache file");
        }
    }
}
