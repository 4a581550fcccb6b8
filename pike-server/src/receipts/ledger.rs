//! The status table on disk: `receipts.redb` in the data dir, a database
//! of its own (not the message store), one row per record (message id →
//! the record as JSON). Written in batches by the receipt task
//! (`flush_ms`) and at shutdown; read once at start.

use std::path::Path;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::status::Record;

const RECORDS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("receipt_records");

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[error("receipt ledger: {0}")]
pub struct LedgerError(String);

fn err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError(e.to_string())
}

/// The open ledger.
#[derive(Debug)]
pub struct Ledger {
    db: Database,
}

impl Ledger {
    /// Opens (or makes) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Self { db })
    }

    /// Every record. A row that does not decode is skipped (and logged):
    /// its receipts are lost, nothing else.
    pub fn load(&self) -> Result<Vec<Record>, LedgerError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(RECORDS).map_err(err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err)? {
            let (id, value) = row.map_err(err)?;
            match serde_json::from_slice::<Record>(value.value()) {
                Ok(record) => out.push(record),
                Err(e) => {
                    tracing::warn!(message_id = id.value(), error = %e, "receipt record skipped")
                }
            }
        }
        Ok(out)
    }

    /// Writes `changed` and deletes `removed`, in one durable commit.
    pub fn write(&self, changed: &[Record], removed: &[u64]) -> Result<(), LedgerError> {
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(RECORDS).map_err(err)?;
            for record in changed {
                let value = serde_json::to_vec(record).map_err(err)?;
                table
                    .insert(record.message_id, value.as_slice())
                    .map_err(err)?;
            }
            for id in removed {
                table.remove(*id).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("receipts.redb");
        let record = Record {
            message_id: 4,
            app: "demo".into(),
            biz: "chat".into(),
            reliable: true,
            created_at_ms: 1,
            expires_at_ms: 2,
            expired: false,
            places: vec![("u1".into(), 3)],
            devices: Vec::new(),
        };
        {
            let ledger = Ledger::open(&path)?;
            ledger.write(std::slice::from_ref(&record), &[])?;
        }
        let ledger = Ledger::open(&path)?;
        assert_eq!(ledger.load()?, vec![record]);
        ledger.write(&[], &[4])?;
        assert!(ledger.load()?.is_empty());
        Ok(())
    }
}
