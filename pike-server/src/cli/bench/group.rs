//! `pike bench group` (S4): N logged-in aliases, alias number `i` bound to
//! tag `g<i / G>` right after its login; pushes to the tags through the
//! HTTP API (`POST /v1/push`, transient unless `--reliable`) at each rate
//! of an open-loop sweep, round robin over the groups. Expected
//! deliveries: each message sent × the logged-in devices of its group.
//! `--batch N` sends the due messages in `POST /v1/push/batch` requests of
//! up to N pushes.

use clap::Args;

use super::FleetArgs;
use super::api::{Api, ApiArgs};
use super::idle::plan;
use super::push_sweep::{self, Addressing, PushSweep};
use super::sweep::{SweepArgs, SweepPlan};
use crate::cli::{Common, Failure};

/// Arguments of `pike bench group`.
#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[command(flatten)]
    sweep: SweepArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Devices per group (tag).
    #[arg(long, default_value_t = 100)]
    group_size: u64,
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

pub(crate) async fn run(common: &Common, args: GroupArgs) -> Result<(), Failure> {
    if args.group_size == 0 {
        return Err(Failure::usage("--group-size must be at least 1"));
    }
    let sweep = SweepPlan::new(&args.sweep)?;
    let mut plan = plan(common, &args.fleet)?;
    plan.group_size = args.group_size;
    let api = Api::new(common, &args.api)?;
    push_sweep::run(
        plan,
        PushSweep {
            workload: "group",
            addressing: Addressing::Group,
            reliable: args.reliable,
            batch: usize::from(args.batch),
            push_socket: args.push_socket,
            receipt: false,
            receipts: None,
            api: &api,
            sweep: &sweep,
            json: args.fleet.json,
            quiet: args.fleet.quiet,
        },
    )
    .await
}
