//! The room pull loop: re-pull right after data, re-pull after a silent long
//! poll, offset kept across reconnects, each offset delivered once.

use bytes::Bytes;

use super::util::*;
use crate::Event;
use crate::frame_types::ROOM_PULL;

fn room_payloads(pair: &Pair) -> Vec<(u64, Bytes)> {
    pair.events_where(|e| matches!(e, Event::RoomMessages { .. }))
        .into_iter()
        .flat_map(|(_, e)| match e {
            Event::RoomMessages { messages, .. } => messages
                .into_iter()
                .map(|m| (m.offset, m.payload))
                .collect::<Vec<_>>(),
            _ => unreachable!(),
        })
        .collect()
}

fn pull_times(pair: &Pair) -> Vec<std::time::Instant> {
    pair.client_sent
        .iter()
        .filter(|(_, ty, _)| *ty == ROOM_PULL.code())
        .map(|(t, _, _)| *t)
        .collect()
}

#[test]
fn room_pull_loop_repulls_right_after_data() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("live", "u1");
    pair.publish("r1", "old"); // before the join: not delivered (live tail)
    pair.start();
    pair.connect_and_login();
    pair.client.join_room(chat, "r1", None, pair.time).unwrap();
    pair.flush();
    pair.drive();
    assert!(
        !pair
            .events_where(|e| matches!(
                e,
                Event::RoomJoined {
                    head: 0,
                    tail: 1,
                    ..
                }
            ))
            .is_empty()
    );
    assert_eq!(
        pair.gateway.pulls.last().map(|(_, _, offset)| *offset),
        Some(1)
    );
    assert_eq!(pull_times(&pair).len(), 1, "the pull is held by the server");

    pair.publish("r1", "a");
    pair.publish("r1", "b");
    pair.drive();
    let batch_at = pair.events_where(|e| matches!(e, Event::RoomMessages { .. }))[0].0;
    let pulls = pull_times(&pair);
    assert_eq!(pulls.len(), 3, "one re-pull per batch");
    assert_eq!(pulls[1], batch_at, "re-pulled at once");
    assert_eq!(
        room_payloads(&pair),
        vec![(1, Bytes::from_static(b"a")), (2, Bytes::from_static(b"b"))]
    );
    assert_eq!(pair.client.room_offset(chat, "r1"), Some(3));
}

#[test]
fn room_repulls_after_a_silent_long_poll() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.answer_pulls = false; // the server never answers: long polls time out
    let chat = pair.login("live", "u1");
    pair.start();
    pair.connect_and_login();
    pair.client
        .join_room(chat, "r1", Some(0), pair.time)
        .unwrap();
    pair.flush();
    pair.drive_for(secs(120));
    let pulls = pull_times(&pair);
    assert_eq!(pulls.len(), 4, "a pull at join, then every wait + grace");
    for w in pulls.windows(2) {
        assert_eq!(w[1] - w[0], secs(35));
    }
    assert!(pair.gateway.pulls.iter().all(|(_, _, offset)| *offset == 0));
    assert_eq!(pair.client.stats().room_pull_timeouts, 3);
    // Data arrives: the next pull gets it.
    pair.publish("r1", "late");
    pair.gateway.answer_pulls = true;
    pair.drive_for(secs(40));
    assert_eq!(room_payloads(&pair), [(0, Bytes::from_static(b"late"))]);
}

#[test]
fn room_offset_kept_across_reconnect() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("live", "u1");
    pair.start();
    pair.connect_and_login();
    pair.client.join_room(chat, "r1", None, pair.time).unwrap();
    pair.flush();
    pair.drive();
    for i in 0..3 {
        pair.publish("r1", &format!("m{i}"));
    }
    pair.drive();
    assert_eq!(pair.client.room_offset(chat, "r1"), Some(3));
    pair.kill_connection();
    pair.wait_disconnected();
    for i in 3..5 {
        pair.publish("r1", &format!("m{i}")); // published while the client is away
    }
    pair.connect_and_login();
    pair.drive();
    // Rejoined, and pulled from the kept offset, not from the new tail.
    assert_eq!(
        pair.events_where(|e| matches!(e, Event::RoomJoined { .. }))
            .len(),
        2
    );
    let offsets: Vec<u64> = room_payloads(&pair).iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4], "every offset once, in order");
    assert_eq!(pair.client.room_offset(chat, "r1"), Some(5));
}

#[test]
fn leave_room_stops_pulling() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.answer_pulls = false;
    let chat = pair.login("live", "u1");
    pair.start();
    pair.connect_and_login();
    pair.client.join_room(chat, "r1", None, pair.time).unwrap();
    pair.flush();
    pair.drive();
    pair.client.leave_room(chat, "r1", pair.time).unwrap();
    pair.flush();
    let before = pull_times(&pair).len();
    pair.drive_for(secs(120));
    assert_eq!(pull_times(&pair).len(), before);
    assert_eq!(pair.client.room_offset(chat, "r1"), None);
}

/// A client driven by hand, logged in on one stream and joined to `live`
/// (tail 0).
fn joined_client() -> (crate::ClientChannel, crate::StreamId, std::time::Instant) {
    use std::sync::Arc;

    use proto::channel::{LoginResult, RoomJoinResult};
    use proto::tunnel::ServerHello;

    use crate::{ClientChannel, ClientConfig, LoginParams, Message};

    let t = origin();
    let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 3);
    let stream = client.login(LoginParams::new("chat", "u1", "c"), t);
    client.start(t);
    let id = client.connection_id().unwrap();
    client.handle_connected(id, &ServerHello::default(), t);
    let ok = LoginResult {
        stream: stream.value(),
        ..LoginResult::default()
    };
    client.handle_frame(Message::LoginResult(ok).to_frame(), t);
    client.join_room(stream, "live", None, t).unwrap();
    let joined = RoomJoinResult {
        stream: stream.value(),
        room: "live".into(),
        ..RoomJoinResult::default()
    };
    client.handle_frame(Message::RoomJoinResult(joined).to_frame(), t);
    while client.poll_event().is_some() {}
    while client.poll_transmit().is_some() {}
    (client, stream, t)
}

#[test]
fn a_batch_in_priority_order_delivers_each_offset_once_and_continues_after_the_highest() {
    use proto::channel::{RoomBatch, RoomMessage};

    use crate::Message;

    let _guard = subscribe();
    let (mut client, stream, t) = joined_client();
    let message = |offset: u64, priority: u32| RoomMessage {
        offset,
        priority,
        ..RoomMessage::default()
    };
    let batch = |messages: Vec<RoomMessage>, next_offset: u64| {
        Message::RoomBatch(RoomBatch {
            room: "live".into(),
            stream: stream.value(),
            pushed: true,
            messages,
            next_offset,
            ..RoomBatch::default()
        })
        .to_frame()
    };
    let delivered = |client: &mut crate::ClientChannel| -> Vec<u64> {
        std::iter::from_fn(|| client.poll_event())
            .flat_map(|e| match e {
                Event::RoomMessages { messages, .. } => {
                    messages.into_iter().map(|m| m.offset).collect()
                }
                _ => Vec::new(),
            })
            .collect()
    };
    // Priority first: offset 7 before 3; a broken server repeats 7 and
    // names a next offset below what it sent.
    client.handle_frame(
        batch(vec![message(7, 5), message(3, 0), message(7, 5)], 4),
        t,
    );
    assert_eq!(delivered(&mut client), vec![7, 3]);
    assert_eq!(client.room_offset(stream, "live"), Some(8));
    // Nothing below the offset comes again.
    client.handle_frame(
        batch(vec![message(3, 0), message(7, 0), message(8, 0)], 9),
        t,
    );
    assert_eq!(delivered(&mut client), vec![8]);
    // An offset at the very end of the space does not overflow.
    client.handle_frame(batch(vec![message(u64::MAX, 0)], 0), t);
    assert_eq!(delivered(&mut client), vec![u64::MAX]);
    assert_eq!(client.room_offset(stream, "live"), Some(u64::MAX));
}
