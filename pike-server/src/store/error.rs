//! The store's error type.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the store.
///
/// Cloneable (sources are shared behind [`Arc`]) because one failed group
/// commit answers every caller whose request was in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is held by another process or another [`RedbStore`] of this
    /// process (redb takes an exclusive file lock).
    ///
    /// [`RedbStore`]: super::RedbStore
    #[error("store {} is already open (by another process or another store instance)", path.display())]
    AlreadyOpen {
        /// The store file.
        path: PathBuf,
    },
    /// The file exists but is not a redb database, or redb found it damaged
    /// beyond repair.
    #[error("{} is not a usable Pike store: {detail}", path.display())]
    InvalidFile {
        /// The store file.
        path: PathBuf,
        /// What redb (or the format check) reported.
        detail: String,
    },
    /// The file is a Pike store written in a format this build does not read.
    #[error("{} has store format {found}; this build reads format {supported}", path.display())]
    UnsupportedFormat {
        /// The store file.
        path: PathBuf,
        /// Format found in the file.
        found: u64,
        /// Format this build reads and writes.
        supported: u64,
    },
    /// A value read back from disk does not decode.
    #[error("corrupt data in table {table}: {detail}")]
    Corrupt {
        /// The table the value came from.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A request was refused before it reached the disk (bad identifier,
    /// already-expired message, unknown message id, tag limit).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A [`StoreConfig`](super::StoreConfig) setter got a value out of range.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The storage engine failed (I/O error, full disk, ...).
    #[error("storage engine error: {0}")]
    Storage(#[source] Arc<redb::Error>),
    /// An I/O error outside the engine (creating the data directory, the
    /// writer thread).
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// A write or fsync failed and the store is not open again yet (the
    /// disk still fails); it reopens itself once the disk works.
    /// (The message leaves the path out: it reaches clients; the store logs
    /// it.)
    #[error("the store is unavailable after a disk error; it reopens once the disk works")]
    Unavailable {
        /// The store file.
        path: PathBuf,
    },
    /// The store was closed, or its writer stopped.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn corrupt(table: &'static str, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            table,
            detail: detail.into(),
        }
    }

    /// Whether the error says the file is in use by another instance.
    pub fn is_already_open(&self) -> bool {
        matches!(self, Self::AlreadyOpen { .. })
    }
}

macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Storage(Arc::new(redb::Error::from(e)))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}
