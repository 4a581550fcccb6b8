//! The TCP side: an accept loop and, per connection, two one-way pumps.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::faults::{Link, State};
use crate::handle::{Counters, Shared};

/// Largest read from a source, and so the largest unsliced write.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction (the proxy buffers at
/// most `READ_CHUNK * IN_FLIGHT` bytes per direction of a connection).
const IN_FLIGHT: usize = 64;
/// How long dialing the upstream may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often rebinding the listener is tried after a refusal lifts.
const REBIND_ATTEMPTS: u32 = 50;

/// Accepts until the proxy is dropped.
pub(crate) async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    max_connections: u64,
    shared: Arc<Shared>,
) {
    let mut rx = shared.state.subscribe();
    let mut next_id = 0u64;
    loop {
        let (refuse, closed) = {
            let state = rx.borrow_and_update();
            (state.refuse, state.closed)
        };
        if closed {
            return;
        }
        if refuse {
            // Closing the listener makes connects fail with ECONNREFUSED
            // (and resets the ones queued in the backlog).
            listener = None;
            if rx.wait_for(|s| !s.refuse || s.closed).await.is_err() {
                return;
            }
            continue;
        }
        let Some(bound) = listener.as_ref() else {
            listener = rebind(addr).await;
            if listener.is_none() {
                tracing::error!(%addr, "cannot listen again; the proxy stops");
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = bound.accept() => {
                let Ok((client, peer)) = accepted else { continue };
                let counters = &shared.counters;
                if counters.active.load(std::sync::atomic::Ordering::Relaxed) >= max_connections {
                    Counters::add(&counters.refused, 1);
                    let _ = client.set_zero_linger();
                    continue;
                }
                next_id += 1;
                Counters::add(&counters.connections, 1);
                Counters::add(&counters.active, 1);
                tracing::debug!(id = next_id, %peer, "accepted");
                tokio::spawn(connection(client, upstream, next_id, shared.clone()));
            }
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Binds `addr` again, retrying for a bounded time (the old socket may take
/// a moment to be released).
async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..REBIND_ATTEMPTS {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Some(listener),
            Err(error) => tracing::debug!(%addr, %error, "rebind"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// How a connection ended.
enum End {
    /// Both directions reached EOF or were half-closed.
    Done,
    /// [`Action::Reset`](crate::Action::Reset).
    Reset,
    /// One side failed; the other is reset too.
    Failed(io::Error),
    /// The proxy was dropped.
    Closed,
}

/// Serves one accepted connection.
async fn connection(mut client: TcpStream, upstream: SocketAddr, id: u64, shared: Arc<Shared>) {
    let end = forward(&mut client, upstream, id, &shared).await;
    let counters = &shared.counters;
    match end {
        (End::Done | End::Closed, _) => {}
        (End::Reset, upstream) => {
            Counters::add(&counters.resets, 1);
            reset(&client, upstream.as_ref());
        }
        (End::Failed(error), upstream) => {
            tracing::debug!(id, %error, "connection failed");
            Counters::add(&counters.errors, 1);
            reset(&client, upstream.as_ref());
        }
    }
    counters
        .active
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sets `SO_LINGER` 0 so that dropping the sockets sends RST.
fn reset(client: &TcpStream, upstream: Option<&TcpStream>) {
    let _ = client.set_zero_linger();
    if let Some(upstream) = upstream {
        let _ = upstream.set_zero_linger();
    }
}

/// Dials and pumps until the connection ends; returns the upstream stream
/// (if dialed) so that the caller can reset it.
async fn forward(
    client: &mut TcpStream,
    upstream_addr: SocketAddr,
    id: u64,
    shared: &Shared,
) -> (End, Option<TcpStream>) {
    let mut rx = shared.state.subscribe();
    let start = rx.borrow_and_update().clone();
    let reset_or_closed = |s: &State| s.reset_epoch != start.reset_epoch || s.closed;
    let end_of = |s: &State| if s.closed { End::Closed } else { End::Reset };

    // Blackholed (either way): accepted, but not dialed until it lifts.
    let dial = async {
        let mut wait = rx.clone();
        let ready = wait
            .wait_for(|s| {
                reset_or_closed(s) || !(s.link(Link::Up).blackhole || s.link(Link::Down).blackhole)
            })
            .await
            .map(|s| reset_or_closed(&s));
        match ready {
            Ok(false) => {}
            Ok(true) | Err(_) => return Err(None),
        }
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(upstream_addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(Some(error)),
            Err(_) => Err(Some(io::ErrorKind::TimedOut.into())),
        }
    };
    let mut upstream = match dial.await {
        Ok(stream) => stream,
        Err(Some(error)) => return (End::Failed(error), None),
        Err(None) => return (end_of(&rx.borrow()), None),
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let end = {
        let (cr, cw) = client.split();
        let (ur, uw) = upstream.split();
        let up = pump(cr, uw, Link::Up, &start, shared, id);
        let down = pump(ur, cw, Link::Down, &start, shared, id);
        // Biased: a reset seen together with a heal wins, so bytes held by
        // a blackhole are dropped with the connection, never forwarded.
        tokio::select! {
            biased;
            state = rx.wait_for(reset_or_closed) => match state {
                Ok(state) => end_of(&state),
                Err(_) => End::Closed,
            },
            result = async { tokio::try_join!(up, down) } => match result {
                Ok(_) => End::Done,
                Err(error) => End::Failed(error),
            },
        }
    };
    (end, Some(upstream))
}

/// Moves bytes one way until EOF, a half-close of this way, or an error.
/// Ends by shutting down the destination's write side (EOF there).
async fn pump<R, W>(
    mut src: R,
    mut dst: W,
    link: Link,
    start: &State,
    shared: &Shared,
    id: u64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut rx = shared.state.subscribe();
    let epoch = start.half_close_epoch[link.index()];
    let salt = id.wrapping_mul(2).wrapping_add(link.index() as u64);
    let transfer = transfer(&mut src, &mut dst, link, rx.clone(), shared, salt);
    let half_closed = rx.wait_for(|s| s.half_close_epoch[link.index()] != epoch);
    tokio::select! {
        result = transfer => result?,
        _ = half_closed => tracing::debug!(id, ?link, "half-closed"),
    }
    dst.shutdown().await
}

/// Reads into a bounded queue of time-stamped chunks and writes them out
/// with the faults applied.
async fn transfer<R, W>(
    src: &mut R,
    dst: &mut W,
    link: Link,
    rx: watch::Receiver<State>,
    shared: &Shared,
    salt: u64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut queue) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = src.read(&mut buf).await?;
            if n == 0
                || tx
                    .send((Instant::now(), Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
            {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let write = async move {
        let mut rng = shared.rng(salt);
        let mut rx = rx;
        let mut last_release = Instant::now();
        let mut next_free = Instant::now();
        while let Some((read_at, chunk)) = queue.recv().await {
            let (latency, jitter) = {
                let state = rx.borrow();
                let faults = state.link(link);
                (faults.latency, faults.jitter)
            };
            let release = (read_at + latency + random_up_to(&mut rng, jitter)).max(last_release);
            last_release = release;
            tokio::time::sleep_until(release).await;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if rx.wait_for(|s| !s.link(link).blackhole).await.is_err() {
                    return Ok(());
                }
                let (slice, bandwidth) = {
                    let state = rx.borrow();
                    let faults = state.link(link);
                    (faults.slice, faults.bandwidth)
                };
                let mut n = slice.map_or(rest.len(), |s| s.get().min(rest.len()));
                if let Some(rate) = bandwidth {
                    // At most ~50 ms worth per write, so the rate is smooth.
                    n = n.min(usize::try_from(rate / 20).unwrap_or(usize::MAX).max(1));
                    next_free = next_free.max(Instant::now());
                    tokio::time::sleep_until(next_free).await;
                    next_free += Duration::from_secs_f64(n as f64 / rate as f64);
                }
                dst.write_all(&rest[..n]).await?;
                dst.flush().await?;
                shared.counters.wrote(link, n);
                rest = &rest[n..];
                if slice.is_some() {
                    // Let the reader see this slice before the next one.
                    tokio::task::yield_now().await;
                }
            }
        }
        Ok(())
    };
    // The write side ends when the read side ends (the queue closes) or
    // fails; a write error ends both.
    tokio::try_join!(read, write).map(|_| ())
}

/// A uniform random duration in `0..=max`.
pub(crate) fn random_up_to(rng: &mut fastrand::Rng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}
