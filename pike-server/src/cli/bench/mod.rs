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
//!   API at open-loop rates, each payload stamped with its *scheduled*
//!   send time (no coordinated omission); push→receive latency in an
//!   HdrHistogram, delivered/s;
//! - `fanout`: N lean members of one live room, one publisher through the
//!   HTTP API (`--churn`: members reconnect; `--slow`: members stop
//!   reading);
//! - `group`: N aliases bound to tags of G aliases each, pushes to the
//!   tags.
//!
//! `unicast`, `fanout` and `group` are rate sweeps ([`sweep`]) speaking
//! the harness's contract: `--rates`, `--warmup`, `--step`, `--drain`, and
//! `connected`, `step_begin`, `step` and `report` JSON lines.
//! - `uplink`: N logged-in devices send uplink at an open-loop rate sweep;
//!   the generator is the webhook backend ([`sink`]) and measures
//!   scheduled→backend latency ([`uplink`], steps in [`uplink_steps`]);
//! - `storm`: N TLS devices with the real reconnect backoff; the gateway
//!   is killed and restarted; time until they are all back ([`storm`]);
//! - `tls-handshakes`: the gateway's TLS 1.3 handshake rate
//!   ([`tls_handshakes`]);
//! - `chaos`: real clients, reliable pushes and a failing webhook backend,
//!   every event a JSON line, for `cargo xtask chaos` ([`chaos`]).
//!
//! Every fleet dials over `--transport tcp|tls|quic` ([`dial`]).
//!
//! Output: progress on stderr, a summary table on stdout, or with `--json`
//! JSON lines on stdout (one `connected` line after the connect phase, one
//! `report` line at the end) for harnesses such as `cargo xtask bench`.
//!
//! Files: [`fleet`] (the connections), [`room_member`] (lean room
//! members), [`sources`] (source addresses and the open-file limit),
//! [`latency`] (payload stamps and the recorder), [`stamp`] and [`board`]
//! (the sweep's stamps and per-step counts), [`schedule`] (open-loop send
//! times), [`sweep`] (the step loop), [`churn`] (who reconnects when),
//! [`api`] and [`http_pool`] (the publisher), [`cpu`] (the generator's own
//! CPU), [`idle`], [`unicast`], [`fanout`] and [`group`] (the workloads),
//! [`report`] (progress, JSON, table).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{Common, Failure};

mod api;
mod board;
mod chaos;
mod churn;
mod cpu;
mod dial;
mod fanout;
mod fleet;
mod group;
mod http_pool;
mod idle;
#[allow(
    dead_code,
    reason = "the text stamp and recorder of the single-rate unicast, kept for workloads that still use them"
)]
mod latency;
mod push_socket;
mod push_sweep;
mod receipt_sink;
mod report;
mod room_member;
mod schedule;
mod sink;
mod sources;
mod stamp;
mod storm;
mod sweep;
mod tls_handshakes;
mod unicast;
mod uplink;
mod uplink_steps;

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
    /// N logged-in aliases; push to them through the HTTP API at open-loop
    /// rates and measure push→receive latency.
    Unicast(unicast::UnicastArgs),
    /// N members of one live room; publish into it through the HTTP API at
    /// open-loop rates (with churning or slow members).
    Fanout(fanout::FanoutArgs),
    /// N aliases in tag groups; push to the tags through the HTTP API at
    /// open-loop rates.
    Group(group::GroupArgs),
    /// N logged-in devices send uplink messages at an open-loop rate sweep
    /// to a webhook sink this process runs; scheduled→sink latency.
    Uplink(uplink::UplinkArgs),
    /// N TLS devices with the real reconnect backoff: time until they are
    /// logged in again after the gateway is killed and restarted.
    Storm(storm::StormArgs),
    /// TLS 1.3 handshakes per second against the gateway's TLS port.
    TlsHandshakes(tls_handshakes::TlsHandshakesArgs),
    /// The devices, publisher and webhook backend of `cargo xtask chaos`:
    /// JSON lines of every message received, pushed, sent and called.
    Chaos(chaos::ChaosArgs),
}

/// How to open the fleet of devices (shared by every workload).
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// The gateway's client address (of the `--transport` listener); a
    /// comma-separated list spreads the devices over several gateways of a
    /// cluster: device `i` dials address `i mod len` (at most 64).
    #[arg(long, env = "PIKE_SERVER", value_delimiter = ',', num_args = 1.., default_value = "127.0.0.1:9300")]
    server: Vec<SocketAddr>,
    #[command(flatten)]
    dial: dial::DialArgs,
    /// Devices to connect (each logs in as its own alias).
    #[arg(long, short = 'n', visible_aliases = ["devices", "members", "clients"], default_value_t = 1000)]
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
        Workload::Fanout(args) => fanout::run(common, args).await,
        Workload::Group(args) => group::run(common, args).await,
        Workload::Uplink(args) => uplink::run(common, args).await,
        Workload::Storm(args) => storm::run(common, args).await,
        Workload::TlsHandshakes(args) => tls_handshakes::run(common, args).await,
        Workload::Chaos(args) => chaos::run(common, args).await,
    }
}
