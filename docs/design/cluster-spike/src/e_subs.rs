//! (e) Core subscriptions per alias as the route table: 20,000 (then up to
//! 100,000) subscriptions on one connection, interest across the cluster,
//! delivery through one merged stream.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;

use crate::common::*;

async fn server_subs(n: usize) -> String {
    match monitor(n, "/varz").await {
        Ok(v) => format!(
            "n{n}: subscriptions={} mem={:.1}MB",
            v["subscriptions"],
            v["mem"].as_f64().unwrap_or(0.0) / 1e6
        ),
        Err(e) => format!("n{n}: {e}"),
    }
}

pub async fn run() -> Res {
    // The gateway's connection is on node 1; pushes come in on node 2.
    let gw = connect_one("e-gateway", 0).await?;
    let pusher = connect_one("e-pusher", 1).await?;
    println!("before: {} | {} | {}", server_subs(1).await, server_subs(2).await, server_subs(3).await);
    let rss0 = rss_kib();

    let mut all = SelectAll::new();
    let mut total = 0usize;
    for (step, upto) in [20_000usize, 50_000, 100_000].into_iter().enumerate() {
        let t = Instant::now();
        for i in total..upto {
            all.push(gw.subscribe(format!("live.demo.chat.u{i}")).await?);
        }
        let subscribed = t.elapsed();
        gw.flush().await?;
        let flushed = t.elapsed();
        let count = upto - total;
        total = upto;
        // Interest reaches node 2 (route) when a publish there is delivered.
        let t2 = Instant::now();
        let probe = format!("live.demo.chat.u{}", upto - 1);
        let mut got = false;
        for _ in 0..100 {
            pusher.publish(probe.clone(), Bytes::from_static(b"probe")).await?;
            pusher.flush().await?;
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), all.next()).await {
                got = true;
                break;
            }
        }
        println!(
            "\nstep {step}: {count} subscribe() calls: {} ({:.1} us each), + flush: {}; interest usable from node 2 after {} (delivered: {got})",
            ms(subscribed),
            subscribed.as_secs_f64() * 1e6 / count as f64,
            ms(flushed),
            ms(t2.elapsed())
        );
        println!(
            "  {total} subscriptions: client RSS +{:.1} MB ({:.0} B per subscription) | {} | {} | {}",
            (rss_kib() - rss0) as f64 / 1024.0,
            (rss_kib() - rss0) as f64 * 1024.0 / total as f64,
            server_subs(1).await,
            server_subs(2).await,
            server_subs(3).await
        );
    }
    // Drain stray probes.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), all.next()).await {}

    // Deliveries: 10,000 pushes to random subscribed aliases, published on
    // node 2, received on node 1 through the merged stream.
    let n = 10_000usize;
    let cpu0 = nodes_cpu();
    let t = Instant::now();
    let recv = tokio::spawn(async move {
        let mut got = 0usize;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(5), all.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, all)
    });
    for i in 0..n {
        let alias = (i * 7919) % total;
        pusher
            .publish(format!("live.demo.chat.u{alias}"), Bytes::from_static(b"0123456789012345678901234567890123456789"))
            .await?;
    }
    pusher.flush().await?;
    let (got, all) = recv.await?;
    println!(
        "\n{n} core publishes on node 2 to {total} per-alias subjects, received on node 1: {got} in {} ({:.0}/s)",
        ms(t.elapsed()),
        got as f64 / t.elapsed().as_secs_f64()
    );
    println!("  {}", cpu_report(cpu0, nodes_cpu(), n));

    // Unsubscribe everything (drop = UNSUB).
    let t = Instant::now();
    drop(all);
    gw.flush().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "dropping {total} subscribers + flush: {} | {} | {}",
        ms(t.elapsed()),
        server_subs(1).await,
        server_subs(2).await
    );
    Ok(())
}

/// Where the client-side bytes per subscription go.
pub async fn run_memory() -> Res {
    println!(
        "size_of::<async_nats::Message>() = {} B (tokio mpsc allocates a block of 32 slots per channel)",
        std::mem::size_of::<async_nats::Message>()
    );
    let cap: Option<usize> = std::env::var("SUB_CAP").ok().and_then(|c| c.parse().ok());
    for (label, capacity) in [(format!("subscription_capacity {cap:?} (None = default 65,536)"), cap)] {
        let mut opts = options("e-mem");
        if let Some(c) = capacity {
            opts = opts.subscription_capacity(c);
        }
        let client = opts.connect(urls()[0].clone()).await?;
        let rss0 = rss_kib();
        let mut subs = Vec::with_capacity(20_000);
        for i in 0..20_000 {
            subs.push(client.subscribe(format!("live.mem.chat.u{i}")).await?);
        }
        client.flush().await?;
        let rss1 = rss_kib();
        println!(
            "{label}: 20,000 Subscribers in a Vec: client RSS +{:.1} MB = {:.0} B each",
            (rss1 - rss0) as f64 / 1024.0,
            (rss1 - rss0) as f64 * 1024.0 / 20_000.0
        );
        drop(subs);
        client.flush().await?;
    }
    Ok(())
}
