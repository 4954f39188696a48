//! The synchronous core: the redb schema, the value format, and every read and write rule.
//!
//! [`RedbStore`](super::RedbStore) drives this from its writer thread and from `spawn_blocking`;
//! the fuzzer and the bench drive it directly. Nothing here spawns, sleeps or waits: a
//! [`Snapshot`] is one MVCC read transaction, a [`Txn`] is one write transaction in which any
//! number of [`WriteOp`]s are applied in order before one durable commit.
//!
//! Value format of the `objects` table (little endian):
//!
//! ```text
//! u8  format (1) | u16 rv_len | rv bytes | u32 labels_len | labels JSON | object JSON (as sent)
//! ```
//!
//! The resourceVersion and labels are copied out of the object when it is written, so the
//! compare-and-write and label-selector reads never parse the object; field selectors do.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, TableError, WriteTransaction,
};

use super::error::StoreError;
use super::key;
use super::metrics::StoreMetrics;
use super::rv;
use super::types::{
    DeleteOutcome, EventKind, EventOutcome, Gvr, ListMeta, ListResult, ListScope, ListScopeKey,
    Object, ObjectKey, PutOutcome, ReplaceOutcome, Selection, StoredObject, Usage, WatchEvent,
};

/// `objects`: object key -> encoded object (see module docs).
pub(crate) const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
/// `lists`: list key -> [`ListMeta`] JSON.
pub(crate) const LISTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("lists");
/// `nonresource`: path key -> body.
pub(crate) const NONRESOURCE: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("nonresource");
/// `meta`: fixed names -> values.
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// `journal`: sequence number -> an offline write to replay upstream (opaque JSON, see
/// `local::journal`), in the order the writes were accepted.
pub(crate) const JOURNAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("journal");

#[path = "journal.rs"]
mod journal;
pub use journal::{JournalAppend, JournalCap, JournalFull, JournalLimits, JournalStats};

/// Schema version written in `meta`; a file with another version is quarantined and rebuilt.
pub const SCHEMA_VERSION: u32 = 1;
const VALUE_FORMAT: u8 = 1;

const META_SCHEMA: &str = "schema_version";
const META_NODE: &str = "node_name";
const META_LAST_HEALTHY: &str = "last_healthy_ms";
/// When the file was last reopened after an I/O error (Unix ms): the reopen's probe write.
const META_REOPENED: &str = "reopened_ms";

/// One write, as the writer applies it inside a transaction.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// Compare-resourceVersion-and-write one object.
    Put {
        /// Client component.
        component: String,
        /// Resource type.
        gvr: Gvr,
        /// The object.
        object: Object,
    },
    /// Delete one object, unless the stored copy is newer than `resource_version`.
    Delete {
        /// Which object.
        key: ObjectKey,
        /// The delete's resourceVersion; `None` deletes unconditionally.
        resource_version: Option<String>,
    },
    /// Replace the selection of a list scope and record the list (see the module docs of
    /// [`store`](super) for what is deleted).
    ReplaceList {
        /// The scope listed.
        scope: ListScope,
        /// The list's metadata.
        meta: ListMeta,
        /// The list's items.
        items: Vec<Object>,
    },
    /// Watch events of one stream, applied in order.
    Watch {
        /// Client component.
        component: String,
        /// Resource type.
        gvr: Gvr,
        /// The events.
        events: Vec<WatchEvent>,
    },
    /// Store a non-resource document.
    PutNonResource {
        /// Request path.
        path: String,
        /// Response body.
        body: Bytes,
    },
    /// Record the last time an apiserver was healthy.
    SetLastHealthy {
        /// Unix milliseconds.
        unix_ms: u64,
    },
    /// An offline write served by the hub: store `object` without the resourceVersion compare
    /// (it is the cached copy with a local change applied) and append `journal`, if any, to the
    /// journal, both in this one transaction, so a crash keeps both or neither.
    LocalWrite {
        /// Client component.
        component: String,
        /// Resource type.
        gvr: Gvr,
        /// The new cached copy.
        object: Object,
        /// The journal entry recording the write for replay upstream (the object is not
        /// written either if the journal refuses it).
        journal: Option<JournalAppend>,
    },
    /// Append an entry to the journal (an offline create that is not cached, e.g. an Event).
    JournalAppend {
        /// The entry, its coalescing key and the caps.
        append: JournalAppend,
    },
    /// Remove a journal entry (replayed).
    JournalRemove {
        /// Its sequence number.
        seq: u64,
        /// Its coalescing key, if it had one.
        coalesce: Option<String>,
    },
    /// Remove a journal entry the replay gave up on, recording why.
    JournalReject {
        /// Its sequence number.
        seq: u64,
        /// Its coalescing key, if it had one.
        coalesce: Option<String>,
        /// The record kept (JSON).
        record: Bytes,
        /// How many records to keep (the oldest go).
        keep: usize,
    },
}

impl WriteOp {
    /// How many watch events the op carries (for group-commit accounting); 0 for other ops.
    pub fn watch_events(&self) -> usize {
        match self {
            WriteOp::Watch { events, .. } => events.len(),
            _ => 0,
        }
    }
}

/// What one [`WriteOp`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// Outcome of [`WriteOp::Put`].
    Put(PutOutcome),
    /// Outcome of [`WriteOp::Delete`].
    Delete(DeleteOutcome),
    /// Outcome of [`WriteOp::ReplaceList`].
    Replace(ReplaceOutcome),
    /// Outcome of each event of [`WriteOp::Watch`].
    Watch(Vec<EventOutcome>),
    /// [`WriteOp::PutNonResource`], [`WriteOp::SetLastHealthy`] and
    /// [`WriteOp::JournalRemove`] and [`WriteOp::JournalReject`].
    Done,
    /// [`WriteOp::LocalWrite`] and [`WriteOp::JournalAppend`]: the journal sequence number
    /// assigned, if an entry was appended.
    Journaled(Option<u64>),
    /// [`WriteOp::LocalWrite`] and [`WriteOp::JournalAppend`] refused by a journal cap:
    /// nothing was written.
    JournalFull(JournalFull),
}

/// What [`check_schema`] found in an opened file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SchemaCheck {
    /// Usable (possibly just initialised).
    Ok,
    /// Not usable; quarantine with this reason label and detail.
    Mismatch(&'static str, String),
}

/// Creates the tables and meta rows of a new file, or checks those of an existing one.
pub(crate) fn check_schema(
    db: &Database,
    node_name: Option<&str>,
) -> Result<SchemaCheck, StoreError> {
    let txn = db.begin_write()?;
    let check = {
        for def in [OBJECTS, LISTS, NONRESOURCE] {
            match txn.open_table(def) {
                Ok(_) => {}
                Err(
                    e @ (TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_)),
                ) => {
                    return Ok(SchemaCheck::Mismatch("schema", e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        match txn.open_table(JOURNAL) {
            Ok(_) => {}
            Err(e @ (TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_))) => {
                return Ok(SchemaCheck::Mismatch("schema", e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        let mut meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(e @ (TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_))) => {
                return Ok(SchemaCheck::Mismatch("schema", e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let version = meta.get(META_SCHEMA)?.map(|g| g.value().to_vec());
        match version {
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION.to_string().as_bytes())?;
                if let Some(node) = node_name {
                    meta.insert(META_NODE, node.as_bytes())?;
                }
                SchemaCheck::Ok
            }
            Some(v) if v != SCHEMA_VERSION.to_string().as_bytes() => SchemaCheck::Mismatch(
                "schema",
                format!(
                    "schema version {:?}, this build reads {SCHEMA_VERSION}",
                    String::from_utf8_lossy(&v)
                ),
            ),
            Some(_) => {
                let stored = meta.get(META_NODE)?.map(|g| g.value().to_vec());
                match (node_name, stored) {
                    (Some(want), Some(have)) if want.as_bytes() != have.as_slice() => {
                        SchemaCheck::Mismatch(
                            "foreign",
                            format!(
                                "written for node {:?}, opened for {want:?}",
                                String::from_utf8_lossy(&have)
                            ),
                        )
                    }
                    (Some(want), None) => {
                        meta.insert(META_NODE, want.as_bytes())?;
                        SchemaCheck::Ok
                    }
                    _ => SchemaCheck::Ok,
                }
            }
        }
    };
    if check == SchemaCheck::Ok {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(check)
}

pub(crate) fn encode_value(obj: &Object) -> Vec<u8> {
    let rv = obj.resource_version().as_bytes();
    let labels = obj.labels().as_bytes();
    let mut v = Vec::with_capacity(1 + 2 + rv.len() + 4 + labels.len() + obj.json.len());
    v.push(VALUE_FORMAT);
    // Lengths are bounded when the Object is built (rv <= u16::MAX); labels fit u32 because the
    // whole object is far below 4 GiB (redb values are limited to 3 GiB).
    v.extend_from_slice(&u16::try_from(rv.len()).unwrap_or(u16::MAX).to_le_bytes());
    v.extend_from_slice(rv);
    v.extend_from_slice(
        &u32::try_from(labels.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    v.extend_from_slice(labels);
    v.extend_from_slice(&obj.json);
    v
}

/// A decoded `objects` value, borrowing the stored bytes.
pub(crate) struct ValueRef<'a> {
    pub(crate) rv: &'a str,
    pub(crate) labels: &'a str,
    pub(crate) json: &'a [u8],
}

pub(crate) fn decode_value(v: &[u8]) -> Result<ValueRef<'_>, StoreError> {
    let bad = |why: &str| StoreError::Malformed(format!("object value: {why}"));
    let (&format, rest) = v.split_first().ok_or_else(|| bad("empty"))?;
    if format != VALUE_FORMAT {
        return Err(bad(&format!("format {format}")));
    }
    let (len, rest) = rest.split_at_checked(2).ok_or_else(|| bad("short"))?;
    let rv_len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let (rv, rest) = rest
        .split_at_checked(rv_len)
        .ok_or_else(|| bad("short rv"))?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(|| bad("short"))?;
    let labels_len = usize::try_from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]))
        .map_err(|_| bad("labels length"))?;
    let (labels, json) = rest
        .split_at_checked(labels_len)
        .ok_or_else(|| bad("short labels"))?;
    Ok(ValueRef {
        rv: std::str::from_utf8(rv).map_err(|_| bad("rv not UTF-8"))?,
        labels: std::str::from_utf8(labels).map_err(|_| bad("labels not UTF-8"))?,
        json,
    })
}

fn selects(sel: &Selection<'_>, v: &ValueRef<'_>) -> bool {
    if sel.is_everything() {
        return true;
    }
    // Labels are stored as a canonical JSON map of strings (see `Object::from_json`).
    let labels: BTreeMap<String, String> = serde_json::from_str(v.labels).unwrap_or_default();
    sel.selects(&labels, v.json)
}

/// Which keys a scope's selection can contain: one key when the field selector pins both the
/// namespace and the name, else a key range.
enum Candidates {
    Point(String),
    Range(String, String),
}

fn candidates(scope: &ListScope) -> Candidates {
    let pinned_ns = scope
        .field_selector
        .requires_exact_match("metadata.namespace");
    let namespace = if scope.namespace.is_empty() {
        pinned_ns
    } else {
        Some(scope.namespace.as_str())
    };
    let pinned_name = scope.field_selector.requires_exact_match("metadata.name");
    if let (Some(ns), Some(name)) = (namespace, pinned_name) {
        return Candidates::Point(key::object_key(&ObjectKey::new(
            &scope.component,
            &scope.gvr,
            ns,
            name,
        )));
    }
    let (start, end) = key::objects_range(&scope.component, &scope.gvr, namespace);
    Candidates::Range(start, end)
}

/// The synchronous store: a redb [`Database`] with the schema checked.
///
/// The database sits behind an `RwLock` so that [`SyncStore::compact`] can get the exclusive
/// access redb's compaction needs, and so that the store can swap in a reopened database after
/// an I/O error; every read and write takes the shared side for the instant it takes to begin a
/// transaction. While a reopen is under way there is no database, and reads and writes fail
/// with [`StoreError::Unavailable`].
pub struct SyncStore {
    db: RwLock<Option<Database>>,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for SyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStore").finish_non_exhaustive()
    }
}

fn reopening() -> StoreError {
    StoreError::Unavailable("the cache file is being reopened".to_owned())
}

impl SyncStore {
    /// Wraps an open database, creating the tables if needed. A file with another schema or
    /// node is an error here; [`RedbStore::open`](super::RedbStore::open) quarantines it instead.
    pub fn new(db: Database, metrics: StoreMetrics) -> Result<Self, StoreError> {
        match check_schema(&db, None)? {
            SchemaCheck::Ok => Ok(Self::from_checked(db, metrics)),
            SchemaCheck::Mismatch(_, why) => Err(StoreError::Malformed(why)),
        }
    }

    pub(crate) fn from_checked(db: Database, metrics: StoreMetrics) -> Self {
        Self {
            db: RwLock::new(Some(db)),
            metrics,
        }
    }

    /// The metrics this store updates.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// A consistent read-only view; never waits for a writer.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let db = self.db.read().map_err(|_| StoreError::Poisoned)?;
        let db = db.as_ref().ok_or_else(reopening)?;
        Ok(Snapshot {
            txn: db.begin_read()?,
        })
    }

    /// Begins a durable write transaction (waits if another is open; the store has one writer).
    pub fn begin(&self) -> Result<Txn, StoreError> {
        let db = self.db.read().map_err(|_| StoreError::Poisoned)?;
        let db = db.as_ref().ok_or_else(reopening)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(Txn {
            txn,
            metrics: self.metrics.clone(),
        })
    }

    /// Applies `ops` in one transaction and commits it durably.
    pub fn apply(&self, ops: &[WriteOp]) -> Result<Vec<OpOutcome>, StoreError> {
        let mut txn = self.begin()?;
        let out = txn.apply(ops)?;
        txn.commit()?;
        Ok(out)
    }

    /// Compacts the file (returns whether anything was reclaimed). Needs exclusive access: it
    /// waits for transactions to begin elsewhere and fails with a storage error while a read
    /// snapshot is alive.
    pub fn compact(&self) -> Result<bool, StoreError> {
        let mut db = self.db.write().map_err(|_| StoreError::Poisoned)?;
        let db = db.as_mut().ok_or_else(reopening)?;
        let mut any = false;
        // redb compacts a bounded amount per call; loop until it reports no progress.
        while db.compact()? {
            any = true;
        }
        Ok(any)
    }

    /// Closes the database and opens it again with `open`, then commits a probe write (a
    /// `meta` row with the time), which is what proves the file takes writes again. Called by
    /// the writer thread only, between transactions. Snapshots still alive lose access to the
    /// old file. On failure the store stays without a database until the next call.
    pub(crate) fn reopen(
        &self,
        open: impl FnOnce() -> Result<Database, StoreError>,
    ) -> Result<(), StoreError> {
        let old = self.db.write().map_err(|_| StoreError::Poisoned)?.take();
        if let Some(old) = old {
            // A database that met an I/O error may fail (or, damaged, panic) on close too;
            // either way it is gone, and the open below finds out what the file holds.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| old.close())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "closing the failed cache file"),
                Err(_) => tracing::debug!("closing the failed cache file panicked"),
            }
        }
        let db = open()?;
        let probe = (|| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut meta = txn.open_table(META)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                meta.insert(META_REOPENED, now.to_string().as_bytes())?;
            }
            txn.commit()?;
            Ok::<_, StoreError>(())
        })();
        match probe {
            Ok(()) => {
                *self.db.write().map_err(|_| StoreError::Poisoned)? = Some(db);
                Ok(())
            }
            Err(e) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
                Err(e)
            }
        }
    }

    /// Closes the database, reporting any error (dropping does the same silently).
    pub fn close(self) -> Result<(), StoreError> {
        let db = self.db.into_inner().map_err(|_| StoreError::Poisoned)?;
        if let Some(db) = db {
            db.close()?;
        }
        Ok(())
    }
}

/// One write transaction; nothing is visible to readers or durable until [`Txn::commit`].
pub struct Txn {
    txn: WriteTransaction,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn").finish_non_exhaustive()
    }
}

impl Txn {
    /// Applies `ops` in order; later ops see the effects of earlier ones.
    pub fn apply(&mut self, ops: &[WriteOp]) -> Result<Vec<OpOutcome>, StoreError> {
        let mut t = Tables::open(&self.txn, &self.metrics)?;
        ops.iter().map(|op| t.apply(op)).collect()
    }

    /// Commits durably (`Durability::Immediate`): when this returns `Ok`, the writes survive a
    /// crash or power loss (given an fsync that keeps its promise).
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        self.metrics.commits.inc();
        Ok(())
    }

    /// Discards every write of the transaction.
    pub fn abort(self) -> Result<(), StoreError> {
        self.txn.abort()?;
        Ok(())
    }
}

type Tbl<'t> = Table<'t, &'static str, &'static [u8]>;

struct Tables<'t> {
    objects: Tbl<'t>,
    lists: Tbl<'t>,
    nonresource: Tbl<'t>,
    meta: Tbl<'t>,
    journal: Table<'t, u64, &'static [u8]>,
    journal_coalesce: Table<'t, &'static str, u64>,
    journal_rejected: Table<'t, u64, &'static [u8]>,
    metrics: &'t StoreMetrics,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction, metrics: &'t StoreMetrics) -> Result<Self, StoreError> {
        Ok(Self {
            objects: txn.open_table(OBJECTS)?,
            lists: txn.open_table(LISTS)?,
            nonresource: txn.open_table(NONRESOURCE)?,
            meta: txn.open_table(META)?,
            journal: txn.open_table(JOURNAL)?,
            journal_coalesce: txn.open_table(journal::JOURNAL_COALESCE)?,
            journal_rejected: txn.open_table(journal::JOURNAL_REJECTED)?,
            metrics,
        })
    }

    fn apply(&mut self, op: &WriteOp) -> Result<OpOutcome, StoreError> {
        Ok(match op {
            WriteOp::Put {
                component,
                gvr,
                object,
            } => OpOutcome::Put(self.put_optimistic(
                &key::object_key_of(component, gvr, object.namespace(), object.name()),
                object,
            )?),
            WriteOp::Delete {
                key: k,
                resource_version,
            } => OpOutcome::Delete(self.delete(&key::object_key(k), resource_version.as_deref())?),
            WriteOp::ReplaceList { scope, meta, items } => {
                OpOutcome::Replace(self.replace(scope, meta, items)?)
            }
            WriteOp::Watch {
                component,
                gvr,
                events,
            } => OpOutcome::Watch(
                events
                    .iter()
                    .map(|e| self.event(component, gvr, e))
                    .collect::<Result<_, _>>()?,
            ),
            WriteOp::PutNonResource { path, body } => {
                self.nonresource
                    .insert(key::nonresource_key(path).as_str(), body.as_ref())?;
                self.metrics.write_ops.inc();
                OpOutcome::Done
            }
            WriteOp::SetLastHealthy { unix_ms } => {
                self.meta
                    .insert(META_LAST_HEALTHY, unix_ms.to_string().as_bytes())?;
                OpOutcome::Done
            }
            WriteOp::LocalWrite {
                component,
                gvr,
                object,
                journal,
            } => {
                let seq = match journal {
                    Some(append) => match self.journal_append(append)? {
                        OpOutcome::Journaled(seq) => seq,
                        refused => return Ok(refused),
                    },
                    None => None,
                };
                self.metrics.write_ops.inc();
                let k = key::object_key(&object.key(component, gvr));
                self.objects
                    .insert(k.as_str(), encode_value(object).as_slice())?;
                OpOutcome::Journaled(seq)
            }
            WriteOp::JournalAppend { append } => self.journal_append(append)?,
            WriteOp::JournalRemove { seq, coalesce } => {
                self.journal_remove(*seq, coalesce.as_deref())?;
                OpOutcome::Done
            }
            WriteOp::JournalReject {
                seq,
                coalesce,
                record,
                keep,
            } => {
                self.journal_reject(*seq, coalesce.as_deref(), record, *keep)?;
                OpOutcome::Done
            }
        })
    }

    fn event(
        &mut self,
        component: &str,
        gvr: &Gvr,
        e: &WatchEvent,
    ) -> Result<EventOutcome, StoreError> {
        let k = key::object_key_of(component, gvr, e.object.namespace(), e.object.name());
        Ok(match e.kind {
            EventKind::Added | EventKind::Modified => {
                EventOutcome::Put(self.put_optimistic(&k, &e.object)?)
            }
            EventKind::Deleted => {
                EventOutcome::Delete(self.delete(&k, Some(e.object.resource_version()))?)
            }
            EventKind::Bookmark => EventOutcome::Ignored,
        })
    }

    /// The compare-resourceVersion-and-write: read and write happen in this one transaction,
    /// so no other write can come between them.
    fn put(&mut self, k: &str, obj: &Object) -> Result<PutOutcome, StoreError> {
        self.metrics.write_ops.inc();
        let value = encode_value(obj);
        let previous = match self.objects.get(k)? {
            None => None,
            Some(guard) => {
                let stored = guard.value();
                if stored == value.as_slice() {
                    return Ok(PutOutcome::Unchanged);
                }
                // A value this build cannot decode is overwritten rather than wedging the key.
                if let Ok(v) = decode_value(stored)
                    && rv::is_older(obj.resource_version(), v.rv)
                {
                    self.metrics.stale_writes.inc();
                    return Ok(PutOutcome::Stale {
                        stored: v.rv.to_owned(),
                    });
                }
                Some(())
            }
        };
        self.objects.insert(k, value.as_slice())?;
        Ok(match previous {
            None => PutOutcome::Created,
            Some(()) => PutOutcome::Updated,
        })
    }

    /// The same compare-and-write for watch events and single puts, which are almost always
    /// newer than the stored copy: write first (one tree descent instead of two) and, in the rare
    /// case the replaced value was newer, put it back. Both happen in this transaction, so no
    /// reader and no crash can observe the intermediate state. (List items use [`Self::put`]:
    /// a relist is mostly unchanged objects, and rewriting those would dirty their pages.)
    fn put_optimistic(&mut self, k: &str, obj: &Object) -> Result<PutOutcome, StoreError> {
        self.metrics.write_ops.inc();
        let value = encode_value(obj);
        let old = match self.objects.insert(k, value.as_slice())? {
            None => return Ok(PutOutcome::Created),
            Some(guard) => guard.value().to_vec(),
        };
        if old == value {
            return Ok(PutOutcome::Unchanged);
        }
        if let Ok(v) = decode_value(&old)
            && rv::is_older(obj.resource_version(), v.rv)
        {
            let stored = v.rv.to_owned();
            self.objects.insert(k, old.as_slice())?;
            self.metrics.stale_writes.inc();
            return Ok(PutOutcome::Stale { stored });
        }
        Ok(PutOutcome::Updated)
    }

    fn delete(&mut self, k: &str, delete_rv: Option<&str>) -> Result<DeleteOutcome, StoreError> {
        self.metrics.write_ops.inc();
        if let Some(delete_rv) = delete_rv {
            let stored_rv = match self.objects.get(k)? {
                None => return Ok(DeleteOutcome::NotFound),
                // Undecodable values are deleted.
                Some(guard) => decode_value(guard.value())
                    .map(|v| v.rv.to_owned())
                    .unwrap_or_default(),
            };
            if rv::is_older(delete_rv, &stored_rv) {
                self.metrics.stale_writes.inc();
                return Ok(DeleteOutcome::Stale { stored: stored_rv });
            }
        }
        Ok(match self.objects.remove(k)? {
            Some(_) => DeleteOutcome::Deleted,
            None => DeleteOutcome::NotFound,
        })
    }

    fn replace(
        &mut self,
        scope: &ListScope,
        meta: &ListMeta,
        items: &[Object],
    ) -> Result<ReplaceOutcome, StoreError> {
        let mut out = ReplaceOutcome::default();
        match candidates(scope) {
            Candidates::Point(k) => self.replace_point(scope, meta, items, &k, &mut out)?,
            Candidates::Range(start, end) => {
                self.replace_range(scope, meta, items, &start, &end, &mut out)?
            }
        }
        // 3. The scope's row (not rewritten when identical).
        let meta_json =
            serde_json::to_vec(meta).map_err(|e| StoreError::Malformed(e.to_string()))?;
        let list_key = key::list_key(&scope.key());
        let same = self
            .lists
            .get(list_key.as_str())?
            .is_some_and(|g| g.value() == meta_json.as_slice());
        if !same {
            self.lists.insert(list_key.as_str(), meta_json.as_slice())?;
        }
        Ok(out)
    }

    /// Whether the stored copy `v` of an object absent from the list is deleted by a replace at
    /// the list's resourceVersion (see the module docs of [`store`](super)).
    fn doomed(sel: &Selection<'_>, meta: &ListMeta, v: &[u8]) -> bool {
        match decode_value(v) {
            Ok(v) => selects(sel, &v) && !rv::is_older(&meta.resource_version, v.rv),
            // Undecodable values in the scope's range are replaced by the list.
            Err(_) => true,
        }
    }

    /// Replace of a scope pinned to one key (a `metadata.name` field selector with a namespace).
    fn replace_point(
        &mut self,
        scope: &ListScope,
        meta: &ListMeta,
        items: &[Object],
        k: &str,
        out: &mut ReplaceOutcome,
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = items
            .iter()
            .map(|o| key::object_key_of(&scope.component, &scope.gvr, o.namespace(), o.name()))
            .collect();
        // 1. The stored object, if the list no longer holds it.
        if !keys.iter().any(|i| i == k) {
            let doomed = self
                .objects
                .get(k)?
                .is_some_and(|g| Self::doomed(&scope.selection(), meta, g.value()));
            if doomed {
                self.objects.remove(k)?;
                self.metrics.write_ops.inc();
                out.deleted += 1;
            }
        }
        // 2. The items, each with the resourceVersion compare.
        for (obj, k) in items.iter().zip(&keys) {
            count(out, &self.put(k, obj)?);
        }
        Ok(())
    }

    /// Replace of a key range: one ordered pass over the stored range merged with the items
    /// sorted by key decides, for each stored object, whether it is kept, rewritten (an item
    /// with other bytes and a resourceVersion not older) or deleted (steps 1 and 2 of the module
    /// docs); only then are the changes written. Unchanged items cost a comparison, not a tree
    /// descent or a write. Items whose key is not in the range go through [`Self::put`].
    fn replace_range(
        &mut self,
        scope: &ListScope,
        meta: &ListMeta,
        items: &[Object],
        start: &str,
        end: &str,
        out: &mut ReplaceOutcome,
    ) -> Result<(), StoreError> {
        let prefix = key::objects_prefix(&scope.component, &scope.gvr);
        let sel = scope.selection();
        let mut sorted: Vec<(String, &Object)> = items
            .iter()
            .map(|o| (key::object_key_in(&prefix, o.namespace(), o.name()), o))
            .collect();
        // Stable: items sharing a key keep their order (each later one goes through `put`).
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut doomed = Vec::new();
        // Items compared against their stored copy and found to need a write.
        let mut rewrite = Vec::new();
        // Items not found in the range (or repeating a key): written with `put`.
        let mut put = Vec::new();
        {
            let mut next = 0;
            for entry in self.objects.range(start..end)? {
                let (k, v) = entry?;
                let (k, v) = (k.value(), v.value());
                while next < sorted.len() && sorted[next].0.as_str() < k {
                    put.push(next);
                    next += 1;
                }
                if next < sorted.len() && sorted[next].0 == k {
                    let obj = sorted[next].1;
                    self.metrics.write_ops.inc();
                    match decode_value(v) {
                        Ok(stored) if same_value(&stored, obj) => out.kept += 1,
                        Ok(stored) if rv::is_older(obj.resource_version(), stored.rv) => {
                            self.metrics.stale_writes.inc();
                            out.kept += 1;
                        }
                        // Newer, incomparable or undecodable: the item wins.
                        _ => rewrite.push(next),
                    }
                    next += 1;
                    while next < sorted.len() && sorted[next].0 == k {
                        put.push(next);
                        next += 1;
                    }
                } else if Self::doomed(&sel, meta, v) {
                    doomed.push(k.to_owned());
                }
            }
            put.extend(next..sorted.len());
        }
        // 1. Deletions.
        for k in &doomed {
            self.objects.remove(k.as_str())?;
            self.metrics.write_ops.inc();
            out.deleted += 1;
        }
        // 2. The items: rewrites decided above, then the rest with the compare (in key order,
        //    which keeps the list's order among items of one key).
        for &i in &rewrite {
            let (k, obj) = &sorted[i];
            self.objects
                .insert(k.as_str(), encode_value(obj).as_slice())?;
            out.written += 1;
        }
        for &i in &put {
            let (k, obj) = &sorted[i];
            count(out, &self.put(k, obj)?);
        }
        Ok(())
    }
}

/// Whether a stored value holds exactly what [`encode_value`] would write for `obj`.
fn same_value(stored: &ValueRef<'_>, obj: &Object) -> bool {
    stored.rv == obj.resource_version()
        && stored.labels == obj.labels()
        && stored.json == &obj.json[..]
}

/// Adds one item's put outcome to a replace's counts.
fn count(out: &mut ReplaceOutcome, outcome: &PutOutcome) {
    match outcome {
        PutOutcome::Created | PutOutcome::Updated => out.written += 1,
        PutOutcome::Unchanged | PutOutcome::Stale { .. } => out.kept += 1,
    }
}

/// A consistent, read-only view of the store at one commit (one redb read transaction).
///
/// Reads never wait for writers. Keep snapshots short-lived: pages they can see are not reused
/// until they are dropped, and [`SyncStore::compact`] fails while one is alive.
pub struct Snapshot {
    txn: ReadTransaction,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    /// One object.
    pub fn get(&self, k: &ObjectKey) -> Result<Option<StoredObject>, StoreError> {
        let table = self.txn.open_table(OBJECTS)?;
        let Some(guard) = table.get(key::object_key(k).as_str())? else {
            return Ok(None);
        };
        let v = decode_value(guard.value())?;
        Ok(Some(StoredObject {
            resource_version: v.rv.to_owned(),
            json: Bytes::copy_from_slice(v.json),
        }))
    }

    /// The objects of `scope`'s component, resource and namespace (all namespaces when the
    /// scope's namespace is empty) that match its label and field selectors, in key order, with
    /// the scope's own list metadata if it was ever listed.
    pub fn list(&self, scope: &ListScope) -> Result<ListResult, StoreError> {
        let table = self.txn.open_table(OBJECTS)?;
        let sel = scope.selection();
        let mut items = Vec::new();
        let mut take = |v: &[u8]| -> Result<(), StoreError> {
            let v = decode_value(v)?;
            if selects(&sel, &v) {
                items.push(StoredObject {
                    resource_version: v.rv.to_owned(),
                    json: Bytes::copy_from_slice(v.json),
                });
            }
            Ok(())
        };
        match candidates(scope) {
            Candidates::Point(k) => {
                if let Some(g) = table.get(k.as_str())? {
                    take(g.value())?;
                }
            }
            Candidates::Range(start, end) => {
                for entry in table.range(start.as_str()..end.as_str())? {
                    take(entry?.1.value())?;
                }
            }
        }
        let resource_version = rv::max(items.iter().map(|i| i.resource_version.as_str()));
        Ok(ListResult {
            items,
            resource_version,
            meta: self.list_meta(&scope.key())?,
        })
    }

    /// Visits the objects of `scope` like [`list`](Self::list) does, in key order, without
    /// collecting them: `f` gets each selected object's resourceVersion and JSON and returns
    /// whether to go on. This is what streams an offline list.
    pub fn scan(
        &self,
        scope: &ListScope,
        mut f: impl FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let table = self.txn.open_table(OBJECTS)?;
        let sel = scope.selection();
        match candidates(scope) {
            Candidates::Point(k) => {
                if let Some(g) = table.get(k.as_str())? {
                    let v = decode_value(g.value())?;
                    if selects(&sel, &v) {
                        f(v.rv, v.json);
                    }
                }
            }
            Candidates::Range(start, end) => {
                for entry in table.range(start.as_str()..end.as_str())? {
                    let (_, g) = entry?;
                    let v = decode_value(g.value())?;
                    if selects(&sel, &v) && !f(v.rv, v.json) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The paths of every stored non-resource document.
    pub fn nonresource_paths(&self) -> Result<Vec<String>, StoreError> {
        let table = self.txn.open_table(NONRESOURCE)?;
        let mut paths = Vec::new();
        for e in table.iter()? {
            let (k, _) = e?;
            paths.push(key::decode_nonresource_key(k.value())?);
        }
        Ok(paths)
    }

    /// The journal, oldest entry first: sequence number and entry.
    pub fn journal(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let table = self.txn.open_table(JOURNAL)?;
        table
            .iter()?
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value(), Bytes::copy_from_slice(v.value())))
            })
            .collect()
    }

    /// The recorded metadata of one list scope.
    pub fn list_meta(&self, scope: &ListScopeKey) -> Result<Option<ListMeta>, StoreError> {
        let table = self.txn.open_table(LISTS)?;
        let Some(g) = table.get(key::list_key(scope).as_str())? else {
            return Ok(None);
        };
        serde_json::from_slice(g.value())
            .map(Some)
            .map_err(|e| StoreError::Malformed(format!("list meta: {e}")))
    }

    /// A non-resource document.
    pub fn get_nonresource(&self, path: &str) -> Result<Option<Bytes>, StoreError> {
        let table = self.txn.open_table(NONRESOURCE)?;
        Ok(table
            .get(key::nonresource_key(path).as_str())?
            .map(|g| Bytes::copy_from_slice(g.value())))
    }

    /// Every component with objects or list scopes, sorted.
    pub fn components(&self) -> Result<Vec<String>, StoreError> {
        let mut out = BTreeSet::new();
        for def in [OBJECTS, LISTS] {
            let table = self.txn.open_table(def)?;
            let mut from = String::new();
            loop {
                let next = match table.range(from.as_str()..)?.next() {
                    None => break,
                    Some(entry) => key::component_of(entry?.0.value())?,
                };
                // Skip the whole component in one seek.
                from = key::component_range(&next).1;
                out.insert(next);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Every list scope of `component`, with its metadata.
    pub fn scopes(&self, component: &str) -> Result<Vec<(ListScopeKey, ListMeta)>, StoreError> {
        let table = self.txn.open_table(LISTS)?;
        let (start, end) = key::component_range(component);
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            let (k, v) = entry?;
            let meta = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Malformed(format!("list meta: {e}")))?;
            out.push((key::decode_list_key(k.value())?, meta));
        }
        Ok(out)
    }

    /// Every object of every component (for verification and export; reads the whole table).
    pub fn all_objects(&self) -> Result<Vec<(ObjectKey, StoredObject)>, StoreError> {
        let table = self.txn.open_table(OBJECTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let v = decode_value(v.value())?;
            out.push((
                key::decode_object_key(k.value())?,
                StoredObject {
                    resource_version: v.rv.to_owned(),
                    json: Bytes::copy_from_slice(v.json),
                },
            ));
        }
        Ok(out)
    }

    /// Counts and live bytes (file size is filled in by [`RedbStore`](super::RedbStore)).
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let objects = self.txn.open_table(OBJECTS)?;
        let lists = self.txn.open_table(LISTS)?;
        let nonresource = self.txn.open_table(NONRESOURCE)?;
        let meta = self.txn.open_table(META)?;
        let object_bytes = objects.stats()?.stored_bytes();
        Ok(Usage {
            objects: objects.len()?,
            object_bytes,
            lists: lists.len()?,
            nonresource: nonresource.len()?,
            live_bytes: object_bytes
                + lists.stats()?.stored_bytes()
                + nonresource.stats()?.stored_bytes()
                + meta.stats()?.stored_bytes(),
            file_bytes: 0,
        })
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(META)?;
        Ok(table.get(name)?.map(|g| g.value().to_vec()))
    }

    /// The node the file was created for, if recorded.
    pub fn node_name(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta(META_NODE)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Last time an apiserver was healthy (Unix ms), if recorded.
    pub fn last_healthy_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta(META_LAST_HEALTHY)?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Objects grouped by component (counts), for diagnostics.
    pub fn object_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let table = self.txn.open_table(OBJECTS)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            *out.entry(key::component_of(k.value())?).or_insert(0) += 1;
        }
        Ok(out)
    }
}
