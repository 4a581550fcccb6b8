//! (b) Reading one alias's messages after a stream sequence, among 100k
//! messages of 1,001 aliases: direct get next-by-subject, an ordered pull
//! consumer, an ephemeral pull consumer with one fetch, and a batched
//! direct get (server 2.11+, raw request: async-nats has no API for it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::common::*;

const TOTAL: usize = 100_000;
const TARGET_EVERY: usize = 100;
const TARGET: &str = "dl.demo.chat.target";

pub async fn run() -> Res {
    let client = connect("b-catchup").await?;
    let js = js(&client);
    let stream = fresh_downlink(&js, "catchup").await?;

    // 100k messages, every 100th for the target alias, the rest over 1,000
    // other aliases; async publish with up to 1,000 acks in flight.
    let payload = Bytes::from(vec![b'x'; 100]);
    let cpu0 = nodes_cpu();
    let me0 = self_cpu();
    let t = Instant::now();
    let mut inflight = VecDeque::new();
    let mut target_seqs = Vec::new();
    for i in 0..TOTAL {
        let subject = if i % TARGET_EVERY == 0 {
            TARGET.to_string()
        } else {
            format!("dl.demo.chat.a{}", i % 1000)
        };
        let ack = js
            .send_publish(
                subject,
                PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(format!("c{i}")),
            )
            .await?;
        inflight.push_back((i, ack));
        if inflight.len() >= 1000 {
            let (j, ack) = inflight.pop_front().unwrap();
            let ack = ack.await?;
            if j % TARGET_EVERY == 0 {
                target_seqs.push(ack.sequence);
            }
        }
    }
    while let Some((j, ack)) = inflight.pop_front() {
        let ack = ack.await?;
        if j % TARGET_EVERY == 0 {
            target_seqs.push(ack.sequence);
        }
    }
    let took = t.elapsed();
    println!(
        "published {TOTAL} x 100 B (R3, sync always, 1,000 acks in flight, 1 client): {} = {:.0} msg/s",
        ms(took),
        TOTAL as f64 / took.as_secs_f64()
    );
    println!("  {}; client {:.2}s CPU (debug build)", cpu_report(cpu0, nodes_cpu(), TOTAL), self_cpu() - me0);
    if std::env::var("PUBLISH_ONLY").is_ok() {
        return Ok(());
    }
    println!(
        "target alias: {} messages, seqs {}..{}",
        target_seqs.len(),
        target_seqs[0],
        target_seqs[target_seqs.len() - 1]
    );

    let cases = [
        ("1,000 (all)", target_seqs[0] - 1, 1000usize),
        ("100 (the last 100)", target_seqs[899], 100),
        ("10 (the last 10)", target_seqs[989], 10),
        ("0 (up to date)", target_seqs[999], 0),
    ];
    for (label, after, expect) in cases {
        println!("\n-- catch-up of {label}: messages after stream seq {after}");
        for round in 0..3 {
            let (n1, d1) = direct_next(&stream, after, expect).await?;
            let (n2, d2, c2) = ordered(&stream, after, expect).await?;
            let (n3, d3, c3) = fetch(&stream, after, expect).await?;
            let (n4, d4) = batch_direct(&client, after, expect).await?;
            println!(
                "  round {round}: direct_get_next_for_subject loop: {n1} in {} | ordered consumer: {n2} in {} (create {}) | pull consumer + 1 fetch: {n3} in {} (create {}) | batched direct get: {n4} in {}",
                ms(d1),
                ms(d2),
                ms(c2),
                ms(d3),
                ms(c3),
                ms(d4)
            );
        }
    }
    Ok(())
}

/// One direct get per message (the `next_by_subj` request).
async fn direct_next(stream: &Stream, after: u64, expect: usize) -> Res<(usize, Duration)> {
    let t = Instant::now();
    let mut seq = after + 1;
    let mut n = 0;
    while n < expect + 1 {
        match stream.direct_get_next_for_subject(TARGET, Some(seq)).await {
            Ok(m) => {
                n += 1;
                seq = m.sequence + 1;
            }
            Err(_) => break, // 404: nothing after
        }
        if n > expect {
            break;
        }
    }
    Ok((n, t.elapsed()))
}

/// An ordered pull consumer (R1, memory, ephemeral) from `after + 1`.
async fn ordered(stream: &Stream, after: u64, expect: usize) -> Res<(usize, Duration, Duration)> {
    let t = Instant::now();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: TARGET.into(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await?;
    let created = t.elapsed();
    let mut n = 0;
    if expect > 0 {
        let mut messages = consumer.messages().await?;
        while n < expect {
            match tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
                Ok(Some(Ok(_))) => n += 1,
                _ => break,
            }
        }
    } else {
        // Up to date: the consumer's info says nothing is pending.
        let mut consumer = consumer;
        let info = consumer.info().await?;
        n = info.num_pending as usize;
    }
    Ok((n, t.elapsed(), created))
}

/// An ephemeral pull consumer, no acks, one fetch of up to 1,000.
async fn fetch(stream: &Stream, after: u64, _expect: usize) -> Res<(usize, Duration, Duration)> {
    let t = Instant::now();
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: TARGET.into(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await?;
    let created = t.elapsed();
    let mut n = 0;
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_millis(500))
        .messages()
        .await?;
    while let Some(m) = batch.next().await {
        if m.is_ok() {
            n += 1;
        }
    }
    let d = t.elapsed();
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
    let _: Option<consumer::Info> = None;
    Ok((n, d, created))
}

/// `$JS.API.DIRECT.GET.<stream>` with `{"seq", "next_by_subj", "batch"}`:
/// the server answers with up to `batch` messages then an EOB status (204).
async fn batch_direct(client: &async_nats::Client, after: u64, _expect: usize) -> Res<(usize, Duration)> {
    let t = Instant::now();
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let body = serde_json::json!({"seq": after + 1, "next_by_subj": TARGET, "batch": 1000});
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{DOWNLINK}"),
            inbox,
            Bytes::from(body.to_string()),
        )
        .await?;
    let mut n = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(m)) => {
                if m.status.is_some() {
                    // 204 EOB (or 404 when nothing matches).
                    break;
                }
                n += 1;
            }
            _ => break,
        }
    }
    Ok((n, t.elapsed()))
}

/// The headers of a batched direct get, and `multi_last` (the last message
/// of many subjects in one request: what a tag push needs for per-alias
/// sequence numbers). Runs on the stream left by `run`.
pub async fn run_headers() -> Res {
    let client = connect("b2").await?;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    let body = serde_json::json!({"seq": 99_000, "next_by_subj": TARGET, "batch": 64});
    client
        .publish_with_reply(format!("$JS.API.DIRECT.GET.{DOWNLINK}"), inbox.clone(), Bytes::from(body.to_string()))
        .await?;
    let mut n = 0;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
        n += 1;
        if n <= 2 || m.status.is_some() {
            println!(
                "batch reply {n}: status={:?} description={:?} headers={:?}",
                m.status,
                m.description,
                m.headers.as_ref().map(|h| h.iter().map(|(k, v)| format!("{k}={}", v.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(","))).collect::<Vec<_>>())
            );
        }
        if m.status.is_some() {
            break;
        }
    }
    // multi_last over 1,000 subjects.
    for round in 0..3 {
        let subjects: Vec<String> = (0..1000).map(|i| format!("dl.demo.chat.a{i}")).collect();
        let t = Instant::now();
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await?;
        let body = serde_json::json!({"multi_last": subjects, "batch": 1000});
        client
            .publish_with_reply(format!("$JS.API.DIRECT.GET.{DOWNLINK}"), inbox, Bytes::from(body.to_string()))
            .await?;
        let mut got = 0;
        let mut end = None;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
            if m.status.is_some() {
                end = Some(format!("{:?} {:?}", m.status, m.description));
                break;
            }
            got += 1;
        }
        println!("multi_last of 1,000 subjects, round {round}: {got} messages in {} (end: {end:?})", ms(t.elapsed()));
    }
    Ok(())
}
