//! Racing an endpoint list: staggered attempts, first success wins.

use std::{io, net::SocketAddr, pin::pin, time::Duration};

use futures_util::{StreamExt as _, stream::FuturesUnordered};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument as _;

use crate::{ConfigError, DialError, EndpointFailure, Transport};

/// Settings of a [`Dialer`].
///
/// Defaults and why:
/// - `stagger` **250 ms**, the Happy Eyeballs (RFC 8305) connection attempt delay: a healthy
///   first endpoint answers well within it on most networks, so usually one connection is
///   made, while a dead one costs only a quarter second.
/// - `timeout` **10 s** for the whole dial: long enough for a few SYN retransmissions on a
///   poor mobile link, short enough for the reconnect backoff to take over.
#[derive(Clone, Copy, Debug)]
pub struct DialerConfig {
    stagger: Duration,
    timeout: Duration,
}

impl DialerConfig {
    /// Delay between starting successive attempts while earlier ones are still pending. A
    /// failed attempt starts the next one at once. Zero starts every attempt together.
    pub fn stagger(&mut self, stagger: Duration) -> &mut Self {
        self.stagger = stagger;
        self
    }

    /// Limit on the whole dial, from the first attempt to a connection. Greater than zero.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }
}

impl Default for DialerConfig {
    fn default() -> Self {
        Self {
            stagger: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Connects to the first reachable endpoint of a list (Happy-Eyeballs style "probe racing").
///
/// Attempts start in list order. The next one starts when the stagger delay elapses or the
/// previous attempt fails, whichever comes first. The first connection wins and every other
/// attempt still running is cancelled (its future dropped, so a TCP connect closes its socket
/// and a QUIC handshake is abandoned). Order the list by preference, e.g. least-loaded
/// servers first as the server's IP list service returns them.
#[derive(Clone, Debug)]
pub struct Dialer<T> {
    transport: T,
    config: DialerConfig,
}

/// The connection a [`Dialer`] established.
#[derive(Debug)]
pub struct Dialed<C> {
    /// The connected stream.
    pub conn: C,
    /// The endpoint that answered.
    pub peer: SocketAddr,
    /// Its position in the endpoint list.
    pub index: usize,
}

impl<T: Transport> Dialer<T> {
    /// Builds a dialer over `transport`, validating `config`.
    pub fn new(transport: T, config: DialerConfig) -> Result<Self, ConfigError> {
        if config.timeout.is_zero() {
            return Err(ConfigError::OutOfBounds {
                name: "timeout",
                reason: "must be greater than zero",
            });
        }
        Ok(Self { transport, config })
    }

    /// The transport attempts are made with.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Races `endpoints` and returns the first connection.
    ///
    /// Fails with [`DialError::NoEndpoints`] for an empty list, [`DialError::AllFailed`] when
    /// every attempt failed, and [`DialError::TimedOut`] when the overall timeout elapsed first;
    /// both of the latter list what happened to every endpoint, in list order.
    pub async fn dial(&self, endpoints: &[SocketAddr]) -> Result<Dialed<T::Conn>, DialError> {
        let span = tracing::debug_span!("dial", endpoints = endpoints.len(), transport = T::NAME);
        self.race(endpoints).instrument(span).await
    }

    async fn race(&self, endpoints: &[SocketAddr]) -> Result<Dialed<T::Conn>, DialError> {
        if endpoints.is_empty() {
            return Err(DialError::NoEndpoints);
        }
        let deadline = Instant::now() + self.config.timeout;
        let mut timed_out = pin!(sleep_until(deadline));
        let mut failures: Vec<Option<io::Error>> = endpoints.iter().map(|_| None).collect();
        let mut attempts = FuturesUnordered::new();
        let mut started = 0;
        let mut next_start = pin!(sleep_until(Instant::now()));

        loop {
            // The stagger timer is only armed while endpoints remain to be tried.
            let more = started < endpoints.len();
            tokio::select! {
                biased;
                () = &mut timed_out => {
                    tracing::debug!(attempts = started, "dial timed out");
                    return Err(DialError::TimedOut {
                        timeout: self.config.timeout,
                        failures: collect_failures(endpoints, failures, started),
                    });
                }
                Some((index, addr, result)) = attempts.next(), if !attempts.is_empty() => {
                    match result {
                        Ok(conn) => {
                            tracing::debug!(peer.addr = %addr, index, "dial won");
                            return Ok(Dialed { conn, peer: addr, index });
                        }
                        Err(error) => {
                            tracing::debug!(peer.addr = %addr, index, %error, "dial attempt failed");
                            if let Some(slot) = failures.get_mut(index) {
                                *slot = Some(error);
                            }
                            if !more && attempts.is_empty() {
                                return Err(DialError::AllFailed {
                                    failures: collect_failures(endpoints, failures, started),
                                });
                            }
                            // Fail fast: the next endpoint starts now.
                            next_start.as_mut().reset(Instant::now());
                        }
                    }
                }
                () = &mut next_start, if more => {
                    let addr = endpoints[started];
                    let index = started;
                    let span = tracing::debug_span!("attempt", peer.addr = %addr, index);
                    let attempt = self.transport.connect(addr);
                    attempts.push(async move { (index, addr, attempt.await) }.instrument(span));
                    started += 1;
                    next_start.as_mut().reset(Instant::now() + self.config.stagger);
                }
            }
        }
    }
}

/// One failure per endpoint, in list order; attempts cut short by the timeout get a
/// `TimedOut` error saying whether they were running or never started.
fn collect_failures(
    endpoints: &[SocketAddr],
    failures: Vec<Option<io::Error>>,
    started: usize,
) -> Vec<EndpointFailure> {
    endpoints
        .iter()
        .zip(failures)
        .enumerate()
        .map(|(index, (&addr, error))| {
            let error = error.unwrap_or_else(|| {
                let what = if index < started {
                    "attempt cancelled by the overall dial timeout"
                } else {
                    "not attempted before the overall dial timeout"
                };
                io::Error::new(io::ErrorKind::TimedOut, what)
            });
            EndpointFailure { addr, error }
        })
        .collect()
}
