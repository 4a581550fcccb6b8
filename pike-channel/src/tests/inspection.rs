//! Channel inspection: a stuck channel is restarted, and N consecutive
//! send/receive timeouts force a restart.

use super::util::*;
use crate::{ClientConfig, ConnectionState, DisconnectReason, Event, ServerConfig};

#[test]
fn inspection_restarts_a_stuck_dial() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.hang_dials = 1; // the driver never reports on the first dial
    pair.start();
    let started = pair.time;
    assert!(pair.run_until(secs(300), |p| p.client.is_logged_in(chat)));
    let forced = pair.events_where(|e| {
        matches!(
            e,
            Event::Disconnect {
                reason: DisconnectReason::ConnectTimeout,
                ..
            }
        )
    });
    assert_eq!(forced.len(), 1);
    let waited = forced[0].0 - started;
    let (interval, _) = pair.client.heartbeat();
    // Found at the first inspection tick after the connect timeout.
    assert!(
        waited >= secs(30) && waited <= secs(30) + interval,
        "{waited:?}"
    );
    assert_eq!(pair.client.stats().forced_restarts, 1);
}

#[test]
fn inspection_restarts_a_channel_down_with_nothing_pending() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.server_up = false;
    pair.kill_connection();
    assert!(pair.run_until(secs(5), |p| p.client.state()
        == ConnectionState::Reconnecting));
    // A lost timer: down, not stopped, and nothing would ever reconnect.
    pair.client.lose_reconnect_timer_for_test();
    assert_eq!(pair.client.reconnect_at(), None);
    pair.server_up = true;
    let down_at = pair.time;
    assert!(pair.run_until(secs(300), |p| p.client.is_logged_in(chat)));
    let (interval, _) = pair.client.heartbeat();
    assert!(
        pair.time - down_at <= interval + secs(1),
        "restarted by the next inspection tick"
    );
    assert_eq!(pair.client.stats().forced_restarts, 1);
}

#[test]
fn consecutive_send_timeouts_force_a_restart() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    // The connection answers pings but the uplink path is stuck: no acks.
    pair.gateway.ack_uplink = false;
    let sent_at = pair.time;
    for i in 0..3 {
        pair.send(chat, &format!("m{i}"));
    }
    assert!(pair.run_until(secs(60), |p| {
        !p.events_where(|e| {
            matches!(
                e,
                Event::Disconnect {
                    reason: DisconnectReason::TooManyTimeouts,
                    ..
                }
            )
        })
        .is_empty()
    }));
    let restart_at = pair.time;
    assert!(
        restart_at - sent_at <= secs(10) + ms(1),
        "restart at the third timeout"
    );
    assert_eq!(pair.client.stats().send_timeouts, 3);
    assert_eq!(pair.client.stats().forced_restarts, 1);
    // No failure was reported for the timed-out messages: they are resent.
    pair.gateway.ack_uplink = true;
    pair.connect_and_login();
    pair.drive_for(secs(2));
    let successes = pair
        .events_where(|e| matches!(e, Event::SendSuccess { .. }))
        .len();
    assert_eq!(successes, 3);
    assert!(
        pair.events_where(|e| matches!(e, Event::SendFailure { .. }))
            .is_empty()
    );
    assert_eq!(pair.client.stats().uplink_resent, 3);
    assert_eq!(
        pair.gateway.backend.len(),
        3,
        "the backend saw each message once"
    );
    // The dial happened at once, without backoff.
    let connects = pair.events_where(|e| matches!(e, Event::Connect { .. }));
    assert_eq!(connects.last().unwrap().0, restart_at);
}

#[test]
fn fewer_timeouts_than_the_threshold_and_a_success_reset_the_count() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.max_consecutive_timeouts(3).unwrap();
    let mut pair = Pair::with_config(config, ServerConfig::default(), 5);
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.gateway.ack_uplink = false;
    pair.send(chat, "a");
    pair.send(chat, "b");
    pair.drive_for(secs(11));
    assert_eq!(pair.client.consecutive_timeouts(), 2);
    // Any pong (or uplink ack) resets the count.
    pair.drive_for(secs(60));
    assert_eq!(pair.client.consecutive_timeouts(), 0);
    pair.send(chat, "c");
    pair.send(chat, "d");
    pair.drive_for(secs(11));
    assert_eq!(pair.client.consecutive_timeouts(), 2);
    assert_eq!(pair.client.stats().forced_restarts, 0);
    assert_eq!(pair.client.stats().connections, 1);
}

#[test]
fn consecutive_heartbeat_timeouts_count_toward_a_forced_restart() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    // Dials succeed but then nothing ever comes back (a broken middlebox):
    // every connection dies of a heartbeat timeout.
    pair.blackhole = true;
    pair.dial_through_blackhole = true;
    let hit = pair.run_until(secs(3600), |p| p.client.stats().forced_restarts == 1);
    assert!(hit);
    assert_eq!(pair.client.stats().heartbeat_timeouts, 3);
    let forced = pair.events_where(|e| {
        matches!(
            e,
            Event::Disconnect {
                reason: DisconnectReason::TooManyTimeouts,
                ..
            }
        )
    });
    assert_eq!(forced.len(), 1);
    // The first two timeouts reconnected with backoff, the third forced an
    // immediate restart.
    let timeouts = pair.events_where(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::HeartbeatTimeout
            }
        )
    });
    assert_eq!(timeouts.len(), 2);
}
