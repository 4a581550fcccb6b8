//! `pike bench unicast` (S3): N logged-in aliases, pushes to them through
//! the HTTP API (`POST /v1/push`, transient unless `--reliable`) at each
//! rate of an open-loop sweep; message `k` goes to alias `k mod N`.
//! Expected deliveries: the messages sent. `--rate R` runs a one-step
//! sweep. `--batch N` sends the due messages in `POST /v1/push/batch`
//! requests of up to N pushes.

use std::net::SocketAddr;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::FleetArgs;
use super::api::{Api, ApiArgs};
use super::idle::plan;
use super::push_sweep::{self, Addressing, PushSweep};
use super::receipt_sink;
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
    #[arg(long, conflicts_with = "receipt")]
    push_socket: bool,
    /// Every push asks for delivery receipts (`"receipt": true`; HTTP
    /// only: the push connection's protobuf has no receipt field).
    #[arg(long)]
    receipt: bool,
    /// Serve a receipt webhook sink on this address (the gateway's
    /// `receipt_webhook` points at it): counts receipts, answers 200; the
    /// count is in the report line.
    #[arg(long, value_name = "ADDR", requires = "receipt")]
    receipt_sink: Option<SocketAddr>,
}

pub(crate) async fn run(common: &Common, args: UnicastArgs) -> Result<(), Failure> {
    let sweep = SweepPlan::new(&args.sweep)?;
    let plan = plan(common, &args.fleet)?;
    let api = Api::new(common, &args.api)?;
    let stop_sink = CancellationToken::new();
    let sink = match args.receipt_sink {
        Some(addr) => {
            let (bound, counts, task) = receipt_sink::serve(addr, stop_sink.clone())
                .await
                .map_err(Failure::failed)?;
            if !args.fleet.quiet {
                eprintln!("receipt sink on http://{bound}/");
            }
            Some((counts, task))
        }
        None => None,
    };
    let result = push_sweep::run(
        plan,
        PushSweep {
            workload: "unicast",
            addressing: Addressing::Alias,
            reliable: args.reliable,
            batch: usize::from(args.batch),
            push_socket: args.push_socket,
            receipt: args.receipt,
            receipts: sink.as_ref().map(|(counts, _)| &**counts),
            api: &api,
            sweep: &sweep,
            json: args.fleet.json,
            quiet: args.fleet.quiet,
        },
    )
    .await;
    stop_sink.cancel();
    if let Some((_, task)) = sink {
        let _ = task.await;
    }
    result
}
