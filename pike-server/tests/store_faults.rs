//! Disk faults under the store (`RedbStore::open_with_faults`, feature
//! `fault-injection`): a failed write or fsync stores nothing and answers
//! an error; the store reopens itself once the disk works, without a
//! restart, and keeps everything committed before.

use pike_server::store::fault::{DiskFault, StoreFaults};
use pike_server::store::{Append, RedbStore, StoreConfig, StoreError, StreamKey};

const NOW: u64 = 1_700_000_000_000;

fn alias(a: &str) -> StreamKey {
    StreamKey::alias("demo", "chat", a)
}

async fn append(store: &RedbStore, text: &str) -> Result<u64, StoreError> {
    let appended = store
        .append(vec![Append::new(alias("u1"), text.to_owned())], NOW)
        .await?;
    Ok(appended[0].seq)
}

async fn payloads(store: &RedbStore) -> Result<Vec<String>, StoreError> {
    let batch = store.read(&alias("u1"), 0, 100, NOW).await?;
    Ok(batch
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect())
}

async fn fault_then_heal(fault: DiskFault) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pike.redb");
    let faults = StoreFaults::new();
    let store = RedbStore::open_with_faults(&path, StoreConfig::default(), faults.clone()).unwrap();
    assert_eq!(append(&store, "before").await.unwrap(), 1);

    faults.set(fault);
    let failed = append(&store, "lost").await;
    assert!(failed.is_err(), "{fault:?}: {failed:?}");
    eprintln!("{fault:?}: append -> {failed:?}");
    eprintln!("{fault:?}: read -> {:?}", payloads(&store).await);
    eprintln!(
        "{fault:?}: position -> {:?}",
        store.set_position(&alias("u1"), "d1", 1).await
    );
    eprintln!(
        "{fault:?}: append again -> {:?}",
        append(&store, "lost2").await
    );

    faults.set(DiskFault::None);
    // The store reopens on the next write (at most every 100 ms).
    let mut healed = None;
    for _ in 0..100 {
        match append(&store, "after").await {
            Ok(seq) => {
                healed = Some(seq);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    // A failed write stored nothing, so its seq is free again; a failed
    // fsync left the commit in the file, which the reopen found and
    // removed: its seq stays used (a device sees a jump, as after expiry).
    let want = if fault == DiskFault::SyncError { 3 } else { 2 };
    assert_eq!(healed, Some(want), "{fault:?}");
    assert_eq!(
        payloads(&store).await.unwrap(),
        ["before", "after"],
        "{fault:?}"
    );
    store.close().await.unwrap();
    let reopened = RedbStore::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(payloads(&reopened).await.unwrap(), ["before", "after"]);
}

#[tokio::test]
async fn disk_full() {
    fault_then_heal(DiskFault::Full).await;
}

#[tokio::test]
async fn write_error() {
    fault_then_heal(DiskFault::WriteError).await;
}

#[tokio::test]
async fn sync_error() {
    fault_then_heal(DiskFault::SyncError).await;
}
