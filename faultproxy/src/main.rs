//! `faultproxy`: the command-line proxy. Faults given as flags apply from
//! the start; control lines on stdin change them while it runs (see
//! `faultproxy::parse_action`; `stats` prints the counters). Each line is
//! answered with `ok`, `error: ...` or the counters on stdout.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use faultproxy::{Action, Direction, Proxy, ProxyConfig, parse_action, parse_duration, parse_size};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A TCP/UDP proxy that injects network faults.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where the proxy forwards to.
    #[arg(long)]
    upstream: SocketAddr,
    /// Proxy UDP datagrams instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// Latency each way (e.g. 50ms).
    #[arg(long, value_parser = parse_duration)]
    latency: Option<Duration>,
    /// Random extra latency each way, 0..=jitter.
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Bandwidth each way in bytes per second (e.g. 64KiB), TCP.
    #[arg(long, value_parser = parse_size)]
    bandwidth: Option<u64>,
    /// Largest write each way in bytes, TCP.
    #[arg(long)]
    slice: Option<usize>,
    /// Fraction of datagrams dropped each way, UDP.
    #[arg(long)]
    drop: Option<f64>,
    /// Seed of the jitter and drop draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most TCP connections (or UDP flows) at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = ProxyConfig::default()
        .with_seed(args.seed)
        .with_max_connections(args.max_connections)
        .with_max_flows(usize::try_from(args.max_connections).unwrap_or(usize::MAX));
    let started = if args.udp {
        Proxy::udp_with(args.listen, args.upstream, config).await
    } else {
        Proxy::tcp_with(args.listen, args.upstream, config).await
    };
    let proxy = match started {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("faultproxy: cannot listen on {}: {error}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    let faults = proxy.handle();
    if args.latency.is_some() || args.jitter.is_some() {
        faults.set_latency(
            Direction::Both,
            args.latency.unwrap_or_default(),
            args.jitter.unwrap_or_default(),
        );
    }
    faults.set_bandwidth(Direction::Both, args.bandwidth);
    faults.set_slice(Direction::Both, args.slice);
    if let Some(rate) = args.drop {
        faults.apply(Action::DropRate {
            dir: Direction::Both,
            rate,
        });
    }
    eprintln!(
        "faultproxy: {} {} -> {}",
        if args.udp { "udp" } else { "tcp" },
        proxy.local_addr(),
        args.upstream
    );

    // Control lines until stdin closes; then keep proxying until Ctrl-C.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) if line.trim() == "stats" => println!("{:?}", faults.stats()),
                Ok(Some(line)) => match parse_action(&line) {
                    Ok(action) => {
                        faults.apply(action);
                        println!("ok");
                    }
                    Err(error) => println!("error: {error}"),
                },
                Ok(None) | Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => return std::process::ExitCode::SUCCESS,
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
