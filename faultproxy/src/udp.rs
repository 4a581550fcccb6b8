//! The UDP side: one upstream socket per client address, datagrams through
//! two delay lines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::faults::Link;
use crate::handle::{Counters, Shared};
use crate::tcp::random_up_to;

/// Largest datagram carried.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams waiting out their latency, per direction; beyond, dropped.
const DELAY_LINE: usize = 4096;

/// One client address's upstream socket and the task reading from it.
struct Flow {
    socket: Arc<UdpSocket>,
    last_used: Instant,
    reader: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A datagram on its way: where it goes and when.
struct InFlight {
    release: Instant,
    payload: Bytes,
    to: Destination,
}

/// Where a delayed datagram is sent.
enum Destination {
    /// Through a flow's upstream socket (connected to the upstream).
    Upstream(Arc<UdpSocket>),
    /// Through the listening socket to a client.
    Client(SocketAddr),
}

/// Serves datagrams until the proxy is dropped.
pub(crate) async fn serve(
    listen: UdpSocket,
    upstream: SocketAddr,
    max_flows: usize,
    shared: Arc<Shared>,
) {
    let listen = Arc::new(listen);
    let mut rx = shared.state.subscribe();
    let (up_tx, up_rx) = mpsc::channel(DELAY_LINE);
    let (down_tx, down_rx) = mpsc::channel(DELAY_LINE);
    let _up_line = AbortOnDrop(tokio::spawn(delay_line(
        up_rx,
        listen.clone(),
        Link::Up,
        shared.clone(),
    )));
    let _down_line = AbortOnDrop(tokio::spawn(delay_line(
        down_rx,
        listen.clone(),
        Link::Down,
        shared.clone(),
    )));
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut rng = shared.rng(0);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut next_id = 0u64;
    loop {
        let (n, from) = tokio::select! {
            received = listen.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    // ICMP errors from earlier sends surface here; keep going.
                    tracing::debug!(%error, "udp receive");
                    continue;
                }
            },
            changed = rx.wait_for(|s| s.closed) => {
                let _ = changed;
                return;
            }
        };
        let counters = &shared.counters;
        if !flows.contains_key(&from) {
            if flows.len() >= max_flows {
                // Evict the flow idle the longest.
                if let Some(oldest) = flows
                    .iter()
                    .min_by_key(|(_, f)| f.last_used)
                    .map(|(a, _)| *a)
                {
                    flows.remove(&oldest);
                }
            }
            let socket = match UdpSocket::bind(unspecified_like(upstream)).await {
                Ok(socket) => socket,
                Err(error) => {
                    tracing::warn!(%error, "udp flow socket");
                    Counters::add(&counters.refused, 1);
                    continue;
                }
            };
            if socket.connect(upstream).await.is_err() {
                Counters::add(&counters.refused, 1);
                continue;
            }
            let socket = Arc::new(socket);
            next_id += 1;
            let reader = tokio::spawn(read_upstream(
                socket.clone(),
                from,
                down_tx.clone(),
                shared.clone(),
                next_id,
            ));
            Counters::add(&counters.connections, 1);
            flows.insert(
                from,
                Flow {
                    socket,
                    last_used: Instant::now(),
                    reader,
                },
            );
        }
        counters.active.store(flows.len() as u64, Ordering::Relaxed);
        let Some(flow) = flows.get_mut(&from) else {
            continue;
        };
        flow.last_used = Instant::now();
        let to = Destination::Upstream(flow.socket.clone());
        admit(&up_tx, &buf[..n], to, Link::Up, &shared, &mut rng);
    }
}

/// Reads one flow's upstream socket into the down delay line.
async fn read_upstream(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    down: mpsc::Sender<InFlight>,
    shared: Arc<Shared>,
    id: u64,
) {
    let mut rng = shared.rng(id);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => admit(
                &down,
                &buf[..n],
                Destination::Client(client),
                Link::Down,
                &shared,
                &mut rng,
            ),
            Err(error) => tracing::debug!(%error, "udp upstream receive"),
        }
    }
}

/// Drops the datagram (blackhole, drop rate, full line) or queues it with
/// its release time.
fn admit(
    line: &mpsc::Sender<InFlight>,
    payload: &[u8],
    to: Destination,
    link: Link,
    shared: &Shared,
    rng: &mut fastrand::Rng,
) {
    let i = link.index();
    let release = {
        let state = shared.state.borrow();
        let faults = state.link(link);
        let dropped = faults.blackhole || (faults.drop_rate > 0.0 && rng.f64() < faults.drop_rate);
        if dropped {
            Counters::add(&shared.counters.dropped[i], 1);
            return;
        }
        Instant::now() + faults.latency + random_up_to(rng, faults.jitter)
    };
    let item = InFlight {
        release,
        payload: Bytes::copy_from_slice(payload),
        to,
    };
    if line.try_send(item).is_err() {
        Counters::add(&shared.counters.dropped[i], 1);
    }
}

/// Sends queued datagrams when due, in order.
async fn delay_line(
    mut queue: mpsc::Receiver<InFlight>,
    listen: Arc<UdpSocket>,
    link: Link,
    shared: Arc<Shared>,
) {
    let mut last = Instant::now();
    while let Some(item) = queue.recv().await {
        last = last.max(item.release);
        tokio::time::sleep_until(last).await;
        let sent = match &item.to {
            Destination::Upstream(socket) => socket.send(&item.payload).await,
            Destination::Client(addr) => listen.send_to(&item.payload, *addr).await,
        };
        let i = link.index();
        match sent {
            Ok(n) => {
                Counters::add(&shared.counters.datagrams[i], 1);
                Counters::add(&shared.counters.bytes[i], n as u64);
            }
            Err(_) => Counters::add(&shared.counters.dropped[i], 1),
        }
    }
}

/// The unspecified address of `addr`'s family, port 0.
fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
