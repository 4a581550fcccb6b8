//! The drivers over in-memory pipes (`tokio::io::duplex`), with a scripted
//! peer on the other side: how connection ends are classified, that the
//! drivers' timers follow the machines' `poll_timeout` (paused clock), and
//! that a slow subscriber applies backpressure without losing anything.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pike_channel::proto::tunnel::{ClientHello, Close, ErrorCode, ServerHello};
use pike_channel::test_util::trace_init;
use pike_channel::tntunnel::{self, Frame, FrameType, FramedTunnel, TunnelConfig};
use pike_channel::{
    ClientConfig, ClientHandle, CloseInitiator, ConnectError, Connected, Connector,
    DisconnectReason, DriverConfig, Event, EventReceiver, LoginParams, Push, ServerChannel,
    ServerConfig, ServerEvent, serve_connection, spawn_client,
};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(30);

/// Dials by creating a pipe and handing its server end to the test.
struct PipeConnector {
    servers: mpsc::UnboundedSender<DuplexStream>,
}

impl Connector for PipeConnector {
    type Io = DuplexStream;

    fn connect(
        &self,
        _advised: &[String],
    ) -> impl Future<Output = Result<Connected<DuplexStream>, ConnectError>> + Send {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let handed = self.servers.send(server);
        async move {
            handed.map_err(|_| ConnectError::NoEndpoints)?;
            let hello = ClientHello {
                app_id: "demo".into(),
                device_id: "device-1".into(),
                ..ClientHello::default()
            };
            let (framed, hello) =
                tntunnel::connect(client, hello, &TunnelConfig::default()).await?;
            Ok(Connected::new(framed, hello))
        }
    }
}

/// A started client with one login, and the pipe ends of its dials.
fn client(
    config: DriverConfig,
) -> (
    ClientHandle,
    EventReceiver,
    mpsc::UnboundedReceiver<DuplexStream>,
) {
    let (servers, dials) = mpsc::unbounded_channel();
    let client = spawn_client(
        Arc::new(ClientConfig::default()),
        PipeConnector { servers },
        &config,
    );
    let (_chat, events) = client.login(LoginParams::new("chat", "u42", "secret"));
    client.start();
    (client, events, dials)
}

/// Runs the server side of the tunnel handshake on the next dial.
async fn accept(
    dials: &mut mpsc::UnboundedReceiver<DuplexStream>,
    hello: ServerHello,
) -> FramedTunnel<DuplexStream> {
    let io = dials.recv().await.expect("a dial");
    let incoming = tntunnel::accept(io, &TunnelConfig::default())
        .await
        .expect("client hello");
    incoming.accept(hello).await.expect("server hello sent")
}

async fn next_matching(events: &mut EventReceiver, pred: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            let event = events.recv().await.expect("subscription ended");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event in time")
}

fn is_disconnected(event: &Event) -> bool {
    matches!(event, Event::Disconnected { .. })
}

#[tokio::test(start_paused = true)]
async fn end_of_stream_at_a_frame_boundary_is_an_ordinary_disconnect() {
    let _trace = trace_init();
    let (_client, mut events, mut dials) = client(DriverConfig::default());
    let framed = accept(&mut dials, ServerHello::default()).await;
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    drop(framed);
    let Event::Disconnected { reason } = next_matching(&mut events, is_disconnected).await else {
        unreachable!()
    };
    assert!(
        matches!(reason, DisconnectReason::Transport(_)),
        "{reason:?}"
    );
    // And the client dials again.
    assert!(
        tokio::time::timeout(LIMIT, dials.recv())
            .await
            .unwrap()
            .is_some(),
        "reconnect dial"
    );
}

#[tokio::test]
async fn malformed_bytes_from_the_server_close_with_the_decoders_code() {
    let _trace = trace_init();
    let (_client, mut events, mut dials) = client(DriverConfig::default());
    let mut framed = accept(&mut dials, ServerHello::default()).await;
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    // Type 0x10 with the reserved bit (0x40) set, empty body.
    framed.get_mut().write_all(&[0x50, 0x00]).await.unwrap();
    let Event::Disconnected { reason } = next_matching(&mut events, is_disconnected).await else {
        unreachable!()
    };
    assert!(
        matches!(
            reason,
            DisconnectReason::ProtocolError {
                code: ErrorCode::MalformedFrame,
                ..
            }
        ),
        "{reason:?}"
    );
    // The client told the server why before closing.
    let close = tokio::time::timeout(LIMIT, async {
        while let Some(frame) = framed.next().await {
            let frame = frame.expect("valid frames from the client");
            if frame.ty == FrameType::CLOSE {
                return Some(frame.decode::<Close>().unwrap());
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("a close frame");
    assert_eq!(close.code(), ErrorCode::MalformedFrame);
}

#[tokio::test(start_paused = true)]
async fn silent_server_is_detected_by_the_heartbeat_timer() {
    let _trace = trace_init();
    let (_client, mut events, mut dials) = client(DriverConfig::default());
    let hello = ServerHello {
        heartbeat_interval_ms: 10_000,
        heartbeat_timeout_ms: 5_000,
        ..ServerHello::default()
    };
    let mut framed = accept(&mut dials, hello).await;
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    let connected_at = tokio::time::Instant::now();
    // The server reads everything and answers nothing.
    let reader = tokio::spawn(async move {
        let mut types = Vec::new();
        while let Some(Ok(frame)) = framed.next().await {
            types.push(frame.ty);
        }
        types
    });
    let Event::Disconnected { reason } = next_matching(&mut events, is_disconnected).await else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
    // Idle for the interval (10 s), then the ping's timeout (5 s).
    let elapsed = connected_at.elapsed();
    assert!(
        elapsed >= Duration::from_secs(15) && elapsed < Duration::from_millis(15_100),
        "{elapsed:?}"
    );
    let types = tokio::time::timeout(LIMIT, reader).await.unwrap().unwrap();
    assert_eq!(types.first(), Some(&FrameType::app(0x10)), "login first");
    assert!(types.contains(&FrameType::app(0x28)), "a ping: {types:?}");
}

#[tokio::test(start_paused = true)]
async fn server_driver_closes_an_idle_client_after_the_idle_timeout() {
    let _trace = trace_init();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let mut config = ServerConfig::default();
    config
        .heartbeat(Duration::from_secs(10), Duration::from_secs(5))
        .unwrap();
    let config = Arc::new(config);
    let server = tokio::spawn(async move {
        let incoming = tntunnel::accept(server_io, &TunnelConfig::default())
            .await
            .unwrap();
        let hello = incoming.hello().clone();
        let framed = incoming.accept(ServerHello::default()).await.unwrap();
        let channel = ServerChannel::new(config, hello, tokio::time::Instant::now().into_std());
        serve_connection(framed, channel, &DriverConfig::default())
    });
    let (mut framed, _) =
        tntunnel::connect(client_io, ClientHello::default(), &TunnelConfig::default())
            .await
            .unwrap();
    let (handle, mut events) = server.await.unwrap();
    let start = tokio::time::Instant::now();
    // The client never sends anything: the server closes after 10 + 5 + 10 s.
    let closed = tokio::time::timeout(LIMIT, events.recv())
        .await
        .unwrap()
        .expect("closed event");
    assert!(
        matches!(
            closed,
            ServerEvent::Closed {
                code: ErrorCode::IdleTimeout,
                initiator: CloseInitiator::Local,
                ..
            }
        ),
        "{closed:?}"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(25) && elapsed < Duration::from_millis(25_100),
        "{elapsed:?}"
    );
    let frame = tokio::time::timeout(LIMIT, framed.next())
        .await
        .unwrap()
        .expect("close frame")
        .unwrap();
    assert_eq!(frame.ty, FrameType::CLOSE);
    assert_eq!(
        frame.decode::<Close>().unwrap().code(),
        ErrorCode::IdleTimeout
    );
    assert!(framed.next().await.is_none(), "then end of stream");
    assert!(
        tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(handle.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_holds_back_reading_without_losing_anything() {
    let _trace = trace_init();
    let mut config = DriverConfig::default();
    config.event_capacity(2).unwrap();
    let (client, mut events, mut dials) = client(config);
    let framed = accept(&mut dials, ServerHello::default()).await;
    let channel = ServerChannel::new(
        Arc::new(ServerConfig::default()),
        ClientHello::default(),
        tokio::time::Instant::now().into_std(),
    );
    let (server, mut server_events) = serve_connection(framed, channel, &DriverConfig::default());
    let Some(ServerEvent::LoginRequested { stream, .. }) = server_events.recv().await else {
        panic!("login expected");
    };
    server.accept_login(stream, "route-1", 0).unwrap();
    for seq in 1..=100u64 {
        server
            .push(stream, seq, Push::new(format!("m{seq}")))
            .unwrap();
    }
    // Virtual time: let every task run until all are idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read_while_full = client.inspect(|c| c.stats().frames_received);
    assert!(
        read_while_full < 100,
        "the driver kept reading into a full subscriber: {read_while_full}"
    );
    let mut got = Vec::new();
    while got.len() < 100 {
        if let Event::Received(d) =
            next_matching(&mut events, |e| matches!(e, Event::Received(_))).await
        {
            got.push(d.seq);
        }
    }
    assert_eq!(got, (1..=100).collect::<Vec<_>>());
    assert!(client.inspect(|c| c.stats().frames_received) > 100);
    // The acks flow once the subscriber caught up.
    let acked = tokio::time::timeout(LIMIT, async {
        loop {
            match server_events.recv().await {
                Some(ServerEvent::Acked { seq: 100, .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(acked);
}

#[tokio::test]
async fn stop_sends_a_close_frame_and_start_dials_again() {
    let _trace = trace_init();
    let (client, mut events, mut dials) = client(DriverConfig::default());
    let mut framed = accept(&mut dials, ServerHello::default()).await;
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    client.stop();
    next_matching(&mut events, |e| matches!(e, Event::Stopped)).await;
    let mut types = Vec::new();
    while let Some(Ok(frame)) = tokio::time::timeout(LIMIT, framed.next()).await.unwrap() {
        types.push(frame.ty);
    }
    assert_eq!(types.last(), Some(&FrameType::CLOSE), "{types:?}");
    client.start();
    let mut framed = accept(&mut dials, ServerHello::default()).await;
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    // The login is sent again on the new connection.
    let first = tokio::time::timeout(LIMIT, framed.next()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().ty, FrameType::app(0x10));
    framed
        .send(Frame::close(ErrorCode::Unspecified, "bye"))
        .await
        .unwrap();
}
