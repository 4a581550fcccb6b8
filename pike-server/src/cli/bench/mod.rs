//! `pike bench`: a Pike-protocol load generator, like `nats bench`.
//!
//! One process holds many device connections, each a light
//! [`pike_channel`] client driver (one task, one channel machine, no
//! `PikeClient` on top), dialled from many source addresses in
//! `127.0.0.0/8` with `IP_BIND_ADDRESS_NO_PORT` so ephemeral ports never
//! run out. Every phase is bounded in count and time.
//!
//! Workloads:
//! - `idle`: connect N devices, each logged in as its own alias, report the
//!   connect rate, hold them idle, report what happened during the hold;
//! - `unicast`: the same N logged-in aliases, plus pushes through the HTTP
//!   API at a fixed open-loop rate, each payload stamped with its
//!   *scheduled* send time (no coordinated omission); push→receive
//!   latency in an HdrHistogram, delivered/s.
//!
//! Output: progress on stderr, a summary table on stdout, or with `--json`
//! JSON lines on stdout (one `connected` line after the connect phase, one
//! `report` line at the end) for harnesses such as `cargo xtask bench`.
//!
//! Files: [`fleet`] (the connections), [`sources`] (source addresses and
//! the open-file limit), [`latency`] (payload stamps and the recorder),
//! [`schedule`] (open-loop send times), [`idle`] and [`unicast`] (the
//! workloads), [`report`] (progress, JSON, table).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Common, Failure};

mod fleet;
mod idle;
mod latency;
mod report;
mod schedule;
mod sources;
mod unicast;

/// Arguments of `pike bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Connect N devices (one alias each), report the connect rate, hold
    /// them idle for --hold seconds.
    Idle(idle::IdleArgs),
    /// N logged-in aliases; push to them through the HTTP API at a fixed
    /// open-loop rate and measure push→receive latency.
    Unicast(unicast::UnicastArgs),
}

/// How to open the fleet of devices (shared by every workload).
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// The gateway's plain TCP client address.
    #[arg(long, env = "PIKE_SERVER", default_value = "127.0.0.1:9300")]
    server: SocketAddr,
    /// Devices to connect (each logs in as its own alias).
    #[arg(long, short = 'n', default_value_t = 1000)]
    connections: usize,
    /// Connects (dial + handshake + login) in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Source addresses to dial from: 127.0.X.1 ..= 127.0.X.K for
    /// `--source-net 127.0.X` and `--sources K` (0: let the kernel choose).
    #[arg(long, default_value_t = 32)]
    sources: u8,
    /// The first three octets of the source addresses (must be 127.x.y).
    #[arg(long, default_value = "127.0.1")]
    source_net: String,
    /// Business to log in to.
    #[arg(long, default_value = "bench")]
    biz: String,
    /// Aliases are PREFIX<i> for i in FIRST .. FIRST+N.
    #[arg(long, default_value = "u")]
    alias_prefix: String,
    /// The first alias number (give each generator process its own range).
    #[arg(long, default_value_t = 0)]
    first_alias: u64,
    /// The app's token secret (default: the dev app's, from the data dir).
    #[arg(long, env = "PIKE_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Time one device may take to connect and log in, seconds.
    #[arg(long, default_value_t = 30)]
    login_timeout: u64,
    /// Time the whole connect phase may take, seconds.
    #[arg(long, default_value_t = 300)]
    connect_deadline: u64,
    /// JSON lines on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Connect over TLS (to the gateway's TLS port), trusting the CA
    /// certificate in this PEM file (a zero-config gateway's self-signed
    /// certificate is `<data dir>/tls/cert.pem`). The server is verified
    /// against the IP address of `--server`.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<std::path::PathBuf>,
}

impl FleetArgs {
    fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout.max(1))
    }

    fn connect_deadline(&self) -> Duration {
        Duration::from_secs(self.connect_deadline.max(1))
    }
}

/// Runs `pike bench`.
pub(crate) async fn run(common: &Common, args: BenchArgs) -> Result<(), Failure> {
    match args.workload {
        Workload::Idle(args) => idle::run(common, args).await,
        Workload::Unicast(args) => unicast::run(common, args).await,
    }
}
