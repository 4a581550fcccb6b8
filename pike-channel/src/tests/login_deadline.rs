//! The login deadline: a connection on which no business logs in is closed
//! after the login timeout, pings or not (virtual time).

use std::sync::Arc;
use std::time::Instant;

use proto::channel::{Login, Ping, Pong};
use proto::tunnel::{ClientHello, Close, ErrorCode};
use tntunnel::{Frame, FrameType};

use super::util::*;
use crate::{
    ClientConfig, CloseInitiator, ConnectionState, DisconnectReason, Event, Message, ServerChannel,
    ServerConfig, ServerEvent, StreamId,
};

fn machine(config: ServerConfig) -> (ServerChannel, Instant) {
    let t = origin();
    (
        ServerChannel::new(Arc::new(config), ClientHello::default(), t),
        t,
    )
}

fn frames(server: &mut ServerChannel) -> Vec<Frame> {
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

fn ping(server: &mut ServerChannel, nonce: u64, at: Instant) -> Vec<Frame> {
    server.handle_frame(Message::Ping(Ping { nonce }).to_frame(), at);
    frames(server)
}

fn login(server: &mut ServerChannel, stream: u32, at: Instant) -> StreamId {
    let login = Login {
        stream,
        biz: "chat".into(),
        alias: "u1".into(),
        ..Login::default()
    };
    server.handle_frame(Message::Login(login).to_frame(), at);
    StreamId::new(stream)
}

fn assert_login_timeout(server: &mut ServerChannel) {
    let out = frames(server);
    let close = out.last().expect("a close frame");
    assert_eq!(close.ty, FrameType::CLOSE);
    let close: Close = close.decode().unwrap();
    assert_eq!(close.code(), ErrorCode::IdleTimeout);
    assert!(close.message.contains("login timeout"), "{}", close.message);
    let closed = std::iter::from_fn(|| server.poll_event()).last();
    assert!(
        matches!(
            closed,
            Some(ServerEvent::Closed {
                code: ErrorCode::IdleTimeout,
                initiator: CloseInitiator::Local,
                ..
            })
        ),
        "{closed:?}"
    );
    assert!(server.is_closed());
    assert!(!server.holds_resources());
}

#[test]
fn a_connection_that_only_pings_is_closed_at_the_login_deadline() {
    let _guard = subscribe();
    let (mut server, t) = machine(ServerConfig::default());
    assert_eq!(server.poll_timeout(), Some(t + secs(30)));
    // Pings every 10 s are answered and keep the idle timer away, but they
    // do not move the login deadline.
    for (nonce, at) in [(1, 10), (2, 20), (3, 29)] {
        let out = ping(&mut server, nonce, t + secs(at));
        assert_eq!(out, [Message::Pong(Pong { nonce }).to_frame()]);
        assert_eq!(server.poll_timeout(), Some(t + secs(30)));
        server.handle_timeout(t + secs(at));
        assert!(!server.is_closed());
    }
    server.handle_timeout(t + secs(30));
    assert_login_timeout(&mut server);
}

#[test]
fn an_accepted_login_stops_the_deadline() {
    let _guard = subscribe();
    let (mut server, t) = machine(ServerConfig::default());
    let stream = login(&mut server, 1, t + secs(5));
    server.accept_login(stream, "r1", 0, t + secs(6)).unwrap();
    frames(&mut server);
    // Only the idle timer remains, pushed back by the login frame.
    let idle = ServerConfig::default().get_idle_timeout();
    assert_eq!(server.poll_timeout(), Some(t + secs(5) + idle));
    server.handle_timeout(t + secs(31));
    assert!(!server.is_closed());
}

#[test]
fn a_pending_or_refused_login_does_not_count() {
    let _guard = subscribe();
    // Still waiting for the gateway's answer at the deadline.
    let (mut server, t) = machine(ServerConfig::default());
    login(&mut server, 1, t + secs(1));
    server.handle_timeout(t + secs(30));
    assert_login_timeout(&mut server);

    // Refused before the deadline.
    let (mut server, t) = machine(ServerConfig::default());
    let stream = login(&mut server, 1, t + secs(1));
    server
        .reject_login(stream, ErrorCode::AuthFailed, "bad credential", t + secs(2))
        .unwrap();
    frames(&mut server);
    server.handle_timeout(t + secs(30));
    assert_login_timeout(&mut server);
}

#[test]
fn the_deadline_follows_the_config_and_can_be_turned_off() {
    let _guard = subscribe();
    let mut config = ServerConfig::default();
    config.login_timeout(Some(ms(500))).unwrap();
    let (mut server, t) = machine(config);
    assert_eq!(server.poll_timeout(), Some(t + ms(500)));
    server.handle_timeout(t + ms(499));
    assert!(!server.is_closed());
    server.handle_timeout(t + ms(500));
    assert_login_timeout(&mut server);

    let mut config = ServerConfig::default();
    config.login_timeout(None).unwrap();
    let (mut server, t) = machine(config);
    let idle = ServerConfig::default().get_idle_timeout();
    assert_eq!(server.poll_timeout(), Some(t + idle));
    for minute in 1..=60 {
        ping(&mut server, minute, t + secs(minute * 60));
        server.handle_timeout(t + secs(minute * 60));
    }
    assert!(!server.is_closed());
}

/// Client and server machines together: a client that connects, keeps its
/// heartbeat, but never logs a business in is disconnected by the server at
/// the deadline; one that logs in stays.
#[test]
fn a_client_without_a_login_is_disconnected_by_the_server() {
    let _guard = subscribe();
    let mut server = ServerConfig::default();
    server.heartbeat(secs(5), secs(5)).unwrap();
    // The client follows the advertised heartbeat: a ping every 5 s.
    let mut pair = Pair::with_config(ClientConfig::default(), server, 7);
    pair.start();
    let connected = pair.run_until(secs(10), |p| p.client.state() == ConnectionState::Connected);
    assert!(connected);
    let start = pair.time;
    let closed = pair.run_until(secs(60), |p| !p.closed_servers.is_empty());
    assert!(closed, "the server kept a connection without a login");
    let (at, event, holds) = &pair.closed_servers[0];
    assert!(matches!(
        event,
        ServerEvent::Closed {
            code: ErrorCode::IdleTimeout,
            ..
        }
    ));
    assert!(!holds);
    // At the deadline (30 s after the handshake, one latency before the
    // client saw it), despite the pings in between.
    let elapsed = at.saturating_duration_since(start);
    assert!(elapsed >= secs(29) && elapsed <= secs(31), "{elapsed:?}");
    assert!(
        pair.sent_count(crate::frame_types::PING, start, *at) >= 4,
        "the client was pinging"
    );
    let at = *at;
    pair.wait_disconnected();
    assert!(pair.time - at <= secs(1), "the client heard of it at once");
    assert!(
        !pair
            .events_where(|e| matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::ClosedByServer {
                        code: ErrorCode::IdleTimeout,
                        ..
                    }
                }
            ))
            .is_empty()
    );

    // With a login the connection stays.
    let mut pair = Pair::new();
    pair.start();
    pair.login("chat", "u1");
    pair.connect_and_login();
    pair.drive_for(secs(120));
    assert!(pair.closed_servers.is_empty());
    assert_eq!(pair.client.state(), ConnectionState::Connected);
}
