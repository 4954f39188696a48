//! The offline journal's bookkeeping inside the store: caps, status coalescing, batched reads
//! and the record of rejected entries.
//!
//! The journal (`journal` table: sequence number -> opaque entry) is written by offline writes
//! and drained by the reconnect replay. Three things keep it bounded:
//!
//! - **Caps.** Every append carries [`JournalLimits`] (bytes and entries). An append that
//!   would take the journal past either is refused with [`JournalFull`] and writes nothing (an
//!   offline update is then not applied to the cached copy either), so what was accepted is
//!   never lost and nothing half-applied is kept. The totals live in the `meta` table
//!   (`journal_stats`), updated in the same transaction as the entries, so a check costs one
//!   row read; a file written before they existed has them computed once, by one scan.
//! - **Coalescing.** An append may name a coalescing key (the writer uses the object's
//!   identity for status writes, whose replay sends only the final status). The
//!   `journal_coalesce` table maps each key to the pending entry's sequence number; an append
//!   with the same key removes that entry in the same transaction, so a kubelet updating a
//!   pod's status every few seconds while offline keeps one entry per pod, not thousands.
//!   The new entry takes its own place at the end (the replay order of other writes of the
//!   object is kept: a status write never changes anything but the status).
//! - **Batched reads.** [`Snapshot::journal_batch`](super::Snapshot::journal_batch) reads the
//!   entries after a sequence number, at most a given count and (past the first) a given
//!   number of bytes, so the replay holds one batch in memory, not the whole journal.
//!
//! Sequence numbers are never reused (the next one is kept in `journal_stats`), so a
//! coalescing pointer can never name a later, unrelated entry.
//!
//! Entries the replay gives up on are moved to the `journal_rejected` table with the
//! apiserver's answer ([`WriteOp::JournalReject`](super::WriteOp::JournalReject)), keeping the
//! newest few (the operator reads them at the management server's `/v1/journal/rejected`).

use bytes::Bytes;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use super::{OpOutcome, Snapshot, Tables};
use crate::store::StoreError;

/// `journal_coalesce`: coalescing key -> sequence number of its pending entry.
pub(crate) const JOURNAL_COALESCE: TableDefinition<'_, &str, u64> =
    TableDefinition::new("journal_coalesce");
/// `journal_rejected`: sequence number -> JSON record of an entry the replay gave up on.
pub(crate) const JOURNAL_REJECTED: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("journal_rejected");

const META_STATS: &str = "journal_stats";

/// The journal's caps; an append past either is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// Most bytes of entries pending (default 64 MiB).
    pub max_bytes: u64,
    /// Most entries pending (default 10,000).
    pub max_entries: u64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            max_bytes: 64 << 20,
            max_entries: 10_000,
        }
    }
}

/// One journal append: the entry, its coalescing key and the caps to respect.
#[derive(Debug, Clone)]
pub struct JournalAppend {
    /// The encoded entry.
    pub entry: Bytes,
    /// An earlier pending entry with the same key is replaced by this one.
    pub coalesce: Option<String>,
    /// The caps.
    pub limits: JournalLimits,
}

/// Which cap refused an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalCap {
    /// [`JournalLimits::max_bytes`].
    Bytes,
    /// [`JournalLimits::max_entries`].
    Entries,
}

/// An append refused because the journal is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the offline journal is full: {current} {unit} pending, {entry} more would pass the cap of {max}", unit = self.unit(), entry = self.adding)]
pub struct JournalFull {
    /// The cap that refused it.
    pub cap: JournalCap,
    /// The cap's value.
    pub max: u64,
    /// What is pending now (bytes or entries).
    pub current: u64,
    /// What the append would add (bytes or 1).
    pub adding: u64,
}

impl JournalFull {
    fn unit(&self) -> &'static str {
        match self.cap {
            JournalCap::Bytes => "bytes",
            JournalCap::Entries => "entries",
        }
    }
}

/// The journal's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Bytes of pending entries.
    pub bytes: u64,
    /// Pending entries.
    pub entries: u64,
    /// The sequence number the next entry gets.
    pub next_seq: u64,
}

impl JournalStats {
    fn encode(&self) -> String {
        format!("{} {} {}", self.bytes, self.entries, self.next_seq)
    }

    fn decode(s: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(s).ok()?;
        let mut it = s.split(' ').map(|p| p.parse::<u64>());
        let (bytes, entries, next_seq) = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
        Some(JournalStats {
            bytes,
            entries,
            next_seq,
        })
    }
}

impl Tables<'_> {
    /// The stored totals, computed by one scan if the file has none yet.
    fn journal_stats(&mut self) -> Result<JournalStats, StoreError> {
        if let Some(g) = self.meta.get(META_STATS)?
            && let Some(s) = JournalStats::decode(g.value())
        {
            return Ok(s);
        }
        let mut s = JournalStats {
            next_seq: 1,
            ..Default::default()
        };
        for e in self.journal.iter()? {
            let (k, v) = e?;
            s.bytes += v.value().len() as u64;
            s.entries += 1;
            s.next_seq = s.next_seq.max(k.value() + 1);
        }
        Ok(s)
    }

    fn set_journal_stats(&mut self, s: JournalStats) -> Result<(), StoreError> {
        self.meta.insert(META_STATS, s.encode().as_bytes())?;
        Ok(())
    }

    /// Removes entry `seq` (if present) from the journal and the totals.
    fn journal_take(&mut self, s: &mut JournalStats, seq: u64) -> Result<(), StoreError> {
        let removed = self.journal.remove(seq)?.map(|g| g.value().len() as u64);
        if let Some(len) = removed {
            s.bytes = s.bytes.saturating_sub(len);
            s.entries = s.entries.saturating_sub(1);
        }
        Ok(())
    }

    /// Checks the caps, coalesces and appends; the outcome is [`OpOutcome::JournalFull`]
    /// when a cap refuses (nothing is written then).
    pub(super) fn journal_append(&mut self, a: &JournalAppend) -> Result<OpOutcome, StoreError> {
        let mut s = self.journal_stats()?;
        // The entry this one replaces does not count against the caps.
        let replaced = match &a.coalesce {
            Some(k) => self.journal_coalesce.get(k.as_str())?.map(|g| g.value()),
            None => None,
        };
        let (mut bytes, mut entries) = (s.bytes, s.entries);
        if let Some(seq) = replaced
            && let Some(g) = self.journal.get(seq)?
        {
            bytes = bytes.saturating_sub(g.value().len() as u64);
            entries = entries.saturating_sub(1);
        }
        let len = a.entry.len() as u64;
        if entries + 1 > a.limits.max_entries {
            return Ok(OpOutcome::JournalFull(JournalFull {
                cap: JournalCap::Entries,
                max: a.limits.max_entries,
                current: entries,
                adding: 1,
            }));
        }
        if bytes + len > a.limits.max_bytes {
            return Ok(OpOutcome::JournalFull(JournalFull {
                cap: JournalCap::Bytes,
                max: a.limits.max_bytes,
                current: bytes,
                adding: len,
            }));
        }
        if let Some(seq) = replaced {
            self.journal_take(&mut s, seq)?;
        }
        let seq = s.next_seq.max(1);
        self.journal.insert(seq, a.entry.as_ref())?;
        s.next_seq = seq + 1;
        s.bytes += len;
        s.entries += 1;
        if let Some(k) = &a.coalesce {
            self.journal_coalesce.insert(k.as_str(), seq)?;
        }
        self.set_journal_stats(s)?;
        self.metrics.write_ops.inc();
        Ok(OpOutcome::Journaled(Some(seq)))
    }

    /// Removes entry `seq` and, if `coalesce` still points at it, that pointer.
    pub(super) fn journal_remove(
        &mut self,
        seq: u64,
        coalesce: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut s = self.journal_stats()?;
        self.journal_take(&mut s, seq)?;
        if let Some(k) = coalesce {
            let points_here = self
                .journal_coalesce
                .get(k)?
                .is_some_and(|g| g.value() == seq);
            if points_here {
                self.journal_coalesce.remove(k)?;
            }
        }
        self.set_journal_stats(s)?;
        self.metrics.write_ops.inc();
        Ok(())
    }

    /// Removes entry `seq` and records `record` as rejected, keeping the newest `keep`.
    pub(super) fn journal_reject(
        &mut self,
        seq: u64,
        coalesce: Option<&str>,
        record: &[u8],
        keep: usize,
    ) -> Result<(), StoreError> {
        self.journal_remove(seq, coalesce)?;
        self.journal_rejected.insert(seq, record)?;
        while self.journal_rejected.len()? > keep as u64 {
            if self.journal_rejected.pop_first()?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

/// A read table that may not exist yet (files written before it): empty then.
fn missing_is_empty<T>(r: Result<T, TableError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Snapshot {
    /// Journal entries with a sequence number above `after`, oldest first: at most
    /// `max_entries`, and no more bytes than `max_bytes` (the first entry is returned
    /// whatever its size, so a batch always makes progress).
    pub fn journal_batch(
        &self,
        after: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let Some(table) = missing_is_empty(self.txn.open_table(super::JOURNAL))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let Some(from) = after.checked_add(1) else {
            return Ok(out);
        };
        for e in table.range(from..)? {
            if out.len() >= max_entries.max(1) {
                break;
            }
            let (k, v) = e?;
            let v = v.value();
            if !out.is_empty() && bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            out.push((k.value(), Bytes::copy_from_slice(v)));
        }
        Ok(out)
    }

    /// The journal's totals (pending bytes and entries).
    pub fn journal_stats(&self) -> Result<JournalStats, StoreError> {
        if let Some(meta) = missing_is_empty(self.txn.open_table(super::META))?
            && let Some(g) = meta.get(META_STATS)?
            && let Some(s) = JournalStats::decode(g.value())
        {
            return Ok(s);
        }
        let mut s = JournalStats {
            next_seq: 1,
            ..Default::default()
        };
        if let Some(table) = missing_is_empty(self.txn.open_table(super::JOURNAL))? {
            for e in table.iter()? {
                let (k, v) = e?;
                s.bytes += v.value().len() as u64;
                s.entries += 1;
                s.next_seq = s.next_seq.max(k.value() + 1);
            }
        }
        Ok(s)
    }

    /// The records of rejected entries, oldest first (see the module docs).
    pub fn journal_rejected(&self) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let Some(table) = missing_is_empty(self.txn.open_table(JOURNAL_REJECTED))? else {
            return Ok(Vec::new());
        };
        table
            .iter()?
            .map(|e| {
                let (k, v) = e?;
                Ok((k.value(), Bytes::copy_from_slice(v.value())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SyncStore, WriteOp};

    fn store() -> (tempfile::TempDir, SyncStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("j.redb")).unwrap();
        (dir, SyncStore::new(db, Default::default()).unwrap())
    }

    fn append(
        s: &SyncStore,
        entry: &str,
        coalesce: Option<&str>,
        limits: JournalLimits,
    ) -> OpOutcome {
        s.apply(&[WriteOp::JournalAppend {
            append: JournalAppend {
                entry: Bytes::from(entry.to_owned()),
                coalesce: coalesce.map(str::to_owned),
                limits,
            },
        }])
        .unwrap()
        .remove(0)
    }

    #[test]
    fn caps_coalescing_batches_and_sequence_numbers() {
        let (_dir, s) = store();
        let limits = JournalLimits {
            max_bytes: 10,
            max_entries: 3,
        };
        assert_eq!(
            append(&s, "aaaa", None, limits),
            OpOutcome::Journaled(Some(1))
        );
        assert_eq!(
            append(&s, "bbb", Some("x"), limits),
            OpOutcome::Journaled(Some(2))
        );
        // Replacing x's pending entry: its bytes do not count against the cap.
        assert_eq!(
            append(&s, "cccccc", Some("x"), limits),
            OpOutcome::Journaled(Some(3))
        );
        let OpOutcome::JournalFull(full) = append(&s, "d", None, limits) else {
            panic!("past the byte cap");
        };
        assert_eq!(
            (full.cap, full.current, full.adding),
            (JournalCap::Bytes, 10, 1)
        );
        let snap = s.snapshot().unwrap();
        assert_eq!(
            snap.journal_stats().unwrap(),
            JournalStats {
                bytes: 10,
                entries: 2,
                next_seq: 4
            }
        );
        let all: Vec<u64> = snap.journal().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(all, [1, 3]);
        // Batches: bounded by count, and by bytes past the first entry.
        assert_eq!(snap.journal_batch(0, 1, usize::MAX).unwrap().len(), 1);
        assert_eq!(snap.journal_batch(0, 10, 1).unwrap().len(), 1);
        assert_eq!(snap.journal_batch(1, 10, 1).unwrap()[0].0, 3);
        assert!(snap.journal_batch(3, 10, 10).unwrap().is_empty());
        drop(snap);
        // Emptied, the journal does not reuse sequence numbers; the stale pointer is dropped.
        s.apply(&[
            WriteOp::JournalRemove {
                seq: 1,
                coalesce: None,
            },
            WriteOp::JournalRemove {
                seq: 3,
                coalesce: Some("x".into()),
            },
        ])
        .unwrap();
        let big = JournalLimits::default();
        assert_eq!(
            append(&s, "e", Some("x"), big),
            OpOutcome::Journaled(Some(4))
        );
        // Entry cap.
        let two = JournalLimits {
            max_entries: 2,
            ..big
        };
        assert_eq!(append(&s, "f", None, two), OpOutcome::Journaled(Some(5)));
        let OpOutcome::JournalFull(full) = append(&s, "g", None, two) else {
            panic!("past the entry cap");
        };
        assert_eq!((full.cap, full.current), (JournalCap::Entries, 2));
        // Rejecting keeps the newest records only.
        s.apply(&[
            WriteOp::JournalReject {
                seq: 4,
                coalesce: Some("x".into()),
                record: Bytes::from_static(b"{}"),
                keep: 1,
            },
            WriteOp::JournalReject {
                seq: 5,
                coalesce: None,
                record: Bytes::from_static(b"[]"),
                keep: 1,
            },
        ])
        .unwrap();
        let snap = s.snapshot().unwrap();
        assert_eq!(
            snap.journal_rejected().unwrap(),
            [(5, Bytes::from_static(b"[]"))]
        );
        assert_eq!(snap.journal_stats().unwrap().entries, 0);
    }
}
