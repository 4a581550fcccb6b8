//! Reconnection: Fibonacci backoff with jitter, reset after a stable period,
//! spread reconnects after a mass disconnect, server advice, stop/restart.

use std::sync::Arc;
use std::time::Duration;

use proto::tunnel::{ErrorCode, ReconnectAdvice, ServerHello};

use super::util::*;
use crate::{ClientChannel, ClientConfig, ConnectionState, DisconnectReason, Event, SendError};

fn reconnect_delays(pair: &Pair) -> Vec<(u32, Duration)> {
    pair.events_where(|e| matches!(e, Event::Reconnecting { .. }))
        .into_iter()
        .map(|(_, e)| match e {
            Event::Reconnecting { attempt, delay } => (attempt, delay),
            _ => unreachable!(),
        })
        .collect()
}

/// `fib(n)`, 1-based: 1, 1, 2, 3, 5, ...
fn fib(n: u32) -> u64 {
    (1..n).fold((1u64, 1u64), |(a, b), _| (b, a + b)).0
}

/// The un-jittered delay after the `n`-th consecutive failure and the bounds
/// of its jittered value with the default backoff (base 1 s, cap 60 s,
/// jitter 0.5: `[d/2, min(3d/2, cap)]`).
fn fib_bounds(n: u32) -> (Duration, Duration, Duration) {
    let nominal = secs(fib(n).min(60));
    (nominal, nominal / 2, nominal.mul_f64(1.5).min(secs(60)))
}

#[test]
fn backoff_delays_follow_fibonacci_with_jitter() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.server_up = false;
    pair.start();
    let done = pair.run_until(secs(3600), |p| reconnect_delays(p).len() >= 14);
    assert!(done);
    let delays = reconnect_delays(&pair);
    let mut jittered = 0;
    for (i, (attempt, delay)) in delays.iter().enumerate() {
        let n = u32::try_from(i + 1).unwrap();
        assert_eq!(*attempt, n);
        let (nominal, low, high) = fib_bounds(n);
        assert!(
            *delay >= low && *delay <= high,
            "attempt {n}: {delay:?} not in [{low:?}, {high:?}]"
        );
        if delay.abs_diff(nominal) > nominal / 50 {
            jittered += 1;
        }
    }
    assert!(
        jittered >= 10,
        "delays must be jittered, {jittered} of {} were",
        delays.len()
    );
    // The dials really happen after each delay.
    let reconnecting: Vec<_> = pair.events_where(|e| matches!(e, Event::Reconnecting { .. }));
    let connects: Vec<_> = pair.events_where(|e| matches!(e, Event::Connect { .. }));
    for (i, (at, _)) in reconnecting.iter().enumerate().take(10) {
        assert_eq!(connects[i + 1].0 - *at, delays[i].1);
    }
}

#[test]
fn backoff_resets_after_stable_period() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.server_up = false;
    pair.start();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 4));
    pair.server_up = true;
    pair.connect_and_login();
    // Stable for longer than the 30 s stable period, then lost.
    pair.drive_for(secs(31));
    pair.server_up = false;
    pair.kill_connection();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 6));
    let delays = reconnect_delays(&pair);
    // First reconnect after a stable connection: the spread window.
    assert_eq!(delays[4].0, 1, "attempts count from 1 again");
    assert!(delays[4].1 <= secs(10));
    // Next failure: the Fibonacci sequence starts over.
    let (_, low, high) = fib_bounds(1);
    assert!(delays[5].1 >= low && delays[5].1 <= high, "{:?}", delays[5]);
}

#[test]
fn backoff_continues_when_the_connection_flaps() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.server_up = false;
    pair.start();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 4));
    pair.server_up = true;
    pair.connect_and_login();
    pair.drive_for(secs(5)); // shorter than the stable period
    pair.kill_connection();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 5));
    let (_, low, high) = fib_bounds(5);
    let delay = reconnect_delays(&pair)[4].1;
    assert!(
        delay >= low && delay <= high,
        "flapping keeps backing off: {delay:?}"
    );
}

#[test]
fn mass_disconnect_spreads_reconnects() {
    let _guard = subscribe();
    const CLIENTS: u64 = 10_000;
    let config = Arc::new(ClientConfig::default());
    let t0 = origin();
    let lost_at = t0 + secs(120);
    let mut buckets = [0u32; 11];
    let mut max_delay = Duration::ZERO;
    for seed in 0..CLIENTS {
        let mut client = ClientChannel::new(config.clone(), seed);
        client.start(t0);
        let id = loop {
            match client.poll_event() {
                Some(Event::Connect { id, .. }) => break id,
                Some(_) => {}
                None => panic!("no dial"),
            }
        };
        client.handle_connected(id, &ServerHello::default(), t0 + ms(50));
        while client.poll_event().is_some() {}
        // The server dies: every client learns at the same instant.
        client.handle_disconnected(id, DisconnectReason::Transport("reset".into()), lost_at);
        let delay = std::iter::from_fn(|| client.poll_event())
            .find_map(|e| match e {
                Event::Reconnecting { delay, .. } => Some(delay),
                _ => None,
            })
            .expect("a reconnect is scheduled");
        assert_eq!(client.reconnect_at(), Some(lost_at + delay));
        max_delay = max_delay.max(delay);
        buckets[usize::try_from(delay.as_secs()).unwrap()] += 1;
    }
    let spread = secs(10);
    assert!(max_delay <= spread);
    let limit = u32::try_from(CLIENTS * 15 / 100).unwrap();
    for (second, count) in buckets.iter().enumerate().take(10) {
        assert!(
            *count <= limit,
            "bucket {second}s holds {count} of {CLIENTS} reconnects"
        );
        assert!(
            *count >= u32::try_from(CLIENTS * 5 / 100).unwrap(),
            "bucket {second}s nearly empty: {count}"
        );
    }
}

/// The crash window every hello advises in the tests below, ms.
const WINDOW_MS: (u32, u32) = (5_000, 20_000);

/// Advises [`WINDOW_MS`] in every hello, logs in and stays connected past the
/// stable period.
fn connect_stably_with_window(pair: &mut Pair) {
    pair.hello_advice = Some(ReconnectAdvice {
        min_delay_ms: WINDOW_MS.0,
        max_delay_ms: WINDOW_MS.1,
        endpoints: vec![],
    });
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.drive_for(secs(40));
}

/// Whether `delay` was drawn in [`WINDOW_MS`].
fn in_window(delay: Duration) -> bool {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    delay >= ms(WINDOW_MS.0) && delay <= ms(WINDOW_MS.1)
}

#[test]
fn hello_advice_sets_the_reconnect_window() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    connect_stably_with_window(&mut pair);
    pair.kill_connection();
    assert!(pair.run_until(secs(5), |p| !reconnect_delays(p).is_empty()));
    let delay = reconnect_delays(&pair)[0].1;
    assert!(in_window(delay), "{delay:?}");
}

#[test]
fn dials_failing_after_a_crash_are_retried_in_the_advised_window_a_few_times() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    connect_stably_with_window(&mut pair);
    // The gateway dies and is not back when the first dials come.
    pair.server_up = false;
    pair.kill_connection();
    let retries = 3; // the default `crash_window_retries`
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == retries + 3));
    let delays = reconnect_delays(&pair);
    for (i, (_, delay)) in delays.iter().enumerate().take(retries + 1) {
        assert!(
            in_window(*delay),
            "the crash spread and its retries: attempt {} after {delay:?}",
            i + 1
        );
    }
    // Then the Fibonacci backoff from its first step.
    for (i, n) in [(retries + 1, 1), (retries + 2, 2)] {
        let (_, low, high) = fib_bounds(n);
        assert!(
            delays[i].1 >= low && delays[i].1 <= high,
            "attempt {}: {:?}",
            i + 1,
            delays[i]
        );
    }
}

#[test]
fn no_crash_window_retries_means_the_backoff_at_once() {
    let _guard = subscribe();
    let mut config = ClientConfig::default();
    config.crash_window_retries(0).unwrap();
    assert!(ClientConfig::default().crash_window_retries(11).is_err());
    let mut pair = Pair::with_config(config, crate::ServerConfig::default(), 7);
    connect_stably_with_window(&mut pair);
    pair.server_up = false;
    pair.kill_connection();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 2));
    let delays = reconnect_delays(&pair);
    assert!(in_window(delays[0].1));
    let (_, low, high) = fib_bounds(1);
    assert!(delays[1].1 >= low && delays[1].1 <= high, "{:?}", delays[1]);
}

#[test]
fn a_flapping_connection_does_not_reuse_the_crash_window() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    connect_stably_with_window(&mut pair);
    pair.kill_connection();
    assert!(pair.run_until(secs(5), |p| reconnect_delays(p).len() == 1));
    // Back in the window, up for less than the stable period, lost again
    // with the gateway down: the backoff, not the window.
    pair.connect_and_login();
    pair.drive_for(secs(2));
    pair.server_up = false;
    pair.kill_connection();
    assert!(pair.run_until(secs(600), |p| reconnect_delays(p).len() == 3));
    let delays = reconnect_delays(&pair);
    assert!(in_window(delays[0].1));
    for d in &delays[1..] {
        assert!(
            d.1 <= secs(3),
            "backoff after a flap, not the window: {d:?}"
        );
    }
}

#[test]
fn go_away_reconnects_after_advised_delay_to_advised_endpoints() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.drive_for(secs(3));
    let advice = ReconnectAdvice {
        min_delay_ms: 2_000,
        max_delay_ms: 4_000,
        endpoints: vec!["10.0.0.2:9300".into()],
    };
    let now = pair.time;
    pair.current_conn().unwrap().server.go_away(
        ErrorCode::GoingAway,
        "draining",
        Some(advice),
        now,
    );
    pair.flush();
    assert!(pair.run_until(secs(10), |p| !reconnect_delays(p).is_empty()));
    let delay = reconnect_delays(&pair)[0].1;
    assert!(delay >= secs(2) && delay <= secs(4), "{delay:?}");
    assert!(
        !pair
            .events_where(|e| matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::GoAway { .. }
                }
            ))
            .is_empty()
    );
    pair.connect_and_login();
    let endpoints: Vec<_> = pair
        .events_where(|e| matches!(e, Event::Connect { .. }))
        .into_iter()
        .map(|(_, e)| match e {
            Event::Connect { endpoints, .. } => endpoints,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(endpoints, vec![vec![], vec!["10.0.0.2:9300".to_owned()]]);
    assert!(pair.client.is_logged_in(chat));
    // The drained server saw the client leave and freed the connection.
    assert!(pair.closed_servers.iter().any(|(_, _, holds)| !holds));
}

#[test]
fn restart_after_stop() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    let chat = pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    pair.push("u1", "one");
    pair.drive_for(secs(1));

    pair.client.stop(pair.time);
    pair.flush();
    assert_eq!(pair.client.state(), ConnectionState::Closed);
    assert_eq!(
        pair.client.poll_timeout(),
        None,
        "a stopped channel holds no timers"
    );
    assert!(pair.events_where(|e| matches!(e, Event::Stopped)).len() == 1);
    assert_eq!(
        pair.client.send(chat, &b"x"[..], None, pair.time),
        Err(SendError::Stopped)
    );
    pair.drive_for(secs(600));
    assert_eq!(
        pair.client.stats().connect_attempts,
        1,
        "no reconnect while stopped"
    );
    assert!(
        pair.closed_servers.iter().any(|(_, e, _)| matches!(
            e,
            crate::ServerEvent::Closed {
                initiator: crate::CloseInitiator::Peer,
                ..
            }
        )),
        "the server got the client's close frame"
    );

    // Messages pushed while stopped arrive after the restart, once.
    pair.push("u1", "two");
    pair.client.start(pair.time);
    pair.flush();
    pair.connect_and_login();
    pair.drive_for(secs(1));
    let seqs: Vec<_> = pair.deliveries(chat).iter().map(|d| d.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(
        pair.gateway.logins.last().map(|l| l.2),
        Some(1),
        "re-login reports the position"
    );
}

#[test]
fn restart_drops_the_connection_and_dials_at_once() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.login("chat", "u1");
    pair.start();
    pair.connect_and_login();
    let before = pair.time;
    pair.client.restart(pair.time);
    pair.flush();
    assert!(
        !pair
            .events_where(|e| matches!(
                e,
                Event::Disconnect {
                    reason: DisconnectReason::Restart,
                    ..
                }
            ))
            .is_empty()
    );
    pair.connect_and_login();
    assert!(pair.time - before <= ms(200));
    assert_eq!(pair.client.stats().connections, 2);
}

#[test]
fn stale_dial_report_is_refused() {
    let _guard = subscribe();
    let mut client = ClientChannel::new(Arc::new(ClientConfig::default()), 9);
    let t0 = origin();
    client.start(t0);
    let first = std::iter::from_fn(|| client.poll_event())
        .find_map(|e| match e {
            Event::Connect { id, .. } => Some(id),
            _ => None,
        })
        .unwrap();
    client.stop(t0 + ms(1));
    client.start(t0 + ms(2));
    while client.poll_event().is_some() {}
    // The first dial completes late: the machine wants it closed.
    client.handle_connected(first, &ServerHello::default(), t0 + ms(3));
    assert_eq!(client.state(), ConnectionState::Connecting);
    let event = client.poll_event().unwrap();
    assert_eq!(
        event,
        Event::Disconnect {
            id: first,
            reason: DisconnectReason::Stale,
            close: None
        }
    );
}
