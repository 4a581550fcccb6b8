//! (f) Failures: SIGKILL of one nats-server of three (the stream leader,
//! then the node the client is connected to) during 3,000 deduplicated
//! publishes and KV updates; then SIGKILL of all three (what a gateway sees:
//! errors and timings for a 503), and recovery.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::message::PublishMessage;
use async_nats::connection::State;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::common::*;

const N: usize = 3_000;
const KILL_AT: usize = 1_000;
const WINDOW: usize = 64;
const ACK_DEADLINE: Duration = Duration::from_secs(2);

pub async fn run(which: &str) -> Res {
    let client = connect("f-gateway").await?;
    let js = js(&client);
    let mut stream = fresh_downlink(&js, "failover").await?;
    let positions = fresh_kv(&js, positions_config()).await?;
    let leader = stream
        .info()
        .await?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default();
    let connected = client.server_info().server_name.clone();
    let victim = match which {
        "leader" => node_of(&leader).ok_or("leader")?,
        "follower" => (1..=3)
            .find(|n| Some(*n) != node_of(&leader) && Some(*n) != node_of(&connected))
            .ok_or("no follower apart from the connected node")?,
        _ => node_of(&connected).ok_or("connected")?,
    };
    println!(
        "stream leader {leader}, client connected to {connected}; will SIGKILL pike-n{victim} ({which}) after {KILL_AT} of {N} publishes"
    );

    // KV writer in the background: one device advancing its position.
    let stop = Arc::new(AtomicBool::new(false));
    let kv_stats = Arc::new(AtomicU64::new(0));
    let kv_task = {
        let positions = positions.clone();
        let stop = stop.clone();
        let kv_stats = kv_stats.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut errors = Vec::new();
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) && seq < 100_000 {
                seq += 1;
                let t = Instant::now();
                match crate::c_kv::advance(&positions, "demo.chat.u1.dev1", "failover", seq).await {
                    Ok(_) => kv_stats.store(seq, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(format!("seq {seq}: {e} after {}", ms(t.elapsed())));
                        seq -= 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                worst = worst.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (errors, worst)
        })
    };

    // Publisher: WINDOW acks in flight; a failed publish is retried with the
    // same Nats-Msg-Id (at most 40 times, 250 ms apart).
    let payload = Bytes::from(vec![b'p'; 64]);
    let mut acked: BTreeMap<usize, (u64, bool)> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut retries = 0usize;
    let mut inflight: VecDeque<(usize, Instant, Result<_, _>)> = VecDeque::new();
    let mut retry_queue: VecDeque<(usize, usize)> = VecDeque::new();
    let mut killed_at = None;
    let mut worst_ack = Duration::ZERO;
    let mut last_ok = Duration::ZERO;
    let mut longest_stall = Duration::ZERO;
    let t0 = Instant::now();
    let mut next = 0usize;
    let publish = |i: usize| {
        let js = js.clone();
        let payload = payload.clone();
        async move {
            js.send_publish(
                format!("dl.demo.chat.a{}", i % 100),
                PublishMessage::build().payload(payload).message_id(format!("f{i}")),
            )
            .await
        }
    };
    let mut attempts: HashMap<usize, usize> = HashMap::new();
    while acked.len() < N && t0.elapsed() < Duration::from_secs(120) {
        while inflight.len() < WINDOW {
            let i = if let Some((i, _)) = retry_queue.pop_front() {
                i
            } else if next < N {
                next += 1;
                next - 1
            } else {
                break;
            };
            if i == KILL_AT && killed_at.is_none() {
                kill_node(victim).await?;
                killed_at = Some(t0.elapsed());
                println!("  SIGKILL pike-n{victim} at +{}", ms(t0.elapsed()));
            }
            *attempts.entry(i).or_default() += 1;
            inflight.push_back((i, Instant::now(), publish(i).await));
        }
        let Some((i, sent, ack)) = inflight.pop_front() else {
            if retry_queue.is_empty() {
                break;
            }
            continue;
        };
        // The ack future's own timeout starts when it is first polled: await
        // it against a deadline counted from the send instead.
        let result = match ack {
            Ok(fut) => match tokio::time::timeout_at((sent + ACK_DEADLINE).into(), fut).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no ack within {} of the send", ms(ACK_DEADLINE))),
            },
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(ack) => {
                worst_ack = worst_ack.max(sent.elapsed());
                let now = t0.elapsed();
                longest_stall = longest_stall.max(now.saturating_sub(last_ok));
                last_ok = now;
                if let Some((seq, _)) = acked.get(&i) {
                    errors.push(format!("f{i} acked twice: {seq} and {}", ack.sequence));
                }
                acked.insert(i, (ack.sequence, ack.duplicate));
            }
            Err(e) => {
                if errors.len() < 8 {
                    errors.push(format!("f{i} at +{}: {e} (after {})", ms(t0.elapsed()), ms(sent.elapsed())));
                }
                retries += 1;
                if attempts[&i] >= 40 {
                    return Err(format!("f{i}: gave up").into());
                }
                if sent.elapsed() < Duration::from_millis(250) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                retry_queue.push_back((i, 0));
            }
        }
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (kv_errors, kv_worst) = kv_task.await?;
    let dups = acked.values().filter(|(_, d)| *d).count();
    println!(
        "published {} acked of {N} in {} ({retries} retries, {dups} acks flagged duplicate = retried after a lost ack); slowest ack {}; longest time without an ack {}",
        acked.len(),
        ms(took),
        ms(worst_ack),
        ms(longest_stall)
    );
    for e in &errors {
        println!("  publish error: {e}");
    }
    println!(
        "KV writer: reached position {}; {} errors; slowest advance {}",
        kv_stats.load(Ordering::Relaxed),
        kv_errors.len(),
        ms(kv_worst)
    );
    for e in kv_errors.iter().take(6) {
        println!("  kv error: {e}");
    }

    // Every acked message is in the stream exactly once, at its acked seq.
    let info = stream.info().await?.clone();
    println!(
        "stream after: messages={} last_seq={} leader={:?} replicas={:?}",
        info.state.messages,
        info.state.last_sequence,
        info.cluster.as_ref().and_then(|c| c.leader.clone()),
        info.cluster.as_ref().map(|c| c
            .replicas
            .iter()
            .map(|r| format!("{} current={} offline={}", r.name, r.current, r.offline))
            .collect::<Vec<_>>())
    );
    // Creating a consumer needs the meta leader, which may be the node just
    // killed: retry for up to 20 s and say how long it took.
    let t = Instant::now();
    let mut consumer = None;
    let mut last_err = String::new();
    for _ in 0..20 {
        match stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: "dl.>".into(),
                ..Default::default()
            })
            .await
        {
            Ok(c) => {
                consumer = Some(c);
                break;
            }
            Err(e) => {
                last_err = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let consumer = consumer.ok_or(last_err.clone())?;
    println!("ordered consumer for the check created after {} (last error before: {last_err:?})", ms(t.elapsed()));
    let mut messages = consumer.messages().await?;
    let mut by_id: HashMap<String, Vec<u64>> = HashMap::new();
    let mut read = 0u64;
    while read < info.state.messages {
        match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            Ok(Some(Ok(m))) => {
                read += 1;
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                by_id.entry(id).or_default().push(m.info()?.stream_sequence);
            }
            _ => break,
        }
    }
    let lost = acked
        .iter()
        .filter(|(i, (seq, _))| by_id.get(&format!("f{i}")).is_none_or(|s| !s.contains(seq)))
        .count();
    let duplicated = by_id.values().filter(|s| s.len() > 1).count();
    println!(
        "verify: read {read} messages; acked {} / lost {lost} / stored twice {duplicated} / stored but never acked {}",
        acked.len(),
        by_id.len().saturating_sub(acked.len())
    );

    // Node back: how long until the stream's replica is current again.
    let t = Instant::now();
    restart_node(victim).await?;
    let mut current = false;
    for _ in 0..100 {
        let info = stream.get_info().await?;
        if info
            .cluster
            .as_ref()
            .is_some_and(|c| c.replicas.iter().all(|r| r.current && !r.offline) && c.replicas.len() == 2)
        {
            current = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("pike-n{victim} restarted; all replicas current after {} ({current})", ms(t.elapsed()));
    Ok(())
}

/// The client loses every server: what publish, KV and core calls do, how
/// fast, and how it recovers when the servers come back.
pub async fn outage() -> Res {
    let client = connect("f-outage").await?;
    let js = js(&client);
    let stream = fresh_downlink(&js, "outage").await?;
    let positions = fresh_kv(&js, positions_config()).await?;
    let mut live = client.subscribe("live.demo.chat.u1").await?;
    client.flush().await?;
    js.send_publish("dl.demo.chat.u1", PublishMessage::build().payload("before".into()).message_id("o0"))
        .await?
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), live.next()).await;

    let t = Instant::now();
    for n in 1..=3 {
        kill_node(n).await?;
    }
    println!("SIGKILL all 3 nodes");
    let mut state_after = None;
    for _ in 0..200 {
        if client.connection_state() != State::Connected {
            state_after = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "client.connection_state() != Connected after {:?} -> {:?}",
        state_after.map(ms),
        client.connection_state()
    );

    let t = Instant::now();
    let r = js
        .send_publish("dl.demo.chat.u1", PublishMessage::build().payload("during".into()).message_id("o1"))
        .await;
    let publish_sent = t.elapsed();
    let r = match r {
        Ok(fut) => fut.await.map(|a| a.sequence).map_err(|e| format!("{:?}: {e}", e.kind())),
        Err(e) => Err(format!("send: {:?}: {e}", e.kind())),
    };
    println!(
        "js.send_publish during the outage: send returned after {}, ack -> {r:?} after {}",
        ms(publish_sent),
        ms(t.elapsed())
    );
    let t = Instant::now();
    let r = positions.get("demo.chat.u1.dev1").await;
    println!("kv.get during the outage -> {:?} after {}", r.map(|v| v.is_some()).map_err(|e| e.to_string()), ms(t.elapsed()));
    let t = Instant::now();
    let r = positions.put("demo.chat.u1.dev1", Bytes::from_static(b"x")).await;
    println!("kv.put during the outage -> {:?} after {}", r.map_err(|e| e.to_string()), ms(t.elapsed()));
    let t = Instant::now();
    let r = client.publish("live.demo.chat.u1", Bytes::from_static(b"core during")).await;
    println!("core publish during the outage -> {:?} after {} (buffered, not an error)", r.map_err(|e| e.to_string()), ms(t.elapsed()));
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    println!("flush during the outage -> {:?} after {}", r.map(|r| r.map_err(|e| e.to_string())), ms(t.elapsed()));
    let t = Instant::now();
    let r = stream.direct_get_last_for_subject("dl.demo.chat.u1").await;
    println!("direct get during the outage -> {:?} after {}", r.map(|m| m.sequence).map_err(|e| e.to_string()), ms(t.elapsed()));

    // Back.
    let t = Instant::now();
    restart_nodes(&[1, 2, 3]).await?;
    println!("restarted all 3 (ci-install.sh restart, each waits for /healthz): {}", ms(t.elapsed()));
    let mut reconnected = None;
    for _ in 0..300 {
        if client.connection_state() == State::Connected {
            reconnected = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("client Connected again after {:?}", reconnected.map(ms));
    let mut ok_after = None;
    let mut last_err = String::new();
    for i in 0..200 {
        match js
            .send_publish("dl.demo.chat.u1", PublishMessage::build().payload("after".into()).message_id(format!("o2-{i}")))
            .await
        {
            Ok(fut) => match fut.await {
                Ok(a) => {
                    ok_after = Some((t.elapsed(), a.sequence));
                    break;
                }
                Err(e) => last_err = e.to_string(),
            },
            Err(e) => last_err = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("first JetStream publish ok after {:?} (last error before: {last_err:?})", ok_after.map(|(d, s)| (ms(d), s)));
    let got = tokio::time::timeout(Duration::from_secs(3), async {
        let mut v = Vec::new();
        while let Some(m) = live.next().await {
            v.push(String::from_utf8_lossy(&m.payload).to_string());
            if v.len() >= 2 {
                break;
            }
        }
        v
    })
    .await;
    println!("live subscription after reconnect (resubscribed by the client) got: {got:?}");
    let mut info_stream = js.get_stream(DOWNLINK).await?;
    let info = info_stream.info().await?;
    println!(
        "stream after the outage: messages={} last_seq={} epoch={:?}",
        info.state.messages,
        info.state.last_sequence,
        info.config.metadata.get("pike_epoch")
    );
    Ok(())
}
