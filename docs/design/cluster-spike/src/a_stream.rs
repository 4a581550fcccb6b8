//! (a) PIKE_DOWNLINK: R3 file stream, per-alias subjects, Nats-Msg-Id
//! dedup, republish to live subjects, per-subject optimistic concurrency,
//! per-message TTL, the epoch in the stream metadata.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::common::*;

fn msg(payload: &'static str) -> PublishMessage {
    PublishMessage::build().payload(Bytes::from_static(payload.as_bytes()))
}

pub async fn run() -> Res {
    let client = connect("a-stream").await?;
    let js = js(&client);
    let t = Instant::now();
    let mut stream = fresh_downlink(&js, "e1").await?;
    println!("create_stream(PIKE_DOWNLINK, R3, file): {}", ms(t.elapsed()));
    let info = stream.info().await?;
    println!(
        "  created={} leader={:?} replicas={:?} epoch(metadata)={:?}",
        info.created,
        info.cluster.as_ref().and_then(|c| c.leader.clone()),
        info.cluster
            .as_ref()
            .map(|c| c.replicas.iter().map(|r| (r.name.clone(), r.current)).collect::<Vec<_>>()),
        info.config.metadata.get("pike_epoch")
    );

    // A second node creating the same stream with another epoch fails and
    // reads the winner's.
    let again = js.create_stream(downlink_config("e2")).await;
    println!(
        "create_stream again with another epoch: {}",
        match &again {
            Ok(s) => format!("ok?! epoch={:?}", s.cached_info().config.metadata.get("pike_epoch")),
            Err(e) => format!("Err({e})"),
        }
    );
    let got = js.get_stream(DOWNLINK).await?;
    println!(
        "  get_stream -> epoch {:?}",
        got.cached_info().config.metadata.get("pike_epoch")
    );
    let same = js.create_stream(downlink_config("e1")).await;
    println!("create_stream again with the identical config: ok={}", same.is_ok());

    // Live subscriber on the republish destination.
    let live_client = connect("a-live").await?;
    let mut live = live_client.subscribe("live.>").await?;
    live_client.flush().await?;

    // Dedup.
    println!("\n-- Nats-Msg-Id dedup");
    let first = js
        .send_publish("dl.demo.chat.u42", msg("hello").message_id("push-1:u42"))
        .await?
        .await?;
    println!("publish(msg_id=push-1:u42) -> seq={} duplicate={}", first.sequence, first.duplicate);
    let second = js
        .send_publish("dl.demo.chat.u42", msg("hello").message_id("push-1:u42"))
        .await?
        .await?;
    println!(
        "publish(msg_id=push-1:u42) again -> seq={} duplicate={}",
        second.sequence, second.duplicate
    );
    let third = js
        .send_publish("dl.demo.chat.u42", msg("other payload").message_id("push-1:u42"))
        .await?
        .await?;
    println!(
        "publish(msg_id=push-1:u42, other payload) -> seq={} duplicate={}",
        third.sequence, third.duplicate
    );

    // Republish headers: u43 then u42 again.
    let b = js
        .send_publish("dl.demo.chat.u43", msg("for u43").message_id("push-2:u43"))
        .await?
        .await?;
    let c = js
        .send_publish("dl.demo.chat.u42", msg("second for u42").message_id("push-3:u42"))
        .await?
        .await?;
    println!("u43 -> seq {}, u42 -> seq {}", b.sequence, c.sequence);
    println!("\n-- republished live messages (live.>), 1 s max:");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut count = 0;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, live.next()).await {
        count += 1;
        let h = m.headers.as_ref();
        let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_owned());
        println!(
            "  {} payload={:?} Nats-Sequence={:?} Nats-Last-Sequence={:?} Nats-Msg-Id={:?} Nats-Subject={:?}",
            m.subject,
            String::from_utf8_lossy(&m.payload),
            get("Nats-Sequence"),
            get("Nats-Last-Sequence"),
            get("Nats-Msg-Id"),
            get("Nats-Subject"),
        );
    }
    println!("  {count} live messages for 3 stored (the duplicates are not republished)");

    // Per-subject optimistic concurrency (dense per-alias sequence option).
    println!("\n-- Nats-Expected-Last-Subject-Sequence (CAS per subject)");
    let s = "dl.demo.chat.cas";
    let m1 = js
        .send_publish(
            s,
            msg("m1").message_id("m1").expected_last_subject_sequence(0).header("Pike-Seq", "1"),
        )
        .await?
        .await?;
    println!("m1 expect 0 -> seq {}", m1.sequence);
    let m2 = js
        .send_publish(
            s,
            msg("m2")
                .message_id("m2")
                .expected_last_subject_sequence(m1.sequence)
                .header("Pike-Seq", "2"),
        )
        .await?
        .await?;
    println!("m2 expect {} -> seq {}", m1.sequence, m2.sequence);
    match js
        .send_publish(
            s,
            msg("m3")
                .message_id("m3")
                .expected_last_subject_sequence(m1.sequence)
                .header("Pike-Seq", "2"),
        )
        .await?
        .await
    {
        Ok(a) => println!("m3 with stale expectation -> ok?! {a:?}"),
        Err(e) => println!(
            "m3 expect {} (stale) -> Err kind={:?} '{e}' (wrong-last-sequence: re-read, retry)",
            m1.sequence,
            e.kind()
        ),
    }
    match js
        .send_publish(
            s,
            msg("m2")
                .message_id("m2")
                .expected_last_subject_sequence(m1.sequence)
                .header("Pike-Seq", "2"),
        )
        .await?
        .await
    {
        Ok(a) => println!(
            "m2 retried (same msg id, now stale expectation) -> seq {} duplicate={} (dedup is checked before the expectation)",
            a.sequence, a.duplicate
        ),
        Err(e) => println!("m2 retried (same msg id, stale expectation) -> Err kind={:?} '{e}'", e.kind()),
    }
    let last = stream.direct_get_last_for_subject(s).await?;
    println!(
        "direct_get_last_for_subject({s}) -> seq {} Pike-Seq={:?}",
        last.sequence,
        last.headers.get("Pike-Seq").map(|v| v.as_str().to_owned())
    );

    // CAS publish throughput to distinct aliases vs plain (serial, 300 each).
    println!("\n-- serial publish latency, R3 + sync_interval always (300 each)");
    let mut plain = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        js.send_publish(
            format!("dl.demo.chat.lat{}", i % 50),
            msg("0123456789012345678901234567890123456789").message_id(format!("lat-{i}")),
        )
        .await?
        .await?;
        plain.push(t.elapsed());
    }
    println!("  plain publish + ack: {}", pct(&mut plain));
    let mut cas = Vec::new();
    for i in 0..300 {
        let subject = format!("dl.demo.chat.casl{}", i % 50);
        let t = Instant::now();
        let expect = match stream.direct_get_last_for_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(_) => 0,
        };
        js.send_publish(
            subject,
            msg("0123456789012345678901234567890123456789")
                .message_id(format!("casl-{i}"))
                .expected_last_subject_sequence(expect),
        )
        .await?
        .await?;
        cas.push(t.elapsed());
    }
    println!("  direct get last + CAS publish + ack: {}", pct(&mut cas));
    let mut gets = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let _ = stream.direct_get_last_for_subject(format!("dl.demo.chat.casl{}", i % 50)).await?;
        gets.push(t.elapsed());
    }
    println!("  direct_get_last_for_subject alone: {}", pct(&mut gets));

    // Per-message TTL on the downlink stream (push TTL).
    println!("\n-- per-message TTL (allow_message_ttl) on the downlink stream");
    let ttl = js
        .send_publish("dl.demo.chat.ttl", msg("short lived").ttl(Duration::from_secs(1)))
        .await?
        .await?;
    println!("publish ttl=1s -> seq {}", ttl.sequence);
    println!("  direct_get now: {:?}", stream.direct_get(ttl.sequence).await.map(|m| m.sequence).map_err(|e| e.to_string()));
    let t = Instant::now();
    let mut gone = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.direct_get(ttl.sequence).await.is_err() {
            gone = Some(t.elapsed());
            break;
        }
    }
    println!("  gone after: {:?} (TTL 1 s, polled every 100 ms, 4 s max)", gone.map(ms));

    let info = stream.info().await?;
    println!(
        "\nstream state: messages={} first={} last={} subjects={}",
        info.state.messages, info.state.first_sequence, info.state.last_sequence, info.state.subjects_count
    );
    let _ = PublishErrorKind::WrongLastSequence;
    Ok(())
}
