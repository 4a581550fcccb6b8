//! (d) PIKE_PRESENCE: per-key TTL (server 2.11+ per-message TTL), refresh
//! with CAS, takeover signalled on `ctl.<node>`, and a scatter-gather query
//! of every node (the cluster-wide presence / connection list / trace).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::common::*;

/// Puts `value` at `key` with a TTL, only if the key is still at
/// `revision` (0: absent). async-nats has `create_with_ttl` but no
/// `update_with_ttl`/`put_with_ttl`: the KV write is a publish to
/// `$KV.<bucket>.<key>` with the two headers.
pub async fn put_ttl_cas(
    js: &async_nats::jetstream::Context,
    key: &str,
    value: Bytes,
    revision: u64,
    ttl: Duration,
) -> Result<u64, async_nats::jetstream::context::PublishError> {
    let ack = js
        .send_publish(
            format!("$KV.{PRESENCE}.{key}"),
            PublishMessage::build()
                .payload(value)
                .expected_last_subject_sequence(revision)
                .ttl(ttl),
        )
        .await?
        .await?;
    Ok(ack.sequence)
}

pub async fn run() -> Res {
    let a = connect_one("d-nodeA", 0).await?;
    let b = connect_one("d-nodeB", 1).await?;
    let c = connect_one("d-nodeC", 2).await?;
    let (ja, jb, jc) = (js(&a), js(&b), js(&c));
    let store = fresh_kv(&ja, presence_config()).await?;
    let info = ja.get_stream(format!("KV_{PRESENCE}")).await?;
    let cfg = &info.cached_info().config;
    println!(
        "create_key_value(PIKE_PRESENCE, limit_markers 60s) -> stream KV_PIKE_PRESENCE allow_message_ttl={} subject_delete_marker_ttl={:?}",
        cfg.allow_message_ttl, cfg.subject_delete_marker_ttl
    );
    let sb = jb.get_key_value(PRESENCE).await?;
    let sc = jc.get_key_value(PRESENCE).await?;

    // Per-key TTL.
    println!("\n-- per-key TTL");
    let mut watch = store.watch("demo.>").await?;
    let t0 = Instant::now();
    let r = store
        .create_with_ttl("demo.dev1", Bytes::from_static(b"nodeA|tok1"), Duration::from_secs(2))
        .await?;
    println!("create_with_ttl(demo.dev1, ttl 2s) -> revision {r}");
    let r2 = put_ttl_cas(&ja, "demo.dev2", Bytes::from_static(b"nodeA|tok2"), 0, Duration::from_secs(2)).await?;
    println!("raw publish $KV.PIKE_PRESENCE.demo.dev2 (Nats-TTL 2s, expect 0) -> revision {r2}");
    // Refresh dev2 twice (1 s apart) so that it outlives dev1.
    let mut rev2 = r2;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        rev2 = put_ttl_cas(&ja, "demo.dev2", Bytes::from_static(b"nodeA|tok2"), rev2, Duration::from_secs(2)).await?;
    }
    println!("refreshed dev2 twice (CAS + TTL 2s) -> revision {rev2}");
    let mut dev1_gone = None;
    for _ in 0..40 {
        if store.get("demo.dev1").await?.is_none() {
            dev1_gone = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "dev1 get() -> None after {:?}; dev2 still there at {}: {}",
        dev1_gone.map(ms),
        ms(t0.elapsed()),
        store.get("demo.dev2").await?.is_some()
    );
    match store.entry("demo.dev1").await? {
        Some(e) => println!("  entry(dev1) -> operation {:?} revision {} (the delete marker)", e.operation, e.revision),
        None => println!("  entry(dev1) -> None"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(Ok(e))) = tokio::time::timeout_at(deadline, watch.next()).await {
        println!(
            "  watch: {} {:?} rev {} at +{}",
            e.key,
            e.operation,
            e.revision,
            ms(t0.elapsed())
        );
    }

    // Takeover: dev3 on node A; logs in on node B.
    println!("\n-- takeover (dev3: node A -> node B), signalled on ctl.nodeA");
    let mut ctl_a = a.subscribe("ctl.nodeA").await?;
    let mut ctl_b = b.subscribe("ctl.nodeB").await?;
    let mut ctl_c = c.subscribe("ctl.nodeC").await?;
    a.flush().await?;
    b.flush().await?;
    c.flush().await?;
    let ttl = Duration::from_secs(60);
    store.create_with_ttl("demo.dev3", Bytes::from_static(b"nodeA|tok-a"), ttl).await?;
    let t = Instant::now();
    let old = sb.entry("demo.dev3").await?.ok_or("no entry")?;
    let new_rev = put_ttl_cas(&jb, "demo.dev3", Bytes::from_static(b"nodeB|tok-b"), old.revision, ttl).await?;
    let old_value = String::from_utf8_lossy(&old.value).to_string();
    let old_node = old_value.split('|').next().unwrap_or_default();
    b.publish(format!("ctl.{old_node}"), Bytes::from(format!("close demo dev3 {old_value}"))).await?;
    let got = tokio::time::timeout(Duration::from_secs(2), ctl_a.next()).await?;
    println!(
        "  B: entry (rev {}) + CAS put (rev {new_rev}) + publish ctl.{old_node}; A received {:?} after {}",
        old.revision,
        got.map(|m| String::from_utf8_lossy(&m.payload).to_string()),
        ms(t.elapsed())
    );

    // Race: B and C both take over dev3 from the same revision.
    println!("\n-- race: node B and node C log dev3 in at the same time");
    let seen = sb.entry("demo.dev3").await?.ok_or("no entry")?;
    let seen_c = sc.entry("demo.dev3").await?.ok_or("no entry")?;
    let (rb, rc) = tokio::join!(
        put_ttl_cas(&jb, "demo.dev3", Bytes::from_static(b"nodeB|tok-b2"), seen.revision, ttl),
        put_ttl_cas(&jc, "demo.dev3", Bytes::from_static(b"nodeC|tok-c"), seen_c.revision, ttl)
    );
    let describe = |r: &Result<u64, async_nats::jetstream::context::PublishError>| match r {
        Ok(rev) => format!("won (rev {rev})"),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => format!("lost: {e}"),
        Err(e) => format!("error {e}"),
    };
    println!("  B: {}   C: {}", describe(&rb), describe(&rc));
    // The loser re-reads and takes over from the winner (last CAS wins and
    // closes the earlier one).
    let (loser_js, loser_store, loser_name) = if rb.is_err() { (&jb, &sb, "nodeB") } else { (&jc, &sc, "nodeC") };
    let cur = loser_store.entry("demo.dev3").await?.ok_or("no entry")?;
    let cur_value = String::from_utf8_lossy(&cur.value).to_string();
    let winner = cur_value.split('|').next().unwrap_or_default().to_owned();
    put_ttl_cas(loser_js, "demo.dev3", Bytes::from(format!("{loser_name}|tok-retry")), cur.revision, ttl).await?;
    let loser_client = if loser_name == "nodeB" { &b } else { &c };
    loser_client.publish(format!("ctl.{winner}"), Bytes::from("close demo dev3")).await?;
    loser_client.flush().await?;
    let sub = if winner == "nodeB" { &mut ctl_b } else { &mut ctl_c };
    let got = tokio::time::timeout(Duration::from_secs(2), sub.next()).await.ok().flatten();
    println!(
        "  {loser_name} retried from {winner}'s revision, owns dev3 now ({:?}); ctl.{winner} got close: {}",
        String::from_utf8_lossy(&store.get("demo.dev3").await?.unwrap_or_default()),
        got.is_some()
    );

    // Scatter-gather: every node answers `q.presence` from its registry.
    println!("\n-- scatter-gather query over 3 nodes (q.presence), 20 rounds");
    let mut responders = Vec::new();
    for (i, client) in [&a, &b, &c].into_iter().enumerate() {
        let mut sub = client.subscribe("q.presence").await?;
        let client = client.clone();
        client.flush().await?;
        responders.push(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Some(reply) = m.reply {
                    let _ = client.publish(reply, Bytes::from(format!("node{i}: []"))).await;
                }
            }
        }));
    }
    let mut samples = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let inbox = a.new_inbox();
        let mut replies = a.subscribe(inbox.clone()).await?;
        a.publish_with_reply("q.presence", inbox, Bytes::from_static(b"demo chat u42")).await?;
        let mut n = 0;
        while n < 3 {
            match tokio::time::timeout(Duration::from_millis(500), replies.next()).await {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        if n == 3 {
            samples.push(t.elapsed());
        }
    }
    println!("  3 answers collected: {}", pct(&mut samples));
    for r in responders {
        r.abort();
    }
    let _ = (HeaderMap::new(), kv::Operation::Put);
    Ok(())
}

/// Login-storm cost: 5,000 presence claims (CAS create with TTL) into the
/// memory R3 bucket, 256 in flight.
pub async fn run_storm() -> Res {
    let client = connect("d2").await?;
    let js = js(&client);
    let _store = fresh_kv(&js, presence_config()).await?;
    let cpu0 = nodes_cpu();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut lat = Vec::new();
    let n = 5_000usize;
    for d in 0..n {
        let js = js.clone();
        set.spawn(async move {
            let t = Instant::now();
            put_ttl_cas(&js, &format!("demo.storm{d}"), Bytes::from_static(b"nodeA|tok|boot"), 0, Duration::from_secs(3600))
                .await
                .map(|_| t.elapsed())
        });
        if set.len() >= 256 {
            lat.push(set.join_next().await.unwrap()??);
        }
    }
    while let Some(r) = set.join_next().await {
        lat.push(r??);
    }
    let took = t.elapsed();
    println!(
        "{n} presence claims (memory R3, CAS create + Nats-TTL 1h), 256 in flight: {} = {:.0}/s; latency {}",
        ms(took),
        n as f64 / took.as_secs_f64(),
        pct(&mut lat)
    );
    println!("  {}", cpu_report(cpu0, nodes_cpu(), n));
    Ok(())
}
