//! The dialer's endpoint race: real TCP, plus stagger / cancel / timeout logic with a fake
//! transport under paused time.

mod common;

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::trace_init;
use tokio::time::Instant;
use tunnelkit::{DialError, Dialer, DialerConfig, Transport};

/// What the fake does when asked to connect to an address.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Connects after this long.
    Connect(Duration),
    /// Fails with this kind after this long.
    Fail(Duration, io::ErrorKind),
    /// Never completes.
    Hang,
}

/// What happened to each attempt, with times relative to the dial's start.
#[derive(Debug, Default)]
struct Log {
    started: Vec<(SocketAddr, Duration)>,
    cancelled: Vec<(SocketAddr, Duration)>,
    completed: Vec<SocketAddr>,
}

#[derive(Debug)]
struct FakeTransport {
    script: HashMap<SocketAddr, Script>,
    epoch: Instant,
    log: Arc<Mutex<Log>>,
}

impl FakeTransport {
    fn new(script: &[(SocketAddr, Script)]) -> (Self, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let transport = Self {
            script: script.iter().copied().collect(),
            epoch: Instant::now(),
            log: log.clone(),
        };
        (transport, log)
    }
}

/// Records the attempt as cancelled if it is dropped before completing.
struct DropProbe {
    addr: SocketAddr,
    epoch: Instant,
    log: Arc<Mutex<Log>>,
    completed: bool,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let mut log = self.log.lock().unwrap();
        if self.completed {
            log.completed.push(self.addr);
        } else {
            log.cancelled.push((self.addr, self.epoch.elapsed()));
        }
    }
}

impl Transport for FakeTransport {
    type Conn = tokio::io::DuplexStream;
    const NAME: &'static str = "fake";

    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Conn> {
        self.log
            .lock()
            .unwrap()
            .started
            .push((addr, self.epoch.elapsed()));
        let mut probe = DropProbe {
            addr,
            epoch: self.epoch,
            log: self.log.clone(),
            completed: false,
        };
        let script = self.script.get(&addr).copied().unwrap_or(Script::Hang);
        let result = match script {
            Script::Connect(after) => {
                tokio::time::sleep(after).await;
                Ok(tokio::io::duplex(64).0)
            }
            Script::Fail(after, kind) => {
                tokio::time::sleep(after).await;
                Err(io::Error::new(kind, "scripted failure"))
            }
            Script::Hang => std::future::pending().await,
        };
        probe.completed = true;
        result
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn dialer(transport: FakeTransport, stagger: Duration, timeout: Duration) -> Dialer<FakeTransport> {
    let mut config = DialerConfig::default();
    config.stagger(stagger).timeout(timeout);
    Dialer::new(transport, config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn staggered_attempts_first_success_wins_and_losers_are_cancelled() {
    let _trace = trace_init();
    // A would connect, but slowly; B starts after the stagger and wins; C never starts.
    let (transport, log) = FakeTransport::new(&[
        (addr(1), Script::Connect(ms(1000))),
        (addr(2), Script::Connect(ms(100))),
        (addr(3), Script::Connect(ms(10))),
    ]);
    let start = Instant::now();
    let dialed = dialer(transport, ms(250), ms(10_000))
        .dial(&[addr(1), addr(2), addr(3)])
        .await
        .unwrap();
    assert_eq!(dialed.peer, addr(2));
    assert_eq!(dialed.index, 1);
    assert_eq!(start.elapsed(), ms(350));

    let log = log.lock().unwrap();
    assert_eq!(log.started, [(addr(1), ms(0)), (addr(2), ms(250))]);
    assert_eq!(log.completed, [addr(2)]);
    // The loser was dropped when the winner returned, not left running.
    assert_eq!(log.cancelled, [(addr(1), ms(350))]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_starts_the_next_one_without_waiting_for_the_stagger() {
    let _trace = trace_init();
    let (transport, log) = FakeTransport::new(&[
        (
            addr(1),
            Script::Fail(ms(40), io::ErrorKind::ConnectionRefused),
        ),
        (addr(2), Script::Hang),
        (addr(3), Script::Connect(ms(30))),
    ]);
    let start = Instant::now();
    let dialed = dialer(transport, ms(250), ms(10_000))
        .dial(&[addr(1), addr(2), addr(3)])
        .await
        .unwrap();
    assert_eq!(dialed.peer, addr(3));
    // 2 starts when 1 fails (40 ms); 3 starts one stagger later (290 ms) and connects at 320.
    assert_eq!(start.elapsed(), ms(320));
    let log = log.lock().unwrap();
    assert_eq!(
        log.started,
        [(addr(1), ms(0)), (addr(2), ms(40)), (addr(3), ms(290))]
    );
    assert_eq!(log.cancelled, [(addr(2), ms(320))]);
}

#[tokio::test(start_paused = true)]
async fn zero_stagger_starts_every_attempt_at_once() {
    let _trace = trace_init();
    let (transport, log) = FakeTransport::new(&[
        (addr(1), Script::Connect(ms(300))),
        (addr(2), Script::Connect(ms(200))),
        (addr(3), Script::Connect(ms(100))),
    ]);
    let dialed = dialer(transport, Duration::ZERO, ms(10_000))
        .dial(&[addr(1), addr(2), addr(3)])
        .await
        .unwrap();
    assert_eq!(dialed.peer, addr(3));
    let log = log.lock().unwrap();
    assert!(log.started.iter().all(|(_, at)| *at == Duration::ZERO));
    assert_eq!(log.cancelled.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn overall_timeout_cancels_running_attempts_and_lists_every_endpoint() {
    let _trace = trace_init();
    let (transport, log) = FakeTransport::new(&[
        (addr(1), Script::Hang),
        (
            addr(2),
            Script::Fail(ms(10), io::ErrorKind::ConnectionReset),
        ),
        (addr(3), Script::Hang),
        (addr(4), Script::Hang),
    ]);
    let start = Instant::now();
    let err = dialer(transport, ms(250), ms(600))
        .dial(&[addr(1), addr(2), addr(3), addr(4)])
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), ms(600));
    let DialError::TimedOut { timeout, failures } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(*timeout, ms(600));
    let addrs: Vec<_> = failures.iter().map(|f| f.addr).collect();
    assert_eq!(addrs, [addr(1), addr(2), addr(3), addr(4)]);
    let kinds: Vec<_> = failures.iter().map(|f| f.kind()).collect();
    assert_eq!(
        kinds,
        [
            io::ErrorKind::TimedOut,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
            io::ErrorKind::TimedOut,
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("192.0.2.1:1: attempt cancelled"),
        "{message}"
    );
    assert!(
        message.contains("192.0.2.1:2: scripted failure"),
        "{message}"
    );

    // 1 at 0; 2 at 250 fails at 260, so 3 starts at once; 4 starts at 510.
    let log = log.lock().unwrap();
    assert_eq!(
        log.started,
        [
            (addr(1), ms(0)),
            (addr(2), ms(250)),
            (addr(3), ms(260)),
            (addr(4), ms(510)),
        ]
    );
    let mut cancelled: Vec<_> = log.cancelled.clone();
    cancelled.sort();
    assert_eq!(
        cancelled,
        [(addr(1), ms(600)), (addr(3), ms(600)), (addr(4), ms(600))]
    );
}

#[tokio::test(start_paused = true)]
async fn endpoints_not_reached_before_the_timeout_are_reported_as_not_attempted() {
    let _trace = trace_init();
    let (transport, _log) = FakeTransport::new(&[]);
    let err = dialer(transport, ms(250), ms(400))
        .dial(&[addr(1), addr(2), addr(3)])
        .await
        .unwrap_err();
    let failures = err.failures();
    assert_eq!(failures.len(), 3);
    assert!(failures[0].error.to_string().contains("cancelled"));
    assert!(failures[1].error.to_string().contains("cancelled"));
    assert!(failures[2].error.to_string().contains("not attempted"));
}

#[tokio::test(start_paused = true)]
async fn all_failing_endpoints_are_each_listed_in_order() {
    let _trace = trace_init();
    let (transport, log) = FakeTransport::new(&[
        (
            addr(1),
            Script::Fail(ms(30), io::ErrorKind::ConnectionRefused),
        ),
        (addr(2), Script::Fail(ms(5), io::ErrorKind::ConnectionReset)),
        (addr(3), Script::Fail(ms(1), io::ErrorKind::HostUnreachable)),
    ]);
    let start = Instant::now();
    let err = dialer(transport, ms(250), ms(10_000))
        .dial(&[addr(1), addr(2), addr(3)])
        .await
        .unwrap_err();
    // Each failure starts the next endpoint at once: 30 + 5 + 1 ms.
    assert_eq!(start.elapsed(), ms(36));
    let DialError::AllFailed { failures } = &err else {
        panic!("expected AllFailed, got {err:?}");
    };
    let got: Vec<_> = failures.iter().map(|f| (f.addr, f.kind())).collect();
    assert_eq!(
        got,
        [
            (addr(1), io::ErrorKind::ConnectionRefused),
            (addr(2), io::ErrorKind::ConnectionReset),
            (addr(3), io::ErrorKind::HostUnreachable),
        ]
    );
    assert!(
        err.to_string()
            .starts_with("all 3 endpoints failed: 192.0.2.1:1:")
    );
    assert!(log.lock().unwrap().cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_empty_endpoint_list_is_an_error() {
    let _trace = trace_init();
    let (transport, log) = FakeTransport::new(&[]);
    let err = dialer(transport, ms(250), ms(1000))
        .dial(&[])
        .await
        .unwrap_err();
    assert!(matches!(err, DialError::NoEndpoints));
    assert!(log.lock().unwrap().started.is_empty());
}

#[test]
fn zero_timeout_is_rejected() {
    let (transport, _log) = FakeTransport::new(&[]);
    let mut config = DialerConfig::default();
    config.timeout(Duration::ZERO);
    assert!(Dialer::new(transport, config).is_err());
}

#[cfg(feature = "tcp")]
#[tokio::test]
async fn tcp_refused_first_endpoint_falls_through_to_the_second() {
    use std::net::Ipv4Addr;

    use common::within;
    use tunnelkit::{Listener as _, TcpListener, TcpTransport};

    let _trace = trace_init();
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let closed = TcpListener::bind(loopback).unwrap().local_addr().unwrap();
    let mut live = TcpListener::bind(loopback).unwrap();
    let live_addr = live.local_addr().unwrap();

    // A long stagger: only the refusal can start the second attempt early.
    let mut config = DialerConfig::default();
    config.stagger(Duration::from_secs(5));
    let dialer = Dialer::new(TcpTransport::default(), config).unwrap();
    let start = Instant::now();
    let dialed = within("dial", dialer.dial(&[closed, live_addr]))
        .await
        .unwrap();
    assert_eq!(dialed.peer, live_addr);
    assert_eq!(dialed.index, 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let (_server_side, peer) = within("accept", live.accept()).await.unwrap();
    assert_eq!(peer, dialed.conn.local_addr().unwrap());

    let err = within("dial closed", dialer.dial(&[closed]))
        .await
        .unwrap_err();
    let DialError::AllFailed { failures } = err else {
        panic!("expected AllFailed");
    };
    assert_eq!(failures[0].addr, closed);
    assert_eq!(failures[0].kind(), io::ErrorKind::ConnectionRefused);
}
