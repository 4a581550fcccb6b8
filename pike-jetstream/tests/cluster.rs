//! pike-jetstream against a real 3-node nats-server cluster on loopback.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use pike_jetstream::{
    AckOutcome, Cluster, Error, Health, Holder, LiveMessage, LoginKey, MessageMeta, Position,
    StreamKey,
};
use support::NatsCluster;

fn meta(message_id: u64) -> MessageMeta {
    MessageMeta {
        message_id,
        priority: 0,
        expires_at_ms: 0,
        receipt: false,
    }
}

/// Reads every message of `key` (bounded: 100 pages).
async fn read_all(cluster: &Cluster, key: &StreamKey) -> Vec<pike_jetstream::LogMessage> {
    let mut out = Vec::new();
    let mut after = 0;
    for _ in 0..100 {
        let batch = cluster.read(key, after, 64).await.expect("read");
        let done = batch.messages.is_empty() || batch.pending == 0;
        after = batch.last_cursor;
        out.extend(batch.messages);
        if done {
            return out;
        }
    }
    panic!("more than 100 pages");
}

/// Name of the server leading PIKE_DOWNLINK.
async fn downlink_leader(url: &str) -> String {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("PIKE_DOWNLINK").await.expect("stream");
    let info = stream.info().await.expect("info");
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_is_idempotent_and_adopts_the_epoch() {
    let nats = NatsCluster::start().await;
    let a = Cluster::connect(nats.config("gw1", vec![nats.url(0)]))
        .await
        .expect("first node bootstraps");
    assert_ne!(a.epoch(), 0);
    assert_eq!(a.health(), Health::Ready);
    // Same configuration from another server: idempotent, same epoch.
    let b = Cluster::connect(nats.config("gw2", vec![nats.url(1)]))
        .await
        .expect("second node");
    assert_eq!(b.epoch(), a.epoch());
    // A different configuration (JetStream 10058): adopts the epoch and
    // does not touch the stream.
    let mut other = nats.config("gw3", vec![nats.url(2)]);
    other.max_messages_per_subject = 5;
    let c = Cluster::connect(other).await.expect("third node");
    assert_eq!(c.epoch(), a.epoch());
    let client = async_nats::connect(nats.url(0)).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("PIKE_DOWNLINK").await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_messages_per_subject, 10_000);
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(
        info.config.metadata.get("pike_epoch"),
        Some(&a.epoch().to_string())
    );
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert!(info.config.allow_direct);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.config.subjects, ["dl.>"]);
    let republish = info.config.republish.as_ref().expect("republish");
    assert_eq!(
        (republish.source.as_str(), republish.destination.as_str()),
        ("dl.>", "live.>")
    );
    let mut positions = js
        .get_stream("KV_PIKE_POSITIONS")
        .await
        .expect("positions bucket");
    let positions = positions.info().await.expect("info").config.clone();
    assert_eq!(
        positions.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(positions.num_replicas, 3);
    let mut presence = js
        .get_stream("KV_PIKE_PRESENCE")
        .await
        .expect("presence bucket");
    let presence = presence.info().await.expect("info").config.clone();
    assert_eq!(
        presence.storage,
        async_nats::jetstream::stream::StorageType::Memory
    );
    assert!(presence.allow_message_ttl, "per-key TTL");
    // Every node works on the same log.
    let key = StreamKey::new("demo", "chat", "u1").unwrap();
    let first = b
        .append(&key, "m1", meta(1), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let second = c
        .append(&key, "m2", meta(2), Bytes::from_static(b"y"))
        .await
        .unwrap();
    assert_eq!((first.seq, second.seq), (1, 2));
    // Bad configuration is refused with a clear error, before any I/O.
    let bad = Cluster::connect(nats.config("gw.1", nats.urls())).await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_read_give_dense_per_alias_sequences() {
    let nats = NatsCluster::start().await;
    let cluster = Cluster::connect(nats.config("gw1", nats.urls()))
        .await
        .unwrap();
    let a = StreamKey::new("demo", "chat", "chat:u42").unwrap();
    let b = StreamKey::new("demo", "chat", "u43").unwrap();
    let mut seqs_a = Vec::new();
    let mut seqs_b = Vec::new();
    for i in 0..5u64 {
        let m = MessageMeta {
            message_id: 100 + i,
            priority: u32::try_from(i % 2).unwrap(),
            expires_at_ms: if i == 4 { 1_000 } else { 0 },
            receipt: i == 3,
        };
        let appended = cluster
            .append(&a, &format!("a{i}"), m, Bytes::from(format!("a-{i}")))
            .await
            .unwrap();
        assert!(!appended.duplicate);
        seqs_a.push(appended);
        if i < 3 {
            seqs_b.push(
                cluster
                    .append(&b, &format!("b{i}"), meta(i), Bytes::from(format!("b-{i}")))
                    .await
                    .unwrap(),
            );
        }
    }
    assert_eq!(
        seqs_a.iter().map(|x| x.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(seqs_b.iter().map(|x| x.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(seqs_a.windows(2).all(|w| w[0].cursor < w[1].cursor));

    let all = cluster.read(&a, 0, 64).await.unwrap();
    assert_eq!(all.pending, 0);
    assert_eq!(all.messages.len(), 5);
    for (i, m) in all.messages.iter().enumerate() {
        assert_eq!(m.seq, seqs_a[i].seq);
        assert_eq!(m.cursor, seqs_a[i].cursor);
        assert_eq!(m.payload, Bytes::from(format!("a-{i}")));
        assert_eq!(m.meta.message_id, 100 + i as u64);
        assert_eq!(u64::from(m.meta.priority), i as u64 % 2);
        // The receipt flag travels in the log (`Pike-Rcpt`).
        assert_eq!(m.meta.receipt, i == 3);
    }
    assert_eq!(all.last_cursor, seqs_a[4].cursor);
    assert!(all.messages[4].expired(1_000) && !all.messages[3].expired(u64::MAX));

    // Paging: 2 at a time, resuming after the last cursor.
    let page = cluster.read(&a, 0, 2).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(page.pending, 3);
    let rest = cluster.read(&a, page.last_cursor, 64).await.unwrap();
    assert_eq!(
        rest.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    // Up to date: nothing, cursor unchanged.
    let none = cluster.read(&a, seqs_a[4].cursor, 64).await.unwrap();
    assert!(none.messages.is_empty());
    assert_eq!(none.last_cursor, seqs_a[4].cursor);
    let tail = cluster.tail(&a).await.unwrap();
    assert_eq!((tail.seq, tail.cursor), (5, seqs_a[4].cursor));
    let empty = StreamKey::new("demo", "chat", "nobody").unwrap();
    assert_eq!(
        cluster.tail(&empty).await.unwrap(),
        pike_jetstream::Tail::default()
    );
    assert!(
        cluster
            .read(&empty, 0, 64)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // A foreign message on an alias subject (not written by this crate):
    // reads skip it but move past it; appends refuse with a clear error.
    let foreign = StreamKey::new("demo", "chat", "foreign").unwrap();
    let raw = async_nats::jetstream::new(async_nats::connect(nats.url(0)).await.unwrap());
    // A fresh cluster may not yet route the stream's subject from this
    // server ("no responders", reported as StreamNotFound): publish again
    // until the stream answers, for at most 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ack = loop {
        let answer = raw
            .publish(foreign.log_subject(), Bytes::from_static(b"not pike"))
            .await
            .unwrap()
            .await;
        match answer {
            Ok(ack) => break ack,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the stream did not answer yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the stream never answered a raw publish: {e}"),
        }
    };
    let skipped = cluster.read(&foreign, 0, 64).await.unwrap();
    assert!(skipped.messages.is_empty());
    assert_eq!(skipped.last_cursor, ack.sequence);
    let refused = cluster.append(&foreign, "f1", meta(1), Bytes::new()).await;
    assert!(matches!(refused, Err(Error::Failed(_))), "{refused:?}");
    // Another alias's messages never leak in.
    assert_eq!(read_all(&cluster, &b).await.len(), 3);
    // Over-long ids and payloads are refused, nothing stored.
    let too_big = Bytes::from(vec![0u8; pike_jetstream::MAX_PAYLOAD_BYTES + 1]);
    assert!(matches!(
        cluster.append(&a, "big", meta(0), too_big).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        cluster.append(&a, "", meta(0), Bytes::new()).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(read_all(&cluster, &a).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_msg_id_returns_the_first_outcome_and_stores_once() {
    let nats = NatsCluster::start().await;
    let gw1 = Cluster::connect(nats.config("gw1", vec![nats.url(0)]))
        .await
        .unwrap();
    let gw2 = Cluster::connect(nats.config("gw2", vec![nats.url(2)]))
        .await
        .unwrap();
    let key = StreamKey::new("demo", "chat", "u1").unwrap();
    let first = gw1
        .append(&key, "push-1", meta(1), Bytes::from_static(b"one"))
        .await
        .unwrap();
    let other = gw1
        .append(&key, "push-2", meta(2), Bytes::from_static(b"two"))
        .await
        .unwrap();
    // Retried through another node, with another payload: the first outcome.
    let again = gw2
        .append(&key, "push-1", meta(1), Bytes::from_static(b"changed"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.seq, again.cursor), (first.seq, first.cursor));
    assert_eq!(other.seq, 2);
    // The same msg id on another alias is another message.
    let key2 = StreamKey::new("demo", "chat", "u2").unwrap();
    let elsewhere = gw1
        .append(&key2, "push-1", meta(1), Bytes::from_static(b"u2"))
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    assert_eq!(elsewhere.seq, 1);
    let stored = read_all(&gw1, &key).await;
    assert_eq!(stored.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(stored[0].payload, Bytes::from_static(b"one"));
    // The next append continues after the duplicate.
    assert_eq!(
        gw2.append(&key, "push-3", meta(3), Bytes::new())
            .await
            .unwrap()
            .seq,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_alias_get_every_seq_once() {
    const PER_NODE: usize = 10;
    let nats = NatsCluster::start().await;
    // Three gateway nodes, one per server: appends race by compare-and-set.
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            Cluster::connect(nats.config(&format!("gw{i}"), vec![nats.url(i)]))
                .await
                .unwrap(),
        );
    }
    let key = Arc::new(StreamKey::new("demo", "chat", "hot").unwrap());
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..PER_NODE {
            let node = node.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("n{n}-t{t}");
                node.append(&key, &id, meta(0), Bytes::from(id.clone()))
                    .await
                    .map(|a| (id, a))
            }));
        }
    }
    let mut by_seq = BTreeMap::new();
    for task in tasks {
        let (id, appended) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("bounded")
            .expect("task")
            .expect("append");
        assert!(
            by_seq.insert(appended.seq, (id, appended.cursor)).is_none(),
            "seq {} twice",
            appended.seq
        );
    }
    let total = 3 * PER_NODE as u64;
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let stored = read_all(&nodes[0], &key).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for m in &stored {
        let (id, cursor) = &by_seq[&m.seq];
        assert_eq!((&m.payload, m.cursor), (&Bytes::from(id.clone()), *cursor));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_only_move_forward() {
    let nats = NatsCluster::start().await;
    let gw1 = Cluster::connect(nats.config("gw1", vec![nats.url(0)]))
        .await
        .unwrap();
    let gw2 = Cluster::connect(nats.config("gw2", vec![nats.url(1)]))
        .await
        .unwrap();
    let epoch = gw1.epoch();
    let device = LoginKey::new("demo", "chat", "u1", "phone 1").unwrap();
    assert_eq!(gw1.position(&device).await.unwrap(), None);
    let at = move |seq: u64| Position {
        epoch,
        seq,
        cursor: seq * 10,
    };
    assert_eq!(gw1.ack(&device, at(5)).await.unwrap(), AckOutcome::Moved);
    assert_eq!(gw2.ack(&device, at(3)).await.unwrap(), AckOutcome::Stale);
    assert_eq!(gw2.ack(&device, at(5)).await.unwrap(), AckOutcome::Stale);
    let other_epoch = Position {
        epoch: epoch ^ 1,
        seq: 99,
        cursor: 990,
    };
    assert_eq!(
        gw2.ack(&device, other_epoch).await.unwrap(),
        AckOutcome::Stale
    );
    assert_eq!(gw2.position(&device).await.unwrap(), Some(at(5)));

    // Two nodes race forward on one key: odd seqs on one, even on the other.
    let mut tasks = Vec::new();
    for (parity, node) in [gw1.clone(), gw2.clone()].into_iter().enumerate() {
        let device = device.clone();
        tasks.push(tokio::spawn(async move {
            for seq in (6..=40u64).filter(|s| s % 2 == parity as u64) {
                node.ack(&device, at(seq)).await.expect("ack");
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("bounded")
            .expect("task");
    }
    assert_eq!(gw1.position(&device).await.unwrap(), Some(at(40)));
    assert_eq!(gw1.ack(&device, at(39)).await.unwrap(), AckOutcome::Stale);
    // Another device of the same alias is independent.
    let tablet = LoginKey::new("demo", "chat", "u1", "tablet").unwrap();
    assert_eq!(gw2.position(&tablet).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_claim_takeover_and_release() {
    let nats = NatsCluster::start().await;
    let gw_a = Cluster::connect(nats.config("gwA", vec![nats.url(0)]))
        .await
        .unwrap();
    let gw_b = Cluster::connect(nats.config("gwB", vec![nats.url(2)]))
        .await
        .unwrap();
    let mut control_a = gw_a.control().await.unwrap();
    let login = LoginKey::new("demo", "chat", "u1", "phone").unwrap();
    let holder = |node: &str, token: &str| Holder {
        node: node.into(),
        boot: 1,
        token: token.into(),
        since_ms: 1_000,
    };
    let a = holder("gwA", "tok-a");
    let b = holder("gwB", "tok-b");
    assert_eq!(gw_a.claim(&login, &a).await.unwrap(), None);
    // Claiming again as the same connection refreshes, replaces nobody.
    assert_eq!(gw_a.claim(&login, &a).await.unwrap(), None);
    assert_eq!(gw_b.holder(&login).await.unwrap(), Some(a.clone()));
    // The device logs in on B: B takes over and tells A.
    let previous = gw_b.claim(&login, &b).await.unwrap();
    assert_eq!(previous, Some(a.clone()));
    let takeover = Bytes::from_static(b"takeover tok-a");
    // Interest in ctl.gwA may reach B's server a moment after A's flush:
    // resend until it arrives (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let received = loop {
        gw_b.send_control("gwA", takeover.clone()).await.unwrap();
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(200), control_a.next()).await
        {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "ctl.gwA never received the takeover"
        );
    };
    assert_eq!(received, takeover);
    // A's late release does not remove B's claim.
    assert!(!gw_a.release(&login, &a).await.unwrap());
    assert_eq!(gw_a.holder(&login).await.unwrap(), Some(b.clone()));
    assert!(gw_b.release(&login, &b).await.unwrap());
    assert_eq!(gw_a.holder(&login).await.unwrap(), None);
    // After a release the next claim replaces nobody.
    assert_eq!(gw_a.claim(&login, &a).await.unwrap(), None);
    // A claim nobody refreshes expires with its per-key TTL (1 s here).
    let mut short = nats.config("gwC", vec![nats.url(1)]);
    short.presence_ttl = Duration::from_secs(1);
    let gw_c = Cluster::connect(short).await.unwrap();
    let phone2 = LoginKey::new("demo", "chat", "u2", "phone").unwrap();
    let c = holder("gwC", "tok-c");
    assert_eq!(gw_c.claim(&phone2, &c).await.unwrap(), None);
    assert_eq!(gw_a.holder(&phone2).await.unwrap(), Some(c.clone()));
    let claimed = Instant::now();
    while gw_a.holder(&phone2).await.unwrap().is_some() {
        assert!(
            claimed.elapsed() < Duration::from_secs(10),
            "the claim never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        claimed.elapsed() >= Duration::from_millis(900),
        "expired early: {:?}",
        claimed.elapsed()
    );
    // An expired holder is not reported as replaced.
    assert_eq!(gw_a.claim(&phone2, &a).await.unwrap(), None);
    // Bad input is refused.
    let bad = holder("gw.A", "t");
    assert!(matches!(
        gw_a.claim(&login, &bad).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        gw_a.send_control("a b", Bytes::new()).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_republish_reaches_a_subscriber_on_another_nats_node() {
    let nats = NatsCluster::start().await;
    let reader = Cluster::connect(nats.config("gw1", vec![nats.url(0)]))
        .await
        .unwrap();
    let writer = Cluster::connect(nats.config("gw3", vec![nats.url(2)]))
        .await
        .unwrap();
    let key = StreamKey::new("demo", "chat", "chat:u42").unwrap();
    let mut live = reader.subscribe_live(&key).await.unwrap();
    // Wait (bounded) until the interest has reached every server: a
    // transient probe from a client on each server arrives.
    for i in 0..3 {
        let probe_node = Cluster::connect(nats.config(&format!("probe{i}"), vec![nats.url(i)]))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            probe_node
                .publish_transient(&key, meta(i as u64), Bytes::from_static(b"probe"))
                .await
                .unwrap();
            if let Ok(Some(LiveMessage::Transient { meta, .. })) =
                tokio::time::timeout(Duration::from_millis(200), live.next()).await
                && meta.message_id == i as u64
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "interest never reached server {i}"
            );
        }
    }
    // Drain leftover probes.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), live.next()).await {}

    let first = writer
        .append(&key, "p1", meta(11), Bytes::from_static(b"one"))
        .await
        .unwrap();
    let second = writer
        .append(&key, "p2", meta(12), Bytes::from_static(b"two"))
        .await
        .unwrap();
    writer
        .publish_transient(&key, meta(13), Bytes::from_static(b"now"))
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("live message within 5 s")
            .expect("stream open");
        got.push(next);
    }
    match &got[0] {
        LiveMessage::Stored {
            message,
            previous_cursor,
        } => {
            assert_eq!(
                (message.seq, message.cursor, *previous_cursor),
                (1, first.cursor, 0)
            );
            assert_eq!(message.payload, Bytes::from_static(b"one"));
            assert_eq!(message.meta.message_id, 11);
        }
        other => panic!("expected the stored message, got {other:?}"),
    }
    match &got[1] {
        LiveMessage::Stored {
            message,
            previous_cursor,
        } => {
            assert_eq!(
                (message.seq, message.cursor, *previous_cursor),
                (2, second.cursor, first.cursor)
            );
        }
        other => panic!("expected the stored message, got {other:?}"),
    }
    assert_eq!(
        got[2],
        LiveMessage::Transient {
            meta: meta(13),
            payload: Bytes::from_static(b"now"),
            origin: writer.node().to_owned(),
        }
    );
    // A duplicate append is not republished.
    writer
        .append(&key, "p1", meta(11), Bytes::from_static(b"one"))
        .await
        .unwrap();
    // A transient push that asked for receipts says so (`Pike-Rcpt`).
    let marker = MessageMeta {
        receipt: true,
        ..meta(14)
    };
    writer
        .publish_transient(&key, marker, Bytes::from_static(b"marker"))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(next, LiveMessage::Transient { meta, .. } if meta == marker),
        "{next:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_stream_leader_mid_appends_loses_no_acked_append() {
    const ALIASES: usize = 6;
    const PER_ALIAS: u64 = 40;
    let mut nats = NatsCluster::start().await;
    let gw = Cluster::connect(nats.config("gw1", nats.urls()))
        .await
        .unwrap();
    let leader = downlink_leader(&nats.url(0)).await;
    let victim = NatsCluster::index_of(&leader).expect("leader name");
    let keys: Vec<StreamKey> = (0..ALIASES)
        .map(|a| StreamKey::new("demo", "chat", &format!("k{a}")).unwrap())
        .collect();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut lanes = Vec::new();
    for key in keys.clone() {
        let gw = gw.clone();
        let acked = acked.clone();
        lanes.push(tokio::spawn(async move {
            let mut unavailable = 0;
            for i in 0..PER_ALIAS {
                let id = format!("{}-{i}", key.alias());
                // A publisher retries a 503 with the same idempotency key, as
                // the HTTP API's `Retry-After` asks, until its own deadline: a
                // leader election on a loaded CI machine has outlasted three
                // back-to-back tries of `append_timeout` (3 s) each.
                let mut appended = None;
                let give_up = Instant::now() + Duration::from_secs(60);
                while Instant::now() < give_up {
                    match gw.append(&key, &id, meta(i), Bytes::from(id.clone())).await {
                        Ok(a) => {
                            appended = Some(a);
                            break;
                        }
                        Err(Error::Unavailable(_)) => {
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("append {id}: {e}"),
                    }
                }
                let a =
                    appended.unwrap_or_else(|| panic!("append {id} still unavailable after 60 s"));
                acked.lock().unwrap().push((key.clone(), a.seq, id));
            }
            unavailable
        }));
    }
    // SIGKILL the stream leader once a third is acked (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < ALIASES * PER_ALIAS as usize / 3 {
        assert!(Instant::now() < deadline, "appends too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nats.kill(victim);
    let killed_at = acked.lock().unwrap().len();
    let mut unavailable = 0;
    for lane in lanes {
        unavailable += tokio::time::timeout(Duration::from_secs(120), lane)
            .await
            .expect("bounded")
            .expect("lane");
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), ALIASES * PER_ALIAS as usize);
    assert!(
        killed_at < acked.len(),
        "the kill happened before the last append"
    );
    // Every acked append is stored once, with its seq, dense 1..=PER_ALIAS.
    for key in &keys {
        let stored = read_all(&gw, key).await;
        assert_eq!(
            stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=PER_ALIAS).collect::<Vec<_>>(),
            "alias {}",
            key.alias()
        );
        for (k, seq, id) in acked.iter().filter(|(k, ..)| k == key) {
            let m = &stored[usize::try_from(*seq - 1).unwrap()];
            assert_eq!(
                m.payload,
                Bytes::from(id.clone()),
                "alias {} seq {seq}",
                k.alias()
            );
        }
        let ids: HashSet<_> = stored.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(ids.len(), PER_ALIAS as usize, "no payload stored twice");
    }
    eprintln!(
        "killed {leader} after {killed_at} acked appends; {unavailable} appends answered Unavailable and were retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_flips_to_unavailable_when_every_nats_node_dies() {
    let mut nats = NatsCluster::start().await;
    let gw = Cluster::connect(nats.config("gw1", nats.urls()))
        .await
        .unwrap();
    let key = StreamKey::new("demo", "chat", "u1").unwrap();
    gw.append(&key, "before", meta(1), Bytes::new())
        .await
        .unwrap();
    assert_eq!(gw.health(), Health::Ready);
    let killed = Instant::now();
    for i in 0..3 {
        nats.kill(i);
    }
    // async-nats notices within milliseconds (7-18 ms measured); bound: 5 s.
    let deadline = killed + Duration::from_secs(5);
    while gw.health() == Health::Ready {
        assert!(
            Instant::now() < deadline,
            "still Ready 5 s after every NATS node died"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flipped = killed.elapsed();
    // Every operation now fails at once instead of buffering.
    let started = Instant::now();
    let append = gw.append(&key, "during", meta(2), Bytes::new()).await;
    assert!(matches!(append, Err(Error::Unavailable(_))), "{append:?}");
    let transient = gw.publish_transient(&key, meta(3), Bytes::new()).await;
    assert!(
        matches!(transient, Err(Error::Unavailable(_))),
        "{transient:?}"
    );
    let login = LoginKey::of(key.clone(), "d").unwrap();
    assert!(matches!(
        gw.position(&login).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        gw.send_control("gw2", Bytes::new()).await,
        Err(Error::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once, not after a timeout"
    );
    eprintln!("health Unavailable {flipped:?} after the kill");

    // NATS comes back (same data): the node recovers by itself, the log and
    // its epoch survived, and appends continue the sequence.
    let epoch = gw.epoch();
    nats.restart_together(&[0, 1, 2]).await;
    let restarted = Instant::now();
    let appended = loop {
        match gw.append(&key, "after", meta(4), Bytes::new()).await {
            Ok(appended) => break appended,
            Err(Error::Unavailable(_)) => {
                assert!(
                    restarted.elapsed() < Duration::from_secs(60),
                    "no append 60 s after NATS came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append after the restart: {e}"),
        }
    };
    assert_eq!(gw.health(), Health::Ready);
    assert_eq!(appended.seq, 2, "the stored message survived the outage");
    let again = Cluster::connect(nats.config("gw2", nats.urls()))
        .await
        .unwrap();
    assert_eq!(again.epoch(), epoch, "same stream, same epoch");
    eprintln!(
        "appends work again {:?} after the restart",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_nats_fails_with_unavailable_in_bounded_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut config =
        pike_jetstream::ClusterConfig::new(vec![format!("nats://127.0.0.1:{port}")], "gw1");
    config.connect_timeout = Duration::from_secs(3);
    let started = Instant::now();
    let result = Cluster::connect(config).await;
    assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let none = pike_jetstream::ClusterConfig::new(Vec::new(), "gw1");
    assert!(matches!(
        Cluster::connect(none).await,
        Err(Error::Invalid(_))
    ));
    let mut small =
        pike_jetstream::ClusterConfig::new(vec![format!("nats://127.0.0.1:{port}")], "gw1");
    small.subscription_capacity = pike_jetstream::MAX_BATCH;
    assert!(matches!(
        Cluster::connect(small).await,
        Err(Error::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_unavailable_without_a_jetstream_quorum_and_recovers() {
    let mut nats = NatsCluster::start().await;
    let mut config = nats.config("gw1", vec![nats.url(0)]);
    config.probe_interval = Duration::from_millis(200);
    config.append_timeout = Duration::from_secs(3);
    let gw = Cluster::connect(config).await.unwrap();
    let key = StreamKey::new("demo", "chat", "u1").unwrap();
    gw.append(&key, "before", meta(1), Bytes::new())
        .await
        .unwrap();
    assert_eq!(gw.health(), Health::Ready);
    // Two of three servers die: still connected, but no quorum.
    let killed = Instant::now();
    nats.kill(1);
    nats.kill(2);
    let deadline = killed + Duration::from_secs(15);
    let reason = loop {
        match gw.health() {
            Health::Ready => {
                assert!(
                    Instant::now() < deadline,
                    "still Ready 15 s without a quorum"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Health::Unavailable(reason) => break reason,
        }
    };
    assert!(reason.contains("probe"), "{reason}");
    let append = gw.append(&key, "during", meta(2), Bytes::new()).await;
    assert!(matches!(append, Err(Error::Unavailable(_))), "{append:?}");
    eprintln!(
        "Unavailable {:?} after losing the quorum: {reason}",
        killed.elapsed()
    );
    // The quorum is back: Ready again by itself, appends continue.
    nats.restart_together(&[1, 2]).await;
    let back = Instant::now();
    while gw.health() != Health::Ready {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "not Ready 60 s after the quorum came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let appended = loop {
        match gw.append(&key, "after", meta(3), Bytes::new()).await {
            Ok(a) => break a,
            Err(Error::Unavailable(e)) => {
                assert!(Instant::now() < deadline, "no append 30 s after Ready: {e}");
            }
            Err(e) => panic!("{e}"),
        }
    };
    // "during" may or may not have been stored (its outcome was unknown);
    // either way the sequence stays dense.
    assert!(appended.seq == 2 || appended.seq == 3, "{appended:?}");
    let stored = read_all(&gw, &key).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=appended.seq).collect::<Vec<_>>()
    );
}
