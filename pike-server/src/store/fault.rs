//! Disk faults for tests: a redb storage backend that wraps the file
//! backend with a switch ([`StoreFaults`]). Compiled only for this crate's
//! tests and with the `fault-injection` feature (never in the default
//! binary).

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// What the disk does now.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum DiskFault {
    /// Every operation goes to the file.
    None,
    /// Every write and resize fails with `ENOSPC` (a full disk).
    Full,
    /// Every write and resize fails with `EIO`.
    WriteError,
    /// Every fsync fails with `EIO` (writes succeed).
    SyncError,
}

impl DiskFault {
    fn to_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Full => 1,
            Self::WriteError => 2,
            Self::SyncError => 3,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Full,
            2 => Self::WriteError,
            3 => Self::SyncError,
            _ => Self::None,
        }
    }
}

/// The switch of a store opened with faults; cloneable, flipped by the test.
#[derive(Clone, Debug, Default)]
pub struct StoreFaults(Arc<AtomicU8>);

impl StoreFaults {
    /// A switch set to [`DiskFault::None`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the fault from now on.
    pub fn set(&self, fault: DiskFault) {
        self.0.store(fault.to_u8(), Ordering::SeqCst);
    }

    /// The fault now.
    pub fn get(&self) -> DiskFault {
        DiskFault::from_u8(self.0.load(Ordering::SeqCst))
    }
}

/// The file backend with [`StoreFaults`] applied.
#[derive(Debug)]
pub(crate) struct FaultyFile {
    inner: FileBackend,
    faults: StoreFaults,
}

impl FaultyFile {
    pub(crate) fn new(file: File, faults: StoreFaults) -> Result<Self, redb::DatabaseError> {
        Ok(Self {
            inner: FileBackend::new(file)?,
            faults,
        })
    }

    fn check_write(&self) -> io::Result<()> {
        match self.faults.get() {
            DiskFault::Full => Err(io::Error::from_raw_os_error(28)), // ENOSPC
            DiskFault::WriteError => Err(io::Error::from_raw_os_error(5)), // EIO
            DiskFault::None | DiskFault::SyncError => Ok(()),
        }
    }
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.check_write()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if self.faults.get() == DiskFault::SyncError {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.check_write()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
