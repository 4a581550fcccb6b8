//! (g) The design's core loop end to end: two publisher "nodes" append to
//! the same 20 aliases concurrently with a dense per-alias sequence
//! (`Pike-Seq`, compare-and-set on the subject, `Nats-Msg-Id` dedup); a
//! reader "node" joins mid-stream as a brand-new device: subscribes to the
//! live (republished) subjects, reads what it missed with batched direct
//! gets, merges, dedups by sequence, fills gaps seen on the live path.
//! Checks: every alias delivered 1..=N once, in order. Optional
//! KILL_LEADER=1: SIGKILL the stream leader in the middle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;

use crate::common::*;

const ALIASES: usize = 20;
const PER_PUBLISHER: u64 = 50;


#[derive(Default)]
struct Counters {
    published: AtomicU64,
    conflicts: AtomicU64,
    conflicts_10164: AtomicU64,
    errors: AtomicU64,
    duplicates: AtomicU64,
}

/// (stream seq, Pike-Seq) of the last message of `subject`, read from the
/// stream leader (a direct get may come from a lagging replica).
async fn leader_last(stream: &Stream, subject: &str) -> (u64, u64) {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => (
            m.sequence,
            m.headers
                .get("Pike-Seq")
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0),
        ),
        Err(_) => (0, 0),
    }
}

/// One publisher lane: the messages of one alias from one node, in order.
async fn lane(
    js: async_nats::jetstream::Context,
    stream: Stream,
    node: usize,
    alias: usize,
    counters: Arc<Counters>,
    latencies: Arc<std::sync::Mutex<Vec<Duration>>>,
    per_publisher: u64,
) {
    let subject = format!("dl.demo.chat.g{alias}");
    let mut cache: Option<(u64, u64)> = None; // (stream seq, Pike-Seq) of the last message
    for i in 0..per_publisher {
        let msg_id = format!("g{node}-{alias}-{i}");
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 200 {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("lane {node}/{alias}: gave up on {msg_id}");
                return;
            }
            let (last_js, last_pike) = match cache {
                Some(c) => c,
                None => leader_last(&stream, &subject).await,
            };
            let pike = last_pike + 1;
            let sent = js
                .send_publish(
                    subject.clone(),
                    PublishMessage::build()
                        .payload(Bytes::from(format!("{node}:{i}")))
                        .message_id(&msg_id)
                        .expected_last_subject_sequence(last_js)
                        .header("Pike-Seq", pike.to_string().as_str()),
                )
                .await;
            let result = match sent {
                Ok(fut) => match tokio::time::timeout(Duration::from_secs(2), fut).await {
                    Ok(r) => r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                    Err(_) => Err("ack timeout".into()),
                },
                Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            };
            match result {
                Ok(ack) if !ack.duplicate => {
                    cache = Some((ack.sequence, pike));
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    latencies.lock().unwrap().push(started.elapsed());
                    break;
                }
                Ok(_dup) => {
                    // Stored by an earlier attempt whose ack was lost.
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    cache = None;
                    break;
                }
                Err(e) => {
                    let code = js_code(e.as_ref());
                    if code == Some(10071) || code == Some(10164) {
                        counters.conflicts.fetch_add(1, Ordering::Relaxed);
                        if code == Some(10164) {
                            counters.conflicts_10164.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    cache = None;
                    let pause = 1 + (u64::from(attempt) * 13 + alias as u64 + node as u64 * 7) % 6;
                    tokio::time::sleep(Duration::from_millis(if code.is_some() { pause } else { 100 })).await;
                }
            }
        }
    }
}

/// Batched direct get of `subject` from stream seq `from`: (stream seq,
/// Pike-Seq) of up to `batch` messages, and how many are still pending.
async fn read_after(
    client: &async_nats::Client,
    subject: &str,
    from: u64,
    batch: usize,
) -> Res<(Vec<(u64, u64)>, u64)> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let body = serde_json::json!({"seq": from, "next_by_subj": subject, "batch": batch});
    client
        .publish_with_reply(format!("$JS.API.DIRECT.GET.{DOWNLINK}"), inbox, Bytes::from(body.to_string()))
        .await?;
    let mut out = Vec::new();
    let mut pending = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
            Ok(Some(m)) => {
                let h = m.headers.as_ref();
                let num = |k: &str| h.and_then(|h| h.get(k)).and_then(|v| v.as_str().parse::<u64>().ok()).unwrap_or(0);
                if m.status.is_some() {
                    break; // 204 EOB or 404 nothing
                }
                pending = num("Nats-Num-Pending");
                out.push((num("Nats-Sequence"), num("Pike-Seq")));
            }
            _ => return Err("batched direct get timed out".into()),
        }
    }
    Ok((out, pending))
}

#[derive(Default, Debug)]
struct Reader {
    next: u64,   // next Pike-Seq to deliver
    cursor: u64, // stream seq of the last delivered message
    delivered: Vec<u64>,
    live_in_order: u64,
    gap_reads: u64,
    dup_dropped: u64,
}

async fn catch_up(client: &async_nats::Client, alias: usize, r: &mut Reader, reads: &mut u64) -> Res {
    let subject = format!("dl.demo.chat.g{alias}");
    loop {
        let mut tries = 0;
        let (batch, pending) = loop {
            match read_after(client, &subject, r.cursor + 1, 64).await {
                Ok(b) => break b,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("    read g{alias} failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        };
        *reads += 1;
        for (js_seq, pike) in &batch {
            if *pike < r.next {
                r.dup_dropped += 1;
                continue;
            }
            // pike > next would be a real gap (expired or evicted): report, jump.
            r.delivered.push(*pike);
            r.next = pike + 1;
            r.cursor = *js_seq;
        }
        if pending == 0 || batch.is_empty() {
            return Ok(());
        }
    }
}

pub async fn run() -> Res {
    let publishers: usize = std::env::var("PUBLISHERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let per_publisher: u64 = 2 * PER_PUBLISHER / publishers as u64;
    let admin = connect("g-admin").await?;
    let ajs = js(&admin);
    let mut stream = fresh_downlink(&ajs, "g").await?;
    let leader = stream.info().await?.cluster.as_ref().and_then(|c| c.leader.clone()).unwrap_or_default();
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));

    // Publishers: PUBLISHERS nodes x ALIASES lanes, all concurrent.
    let t0 = Instant::now();
    let cpu0 = nodes_cpu();
    let mut lanes = Vec::new();
    for node in 0..publishers {
        let client = connect_one(&format!("g-pub{node}"), node % 3).await?;
        let js = js(&client);
        let stream = js.get_stream(DOWNLINK).await?;
        for alias in 0..ALIASES {
            lanes.push(tokio::spawn(lane(js.clone(), stream.clone(), node, alias, counters.clone(), latencies.clone(), per_publisher)));
        }
    }

    // The reader node joins after ~30% of the messages.
    let total = (publishers as u64) * per_publisher * ALIASES as u64;
    while counters.published.load(Ordering::Relaxed) < total * 3 / 10 && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reader_client = connect_one("g-reader", 2).await?;
    let mut live = SelectAll::new();
    for alias in 0..ALIASES {
        live.push(reader_client.subscribe(format!("live.demo.chat.g{alias}")).await?);
    }
    reader_client.flush().await?;
    let joined_at = counters.published.load(Ordering::Relaxed);
    let mut readers: HashMap<usize, Reader> = (0..ALIASES).map(|a| (a, Reader { next: 1, ..Default::default() })).collect();
    let mut reads = 0u64;
    for alias in 0..ALIASES {
        catch_up(&reader_client, alias, readers.get_mut(&alias).unwrap(), &mut reads).await?;
    }
    let initial_reads = reads;
    let mut killed = None;

    // Live loop until the publishers are done and 1 s passed quietly.
    let mut quiet_since = Instant::now();
    loop {
        if std::env::var("KILL_LEADER").is_ok()
            && killed.is_none()
            && counters.published.load(Ordering::Relaxed) >= total * 6 / 10
        {
            let n = node_of(&leader).ok_or("leader")?;
            kill_node(n).await?;
            killed = Some((n, t0.elapsed()));
            println!("  SIGKILL stream leader pike-n{n} at +{}", ms(t0.elapsed()));
        }
        let done = lanes.iter().all(|l| l.is_finished());
        match tokio::time::timeout(Duration::from_millis(100), live.next()).await {
            Ok(Some(m)) => {
                quiet_since = Instant::now();
                let alias: usize = m.subject.as_str().rsplit('g').next().and_then(|s| s.parse().ok()).ok_or("subject")?;
                let h = m.headers.as_ref();
                let num = |k: &str| h.and_then(|h| h.get(k)).and_then(|v| v.as_str().parse::<u64>().ok()).unwrap_or(0);
                let (js_seq, pike) = (num("Nats-Sequence"), num("Pike-Seq"));
                let r = readers.get_mut(&alias).unwrap();
                if pike < r.next {
                    r.dup_dropped += 1;
                } else if pike == r.next {
                    r.delivered.push(pike);
                    r.next += 1;
                    r.cursor = js_seq;
                    r.live_in_order += 1;
                } else {
                    // A gap on the live path: read the stream to fill it.
                    r.gap_reads += 1;
                    catch_up(&reader_client, alias, r, &mut reads).await?;
                }
            }
            Ok(None) => break,
            Err(_) => {
                if done && quiet_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(120) {
            println!("  stopping at the 120 s bound");
            break;
        }
    }
    let took = t0.elapsed();
    let cpu = nodes_cpu();
    // The final position check (what the engine does after subscribing, to
    // close the window before the interest reached the stream leader).
    let mut final_fill = 0;
    for alias in 0..ALIASES {
        let r = readers.get_mut(&alias).unwrap();
        let before = r.delivered.len();
        catch_up(&reader_client, alias, r, &mut reads).await?;
        final_fill += r.delivered.len() - before;
    }

    // Verdict.
    let mut bad = Vec::new();
    let mut stored_per_alias = Vec::new();
    for alias in 0..ALIASES {
        let r = &readers[&alias];
        let expect: Vec<u64> = (1..=publishers as u64 * per_publisher).collect();
        if r.delivered != expect {
            bad.push(format!("g{alias}: {} delivered, first wrong at {:?}", r.delivered.len(), r.delivered.iter().zip(&expect).position(|(a, b)| a != b)));
        }
        stored_per_alias.push(r.delivered.len());
    }
    let live_in_order: u64 = readers.values().map(|r| r.live_in_order).sum();
    let gap_reads: u64 = readers.values().map(|r| r.gap_reads).sum();
    let dups: u64 = readers.values().map(|r| r.dup_dropped).sum();
    let info = stream.info().await?;
    let mut lat = latencies.lock().unwrap().clone();
    println!(
        "{} messages appended by {publishers} nodes to {ALIASES} aliases (dense Pike-Seq by CAS) in {} = {:.0}/s; {} CAS conflicts ({} of them 10164), {} other errors, {} duplicate acks; stream holds {}",
        counters.published.load(Ordering::Relaxed),
        ms(took),
        counters.published.load(Ordering::Relaxed) as f64 / took.as_secs_f64(),
        counters.conflicts.load(Ordering::Relaxed),
        counters.conflicts_10164.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        counters.duplicates.load(Ordering::Relaxed),
        info.state.messages
    );
    println!("  append latency (incl. conflicts and retries): {}", pct(&mut lat));
    println!("  {}", cpu_report(cpu0, cpu, total as usize));
    println!(
        "reader joined after {joined_at} appends: {initial_reads} initial reads; then {live_in_order} delivered straight from the live path, {gap_reads} live gaps filled by a read, {dups} duplicates dropped by seq, {final_fill} filled by the final position check; {reads} batched direct gets in all; killed: {killed:?}"
    );
    if bad.is_empty() {
        println!("VERDICT: every alias delivered 1..={} exactly once, in order", publishers as u64 * per_publisher);
    } else {
        println!("VERDICT: WRONG: {bad:?}");
    }
    if let Some((n, _)) = killed {
        restart_node(n).await?;
    }
    Ok(())
}
