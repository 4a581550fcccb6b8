//! The open database, replaced after a disk error.
//!
//! redb refuses every operation after a failed write or fsync
//! (`PreviousIo`) until the database is opened again. The writer thread
//! therefore drops the failed handle and reopens the file (redb repairs it
//! from the last commit) at once, and again before a later request if that
//! failed (the disk may still be failing), at most every
//! [`REOPEN_INTERVAL`]. While the slot is empty, reads and writes fail with
//! [`StoreError::Unavailable`]; the first successful reopen heals the store
//! without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use redb::{Database, DatabaseError};

use super::error::StoreError;

/// Opens the store file (the same way the store was first opened).
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, DatabaseError> + Send + Sync>;

/// Work done on a reopened database before anyone else can use it.
pub(crate) type Prepare<'a> = &'a dyn Fn(&Database) -> Result<(), StoreError>;

/// Least time between two reopen attempts while the disk keeps failing.
pub(crate) const REOPEN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a reopen waits for reads in progress to release the old handle
/// (a read holds it for microseconds to milliseconds). Runs on the writer
/// thread (`tokio::time::Instant` there reads the real clock).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The database handle shared by the readers and the writer thread.
pub(crate) struct DbSlot {
    db: RwLock<Option<Arc<Database>>>,
    opener: Opener,
    path: PathBuf,
    last_attempt: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for DbSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbSlot")
            .field("path", &self.path)
            .field("open", &self.is_open())
            .finish()
    }
}

impl DbSlot {
    /// A slot holding `db`, reopened with `opener`.
    pub(crate) fn new(db: Database, opener: Opener, path: PathBuf) -> Self {
        Self {
            db: RwLock::new(Some(Arc::new(db))),
            opener,
            path,
            last_attempt: Mutex::new(None),
        }
    }

    /// The open database, or [`StoreError::Unavailable`] while a reopen is
    /// pending.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| self.unavailable())
    }

    /// Whether a database is open.
    pub(crate) fn is_open(&self) -> bool {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The open database, reopening first if the slot is empty and the
    /// last attempt is at least [`REOPEN_INTERVAL`] old.
    pub(crate) fn get_or_reopen(&self, prepare: Prepare<'_>) -> Result<Arc<Database>, StoreError> {
        if let Ok(db) = self.get() {
            return Ok(db);
        }
        let due = {
            let mut last = self
                .last_attempt
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let due = last.is_none_or(|at| at.elapsed() >= REOPEN_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return Err(self.unavailable());
        }
        self.reopen(prepare)?;
        self.get()
    }

    /// Drops the current handle (after a disk error), opens the file again
    /// and runs `prepare` on it before publishing it. On failure the slot
    /// stays empty.
    pub(crate) fn reopen(&self, prepare: Prepare<'_>) -> Result<(), StoreError> {
        let old = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut old) = old {
            // redb holds the file lock until the last handle is dropped.
            let deadline = Instant::now() + RELEASE_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) if Instant::now() < deadline => {
                        old = shared;
                        // The writer's own thread, never a runtime worker.
                        std::thread::park_timeout(Duration::from_millis(1));
                    }
                    Err(shared) => {
                        drop(shared);
                        break;
                    }
                }
            }
        }
        *self
            .last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let opened = (self.opener)()
            .map_err(|e| StoreError::from(redb::Error::from(e)))
            .and_then(|db| prepare(&db).map(|()| db));
        match opened {
            Ok(db) => {
                *self.db.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                tracing::warn!(path = %self.path.display(), "store reopened after a disk error");
                Ok(())
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "store reopen failed; retrying on the next request");
                Err(self.unavailable())
            }
        }
    }

    fn unavailable(&self) -> StoreError {
        StoreError::Unavailable {
            path: self.path.clone(),
        }
    }
}
