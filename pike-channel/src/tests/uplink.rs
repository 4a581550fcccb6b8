//! Uplink: the send window, acks and failures, order and idempotency keys
//! kept across reconnects.

use proptest::prelude::*;
use proto::tunnel::ErrorCode;

use super::util::*;
use crate::frame_types::UPLINK;
use crate::{ClientConfig, Event, SendError, SendFailureReason, ServerConfig, StreamId};

fn outcomes(pair: &Pair) -> Vec<Event> {
    pair.events_where(|e| matches!(e, Event::SendSuccess { .. } | Event::SendFailure { .. }))
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn uplink_window_is_respected() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.send_window(4).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 2);
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let from = pair.time;
    let ids: Vec<_> = (0..50).map(|i| pair.send(chat, &format!("m{i}"))).collect();
    assert_eq!(pair.client.in_flight(chat), Some(4));
    assert_eq!(pair.client.pending_sends(chat), Some(50));
    assert_eq!(
        pair.sent_count(UPLINK, from, from + ms(1)),
        4,
        "only the window goes out at first"
    );
    let mut max_in_flight = 0;
    let ok = pair.run_until(secs(60), |p| {
        max_in_flight = max_in_flight.max(p.client.in_flight(chat).unwrap());
        p.client.pending_sends(chat) == Some(0)
    });
    assert!(ok);
    assert_eq!(max_in_flight, 4);
    // Outcomes in send order, each once.
    let succeeded: Vec<_> = outcomes(&pair)
        .into_iter()
        .map(|e| match e {
            Event::SendSuccess { id, seq, .. } => (id, seq),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<_> = ids.iter().copied().zip(1u64..).collect();
    assert_eq!(succeeded, expected);
    // One round trip per window: 50 / 4 windows of 40 ms.
    assert!(pair.time - from >= ms(13 * 40));
}

#[test]
fn window_of_one_is_the_naive_scheme() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.send_window(1).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 2);
    pair.latency = ms(100); // RTT 200 ms: the seed's 5 messages per second
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let from = pair.time;
    for i in 0..10 {
        pair.send(chat, &format!("m{i}"));
    }
    assert!(pair.run_until(secs(60), |p| p.client.pending_sends(chat) == Some(0)));
    assert_eq!(pair.time - from, ms(2000));
}

#[test]
fn uplink_order_and_keys_kept_across_reconnect() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.send_window(8).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 4);
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    for i in 0..30 {
        pair.send(chat, &format!("m{i}"));
    }
    // Window 2 (seq 9..16) reaches the server at +60 ms and is acked; the
    // acks are on the wire when the connection dies.
    pair.drive_for(ms(70));
    pair.kill_connection();
    pair.wait_disconnected();
    for i in 30..40 {
        pair.send(chat, &format!("m{i}")); // queued while down
    }
    pair.connect_and_login();
    assert!(pair.run_until(secs(60), |p| p.client.pending_sends(chat) == Some(0)));

    // The backend saw every message once, in order, seq strictly increasing.
    let backend: Vec<(u64, String)> = pair
        .gateway
        .backend
        .iter()
        .map(|(_, s, k)| (*s, k.clone()))
        .collect();
    let expected: Vec<(u64, String)> = (0..40).map(|i| (i + 1, format!("key-m{i}"))).collect();
    assert_eq!(backend, expected);
    assert_eq!(pair.gateway.backend_order_violations, 0);
    // The server machine saw resends only as the same (seq, key) again.
    let seen = &pair.gateway.uplinks_seen;
    assert!(seen.len() > 40, "some messages were resent");
    for (_, seq, key) in seen {
        assert_eq!(*key, format!("key-m{}", seq - 1));
    }
    // The application chose the keys: the client cannot know they were
    // never sent before (by an earlier process, say), so no transmission
    // claims to be a first attempt.
    assert!(!pair.gateway.first_attempts_seen.contains(&true));
    assert!(pair.client.stats().uplink_resent >= 8);
    // Exactly one outcome per send, all successes, in order.
    let seqs: Vec<u64> = outcomes(&pair)
        .into_iter()
        .map(|e| match e {
            Event::SendSuccess { seq, .. } => seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

/// Logs in, has `send` queue messages that reach the gateway unacked, then
/// cuts the connection and reconnects: every message is sent twice.
fn sent_then_resent(send: impl FnOnce(&mut Pair, StreamId)) -> Pair {
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.gateway.ack_uplink = false;
    send(&mut pair, chat);
    pair.flush();
    pair.drive_for(ms(100));
    pair.kill_connection();
    pair.wait_disconnected();
    pair.gateway.ack_uplink = true;
    pair.connect_and_login();
    pair.drive_for(secs(1));
    pair
}

#[test]
fn generated_idempotency_keys_are_unique_and_stable() {
    let _guard = subscribe();
    let pair = sent_then_resent(|pair, chat| {
        for _ in 0..3 {
            pair.client.send(chat, &b"x"[..], None, pair.time).unwrap();
        }
    });
    let seen = &pair.gateway.uplinks_seen;
    assert_eq!(seen.len(), 6);
    assert_eq!(
        seen[0..3].iter().map(|(_, _, k)| k).collect::<Vec<_>>(),
        seen[3..6].iter().map(|(_, _, k)| k).collect::<Vec<_>>()
    );
    assert_ne!(seen[0].2, seen[1].2);
    assert_eq!(pair.gateway.backend.len(), 3);
    // Generated keys: the first transmission of each says so (the gateway
    // may skip its dedup lookup); the resends after the reconnect do not.
    assert_eq!(
        pair.gateway.first_attempts_seen,
        [true, true, true, false, false, false]
    );
}

#[test]
fn a_key_vouched_new_is_a_first_attempt_once_and_a_chosen_key_never() {
    let _guard = subscribe();
    let pair = sent_then_resent(|pair, chat| {
        pair.client
            .send_new_key(chat, &b"x"[..], "mine-1".into(), pair.time)
            .unwrap();
        pair.client
            .send(chat, &b"y"[..], Some("mine-2".into()), pair.time)
            .unwrap();
    });
    let keys: Vec<&str> = pair
        .gateway
        .uplinks_seen
        .iter()
        .map(|(_, _, k)| k.as_str())
        .collect();
    assert_eq!(keys, ["mine-1", "mine-2", "mine-1", "mine-2"]);
    assert_eq!(
        pair.gateway.first_attempts_seen,
        [true, false, false, false]
    );
    assert_eq!(pair.gateway.backend.len(), 2);
}

#[test]
fn rejected_uplink_reports_failure() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.gateway.reject_uplink = Some(ErrorCode::BackendUnavailable);
    let id = pair.send(chat, "m");
    pair.drive_for(secs(1));
    assert_eq!(
        outcomes(&pair),
        [Event::SendFailure {
            stream: chat,
            id,
            seq: 1,
            reason: SendFailureReason::Rejected {
                code: ErrorCode::BackendUnavailable,
                message: "refused".into()
            },
        }]
    );
}

#[test]
fn send_fails_after_max_attempts() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.max_send_attempts(2).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 6);
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.gateway.ack_uplink = false;
    let id = pair.send(chat, "m");
    for _ in 0..2 {
        pair.drive_for(secs(1));
        pair.kill_connection();
        pair.wait_disconnected();
        pair.connect_and_login();
    }
    pair.drive_for(secs(1));
    assert_eq!(
        outcomes(&pair),
        [Event::SendFailure {
            stream: chat,
            id,
            seq: 1,
            reason: SendFailureReason::MaxAttempts { attempts: 2 }
        }]
    );
    assert_eq!(pair.gateway.uplinks_seen.len(), 2);
}

#[test]
fn send_checks_and_limits() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.max_queued_sends(2).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 6);
    let chat = pair.login("chat", "u1");
    // Sends before start are queued.
    pair.client.send(chat, &b"a"[..], None, pair.time).unwrap();
    pair.client.send(chat, &b"b"[..], None, pair.time).unwrap();
    assert_eq!(
        pair.client.send(chat, &b"c"[..], None, pair.time),
        Err(SendError::QueueFull {
            stream: chat,
            limit: 2
        })
    );
    let unknown = StreamId::new(99);
    assert_eq!(
        pair.client.send(unknown, &b"c"[..], None, pair.time),
        Err(SendError::UnknownStream(unknown))
    );
    pair.start();
    pair.connect_and_login();
    pair.drive_for(secs(1));
    assert_eq!(pair.gateway.backend.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random windows, latency and connection resets: the window is never
    /// exceeded, the backend sees each message once in send order, and each
    /// send gets exactly one outcome.
    #[test]
    fn uplink_window_and_order_invariants(
        seed in any::<u64>(),
        window in 1u32..20,
        latency_ms in 1u64..200,
        loss in 0.0f64..0.06,
        messages in 1usize..60,
    ) {
        let mut config = ClientConfig::default();
        config.send_window(window).unwrap();
        config.max_send_attempts(1000).unwrap();
        let mut pair = Pair::with_config(config, ServerConfig::default(), seed);
        pair.latency = ms(latency_ms);
        let chat = pair.login("chat", "u1");
        pair.start();
        pair.loss = loss;
        for i in 0..messages {
            pair.send(chat, &format!("m{i}"));
        }
        let mut max_in_flight = 0;
        let done = pair.run_until(secs(6 * 3600), |p| {
            max_in_flight = max_in_flight.max(p.client.in_flight(chat).unwrap_or(0));
            p.client.pending_sends(chat) == Some(0)
        });
        prop_assert!(done);
        prop_assert!(max_in_flight <= window);
        let seqs: Vec<u64> = pair.gateway.backend.iter().map(|(_, s, _)| *s).collect();
        prop_assert_eq!(seqs, (1..=messages as u64).collect::<Vec<_>>());
        let outcomes = outcomes(&pair);
        prop_assert_eq!(outcomes.len(), messages);
        let all_ok = outcomes.iter().all(|e| matches!(e, Event::SendSuccess { .. }));
        prop_assert!(all_ok);
    }
}
