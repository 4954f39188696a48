//! [`RedbStore`]: the [`Store`] on one redb file, with a dedicated writer thread doing group
//! commit, and reads on `spawn_blocking` over MVCC snapshots.
//!
//! Ownership: the writer thread is owned by the store. [`RedbStore::shutdown`] (or dropping the
//! last clone) asks it to commit what is queued and stop, and joins it, waiting at most
//! [`StoreConfig::op_timeout`]. Every wait of a caller (queue space, commit acknowledgement,
//! blocking read) is bounded by the same timeout.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::engine::{JournalAppend, JournalStats, OpOutcome, Snapshot, SyncStore, Txn, WriteOp};
use super::error::StoreError;
use super::metrics::StoreMetrics;
use super::open::{OpenOptions, open_or_rebuild};
use super::recovery::{Recovery, ReopenPolicy, StoreHealth};
use super::types::{
    DeleteOutcome, EventOutcome, Gvr, ListMeta, ListResult, ListScope, ListScopeKey, Object,
    ObjectKey, PutOutcome, ReplaceOutcome, StoredObject, Usage, WatchEvent,
};
use super::{CommitTicket, Store};

/// Default of [`StoreConfig::cache_size_bytes`].
const DEFAULT_CACHE_SIZE_BYTES: usize = 2 << 20;

/// How a [`RedbStore`] is opened and how it commits.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The database file (created with its parent directories if missing).
    pub path: PathBuf,
    /// This node's name, recorded in a new file; a file recorded for another node is moved
    /// aside (`foreign`) instead of being served. `None` skips the check.
    pub node_name: Option<String>,
    /// Group commit: a batch of watch events commits once it holds this many events (N)...
    pub group_commit_events: usize,
    /// ...or once its first event has waited this long (T), whichever comes first.
    pub group_commit_window: Duration,
    /// Watch events accepted but not yet committed, at most; submitters wait for room.
    pub max_pending_events: usize,
    /// Upper bound of every wait of a caller (queue room, commit, read) and of shutdown.
    pub op_timeout: Duration,
    /// redb page cache size in bytes: pages read and pages written by the open transaction
    /// (redb flushes written pages early once the cache is full). The cache is resident memory
    /// of the hub, up to this size; a miss is a `pread` of the file, usually from the
    /// kernel's page cache. Default 2 MiB, for an edge node short of memory: with 10,000
    /// ConfigMaps cached the `yurthub` example stays under 20 MB resident (`scripts/hub-rss.sh`:
    /// about 19.5 MB at 2 MiB, 23 MB at 4 MiB, 31 MB at 64 MiB). Reads (one sequential scan
    /// per list, single objects) and replaces that rewrite few objects do not need more. A
    /// replace that rewrites more than the cache holds is slower: 10,000 changed pods take
    /// about 90 ms at 2 MiB and 60 ms from 4 MiB up (`cache_store` bench, `replace_10k`).
    pub cache_size_bytes: usize,
    /// Run the full integrity check on open (recommended; it reads the whole file once).
    pub verify_on_open: bool,
    /// Quarantined copies of the file to keep; older ones are deleted.
    pub keep_quarantined: usize,
    /// Metrics to update (clone the same value into your registry).
    pub metrics: StoreMetrics,
    /// After an I/O error the file is closed and reopened; the first attempt waits this long,
    /// each failed one doubles the wait...
    pub reopen_backoff: Duration,
    /// ...up to this cap, at which attempts go on for as long as the store lives.
    pub reopen_backoff_max: Duration,
    /// Failures after which [`RedbStore::health`] reports [`StoreHealth::Failed`] (the hub's
    /// `/v1/healthz` fails): I/O errors and failed reopen attempts since the last write that
    /// committed.
    pub unhealthy_after_reopen_failures: u32,
}

impl StoreConfig {
    /// Defaults: N = 1024 events, T = 10 ms, 65,536 pending events, 30 s timeout, 2 MiB page
    /// cache, integrity check on, two quarantined copies kept; after an I/O error reopen
    /// attempts 200 ms apart, doubling up to 30 s, unhealthy after 5 failures without a
    /// write committing (about 6 s on a full disk).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            node_name: None,
            group_commit_events: 1024,
            group_commit_window: Duration::from_millis(10),
            max_pending_events: 65_536,
            op_timeout: Duration::from_secs(30),
            cache_size_bytes: DEFAULT_CACHE_SIZE_BYTES,
            verify_on_open: true,
            keep_quarantined: 2,
            metrics: StoreMetrics::default(),
            reopen_backoff: Duration::from_millis(200),
            reopen_backoff_max: Duration::from_secs(30),
            unhealthy_after_reopen_failures: 5,
        }
    }
}

/// Where the writer sends one operation's outcome.
type Reply = oneshot::Sender<Result<OpOutcome, StoreError>>;

enum Command {
    Write {
        op: Box<WriteOp>,
        reply: Reply,
        /// Queue room held by watch events until their commit.
        _permit: Option<OwnedSemaphorePermit>,
    },
    Compact {
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// A reader met an I/O error: start recovering.
    IoError(String),
    Shutdown,
}

struct WriterHandle {
    thread: JoinHandle<()>,
    done: mpsc::Receiver<()>,
}

struct Inner {
    core: Arc<SyncStore>,
    recovery: Arc<Recovery>,
    path: PathBuf,
    tx: mpsc::Sender<Command>,
    closed: AtomicBool,
    /// Watch events submitted and not yet in a closed batch (see `Writer::fill`).
    queued: Arc<AtomicUsize>,
    /// The writer thread, to unpark it when a batch fills up or an urgent write arrives.
    writer_thread: std::thread::Thread,
    max_events: usize,
    writer: Mutex<Option<WriterHandle>>,
    permits: Arc<Semaphore>,
    max_permits: usize,
    timeout: Duration,
}

impl Inner {
    /// Stops the writer (it commits what is queued first) and joins it, within the timeout.
    fn stop_writer(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Command::Shutdown);
        self.writer_thread.unpark();
        let handle = match self.writer.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            match h.done.recv_timeout(self.timeout) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if h.thread.join().is_err() {
                        tracing::error!("cache store writer thread panicked");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::error!(
                        timeout = ?self.timeout,
                        "cache store writer did not stop in time; leaving it detached"
                    );
                }
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// The redb-backed [`Store`]. Cheap to clone (clones share one file and one writer).
///
/// Dropping the last clone stops the writer thread and joins it, which waits for the commit in
/// flight (bounded by [`StoreConfig::op_timeout`]); in async code call
/// [`RedbStore::shutdown`] first so that wait happens off the async threads.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store described by `config`, quarantining an unusable file, and
    /// starts its writer thread. This does blocking I/O (the integrity check reads the whole
    /// file): from async code call it inside `spawn_blocking`, or use [`RedbStore::open_async`].
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let db = open_or_rebuild(&OpenOptions {
            path: &config.path,
            node_name: config.node_name.as_deref(),
            cache_size_bytes: config.cache_size_bytes,
            verify_on_open: config.verify_on_open,
            keep_quarantined: config.keep_quarantined,
            metrics: &config.metrics,
        })?;
        let core = Arc::new(SyncStore::from_checked(db, config.metrics.clone()));
        let recovery = Arc::new(Recovery::new(
            ReopenPolicy {
                backoff: config.reopen_backoff,
                backoff_max: config.reopen_backoff_max,
                unhealthy_after: config.unhealthy_after_reopen_failures.max(1),
            },
            config.metrics.clone(),
        ));
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let max_events = config.group_commit_events.max(1);
        let writer = Writer {
            core: core.clone(),
            recovery: recovery.clone(),
            config: config.clone(),
            rx,
            queued: queued.clone(),
            max_events,
            window: config.group_commit_window,
        };
        let thread = std::thread::Builder::new()
            .name("yurt-cache-writer".into())
            .spawn(move || {
                writer.run();
                let _ = done_tx.send(());
            })
            .map_err(|source| StoreError::Io {
                path: config.path.clone(),
                source,
            })?;
        let max_permits = config
            .max_pending_events
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                recovery,
                path: config.path,
                tx,
                closed: AtomicBool::new(false),
                queued,
                writer_thread: thread.thread().clone(),
                max_events,
                writer: Mutex::new(Some(WriterHandle { thread, done })),
                permits: Arc::new(Semaphore::new(max_permits)),
                max_permits,
                timeout: config.op_timeout,
            }),
        })
    }

    /// [`RedbStore::open`] on a blocking thread.
    pub async fn open_async(config: StoreConfig) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open(config))
            .await
            .map_err(|e| StoreError::TaskFailed(e.to_string()))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The metrics this store updates.
    pub fn metrics(&self) -> &StoreMetrics {
        self.inner.core.metrics()
    }

    /// Whether the store works, is recovering from an I/O error, or could not recover (see
    /// the store's recovery docs); for liveness checks.
    pub fn health(&self) -> StoreHealth {
        self.inner.recovery.health()
    }

    /// A synchronous MVCC snapshot, for callers already on a blocking thread (and for batches
    /// of reads that must see one commit). It never waits for the writer.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.inner.core.snapshot()
    }

    /// Commits what is queued, stops the writer thread and joins it (bounded by the timeout).
    /// Later writes fail with [`StoreError::Closed`]; reads keep working until the last clone
    /// is dropped, which closes the file.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.stop_writer()).await;
    }

    /// Compacts the file on the writer thread, between commits. Reads started during the
    /// compaction wait for it (it holds the database exclusively), and it fails with a storage
    /// error if a snapshot is alive. Returns whether space was reclaimed.
    pub async fn compact(&self) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Compact { reply })?;
        wait(rx, self.inner.timeout).await
    }

    /// An offline write: stores `object` (the cached copy with a local change applied, no
    /// resourceVersion compare) and appends `journal` to the journal in one durable
    /// transaction. Returns the entry's sequence number; [`StoreError::JournalFull`] (and
    /// nothing written) if a journal cap refuses the entry.
    pub async fn local_write(
        &self,
        component: &str,
        gvr: &Gvr,
        object: Object,
        journal: Option<JournalAppend>,
    ) -> Result<Option<u64>, StoreError> {
        match self
            .write(WriteOp::LocalWrite {
                component: component.to_owned(),
                gvr: gvr.clone(),
                object,
                journal,
            })
            .await?
        {
            OpOutcome::Journaled(seq) => Ok(seq),
            OpOutcome::JournalFull(full) => Err(full.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Appends an entry to the journal (durably); returns its sequence number, or
    /// [`StoreError::JournalFull`].
    pub async fn journal_append(&self, append: JournalAppend) -> Result<u64, StoreError> {
        match self.write(WriteOp::JournalAppend { append }).await? {
            OpOutcome::Journaled(Some(seq)) => Ok(seq),
            OpOutcome::JournalFull(full) => Err(full.into()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a journal entry (durably), and its coalescing pointer if it still names it.
    pub async fn journal_remove(
        &self,
        seq: u64,
        coalesce: Option<String>,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::JournalRemove { seq, coalesce })
            .await
            .map(|_| ())
    }

    /// Removes a journal entry the replay gave up on and records `record` (JSON) for the
    /// operator, keeping the newest `keep` records.
    pub async fn journal_reject(
        &self,
        seq: u64,
        coalesce: Option<String>,
        record: Bytes,
        keep: usize,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::JournalReject {
            seq,
            coalesce,
            record,
            keep,
        })
        .await
        .map(|_| ())
    }

    /// Journal entries after `after`, bounded (see [`Snapshot::journal_batch`]).
    pub async fn journal_batch(
        &self,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.read(move |s| s.journal_batch(after, max_entries, max_bytes))
            .await
    }

    /// The journal's pending bytes and entries.
    pub async fn journal_stats(&self) -> Result<JournalStats, StoreError> {
        self.read(|s| s.journal_stats()).await
    }

    /// The records of the entries the replay gave up on, oldest first.
    pub async fn journal_rejected(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.read(|s| s.journal_rejected()).await
    }

    /// Runs `f` on a fresh snapshot on the blocking pool, bounded by the store's timeout: for
    /// callers that read several things consistently (offline serving).
    pub async fn read_snapshot<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T, StoreError> + Send + 'static,
    {
        self.read(f).await
    }

    /// The bound of every wait ([`StoreConfig::op_timeout`]).
    pub fn op_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The journal, oldest entry first.
    pub async fn journal(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.read(|s| s.journal()).await
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let events = match &cmd {
            Command::Write { op, .. } => op.watch_events(),
            _ => 0,
        };
        // Count before sending, so the writer never subtracts events it was not told about.
        let total = self.inner.queued.fetch_add(events, Ordering::SeqCst) + events;
        if self.inner.tx.send(cmd).is_err() {
            self.inner.queued.fetch_sub(events, Ordering::SeqCst);
            return Err(StoreError::Closed);
        }
        let crossed_wake_mark = total / WAKE_EVERY != (total - events) / WAKE_EVERY;
        if events == 0 || total >= self.inner.max_events || crossed_wake_mark {
            self.inner.writer_thread.unpark();
        }
        Ok(())
    }

    async fn write(&self, op: WriteOp) -> Result<OpOutcome, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Write {
            op: Box::new(op),
            reply,
            _permit: None,
        })?;
        wait(rx, self.inner.timeout).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T, StoreError> + Send + 'static,
    {
        let core = self.inner.core.clone();
        let task = tokio::task::spawn_blocking(move || f(&core.snapshot()?));
        match tokio::time::timeout(self.inner.timeout, task).await {
            Err(_) => Err(StoreError::Timeout(self.inner.timeout)),
            Ok(Err(e)) => Err(StoreError::TaskFailed(e.to_string())),
            Ok(Ok(Err(e))) => {
                self.report(&e);
                Err(e)
            }
            Ok(Ok(r)) => r,
        }
    }

    /// Tells the writer about a reader's I/O error, once per recovery episode.
    fn report(&self, e: &StoreError) {
        if e.needs_reopen() && self.inner.recovery.claim_report() {
            let _ = self.inner.tx.send(Command::IoError(e.to_string()));
            self.inner.writer_thread.unpark();
        }
    }
}

async fn wait<T>(
    rx: oneshot::Receiver<Result<T, StoreError>>,
    timeout: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(StoreError::Timeout(timeout)),
        Ok(Err(_)) => Err(StoreError::Closed),
        Ok(Ok(r)) => r,
    }
}

fn unexpected(o: OpOutcome) -> StoreError {
    StoreError::TaskFailed(format!("writer answered with {o:?}"))
}

impl Store for RedbStore {
    async fn put(
        &self,
        component: &str,
        gvr: &Gvr,
        object: Object,
    ) -> Result<PutOutcome, StoreError> {
        match self
            .write(WriteOp::Put {
                component: component.to_owned(),
                gvr: gvr.clone(),
                object,
            })
            .await?
        {
            OpOutcome::Put(o) => Ok(o),
            o => Err(unexpected(o)),
        }
    }

    async fn delete(
        &self,
        key: &ObjectKey,
        resource_version: Option<&str>,
    ) -> Result<DeleteOutcome, StoreError> {
        match self
            .write(WriteOp::Delete {
                key: key.clone(),
                resource_version: resource_version.map(str::to_owned),
            })
            .await?
        {
            OpOutcome::Delete(o) => Ok(o),
            o => Err(unexpected(o)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let key = key.clone();
        self.read(move |s| s.get(&key)).await
    }

    async fn list(&self, scope: &ListScope) -> Result<ListResult, StoreError> {
        let scope = scope.clone();
        self.read(move |s| s.list(&scope)).await
    }

    async fn replace_list(
        &self,
        scope: &ListScope,
        meta: ListMeta,
        items: Vec<Object>,
    ) -> Result<ReplaceOutcome, StoreError> {
        match self
            .write(WriteOp::ReplaceList {
                scope: scope.clone(),
                meta,
                items,
            })
            .await?
        {
            OpOutcome::Replace(o) => Ok(o),
            o => Err(unexpected(o)),
        }
    }

    async fn submit_watch_events(
        &self,
        component: &str,
        gvr: &Gvr,
        events: Vec<WatchEvent>,
    ) -> Result<CommitTicket, StoreError> {
        let wanted =
            u32::try_from(events.len().clamp(1, self.inner.max_permits)).unwrap_or(u32::MAX);
        let permit = match tokio::time::timeout(
            self.inner.timeout,
            self.inner.permits.clone().acquire_many_owned(wanted),
        )
        .await
        {
            Err(_) => return Err(StoreError::Timeout(self.inner.timeout)),
            Ok(Err(_)) => return Err(StoreError::Closed),
            Ok(Ok(p)) => p,
        };
        let (reply, rx) = oneshot::channel();
        self.send(Command::Write {
            op: Box::new(WriteOp::Watch {
                component: component.to_owned(),
                gvr: gvr.clone(),
                events,
            }),
            reply,
            _permit: Some(permit),
        })?;
        Ok(CommitTicket::pending(rx, self.inner.timeout))
    }

    async fn get_nonresource(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let path = path.to_owned();
        self.read(move |s| s.get_nonresource(&path)).await
    }

    async fn put_nonresource(&self, path: &str, body: Bytes) -> Result<(), StoreError> {
        self.write(WriteOp::PutNonResource {
            path: path.to_owned(),
            body,
        })
        .await
        .map(drop)
    }

    async fn components(&self) -> Result<Vec<String>, StoreError> {
        self.read(|s| s.components()).await
    }

    async fn scopes(&self, component: &str) -> Result<Vec<(ListScopeKey, ListMeta)>, StoreError> {
        let component = component.to_owned();
        self.read(move |s| s.scopes(&component)).await
    }

    async fn usage(&self) -> Result<Usage, StoreError> {
        let path = self.inner.path.clone();
        self.read(move |s| {
            let mut u = s.usage()?;
            u.file_bytes = std::fs::metadata(&path)
                .map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?
                .len();
            Ok(u)
        })
        .await
    }

    async fn set_last_healthy(&self, unix_ms: u64) -> Result<(), StoreError> {
        self.write(WriteOp::SetLastHealthy { unix_ms })
            .await
            .map(drop)
    }

    async fn last_healthy(&self) -> Result<Option<u64>, StoreError> {
        self.read(|s| s.last_healthy_ms()).await
    }
}

/// The writer thread: receives commands, groups writes into one transaction, commits durably,
/// then answers every caller in the batch.
struct Writer {
    core: Arc<SyncStore>,
    recovery: Arc<Recovery>,
    /// How to open the file again after an I/O error.
    config: StoreConfig,
    rx: mpsc::Receiver<Command>,
    /// Watch events submitted and not yet in a closed batch (shared with the submitters).
    queued: Arc<AtomicUsize>,
    max_events: usize,
    window: Duration,
}

/// How long the idle writer sleeps between checks that its store still exists.
const IDLE_POLL: Duration = Duration::from_secs(1);

struct Pending {
    op: Box<WriteOp>,
    reply: Reply,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Writer {
    fn run(self) {
        let mut carried: Option<Command> = None;
        loop {
            if self.recovery.due() {
                self.reopen();
            }
            let first = match carried.take() {
                Some(c) => c,
                None => match self.rx.recv_timeout(self.recovery.wait(IDLE_POLL)) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            match first {
                Command::Shutdown => break,
                Command::IoError(e) => self.recovery.io_error(&e),
                Command::Compact { reply } => {
                    let result = if self.recovery.is_broken() {
                        Err(self.recovery.unavailable())
                    } else {
                        self.core.compact()
                    };
                    if let Err(e) = &result
                        && e.needs_reopen()
                    {
                        self.recovery.io_error(e);
                    }
                    let _ = reply.send(result);
                }
                // While the file is closed for recovery, writes fail at once instead of
                // waiting for it (their callers give up on caching, nothing else).
                Command::Write { op, reply, .. } if self.recovery.is_broken() => {
                    // Its events were counted as queued when submitted; they leave the queue.
                    self.queued.fetch_sub(op.watch_events(), Ordering::SeqCst);
                    let _ = reply.send(Err(self.recovery.unavailable()));
                }
                Command::Write { op, reply, _permit } => {
                    carried = self.batch(Pending { op, reply, _permit });
                }
            }
        }
        // Shutting down: commit whatever was queued before the request, so no accepted write
        // is left without an answer.
        let mut rest = Vec::new();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Write { op, reply, _permit } => rest.push(Pending { op, reply, _permit }),
                Command::Compact { reply } => {
                    let _ = reply.send(Err(StoreError::Closed));
                }
                Command::IoError(_) | Command::Shutdown => {}
            }
        }
        let mut rest = rest.into_iter();
        if let Some(first) = rest.next() {
            // No more waiting: one transaction for what was queued.
            let mut batch = Batch::new(&self.core);
            batch.add(first);
            rest.for_each(|p| batch.add(p));
            batch.apply_pending();
            let _ = batch.finish(&self.core);
        }
    }

    /// One group commit, starting with `first`. The transaction is opened at once and
    /// operations are applied as they arrive, so the work overlaps with the submitters; the
    /// commit happens when the batch closes:
    ///
    /// * watch events wait for company until the batch holds `max_events` events or its first
    ///   event is `window` old;
    /// * any other write closes the batch at once (its caller waits on it alone), after
    ///   what is already queued has joined.
    ///
    /// While it waits the writer is parked, not woken per message: submitters count the events
    /// of the open batch plus the queue in `queued` and unpark it every [`WAKE_EVERY`] events,
    /// when the count reaches `max_events`, and for any non-watch command. (Waking per event
    /// costs a context switch per event, more than the rest of the write.)
    ///
    /// Returns a non-write command that arrived meanwhile (compact, shutdown), to run next. A
    /// commit that fails with an I/O error starts the recovery (see the store's recovery docs).
    fn batch(&self, first: Pending) -> Option<Command> {
        let deadline = Instant::now() + self.window;
        let mut batch = Batch::new(&self.core);
        batch.add(first);
        let mut carried = None;
        'fill: loop {
            while batch.events < self.max_events {
                match self.rx.try_recv() {
                    Ok(Command::Write { op, reply, _permit }) => {
                        batch.add(Pending { op, reply, _permit })
                    }
                    Ok(other) => {
                        carried = Some(other);
                        batch.apply_pending();
                        break 'fill;
                    }
                    Err(_) => break,
                }
            }
            batch.apply_pending();
            if batch.urgent || batch.events >= self.max_events {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
        }
        // The batch is closed: its events no longer count towards the next one.
        self.queued.fetch_sub(batch.events, Ordering::SeqCst);
        match batch.finish(&self.core) {
            Ok(()) => self.recovery.committed(),
            Err(e) if e.needs_reopen() => self.recovery.io_error(&e),
            Err(_) => {}
        }
        carried
    }

    /// One reopen attempt: close the file, open it with the usual checks, commit a probe.
    fn reopen(&self) {
        let c = &self.config;
        let result = self.core.reopen(|| {
            open_or_rebuild(&OpenOptions {
                path: &c.path,
                node_name: c.node_name.as_deref(),
                cache_size_bytes: c.cache_size_bytes,
                verify_on_open: c.verify_on_open,
                keep_quarantined: c.keep_quarantined,
                metrics: &c.metrics,
            })
        });
        match result {
            Ok(()) => self.recovery.reopened(),
            Err(e) => self.recovery.attempt_failed(&e),
        }
    }
}

/// Submitters wake a waiting writer every this many watch events, so it applies them while the
/// batch fills.
pub(crate) const WAKE_EVERY: usize = 64;

/// An open group-commit transaction and the callers waiting on it.
struct Batch {
    txn: Result<Txn, StoreError>,
    /// Operations received but not yet applied.
    pending: Vec<WriteOp>,
    outcomes: Vec<OpOutcome>,
    replies: Vec<(Reply, Option<OwnedSemaphorePermit>)>,
    events: usize,
    urgent: bool,
}

impl Batch {
    fn new(core: &SyncStore) -> Self {
        Self {
            txn: core.begin(),
            pending: Vec::new(),
            outcomes: Vec::new(),
            replies: Vec::new(),
            events: 0,
            urgent: false,
        }
    }

    fn add(&mut self, p: Pending) {
        let n = p.op.watch_events();
        self.events += n;
        self.urgent |= n == 0;
        self.pending.push(*p.op);
        self.replies.push((p.reply, p._permit));
    }

    /// Applies what was received; after a failure the transaction is poisoned and only
    /// collects callers to answer with the error.
    fn apply_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Ok(txn) = &mut self.txn {
            match txn.apply(&self.pending) {
                Ok(out) => self.outcomes.extend(out),
                Err(e) => self.txn = Err(e),
            }
        }
        self.pending.clear();
    }

    /// Commits and answers every caller; returns the transaction's error, if any.
    fn finish(self, core: &SyncStore) -> Result<(), Arc<StoreError>> {
        let result = self.txn.and_then(Txn::commit);
        match result {
            Ok(()) => {
                for ((reply, _permit), out) in self.replies.into_iter().zip(self.outcomes) {
                    let _ = reply.send(Ok(out));
                }
                Ok(())
            }
            Err(e) => {
                core.metrics().failed_commits.inc();
                tracing::error!(error = %e, ops = self.replies.len(), "cache store commit failed");
                let e = Arc::new(e);
                for (reply, _permit) in self.replies {
                    let _ = reply.send(Err(StoreError::CommitFailed(e.clone())));
                }
                Err(e)
            }
        }
    }
}

/// Keeps the watch-event outcomes out of the generic ticket plumbing.
pub(crate) fn watch_outcomes(o: OpOutcome) -> Result<Vec<EventOutcome>, StoreError> {
    match o {
        OpOutcome::Watch(v) => Ok(v),
        other => Err(unexpected(other)),
    }
}
