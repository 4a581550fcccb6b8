//! A server that refuses the handshake with a close frame carrying
//! reconnect advice (`OVERLOADED` over the connection limit): the client
//! waits the advised delay and dials the advised endpoints, instead of its
//! backoff.

use std::sync::Arc;
use std::time::Instant;

use proto::tunnel::ReconnectAdvice;

use super::util::*;
use crate::{ClientChannel, ClientConfig, ConnectionId, Event};

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
    client.handle_connect_refused(id, Some(advice), t + ms(5));
    assert_eq!(client.reconnect_at(), Some(t + ms(5) + secs(7)));
    client.handle_timeout(t + ms(5) + secs(7));
    let (_, endpoints) = next_dial(&mut client);
    assert_eq!(endpoints, ["10.0.0.2:9300"]);
}

#[test]
fn a_refusal_without_advice_backs_off_like_a_failed_dial() {
    let _guard = subscribe();
    let (mut refused, id, t) = dialing();
    refused.handle_connect_refused(id, None, t);
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
    refused.handle_connect_refused(id, Some(advice), t + ms(1));
    assert_eq!(refused.reconnect_at(), before);
}
