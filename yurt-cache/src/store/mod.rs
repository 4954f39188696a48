//! The hub's crash-safe object cache: what the apiserver said, per client component, in one
//! redb file.
//!
//! This module is the storage under the hub's cache layer. The layer tees apiserver responses
//! into a [`Store`] while the cloud is reachable and serves from it while it is not. The store
//! keeps objects unfiltered, as the apiserver sent them; the hub's filters run on the way out.
//! [`RedbStore`] is the implementation, [`SyncStore`] its synchronous core (used by the
//! fuzzers and benches), and [`key`] builds every key.
//!
//! # Design
//!
//! ## Layout
//!
//! One redb file, four tables, every key built by [`key`] (escaped segments joined by `/`, so
//! names holding `/`, NUL or non-ASCII cannot collide and a namespace scan never reaches a
//! neighbouring namespace whose name shares a prefix):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `objects` | component / group / version / resource / namespace / name | resourceVersion + labels + object JSON as sent |
//! | `lists` | component / group / version / resource / namespace / label selector / field selector | [`ListMeta`] JSON |
//! | `nonresource` | path | body |
//! | `meta` | `schema_version`, `node_name`, `last_healthy_ms`, `reopened_ms` | text |
//!
//! An object is stored once per (component, resource, namespace, name), however many list
//! scopes cover it. A `lists` row records that the component completed a list of that scope
//! (selectors in canonical form, so `a=1,b=2` and `b=2,a=1` are one scope), which is what lets a
//! component keep several lists of one resource with different selectors (upstream #1400).
//!
//! ## List scopes
//!
//! * **Read**: a list of scope *S* returns the component's objects of that resource in *S*'s
//!   namespace (every namespace when *S*'s namespace is empty, the cluster-wide scope), filtered
//!   by *S*'s label and field selectors. Scopes therefore share one object set and cannot
//!   disagree. The answer's resourceVersion is the highest item resourceVersion (upstream's
//!   offline rule); the scope's own [`ListMeta`] comes with it when the scope was ever listed, so
//!   the hub can tell "never listed" from "listed, empty".
//! * **Replace** (one transaction): for scope *S*, list resourceVersion *R* and items *I*:
//!   1. delete every object in *S*'s namespace range that *S*'s selectors select, that is not in
//!      *I*, and whose resourceVersion is not newer than *R* (a newer one was written after the
//!      list was served, by a watch of another scope, and is kept);
//!   2. write every item of *I* with the resourceVersion compare below;
//!   3. write *S*'s `lists` row.
//!
//!   The transaction reads *S*'s key range once, in key order, merged with the items sorted
//!   by key: an item whose stored bytes are identical is neither rewritten nor looked up
//!   again, so relisting an unchanged collection writes only the `lists` row (and that only
//!   when its metadata changed).
//!
//!   Objects that *S* does not select are never touched, so replacing `app=a` leaves the
//!   objects of a sibling scope `app=b` alone, and an unscoped list still sees both. An object
//!   whose labels changed out of *S* is deleted by *S*'s replace only if its stored copy still
//!   has the old labels (then it is stale anyway; the other scope's watch re-adds it).
//!
//! ## resourceVersion rule
//!
//! Both versions decimal `u64`: numeric compare; otherwise equal strings are equal and anything
//! else is "unknown" ([`rv`]). A write (put, watch ADDED/MODIFIED, list item) is refused only
//! when it is known to be older than the stored copy; a delete with a resourceVersion (watch
//! DELETED) is refused when the stored copy is known to be newer. Unknown order lets the write
//! win: the store then trusts arrival order, as a plain cache would.
//!
//! ## Concurrency
//!
//! One writer thread owns every write transaction. Callers hand it [`WriteOp`]s over a channel
//! and await a reply; it packs what is queued into one transaction (group commit, below),
//! commits, and answers. Reads run on `spawn_blocking` (or synchronously through
//! [`RedbStore::snapshot`]) against a redb read transaction, an MVCC snapshot of the last
//! commit: they never wait for the writer, and the writer never waits for them. The one
//! exception is [`RedbStore::compact`], an explicit maintenance call that needs the file alone.
//!
//! **Group commit.** Watch events are submitted with [`Store::submit_watch_events`], which
//! returns a [`CommitTicket`] at once (after waiting for queue room, bounded by
//! [`StoreConfig::max_pending_events`]). The writer commits a batch when it holds
//! [`StoreConfig::group_commit_events`] events (N) or when its first event has waited
//! [`StoreConfig::group_commit_window`] (T), whichever comes first. Any other write (put,
//! delete, replace) joins the batch being built and closes it at once, since its caller waits
//! on it alone. The writer opens the transaction with a batch's first write and applies writes
//! as they arrive (it is woken every 64 events, not per event), so only the commit itself is
//! left when the batch closes. A watch tee can keep streaming while tickets resolve behind it.
//!
//! # Correctness
//!
//! **Compare-and-write is atomic.** The compare (read the stored resourceVersion) and the write
//! happen inside one redb write transaction. redb admits one write transaction at a time per
//! database, and the file is locked against other processes, so no write can commit between
//! the read and the write; operations of one batch apply in queue order, each seeing the
//! previous ones. Readers see the transaction all or nothing, after its commit. So an older
//! resourceVersion never replaces a newer one, whichever racing writer arrives last
//! (`tests/it/store.rs::concurrent_writers_never_regress` races them).
//!
//! **A crash cannot tear an object.** An object is one value of one B-tree. redb never
//! overwrites a page the last durable commit can reach: a transaction writes new pages, and its
//! commit (redb's default "1PC+C") writes all data and checksums (XXH3, up to the root) with a
//! larger transaction id, flips the header's primary slot and then fsyncs once. If the process
//! dies mid-commit, the next open finds a primary whose transaction id or checksums do not
//! verify and falls back to the secondary slot, the previous commit, whose pages were not
//! reused. So after a crash the file holds exactly the state of one commit, and each object's
//! value is either its old bytes or its new bytes. The values themselves are validated JSON
//! before they are written. The crash test (`tests/it/crash.rs`) SIGKILLs a writing child at
//! random points and checks this; the `store_ops` fuzzer checks recovery of a disk image taken
//! with a transaction in flight.
//!
//! **What an acknowledgement means.** A write's future (or a [`CommitTicket`]) resolves `Ok`
//! only after the transaction holding it committed with `Durability::Immediate`, i.e. after
//! redb's fsync of data and header returned. From then on the write survives a process kill,
//! and a power loss too under redb's media assumptions (an fsync makes writes durable,
//! single-byte writes are atomic). [`StoreError::Timeout`] means unknown: the write may still
//! commit. [`StoreError::CommitFailed`] means it was not applied.
//!
//! **A bad file never wedges start-up.** [`RedbStore::open`] runs redb's full integrity check
//! and a schema check. A file that fails (checksums, header, a panic inside redb, an unknown
//! schema version, another node's file) is renamed to `<file>.<reason>-<unix-ts>`, a fresh file
//! is created, the event is logged and counted in [`StoreMetrics::quarantined`]. A file left by
//! a crash is *not* corrupt: the same check rolls it back to its last durable commit.
//!
//! **An I/O error does not poison the store for good.** redb refuses every operation on a
//! database that met an I/O error (a full disk, `EIO`) until it is reopened. The writer then
//! closes the file and reopens it with backoff, failing writes at once meanwhile, and reports
//! through [`RedbStore::health`] when reopening keeps failing; see `recovery.rs`.
//!
//! **The file is private.** It holds Secrets in clear text: it is created 0600 in a 0700
//! directory whatever the umask, and looser modes found at open are fixed (see `open.rs`).
//!
//! # What grows, and when
//!
//! * `objects` grows with the distinct objects the components fetched. Objects leave when a
//!   watch says DELETED, when a list replace of a scope that selects them no longer has them,
//!   or on [`Store::delete`]. Nothing expires by age: a component that never lists again keeps
//!   its objects until the hub's garbage collection deletes them.
//! * `lists` gains one row per distinct scope (component, resource, namespace, selectors) ever
//!   listed, and rows are never removed by the store; a component that lists with ever-new
//!   selectors grows it (rows are ~100 bytes).
//! * `nonresource` holds one body per path; `meta` is fixed.
//! * The file: each commit writes new copies of the pages it touches (copy-on-write). The old
//!   copies become free once no commit slot and no live snapshot can reach them, and later
//!   commits reuse them. So the file grows with live data plus the pages of the last couple of
//!   commits, plus whatever a long-lived snapshot pins while it lives. It does not shrink by
//!   itself; [`RedbStore::compact`] returns free space to the filesystem. Updating the same
//!   10,000 objects 100 times stays within 3x the live bytes
//!   (`tests/it/store.rs::space_is_bounded` checks it and prints the figures).
//!
//! # Known limits
//!
//! * No tombstones: a delayed response carrying an old copy of an object that a watch already
//!   deleted re-creates it, until the next list replace of a scope selecting it removes it.
//! * Watch BOOKMARK events are ignored (they do not move a scope's list resourceVersion).
//! * Field selectors other than `metadata.name` / `metadata.namespace` parse each candidate
//!   object (only the selected paths are built, see `sparse.rs`); label selectors read the
//!   labels stored beside the object and do not.

mod engine;
mod error;
pub mod key;
mod metrics;
mod open;
mod recovery;
mod redb_store;
pub mod rv;
mod sparse;
mod types;

pub(crate) use types::MetaHead;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

/// The redb crate this store is built on, so callers of [`SyncStore::new`] (fuzzers, tools)
/// can open a `redb::Database`, with their own storage backend if they like, of the same
/// version.
pub use redb;

pub use engine::{
    JournalAppend, JournalCap, JournalFull, JournalLimits, JournalStats, OpOutcome, SCHEMA_VERSION,
    Snapshot, SyncStore, Txn, WriteOp,
};
pub use error::StoreError;
pub use metrics::{QuarantineLabels, StoreMetrics};
pub use recovery::StoreHealth;
pub use redb_store::{RedbStore, StoreConfig};
pub use types::{
    DeleteOutcome, EventKind, EventOutcome, Gvr, ListMeta, ListResult, ListScope, ListScopeKey,
    Object, ObjectKey, PutOutcome, ReplaceOutcome, StoredObject, Usage, WatchEvent,
};
pub use yurt_core::selector::{FieldSelector, LabelSelector};

/// The hub's object cache. All methods are async and never block the calling thread: writes go
/// to the store's writer, reads to a blocking pool over an MVCC snapshot. They need a tokio
/// runtime with the time driver enabled.
pub trait Store: Send + Sync {
    /// Compare-resourceVersion-and-write one object; durable when it returns `Ok`.
    fn put(
        &self,
        component: &str,
        gvr: &Gvr,
        object: Object,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// Deletes one object; with a resourceVersion, only if the stored copy is not newer.
    fn delete(
        &self,
        key: &ObjectKey,
        resource_version: Option<&str>,
    ) -> impl Future<Output = Result<DeleteOutcome, StoreError>> + Send;

    /// One object, as last committed.
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<StoredObject>, StoreError>> + Send;

    /// The objects of a scope with its selectors applied (see the module docs).
    fn list(
        &self,
        scope: &ListScope,
    ) -> impl Future<Output = Result<ListResult, StoreError>> + Send;

    /// Replaces a scope's selection with a fresh list and records the list, in one durable
    /// transaction (see the module docs for exactly what is deleted).
    fn replace_list(
        &self,
        scope: &ListScope,
        meta: ListMeta,
        items: Vec<Object>,
    ) -> impl Future<Output = Result<ReplaceOutcome, StoreError>> + Send;

    /// Queues watch events of one stream for group commit and returns once they are queued.
    /// The ticket resolves when their transaction is durable.
    fn submit_watch_events(
        &self,
        component: &str,
        gvr: &Gvr,
        events: Vec<WatchEvent>,
    ) -> impl Future<Output = Result<CommitTicket, StoreError>> + Send;

    /// [`Store::submit_watch_events`], then waits for durability.
    fn apply_watch_events(
        &self,
        component: &str,
        gvr: &Gvr,
        events: Vec<WatchEvent>,
    ) -> impl Future<Output = Result<Vec<EventOutcome>, StoreError>> + Send {
        async move {
            self.submit_watch_events(component, gvr, events)
                .await?
                .durable()
                .await
        }
    }

    /// A non-resource document (`/version`, discovery).
    fn get_nonresource(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Stores a non-resource document; durable when it returns `Ok`.
    fn put_nonresource(
        &self,
        path: &str,
        body: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Components that have objects or list scopes, sorted.
    fn components(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The list scopes a component completed, with their metadata.
    fn scopes(
        &self,
        component: &str,
    ) -> impl Future<Output = Result<Vec<(ListScopeKey, ListMeta)>, StoreError>> + Send;

    /// Counts and sizes.
    fn usage(&self) -> impl Future<Output = Result<Usage, StoreError>> + Send;

    /// Records when an apiserver was last healthy (Unix ms).
    fn set_last_healthy(&self, unix_ms: u64)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When an apiserver was last healthy, if recorded.
    fn last_healthy(&self) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

/// The promise of a group commit: resolves to the events' outcomes once the transaction holding
/// them is durable, or to the error that kept it from committing.
#[derive(Debug)]
pub struct CommitTicket {
    state: TicketState,
}

#[derive(Debug)]
enum TicketState {
    Ready(Result<Vec<EventOutcome>, StoreError>),
    Pending {
        rx: oneshot::Receiver<Result<OpOutcome, StoreError>>,
        timeout: Duration,
    },
}

impl CommitTicket {
    /// A ticket that is already resolved (for `Store` implementations without a queue).
    pub fn ready(result: Result<Vec<EventOutcome>, StoreError>) -> Self {
        Self {
            state: TicketState::Ready(result),
        }
    }

    pub(crate) fn pending(
        rx: oneshot::Receiver<Result<OpOutcome, StoreError>>,
        timeout: Duration,
    ) -> Self {
        Self {
            state: TicketState::Pending { rx, timeout },
        }
    }

    /// Waits (at most the store's timeout) until the events are durable.
    pub async fn durable(self) -> Result<Vec<EventOutcome>, StoreError> {
        match self.state {
            TicketState::Ready(r) => r,
            TicketState::Pending { rx, timeout } => match tokio::time::timeout(timeout, rx).await {
                Err(_) => Err(StoreError::Timeout(timeout)),
                Ok(Err(_)) => Err(StoreError::Closed),
                Ok(Ok(r)) => r.and_then(redb_store::watch_outcomes),
            },
        }
    }
}
