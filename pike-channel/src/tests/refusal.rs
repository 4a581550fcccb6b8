//! A server that refuses the handshake with a close frame carrying
//! reconnect advice (`OVERLOADED` over the connection limit): the client
//! waits the advised delay and dials the advised endpoints, instead of its
//! backoff.

use std::sync::Arc;
use std::time::Instant;

use proto::tunnel::{ErrorCode, ReconnectAdvice};

use super::util::*;
use crate::{ClientChannel, ClientConfig, ConnectionId, Event};

const OVERLOADED: ErrorCode = ErrorCode::Overloaded;

/// A started client and the id of its first dial.
fn dialing() -> (ClientChannel, ConnectionId, Instant) {
    let t = origin();
    let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 3);
    client.start(t);
    let id = next_dial(&mut client).0;
    (client, id, t)
}

/// The next dial the client asks for: its id and the advised endpoints.
fn next_dial(client: &mut ClientChannel) -> (ConnectionId, Vec<String>) {
    std::iter::from_fn(|| client.poll_event())
        .find_map(|e| match e {
            Event::Connect { id, endpoints } => Some((id, endpoints)),
            _ => None,
        })
        .expect("a dial")
}

#[test]
fn refusal_advice_sets_the_next_dial() {
    let _guard = subscribe();
    let (mut client, id, t) = dialing();
    let advice = ReconnectAdvice {
        min_delay_ms: 7_000,
        max_delay_ms: 7_000,
        endpoints: vec!["10.0.0.2:9300".into()],
    };
    client.handle_connect_refused(id, OVERLOADED, String::new(), Some(advice), t + ms(5));
    assert_eq!(client.reconnect_at(), Some(t + ms(5) + secs(7)));
    client.handle_timeout(t + ms(5) + secs(7));
    let (_, endpoints) = next_dial(&mut client);
    assert_eq!(endpoints, ["10.0.0.2:9300"]);
}

#[test]
fn a_refusal_without_advice_backs_off_like_a_failed_dial() {
    let _guard = subscribe();
    let (mut refused, id, t) = dialing();
    refused.handle_connect_refused(id, OVERLOADED, String::new(), None, t);
    let (mut failed, id, t2) = dialing();
    failed.handle_connect_failed(id, t2);
    assert_eq!(
        refused.reconnect_at().map(|at| at - t),
        failed.reconnect_at().map(|at| at - t2)
    );
    // A stale report (not the current dial) changes nothing.
    let before = refused.reconnect_at();
    let advice = ReconnectAdvice {
        min_delay_ms: 60_000,
        max_delay_ms: 60_000,
        endpoints: Vec::new(),
    };
    refused.handle_connect_refused(id, OVERLOADED, String::new(), Some(advice), t + ms(1));
    assert_eq!(refused.reconnect_at(), before);
}

/// Every event queued now.
fn drain(client: &mut ClientChannel) -> Vec<Event> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

#[test]
fn a_refusal_for_good_fails_every_login_and_stops_dialing() {
    let _guard = subscribe();
    let (mut client, id, t) = dialing();
    let chat = client.login(crate::LoginParams::new("chat", "u1", "c"), t);
    let order = client.login(crate::LoginParams::new("order", "u1", "c"), t);
    let send = client.send(chat, "queued", None, t).expect("queued");
    drain(&mut client);
    client.handle_connect_refused(
        id,
        ErrorCode::UnknownApp,
        "unknown app \"nope\"".into(),
        None,
        t + ms(5),
    );
    assert_eq!(client.state(), crate::ConnectionState::Closed);
    assert_eq!(client.reconnect_at(), None, "no reconnect is scheduled");
    assert_eq!(client.poll_timeout(), None, "no timer at all");
    let events = drain(&mut client);
    let failed = |stream| Event::LoginFailed {
        stream,
        code: ErrorCode::UnknownApp,
        message: "unknown app \"nope\"".into(),
    };
    assert!(events.contains(&failed(chat)), "{events:?}");
    assert!(events.contains(&failed(order)), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e,
            Event::SendFailure { id, reason: crate::SendFailureReason::LoginGone, .. } if *id == send)),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&Event::Refused {
            code: ErrorCode::UnknownApp,
            message: "unknown app \"nope\"".into()
        })
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Reconnecting { .. } | Event::Connect { .. })),
        "{events:?}"
    );
    // A new login (say, after fixing the configuration) dials again.
    client.login(crate::LoginParams::new("chat", "u1", "c"), t + secs(1));
    assert_eq!(client.state(), crate::ConnectionState::Connecting);
    next_dial(&mut client);
}

#[test]
fn each_final_code_stops_and_each_other_code_reconnects() {
    let _guard = subscribe();
    for code in [
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownApp,
        ErrorCode::AuthFailed,
        ErrorCode::TokenExpired,
        ErrorCode::InvalidArgument,
        // The same device logged in elsewhere (`docs/cluster.md`).
        ErrorCode::Replaced,
    ] {
        let (mut client, id, t) = dialing();
        client.handle_connect_refused(id, code, "no".into(), None, t);
        assert_eq!(client.state(), crate::ConnectionState::Closed, "{code:?}");
        assert_eq!(client.reconnect_at(), None, "{code:?}");
    }
    for code in [
        ErrorCode::Overloaded,
        // How the gateway kicks a session (`POST /v1/disconnect`).
        ErrorCode::Forbidden,
        ErrorCode::GoingAway,
        ErrorCode::Internal,
        ErrorCode::HandshakeTimeout,
    ] {
        let (mut client, id, t) = dialing();
        client.handle_connect_refused(id, code, "later".into(), None, t);
        assert_eq!(
            client.state(),
            crate::ConnectionState::Reconnecting,
            "{code:?}"
        );
        assert!(client.reconnect_at().is_some(), "{code:?}");
    }
}

#[test]
fn a_close_for_good_on_a_live_connection_ends_the_logins_too() {
    let _guard = subscribe();
    let (mut client, id, t) = dialing();
    let chat = client.login(crate::LoginParams::new("chat", "u1", "c"), t);
    client.handle_connected(id, &proto::tunnel::ServerHello::default(), t + ms(5));
    drain(&mut client);
    let close = tntunnel::Frame::close(ErrorCode::UnknownApp, "app \"demo\" was removed");
    client.handle_frame(close, t + ms(10));
    let events = drain(&mut client);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Disconnect { id: gone, .. } if *gone == id)),
        "the driver closes the socket: {events:?}"
    );
    assert!(
        events.contains(&Event::LoginFailed {
            stream: chat,
            code: ErrorCode::UnknownApp,
            message: "app \"demo\" was removed".into(),
        }),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(Event::Refused { .. })),
        "{events:?}"
    );
    assert_eq!(client.state(), crate::ConnectionState::Closed);
    assert_eq!(client.poll_timeout(), None);
}
