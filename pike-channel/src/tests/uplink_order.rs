//! The server machine's uplink numbering rule: per stream per connection,
//! a new message must be numbered above the highest accepted one; resends
//! of pending or remembered messages are not new.

use bytes::Bytes;
use proto::channel::{Uplink, UplinkAck};
use proto::tunnel::ErrorCode;

use super::server::{events, frames, logged_in};
use super::util::subscribe;
use crate::{Message, ServerChannel, ServerEvent, UplinkResult};

fn uplink(server: &mut ServerChannel, seq: u64, t: std::time::Instant) {
    let frame = Message::Uplink(Uplink {
        stream: 1,
        seq,
        idempotency_key: format!("k{seq}"),
        payload: Bytes::from_static(b"p"),
        first_attempt: false,
    })
    .to_frame();
    server.handle_frame(frame, t);
}

/// The seqs reported to the gateway.
fn reported(server: &mut ServerChannel) -> Vec<u64> {
    events(server)
        .into_iter()
        .map(|e| match e {
            ServerEvent::Uplink { seq, .. } => seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// The uplink acks sent, as (seq, code, message).
fn acks(server: &mut ServerChannel) -> Vec<(u64, ErrorCode, String)> {
    frames(server)
        .iter()
        .map(|f| {
            let ack: UplinkAck = f.decode().expect("an uplink ack");
            (ack.seq, ack.code(), ack.message)
        })
        .collect()
}

#[test]
fn a_seq_below_the_highest_accepted_is_refused_and_not_reported() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    uplink(&mut server, 5, t);
    assert_eq!(reported(&mut server), [5]);
    uplink(&mut server, 3, t);
    assert!(
        reported(&mut server).is_empty(),
        "3 never reaches the gateway"
    );
    assert_eq!(
        acks(&mut server),
        [(
            3,
            ErrorCode::InvalidArgument,
            "uplink seq 3 is not above 5, the highest accepted on this login; \
             uplink messages are delivered in seq order"
                .to_owned()
        )]
    );
    assert_eq!(server.stats().uplink_out_of_order, 1);
    assert!(!server.is_closed(), "the connection stays up");
}

#[test]
fn seq_zero_is_refused() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    uplink(&mut server, 0, t);
    assert!(reported(&mut server).is_empty());
    assert_eq!(
        acks(&mut server),
        [(
            0,
            ErrorCode::InvalidArgument,
            "uplink seq must be at least 1 (a login numbers its uplink messages 1, 2, 3, ...)"
                .to_owned()
        )]
    );
}

#[test]
fn gaps_in_the_numbering_are_allowed() {
    let _guard = subscribe();
    let (mut server, _, t) = logged_in();
    uplink(&mut server, 5, t);
    uplink(&mut server, 7, t);
    assert_eq!(reported(&mut server), [5, 7]);
    assert!(frames(&mut server).is_empty());
}

#[test]
fn resends_of_pending_and_remembered_messages_are_not_new() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    uplink(&mut server, 5, t);
    uplink(&mut server, 6, t);
    assert_eq!(reported(&mut server), [5, 6]);
    // 5 is pending: a resend is answered when it is done.
    uplink(&mut server, 5, t);
    assert!(reported(&mut server).is_empty());
    assert!(frames(&mut server).is_empty());
    server
        .ack_uplink(stream, 5, UplinkResult::accepted(), t)
        .unwrap();
    assert_eq!(
        acks(&mut server),
        [(5, ErrorCode::Unspecified, String::new())]
    );
    // 5's result is remembered: a resend is answered from memory.
    uplink(&mut server, 5, t);
    assert!(reported(&mut server).is_empty());
    assert_eq!(
        acks(&mut server),
        [(5, ErrorCode::Unspecified, String::new())]
    );
    assert_eq!(server.stats().uplink_duplicates, 2);
    assert_eq!(server.stats().uplink_out_of_order, 0);
}

#[test]
fn a_fresh_connection_may_start_anywhere() {
    let _guard = subscribe();
    // The previous connection accepted up to 9; this one starts with the
    // resend of 5 (after a re-login the client resends what was not acked).
    let (mut server, _, t) = logged_in();
    uplink(&mut server, 5, t);
    uplink(&mut server, 6, t);
    assert_eq!(reported(&mut server), [5, 6]);
    assert!(frames(&mut server).is_empty());
}

#[test]
fn refused_at_once_seqs_do_not_count() {
    let _guard = subscribe();
    let (mut server, stream, t) = logged_in();
    // An invalid idempotency key refuses seq 4 at once; 3 may still come.
    let bad = Message::Uplink(Uplink {
        stream: stream.value(),
        seq: 4,
        idempotency_key: String::new(),
        payload: Bytes::from_static(b"p"),
        first_attempt: false,
    })
    .to_frame();
    server.handle_frame(bad, t);
    let refused = acks(&mut server);
    assert_eq!(refused[0].1, ErrorCode::InvalidArgument);
    uplink(&mut server, 3, t);
    assert_eq!(reported(&mut server), [3]);
}
