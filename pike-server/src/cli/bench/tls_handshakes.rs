//! `pike bench tls-handshakes` (the S8 ceiling): how many TLS 1.3
//! handshakes per second the gateway's TLS port completes.
//!
//! `--concurrency` workers each loop: dial (from the source addresses, so
//! the client side's TIME_WAIT sockets do not exhaust one address's
//! ports), run the TLS 1.3 handshake against the pinned certificate, send
//! close_notify and close. No Pike frame is exchanged. Full handshakes
//! (no session resumption) unless `--resume`: a restarted gateway does not
//! know its predecessor's tickets, so a reconnect storm pays full ones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tntunnel::ClientSecurity;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tunnelkit::{TcpConfig, TcpTransport, Transport};

use super::dial::TrustArgs;
use super::report::{Progress, Table, json_line};
use super::sources;
use super::uplink_steps::{cpu_secs, cpu_since};
use crate::cli::{Common, Failure};

/// Time one dial plus handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the close (close_notify, FIN) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause of a worker after a failure, so a refusing port is not spun on.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// Arguments of `pike bench tls-handshakes`.
#[derive(Debug, Args)]
pub(crate) struct TlsHandshakesArgs {
    /// The gateway's TLS client address.
    #[arg(long, env = "PIKE_SERVER", default_value = "127.0.0.1:9301")]
    server: SocketAddr,
    #[command(flatten)]
    trust: TrustArgs,
    /// Seconds of handshaking.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Source addresses to dial from: 127.0.X.1 ..= 127.0.X.K for
    /// `--source-net 127.0.X` and `--sources K` (0: let the kernel choose).
    #[arg(long, default_value_t = 32)]
    sources: u8,
    /// The first three octets of the source addresses (must be 127.x.y).
    #[arg(long, default_value = "127.0.1")]
    source_net: String,
    /// Allow TLS session resumption (shared ticket cache) instead of full
    /// handshakes.
    #[arg(long)]
    resume: bool,
    /// JSON lines on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Serialize)]
struct HandshakeReport {
    handshakes: u64,
    seconds: f64,
    per_sec: f64,
    failed: u64,
    concurrency: usize,
    resumption: bool,
    /// Dial + handshake time of the successful ones.
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// This process's CPU time during the run (the client side of a
    /// handshake costs about as much as the server side).
    gen_cpu_secs: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

/// What the workers share.
struct Shared {
    tcp: TcpTransport,
    security: ClientSecurity,
    server: SocketAddr,
    server_name: String,
    end: Instant,
    tally: Mutex<Tally>,
}

struct Tally {
    handshakes: u64,
    failed: u64,
    histogram: Histogram<u64>,
    first_error: Option<String>,
}

pub(crate) async fn run(common: &Common, args: TlsHandshakesArgs) -> Result<(), Failure> {
    let tls = args.trust.tls(common, args.resume)?;
    let ips = sources::source_ips(&args.source_net, args.sources).map_err(Failure::usage)?;
    let mut tcp = TcpConfig::default();
    tcp.connect_timeout(Some(HANDSHAKE_TIMEOUT)).source_ips(ips);
    let tcp = TcpTransport::new(tcp).map_err(|e| Failure::failed(e.to_string()))?;
    let histogram =
        Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| Failure::failed(e.to_string()))?;
    let progress = Progress::new(args.quiet);
    let concurrency = args.concurrency.max(1);
    let start = Instant::now();
    let cpu_start = cpu_secs();
    let shared = Arc::new(Shared {
        tcp,
        security: ClientSecurity::Tls(tls),
        server: args.server,
        server_name: args.trust.server_name.clone(),
        end: start + Duration::from_secs(args.duration.max(1)),
        tally: Mutex::new(Tally {
            handshakes: 0,
            failed: 0,
            histogram,
            first_error: None,
        }),
    });
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        workers.spawn(worker(shared.clone()));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let hard_end = shared.end + HANDSHAKE_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(1);
    loop {
        tokio::select! {
            joined = workers.join_next() => if joined.is_none() { break },
            _ = tick.tick() => {
                let tally = shared.tally.lock().unwrap_or_else(PoisonError::into_inner);
                progress.update(&format!(
                    "{} handshakes, {} failed, {:.0} s",
                    tally.handshakes,
                    tally.failed,
                    start.elapsed().as_secs_f64()
                ));
            }
            () = tokio::time::sleep_until(hard_end) => {
                workers.abort_all();
                break;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let gen_cpu_secs = cpu_since(cpu_start);
    let report = {
        let tally = shared.tally.lock().unwrap_or_else(PoisonError::into_inner);
        let h = &tally.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        let (p50, p99, max) = if h.is_empty() {
            (0, 0, 0)
        } else {
            (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
        };
        HandshakeReport {
            handshakes: tally.handshakes,
            seconds,
            per_sec: tally.handshakes as f64 / seconds.max(1e-9),
            failed: tally.failed,
            concurrency,
            resumption: args.resume,
            p50_ms: ms(p50),
            p99_ms: ms(p99),
            max_ms: ms(max),
            gen_cpu_secs,
            first_error: tally.first_error.clone(),
        }
    };
    progress.done(&format!(
        "{} handshakes in {:.1} s ({:.0}/s), {} failed",
        report.handshakes, report.seconds, report.per_sec, report.failed
    ));
    if args.json {
        json_line("report", &report);
    } else {
        let mut table = Table::default();
        table
            .row("handshakes", report.handshakes)
            .row("per second", format!("{:.0}", report.per_sec))
            .row("failed", report.failed)
            .row("in flight", report.concurrency)
            .row("resumption", report.resumption)
            .row("p50", format!("{:.3} ms", report.p50_ms))
            .row("p99", format!("{:.3} ms", report.p99_ms))
            .row("generator CPU", format!("{:.2} s", report.gen_cpu_secs));
        if let Some(error) = &report.first_error {
            table.row("first error", error);
        }
        print!("{}", table.render("pike bench tls-handshakes"));
    }
    if report.handshakes == 0 {
        return Err(Failure::failed(format!(
            "no handshake completed: {}",
            report.first_error.as_deref().unwrap_or("no error")
        )));
    }
    Ok(())
}

/// One worker: handshakes until the end of the run.
async fn worker(shared: Arc<Shared>) {
    // Bounded in time by `end`, and in count: no worker can complete more
    // than one handshake per microsecond.
    let most = Duration::from_secs(86_400).as_micros();
    for _ in 0..most {
        if Instant::now() >= shared.end {
            break;
        }
        let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&shared)).await;
        let outcome = outcome.unwrap_or_else(|_| Err("dial + handshake timed out".to_owned()));
        let failed = {
            let mut tally = shared.tally.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(took) => {
                    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                    tally.handshakes += 1;
                    tally.histogram.saturating_record(micros.max(1));
                    false
                }
                Err(message) => {
                    tally.failed += 1;
                    tally.first_error.get_or_insert(message);
                    true
                }
            }
        };
        if failed {
            tokio::time::sleep(FAILURE_PAUSE).await;
        }
    }
}

/// Dial, TLS handshake, close_notify, close; returns the time the dial
/// and the handshake took.
async fn handshake(shared: &Shared) -> Result<Duration, String> {
    let started = Instant::now();
    let tcp = shared
        .tcp
        .connect(shared.server)
        .await
        .map_err(|e| format!("dial: {e}"))?;
    let mut tls = shared
        .security
        .secure(tcp, &shared.server_name)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let took = started.elapsed();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
    Ok(took)
}
