//! A client and a server channel machine driven by hand on a virtual clock,
//! with no runtime and no sockets: a login, a reliable downlink and its
//! coalesced ack, then ten idle minutes of heartbeats in microseconds.
//!
//! ```sh
//! cargo run -p pike-channel --example virtual_clock
//! ```
//!
//! Both machines are plain structs (quinn-proto style): frames go in with
//! `handle_frame(frame, now)`, out with `poll_transmit()`; timers are read
//! with `poll_timeout()` and fired with `handle_timeout(now)`. Here the
//! "network" is moving frames from one machine to the other, and time only
//! moves when we move it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pike_channel::proto::tunnel::{ClientHello, ServerHello};
use pike_channel::{
    ClientChannel, ClientConfig, Event, LoginParams, Push, ServerChannel, ServerConfig, ServerEvent,
};

/// Moves frames both ways until neither side has anything to send; returns
/// how many frames crossed.
fn exchange(client: &mut ClientChannel, server: &mut ServerChannel, now: Instant) -> usize {
    let mut crossed = 0;
    loop {
        let mut moved = false;
        while let Some(frame) = client.poll_transmit() {
            server.handle_frame(frame, now);
            (moved, crossed) = (true, crossed + 1);
        }
        while let Some(frame) = server.poll_transmit() {
            client.handle_frame(frame, now);
            (moved, crossed) = (true, crossed + 1);
        }
        if !moved {
            return crossed;
        }
    }
}

/// The earliest timer of either machine.
fn next_timer(client: &ClientChannel, server: &ServerChannel) -> Option<Instant> {
    [client.poll_timeout(), server.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The only read of the real clock: the origin of virtual time.
    #[allow(clippy::disallowed_methods)]
    let origin = Instant::now();
    let mut now = origin;

    // The client: one business login on a connection it does not have yet.
    let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 7);
    let chat = client.login(LoginParams::new("chat", "u42", "credential"), now);
    client.start(now);
    let dial = loop {
        match client.poll_event().ok_or("start asks to dial")? {
            Event::Connect { id, .. } => break id,
            _ => continue,
        }
    };

    // A driver would dial and run the tntunnel handshake here; the server
    // machine is made for the accepted connection, and its hello (with the
    // heartbeat parameters) is what the client gets.
    let server_config = Arc::new(ServerConfig::default());
    let token = "t-1".into();
    let mut hello = ServerHello {
        connection_token: token,
        ..Default::default()
    };
    server_config.fill_hello(&mut hello);
    let mut server = ServerChannel::new(server_config, ClientHello::default(), now);
    client.handle_connected(dial, &hello, now);

    // Login: the client's request reaches the server as an event; the
    // gateway (us) accepts it with a route id and pushes two messages.
    exchange(&mut client, &mut server, now);
    let Some(ServerEvent::LoginRequested { stream, alias, .. }) = server.poll_event() else {
        return Err("a login request".into());
    };
    println!("server: login of alias {alias:?}");
    server.accept_login(stream, "backend-1", 0, now)?;
    server.push(stream, 1, Push::new(&b"hello"[..]), now)?;
    server.push(stream, 2, Push::new(&b"world"[..]), now)?;
    exchange(&mut client, &mut server, now);

    let mut received = Vec::new();
    while let Some(event) = client.poll_event() {
        match event {
            Event::LoginOk { stream, .. } => println!("client: logged in: {}", stream == chat),
            Event::Received(delivery) => {
                println!("client: seq {} {:?}", delivery.seq, delivery.payload);
                received.push(delivery.seq);
            }
            _ => {}
        }
    }
    assert_eq!(received, [1, 2]);

    // The ack is coalesced: nothing leaves until the client's ack timer
    // fires; then one cumulative ack covers both messages.
    assert_eq!(client.poll_transmit(), None);
    now = client.poll_timeout().ok_or("an ack timer")?.max(now);
    client.handle_timeout(now);
    exchange(&mut client, &mut server, now);
    let acked = server.poll_event();
    assert_eq!(acked, Some(ServerEvent::Acked { stream, seq: 2 }));
    println!(
        "server: acked up to seq 2 after {:?} (virtual)",
        now - origin
    );

    // Ten idle minutes: jump from timer to timer. The client pings when the
    // link is quiet, the server answers, nobody times out.
    let end = now + Duration::from_secs(600);
    let mut frames = 0;
    while let Some(next) = next_timer(&client, &server).filter(|t| *t <= end) {
        now = next.max(now);
        client.handle_timeout(now);
        server.handle_timeout(now);
        frames += exchange(&mut client, &mut server, now);
    }
    let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
    let dropped = |e: &Event| matches!(e, Event::Disconnect { .. } | Event::Disconnected { .. });
    assert!(!events.iter().any(dropped), "{events:?}");
    assert!(!server.is_closed());
    let idle = now - origin;
    println!("after {idle:?} of virtual time: still connected, {frames} keep-alive frames");
    Ok(())
}
