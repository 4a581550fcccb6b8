//! The client connection pool: availability tracking and added / lost events.

mod common;

use std::io;

use common::trace_init;
use tokio::sync::broadcast::error::TryRecvError;
use tunnelkit::{LostReason, Pool, PoolEvent};

#[tokio::test]
async fn add_and_lost_are_reported_in_order() {
    let _trace = trace_init();
    let pool: Pool<&'static str> = Pool::new();
    let mut events = pool.subscribe();
    let mut available = pool.watch_available();
    assert_eq!(*available.borrow_and_update(), 0);

    let a = pool.add("conn-a");
    let b = pool.add("conn-b");
    assert_eq!(pool.available(), 2);
    assert!(available.has_changed().unwrap());
    assert_eq!(*available.borrow_and_update(), 2);

    // The heartbeat check found `a` dead: removed, reported once, with the reason.
    assert_eq!(
        pool.mark_lost(a, LostReason::HeartbeatTimeout),
        Some("conn-a")
    );
    assert_eq!(
        pool.mark_lost(a, LostReason::Io(io::ErrorKind::BrokenPipe)),
        None
    );
    assert_eq!(pool.available(), 1);
    assert_eq!(*available.borrow_and_update(), 1);
    assert_eq!(pool.get(), Some((b, "conn-b")));

    assert_eq!(events.recv().await.unwrap(), PoolEvent::Added { id: a });
    assert_eq!(events.recv().await.unwrap(), PoolEvent::Added { id: b });
    assert_eq!(
        events.recv().await.unwrap(),
        PoolEvent::Lost {
            id: a,
            reason: LostReason::HeartbeatTimeout
        }
    );
    assert_eq!(events.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn reconnect_logic_can_wait_for_the_pool_to_run_short() {
    let _trace = trace_init();
    let pool: Pool<u32> = Pool::new();
    let id = pool.add(7);
    let mut available = pool.watch_available();

    let watcher = tokio::spawn(async move {
        // What a reconnect task does: wait until fewer than one connection is available.
        available
            .wait_for(|count| *count < 1)
            .await
            .map(|count| *count)
    });
    pool.mark_lost(id, LostReason::PeerClosed);
    assert_eq!(watcher.await.unwrap().unwrap(), 0);
    assert!(pool.is_empty());
    assert_eq!(pool.get(), None);
}

#[tokio::test]
async fn clear_reports_every_connection_as_lost() {
    let _trace = trace_init();
    let pool: Pool<u8> = Pool::new();
    let ids = [pool.add(1), pool.add(2), pool.add(3)];
    let mut events = pool.subscribe();
    let drained = pool.clear(LostReason::Closed);
    assert_eq!(drained.len(), 3);
    assert_eq!(pool.available(), 0);
    for id in ids {
        assert_eq!(
            events.recv().await.unwrap(),
            PoolEvent::Lost {
                id,
                reason: LostReason::Closed
            }
        );
        assert!(!pool.contains(id));
    }
}

#[tokio::test]
async fn clones_share_the_pool() {
    let _trace = trace_init();
    let pool: Pool<u8> = Pool::new();
    let other = pool.clone();
    let id = other.add(9);
    assert_eq!(pool.get_by_id(id), Some(9));
    assert_eq!(format!("{pool:?}"), "Pool { available: 1, .. }");
}
