//! Measures the store's group commit: appends per second with concurrent
//! callers batched into shared transactions, against one fsynced commit per
//! append, in the same run (3 rounds; the ratio is what to read on a noisy
//! machine).
//!
//! `cargo run --release -p pike-server --example store_group_commit`

use std::sync::Arc;

use pike_server::store::{Append, RedbStore, StoreConfig, StreamKey};

const NOW: u64 = 1_700_000_000_000;

async fn throughput(
    max_batch: usize,
    n: usize,
    concurrent: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig::default().with_max_batch(max_batch)?;
    let store = Arc::new(RedbStore::open(dir.path().join("bench.redb"), config)?);
    let start = tokio::time::Instant::now();
    if concurrent {
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let stream = StreamKey::alias("demo", "bench", format!("b{}", i % 100));
                store
                    .append(vec![Append::new(stream, vec![0u8; 64])], NOW)
                    .await
                    .map(|_| ())
            }));
        }
        for task in tasks {
            task.await??;
        }
    } else {
        for i in 0..n {
            let stream = StreamKey::alias("demo", "bench", format!("b{}", i % 100));
            store
                .append(vec![Append::new(stream, vec![0u8; 64])], NOW)
                .await?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "max_batch={max_batch:5} concurrent={concurrent:5} appends={n} commits={} secs={secs:.3} appends/s={rate:.0}",
        store.stats().commits
    );
    Ok(rate)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 5_000;
    let mut ratios = Vec::new();
    for round in 1..=3 {
        println!("round {round}");
        let grouped = throughput(1024, n, true).await?;
        let single = throughput(1, n, true).await?;
        throughput(1024, 1_000, false).await?;
        ratios.push(grouped / single);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "group commit vs one commit per append (same run, 3 rounds): median {:.1}x, min {:.1}x, max {:.1}x",
        ratios[1], ratios[0], ratios[2]
    );
    Ok(())
}
