//! `pike bench unicast` (S3): N logged-in aliases, pushes to them through
//! the HTTP API (`POST /v1/push`, transient unless `--reliable`) at each
//! rate of an open-loop sweep; message `k` goes to alias `k mod N`.
//! Expected deliveries: the messages sent. `--rate R` runs a one-step
//! sweep. `--batch N` sends the due messages in `POST /v1/push/batch`
//! requests of up to N pushes.

use clap::Args;

use super::FleetArgs;
use super::api::{Api, ApiArgs};
use super::idle::plan;
use super::push_sweep::{self, Addressing, PushSweep};
use super::sweep::{SweepArgs, SweepPlan};
use crate::cli::{Common, Failure};

/// Arguments of `pike bench unicast`.
#[derive(Debug, Args)]
pub(crate) struct UnicastArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    sweep: SweepArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Reliable pushes (stored, acked) instead of transient (at most once).
    #[arg(long)]
    reliable: bool,
    /// Pushes per request: 1 sends each message as one `POST /v1/push`;
    /// more sends the messages due at each wake-up of the publisher in
    /// `POST /v1/push/batch` requests of at most this many (1 to 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
    /// Send the batches over one push connection (`GET /v1/push/ws`,
    /// protobuf, with up to `--http-connections` batches in flight)
    /// instead of HTTP requests.
    #[arg(long)]
    push_socket: bool,
}

pub(crate) async fn run(common: &Common, args: UnicastArgs) -> Result<(), Failure> {
    let sweep = SweepPlan::new(&args.sweep)?;
    let plan = plan(common, &args.fleet)?;
    let api = Api::new(common, &args.api)?;
    push_sweep::run(
        plan,
        PushSweep {
            workload: "unicast",
            addressing: Addressing::Alias,
            reliable: args.reliable,
            batch: usize::from(args.batch),
            push_socket: args.push_socket,
            api: &api,
            sweep: &sweep,
            json: args.fleet.json,
            quiet: args.fleet.quiet,
        },
    )
    .await
}
