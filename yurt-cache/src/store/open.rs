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
//!
//! # File modes
//!
//! The file holds every cached object in clear text, Secrets included, so it is private to the
//! hub's user whatever the process umask: the directory holding it is created (or tightened to)
//! mode 0700 and the file (and every quarantined copy) is created with, or tightened to, 0600.
//! Modes are set with `chmod`, which the umask does not affect. A looser mode found on an
//! existing directory or file is fixed at open and logged with the old and the new mode (a file
//! at WARN: its Secrets were readable by others; the directory at INFO). The one
//! exception is a directory with the sticky bit (such as `/tmp`): it is shared by design, so it
//! is left alone with a warning (the file inside is still 0600).

use std::fs::{DirBuilder, File, OpenOptions as FsOpenOptions};
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

/// Mode of the directory holding the cache file.
const DIR_MODE: u32 = 0o700;
/// Mode of the cache file and its quarantined copies.
const FILE_MODE: u32 = 0o600;
/// Mode of ancestor directories the store has to create on the way to its own.
const ANCESTOR_MODE: u32 = 0o755;

/// Opens (or creates) the file, moving it aside and starting fresh if it is unusable.
pub(crate) fn open_or_rebuild(opts: &OpenOptions<'_>) -> Result<Database, StoreError> {
    let dir = opts
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(dir)?;
    tighten(opts.path, FILE_MODE)?;
    fix_quarantined_modes(opts.path);
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

/// Creates `dir` (ancestors 0755, `dir` itself 0700), or tightens an existing `dir` to 0700.
fn private_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut ancestors = DirBuilder::new();
            ancestors.recursive(true);
            perm::dir_mode(&mut ancestors, ANCESTOR_MODE);
            ancestors.create(parent).map_err(io)?;
        }
        let mut own = DirBuilder::new();
        perm::dir_mode(&mut own, DIR_MODE);
        match own.create(dir) {
            Ok(()) => {}
            // Created meanwhile by someone else: tightened below like any existing directory.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mode = perm::mode(&std::fs::metadata(dir).map_err(io)?);
    if mode.is_some_and(|m| m & 0o1000 != 0) {
        tracing::warn!(
            path = %dir.display(),
            mode = %format!("{:o}", mode.unwrap_or(0)),
            "the cache directory is a shared (sticky) directory; not tightening it: give the \
             cache a directory of its own"
        );
        return Ok(());
    }
    // The file itself is 0600 either way; a directory we may not chmod (another owner) is
    // reported, not fatal.
    if let Err(e) = tighten(dir, DIR_MODE) {
        tracing::warn!(path = %dir.display(), error = %e, "could not make the cache directory private");
    }
    Ok(())
}

/// Sets `path` to exactly `want` when it exists with another mode, and logs the fix. A missing
/// path is fine (nothing to fix).
fn tighten(path: &Path, want: u32) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = match std::fs::metadata(path) {
        Ok(m) => perm::mode(&m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let Some(mode) = mode else { return Ok(()) };
    if mode != want {
        perm::set(path, want).map_err(io)?;
        let (path, from, to) = (path.display(), format!("{mode:o}"), format!("{want:o}"));
        if want == DIR_MODE {
            // Routine: a directory made by deploy tooling (`mkdir -p`) before the first start.
            tracing::info!(%path, %from, %to, "made the cache store's directory private");
        } else {
            // A file that held cached Secrets was readable by others until now.
            tracing::warn!(%path, %from, %to, "fixed the mode of a cache store file (it holds Secrets in clear text)");
        }
    }
    Ok(())
}

/// Tightens the quarantined copies of `path` left by earlier runs (best effort, logged).
fn fix_quarantined_modes(path: &Path) {
    for copy in quarantined_copies(path) {
        if let Err(e) = tighten(&copy, FILE_MODE) {
            tracing::warn!(path = %copy.display(), error = %e, "could not fix the mode of a quarantined cache file");
        }
    }
}

/// Opens the cache file for redb, creating it 0600 (the umask can only remove bits, and an
/// odd umask that removes owner bits is corrected right after).
fn open_file(path: &Path) -> std::io::Result<File> {
    let mut options = FsOpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    perm::file_mode(&mut options, FILE_MODE);
    let file = options.open(path)?;
    if perm::mode(&file.metadata()?).is_some_and(|m| m != FILE_MODE) {
        perm::set(path, FILE_MODE)?;
    }
    Ok(file)
}

/// Unix modes; elsewhere (no modes to set) every call is a no-op.
#[cfg(unix)]
mod perm {
    use std::fs::{DirBuilder, Metadata, OpenOptions, Permissions};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    /// The permission bits (with setuid, setgid and sticky).
    pub(super) fn mode(m: &Metadata) -> Option<u32> {
        Some(m.permissions().mode() & 0o7777)
    }

    pub(super) fn set(path: &Path, mode: u32) -> std::io::Result<()> {
        std::fs::set_permissions(path, Permissions::from_mode(mode))
    }

    pub(super) fn dir_mode(b: &mut DirBuilder, mode: u32) {
        b.mode(mode);
    }

    pub(super) fn file_mode(o: &mut OpenOptions, mode: u32) {
        o.mode(mode);
    }
}

#[cfg(not(unix))]
mod perm {
    use std::fs::{DirBuilder, Metadata, OpenOptions};
    use std::path::Path;

    pub(super) fn mode(_: &Metadata) -> Option<u32> {
        None
    }

    pub(super) fn set(_: &Path, _: u32) -> std::io::Result<()> {
        Ok(())
    }

    pub(super) fn dir_mode(_: &mut DirBuilder, _: u32) {}

    pub(super) fn file_mode(_: &mut OpenOptions, _: u32) {}
}

fn try_open(opts: &OpenOptions<'_>) -> Attempt {
    let mut builder = Builder::new();
    builder
        .set_cache_size(opts.cache_size_bytes)
        .set_check_integrity_on_open(opts.verify_on_open);
    let file = match open_file(opts.path) {
        Ok(f) => f,
        Err(source) => {
            return Attempt::Fatal(StoreError::Io {
                path: opts.path.to_owned(),
                source,
            });
        }
    };
    let backend = match redb::backends::FileBackend::new(file) {
        Ok(b) => b,
        Err(e) => return classify(opts.path, e),
    };
    let db = match catch_unwind(AssertUnwindSafe(|| builder.create_with_backend(backend))) {
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
    let mut found: Vec<(SystemTime, PathBuf)> = quarantined_copies(path)
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(keep);
    for (_, old) in found.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "could not prune old quarantined cache file");
        }
    }
}

/// The quarantined copies of `path` in its directory (`<file>.corrupt-…`, `.schema-…`,
/// `.foreign-…`); empty when the directory cannot be read.
fn quarantined_copies(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix).is_some_and(|rest| {
                ["corrupt-", "schema-", "foreign-"]
                    .iter()
                    .any(|r| rest.starts_with(r))
            })
        })
        .map(|e| e.path())
        .collect()
}
