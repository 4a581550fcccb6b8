//! Heartbeat: suppressed under two-way traffic, sent when idle, dead peers
//! found within interval + timeout, and on send without waiting for a timer.

use super::util::*;
use crate::frame_types::PING;
use crate::{ClientConfig, DisconnectReason, Event, ServerConfig};

fn heartbeat_timeouts(pair: &Pair) -> Vec<std::time::Instant> {
    pair.events_where(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout
            }
        )
    })
    .into_iter()
    .map(|(t, _)| t)
    .collect()
}

#[test]
fn heartbeat_suppressed_under_two_way_traffic() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let from = pair.time;
    // Ten minutes of a push every 5 s: the client acks each one, so both
    // directions carry data well within the 60 s interval.
    for i in 0..120 {
        pair.push("u1", &format!("m{i}"));
        pair.drive_for(secs(5));
    }
    assert_eq!(pair.deliveries(chat).len(), 120);
    assert_eq!(
        pair.sent_count(PING, from, pair.time),
        0,
        "no ping while data flows both ways"
    );
    assert_eq!(pair.client.stats().pings_sent, 0);
    assert_eq!(
        pair.client.stats().connections,
        1,
        "the connection stayed up"
    );
}

#[test]
fn heartbeat_sent_when_only_one_direction_flows() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let _chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let from = pair.time;
    // Transient pushes are never acked: only the downlink direction flows.
    for i in 0..60 {
        pair.push_transient("u1", &format!("t{i}"));
        pair.drive_for(secs(5));
    }
    let pings = pair.sent_count(PING, from, pair.time);
    assert!(
        (4..=5).contains(&pings),
        "uplink idle for 300 s must ping every 60 s, got {pings}"
    );
}

#[test]
fn heartbeat_sent_every_interval_when_idle() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let from = pair.time;
    pair.drive_for(secs(600));
    let pings: Vec<_> = pair
        .client_sent
        .iter()
        .filter(|(_, ty, _)| *ty == PING.code())
        .map(|(t, _, len)| {
            assert_eq!(*len, 2, "a heartbeat is 2 bytes on the wire");
            *t
        })
        .collect();
    assert!(
        (9..=10).contains(&pings.len()),
        "10 min idle at 60 s: got {} pings",
        pings.len()
    );
    assert!(pings[0] - from <= secs(60));
    for pair_of in pings.windows(2) {
        let gap = pair_of[1] - pair_of[0];
        assert!(
            gap >= secs(60) && gap <= secs(60) + ms(100),
            "ping gap {gap:?}"
        );
    }
    assert_eq!(pair.client.stats().pongs_received as usize, pings.len());
    assert!(heartbeat_timeouts(&pair).is_empty());
    assert_eq!(pair.client.stats().connections, 1);
    assert!(
        pair.closed_servers.is_empty(),
        "the server did not idle out a heartbeating client"
    );
}

#[test]
fn server_advertised_heartbeat_overrides_client_defaults() {
    let _guard = subscribe();
    let mut server = ServerConfig::default();
    server.heartbeat(secs(10), secs(4)).unwrap();
    let mut pair = Pair::with_config(ClientConfig::default(), server, 3);
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    assert_eq!(pair.client.heartbeat(), (secs(10), secs(4)));
    let from = pair.time;
    pair.drive_for(secs(100));
    let pings = pair.sent_count(PING, from, pair.time);
    assert!((9..=10).contains(&pings), "100 s idle at 10 s: got {pings}");
}

#[test]
fn dead_peer_detected_within_interval_plus_timeout() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.drive_for(secs(17));
    // Some traffic, then the path dies silently: sockets stay "established".
    pair.push("u1", "before");
    pair.drive_for(secs(1));
    let dead_at = pair.time;
    pair.blackhole = true;
    let found = pair.run_until(secs(300), |p| !heartbeat_timeouts(p).is_empty());
    assert!(found, "dead link never detected");
    let detected = heartbeat_timeouts(&pair)[0] - dead_at;
    let (interval, timeout) = pair.client.heartbeat();
    assert!(
        detected <= interval + timeout,
        "detected after {detected:?}"
    );
    assert!(detected >= timeout);
    // The driver was told to drop the dead connection.
    assert!(
        !pair
            .events_where(|e| matches!(
                e,
                Event::Disconnect {
                    reason: DisconnectReason::HeartbeatTimeout,
                    ..
                }
            ))
            .is_empty()
    );

    // The server, which hears nothing either, frees the connection after its
    // idle timeout (interval + timeout + slack).
    let idle = pair.run_until(secs(200), |p| !p.closed_servers.is_empty());
    assert!(idle);
    let (closed_at, event, holds) = &pair.closed_servers[0];
    assert!(matches!(
        event,
        crate::ServerEvent::Closed {
            code: proto::tunnel::ErrorCode::IdleTimeout,
            ..
        }
    ));
    assert!(*closed_at - dead_at <= ServerConfig::default().get_idle_timeout() + secs(1));
    assert!(!holds, "closed server machine holds no timers or streams");

    // The path heals: the client reconnects and resumes.
    pair.blackhole = false;
    pair.connect_and_login();
    pair.push("u1", "after");
    pair.drive_for(secs(1));
    let payloads: Vec<_> = pair
        .deliveries(chat)
        .iter()
        .map(|d| d.payload.clone())
        .collect();
    assert_eq!(
        payloads,
        ["before", "after"].map(|s| bytes::Bytes::from(s.as_bytes()))
    );
}

#[test]
fn send_detects_heartbeat_timeout_before_next_period() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.blackhole = true;
    let pinged = pair.run_until(secs(120), |p| p.client.stats().pings_sent == 1);
    assert!(pinged);
    let ping_at = pair.time;
    let (interval, timeout) = pair.client.heartbeat();
    // Jump past the ping's deadline without running the timer (an app
    // suspended, a late timer): the send itself notices the dead link.
    pair.time = ping_at + timeout + ms(1);
    assert_eq!(pair.client.state(), crate::ConnectionState::Connected);
    let events_before = pair.client_events.len();
    pair.client.send(chat, &b"hi"[..], None, pair.time).unwrap();
    pair.flush();
    let saw_disconnect = pair.client_events[events_before..].iter().any(|(t, e)| {
        *t == pair.time
            && matches!(
                e,
                Event::Disconnect {
                    reason: DisconnectReason::HeartbeatTimeout,
                    ..
                }
            )
    });
    assert!(saw_disconnect, "send must declare the link dead at once");
    assert_eq!(pair.client.state(), crate::ConnectionState::Reconnecting);
    assert!(
        pair.time < ping_at + interval,
        "found before the next heartbeat period"
    );

    // The message waits for the reconnect and is delivered once.
    pair.blackhole = false;
    pair.connect_and_login();
    pair.drive_for(secs(1));
    assert_eq!(pair.gateway.backend.len(), 1);
}
