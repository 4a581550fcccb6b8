//! Logins over the shared channel: results, sticky route id, failures,
//! logout, tags.

use proto::tunnel::ErrorCode;

use super::util::*;
use crate::{
    ClientConfig, ConnectionState, Event, LoginParams, SendError, SendFailureReason, ServerConfig,
    UnknownStream,
};

#[test]
fn login_ok_then_downlink_round_trip() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u42");
    pair.start();
    assert_eq!(pair.client.state(), ConnectionState::Connecting);
    // One step: the dial completes after a round trip.
    assert!(pair.step());
    assert_eq!(pair.time - origin(), ms(40));
    assert_eq!(pair.client.state(), ConnectionState::Connected);
    assert!(!pair.client.is_logged_in(chat));
    pair.connect_and_login();
    assert_eq!(pair.client.route_id(chat), Some("route-1"));
    pair.push("u42", "hello");
    pair.drive();
    let got: Vec<_> = pair
        .deliveries(chat)
        .iter()
        .map(|d| (d.seq, d.payload.clone()))
        .collect();
    assert_eq!(got, vec![(1, bytes::Bytes::from_static(b"hello"))]);
    assert_eq!(
        pair.gateway.acked.get("u42"),
        Some(&1),
        "the coalesced ack reached the gateway"
    );
    assert_eq!(
        pair.events_where(|e| matches!(e, Event::LoginOk { .. }))
            .len(),
        1
    );
}

#[test]
fn three_businesses_share_one_connection() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let a = pair.login("chat", "a");
    let b = pair.login("order", "b");
    pair.start();
    pair.connect_and_login();
    let c = pair.login("game", "c"); // added while connected
    pair.connect_and_login();
    assert_eq!((a.value(), b.value(), c.value()), (0, 1, 2));
    for alias in ["a", "b", "c", "a"] {
        pair.push(alias, &format!("to-{alias}"));
    }
    pair.drive();
    assert_eq!(pair.deliveries(a).len(), 2);
    assert_eq!(pair.deliveries(b).len(), 1);
    assert_eq!(pair.deliveries(c).len(), 1);
    assert_eq!(pair.client.stats().connections, 1);
}

#[test]
fn auth_failure_reports_login_failed_and_removes_the_login() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.reject = Some(ErrorCode::TokenExpired);
    let chat = pair.login("chat", "u1");
    let id = pair
        .client
        .send(chat, &b"queued"[..], None, pair.time)
        .unwrap();
    pair.start();
    assert!(pair.run_until(secs(10), |p| {
        !p.events_where(|e| matches!(e, Event::LoginFailed { .. }))
            .is_empty()
    }));
    let stream_events: Vec<Event> = pair
        .client_events
        .iter()
        .filter(|(_, e)| e.stream() == Some(chat))
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(
        stream_events,
        [
            Event::SendFailure {
                stream: chat,
                id,
                seq: 1,
                reason: SendFailureReason::LoginGone
            },
            Event::LoginFailed {
                stream: chat,
                code: ErrorCode::TokenExpired,
                message: "refused".into()
            },
        ]
    );
    assert_eq!(pair.client.streams().count(), 0);
    assert_eq!(
        pair.client.send(chat, &b"x"[..], None, pair.time),
        Err(SendError::UnknownStream(chat))
    );
    // A reconnect does not log it in again; the channel itself stays up.
    pair.kill_connection();
    pair.wait_disconnected();
    pair.connect_and_login();
    pair.drive();
    assert_eq!(pair.gateway.logins.len(), 1);
    assert_eq!(pair.client.state(), ConnectionState::Connected);
}

#[test]
fn transient_login_error_is_retried() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.reject = Some(ErrorCode::Overloaded);
    let chat = pair.login("chat", "u1");
    pair.start();
    assert!(pair.run_until(secs(10), |p| {
        !p.events_where(|e| matches!(e, Event::LoginRetry { .. }))
            .is_empty()
    }));
    let refused_at = pair.time;
    pair.gateway.reject = None;
    assert!(pair.run_until(secs(30), |p| p.client.is_logged_in(chat)));
    assert!(
        pair.time - refused_at >= secs(5),
        "retried after the login retry delay"
    );
    assert_eq!(pair.gateway.logins.len(), 2);
}

#[test]
fn route_id_is_sticky_across_relogin() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    assert_eq!(pair.client.route_id(chat), Some("route-1"));
    // The backend behind route-1 died: the gateway hands out route-2.
    pair.gateway.route_id = "route-2".into();
    pair.kill_connection();
    pair.wait_disconnected();
    pair.connect_and_login();
    let reported: Vec<_> = pair
        .gateway
        .logins
        .iter()
        .map(|(_, route, _)| route.as_str())
        .collect();
    assert_eq!(
        reported,
        ["", "route-1"],
        "the saved route id is reported on re-login"
    );
    assert_eq!(pair.client.route_id(chat), Some("route-2"));
    assert_eq!(
        pair.events_where(|e| matches!(e, Event::LoginOk { .. }))
            .last()
            .map(|(_, e)| e.clone()),
        Some(Event::LoginOk {
            stream: chat,
            route_id: "route-2".into(),
            epoch: 0,
            positions_reset: false,
        })
    );
}

#[test]
fn logout_fails_pending_sends_and_tells_the_server() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    let other = pair.login("chat", "u2");
    pair.start();
    pair.connect_and_login();
    pair.gateway.ack_uplink = false;
    let id = pair.send(chat, "pending");
    pair.client.logout(chat, pair.time).unwrap();
    pair.flush();
    assert_eq!(
        pair.client.logout(chat, pair.time),
        Err(UnknownStream(chat))
    );
    assert!(
        !pair
            .events_where(|e| *e
                == Event::SendFailure {
                    stream: chat,
                    id,
                    seq: 1,
                    reason: SendFailureReason::LoginGone
                })
            .is_empty()
    );
    // The failure comes first, then the end of the stream.
    let ends: Vec<_> = pair
        .events_where(|e| e.stream() == Some(chat))
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::SendFailure { .. } | Event::LoggedOut { .. }))
        .collect();
    assert!(
        matches!(
            ends.as_slice(),
            [Event::SendFailure { .. }, Event::LoggedOut { stream }] if *stream == chat
        ),
        "{ends:?}"
    );
    assert!(ends[1].ends_stream());
    pair.drive();
    // The other business is untouched; the server dropped the session.
    assert!(pair.client.is_logged_in(other));
    pair.push("u1", "after logout");
    pair.drive();
    assert!(pair.deliveries(chat).is_empty());
    let server_logged_in: Vec<_> = pair.current_conn().unwrap().server.logged_in().collect();
    assert_eq!(server_logged_in, [other]);
}

#[test]
fn tags_round_trip_and_survive_a_reconnect() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    // Requested before the login is active: sent once it is.
    let first = pair
        .client
        .update_tags(chat, vec!["vip".into()], vec![], pair.time)
        .unwrap();
    pair.start();
    pair.connect_and_login();
    // The request is on the wire when the connection dies: re-sent after
    // the re-login, answered once.
    pair.kill_connection();
    pair.wait_disconnected();
    assert!(
        pair.events_where(|e| matches!(e, Event::TagsResult { .. }))
            .is_empty()
    );
    pair.connect_and_login();
    pair.drive();
    let results = pair.events_where(|e| matches!(e, Event::TagsResult { .. }));
    assert_eq!(
        results.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        [Event::TagsResult {
            stream: chat,
            request_id: first,
            code: ErrorCode::Unspecified,
            message: String::new(),
            tags: vec!["vip".into()]
        }]
    );
}

#[test]
fn a_login_into_another_log_epoch_starts_its_position_afresh() {
    let _guard = subscribe();
    let mut server = ServerConfig::default();
    server.log_epoch(7);
    let mut pair = Pair::with_config(ClientConfig::default(), server, 1);
    pair.gateway.log_epoch = 7;
    for i in 1..=3 {
        pair.gateway_store_only("u1", &format!("m{i}"));
    }
    // A position saved under epoch 3: the log was recreated since.
    let params = LoginParams::new("chat", "u1", "cred:u1")
        .resume("", 5)
        .in_epoch(3);
    let chat = pair.client.login(params, pair.time);
    pair.start();
    pair.connect_and_login();
    pair.drive_for(secs(2));
    let seqs: Vec<u64> = pair.deliveries(chat).iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "sequence numbers of the new log are taken");
    assert_eq!(pair.gateway.logins.last().map(|l| l.2), Some(5));
    assert_eq!(pair.client.epoch(chat), Some(7));
    let oks: Vec<Event> = pair
        .events_where(|e| matches!(e, Event::LoginOk { .. }))
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert!(matches!(
        oks.as_slice(),
        [Event::LoginOk {
            epoch: 7,
            positions_reset: true,
            ..
        }]
    ));

    // Same epoch on the next connection: the position holds.
    pair.kill_connection();
    pair.wait_disconnected();
    pair.push("u1", "m4");
    pair.connect_and_login();
    pair.drive_for(secs(2));
    let seqs: Vec<u64> = pair.deliveries(chat).iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(pair.gateway.logins.last().map(|l| l.2), Some(3));
    assert!(matches!(
        pair.events_where(|e| matches!(e, Event::LoginOk { .. }))
            .last(),
        Some((
            _,
            Event::LoginOk {
                epoch: 7,
                positions_reset: false,
                ..
            }
        ))
    ));
}

#[test]
fn a_replaced_login_ends_alone_and_is_not_logged_in_again() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u42");
    let order = pair.login("order", "u7");
    pair.start();
    pair.connect_and_login();
    assert_eq!(pair.end_login("u42", ErrorCode::Replaced), 1);
    pair.drive();
    let failures = pair.events_where(|e| matches!(e, Event::LoginFailed { .. }));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        matches!(&failures[0].1, Event::LoginFailed { stream, code: ErrorCode::Replaced, .. } if *stream == chat),
        "{failures:?}"
    );
    assert_eq!(pair.gateway.ended.len(), 1);
    assert_eq!(
        (pair.gateway.ended[0].1.as_str(), pair.gateway.ended[0].2),
        ("u42", ErrorCode::Replaced)
    );
    // The connection and the other business go on; the replaced login is
    // not tried again.
    assert_eq!(pair.client.state(), ConnectionState::Connected);
    assert!(!pair.client.streams().any(|s| s == chat));
    assert!(pair.client.is_logged_in(order));
    pair.push("u7", "still here");
    pair.push("u42", "not here");
    let quiet = pair.run_until(secs(120), |p| p.gateway.logins.len() > 2);
    assert!(!quiet, "the replaced login was sent again");
    assert_eq!(pair.deliveries(order).len(), 1);
    assert!(pair.deliveries(chat).is_empty());
    assert_eq!(pair.conns.len(), 1, "no reconnect");
    // Ending a login that is gone does nothing.
    assert_eq!(pair.end_login("u42", ErrorCode::Replaced), 0);
}
