//! Live-room benchmark (not a test): one room, one publisher at a fixed
//! rate through the HTTP API, N members on loopback. The gateway is the
//! real `pike-server` binary in its own process (pinned with `taskset` when
//! available) with a configuration written for the run; this process is
//! the load generator. Push mode, pull mode and no batching (every message
//! its own batch) are measured one after the other in one run.
//!
//! ```sh
//! cargo build --release -p pike-server --bin pike-server --example room_bench
//! taskset -c 1 target/release/examples/room_bench --members 10000 --rate 1000 --secs 30
//! ```
//!
//! Per mode it reports delivered messages per second (every member counts),
//! p50/p99/max publish-to-receive latency measured from the *scheduled*
//! send time stamped in each payload (an open-loop publisher: no
//! coordinated omission), the gateway's CPU over the measured window (from
//! `/proc/<pid>/stat`) and its RSS (`/proc/<pid>/status`), the generator's
//! own CPU (to tell a generator-bound run), and ratios against no batching.
//!
//! Members are lean protocol clients (hello, login, join, then the pull
//! loop or pushed batches, pings answered) so that the generator's cost per
//! message stays small; batches are scanned for the payload stamps without
//! decoding into structs. Several loopback source addresses (127.0.0.x)
//! keep clear of the ephemeral port range.

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use pike_channel::Message;
use pike_channel::proto::channel::{Login, Pong, RoomJoin, RoomPull};
use pike_channel::proto::tunnel::ClientHello;
use pike_server::token::{Claims, mint};
use tntunnel::{FramedTunnel, TunnelConfig};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunnelkit::{TcpConfig, TcpTransport, Transport};

type BoxError = Box<dyn Error + Send + Sync>;

const APP: &str = "bench";
const API_KEY: &str = "pk_bench_0123456789abcdef";
const SECRET: &str = "bench-secret-0123456789abcdef";
const ROOM: &str = "hall";
/// Digits of the stamp at the start of every payload (nanoseconds since
/// the generator's origin).
const STAMP: usize = 20;

#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
enum Mode {
    /// Batches pushed to every member.
    Push,
    /// Members pull by offset (long poll).
    Pull,
    /// Pushed, one message per batch.
    Nobatch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Pull => "pull",
            Self::Nobatch => "nobatch",
        }
    }
}

/// The live-room benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Room members (one connection each).
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Messages published per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Measured seconds per mode.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Seconds published before the measured window (not counted).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Payload bytes (at least 20: the stamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Modes, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "push,pull,nobatch"
    )]
    modes: Vec<Mode>,
    /// The `pike-server` binary (default: next to this example's directory).
    #[arg(long)]
    server: Option<PathBuf>,
    /// CPUs for the gateway (a `taskset -c` list; empty: not pinned).
    #[arg(long, default_value = "0")]
    server_cpus: String,
    /// Loopback source addresses (127.0.0.2 and up).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// The rooms' latency budget, milliseconds.
    #[arg(long, default_value_t = 50)]
    budget_ms: u64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Longest wait for the last messages after publishing ends, seconds.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Every n-th member records the latency of each message it receives
    /// (the others count messages by offset, to keep the generator light).
    #[arg(long, default_value_t = 10)]
    sample: usize,
}

/// What the members share.
struct Shared {
    origin: Instant,
    /// Stamps in `[from_ns, until_ns)` are measured.
    from_ns: AtomicU64,
    until_ns: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    /// Messages received, every member, any time.
    received: AtomicU64,
    missed: AtomicU64,
    frames: AtomicU64,
    errors: AtomicU64,
}

/// One mode's figures.
#[derive(Debug, Clone)]
struct Outcome {
    mode: Mode,
    /// Deliveries per second offered (members × rate).
    offered_per_sec: f64,
    /// Deliveries per second during the measured window.
    delivered_per_sec: f64,
    /// Share of every published message that reached every member by the
    /// end of the drain.
    complete: f64,
    missed: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_cpu: f64,
    generator_cpu: f64,
    rss_mb: f64,
    hwm_mb: f64,
    frames_per_sec: f64,
    batches: u64,
    encodes: u64,
    publish_failed: u64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    // One process-wide crypto provider (the HTTP client needs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    if args.size < STAMP {
        return Err(format!("--size must be at least {STAMP}").into());
    }
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|dir| dir.join("pike-server"))
            .ok_or("cannot find pike-server next to the example; pass --server")?,
    };
    if !server.exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p pike-server --bin pike-server",
            server.display()
        )
        .into());
    }
    eprintln!(
        "room_bench: {} members, {} msg/s of {} B, {} s (+{} s warm-up) per mode, gateway {} (cpus {:?})",
        args.members,
        args.rate,
        args.size,
        args.secs,
        args.warmup,
        server.display(),
        args.server_cpus
    );
    let mut outcomes = Vec::new();
    for &mode in &args.modes {
        let outcome = run_mode(&args, &server, mode).await?;
        println!("{}", json(&outcome));
        outcomes.push(outcome);
    }
    print_table(&args, &outcomes);
    Ok(())
}

async fn run_mode(args: &Args, server: &Path, mode: Mode) -> Result<Outcome, BoxError> {
    let dir = tempfile::tempdir()?;
    let tcp = free_port()?;
    let http = free_port()?;
    let config_path = dir.path().join("pike.toml");
    std::fs::write(&config_path, config(args, mode, dir.path(), tcp, http))?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let mut command = if args.server_cpus.is_empty() || !has_taskset() {
        std::process::Command::new(server)
    } else {
        let mut command = std::process::Command::new("taskset");
        command.args(["-c", &args.server_cpus]).arg(server);
        command
    };
    command
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    // taskset execs the gateway: the pid is the gateway's.
    let child = Gateway(command.spawn()?);
    let pid = child.0.id();
    let api = format!("http://{http}");
    let client = reqwest::Client::builder().no_proxy().build()?;
    wait_ready(&client, &api).await?;

    let outcome = measure(args, mode, pid, &client, &api, tcp).await;
    drop(child);
    if outcome.is_err() {
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        eprintln!("room_bench: gateway log:\n{log}");
    }
    outcome
}

/// The gateway process, killed when dropped.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn measure(
    args: &Args,
    mode: Mode,
    pid: u32,
    client: &reqwest::Client,
    api: &str,
    tcp: SocketAddr,
) -> Result<Outcome, BoxError> {
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        from_ns: AtomicU64::new(u64::MAX),
        until_ns: AtomicU64::new(u64::MAX),
        latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        received: AtomicU64::new(0),
        missed: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let stop = CancellationToken::new();

    // Members.
    let connect_start = Instant::now();
    let mut config = TcpConfig::default();
    config
        .source_ips((0..args.sources.max(1)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))));
    let transport = TcpTransport::new(config)?;
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut joins = Vec::with_capacity(args.members);
    let sample = args.sample.max(1);
    for i in 0..args.members {
        let permit = gate.clone().acquire_owned().await?;
        let transport = transport.clone();
        let token = mint(
            &Claims::new(APP, "live", &format!("m{i}"), now_s, 86_400),
            SECRET.as_bytes(),
        );
        let shared = shared.clone();
        let stop = stop.clone();
        joins.push(tokio::spawn(async move {
            let joined = connect_member(&transport, tcp, i, token).await;
            drop(permit);
            let (framed, tail) = joined?;
            let sampled = i % sample == 0;
            tokio::spawn(member_loop(
                framed,
                mode == Mode::Pull,
                sampled,
                tail,
                shared,
                stop,
            ));
            Ok::<_, BoxError>(())
        }));
    }
    for join in joins {
        join.await??;
    }
    eprintln!(
        "room_bench [{}]: {} members joined in {:.1} s",
        mode.name(),
        args.members,
        connect_start.elapsed().as_secs_f64()
    );

    // The publisher: open loop, stamped with the scheduled send time.
    let interval = Duration::from_secs(1) / args.rate.max(1);
    let total = u64::from(args.rate) * (args.warmup + args.secs);
    let start = Instant::now() + Duration::from_millis(200);
    let from = start + Duration::from_secs(args.warmup);
    let until = from + Duration::from_secs(args.secs);
    shared
        .from_ns
        .store(ns_since(shared.origin, from), Ordering::Relaxed);
    shared
        .until_ns
        .store(ns_since(shared.origin, until), Ordering::Relaxed);
    let failed = Arc::new(AtomicU64::new(0));
    let publisher = {
        let client = client.clone();
        let url = format!("{api}/v1/rooms/{ROOM}/publish");
        let shared = shared.clone();
        let failed = failed.clone();
        let size = args.size;
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(512));
            for i in 0..total {
                let at = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(at).await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let stamp = ns_since(shared.origin, at);
                let mut payload = format!("{stamp:0width$}", width = STAMP);
                payload.extend(std::iter::repeat_n('x', size - STAMP));
                let body = format!(r#"{{"payload":"{payload}"}}"#);
                let request = client
                    .post(&url)
                    .bearer_auth(API_KEY)
                    .header("content-type", "application/json")
                    .body(body);
                let failed = failed.clone();
                tokio::spawn(async move {
                    let ok = match request.send().await {
                        Ok(response) => response.status().is_success(),
                        Err(_) => false,
                    };
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        })
    };

    // The measured window: CPU of both processes between its ends.
    tokio::time::sleep_until(from).await;
    let server_cpu_from = cpu_ticks(&format!("/proc/{pid}/stat"))?;
    let generator_cpu_from = cpu_ticks("/proc/self/stat")?;
    let received_from = shared.received.load(Ordering::Relaxed);
    let frames_from = shared.frames.load(Ordering::Relaxed);
    tokio::time::sleep_until(until).await;
    let server_cpu = cpu_ticks(&format!("/proc/{pid}/stat"))? - server_cpu_from;
    let generator_cpu = cpu_ticks("/proc/self/stat")? - generator_cpu_from;
    let frames = shared.frames.load(Ordering::Relaxed) - frames_from;
    let in_window = shared.received.load(Ordering::Relaxed) - received_from;
    let (rss_mb, hwm_mb) = memory(pid)?;
    publisher.await?;

    // Drain: the messages still on their way.
    let expected = total * args.members as u64;
    let drain_until = Instant::now() + Duration::from_secs(args.drain);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats_body = client
        .get(format!("{api}/v1/rooms/{ROOM}"))
        .bearer_auth(API_KEY)
        .send()
        .await?
        .bytes()
        .await?;
    let stats: serde_json::Value = serde_json::from_slice(&stats_body).unwrap_or_default();
    stop.cancel();

    let received = shared.received.load(Ordering::Relaxed);
    let latency = shared
        .latency
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let ticks = clock_ticks();
    let secs = args.secs as f64;
    if shared.errors.load(Ordering::Relaxed) > 0 {
        eprintln!(
            "room_bench [{}]: {} member errors",
            mode.name(),
            shared.errors.load(Ordering::Relaxed)
        );
    }
    Ok(Outcome {
        mode,
        offered_per_sec: f64::from(args.rate) * args.members as f64,
        delivered_per_sec: in_window as f64 / secs,
        complete: received as f64 / expected.max(1) as f64,
        missed: shared.missed.load(Ordering::Relaxed),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: latency.max() as f64 / 1000.0,
        server_cpu: server_cpu as f64 / ticks / secs,
        generator_cpu: generator_cpu as f64 / ticks / secs,
        rss_mb,
        hwm_mb,
        frames_per_sec: frames as f64 / secs,
        batches: stats["batches"].as_u64().unwrap_or(0),
        encodes: stats["encodes"].as_u64().unwrap_or(0)
            + stats["catchup_encodes"].as_u64().unwrap_or(0),
        publish_failed: failed.load(Ordering::Relaxed),
    })
}

fn config(args: &Args, mode: Mode, dir: &Path, tcp: SocketAddr, http: SocketAddr) -> String {
    let (room_mode, max_batch) = match mode {
        Mode::Push => ("push", 100),
        Mode::Pull => ("pull", 100),
        Mode::Nobatch => ("push", 1),
    };
    format!(
        r#"data_dir = "{data}"

[listen]
tcp = "{tcp}"
tls = ""
quic = ""
http = "{http}"

[rooms.defaults]
mode = "{room_mode}"
max_batch_messages = {max_batch}
latency_budget_ms = {budget}
droppable_rate = 0
publisher_rate = 0
ring_capacity = 65536
ring_retention_secs = 120

[[apps]]
id = "{APP}"
api_key = "{API_KEY}"
token_secret = "{SECRET}"
"#,
        data = dir.join("data").display(),
        budget = args.budget_ms,
    )
}

/// Hello, login, join; returns the framed connection and the room's tail.
async fn connect_member(
    transport: &TcpTransport,
    addr: SocketAddr,
    i: usize,
    token: String,
) -> Result<(FramedTunnel<TcpStream>, u64), BoxError> {
    let stream = transport.connect(addr).await?;
    let hello = ClientHello {
        app_id: APP.into(),
        device_id: format!("bench-{i}"),
        sdk_name: "room_bench".into(),
        ..ClientHello::default()
    };
    let (mut framed, _) = tntunnel::connect(stream, hello, &TunnelConfig::default()).await?;
    let login = Login {
        stream: 0,
        biz: "live".into(),
        alias: format!("m{i}"),
        credential: token,
        ..Login::default()
    };
    framed.send(Message::Login(login).to_frame()).await?;
    loop {
        let frame = framed
            .next()
            .await
            .ok_or("closed before the login result")??;
        if let Message::LoginResult(result) = Message::decode(&frame)? {
            if result.code != 0 {
                return Err(format!("login refused: {}", result.message).into());
            }
            break;
        }
    }
    let join = RoomJoin {
        stream: 0,
        room: ROOM.into(),
    };
    framed.send(Message::RoomJoin(join).to_frame()).await?;
    loop {
        let frame = framed
            .next()
            .await
            .ok_or("closed before the join result")??;
        if let Message::RoomJoinResult(result) = Message::decode(&frame)? {
            if result.code != 0 {
                return Err(format!("join refused: {}", result.message).into());
            }
            return Ok((framed, result.tail));
        }
    }
}

fn pull_frame(offset: u64) -> tntunnel::Frame {
    Message::RoomPull(RoomPull {
        stream: 0,
        room: ROOM.into(),
        offset,
        max: 1000,
        wait_ms: 30_000,
    })
    .to_frame()
}

/// Reads batches until stopped: records each message's latency, and in
/// pull mode pulls again right after each batch (as the client SDK does).
async fn member_loop(
    mut framed: FramedTunnel<TcpStream>,
    pull: bool,
    sampled: bool,
    tail: u64,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    // The next offset this member expects: messages are counted by offset.
    let mut next = tail;
    // Every client pulls after its join (in push mode the gateway holds it).
    if framed.send(pull_frame(tail)).await.is_err() {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut stamps = Vec::with_capacity(128);
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => return,
            frame = framed.next() => frame,
        };
        let Some(Ok(frame)) = frame else {
            if !stop.is_cancelled() {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if frame.ty == pike_channel::frame_types::PING {
            if let Ok(Message::Ping(ping)) = Message::decode(&frame) {
                let _ = framed
                    .send(Message::Pong(Pong { nonce: ping.nonce }).to_frame())
                    .await;
            }
            continue;
        }
        if frame.ty != pike_channel::frame_types::ROOM_BATCH {
            continue;
        }
        let now = ns_since(shared.origin, Instant::now());
        stamps.clear();
        let Some(batch) = scan_batch(&frame.body, sampled, &mut stamps) else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shared.frames.fetch_add(1, Ordering::Relaxed);
        if batch.next_offset > next {
            let covered = batch.next_offset - next;
            shared
                .received
                .fetch_add(covered.saturating_sub(batch.missed), Ordering::Relaxed);
            next = batch.next_offset;
        }
        shared.missed.fetch_add(batch.missed, Ordering::Relaxed);
        if sampled {
            let (from, until) = (
                shared.from_ns.load(Ordering::Relaxed),
                shared.until_ns.load(Ordering::Relaxed),
            );
            let mut histogram = shared
                .latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for &stamp in &stamps {
                if stamp >= from && stamp < until {
                    let _ = histogram.record((now.saturating_sub(stamp) / 1000).max(1));
                }
            }
        }
        if pull && !batch.pushed && framed.send(pull_frame(batch.next_offset)).await.is_err() {
            return;
        }
    }
}

/// The fields of a `RoomBatch` the generator needs.
struct Scanned {
    missed: u64,
    next_offset: u64,
    pushed: bool,
}

/// Scans an encoded `RoomBatch` (protobuf) without decoding into structs,
/// and with `stamps`, for the stamps at the start of its payloads. `None`
/// if malformed.
fn scan_batch(mut body: &[u8], with_stamps: bool, stamps: &mut Vec<u64>) -> Option<Scanned> {
    let mut scanned = Scanned {
        missed: 0,
        next_offset: 0,
        pushed: false,
    };
    while !body.is_empty() {
        let key = varint(&mut body)?;
        match (key >> 3, key & 7) {
            (2, 2) => {
                let message = length_delimited(&mut body)?;
                if with_stamps {
                    stamps.push(scan_message(message)?);
                }
            }
            (3, 0) => scanned.missed = varint(&mut body)?,
            (4, 0) => scanned.next_offset = varint(&mut body)?,
            (6, 0) => scanned.pushed = varint(&mut body)? != 0,
            (_, 0) => {
                varint(&mut body)?;
            }
            (_, 2) => {
                length_delimited(&mut body)?;
            }
            _ => return None,
        }
    }
    Some(scanned)
}

/// The stamp of one `RoomMessage`'s payload (field 4).
fn scan_message(mut body: &[u8]) -> Option<u64> {
    let mut stamp = None;
    while !body.is_empty() {
        let key = varint(&mut body)?;
        match (key >> 3, key & 7) {
            (4, 2) => {
                let payload = length_delimited(&mut body)?;
                let digits = std::str::from_utf8(payload.get(..STAMP)?).ok()?;
                stamp = digits.parse().ok();
            }
            (_, 0) => {
                varint(&mut body)?;
            }
            (_, 2) => {
                length_delimited(&mut body)?;
            }
            _ => return None,
        }
    }
    stamp
}

fn varint(body: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = body.split_first()?;
        *body = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn length_delimited<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(varint(body)?).ok()?;
    if body.len() < len {
        return None;
    }
    let (field, rest) = body.split_at(len);
    *body = rest;
    Some(field)
}

fn ns_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

fn free_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn has_taskset() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn wait_ready(client: &reqwest::Client, api: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{api}/healthz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the gateway did not become ready within 30 s".into())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(stat: &str) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(stat)?;
    // The command name is in parentheses and may hold spaces.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .ok_or("unexpected stat format")?
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5); fields[0] is field 3.
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS and VmHWM of a process, MB.
fn memory(pid: u32) -> Result<(f64, f64), BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "mode": o.mode.name(),
        "offered_per_sec": o.offered_per_sec,
        "delivered_per_sec": o.delivered_per_sec.round(),
        "complete": o.complete,
        "missed": o.missed,
        "p50_ms": o.p50_ms,
        "p99_ms": o.p99_ms,
        "max_ms": o.max_ms,
        "gateway_cpu": o.server_cpu,
        "generator_cpu": o.generator_cpu,
        "gateway_rss_mb": o.rss_mb,
        "gateway_hwm_mb": o.hwm_mb,
        "frames_per_sec": o.frames_per_sec.round(),
        "batches": o.batches,
        "encodes": o.encodes,
        "publish_failed": o.publish_failed,
    })
}

fn print_table(args: &Args, outcomes: &[Outcome]) {
    let base = outcomes.iter().find(|o| o.mode == Mode::Nobatch);
    println!();
    println!(
        "{} members, {} msg/s x {} B, {} s measured per mode",
        args.members, args.rate, args.size, args.secs
    );
    println!(
        "| mode | delivered msg/s | of offered | complete after drain | p50 ms | p99 ms | max ms | gateway CPU | gateway RSS MB | frames/s | batches | encodings | generator CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {:.0} | {:.1} % | {:.1} % | {:.1} | {:.1} | {:.1} | {:.0} % | {:.0} | {:.0} | {} | {} | {:.0} % |",
            o.mode.name(),
            o.delivered_per_sec,
            100.0 * o.delivered_per_sec / o.offered_per_sec.max(1.0),
            100.0 * o.complete,
            o.p50_ms,
            o.p99_ms,
            o.max_ms,
            100.0 * o.server_cpu,
            o.rss_mb,
            o.frames_per_sec,
            o.batches,
            o.encodes,
            100.0 * o.generator_cpu,
        );
    }
    if let Some(base) = base {
        println!();
        println!("Ratios against no batching:");
        println!(
            "| mode | delivered msg/s | p50 | p99 | gateway CPU per delivered message | RSS |"
        );
        println!("|---|---|---|---|---|---|");
        for o in outcomes {
            let per = |x: &Outcome| x.server_cpu / x.delivered_per_sec.max(1.0);
            println!(
                "| {} | {:.2} | {:.3} | {:.3} | {:.3} | {:.2} |",
                o.mode.name(),
                o.delivered_per_sec / base.delivered_per_sec.max(1.0),
                o.p50_ms / base.p50_ms.max(1e-9),
                o.p99_ms / base.p99_ms.max(1e-9),
                per(o) / per(base).max(1e-12),
                o.rss_mb / base.rss_mb.max(1e-9),
            );
        }
    }
}
