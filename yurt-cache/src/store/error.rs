//! The store's one error type.
//!
//! redb reports through several error enums (per operation kind); they are all folded into
//! [`redb::Error`] here, so callers match on a handful of cases that say what to do: fix the
//! input ([`StoreError::InvalidObject`], [`StoreError::InvalidKey`]), retry later
//! ([`StoreError::Timeout`], [`StoreError::Closed`], [`StoreError::Unavailable`]), or treat the
//! cache as unavailable ([`StoreError::Storage`], [`StoreError::Io`]).

use std::path::PathBuf;

/// Every error the store returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object could not be stored: not a JSON object, or without `metadata.name`.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// A label or field selector did not parse.
    #[error("invalid selector: {0}")]
    InvalidSelector(String),
    /// A key did not decode (only for keys that did not come from the key module).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A stored value did not decode; the file was written by an incompatible build.
    #[error("stored value is malformed: {0}")]
    Malformed(String),
    /// The database reported an error.
    #[error("redb: {0}")]
    Storage(#[from] redb::Error),
    /// Filesystem error outside redb (quarantine rename, size queries).
    #[error("I/O on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process (or another store in this process) has the file open.
    #[error("cache file {0} is already open")]
    AlreadyOpen(PathBuf),
    /// The operation did not finish within the configured timeout; a write may still commit.
    #[error("store operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store was shut down, or its writer thread ended.
    #[error("store is closed")]
    Closed,
    /// The write transaction this operation was batched into failed; the operation was not
    /// applied. The inner error is the transaction's.
    #[error("group commit failed: {0}")]
    CommitFailed(std::sync::Arc<StoreError>),
    /// A blocking read task panicked or was cancelled.
    #[error("store task failed: {0}")]
    TaskFailed(String),
    /// A lock was poisoned by a panic in another thread.
    #[error("store lock poisoned")]
    Poisoned,
    /// An offline write was refused because the journal is at a cap; nothing was written.
    #[error(transparent)]
    JournalFull(#[from] super::engine::JournalFull),
    /// The file is closed while the store recovers from an I/O error (see the store's
    /// recovery docs); the operation was not attempted. Retry later.
    #[error("cache store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether this error means the file met an I/O error (the disk is full, `EIO`, or an
    /// earlier such error latched), after which redb must be closed and reopened.
    pub fn needs_reopen(&self) -> bool {
        match self {
            StoreError::Storage(redb::Error::Io(_) | redb::Error::PreviousIo) => true,
            StoreError::CommitFailed(inner) => inner.needs_reopen(),
            _ => false,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);
